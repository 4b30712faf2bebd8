"""What the goldens of MMSA 2.2.1's classic models (EF-LSTM, LF-DNN, MLF-DNN, MFN, Graph-MFN)
share: importing one model file from the unpacked wheel, the padded batch, MMSA's input steps
(`need_normalized` time averaging, AMIO's avg-pool alignment) and the eval / train-mode run.

Each model's MMSA trainer (`MMSA/trains/singleTask/<MODEL>.py`) trains with `nn.L1Loss()` on
`outputs['M']` against labels viewed (B, 1); MLF-DNN's weights its four heads' L1 losses."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import torch
from _golden import grads, import_reference, padded, perturb_, record_hooks, save_golden
from torch import nn

PACKAGES = ("MMSA", "MMSA.models", "MMSA.models.singleTask", "MMSA.models.multiTask", "MMSA.models.subNets")
ALIGNED = [8, 5, 7, 3, 8, 6]  # aligned files: one length per sample for all three modalities, T = 8
UNALIGNED = {"t": [10, 7, 9, 4, 10, 6], "a": [14, 9, 12, 5, 11, 14], "v": [12, 12, 7, 3, 9, 10]}
PATCH = ("package __init__ files of MMSA, MMSA.models and its singleTask/multiTask/subNets packages not run "
         "(they import the whole framework); subNets gets SubNet/TextSubNet/AlignSubNet from its own files; "
         "no reference code changed")


def import_mmsa(code: Any, module: str) -> Any:
    """`module` from the wheel, with the subNets names that `from ..subNets import X` reads."""
    import_reference(code, "MMSA.models.subNets.FeatureNets", stub_packages=PACKAGES)
    import sys

    subnets = sys.modules["MMSA.models.subNets"]
    for file, names in (("FeatureNets", ("SubNet", "TextSubNet")), ("AlignNets", ("AlignSubNet",))):
        mod = import_reference(code, f"MMSA.models.subNets.{file}")
        for n in names:
            setattr(subnets, n, getattr(mod, n))
    return import_reference(code, module)


def feature_batch(gen: torch.Generator, dims: tuple[int, int, int], lengths: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """Padded text/audio/vision features (zero after each length), their lengths, labels, index."""
    n = len(lengths["t"])
    return {
        "text_feats": padded(gen, lengths["t"], dims[0]),
        "audio": padded(gen, lengths["a"], dims[1]),
        "vision": padded(gen, lengths["v"], dims[2]),
        **{f"{k}_lengths": torch.tensor(lengths[m]) for k, m in (("text", "t"), ("audio", "a"), ("vision", "v"))},
        "labels": torch.randn(n, generator=gen).clamp(-3, 3),
        "index": torch.arange(n),
    }


def normalized(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MMSA data_loader.py `__normalize` (need_normalized): audio and vision averaged over every
    padded step, NaN -> 0, kept as a length-1 sequence; text unchanged."""
    mean = [x.mean(dim=1, keepdim=True) for x in (batch["audio"], batch["vision"])]
    return batch["text_feats"], *(torch.where(m != m, torch.zeros_like(m), m) for m in mean)  # type: ignore[return-value]


def l1(output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """trains/singleTask/<MODEL>.py: `nn.L1Loss()(outputs['M'], labels.view(-1, 1))`."""
    return nn.L1Loss()(output, labels.view(-1, 1))


def reference_parameters(code: Path, key: str, build: Callable[[SimpleNamespace], nn.Module]) -> dict[str, int]:
    """MMSA's parameter count (utils/functions.py count_parameters: trainable parameters) of the
    model `build(args)` makes in each dataset configuration of config_regression.json[key],
    with the data settings MMSA's config.py picks and AMIO's seq_lens (the text length)."""
    config = json.loads((code / "MMSA" / "config" / "config_regression.json").read_text())
    common, counts = config[key]["commonParams"], {}
    for dataset, params in config[key]["datasetParams"].items():
        data_cfg = config["datasetCommonParams"][dataset]
        data = data_cfg["aligned" if common["need_data_aligned"] and "aligned" in data_cfg else "unaligned"]
        args = SimpleNamespace(**{**common, **data, **params, "train_mode": "regression", "device": "cpu"})
        if common.get("need_model_aligned"):
            args.seq_lens = data["seq_lens"][0]  # AMIO: args['seq_lens'] = alignNet.get_seq_len()
        counts[dataset] = sum(p.numel() for p in build(args).parameters() if p.requires_grad)
    return counts


def write(args: argparse.Namespace, name: str, model: nn.Module, batch: dict[str, torch.Tensor],
          forward: Callable[[], dict[str, torch.Tensor]], eval_keys: tuple[str, ...], hooks: dict[str, str],
          losses: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]], meta: dict[str, Any],
          extra_weights: Callable[[], dict[str, torch.Tensor]] | None = None) -> None:
    """Eval outputs + hooked intermediates, then one train-mode pass: loss parts, gradients of `total`."""
    captured = record_hooks(model, hooks)
    model.eval()
    with torch.no_grad():
        out = forward()
    evals = {**{k: out[k] for k in eval_keys}, **captured}
    weights = {k: v.clone() for k, v in {**model.state_dict(), **(extra_weights() if extra_weights else {})}.items()}
    # (cloned before the train pass moves the BatchNorm statistics)
    model.train()
    parts = losses(forward())
    parts["total"].backward()
    save_golden(args, name, {"weights": weights, "batch": batch, "eval": evals, "loss": parts, "grad": grads(model)}, {
        "model": name, "repository": "https://github.com/thuiar/MMSA", "version": "mmsa==2.2.1",
        "patches": [PATCH], **meta,
    }, model=model)


__all__ = ["ALIGNED", "UNALIGNED", "feature_batch", "import_mmsa", "l1", "normalized", "perturb_", "write"]
