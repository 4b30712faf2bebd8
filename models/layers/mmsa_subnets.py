"""MMSA 2.2.1's feature subnetworks (`MMSA/models/subNets/FeatureNets.py`, from TFN's code),
kept exactly: `SubNet` (BatchNorm -> dropout -> three ReLU linears) for an utterance-level
vector, `TextSubNet` (LSTM final hidden state -> dropout -> linear) for a sequence. The LSTM
runs over every step, padding included, as MMSA does."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SubNet(nn.Module):
    """(B, in_size) -> (B, hidden_size)."""

    def __init__(self, in_size: int, hidden_size: int, dropout: float):
        super().__init__()
        self.norm = nn.BatchNorm1d(in_size)
        self.drop = nn.Dropout(p=dropout)
        self.linear_1 = nn.Linear(in_size, hidden_size)
        self.linear_2 = nn.Linear(hidden_size, hidden_size)
        self.linear_3 = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dropped = self.drop(self.norm(x))
        y_1 = F.relu(self.linear_1(dropped))
        y_2 = F.relu(self.linear_2(y_1))
        return F.relu(self.linear_3(y_2))


class TextSubNet(nn.Module):
    """(B, T, in_size) -> (B, out_size): the LSTM's last-layer final hidden state, dropout, linear.
    As in MMSA, the LSTM's dropout (and this dropout) is 0 when num_layers == 1."""

    def __init__(self, in_size: int, hidden_size: int, out_size: int, num_layers: int = 1, dropout: float = 0.2,
                 bidirectional: bool = False):
        super().__init__()
        if num_layers == 1:
            dropout = 0.0
        self.rnn = nn.LSTM(in_size, hidden_size, num_layers=num_layers, dropout=dropout, bidirectional=bidirectional,
                           batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.linear_1 = nn.Linear(hidden_size, out_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, final_states = self.rnn(x)
        h = self.dropout(final_states[0].squeeze(0))
        return self.linear_1(h)
