"""LF-DNN: late fusion with DNNs (Williams et al., 2018; MMSA's baseline).

Source: thuiar/MMSA 2.2.1 `models/singleTask/LF_DNN.py` with `subNets/FeatureNets.py`,
`trains/singleTask/LF_DNN.py` and `config/config_regression.json` ("mmsa" preset, the default).
Unaligned data; audio and vision averaged over every padded time step (MMSA `need_normalized`),
each through a `SubNet` (BatchNorm -> dropout -> 3 ReLU linears); text through a `TextSubNet`
(LSTM over every step, padding included -> linear); fusion MLP on the concatenation
(models/layers/late_fusion_dnn.py). Separable: `encode` / `fuse`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from models.base import ModelOutput
from models.layers.late_fusion_dnn import LateFusionDNN, LateFusionDNNConfig
from models.registry import choice, register_model


@dataclass(kw_only=True)
class LFDNNConfig(LateFusionDNNConfig):
    """LF-DNN's fields are the shared late-fusion ones (defaults: MMSA lf_dnn mosi)."""


class LFDNN(LateFusionDNN):
    cfg: LFDNNConfig

    def forward(self, batch) -> ModelOutput:
        reps = self.encode(batch)
        return ModelOutput(pred=self.fuse(reps), features=self.features(reps))


# -- presets ------------------------------------------------
_MMSA_MOSI = LFDNNConfig(
    dims=(768, 5, 20), setting="unaligned",  # MMSA mosi unaligned_50 (need_data_aligned false), `text` features
    hidden_dims=(128, 16, 128), text_out=256, post_fusion_dim=128,  # MMSA config_regression.json lf_dnn mosi
    audio_dropout=0.2, video_dropout=0.2, text_dropout=0.2, post_fusion_dropout=0.2,  # dropouts
    optimizer="adam", lr=1e-3, weight_decay=1e-2,  # torch Adam(weight_decay) (trains/singleTask/LF_DNN.py:20)
    batch_size=128,
    max_epochs=200, early_stop_patience=8,  # early_stop 8; the 200-epoch cap is a harness decision
)
_MMSA_MOSEI = replace(
    _MMSA_MOSI, dims=(768, 74, 35),  # MMSA mosei unaligned_50
    hidden_dims=(128, 32, 128), text_out=128, post_fusion_dim=128, batch_size=64, lr=2e-3, weight_decay=1e-3,
)
_MMSA_SIMS = replace(
    _MMSA_MOSI, dims=(768, 33, 709),  # MMSA sims unaligned_39
    hidden_dims=(128, 32, 128), text_out=256, post_fusion_dim=32,
    audio_dropout=0.3, video_dropout=0.3, text_dropout=0.3, post_fusion_dropout=0.5,
    batch_size=128, lr=5e-3, weight_decay=5e-3,
)
# CH-SIMS v2 (harness decision: MMSA 2.2.1 has no simsv2 entry): the SIMS preset, ch-simsv2s.pkl's widths
_SIMSV2 = replace(_MMSA_SIMS, dims=(768, 25, 177))
# IEMOCAP (harness decision: MMSA 2.2.1 has no IEMOCAP entry): the MOSEI preset on MulT's unaligned pickle, GloVe text,
# the MulT protocol's 4 binary emotion heads (8 logits, cross-entropy)
_IEMOCAP = replace(_MMSA_MOSEI, task="iemocap", n_out=8, dims=(300, 74, 35))
# synthetic "demo" (harness decision): MMSA mosi widths are already CPU-fast; fewer epochs
_DEMO = replace(_MMSA_MOSI, batch_size=32, max_epochs=5, early_stop_patience=2)

PRESETS = {
    ("mosi", "mmsa"): _MMSA_MOSI,
    ("mosei", "mmsa"): _MMSA_MOSEI,
    ("sims", "mmsa"): _MMSA_SIMS,
    ("simsv2", "mmsa"): _SIMSV2,
    ("iemocap", "mmsa"): _IEMOCAP,
    ("synthetic", "demo"): _DEMO,
}
_TUNE = "MMSA 2.2.1 config_tune.json lf_dnn"
_DROPOUTS = "audio_dropout,video_dropout,text_dropout,post_fusion_dropout"
SEARCH_SPACE = {
    "hidden_dims": choice((128, 16, 128), (64, 16, 64), (128, 32, 128), (256, 32, 256), (64, 32, 64), source=_TUNE),
    "text_out": choice(32, 64, 128, 256, source=_TUNE),
    "post_fusion_dim": choice(16, 32, 64, 128, source=_TUNE),
    _DROPOUTS: choice((0.3, 0.3, 0.3, 0.3), (0.2, 0.2, 0.2, 0.2), (0.4, 0.4, 0.4, 0.4), (0.3, 0.3, 0.3, 0.5),
                      source=f"{_TUNE} [dropouts]"),
    "batch_size": choice(32, 64, 128, source=_TUNE),
    "lr": choice(5e-4, 1e-3, 2e-3, 5e-3, source=f"{_TUNE} [learning_rate]"),
    "weight_decay": choice(0.0, 1e-3, 5e-3, 1e-2, source=_TUNE),
}


@register_model("lf_dnn", config=LFDNNConfig, presets=PRESETS, default_preset="mmsa", search_space=SEARCH_SPACE,
                display_name="LF-DNN", paper="Williams et al., ACL Workshop 2018",
                reference="https://github.com/thuiar/MMSA; MMSA==2.2.1", family="early and late fusion", order=22)
def lf_dnn(cfg: LFDNNConfig) -> LFDNN:
    """LF-DNN: per-modality subnets (time-averaged audio/vision, LSTM text), late fusion MLP."""
    return LFDNN(cfg)
