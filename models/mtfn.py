"""MTFN: multi-task TFN (Yu et al., ACL 2020, CH-SIMS), as MMSA 2.2.1 runs it.

Source: thuiar/MMSA 2.2.1 `models/multiTask/MTFN.py`, `trains/multiTask/MTFN.py` and
`config/config_regression.json` (SIMS only: MMSA's trainer asserts the dataset is SIMS). TFN's
sub-networks and tensor fusion, plus a three-layer head per modality on its sub-network
output; the loss weights the fused and the three unimodal L1 losses (M, T, A, V). On SIMS the
heads learn the unimodal labels; without them (synthetic) they learn the multimodal label
(harness decision), and the result file says which. MOSI and MOSEI are n/a, as in MMSA.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from models.base import ModelOutput
from models.layers.mmsa_subnets import (
    ModalityEncoders,
    MultiTaskConfig,
    MultiTaskModel,
    TFNHead,
    UnimodalHeads,
    params_of,
    subnet_groups,
)
from models.registry import choice, register_model


@dataclass(kw_only=True)
class MTFNConfig(MultiTaskConfig):
    hidden_dims: tuple[int, int, int] = (256, 32, 256)  # text, audio, video sub-network widths (MMSA hidden_dims)
    text_out: int = 256
    post_fusion_dim: int = 64
    post_dims: tuple[int, int, int] = (64, 4, 8)  # post_text_dim, post_audio_dim, post_video_dim
    dropouts: tuple[float, float, float] = (0.2, 0.2, 0.2)  # audio, video, text sub-networks (MMSA order); the
    #   text one never acts: MMSA's one-layer TextSubNet sets its dropout to 0
    post_dropouts: tuple[float, float, float, float] = (0.2, 0.2, 0.2, 0.2)  # text, audio, video, fusion heads
    loss_weights: tuple[float, float, float, float] = (0.6, 0.4, 0.0, 1.0)  # MMSA M, T, A, V
    text_weight_decay: float = 1e-3
    audio_weight_decay: float = 1e-4
    video_weight_decay: float = 1e-5


class MTFN(MultiTaskModel):
    cfg: MTFNConfig

    def __init__(self, cfg: MTFNConfig):
        super().__init__(cfg)
        p_a, p_v, p_t = cfg.dropouts
        self.subnet = ModalityEncoders(cfg.dims, cfg.hidden_dims, cfg.text_out, (p_t, p_a, p_v), cfg.packed_text)
        hidden = {"t": cfg.text_out, "a": cfg.hidden_dims[1], "v": cfg.hidden_dims[2]}
        self.heads = UnimodalHeads(hidden, cfg.post_dims, cfg.n_out, cfg.post_dropouts[:3])
        self.head = TFNHead(hidden, cfg.post_fusion_dim, cfg.n_out, cfg.post_dropouts[3])

    def fuse(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(reps)[0]

    def forward(self, batch) -> ModelOutput:
        reps = self.encode(batch)
        pred, fused = self.head(reps)
        return ModelOutput(pred=pred, unimodal=self.heads(reps), features={**reps, "f": fused})

    def param_groups(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        subnets = subnet_groups(self.subnet, cfg.lr, (cfg.text_weight_decay, cfg.audio_weight_decay,
                                                      cfg.video_weight_decay))
        return [*subnets, {"name": "other", "params": params_of(self.heads, self.head), "lr": cfg.lr,
                           "weight_decay": cfg.weight_decay}]


# -- presets: MMSA 2.2.1 config_regression.json `mtfn` sims (unaligned_39, `text` features,
# need_normalized); torch Adam (trains/multiTask/MTFN.py:26): each sub-network with its own
# weight decay, the heads with none (the config's weight_decay 0.005 reaches no group);
# early_stop 8; the 200-epoch cap is a harness decision.
_MMSA_SIMS = MTFNConfig(
    dims=(768, 33, 709), setting="unaligned",
    hidden_dims=(256, 32, 256), text_out=256, post_fusion_dim=64, post_dims=(64, 4, 8),
    dropouts=(0.2, 0.2, 0.2), post_dropouts=(0.2, 0.2, 0.2, 0.2), loss_weights=(0.6, 0.4, 0.0, 1.0),
    optimizer="adam", lr=5e-3, batch_size=64, weight_decay=0.0,
    text_weight_decay=1e-3, audio_weight_decay=1e-4, video_weight_decay=1e-5,
    max_epochs=200, early_stop_patience=8,
)
# CH-SIMS v2 (harness decision: MMSA 2.2.1 has no simsv2 entry): the SIMS preset, ch-simsv2s.pkl's widths
_SIMSV2 = replace(_MMSA_SIMS, dims=(768, 25, 177))
# synthetic "demo" (harness decision): MMSA's SIMS settings at config_tune.json's small widths (the SIMS
# fusion tensor alone feeds 140M weights), MOSI-shaped inputs, a short budget
_DEMO = replace(_MMSA_SIMS, dims=(768, 5, 20), hidden_dims=(64, 16, 64), text_out=32, post_fusion_dim=32,
                max_epochs=5, early_stop_patience=2)
PRESETS = {("sims", "mmsa"): _MMSA_SIMS, ("simsv2", "mmsa"): _SIMSV2, ("synthetic", "demo"): _DEMO}
_SIMS_ONLY = ("MMSA 2.2.1 runs MTFN on SIMS only (trains/multiTask/MTFN.py asserts the dataset is SIMS) and has "
              "no configuration for it here; its heads need unimodal labels")
UNSUPPORTED = {"mosi": _SIMS_ONLY, "mosei": _SIMS_ONLY, "iemocap": _SIMS_ONLY}
# `bench tune` search space: MMSA 2.2.1 config_tune.json `mtfn` debugParams (MMSA name in brackets).
# Not searched: weight_decay [0, 0.001, 0.005, 0.01], which no group of MMSA's Adam receives.
_TUNE = "MMSA 2.2.1 config_tune.json mtfn"
_WEIGHTS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
SEARCH_SPACE = {
    "hidden_dims": choice((128, 16, 128), (64, 16, 64), (128, 32, 128), (256, 32, 256), (64, 32, 64), source=_TUNE),
    "text_out": choice(32, 64, 128, 256, source=_TUNE),
    "post_fusion_dim": choice(16, 32, 64, 128, source=_TUNE),
    "post_dims[0]": choice(8, 16, 32, 64, source=f"{_TUNE} [post_text_dim]"),
    "post_dims[1]": choice(4, 5, source=f"{_TUNE} [post_audio_dim]"),
    "post_dims[2]": choice(8, 16, 32, 64, source=f"{_TUNE} [post_video_dim]"),
    "dropouts": choice((0.3, 0.3, 0.3), (0.2, 0.2, 0.2), (0.4, 0.4, 0.4), source=_TUNE),
    "post_dropouts": choice((0.2,) * 4, (0.3,) * 4, (0.4,) * 4, (0.5,) * 4, source=_TUNE),
    "batch_size": choice(32, 64, source=_TUNE),
    "lr": choice(5e-4, 1e-3, 2e-3, 5e-3, source=f"{_TUNE} [learning_rate]"),
    "loss_weights[0]": choice(0.2, 0.4, 0.6, 0.8, 1.0, source=f"{_TUNE} [M]"),
    "loss_weights[1]": choice(*_WEIGHTS, source=f"{_TUNE} [T]"),
    "loss_weights[2]": choice(*_WEIGHTS, source=f"{_TUNE} [A]"),
    "loss_weights[3]": choice(*_WEIGHTS, source=f"{_TUNE} [V]"),
    "text_weight_decay": choice(0.0, 1e-3, 1e-4, 1e-5, source=_TUNE),
    "audio_weight_decay": choice(0.0, 1e-3, 1e-4, 1e-5, source=_TUNE),
    "video_weight_decay": choice(0.0, 1e-3, 1e-4, 1e-5, source=_TUNE),
}


@register_model("mtfn", config=MTFNConfig, presets=PRESETS, default_preset="mmsa", search_space=SEARCH_SPACE,
                unsupported=UNSUPPORTED,
                display_name="MTFN", paper="Yu et al., ACL 2020",
                reference="https://github.com/thuiar/MMSA; MMSA==2.2.1",
                family="tensor fusion", order=25)
def mtfn(cfg: MTFNConfig) -> MTFN:
    """MTFN (Yu et al., ACL 2020): TFN with unimodal heads trained on SIMS' unimodal labels."""
    return MTFN(cfg)
