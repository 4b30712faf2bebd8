"""Golden for LMF against MMSA 2.2.1 (`pip download --no-deps mmsa==2.2.1`, wheel unpacked;
--code is the folder holding `MMSA/`).

    python tools/reference/lmf.py --code /path/to/unpacked/mmsa

MMSA's LMF in its MOSI configuration at small widths, dropout 0; audio and vision averaged
over time by MMSA's data loader; loss: trains/singleTask/LMF.py's criterion (L1). The meta
holds MMSA's parameter counts in each config_regression.json configuration.
"""

from __future__ import annotations

import torch
from _golden import import_reference, parse_args
from _tensor_fusion import STUBS, make_batch, mmsa_param_counts, reference_args, write_golden

WIDTHS = {"hidden_dims": (12, 6, 8), "rank": 3}  # MMSA lmf mosi, narrowed


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    module = import_reference(args.code, "MMSA.models.singleTask.LMF", STUBS)
    trainer = import_reference(args.code, "MMSA.trains.singleTask.LMF", STUBS, stub_modules=("pynvml",))
    counts = mmsa_param_counts(args.code, module.LMF, "lmf")
    torch.manual_seed(args.seed)
    ref = reference_args("mosi", {**WIDTHS, "dropouts": (0.0, 0.0, 0.0, 0.0)})
    model = module.LMF(ref)
    batch = make_batch(torch.Generator().manual_seed(args.seed), multitask=False)
    criterion = trainer.LMF(ref).criterion

    def loss_of(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"total": criterion(out["M"], batch["labels"].view(-1, 1))}

    write_golden(args, "lmf", model, batch, loss_of, {
        "model": "lmf", "reference": "MMSA 2.2.1 (PyPI wheel) MMSA/models/singleTask/LMF.py, trains/singleTask/LMF.py",
        "mmsa_params": counts,
        "msabench": {"name": "lmf", "dataset": "mosi", "preset": "mmsa", "overrides": {
            "dims": [16, 5, 20], **WIDTHS, "dropouts": [0.0, 0.0, 0.0, 0.0]}},
    })


if __name__ == "__main__":
    main()
