"""Small blocks more than one model builds: ConFEDE's decoder MLP (also MFON's classifier) and
Self-MM's audio/vision LSTM subnet (also MCL-MCF's acoustic and visual encoders)."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence


class MLP(nn.Module):
    """ConFEDE's BaseClassifier (model/decoder/classifier.py): Linear-GELU per hidden size, then Linear.
    Its `drop_out` argument is ignored by the code: no dropout."""

    def __init__(self, in_dim: int, hidden: Iterable[int], out_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(in_dim, h), nn.GELU()]
            in_dim = h
        layers.append(nn.Linear(in_dim, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def pack(x: torch.Tensor, lengths: torch.Tensor) -> PackedSequence:
    """`pack_padded_sequence` of batch-first `x` at `lengths` clamped to 1..T (a zero-length
    clip reads its first step). The lengths go to the host: torch's API takes CPU lengths."""
    return pack_padded_sequence(x, lengths.clamp(1, x.shape[1]).cpu(), batch_first=True, enforce_sorted=False)


class AuViSubNet(nn.Module):
    """Self-MM's AuViSubNet: 1-layer LSTM over the packed true lengths; final hidden state -> Dropout -> Linear."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float):
        super().__init__()
        self.rnn = nn.LSTM(in_dim, hidden, num_layers=1, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.rnn(pack(x, lengths))
        return self.linear(self.dropout(h[-1]))
