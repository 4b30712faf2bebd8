"""Golden for MLF-DNN against MMSA 2.2.1 (--code: the unpacked `mmsa==2.2.1` wheel, the folder holding `MMSA/`).

    python tools/reference/mlf_dnn.py --code /path/to/unpacked/mmsa

MMSA's MLF_DNN (its own SubNet/TextSubNet copies in multiTask/MLF_DNN.py) in its SIMS
configuration (the only one MMSA has: unaligned features, need_normalized) at narrow widths,
dropout 0, with SIMS-style unimodal labels; the loss is its trainer's weighted sum of the M, T,
A and V heads' L1 losses (loss weights 0.6 / 0.2 / 0.8 / 0.8). Intermediates: Feature_t/a/v/f
and the three unimodal predictions.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from _golden import parse_args
from _mmsa_classic import UNALIGNED, feature_batch, import_mmsa, l1, normalized, perturb_, reference_parameters, write

DIMS = (32, 6, 18)  # MMSA sims: 768/33/709
WIDTHS = {"hidden_dims": (12, 8, 10), "text_out": 14, "post_fusion_dim": 9, "post_text_dim": 7, "post_audio_dim": 4,
          "post_video_dim": 6}  # MMSA sims: 64/32/64, 32, 32, 16, 4, 32
WEIGHTS = {"M": 0.6, "T": 0.2, "A": 0.8, "V": 0.8}  # config_regression.json mlf_dnn sims


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    module = import_mmsa(args.code, "MMSA.models.multiTask.MLF_DNN")
    gen = torch.Generator().manual_seed(args.seed)
    model = module.MLF_DNN(SimpleNamespace(feature_dims=DIMS, dropouts=(0.0,) * 3, post_dropouts=(0.0,) * 4,
                                           train_mode="regression", num_classes=1, **WIDTHS))
    perturb_(model, gen)
    batch = feature_batch(gen, DIMS, UNALIGNED)
    batch.update({f"labels_{m}": torch.randn(len(UNALIGNED["t"]), generator=gen).clamp(-1, 1) for m in "tav"})
    labels = {"M": batch["labels"], **{m.upper(): batch[f"labels_{m}"] for m in "tav"}}  # SIMS regression_labels_T/A/V

    def forward() -> dict[str, torch.Tensor]:
        return model(*normalized(batch))

    def losses(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        parts = {k: l1(out[k], labels[k]) for k in "MTAV"}  # trains/multiTask/MLF_DNN.py: tasks "MTAV"
        total = sum(WEIGHTS[k] * parts[k] for k in "MTAV")  # loss += args.<task> * criterion(...)
        return {**parts, "total": total}  # type: ignore[dict-item]

    write(args, "mlf_dnn", model, batch, forward, ("M", "T", "A", "V", "Feature_t", "Feature_a", "Feature_v", "Feature_f"),
          {}, losses, {
              "reference": "MMSA 2.2.1 (PyPI wheel) MMSA/models/multiTask/MLF_DNN.py, trains/multiTask/MLF_DNN.py; "
                           "data_loader.py __normalize",
              "reference_parameters": {"sims": reference_parameters(args.code, "mlf_dnn", module.MLF_DNN)["sims"]},
              "msabench": {"name": "mlf_dnn", "dataset": "sims", "preset": "mmsa", "overrides": {
                  "dims": DIMS, **WIDTHS, **{f"{k}_dropout": 0.0 for k in ("audio", "video", "text", "post_text",
                                                                          "post_audio", "post_video", "post_fusion")}}},
          })


if __name__ == "__main__":
    main()
