"""What Self-MM and TETFN share (MMSA `trains/multiTask/SELF_MM.py` and `TETFN.py`, the same
code): the unimodal label-generation module (ULGM), its weighted L1 loss, the four post
heads and the five Adam groups (BERT decay / no decay, audio, vision, other).

ULGM and the loss live in the model (`loss()` and `on_epoch_start`), not in the trainer. The
label / feature memory is keyed by the training sample's position in the train split
(`batch.index`) and is read and written only in train mode, i.e. only by the trainer's
training batches: validation and test (eval mode) never touch it. Per training batch, in
MMSA's order: the loss uses the current generated labels; then, from the second epoch on,
the labels of the batch are updated from the class centres of the previous batch; then the
batch's detached features are stored and the centres recomputed over the whole memory.
(MMSA does these updates after `backward()`; the loss has already copied the labels it
uses, so updating inside `loss()` gives the same numbers.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel, sum_terms, task_loss
from models.layers.text_encoder import TextEncoder, split_no_decay

ULGM_EPS = 1e-8  # MIN in update_labels
HEADS = ("f", "t", "a", "v")  # fusion and the three unimodal heads


@dataclass(kw_only=True)
class ULGMConfig(ModelConfig):
    """Optimiser groups, post heads and ULGM of MMSA's multi-task trainers (Self-MM's MOSI values)."""

    # optimiser: 5 Adam groups (coupled L2); `lr` / `weight_decay` are the "other" group's
    lr_bert: float = 5e-5  # learning_rate_bert (decay and no-decay BERT groups)
    lr_audio: float = 5e-3  # learning_rate_audio
    lr_video: float = 5e-3  # learning_rate_video
    weight_decay_bert: float = 1e-3  # weight_decay_bert; BERT bias/LayerNorm get 0
    weight_decay_audio: float = 1e-3
    weight_decay_video: float = 1e-3
    # post heads: Dropout -> Linear -> ReLU (the feature F) -> Linear -> ReLU -> Linear
    post_fusion_dim: int = 128
    post_text_dim: int = 32
    post_audio_dim: int = 16
    post_video_dim: int = 32
    post_fusion_dropout: float = 0.0
    post_text_dropout: float = 0.1
    post_audio_dropout: float = 0.1
    post_video_dropout: float = 0.0
    # ULGM
    use_ulgm: bool = True  # off for IEMOCAP (defined for signed regression labels)
    label_bound: float = 3.0  # H: generated labels are clamped to [-H, H]
    exclude_zero: bool = True  # positive centre over y > 0 (MMSA excludeZero) vs y >= 0 (Self-MM repo)


class PostHead(nn.Module):
    """Dropout -> Linear -> ReLU (the feature F) -> Linear -> ReLU -> Linear (the prediction)."""

    def __init__(self, in_dim: int, dim: int, dropout: float, n_out: int):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.layer_1, self.layer_2, self.layer_3 = nn.Linear(in_dim, dim), nn.Linear(dim, dim), nn.Linear(dim, n_out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = F.relu(self.layer_1(self.dropout(x)))
        return feature, self.layer_3(F.relu(self.layer_2(feature)))


def relative_distance(features: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """delta = (|F - C_neg| - |F - C_pos|) / (|F - C_pos| + 1e-8), per sample."""
    d_pos = torch.norm(features - pos, dim=-1)
    d_neg = torch.norm(features - neg, dim=-1)
    return (d_neg - d_pos) / (d_pos + ULGM_EPS)


def generated_label(y_s: torch.Tensor, y_m: torch.Tensor, delta_s: torch.Tensor, delta_f: torch.Tensor,
                    epoch: int, bound: float) -> torch.Tensor:
    """One ULGM update in epoch n (1-based, n >= 2):
    y_hat = 1/2 alpha y_m + 1/2 (y_m + delta_s - delta_f), alpha = delta_s / (delta_f + 1e-8),
    clamped to [-H, H]; y_s <- (n-1)/(n+1) y_s + 2/(n+1) y_hat."""
    alpha = delta_s / (delta_f + ULGM_EPS)
    target = (0.5 * alpha * y_m + 0.5 * (y_m + delta_s - delta_f)).clamp(-bound, bound)
    return (epoch - 1) / (epoch + 1) * y_s + 2 / (epoch + 1) * target


class ULGMMemory:
    """Generated labels, stored features and class centres of every training sample.

    `labels["f"]` is the human label y_m (never updated); `labels[s]` the generated y_s."""

    def __init__(self, train_labels: torch.Tensor, dims: dict[str, int], exclude_zero: bool, bound: float):
        n, device = train_labels.shape[0], train_labels.device
        y_m = train_labels.reshape(-1).float()
        self.labels = {h: y_m.clone() for h in HEADS}
        self.features = {h: torch.zeros(n, dims[h], device=device) for h in HEADS}
        self.centres = {h: (torch.zeros(dims[h], device=device), torch.zeros(dims[h], device=device)) for h in HEADS}
        self.exclude_zero, self.bound = exclude_zero, bound

    def __len__(self) -> int:
        return self.labels["f"].shape[0]

    @torch.no_grad()
    def update(self, features: dict[str, torch.Tensor], index: torch.Tensor, epoch: int) -> None:
        """After a training batch: labels (epoch >= 2), then features, then centres."""
        feats = {h: features[h].detach().float() for h in HEADS}
        if epoch > 1:
            delta_f = relative_distance(feats["f"], *self.centres["f"])
            y_m = self.labels["f"][index]
            for s in "tav":
                delta_s = relative_distance(feats[s], *self.centres[s])
                self.labels[s][index] = generated_label(self.labels[s][index], y_m, delta_s, delta_f,
                                                        epoch, self.bound)
        for h in HEADS:
            self.features[h][index] = feats[h]
        for h in HEADS:
            y = self.labels[h]
            pos = y > 0 if self.exclude_zero else y >= 0
            old_pos, old_neg = self.centres[h]
            self.centres[h] = (class_mean(self.features[h], pos, old_pos), class_mean(self.features[h], y < 0, old_neg))


def class_mean(features: torch.Tensor, members: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """Mean feature of the samples in `members` (bool, N). An empty class keeps its previous
    centre (MMSA would produce NaN; harness decision). No host sync, so no GPU stall per batch."""
    count = members.sum()
    mean = (members.to(features.dtype) @ features) / count.clamp(min=1)
    return torch.where(count > 0, mean, previous)


class ULGMModel(MSAModel):
    """Base of the ULGM models: subclasses build `text`, `audio_net`, `video_net` and call
    `build_heads`; `forward` returns the fusion prediction, `unimodal` {t,a,v} predictions and
    the four head features {f,t,a,v}."""

    cfg: ULGMConfig
    text: TextEncoder
    audio_net: nn.Module
    video_net: nn.Module

    def __init__(self, cfg: ULGMConfig):
        super().__init__(cfg)
        if cfg.use_ulgm and cfg.task != "regression":
            raise ValueError(f"ULGM needs signed regression labels; set use_ulgm=false for task '{cfg.task}'")
        self.feature_dims = {"f": cfg.post_fusion_dim, "t": cfg.post_text_dim,
                             "a": cfg.post_audio_dim, "v": cfg.post_video_dim}
        self.memory: Optional[ULGMMemory] = None  # built from the train labels when training starts
        self.epoch = 1  # 1-based, as in MMSA's loop

    def build_heads(self, fusion_in: int, text_in: int, audio_in: int, video_in: int) -> nn.ModuleDict:
        cfg = self.cfg
        return nn.ModuleDict({
            "f": PostHead(fusion_in, cfg.post_fusion_dim, cfg.post_fusion_dropout, cfg.n_out),
            "t": PostHead(text_in, cfg.post_text_dim, cfg.post_text_dropout, cfg.n_out),
            "a": PostHead(audio_in, cfg.post_audio_dim, cfg.post_audio_dropout, cfg.n_out),
            "v": PostHead(video_in, cfg.post_video_dim, cfg.post_video_dropout, cfg.n_out),
        })

    def loss(self, output: ModelOutput, batch) -> dict[str, torch.Tensor]:
        """MMSA's weighted_loss summed over M, T, A, V; then the ULGM update (train mode)."""
        cfg = self.cfg
        assert output.unimodal is not None and output.features is not None  # forward fills both
        preds = {"f": output.pred, **output.unimodal}
        if not cfg.use_ulgm:  # every head on the human labels, weight 1
            parts = {h: task_loss(preds[h], batch.labels, cfg.task) for h in HEADS}
            return {"total": sum_terms(parts.values()), "task": parts["f"], **{s: parts[s] for s in "tav"}}
        y_m = batch.labels.reshape(-1).float()
        memory = self.memory if self.training and not batch.masked else None
        if memory is not None:
            if int(batch.index.max()) >= len(memory):
                raise IndexError(f"batch.index {int(batch.index.max())} is outside the ULGM memory of "
                                 f"{len(memory)} training samples: loss() in train mode takes training batches only")
            targets = {s: memory.labels[s][batch.index] for s in "tav"}  # copies: the update below leaves them
        else:  # eval mode, or no training run yet: the labels ULGM starts from (y_s = y_m)
            targets = {s: y_m for s in "tav"}
        parts = {"task": (output.pred.reshape(-1).float() - y_m).abs().mean()}
        for s in "tav":
            weight = torch.tanh((targets[s] - y_m).abs())
            parts[s] = (weight * (preds[s].reshape(-1).float() - targets[s]).abs()).mean()
        if memory is not None:
            memory.update(output.features, batch.index, self.epoch)
        return {"total": sum_terms(parts.values()), **parts}

    def on_epoch_start(self, epoch: int, state: Any) -> dict[str, Any]:
        self.epoch = epoch + 1
        if self.cfg.use_ulgm and epoch == 0:  # "init labels": y_s = y_m for every training sample
            labels = state.data.train.labels.to(state.device)
            self.memory = ULGMMemory(labels, self.feature_dims, self.cfg.exclude_zero, self.cfg.label_bound)
        return {}

    def on_epoch_end(self, epoch: int, state: Any) -> dict[str, Any]:
        if self.memory is None:
            return {}
        y_m = self.memory.labels["f"]
        # how far the generated labels have moved from the human ones (mean |y_s - y_m|)
        return {"ulgm_label_shift": {s: float((self.memory.labels[s] - y_m).abs().mean()) for s in "tav"}}

    def param_groups(self) -> list[dict[str, Any]]:
        """MMSA's five Adam groups: BERT (decay / no decay), audio and video sub-networks, the rest."""
        cfg = self.cfg
        bert_decay, bert_no_decay = split_no_decay(self.text)
        sub = {id(p) for m in (self.text, self.audio_net, self.video_net) for p in m.parameters()}
        other = [p for p in self.parameters() if id(p) not in sub]
        return [
            {"name": "bert", "params": bert_decay, "lr": cfg.lr_bert, "weight_decay": cfg.weight_decay_bert},
            {"name": "bert_no_decay", "params": bert_no_decay, "lr": cfg.lr_bert, "weight_decay": 0.0},
            {"name": "audio", "params": list(self.audio_net.parameters()), "lr": cfg.lr_audio,
             "weight_decay": cfg.weight_decay_audio},
            {"name": "video", "params": list(self.video_net.parameters()), "lr": cfg.lr_video,
             "weight_decay": cfg.weight_decay_video},
            {"name": "other", "params": other, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
        ]

    def summary(self) -> dict[str, Any]:
        return {"ulgm": self.cfg.use_ulgm, "exclude_zero": self.cfg.exclude_zero}
