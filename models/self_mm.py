"""Self-MM: self-supervised multi-task learning with unimodal label generation (Yu et al., AAAI 2021).

Sources: thuiar/Self-MM `models/multiTask/SELF_MM.py`, `trains/multiTask/SELF_MM.py`,
`config/config_regression.py` ("paper" preset) and thuiar/MMSA 2.2.1
`models/multiTask/SELF_MM.py`, `trains/multiTask/SELF_MM.py`, `config/config_regression.json`
("mmsa" preset, the default).

Forward: BERT last-layer [CLS] (the pooler is built but unused, so it never gets a
gradient); audio and vision each through a 1-layer LSTM over the packed true lengths
(clamped to >= 1; on aligned data the loaders give the text length), final hidden state ->
Dropout -> Linear; fusion head
[t; a; v] -> Dropout -> Linear -> ReLU (= F_f) -> Linear -> ReLU -> Linear (= y_m), and the same
head shape per modality (F_s, y_s).

ULGM and the loss live here (`loss()` and `on_epoch_start`), not in the trainer. The
label / feature memory is keyed by the training sample's position in the train split
(`batch.index`) and is read and written only in train mode, i.e. only by the trainer's
training batches: validation and test (eval mode) never touch it. Per training batch, in
MMSA's order: the loss uses the current generated labels; then, from the second epoch on,
the labels of the batch are updated from the class centres of the previous batch; then the
batch's detached features are stored and the centres recomputed over the whole memory.
(MMSA does these updates after `backward()`; the loss has already copied the labels it
uses, so updating inside `loss()` gives the same numbers.)

IEMOCAP: ULGM is off; the four heads are trained on the human labels with weight 1.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel, sum_terms, task_loss
from models.layers.bert_classifier import UNSUPPORTED, bert_preset_table
from models.layers.blocks import AuViSubNet
from models.layers.text_encoder import build_text_encoder, split_no_decay
from models.registry import choice, register_model

ULGM_EPS = 1e-8  # MIN in trains/multiTask/SELF_MM.py update_labels
HEADS = ("f", "t", "a", "v")  # fusion and the three unimodal heads


@dataclass(kw_only=True)
class SelfMMConfig(ModelConfig):
    text_input: str = "ids"  # MMSA `text_bert`
    setting: str = "unaligned"  # need_data_aligned false: unaligned_50 with audio/vision lengths
    text_encoder: str = "bert-base-uncased"  # local dir | "bert-base" | "tiny" | cached hub name
    text_vocab_size: Optional[int] = None  # vocabulary of a named random-init config (tiny)
    # optimiser: 5 Adam groups (coupled L2); `lr` / `weight_decay` are the "other" group's
    lr_bert: float = 5e-5  # learning_rate_bert (decay and no-decay BERT groups)
    lr_audio: float = 5e-3  # learning_rate_audio (MMSA mosi)
    lr_video: float = 5e-3  # learning_rate_video (MMSA mosi)
    weight_decay_bert: float = 1e-3  # weight_decay_bert; BERT bias/LayerNorm get 0
    weight_decay_audio: float = 1e-3
    weight_decay_video: float = 1e-3
    # sub-networks (MMSA mosi); t_bert_dropout is in MMSA's config but never used: no field
    a_lstm_hidden: int = 16
    v_lstm_hidden: int = 32
    a_lstm_dropout: float = 0.0  # dropout on the LSTM's final state
    v_lstm_dropout: float = 0.0
    audio_out: int = 16
    video_out: int = 32
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


# -- ULGM (trains/multiTask/SELF_MM.py, the same in the Self-MM repo and MMSA) -------------
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


class SelfMM(MSAModel):
    cfg: SelfMMConfig

    def __init__(self, cfg: SelfMMConfig):
        super().__init__(cfg)
        if cfg.use_ulgm and cfg.task != "regression":
            raise ValueError(f"Self-MM ULGM needs signed regression labels; set use_ulgm=false for task '{cfg.task}'")
        self.text = build_text_encoder(cfg.text_encoder, cfg.text_vocab_size)
        text_out = self.text.hidden_size  # text_out 768 for bert-base
        self.audio_net = AuViSubNet(cfg.dims[1], cfg.a_lstm_hidden, cfg.audio_out, cfg.a_lstm_dropout)
        self.video_net = AuViSubNet(cfg.dims[2], cfg.v_lstm_hidden, cfg.video_out, cfg.v_lstm_dropout)
        self.heads = nn.ModuleDict({
            "f": PostHead(text_out + cfg.audio_out + cfg.video_out, cfg.post_fusion_dim, cfg.post_fusion_dropout, cfg.n_out),
            "t": PostHead(text_out, cfg.post_text_dim, cfg.post_text_dropout, cfg.n_out),
            "a": PostHead(cfg.audio_out, cfg.post_audio_dim, cfg.post_audio_dropout, cfg.n_out),
            "v": PostHead(cfg.video_out, cfg.post_video_dim, cfg.post_video_dropout, cfg.n_out),
        })
        self.feature_dims = {"f": cfg.post_fusion_dim, "t": cfg.post_text_dim,
                             "a": cfg.post_audio_dim, "v": cfg.post_video_dim}
        self.memory: Optional[ULGMMemory] = None  # built from the train labels when training starts
        self.epoch = 1  # 1-based, as in MMSA's loop

    def encode(self, batch) -> dict[str, torch.Tensor]:
        """The three sub-network outputs: [CLS] (text_out), audio_out, video_out. The LSTMs read
        `batch.audio_lengths` / `vision_lengths`: the files' own for unaligned data; for aligned
        data the loader sets them to the text length sum(input_mask), as MMSA's Self-MM does
        (bench/data/mmsa.py rule 4). Masking the text keeps them, so audio never depends on it."""
        return {
            "t": self.text.cls(batch.text_ids, batch.text_mask, batch.text_segment),
            "a": self.audio_net(batch.audio, batch.audio_lengths),
            "v": self.video_net(batch.vision, batch.vision_lengths),
        }

    def fuse(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.heads["f"](torch.cat([reps["t"], reps["a"], reps["v"]], dim=-1))[1]

    def forward(self, batch) -> ModelOutput:
        reps = self.encode(batch)
        inputs = {"f": torch.cat([reps["t"], reps["a"], reps["v"]], dim=-1), **reps}
        feats, preds = {}, {}
        for h in HEADS:
            feats[h], preds[h] = self.heads[h](inputs[h])
        return ModelOutput(pred=preds["f"], unimodal={s: preds[s] for s in "tav"}, features=feats)

    def loss(self, output: ModelOutput, batch) -> dict[str, torch.Tensor]:
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

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        # each branch: its encoder and its unimodal head; the fusion head is shared
        return {
            "t": [*self.text.parameters(), *self.heads["t"].parameters()],
            "a": [*self.audio_net.parameters(), *self.heads["a"].parameters()],
            "v": [*self.video_net.parameters(), *self.heads["v"].parameters()],
        }

    def summary(self) -> dict[str, Any]:
        return {"ulgm": self.cfg.use_ulgm, "exclude_zero": self.cfg.exclude_zero}


# -- presets ---------------------------------------------------
_COMMON: dict[str, Any] = dict(
    optimizer="adam",  # torch Adam, coupled L2, 5 groups (MMSA trains/multiTask/SELF_MM.py:89; Self-MM :96)
    grad_accum_steps=4,  # update_epochs 4 (the trailing group is applied: harness fix)
    early_stop_patience=8, label_bound=3.0,  # early_stop 8; H 3.0
)
_MMSA_MOSI = SelfMMConfig(  # MMSA config_regression.json self_mm mosi
    dims=(768, 5, 20), batch_size=16, **_COMMON,
    lr_bert=5e-5, lr_audio=5e-3, lr_video=5e-3, lr=1e-3,
    weight_decay_bert=1e-3, weight_decay_audio=1e-3, weight_decay_video=1e-3, weight_decay=1e-3,
    a_lstm_hidden=16, v_lstm_hidden=32, audio_out=16, video_out=32,
    post_fusion_dim=128, post_text_dim=32, post_audio_dim=16, post_video_dim=32,
    post_fusion_dropout=0.0, post_text_dropout=0.1, post_audio_dropout=0.1, post_video_dropout=0.0,
    exclude_zero=True,  # excludeZero true
)
_MMSA_MOSEI = replace(  # MMSA self_mm mosei
    _MMSA_MOSI, dims=(768, 74, 35), batch_size=32,
    lr_bert=5e-5, lr_audio=5e-3, lr_video=1e-4, lr=1e-3,
    weight_decay_bert=1e-3, weight_decay_audio=0.0, weight_decay_video=0.0, weight_decay=1e-2,
    a_lstm_hidden=16, v_lstm_hidden=32,
    post_fusion_dim=128, post_text_dim=32, post_audio_dim=16, post_video_dim=32,
    post_fusion_dropout=0.1, post_text_dropout=0.0, post_audio_dropout=0.0, post_video_dropout=0.0,
)
_MMSA_SIMS = replace(  # MMSA config_regression.json self_mm sims
    _MMSA_MOSI, dims=(768, 33, 709), batch_size=32,
    text_encoder="bert-base-chinese", text_vocab_size=21128,  # pretrained bert-base-chinese (--text-encoder PATH)
    lr_bert=5e-5, lr_audio=5e-3, lr_video=5e-3, lr=1e-3,
    weight_decay_bert=1e-3, weight_decay_audio=1e-2, weight_decay_video=1e-2, weight_decay=1e-3,
    a_lstm_hidden=16, v_lstm_hidden=64, audio_out=16, video_out=32,
    post_fusion_dim=128, post_text_dim=64, post_audio_dim=16, post_video_dim=32,
    post_fusion_dropout=0.0, post_text_dropout=0.1, post_audio_dropout=0.1, post_video_dropout=0.0,
    label_bound=1.0,  # H 1.0: CH-SIMS labels lie in [-1, 1]
)
# CH-SIMS v2: MMSA 2.2.1 has no SIMS v2 configuration; harness decision: the SIMS preset with the
# ch-simsv2s.pkl widths (ch-sims-v2 config feature_dims 768/25/177)
_SIMSV2 = replace(_MMSA_SIMS, dims=(768, 25, 177))
_PAPER_MOSI = replace(  # Self-MM repo config/config_regression.py mosi (the paper's values were lost, issue #2)
    _MMSA_MOSI, batch_size=32,
    lr_bert=5e-5, lr_audio=1e-3, lr_video=1e-4, lr=1e-3,
    weight_decay_bert=1e-3, weight_decay_audio=1e-2, weight_decay_video=1e-3, weight_decay=1e-3,
    a_lstm_hidden=32, v_lstm_hidden=64,
    post_fusion_dim=128, post_text_dim=64, post_audio_dim=16, post_video_dim=32,
    post_fusion_dropout=0.1, post_text_dropout=0.0, post_audio_dropout=0.1, post_video_dropout=0.1,
    exclude_zero=False,  # excludeZero unset: positive centre over y >= 0
)
_PAPER_MOSEI = replace(  # Self-MM repo config_regression.py mosei
    _PAPER_MOSI, dims=(768, 74, 35), batch_size=32,
    lr_bert=5e-5, lr_audio=5e-3, lr_video=1e-4, lr=1e-3,
    weight_decay_bert=1e-3, weight_decay_audio=0.0, weight_decay_video=0.0, weight_decay=1e-2,
    a_lstm_hidden=32, v_lstm_hidden=32,
    post_fusion_dim=128, post_text_dim=32, post_audio_dim=16, post_video_dim=16,
    post_fusion_dropout=0.0, post_text_dropout=0.1, post_audio_dropout=0.0, post_video_dropout=0.1,
)
_IEMOCAP = dict(task="iemocap", n_out=8, use_ulgm=False)  # MOSEI presets, 4 x 2 logits, CE, ULGM off
# synthetic `demo` (harness decision): tiny random-init BERT; lr_bert 5e-4 because it learns
# from scratch; 32 x 2 accumulated = MMSA's effective 16 x 4 and its 21 steps per 1284-sample
# epoch, in half the (CPU-bound) batches; 4 epochs, so ULGM updates labels in 3 of them
_DEMO = replace(_MMSA_MOSI, text_encoder="tiny", text_vocab_size=2048, lr_bert=5e-4,
                batch_size=32, grad_accum_steps=2, max_epochs=4, early_stop_patience=2)

PRESETS = {**bert_preset_table(_MMSA_MOSI, _MMSA_MOSEI, _PAPER_MOSI, _PAPER_MOSEI, _IEMOCAP, _DEMO),
           ("sims", "mmsa"): _MMSA_SIMS, ("simsv2", "mmsa"): _SIMSV2}
# `bench tune` search space: MMSA 2.2.1 config/config_tune.json `self_mm` debugParams (MMSA name in
# brackets). Single-valued there, so left at the preset's: learning_rate_bert 5e-5, audio_out 16,
# video_out 32, a/v_lstm_dropout 0, H 3.0 (t_bert_dropout is unused, text_out is BERT's 768).
_TUNE = "MMSA 2.2.1 config_tune.json self_mm"
SEARCH_SPACE = {
    "batch_size": choice(16, 32, source=_TUNE),
    "lr_audio": choice(1e-4, 1e-3, 5e-3, source=f"{_TUNE} [learning_rate_audio]"),
    "lr_video": choice(1e-4, 1e-3, 5e-3, source=f"{_TUNE} [learning_rate_video]"),
    "lr": choice(1e-4, 1e-3, source=f"{_TUNE} [learning_rate_other]"),
    "weight_decay_bert": choice(1e-3, 1e-2, source=_TUNE),
    "weight_decay": choice(1e-3, 1e-2, source=f"{_TUNE} [weight_decay_other]"),
    "weight_decay_audio": choice(0.0, 1e-3, 1e-2, source=_TUNE),
    "weight_decay_video": choice(0.0, 1e-3, 1e-2, source=_TUNE),
    "a_lstm_hidden": choice(16, 32, source=f"{_TUNE} [a_lstm_hidden_size]"),
    "v_lstm_hidden": choice(32, 64, source=f"{_TUNE} [v_lstm_hidden_size]"),
    "post_fusion_dim": choice(64, 128, source=_TUNE),
    "post_text_dim": choice(32, 64, source=_TUNE),
    "post_audio_dim": choice(16, 32, source=_TUNE),
    "post_video_dim": choice(16, 32, source=_TUNE),
    "post_fusion_dropout": choice(0.1, 0.0, source=_TUNE),
    "post_text_dropout": choice(0.1, 0.0, source=_TUNE),
    "post_audio_dropout": choice(0.1, 0.0, source=_TUNE),
    "post_video_dropout": choice(0.1, 0.0, source=_TUNE),
}


@register_model("self_mm", config=SelfMMConfig, presets=PRESETS, default_preset="mmsa", unsupported=UNSUPPORTED,
                search_space=SEARCH_SPACE,
                display_name="Self-MM", paper="Yu et al., AAAI 2021",
                reference="https://github.com/thuiar/Self-MM; MMSA==2.2.1",
                family="BERT + fusion", order=50)
def self_mm(cfg: SelfMMConfig) -> SelfMM:
    """Self-MM (Yu et al., AAAI 2021): BERT + LSTMs, fusion + unimodal heads, ULGM labels."""
    return SelfMM(cfg)
