"""LMF: Low-rank Multimodal Fusion (Liu et al., ACL 2018), as MMSA 2.2.1 runs it.

Source: thuiar/MMSA 2.2.1 `models/singleTask/LMF.py`, `models/subNets/FeatureNets.py`,
`trains/singleTask/LMF.py` and `config/config_regression.json`. The sub-networks are TFN's
(text output width = text hidden // 2); the outer product is replaced by rank-r factors per
modality whose products are weighted and summed. MMSA's optimizer trains the factors
(`factor_lr`) and the sub-networks (`learning_rate`) but never the fusion weights and bias
(`list(model.parameters())[5:]` skips them): `train_fusion_weights=False` keeps that.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from models.base import ModelConfig, ModelOutput, MSAModel
from models.layers.mmsa_subnets import LowRankFusion, ModalityEncoders, lmf_groups, params_of
from models.registry import choice, register_model


@dataclass(kw_only=True)
class LMFConfig(ModelConfig):
    hidden_dims: tuple[int, int, int] = (128, 16, 128)  # text, audio, video sub-network widths (MMSA hidden_dims)
    packed_text: bool = False  # True: the text LSTM stops at each sample's last valid step (MMSA: runs over the padding)
    dropouts: tuple[float, float, float, float] = (0.3, 0.3, 0.3, 0.3)  # audio, video, text, post-fusion (MMSA
    #   order); only audio/video act: the one-layer TextSubNet sets 0, the post-fusion dropout is never applied
    rank: int = 3
    factor_lr: float = 1e-3  # learning rate of the modality factors
    train_fusion_weights: bool = False  # False: fusion weights/bias stay at their init (MMSA's optimizer omits them)


class LMF(MSAModel):
    cfg: LMFConfig

    def __init__(self, cfg: LMFConfig):
        super().__init__(cfg)
        p_a, p_v, p_t, _ = cfg.dropouts
        text_out = cfg.hidden_dims[0] // 2  # MMSA: text_out = text_hidden // 2
        self.subnet = ModalityEncoders(cfg.dims, cfg.hidden_dims, text_out, (p_t, p_a, p_v), cfg.packed_text)
        hidden = {"t": text_out, "a": cfg.hidden_dims[1], "v": cfg.hidden_dims[2]}
        self.fusion = LowRankFusion(hidden, cfg.rank, cfg.n_out)

    def encode(self, batch) -> dict[str, torch.Tensor]:
        return self.subnet.encode(batch)

    def fuse(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fusion(reps)[0]

    def forward(self, batch) -> ModelOutput:
        reps = self.encode(batch)
        pred, components = self.fusion(reps)
        return ModelOutput(pred=pred, features={**reps, "f": components})

    def param_groups(self) -> list[dict[str, Any]]:
        return lmf_groups(self.fusion, params_of(self.subnet), self.cfg.lr, self.cfg.factor_lr,
                          self.cfg.weight_decay, self.cfg.train_fusion_weights)

    def modality_params(self) -> dict[str, list[torch.nn.Parameter]]:
        return {m: [*self.subnet[m].parameters(), self.fusion.factor[m]] for m in "tav"}


# -- presets: MMSA 2.2.1 config_regression.json `lmf` (unaligned pickles, `text` features,
# need_normalized); torch Adam with coupled weight decay (trains/singleTask/LMF.py:20); early_stop 8;
# the 200-epoch cap is a harness decision.
_COMMON: dict[str, Any] = dict(setting="unaligned", optimizer="adam", max_epochs=200, early_stop_patience=8)
_MMSA_MOSI = LMFConfig(dims=(768, 5, 20), hidden_dims=(128, 16, 128), dropouts=(0.3, 0.3, 0.3, 0.3), rank=3,
                       batch_size=64, lr=1e-3, factor_lr=1e-3, weight_decay=5e-3, **_COMMON)  # MMSA lmf mosi
_MMSA_MOSEI = LMFConfig(dims=(768, 74, 35), hidden_dims=(128, 16, 128), dropouts=(0.2, 0.2, 0.2, 0.2), rank=4,
                        batch_size=32, lr=1e-3, factor_lr=1e-3, weight_decay=1e-3, **_COMMON)  # MMSA lmf mosei
_MMSA_SIMS = LMFConfig(dims=(768, 33, 709), hidden_dims=(64, 16, 64), dropouts=(0.2, 0.2, 0.2, 0.2), rank=4,
                       batch_size=64, lr=2e-3, factor_lr=5e-4, weight_decay=5e-3, **_COMMON)  # MMSA lmf sims
# CH-SIMS v2 (harness decision: MMSA 2.2.1 has no simsv2 entry): the SIMS preset, ch-simsv2s.pkl's widths
_SIMSV2 = replace(_MMSA_SIMS, dims=(768, 25, 177))
# IEMOCAP (harness decision: MMSA 2.2.1 has no IEMOCAP entry): the MOSEI preset on MulT's unaligned pickle,
# GloVe text, the MulT protocol's 4 binary emotion heads (8 logits, cross-entropy)
_IEMOCAP = replace(_MMSA_MOSEI, task="iemocap", n_out=8, dims=(300, 74, 35))
_DEMO = replace(_MMSA_MOSI, max_epochs=5, early_stop_patience=2)  # synthetic (harness decision): short budget
PRESETS = {
    ("mosi", "mmsa"): _MMSA_MOSI,
    ("mosei", "mmsa"): _MMSA_MOSEI,
    ("sims", "mmsa"): _MMSA_SIMS,
    ("simsv2", "mmsa"): _SIMSV2,
    ("iemocap", "mmsa"): _IEMOCAP,
    ("synthetic", "demo"): _DEMO,
}
# `bench tune` search space: MMSA 2.2.1 config_tune.json `lmf` debugParams (MMSA name in brackets)
_TUNE = "MMSA 2.2.1 config_tune.json lmf"
SEARCH_SPACE = {
    "hidden_dims": choice((128, 16, 128), (64, 16, 64), (128, 32, 128), (256, 32, 256), (64, 32, 64), source=_TUNE),
    "dropouts": choice((0.3, 0.3, 0.3, 0.5), (0.3, 0.3, 0.3, 0.3), (0.2, 0.2, 0.2, 0.2), (0.4, 0.4, 0.4, 0.4),
                       source=_TUNE),
    "rank": choice(3, 4, 5, 6, source=_TUNE),
    "batch_size": choice(32, 64, 128, source=_TUNE),
    "lr": choice(5e-4, 1e-3, 2e-3, 5e-3, source=f"{_TUNE} [learning_rate]"),
    "factor_lr": choice(1e-4, 5e-4, 1e-3, source=_TUNE),
    "weight_decay": choice(0.0, 1e-4, 1e-3, 5e-3, source=_TUNE),
}


@register_model("lmf", config=LMFConfig, presets=PRESETS, default_preset="mmsa", search_space=SEARCH_SPACE,
                display_name="LMF", paper="Liu et al., ACL 2018",
                reference="https://github.com/thuiar/MMSA; MMSA==2.2.1",
                family="tensor fusion", order=26)
def lmf(cfg: LMFConfig) -> LMF:
    """LMF (Liu et al., ACL 2018): low-rank factorised tensor fusion of per-modality encodings."""
    return LMF(cfg)
