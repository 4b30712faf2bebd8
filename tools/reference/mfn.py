"""Golden for MFN against MMSA 2.2.1 (--code: the unpacked `mmsa==2.2.1` wheel, the folder holding `MMSA/`).

    python tools/reference/mfn.py --code /path/to/unpacked/mmsa

MMSA's MFN in its MOSI configuration at narrow widths, T = 8, dropout 0, fed as MMSA feeds it:
aligned features, audio/vision averaged over time by the data loader (need_normalized), then
AMIO's AlignSubNet (avg_pool, need_model_aligned) repeating them to the text length.
Intermediates: MMSA's `L` (last hidden states and memory).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from _golden import parse_args
from _mmsa_classic import ALIGNED, feature_batch, import_mmsa, l1, normalized, perturb_, reference_parameters, write

DIMS = (32, 5, 20)
T = max(ALIGNED)
WIDTHS = {"hidden_dims": (12, 6, 10), "memsize": 14}  # MMSA mosi 256/32/256, 400
BLOCKS = {"NN1Config": 9, "NN2Config": 11, "gamma1Config": 13, "gamma2Config": 7, "outConfig": 10}  # hidden widths


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    module = import_mmsa(args.code, "MMSA.models.singleTask.MFN")
    align_net = import_mmsa(args.code, "MMSA.models.subNets.AlignNets").AlignSubNet(
        SimpleNamespace(feature_dims=DIMS, seq_lens=(T, T, T)), "avg_pool")
    gen = torch.Generator().manual_seed(args.seed)
    model = module.MFN(SimpleNamespace(feature_dims=DIMS, windowsize=2, train_mode="regression", num_classes=1,
                                       **WIDTHS, **{k: {"shapes": v, "drop": 0.0} for k, v in BLOCKS.items()}))
    perturb_(model, gen)
    batch = feature_batch(gen, DIMS, {m: ALIGNED for m in "tav"})

    def forward() -> dict[str, torch.Tensor]:
        return model(*align_net(*normalized(batch)))  # AMIO.forward: alignNet, then the model

    ours = {"att1": "NN1Config", "att2": "NN2Config", "gamma1": "gamma1Config", "gamma2": "gamma2Config", "out": "outConfig"}
    write(args, "mfn", model, batch, forward, ("M", "L"), {},
          lambda out: {"L1": l1(out["M"], batch["labels"]), "total": l1(out["M"], batch["labels"])}, {
              "reference": "MMSA 2.2.1 (PyPI wheel) MMSA/models/singleTask/MFN.py, subNets/AlignNets.py (avg_pool), "
                           "trains/singleTask/MFN.py; data_loader.py __normalize",
              "reference_parameters": reference_parameters(args.code, "mfn", module.MFN),
              "msabench": {"name": "mfn", "dataset": "mosi", "preset": "mmsa", "overrides": {
                  "dims": DIMS, **WIDTHS, **{f"{o}_hidden": BLOCKS[r] for o, r in ours.items()},
                  **{f"{o}_dropout": 0.0 for o in ours}}},
          })


if __name__ == "__main__":
    main()
