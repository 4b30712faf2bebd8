"""Golden for MLMF against MMSA 2.2.1 (`pip download --no-deps mmsa==2.2.1`, wheel unpacked;
--code is the folder holding `MMSA/`).

    python tools/reference/mlmf.py --code /path/to/unpacked/mmsa

MMSA's MLMF in its SIMS configuration (the only one MMSA has) at small widths, dropout 0,
with unimodal labels; audio and vision averaged over time by MMSA's data loader; loss:
trains/multiTask/MLMF.py's weighted M/T/A/V L1 losses. The meta holds MMSA's parameter count.
"""

from __future__ import annotations

from _golden import parse_args
from _tensor_fusion import multitask_golden

WIDTHS = {"hidden_dims": (12, 6, 8), "rank": 3}  # MMSA mlmf sims, narrowed
POST = {"post_text_dim": 6, "post_audio_dim": 4, "post_video_dim": 5}
WEIGHTS = {"M": 0.2, "T": 1.0, "A": 0.4, "V": 0.8}  # MMSA mlmf sims


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    fields = {**WIDTHS, **POST, **WEIGHTS, "dropouts": (0.0,) * 3, "post_dropouts": (0.0,) * 4}
    multitask_golden(args, "mlmf", "MLMF", fields, {
        **WIDTHS, "post_dims": list(POST.values()), "loss_weights": list(WEIGHTS.values()),
        "dropouts": [0.0] * 3, "post_dropouts": [0.0] * 4})


if __name__ == "__main__":
    main()
