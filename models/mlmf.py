"""MLMF: multi-task LMF (Yu et al., ACL 2020, CH-SIMS), as MMSA 2.2.1 runs it.

Source: thuiar/MMSA 2.2.1 `models/multiTask/MLMF.py`, `trains/multiTask/MLMF.py` and
`config/config_regression.json` (SIMS only: MMSA's trainer asserts the dataset is SIMS). LMF's
sub-networks and low-rank fusion, plus a three-layer head per modality; the loss weights the
fused and the three unimodal L1 losses (M, T, A, V). On SIMS the heads learn the unimodal
labels; without them (synthetic) they learn the multimodal label (harness decision), and the
result file says which; MOSI and MOSEI are n/a, as in MMSA. As in MMSA, the fusion weights
and bias are in an optimizer group at lr 0.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from models.base import ModelOutput
from models.layers.mmsa_subnets import (
    LowRankFusion,
    ModalityEncoders,
    MultiTaskConfig,
    MultiTaskModel,
    UnimodalHeads,
    lmf_groups,
    params_of,
    subnet_groups,
)
from models.registry import choice, register_model


@dataclass(kw_only=True)
class MLMFConfig(MultiTaskConfig):
    hidden_dims: tuple[int, int, int] = (256, 32, 256)  # text, audio, video sub-network widths (MMSA hidden_dims)
    post_dims: tuple[int, int, int] = (8, 4, 32)  # post_text_dim, post_audio_dim, post_video_dim
    dropouts: tuple[float, float, float] = (0.3, 0.3, 0.3)  # audio, video, text sub-networks (MMSA order); the
    #   text one never acts: MMSA's one-layer TextSubNet sets its dropout to 0
    post_dropouts: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.4)  # text, audio, video heads, fusion
    #   (MMSA order; the fusion one is never applied)
    rank: int = 3
    factor_lr: float = 1e-3
    train_fusion_weights: bool = False  # False: fusion weights/bias stay at their init (MMSA: lr 0)
    loss_weights: tuple[float, float, float, float] = (0.2, 1.0, 0.4, 0.8)  # MMSA M, T, A, V
    text_weight_decay: float = 1e-4
    audio_weight_decay: float = 0.0
    video_weight_decay: float = 1e-4


class MLMF(MultiTaskModel):
    cfg: MLMFConfig

    def __init__(self, cfg: MLMFConfig):
        super().__init__(cfg)
        p_a, p_v, p_t = cfg.dropouts
        text_out = cfg.hidden_dims[0] // 2  # MMSA: text_out = text_hidden // 2
        self.subnet = ModalityEncoders(cfg.dims, cfg.hidden_dims, text_out, (p_t, p_a, p_v), cfg.packed_text)
        hidden = {"t": text_out, "a": cfg.hidden_dims[1], "v": cfg.hidden_dims[2]}
        self.heads = UnimodalHeads(hidden, cfg.post_dims, cfg.n_out, cfg.post_dropouts[:3])
        self.fusion = LowRankFusion(hidden, cfg.rank, cfg.n_out)

    def fuse(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fusion(reps)[0]

    def forward(self, batch) -> ModelOutput:
        reps = self.encode(batch)
        pred, components = self.fusion(reps)
        return ModelOutput(pred=pred, unimodal=self.heads(reps), features={**reps, "f": components})

    def param_groups(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        subnets = subnet_groups(self.subnet, cfg.lr, (cfg.text_weight_decay, cfg.audio_weight_decay,
                                                      cfg.video_weight_decay))
        return [*subnets, *lmf_groups(self.fusion, params_of(self.heads), cfg.lr, cfg.factor_lr, cfg.weight_decay,
                                      cfg.train_fusion_weights)]


# -- presets: MMSA 2.2.1 config_regression.json `mlmf` sims (unaligned_39, `text` features,
# need_normalized); torch Adam (trains/multiTask/MLMF.py:26): sub-networks with their own decay,
# factors at factor_lr, heads at learning_rate, both with weight_decay; early_stop 8; the
# 200-epoch cap is a harness decision.
_MMSA_SIMS = MLMFConfig(
    dims=(768, 33, 709), setting="unaligned",
    hidden_dims=(256, 32, 256), post_dims=(8, 4, 32), dropouts=(0.3, 0.3, 0.3), post_dropouts=(0.4, 0.4, 0.4, 0.4),
    rank=3, loss_weights=(0.2, 1.0, 0.4, 0.8),
    optimizer="adam", lr=1e-3, factor_lr=1e-3, batch_size=128, weight_decay=5e-3,
    text_weight_decay=1e-4, audio_weight_decay=0.0, video_weight_decay=1e-4,
    max_epochs=200, early_stop_patience=8,
)
# CH-SIMS v2 (harness decision: MMSA 2.2.1 has no simsv2 entry): the SIMS preset, ch-simsv2s.pkl's widths
_SIMSV2 = replace(_MMSA_SIMS, dims=(768, 25, 177))
# synthetic "demo" (harness decision): MMSA's SIMS model on MOSI-shaped inputs, a short budget
_DEMO = replace(_MMSA_SIMS, dims=(768, 5, 20), max_epochs=5, early_stop_patience=2)
PRESETS = {("sims", "mmsa"): _MMSA_SIMS, ("simsv2", "mmsa"): _SIMSV2, ("synthetic", "demo"): _DEMO}
_SIMS_ONLY = ("MMSA 2.2.1 runs MLMF on SIMS only (trains/multiTask/MLMF.py asserts the dataset is SIMS) and has "
              "no configuration for it here; its heads need unimodal labels")
UNSUPPORTED = {"mosi": _SIMS_ONLY, "mosei": _SIMS_ONLY, "iemocap": _SIMS_ONLY}
# `bench tune` search space: MMSA 2.2.1 config_tune.json `mlmf` debugParams (MMSA name in brackets)
_TUNE = "MMSA 2.2.1 config_tune.json mlmf"
_WEIGHTS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
SEARCH_SPACE = {
    "hidden_dims": choice((128, 16, 128), (64, 16, 64), (128, 32, 128), (256, 32, 256), (64, 32, 64), source=_TUNE),
    "post_dims[0]": choice(8, 16, 32, 64, source=f"{_TUNE} [post_text_dim]"),
    "post_dims[1]": choice(4, 5, source=f"{_TUNE} [post_audio_dim]"),
    "post_dims[2]": choice(8, 16, 32, 64, source=f"{_TUNE} [post_video_dim]"),
    "post_dropouts": choice((0.2,) * 4, (0.3,) * 4, (0.4,) * 4, (0.5,) * 4, source=_TUNE),
    "dropouts": choice((0.5, 0.5, 0.5), (0.3, 0.3, 0.3), (0.2, 0.2, 0.2), (0.4, 0.4, 0.4), source=_TUNE),
    "rank": choice(3, 4, 5, 6, source=_TUNE),
    "batch_size": choice(32, 64, 128, source=_TUNE),
    "lr": choice(5e-4, 1e-3, 2e-3, 5e-3, source=f"{_TUNE} [learning_rate]"),
    "factor_lr": choice(1e-4, 5e-4, 1e-3, source=_TUNE),
    "loss_weights[0]": choice(0.2, 0.4, 0.6, 0.8, 1.0, source=f"{_TUNE} [M]"),
    "loss_weights[1]": choice(*_WEIGHTS, source=f"{_TUNE} [T]"),
    "loss_weights[2]": choice(*_WEIGHTS, source=f"{_TUNE} [A]"),
    "loss_weights[3]": choice(*_WEIGHTS, source=f"{_TUNE} [V]"),
    "text_weight_decay": choice(0.0, 1e-3, 1e-4, 1e-5, source=_TUNE),
    "audio_weight_decay": choice(0.0, 1e-3, 1e-4, 1e-5, source=_TUNE),
    "video_weight_decay": choice(0.0, 1e-3, 1e-4, 1e-5, source=_TUNE),
    "weight_decay": choice(0.0, 1e-4, 1e-3, 5e-3, source=_TUNE),
}


@register_model("mlmf", config=MLMFConfig, presets=PRESETS, default_preset="mmsa", search_space=SEARCH_SPACE,
                unsupported=UNSUPPORTED,
                display_name="MLMF", paper="Yu et al., ACL 2020",
                reference="https://github.com/thuiar/MMSA; MMSA==2.2.1",
                family="tensor fusion", order=27)
def mlmf(cfg: MLMFConfig) -> MLMF:
    """MLMF (Yu et al., ACL 2020): LMF with unimodal heads trained on SIMS' unimodal labels."""
    return MLMF(cfg)
