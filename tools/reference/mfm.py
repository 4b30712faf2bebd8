"""Golden for MFM against MMSA 2.2.1 (`pip download --no-deps mmsa==2.2.1`, wheel unpacked;
--code is the folder holding `MMSA/`).

    python tools/reference/mfm.py --code /path/to/unpacked/mmsa

MMSA's MFM (with its MFN encoder) in its MOSI configuration (aligned `text` features, loss
weights lda_mmd 100, lda_xl/xa/xv 0.5/0.01/0.5) at tiny widths, dropout 0. Intermediates: the
factors z_l/z_a/z_v (encoder outputs), MFN's `L`, z_y and f_y. Train mode: MMSA's trainer loss
(L1 + generative + lda_mmd x MMD), after MMSA's AMIO alignment of audio/vision to the text's
length (AlignSubNet avg_pool: the batch's three lengths differ); the four N(0, I) samples the MMD draws (`torch.randn`) are
recorded in order and replayed into msabench's pass (its `torch.randn_like` calls).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from _golden import grads, import_reference, padded, parse_args, perturb_, record_hooks, save_golden

DIMS = (12, 5, 7)  # MMSA mosi (768, 5, 20), narrowed
# text 7 steps, audio 10, vision 5 (zeros after each length): MMSA's AMIO aligns them to the text
# (AlignSubNet avg_pool, as for every need_model_aligned model when the lengths differ)
LENGTHS = {"t": [7, 5, 6, 3, 7, 4], "a": [10, 8, 9, 5, 10, 6], "v": [5, 4, 5, 2, 5, 3]}
ARCH = {"hidden_dims": (8, 4, 6), "mem_size": 5, "z_sizes": (6, 5, 4, 3), "f_sizes": (5, 4, 3, 6), "out_hidden": 7,
        "att1": (9, 0.0), "att2": (4, 0.0), "gamma1": (3, 0.0), "gamma2": (5, 0.0)}
LOSS_WEIGHTS = {"lda_mmd": 100.0, "lda_xl": 0.5, "lda_xa": 0.01, "lda_xv": 0.5}  # MMSA mosi


def reference_args() -> SimpleNamespace:
    (zy, zl, za, zv), (fy, fl, fa, fv) = ARCH["z_sizes"], ARCH["f_sizes"]
    nets = {f"{ref}Config": {"shapes": ARCH[ours][0], "drop": 0.0}
            for ref, ours in (("NN1", "att1"), ("NN2", "att2"), ("gamma1", "gamma1"), ("gamma2", "gamma2"))}
    return SimpleNamespace(
        feature_dims=DIMS, hidden_dims=ARCH["hidden_dims"], memsize=ARCH["mem_size"], windowsize=2,
        zy_size=zy, zl_size=zl, za_size=za, zv_size=zv, fy_size=fy, fl_size=fl, fa_size=fa, fv_size=fv,
        zy_to_fy_dropout=0.0, zl_to_fl_dropout=0.0, za_to_fa_dropout=0.0, zv_to_fv_dropout=0.0, fy_to_y_dropout=0.0,
        outConfig={"shapes": ARCH["out_hidden"], "drop": 0.0}, **nets, **LOSS_WEIGHTS,
        train_mode="regression", num_classes=1, device="cpu",
    )


class RecordedRandn:
    """Records every `torch.randn` result (MFM's MMD prior samples) while active."""

    def __enter__(self) -> "RecordedRandn":
        self.draws: list[torch.Tensor] = []
        self._orig = torch.randn

        def recording(*args: Any, **kwargs: Any) -> torch.Tensor:
            out = self._orig(*args, **kwargs)
            self.draws.append(out.detach().clone())
            return out

        torch.randn = recording  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        torch.randn = self._orig  # type: ignore[assignment]


def mmsa_parameter_counts(code: Path, mfm_class: Any) -> dict[str, int]:
    """Parameters of MMSA's MFM built from config_regression.json for each dataset it configures."""
    config = json.loads((code / "MMSA/config/config_regression.json").read_text())
    common = config["datasetCommonParams"]
    counts = {}
    for dataset, params in config["mfm"]["datasetParams"].items():
        data = common[dataset].get("aligned", common[dataset]["unaligned"])  # need_data_aligned: aligned if any
        args = SimpleNamespace(**params, feature_dims=data["feature_dims"], train_mode="regression", num_classes=1,
                               device="cpu")
        counts[dataset] = sum(p.numel() for p in mfm_class(args).parameters())
    return counts


def captured_forward(module: torch.nn.Module, key: str, into: dict[str, torch.Tensor]) -> None:
    """Record `module`'s output under `key` (MFN's `L`): MFM calls its encoders' `.forward`
    directly, which forward hooks do not see."""
    original = module.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        into[key] = (out["L"] if isinstance(out, dict) else out).detach()
        return out

    module.forward = forward  # type: ignore[method-assign]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    mfm_module = import_reference(args.code, "MMSA.models.singleTask.MFM",
                                  stub_packages=("MMSA", "MMSA.models", "MMSA.models.singleTask"))
    align_module = import_reference(args.code, "MMSA.models.subNets.AlignNets", stub_packages=("MMSA.models.subNets",))
    gen = torch.Generator().manual_seed(args.seed)
    model = mfm_module.MFM(reference_args())
    perturb_(model, gen)
    batch = {
        "text_feats": padded(gen, LENGTHS["t"], DIMS[0]), "audio": padded(gen, LENGTHS["a"], DIMS[1]),
        "vision": padded(gen, LENGTHS["v"], DIMS[2]),
        **{f"{k}_lengths": torch.tensor(LENGTHS[m]) for k, m in (("text", "t"), ("audio", "a"), ("vision", "v"))},
        "labels": torch.randn(6, generator=gen).clamp(-3, 3), "index": torch.arange(6),
    }
    align = align_module.AlignSubNet(SimpleNamespace(feature_dims=DIMS, seq_lens=[max(LENGTHS[m]) for m in "tav"]),
                                     "avg_pool")
    hooked = record_hooks(model, {"zy": "last_to_zy_fc1", "fy": "zy_to_fy_fc2"}, {"fy": F.relu})
    for key, path in (("zl", "encoder_l"), ("za", "encoder_a"), ("zv", "encoder_v"), ("mfn", "mfn_encoder")):
        captured_forward(model.get_submodule(path), key, hooked)

    def run() -> tuple[torch.Tensor, ...]:
        return model(*align(batch["text_feats"], batch["audio"], batch["vision"]))  # AMIO.forward

    model.eval()
    with torch.no_grad():
        evals = {"pred": run()[0], **{k: v.clone() for k, v in hooked.items()}}
    model.train()
    with RecordedRandn() as draws:
        pred, gen_loss, mmd_loss, missing_loss = run()
    # trains/singleTask/MFM.py do_train
    disc = torch.nn.L1Loss()(pred.squeeze(1), batch["labels"].view(-1, 1).squeeze())
    mmd_weighted = LOSS_WEIGHTS["lda_mmd"] * mmd_loss
    total = disc + gen_loss + mmd_weighted + missing_loss
    total.backward()
    save_golden(args, "mfm", {
        "weights": dict(model.state_dict()), "batch": batch, "eval": evals,
        "loss": {"L1": disc, "gen": gen_loss, "mmd": mmd_weighted, "total": total}, "grad": grads(model),
        "state": {f"randn_like.{i}": t for i, t in enumerate(draws.draws)},
    }, {
        "model": "mfm", "reference": "MMSA 2.2.1 (PyPI wheel) MMSA/models/singleTask/MFM.py, MFN.py, trains/singleTask/MFM.py",
        "repository": "https://github.com/thuiar/MMSA", "version": "mmsa==2.2.1",
        "patches": [
            "package __init__ files of MMSA, MMSA.models, MMSA.models.singleTask, MMSA.models.subNets not run (they import the whole "
            "framework); no reference code changed",
            "torch.randn recorded during the train-mode forward (the MMD prior samples, stored as randn_like.i: "
            "msabench draws them with torch.randn_like)",
        ],
        "reference_parameters": mmsa_parameter_counts(args.code, mfm_module.MFM),
        "msabench": {"name": "mfm", "dataset": "mosi", "preset": "mmsa", "overrides": {
            "dims": DIMS, **ARCH, "z_to_f_dropout": (0.0, 0.0, 0.0, 0.0), "fy_to_y_dropout": 0.0,
            "lda_mmd": LOSS_WEIGHTS["lda_mmd"], "lda_x": (0.5, 0.01, 0.5)}},
    }, model=model)


if __name__ == "__main__":
    main()
