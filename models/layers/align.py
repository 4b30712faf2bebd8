"""MMSA 2.2.1's model-side alignment (`models/subNets/AlignNets.py` AlignSubNet, mode
`avg_pool`), which its AMIO wrapper applies before every model with `need_model_aligned`
(MFM, MFN, Graph-MFN, ...) whenever the three sequences' lengths differ."""

from __future__ import annotations

import torch


def avg_pool_align(x: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T, d) -> (B, steps, d) as MMSA: repeat the last step up to a multiple of `steps`
    (also when T < steps), view as (B, pool, steps, d) and average over `pool`, so output step j
    averages the input steps j, j + steps, j + 2 steps, ... (strided, not windows)."""
    n = x.shape[1]
    if n == steps:
        return x
    pool = -(-n // steps)
    x = torch.cat([x, x[:, -1:].expand(-1, pool * steps - n, -1)], dim=1)
    return x.reshape(x.shape[0], pool, steps, x.shape[2]).mean(1)


def align_to_text(x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """AlignSubNet.forward: unchanged when t/a/v have one length, else each pooled to the text's."""
    steps = x["t"].shape[1]
    if len({t.shape[1] for t in x.values()}) == 1:
        return x
    return {m: avg_pool_align(t, steps) for m, t in x.items()}
