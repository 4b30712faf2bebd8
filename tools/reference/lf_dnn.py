"""Golden for LF-DNN against MMSA 2.2.1 (--code: the unpacked `mmsa==2.2.1` wheel, the folder holding `MMSA/`).

    python tools/reference/lf_dnn.py --code /path/to/unpacked/mmsa

MMSA's LF_DNN (with subNets/FeatureNets.py) in its MOSI configuration (unaligned_50 features,
need_normalized: audio/vision averaged over every padded step by the data loader) at narrow
widths, dropout 0. Intermediates: MMSA's Feature_t/a/v/f.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from _golden import parse_args
from _mmsa_classic import UNALIGNED, feature_batch, import_mmsa, l1, normalized, perturb_, reference_parameters, write

DIMS = (32, 5, 20)
WIDTHS = {"hidden_dims": (16, 8, 12), "text_out": 24, "post_fusion_dim": 16}  # MMSA mosi 128/16/128, 256, 128


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    module = import_mmsa(args.code, "MMSA.models.singleTask.LF_DNN")
    gen = torch.Generator().manual_seed(args.seed)
    model = module.LF_DNN(SimpleNamespace(feature_dims=DIMS, dropouts=(0.0, 0.0, 0.0, 0.0), train_mode="regression",
                                          num_classes=1, **WIDTHS))
    perturb_(model, gen)
    batch = feature_batch(gen, DIMS, UNALIGNED)

    def forward() -> dict[str, torch.Tensor]:
        return model(*normalized(batch))

    write(args, "lf_dnn", model, batch, forward, ("M", "Feature_t", "Feature_a", "Feature_v", "Feature_f"), {},
          lambda out: {"L1": l1(out["M"], batch["labels"]), "total": l1(out["M"], batch["labels"])}, {
              "reference": "MMSA 2.2.1 (PyPI wheel) MMSA/models/singleTask/LF_DNN.py, subNets/FeatureNets.py, "
                           "trains/singleTask/LF_DNN.py; data_loader.py __normalize",
              "reference_parameters": reference_parameters(args.code, "lf_dnn", module.LF_DNN),
              "msabench": {"name": "lf_dnn", "dataset": "mosi", "preset": "mmsa", "overrides": {
                  "dims": DIMS, **WIDTHS, "audio_dropout": 0.0, "video_dropout": 0.0, "text_dropout": 0.0,
                  "post_fusion_dropout": 0.0}},
          })


if __name__ == "__main__":
    main()
