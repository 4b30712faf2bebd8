"""TFN: Tensor Fusion Network (Zadeh et al., EMNLP 2017), as MMSA 2.2.1 runs it.

Source: thuiar/MMSA 2.2.1 `models/singleTask/TFN.py`, `models/subNets/FeatureNets.py`,
`trains/singleTask/TFN.py` and `config/config_regression.json`. Audio and vision are averaged
over time (padding included, MMSA `need_normalized`) and go through SubNets; the padded text
sequence through an LSTM TextSubNet; the three vectors, each with a 1 prepended, are
multiplied into one outer-product tensor that a three-layer MLP maps to sigmoid * 6 - 3.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from models.base import ModelConfig, ModelOutput, MSAModel
from models.layers.mmsa_subnets import ModalityEncoders, TFNHead
from models.registry import choice, register_model


@dataclass(kw_only=True)
class TFNConfig(ModelConfig):
    hidden_dims: tuple[int, int, int] = (128, 32, 128)  # text, audio, video sub-network widths (MMSA hidden_dims)
    text_out: int = 32  # TextSubNet output width
    post_fusion_dim: int = 64
    packed_text: bool = False  # True: the text LSTM stops at each sample's last valid step (MMSA: runs over the padding)
    dropouts: tuple[float, float, float, float] = (0.3, 0.3, 0.3, 0.5)  # audio, video, text, post-fusion (MMSA
    #   order); the text one never acts: MMSA's one-layer TextSubNet sets its dropout to 0


class TFN(MSAModel):
    cfg: TFNConfig

    def __init__(self, cfg: TFNConfig):
        super().__init__(cfg)
        p_a, p_v, p_t, p_fusion = cfg.dropouts
        self.subnet = ModalityEncoders(cfg.dims, cfg.hidden_dims, cfg.text_out, (p_t, p_a, p_v), cfg.packed_text)
        hidden = {"t": cfg.text_out, "a": cfg.hidden_dims[1], "v": cfg.hidden_dims[2]}
        self.head = TFNHead(hidden, cfg.post_fusion_dim, cfg.n_out, p_fusion)

    def encode(self, batch) -> dict[str, torch.Tensor]:
        return self.subnet.encode(batch)

    def fuse(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(reps)[0]

    def forward(self, batch) -> ModelOutput:
        reps = self.encode(batch)
        pred, fused = self.head(reps)
        return ModelOutput(pred=pred, features={**reps, "f": fused})

    def modality_params(self) -> dict[str, list[torch.nn.Parameter]]:
        return {m: list(self.subnet[m].parameters()) for m in "tav"}


# -- presets: MMSA 2.2.1 config_regression.json `tfn` (unaligned_50 / unaligned_39 pickles,
# `text` features, need_normalized); torch Adam over every trainable parameter, no weight decay
# (trains/singleTask/TFN.py:20); early_stop 8; the 200-epoch cap is a harness decision.
_COMMON: dict[str, Any] = dict(setting="unaligned", optimizer="adam", weight_decay=0.0, max_epochs=200,
                               early_stop_patience=8)
_MMSA_MOSI = TFNConfig(dims=(768, 5, 20), hidden_dims=(128, 32, 128), text_out=32, post_fusion_dim=64,
                       dropouts=(0.3, 0.3, 0.3, 0.5), batch_size=32, lr=1e-3, **_COMMON)  # MMSA tfn mosi
_MMSA_MOSEI = TFNConfig(dims=(768, 74, 35), hidden_dims=(128, 16, 128), text_out=128, post_fusion_dim=16,
                        dropouts=(0.4, 0.4, 0.4, 0.4), batch_size=128, lr=5e-3, **_COMMON)  # MMSA tfn mosei
_MMSA_SIMS = TFNConfig(dims=(768, 33, 709), hidden_dims=(128, 32, 128), text_out=256, post_fusion_dim=32,
                       dropouts=(0.4, 0.4, 0.4, 0.4), batch_size=32, lr=5e-4, **_COMMON)  # MMSA tfn sims
# CH-SIMS v2 (harness decision: MMSA 2.2.1 has no simsv2 entry): the SIMS preset, ch-simsv2s.pkl's widths
_SIMSV2 = replace(_MMSA_SIMS, dims=(768, 25, 177))
# IEMOCAP (harness decision: MMSA 2.2.1 has no IEMOCAP entry): the MOSEI preset on MulT's unaligned pickle,
# GloVe text, the MulT protocol's 4 binary emotion heads (8 logits, cross-entropy; the sigmoid range acts on 1 output only)
_IEMOCAP = replace(_MMSA_MOSEI, task="iemocap", n_out=8, dims=(300, 74, 35))
# synthetic "demo" (harness decision): MMSA MOSI's model, a short epoch budget, and the text LSTM
# stopped at each sample's last valid step: over the synthetic text's zero padding (up to 38 steps)
# an untrained LSTM forgets the text, and masking it moves the prediction by < 1e-6
_DEMO = replace(_MMSA_MOSI, packed_text=True, max_epochs=5, early_stop_patience=2)
PRESETS = {
    ("mosi", "mmsa"): _MMSA_MOSI,
    ("mosei", "mmsa"): _MMSA_MOSEI,
    ("sims", "mmsa"): _MMSA_SIMS,
    ("simsv2", "mmsa"): _SIMSV2,
    ("iemocap", "mmsa"): _IEMOCAP,
    ("synthetic", "demo"): _DEMO,
}
# `bench tune` search space: MMSA 2.2.1 config_tune.json `tfn` debugParams (MMSA name in brackets)
_TUNE = "MMSA 2.2.1 config_tune.json tfn"
SEARCH_SPACE = {
    "hidden_dims": choice((128, 16, 128), (64, 16, 64), (128, 32, 128), (64, 32, 64), source=_TUNE),
    "text_out": choice(32, 64, 128, 256, source=_TUNE),
    "post_fusion_dim": choice(16, 32, 64, 128, source=_TUNE),
    "dropouts": choice((0.3, 0.3, 0.3, 0.3), (0.2, 0.2, 0.2, 0.2), (0.4, 0.4, 0.4, 0.4), (0.3, 0.3, 0.3, 0.5),
                       source=_TUNE),
    "batch_size": choice(32, 64, 128, source=_TUNE),
    "lr": choice(5e-4, 1e-3, 2e-3, 5e-3, source=f"{_TUNE} [learning_rate]"),
}


@register_model("tfn", config=TFNConfig, presets=PRESETS, default_preset="mmsa", search_space=SEARCH_SPACE,
                display_name="TFN", paper="Zadeh et al., EMNLP 2017",
                reference="https://github.com/thuiar/MMSA; MMSA==2.2.1",
                family="tensor fusion", order=24)
def tfn(cfg: TFNConfig) -> TFN:
    """TFN (Zadeh et al., EMNLP 2017): outer product of per-modality encodings, then an MLP."""
    return TFN(cfg)
