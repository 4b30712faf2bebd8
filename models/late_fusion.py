"""`late_fusion`: a tiny reference model for fast pipeline tests (harness decision).

Each modality is mean-pooled over its valid steps (text: pre-extracted features, or a
small token embedding when the config reads token ids), passed through a per-modality
MLP to a unimodal prediction; the fused prediction is a linear layer over the three
hidden vectors. A few thousand parameters; trains in seconds on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel, sum_terms, task_loss
from models.layers.seq_encoder import masked_mean
from models.protocol import lengths_mask
from models.registry import around_preset, choice, register_model, uniform


@dataclass(kw_only=True)
class LateFusionConfig(ModelConfig):
    hidden: int = 32
    token_dim: int = 32  # token-embedding width when text_input == "ids"
    vocab_size: int = 30522  # bert-base-uncased vocabulary
    dropout: float = 0.1
    unimodal_weight: float = 0.5  # weight of the mean unimodal task loss


def _masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return masked_mean(x, lengths_mask(lengths, x.shape[1]))


class LateFusion(MSAModel):
    cfg: LateFusionConfig

    def __init__(self, cfg: LateFusionConfig):
        super().__init__(cfg)
        if cfg.text_input == "ids":
            self.token_emb = nn.Embedding(cfg.vocab_size, cfg.token_dim, padding_idx=0)
            d_text = cfg.token_dim
        else:
            d_text = cfg.dims[0]
        self.branch = nn.ModuleDict({
            m: nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout))
            for m, d_in in zip("tav", (d_text, cfg.dims[1], cfg.dims[2]), strict=True)
        })
        self.unimodal_head = nn.ModuleDict({m: nn.Linear(cfg.hidden, cfg.n_out) for m in "tav"})
        self.fused_head = nn.Linear(3 * cfg.hidden, cfg.n_out)

    def _pooled_text(self, batch) -> torch.Tensor:
        if self.cfg.text_input == "ids":
            return _masked_mean(self.token_emb(batch.text_ids), batch.text_mask.sum(1))
        lengths = batch.text_lengths if batch.text_lengths is not None else torch.full(
            (len(batch),), batch.text_feats.shape[1], device=batch.text_feats.device)
        return _masked_mean(batch.text_feats, lengths)

    def encode(self, batch) -> dict[str, torch.Tensor]:
        pooled = {"t": self._pooled_text(batch),
                  "a": _masked_mean(batch.audio, batch.audio_lengths),
                  "v": _masked_mean(batch.vision, batch.vision_lengths)}
        return {m: self.branch[m](x) for m, x in pooled.items()}

    def fuse(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fused_head(torch.cat([reps["t"], reps["a"], reps["v"]], dim=-1))

    def forward(self, batch) -> ModelOutput:
        h = self.encode(batch)
        uni = {m: self.unimodal_head[m](h[m]) for m in "tav"}
        return ModelOutput(pred=self.fuse(h), unimodal=uni, features=h)

    def loss(self, output: ModelOutput, batch) -> dict[str, torch.Tensor]:
        assert output.unimodal is not None  # forward fills it
        task = task_loss(output.pred, batch.labels, self.cfg.task)
        # each unimodal head learns its own label where the data has one (CH-SIMS labels_t/a/v), else
        # the multimodal label (harness decision, as MMSA's multi-task models do)
        uni = sum_terms(task_loss(p, _unimodal_label(batch, m), self.cfg.task) for m, p in output.unimodal.items()) / 3
        return {"total": task + self.cfg.unimodal_weight * uni, "task": task, "unimodal": uni}

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        groups = {m: [*self.branch[m].parameters(), *self.unimodal_head[m].parameters()] for m in "tav"}
        if self.cfg.text_input == "ids":
            groups["t"] += list(self.token_emb.parameters())
        return groups


def _unimodal_label(batch, m: str) -> torch.Tensor:
    label = getattr(batch, f"labels_{m}", None)
    return batch.labels if label is None else label


_BASE: dict[str, Any] = dict(optimizer="adam", lr=1e-3, batch_size=32, max_epochs=30, early_stop_patience=5)  # harness decision
PRESETS = {
    ("synthetic", "demo"): LateFusionConfig(dims=(768, 5, 20), **_BASE),
    ("mosi", "mmsa"): LateFusionConfig(dims=(768, 5, 20), setting="unaligned", **_BASE),
    ("mosei", "mmsa"): LateFusionConfig(dims=(768, 74, 35), setting="unaligned", **_BASE),
    # CH-SIMS: MMSA unaligned_39.pkl widths; CH-SIMS v2: ch-simsv2s.pkl widths (ch-sims-v2 config feature_dims)
    ("sims", "mmsa"): LateFusionConfig(dims=(768, 33, 709), setting="unaligned", vocab_size=21128, **_BASE),
    ("simsv2", "mmsa"): LateFusionConfig(dims=(768, 25, 177), setting="unaligned", vocab_size=21128, **_BASE),
    ("iemocap", "mmsa"): LateFusionConfig(task="iemocap", n_out=8, dims=(300, 74, 35), setting="aligned", **_BASE),
}
# `bench tune` search space (harness decision: late_fusion is the harness's own model)
SEARCH_SPACE = {"lr": around_preset(10, source="harness decision: log-uniform [preset/10, preset*10]"),
                "dropout": uniform(0.0, 0.5, source="harness decision"),
                "hidden": choice(16, 32, 64, source="harness decision"),
                "unimodal_weight": uniform(0.0, 1.0, source="harness decision")}


@register_model("late_fusion", config=LateFusionConfig, presets=PRESETS, default_preset="mmsa",
                search_space=SEARCH_SPACE,
                display_name="Late fusion",
                family="harness baseline", order=10)
def late_fusion(cfg: LateFusionConfig) -> LateFusion:
    """Late fusion of mean-pooled modalities: a tiny model for pipeline tests."""
    return LateFusion(cfg)
