"""MLF-DNN: multi-task late-fusion DNN (Yu et al., ACL 2020, the CH-SIMS paper; MMSA's baseline).

Source: thuiar/MMSA 2.2.1 `models/multiTask/MLF_DNN.py`, `trains/multiTask/MLF_DNN.py` and
`config/config_regression.json` ("mmsa" preset, the default). LF-DNN's encoders and fusion head
(models/layers/late_fusion_dnn.py) plus one head per modality on its encoding; the loss is
M·L1(fused) + T·L1(text) + A·L1(audio) + V·L1(vision). MMSA trains it on CH-SIMS only (its
trainer asserts `dataset_name == 'sims'`), with SIMS's unimodal labels for the T/A/V heads; on
data without unimodal labels (synthetic) the heads learn the multimodal label (harness decision),
and `summary()["unimodal_labels"]` records which it was.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

import torch
from torch import nn

from models.base import ModelOutput, task_loss
from models.layers.late_fusion_dnn import LateFusionDNN, LateFusionDNNConfig, head
from models.registry import choice, register_model


@dataclass(kw_only=True)
class MLFDNNConfig(LateFusionDNNConfig):
    post_text_dim: int = 16  # MMSA mlf_dnn sims
    post_audio_dim: int = 4
    post_video_dim: int = 32
    post_text_dropout: float = 0.5  # post_dropouts[0]
    post_audio_dropout: float = 0.5  # post_dropouts[1]
    post_video_dropout: float = 0.5  # post_dropouts[2]
    weight_m: float = 0.6  # M: weight of the fused head's L1 loss
    weight_t: float = 0.2  # T
    weight_a: float = 0.8  # A
    weight_v: float = 0.8  # V
    text_weight_decay: float = 1e-4  # Adam group of text_subnet
    audio_weight_decay: float = 1e-3  # audio_subnet
    video_weight_decay: float = 1e-4  # video_subnet; the rest: weight_decay


_HEADS = (("t", "text"), ("a", "audio"), ("v", "video"))  # msabench modality, MMSA's name


class MLFDNN(LateFusionDNN):
    cfg: MLFDNNConfig

    def __init__(self, cfg: MLFDNNConfig):
        super().__init__(cfg)
        widths = {"t": cfg.text_out, "a": cfg.hidden_dims[1], "v": cfg.hidden_dims[2]}
        for m, ref in _HEADS:
            dim = getattr(cfg, f"post_{ref}_dim")
            setattr(self, f"post_{ref}_dropout", nn.Dropout(getattr(cfg, f"post_{ref}_dropout")))
            setattr(self, f"post_{ref}_layer_1", nn.Linear(widths[m], dim))
            setattr(self, f"post_{ref}_layer_2", nn.Linear(dim, dim))
            setattr(self, f"post_{ref}_layer_3", nn.Linear(dim, cfg.n_out))
        self._unimodal_labels: Optional[bool] = None

    def forward(self, batch) -> ModelOutput:
        reps = self.encode(batch)
        uni = {m: head(tuple(getattr(self, f"post_{ref}_layer_{i}") for i in (1, 2, 3)),
                       getattr(self, f"post_{ref}_dropout"), reps[m]) for m, ref in _HEADS}
        return ModelOutput(pred=self.fuse(reps), unimodal=uni, features=self.features(reps))

    def loss(self, output: ModelOutput, batch) -> dict[str, torch.Tensor]:
        """trains/multiTask/MLF_DNN.py: sum over M, T, A, V of weight x L1(head, that task's label)."""
        assert output.unimodal is not None  # forward fills it
        cfg = self.cfg
        own = {m: getattr(batch, f"labels_{m}") for m in "tav"}
        self._unimodal_labels = all(label is not None for label in own.values())
        parts = {"task": task_loss(output.pred, batch.labels, cfg.task)}
        for m in "tav":
            label = own[m] if own[m] is not None else batch.labels
            parts[m] = task_loss(output.unimodal[m], label, cfg.task)
        total = (cfg.weight_m * parts["task"] + cfg.weight_t * parts["t"] + cfg.weight_a * parts["a"]
                 + cfg.weight_v * parts["v"])
        return {"total": total, **parts}

    def param_groups(self) -> list[dict[str, Any]]:
        """MMSA's four Adam groups: each subnet with its own weight decay, the rest with weight_decay."""
        cfg = self.cfg
        subnets = {"text": self.text_subnet, "audio": self.audio_subnet, "video": self.video_subnet}
        inside = {id(p) for net in subnets.values() for p in net.parameters()}
        groups = [{"name": ref, "params": list(net.parameters()), "lr": cfg.lr,
                   "weight_decay": getattr(cfg, f"{ref}_weight_decay")} for ref, net in subnets.items()]
        other = [p for p in self.parameters() if id(p) not in inside]
        return [*groups, {"name": "other", "params": other, "lr": cfg.lr, "weight_decay": cfg.weight_decay}]

    def summary(self) -> dict[str, Any]:
        return {"unimodal_labels": self._unimodal_labels}

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        groups = super().modality_params()
        for m, ref in _HEADS:
            groups[m] += [p for i in (1, 2, 3) for p in getattr(self, f"post_{ref}_layer_{i}").parameters()]
        return groups


# -- presets ------------------------------------------------
_MMSA_SIMS = MLFDNNConfig(
    dims=(768, 33, 709), setting="unaligned",  # MMSA sims unaligned_39 (need_data_aligned false), `text` features
    hidden_dims=(64, 32, 64), text_out=32, post_fusion_dim=32,  # MMSA config_regression.json mlf_dnn sims
    post_text_dim=16, post_audio_dim=4, post_video_dim=32,
    audio_dropout=0.3, video_dropout=0.3, text_dropout=0.3,  # dropouts
    post_text_dropout=0.5, post_audio_dropout=0.5, post_video_dropout=0.5, post_fusion_dropout=0.5,  # post_dropouts
    weight_m=0.6, weight_t=0.2, weight_a=0.8, weight_v=0.8,  # M, T, A, V
    optimizer="adam", lr=2e-3,  # torch Adam, four groups (trains/multiTask/MLF_DNN.py:25)
    text_weight_decay=1e-4, audio_weight_decay=1e-3, video_weight_decay=1e-4, weight_decay=0.0,
    batch_size=32,
    max_epochs=200, early_stop_patience=8,  # early_stop 8; the 200-epoch cap is a harness decision
)
# CH-SIMS v2 (harness decision: MMSA 2.2.1 has no simsv2 entry): the SIMS preset, ch-simsv2s.pkl's widths
_SIMSV2 = replace(_MMSA_SIMS, dims=(768, 25, 177))
# synthetic "demo" (harness decision): MMSA's SIMS widths on MOSI-shaped dims, fewer epochs
_DEMO = replace(_MMSA_SIMS, dims=(768, 5, 20), max_epochs=5, early_stop_patience=2)

PRESETS = {
    ("sims", "mmsa"): _MMSA_SIMS,
    ("simsv2", "mmsa"): _SIMSV2,
    ("synthetic", "demo"): _DEMO,
}
_SIMS_ONLY = ("MMSA 2.2.1 trains MLF-DNN on CH-SIMS only (trains/multiTask/MLF_DNN.py asserts dataset_name == "
              "'sims'; config_regression.json has no {} entry)")
UNSUPPORTED = {d: _SIMS_ONLY.format(d) for d in ("mosi", "mosei", "iemocap")}
_TUNE = "MMSA 2.2.1 config_tune.json mlf_dnn"
_WD = (0.0, 1e-3, 1e-4, 1e-5)
SEARCH_SPACE = {
    "hidden_dims": choice((128, 16, 128), (64, 16, 64), (128, 32, 128), (256, 32, 256), (64, 32, 64), source=_TUNE),
    "text_out": choice(32, 64, 128, 256, source=_TUNE),
    "post_fusion_dim": choice(16, 32, 64, 128, source=_TUNE),
    "post_text_dim": choice(8, 16, 32, 64, source=_TUNE),
    "post_audio_dim": choice(4, 5, source=_TUNE),
    "post_video_dim": choice(8, 16, 32, 64, source=_TUNE),
    "audio_dropout,video_dropout,text_dropout": choice((0.3, 0.3, 0.3), (0.2, 0.2, 0.2), (0.4, 0.4, 0.4),
                                                       source=f"{_TUNE} [dropouts]"),
    "post_text_dropout,post_audio_dropout,post_video_dropout,post_fusion_dropout": choice(
        (0.2,) * 4, (0.3,) * 4, (0.4,) * 4, (0.5,) * 4, source=f"{_TUNE} [post_dropouts]"),
    "batch_size": choice(32, 64, 128, source=_TUNE),
    "lr": choice(5e-4, 1e-3, 2e-3, 5e-3, source=f"{_TUNE} [learning_rate]"),
    "weight_m": choice(0.2, 0.4, 0.6, 0.8, 1.0, source=f"{_TUNE} [M]"),
    **{f"weight_{m}": choice(0.0, 0.2, 0.4, 0.6, 0.8, 1.0, source=f"{_TUNE} [{m.upper()}]") for m in "tav"},
    **{f"{ref}_weight_decay": choice(*_WD, source=_TUNE) for ref in ("text", "audio", "video")},
    "weight_decay": choice(0.0, 1e-4, 1e-3, 5e-3, source=_TUNE),
}


@register_model("mlf_dnn", config=MLFDNNConfig, presets=PRESETS, default_preset="mmsa", unsupported=UNSUPPORTED,
                search_space=SEARCH_SPACE, display_name="MLF-DNN", paper="Yu et al., ACL 2020",
                reference="https://github.com/thuiar/MMSA; MMSA==2.2.1", family="early and late fusion", order=23)
def mlf_dnn(cfg: MLFDNNConfig) -> MLFDNN:
    """MLF-DNN: LF-DNN with a prediction head per modality, trained on weighted unimodal + fused losses."""
    return MLFDNN(cfg)
