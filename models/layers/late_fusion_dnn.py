"""What LF-DNN and MLF-DNN share, as MMSA 2.2.1 has them (`models/singleTask/LF_DNN.py`,
`models/multiTask/MLF_DNN.py`): audio and vision averaged over every padded time step (MMSA
`need_normalized`), each through a `SubNet`; text through a `TextSubNet` (LSTM over every
step, padding included); fusion: concat (audio, video, text) -> dropout -> two ReLU linears ->
linear. Separable: `encode` gives the three subnet outputs, `fuse` the prediction. Module names
are MMSA's, so its weights load by name."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelConfig, MSAModel
from models.layers.mmsa_align import time_mean
from models.layers.mmsa_subnets import SubNet, TextSubNet


@dataclass(kw_only=True)
class LateFusionDNNConfig(ModelConfig):
    hidden_dims: tuple[int, int, int] = (128, 16, 128)  # text LSTM, audio, video subnet widths (MMSA lf_dnn mosi)
    text_out: int = 256
    post_fusion_dim: int = 128
    audio_dropout: float = 0.2  # dropouts[0]
    video_dropout: float = 0.2  # dropouts[1]
    text_dropout: float = 0.2  # dropouts[2]: TextSubNet has one LSTM layer, so MMSA sets it to 0
    post_fusion_dropout: float = 0.2  # LF-DNN dropouts[3], MLF-DNN post_dropouts[3]


def head(layers: tuple[nn.Linear, nn.Linear, nn.Linear], drop: nn.Dropout, x: torch.Tensor) -> torch.Tensor:
    """MMSA's post layers: dropout -> ReLU linear -> ReLU linear -> linear."""
    x = F.relu(layers[0](drop(x)))
    return layers[2](F.relu(layers[1](x)))


class LateFusionDNN(MSAModel):
    cfg: LateFusionDNNConfig

    def __init__(self, cfg: LateFusionDNNConfig):
        super().__init__(cfg)
        (d_t, d_a, d_v), (h_t, h_a, h_v) = cfg.dims, cfg.hidden_dims
        self.audio_subnet = SubNet(d_a, h_a, cfg.audio_dropout)
        self.video_subnet = SubNet(d_v, h_v, cfg.video_dropout)
        self.text_subnet = TextSubNet(d_t, h_t, cfg.text_out, dropout=cfg.text_dropout)
        self.post_fusion_dropout = nn.Dropout(cfg.post_fusion_dropout)
        self.post_fusion_layer_1 = nn.Linear(cfg.text_out + h_v + h_a, cfg.post_fusion_dim)
        self.post_fusion_layer_2 = nn.Linear(cfg.post_fusion_dim, cfg.post_fusion_dim)
        self.post_fusion_layer_3 = nn.Linear(cfg.post_fusion_dim, cfg.n_out)

    def encode(self, batch) -> dict[str, torch.Tensor]:
        return {
            "t": self.text_subnet(batch.text_feats),
            "a": self.audio_subnet(time_mean(batch.audio).squeeze(1)),
            "v": self.video_subnet(time_mean(batch.vision).squeeze(1)),
        }

    def fuse(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        fusion_h = torch.cat([reps["a"], reps["v"], reps["t"]], dim=-1)  # MMSA's order
        layers = (self.post_fusion_layer_1, self.post_fusion_layer_2, self.post_fusion_layer_3)
        return head(layers, self.post_fusion_dropout, fusion_h)

    def features(self, reps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """MMSA's Feature_t/a/v/f: the encodings and their concatenation (audio, video, text)."""
        return {**reps, "f": torch.cat([reps["a"], reps["v"], reps["t"]], dim=-1)}

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        return {"t": list(self.text_subnet.parameters()), "a": list(self.audio_subnet.parameters()),
                "v": list(self.video_subnet.parameters())}
