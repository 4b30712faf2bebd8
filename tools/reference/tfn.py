"""Golden for TFN against MMSA 2.2.1 (`pip download --no-deps mmsa==2.2.1`, wheel unpacked;
--code is the folder holding `MMSA/`).

    python tools/reference/tfn.py --code /path/to/unpacked/mmsa

MMSA's TFN in its MOSI configuration at small widths, dropout 0; audio and vision averaged
over time by MMSA's data loader; loss: trains/singleTask/TFN.py's criterion (L1). The meta
holds MMSA's parameter counts in each config_regression.json configuration.
"""

from __future__ import annotations

import torch
from _golden import import_reference, parse_args
from _tensor_fusion import STUBS, make_batch, mmsa_param_counts, reference_args, write_golden

WIDTHS = {"hidden_dims": (12, 6, 8), "text_out": 7, "post_fusion_dim": 10}  # MMSA tfn mosi, narrowed


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    module = import_reference(args.code, "MMSA.models.singleTask.TFN", STUBS)
    trainer = import_reference(args.code, "MMSA.trains.singleTask.TFN", STUBS, stub_modules=("pynvml",))
    counts = mmsa_param_counts(args.code, module.TFN, "tfn")
    torch.manual_seed(args.seed)
    ref = reference_args("mosi", {**WIDTHS, "dropouts": (0.0, 0.0, 0.0, 0.0)})
    model = module.TFN(ref)
    batch = make_batch(torch.Generator().manual_seed(args.seed), multitask=False)
    criterion = trainer.TFN(ref).criterion

    def loss_of(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"total": criterion(out["M"], batch["labels"].view(-1, 1))}

    write_golden(args, "tfn", model, batch, loss_of, {
        "model": "tfn", "reference": "MMSA 2.2.1 (PyPI wheel) MMSA/models/singleTask/TFN.py, trains/singleTask/TFN.py",
        "mmsa_params": counts,
        "msabench": {"name": "tfn", "dataset": "mosi", "preset": "mmsa", "overrides": {
            "dims": [16, 5, 20], **WIDTHS, "dropouts": [0.0, 0.0, 0.0, 0.0]}},
    })


if __name__ == "__main__":
    main()
