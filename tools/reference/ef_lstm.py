"""Golden for EF-LSTM against MMSA 2.2.1 (--code: the unpacked `mmsa==2.2.1` wheel, the folder holding `MMSA/`).

    python tools/reference/ef_lstm.py --code /path/to/unpacked/mmsa

MMSA's EF_LSTM in its MOSI configuration (aligned_50 features, 4 LSTM layers) at narrow widths
and T = 8, dropout 0. Aligned data: AMIO's alignment is the identity. Intermediates: the
BatchNorm output and the LSTM's last-layer sequence.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from _golden import parse_args
from _mmsa_classic import ALIGNED, feature_batch, import_mmsa, l1, perturb_, reference_parameters, write

DIMS, HIDDEN, LAYERS = (32, 5, 20), 16, 4  # MMSA mosi: 768/5/20, hidden 128, 4 layers


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    module = import_mmsa(args.code, "MMSA.models.singleTask.EF_LSTM")
    gen = torch.Generator().manual_seed(args.seed)
    model = module.EF_LSTM(SimpleNamespace(feature_dims=DIMS, seq_lens=max(ALIGNED), hidden_dims=HIDDEN,
                                           num_layers=LAYERS, dropout=0.0, train_mode="regression", num_classes=1))
    perturb_(model, gen)
    batch = feature_batch(gen, DIMS, {m: ALIGNED for m in "tav"})

    def forward() -> dict[str, torch.Tensor]:
        return model(batch["text_feats"], batch["audio"], batch["vision"])

    write(args, "ef_lstm", model, batch, forward, ("M",), {"norm": "norm", "lstm": "lstm#0"},
          lambda out: {"L1": l1(out["M"], batch["labels"]), "total": l1(out["M"], batch["labels"])}, {
              "reference": "MMSA 2.2.1 (PyPI wheel) MMSA/models/singleTask/EF_LSTM.py, trains/singleTask/EF_LSTM.py",
              "reference_parameters": reference_parameters(args.code, "ef_lstm", module.EF_LSTM),
              "msabench": {"name": "ef_lstm", "dataset": "mosi", "preset": "mmsa", "overrides": {
                  "dims": DIMS, "hidden": HIDDEN, "num_layers": LAYERS, "dropout": 0.0, "seq_len": max(ALIGNED)}},
          })


if __name__ == "__main__":
    main()
