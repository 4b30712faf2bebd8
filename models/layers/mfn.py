"""MFN's recurrence (Zadeh et al., AAAI 2018), as MMSA 2.2.1 `models/singleTask/MFN.py` runs
it; MFM builds on it (its `mfn_encoder`). One LSTMCell per modality; at every step the
delta-memory attention weighs the concatenated previous and new cell states (MMSA's windowsize
2), and the multi-view gated memory mixes its last value with the attended update. Returns
the last hidden state of each LSTM and the last memory, concatenated (MMSA's `L`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TwoLayer(nn.Module):
    """fc2(dropout(relu(fc1(x)))): MMSA's `*_fc1` / `*_fc2` / `*_dropout` triples."""

    def __init__(self, d_in: int, hidden: int, d_out: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2, self.dropout = nn.Linear(d_in, hidden), nn.Linear(hidden, d_out), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


class MFNCore(nn.Module):
    """dims/hidden: t/a/v input and LSTM widths; att1..gamma2: (hidden width, dropout) of the
    attention (NN1, NN2) and gate (gamma1, gamma2) networks. Sequences run batch-first and
    must have one length (aligned data): MMSA steps over the text's length."""

    def __init__(self, dims: tuple[int, int, int], hidden: tuple[int, int, int], mem: int,
                 att1: tuple[int, float], att2: tuple[int, float], gamma1: tuple[int, float], gamma2: tuple[int, float]):
        super().__init__()
        self.lstm = nn.ModuleDict({m: nn.LSTMCell(d, h) for m, d, h in zip("tav", dims, hidden, strict=True)})
        self.hidden, self.mem = hidden, mem
        att_in = 2 * sum(hidden)  # previous and new cells (MMSA windowsize 2)
        self.att1 = TwoLayer(att_in, att1[0], att_in, att1[1])
        self.att2 = TwoLayer(att_in, att2[0], mem, att2[1])
        self.gamma1 = TwoLayer(att_in + mem, gamma1[0], mem, gamma1[1])
        self.gamma2 = TwoLayer(att_in + mem, gamma2[0], mem, gamma2[1])

    @property
    def out_dim(self) -> int:
        return sum(self.hidden) + self.mem

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """x: {"t","a","v"} -> (B, T, d_m); returns (B, sum(hidden) + mem)."""
        n, steps = x["t"].shape[:2]
        zeros = {m: x["t"].new_zeros(n, h) for m, h in zip("tav", self.hidden, strict=True)}
        state = {m: (zeros[m], zeros[m]) for m in "tav"}
        mem = x["t"].new_zeros(n, self.mem)
        for i in range(steps):
            new = {m: self.lstm[m](x[m][:, i], state[m]) for m in "tav"}
            c_star = torch.cat([state[m][1] for m in "tav"] + [new[m][1] for m in "tav"], dim=1)
            attended = F.softmax(self.att1(c_star), dim=1) * c_star
            c_hat = torch.tanh(self.att2(attended))
            both = torch.cat([attended, mem], dim=1)
            mem = torch.sigmoid(self.gamma1(both)) * mem + torch.sigmoid(self.gamma2(both)) * c_hat
            state = new
        return torch.cat([state[m][0] for m in "tav"] + [mem], dim=1)
