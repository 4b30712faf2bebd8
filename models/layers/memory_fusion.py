"""What MFN and Graph-MFN share, as MMSA 2.2.1 has them (`models/singleTask/MFN.py`,
`Graph_MFN.py`): one LSTMCell per modality stepped over every time step (padding included),
a gated multi-view memory updated each step from an "attended" vector (MFN: attention over the
previous and new cell states; Graph-MFN: the dynamic fusion graph), and the output head on the
last hidden states and memory. Module names are MMSA's, so its weights load by name.

Inputs as MMSA feeds them: with `time_mean_av` (MMSA `need_normalized`: MFN yes, Graph-MFN no)
audio and vision are averaged over every padded step first; AMIO then average-pools every
modality to the text length when the lengths differ (a time-averaged modality is repeated).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel
from models.layers.mmsa_align import align_to_text, time_mean

_LETTERS = {"t": "l", "a": "a", "v": "v"}  # msabench modality -> MMSA's attribute letter


@dataclass(kw_only=True)
class MemoryFusionConfig(ModelConfig):
    hidden_dims: tuple[int, int, int] = (256, 32, 256)  # LSTMCell widths t/a/v (MMSA mosi)
    memsize: int = 400  # multi-view gated memory width
    att2_hidden: int = 64  # cHat network hidden width (MFN NN2Config, Graph-MFN NNConfig shapes)
    att2_dropout: float = 0.0
    gamma1_hidden: int = 256  # retain gate (gamma1Config)
    gamma1_dropout: float = 0.7
    gamma2_hidden: int = 32  # update gate (gamma2Config)
    gamma2_dropout: float = 0.5
    out_hidden: int = 128  # outConfig
    out_dropout: float = 0.0
    time_mean_av: bool = True  # MMSA need_normalized: audio/vision averaged over time before the LSTMs


def _mlp(fc1: nn.Linear, drop: nn.Dropout, fc2: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return fc2(drop(F.relu(fc1(x))))


class MemoryFusionNet(MSAModel):
    """Subclasses build what `attend` needs and implement it."""

    cfg: MemoryFusionConfig

    def __init__(self, cfg: MemoryFusionConfig, attended_dim: int):
        super().__init__(cfg)
        (d_l, d_a, d_v), (dh_l, dh_a, dh_v), mem = cfg.dims, cfg.hidden_dims, cfg.memsize
        self.lstm_l, self.lstm_a, self.lstm_v = nn.LSTMCell(d_l, dh_l), nn.LSTMCell(d_a, dh_a), nn.LSTMCell(d_v, dh_v)
        self.att2_fc1, self.att2_fc2 = nn.Linear(attended_dim, cfg.att2_hidden), nn.Linear(cfg.att2_hidden, mem)
        self.att2_dropout = nn.Dropout(cfg.att2_dropout)
        both = attended_dim + mem  # the gates read [attended, memory]
        self.gamma1_fc1, self.gamma1_fc2 = nn.Linear(both, cfg.gamma1_hidden), nn.Linear(cfg.gamma1_hidden, mem)
        self.gamma1_dropout = nn.Dropout(cfg.gamma1_dropout)
        self.gamma2_fc1, self.gamma2_fc2 = nn.Linear(both, cfg.gamma2_hidden), nn.Linear(cfg.gamma2_hidden, mem)
        self.gamma2_dropout = nn.Dropout(cfg.gamma2_dropout)
        self.out_fc1, self.out_fc2 = nn.Linear(sum(cfg.hidden_dims) + mem, cfg.out_hidden), nn.Linear(cfg.out_hidden, cfg.n_out)
        self.out_dropout = nn.Dropout(cfg.out_dropout)

    def attend(self, prev: dict[str, tuple[torch.Tensor, torch.Tensor]],
               new: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """The step's attended vector from each modality's previous and new (h, c)."""
        raise NotImplementedError

    def inputs(self, batch) -> dict[str, torch.Tensor]:
        text, audio, vision = batch.text_feats, batch.audio, batch.vision
        if self.cfg.time_mean_av:
            audio, vision = time_mean(audio), time_mean(vision)
        return dict(zip("tav", align_to_text(text, audio, vision), strict=True))

    def _memory_update(self, attended: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        c_hat = torch.tanh(_mlp(self.att2_fc1, self.att2_dropout, self.att2_fc2, attended))
        both = torch.cat([attended, mem], dim=1)
        gamma1 = torch.sigmoid(_mlp(self.gamma1_fc1, self.gamma1_dropout, self.gamma1_fc2, both))
        gamma2 = torch.sigmoid(_mlp(self.gamma2_fc1, self.gamma2_dropout, self.gamma2_fc2, both))
        return gamma1 * mem + gamma2 * c_hat

    def forward(self, batch) -> ModelOutput:
        x = self.inputs(batch)
        n = x["t"].size(0)
        state = {m: (x[m].new_zeros(n, dh), x[m].new_zeros(n, dh)) for m, dh in zip("tav", self.cfg.hidden_dims, strict=True)}
        mem = x["t"].new_zeros(n, self.cfg.memsize)
        for i in range(x["t"].size(1)):
            new = {m: getattr(self, f"lstm_{_LETTERS[m]}")(x[m][:, i], state[m]) for m in "tav"}
            mem = self._memory_update(self.attend(state, new), mem)
            state = new
        last = {m: state[m][0] for m in "tav"}
        last_hs = torch.cat([last["t"], last["a"], last["v"], mem], dim=1)
        pred = _mlp(self.out_fc1, self.out_dropout, self.out_fc2, last_hs)
        return ModelOutput(pred=pred, features={**last, "mem": mem, "f": last_hs})

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        return {m: list(getattr(self, f"lstm_{_LETTERS[m]}").parameters()) for m in "tav"}
