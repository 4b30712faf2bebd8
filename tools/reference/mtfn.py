"""Golden for MTFN against MMSA 2.2.1 (`pip download --no-deps mmsa==2.2.1`, wheel unpacked;
--code is the folder holding `MMSA/`).

    python tools/reference/mtfn.py --code /path/to/unpacked/mmsa

MMSA's MTFN in its SIMS configuration (the only one MMSA has) at small widths, dropout 0,
with unimodal labels; audio and vision averaged over time by MMSA's data loader; loss:
trains/multiTask/MTFN.py's weighted M/T/A/V L1 losses. The meta holds MMSA's parameter count.
"""

from __future__ import annotations

from _golden import parse_args
from _tensor_fusion import multitask_golden

WIDTHS = {"hidden_dims": (12, 6, 8), "text_out": 7, "post_fusion_dim": 10}  # MMSA mtfn sims, narrowed
POST = {"post_text_dim": 6, "post_audio_dim": 4, "post_video_dim": 5}
WEIGHTS = {"M": 0.6, "T": 0.4, "A": 0.3, "V": 1.0}  # MMSA sims, A raised from 0 so the audio head counts


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    fields = {**WIDTHS, **POST, **WEIGHTS, "dropouts": (0.0,) * 3, "post_dropouts": (0.0,) * 4}
    multitask_golden(args, "mtfn", "MTFN", fields, {
        **WIDTHS, "post_dims": list(POST.values()), "loss_weights": list(WEIGHTS.values()),
        "dropouts": [0.0] * 3, "post_dropouts": [0.0] * 4})


if __name__ == "__main__":
    main()
