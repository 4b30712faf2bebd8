"""`mean_pool`: each modality mean-pooled over its valid steps, a linear layer per modality,
one linear head over the three representations (an example plugin model, harness decision).

It is separable: `encode` gives each modality's representation from that modality's input
alone and `fuse` maps them to the prediction, so msabench computes Shapley contributions from
one encoding of each batch. The file stands alone: `--include .../mean_pool.py` loads it
without installing the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from models import register_model
from models.base import ModelConfig, ModelOutput, MSAModel
from models.registry import around_preset, choice, uniform


@dataclass(kw_only=True)
class MeanPoolConfig(ModelConfig):
    hidden: int = 16  # width of each modality's representation (harness decision)
    dropout: float = 0.1  # harness decision


def mean_over_steps(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """(B, T, d) -> (B, d): the mean over each sample's first `lengths` steps (all when None)."""
    if lengths is None:
        return x.mean(1)
    mask = (torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]).to(x.dtype)
    return (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)


class MeanPool(MSAModel):
    cfg: MeanPoolConfig

    def __init__(self, cfg: MeanPoolConfig):
        super().__init__(cfg)
        self.enc = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout))
                                  for m, d in zip("tav", cfg.dims, strict=True)})
        self.head = nn.Linear(3 * cfg.hidden, cfg.n_out)

    def encode(self, batch) -> dict[str, torch.Tensor]:
        pooled = {"t": mean_over_steps(batch.text_feats, batch.text_lengths),
                  "a": mean_over_steps(batch.audio, batch.audio_lengths),
                  "v": mean_over_steps(batch.vision, batch.vision_lengths)}
        return {m: self.enc[m](x) for m, x in pooled.items()}

    def fuse(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat([reps["t"], reps["a"], reps["v"]], dim=-1))

    def forward(self, batch) -> ModelOutput:
        reps = self.encode(batch)
        return ModelOutput(pred=self.fuse(reps), features=reps)

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        return {m: list(self.enc[m].parameters()) for m in "tav"}


_TRAINING: dict[str, Any] = dict(optimizer="adam", lr=1e-3, batch_size=32, max_epochs=20, early_stop_patience=5)  # harness decision
PRESETS = {
    ("synthetic", "demo"): MeanPoolConfig(dims=(768, 5, 20), **_TRAINING),  # CPU-sized, the embedded data
    ("mosi", "mmsa"): MeanPoolConfig(dims=(768, 5, 20), setting="unaligned", **_TRAINING),  # MMSA feature widths
    ("mosei", "mmsa"): MeanPoolConfig(dims=(768, 74, 35), setting="unaligned", **_TRAINING),
}

SEARCH_SPACE = {  # `bench tune`: each distribution names its source
    "lr": around_preset(10, source="harness decision: log-uniform [preset/10, preset*10]"),
    "hidden": choice(8, 16, 32, source="harness decision"),
    "dropout": uniform(0.0, 0.5, source="harness decision"),
}


@register_model("mean_pool", config=MeanPoolConfig, presets=PRESETS, default_preset="mmsa", search_space=SEARCH_SPACE,
                display_name="Mean pool (example)", family="harness baseline")
def mean_pool(cfg: MeanPoolConfig) -> MeanPool:
    """Mean-pooled modalities, a linear layer each, a linear head (an example plugin model)."""
    return MeanPool(cfg)
