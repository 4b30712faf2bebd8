"""MMSA 2.2.1's sub-networks for TFN, LMF and their multi-task versions (MMSA
`models/subNets/FeatureNets.py`, `models/singleTask/TFN.py`, `LMF.py`, `multiTask/MTFN.py`,
`MLMF.py`), with MMSA's parameter names inside each block.

MMSA feeds these models audio and vision averaged over time (`data_loader.py`
`need_normalized`: the mean over every padded step, NaN -> 0) and the whole padded text
sequence to an LSTM; `ModalityEncoders` does the same from a `Batch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.init import xavier_normal_

from models.base import ModelConfig, ModelOutput, MSAModel, task_loss
from models.layers.blocks import pack
from models.layers.mmsa_align import time_mean
from models.protocol import Batch


class SubNet(nn.Module):
    """BatchNorm -> dropout -> three Linear+ReLU (MMSA FeatureNets.SubNet, audio and vision)."""

    def __init__(self, in_size: int, hidden_size: int, dropout: float):
        super().__init__()
        self.norm = nn.BatchNorm1d(in_size)
        self.drop = nn.Dropout(p=dropout)
        self.linear_1 = nn.Linear(in_size, hidden_size)
        self.linear_2 = nn.Linear(hidden_size, hidden_size)
        self.linear_3 = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(self.norm(x))
        for layer in (self.linear_1, self.linear_2, self.linear_3):
            y = F.relu(layer(y))
        return y


class TextSubNet(nn.Module):
    """LSTM over the whole (padded) sequence -> last hidden state -> dropout -> Linear (MMSA
    FeatureNets.TextSubNet). As in MMSA, a one-layer LSTM sets the dropout to 0."""

    def __init__(self, in_size: int, hidden_size: int, out_size: int, num_layers: int = 1, dropout: float = 0.2,
                 bidirectional: bool = False):
        super().__init__()
        if num_layers == 1:
            dropout = 0.0
        self.rnn = nn.LSTM(in_size, hidden_size, num_layers=num_layers, dropout=dropout,
                           bidirectional=bidirectional, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.linear_1 = nn.Linear(hidden_size, out_size)

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """`lengths` (a harness switch, `packed_text`): stop at each sample's last valid step."""
        _, (h_n, _) = self.rnn(x if lengths is None else pack(x, lengths))
        return self.linear_1(self.dropout(h_n[0]))  # MMSA: final_states[0].squeeze(0)


class ModalityEncoders(nn.ModuleDict):
    """{"t": TextSubNet, "a": SubNet, "v": SubNet} on MMSA's inputs (text sequence, time-averaged
    audio and vision). hidden_dims and dropouts in msabench's t/a/v order."""

    def __init__(self, dims: tuple[int, int, int], hidden_dims: tuple[int, int, int], text_out: int,
                 dropouts: tuple[float, float, float], packed_text: bool = False):
        super().__init__({
            "t": TextSubNet(dims[0], hidden_dims[0], text_out, dropout=dropouts[0]),
            "a": SubNet(dims[1], hidden_dims[1], dropouts[1]),
            "v": SubNet(dims[2], hidden_dims[2], dropouts[2]),
        })
        self.packed_text = packed_text

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        lengths = batch.text_lengths if self.packed_text else None
        return {"t": self["t"](batch.text_feats, lengths), "a": self["a"](time_mean(batch.audio)[:, 0]),
                "v": self["v"](time_mean(batch.vision)[:, 0])}


class PostLayers(nn.Module):
    """dropout -> Linear+ReLU -> Linear+ReLU -> Linear (MMSA's post_*_layer_1..3)."""

    def __init__(self, in_size: int, hidden: int, out_size: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        self.layer_1 = nn.Linear(in_size, hidden)
        self.layer_2 = nn.Linear(hidden, hidden)
        self.layer_3 = nn.Linear(hidden, out_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.layer_1(self.dropout(x)))
        return self.layer_3(F.relu(self.layer_2(y)))


def with_one(h: torch.Tensor) -> torch.Tensor:
    """[1, h]: the constant MMSA prepends before the fusion products."""
    return torch.cat((torch.ones_like(h[:, :1]), h), dim=1)


def tensor_fusion(reps: dict[str, torch.Tensor]) -> torch.Tensor:
    """TFN's flattened outer product of [1, h_a] x [1, h_v] x [1, h_t], index (a, v, t) as MMSA."""
    a, v, t = (with_one(reps[m]) for m in "avt")
    av = (a.unsqueeze(2) * v.unsqueeze(1)).reshape(a.shape[0], -1, 1)
    return (av * t.unsqueeze(1)).reshape(a.shape[0], -1)


class TFNHead(nn.Module):
    """Tensor fusion -> post-fusion layers -> sigmoid * 6 - 3 for regression (MMSA TFN/MTFN).
    output_range / output_shift are MMSA's frozen parameters (counted, never trained)."""

    def __init__(self, hidden: dict[str, int], post_fusion_dim: int, n_out: int, dropout: float):
        super().__init__()
        width = (hidden["t"] + 1) * (hidden["v"] + 1) * (hidden["a"] + 1)
        self.post_fusion = PostLayers(width, post_fusion_dim, n_out, dropout)
        self.output_range = nn.Parameter(torch.tensor([6.0]), requires_grad=False)
        self.output_shift = nn.Parameter(torch.tensor([-3.0]), requires_grad=False)

    def forward(self, reps: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction, fusion tensor)."""
        fused = tensor_fusion(reps)
        out = self.post_fusion(fused)
        if out.shape[-1] == 1:  # regression
            out = torch.sigmoid(out) * self.output_range + self.output_shift
        return out, fused


class LowRankFusion(nn.Module):
    """LMF: per-modality factors (rank, d+1, n_out), product over modalities, then a learned
    weighting of the rank components plus a bias (MMSA LMF/MLMF)."""

    def __init__(self, hidden: dict[str, int], rank: int, n_out: int):
        super().__init__()
        self.factor = nn.ParameterDict({m: nn.Parameter(torch.empty(rank, hidden[m] + 1, n_out)) for m in "avt"})
        self.fusion_weights = nn.Parameter(torch.empty(1, rank))
        self.fusion_bias = nn.Parameter(torch.zeros(1, n_out))
        for p in (*self.factor.values(), self.fusion_weights):
            xavier_normal_(p)

    def forward(self, reps: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction (B, n_out), rank components (B, rank, n_out))."""
        a, v, t = (torch.matmul(with_one(reps[m]), self.factor[m]) for m in "avt")
        zy = (a * v * t).permute(1, 0, 2)
        out = torch.matmul(self.fusion_weights, zy).squeeze(1) + self.fusion_bias
        return out, zy


class UnimodalHeads(nn.ModuleDict):
    """MTFN/MLMF's per-modality prediction heads on the sub-network outputs."""

    def __init__(self, hidden: dict[str, int], post_dims: tuple[int, int, int], n_out: int,
                 dropouts: tuple[float, float, float]):
        super().__init__({m: PostLayers(hidden[m], d, n_out, p) for m, d, p in zip("tav", post_dims, dropouts, strict=True)})

    def forward(self, reps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self[m](reps[m]) for m in "tav"}


def unimodal_targets(batch: Batch) -> tuple[dict[str, torch.Tensor], bool]:
    """({"t","a","v"} -> labels of each head, whether they are the dataset's unimodal labels).
    Without unimodal labels (synthetic) every head learns the multimodal label (harness
    decision: MMSA runs MTFN/MLMF on SIMS only)."""
    given = {"t": batch.labels_t, "a": batch.labels_a, "v": batch.labels_v}
    if all(x is not None for x in given.values()):
        return {m: x for m, x in given.items() if x is not None}, True
    return {m: batch.labels for m in "tav"}, False


def multitask_loss(pred: torch.Tensor, unimodal: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                   labels: torch.Tensor, weights: tuple[float, float, float, float], task: str) -> dict[str, torch.Tensor]:
    """MMSA trains/multiTask/MTFN.py: total = M*L(fused) + T*L(text) + A*L(audio) + V*L(vision)."""
    parts = {"task": task_loss(pred, labels, task), **{m: task_loss(unimodal[m], targets[m], task) for m in "tav"}}
    total = weights[0] * parts["task"]
    for w, m in zip(weights[1:], "tav", strict=True):
        total = total + w * parts[m]
    return {"total": total, **parts}


def params_of(*modules: nn.Module) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters() if p.requires_grad]


def subnet_groups(encoders: ModalityEncoders, lr: float, weight_decays: Iterable[float]) -> list[dict]:
    """MTFN/MLMF's optimizer groups of the text, audio and vision sub-networks, each with its decay."""
    names = {"t": "text_subnet", "a": "audio_subnet", "v": "video_subnet"}
    return [{"name": names[m], "params": params_of(encoders[m]), "lr": lr, "weight_decay": wd}
            for m, wd in zip("tav", weight_decays, strict=True)]


def lmf_groups(fusion: LowRankFusion, others: list[nn.Parameter], lr: float, factor_lr: float,
               weight_decay: float, train_fusion_weights: bool) -> list[dict[str, Any]]:
    """MMSA trains/singleTask/LMF.py: factors at factor_lr, the rest at lr, one coupled decay;
    the fusion weights/bias in a group at lr 0 unless `train_fusion_weights` (then at factor_lr)."""
    weights = [fusion.fusion_weights, fusion.fusion_bias]
    return [
        {"name": "factors", "params": list(fusion.factor.values()), "lr": factor_lr, "weight_decay": weight_decay},
        {"name": "fusion_weights", "params": weights, "lr": factor_lr if train_fusion_weights else 0.0,
         "weight_decay": weight_decay},
        {"name": "other", "params": others, "lr": lr, "weight_decay": weight_decay},
    ]


@dataclass(kw_only=True)
class MultiTaskConfig(ModelConfig):
    """The fields MTFN and MLMF share; each model's config gives MMSA's defaults."""

    loss_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)  # MMSA M, T, A, V
    packed_text: bool = False  # True: the text LSTM stops at each sample's last valid step (MMSA: runs over the padding)
    text_weight_decay: float = 0.0
    audio_weight_decay: float = 0.0
    video_weight_decay: float = 0.0


class MultiTaskModel(MSAModel):
    """What MTFN and MLMF share: sub-networks, unimodal heads, MMSA's weighted multi-task L1
    loss, and a summary saying whether the heads learned unimodal labels."""

    cfg: MultiTaskConfig
    subnet: ModalityEncoders
    heads: UnimodalHeads
    unimodal_labels: Optional[bool] = None  # set by `loss`: True when the batch carried labels_t/a/v

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.subnet.encode(batch)

    def loss(self, output: ModelOutput, batch: Batch) -> dict[str, torch.Tensor]:
        assert output.unimodal is not None  # forward fills it
        targets, self.unimodal_labels = unimodal_targets(batch)
        return multitask_loss(output.pred, output.unimodal, targets, batch.labels, self.cfg.loss_weights,
                              self.cfg.task)

    def summary(self) -> dict[str, Any]:
        used = {True: "the dataset's unimodal labels (labels_t/a/v)",
                False: "none in the data: every head learned the multimodal label", None: "not trained"}
        return {"unimodal_labels": used[self.unimodal_labels]}

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        return {m: [*self.subnet[m].parameters(), *self.heads[m].parameters()] for m in "tav"}
