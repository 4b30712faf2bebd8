"""What MMSA 2.2.1 does to the inputs of its word-aligned models before they run.

- `time_mean`: `need_normalized` models (LF-DNN, MLF-DNN, MFN, TFN, LMF) get audio and vision
  averaged over every time step of the file's padded length, padding included
  (`data_loader.py` `__normalize`: mean over the max_len axis, NaN -> 0), as a length-1 sequence.
- `avg_pool_align`: `need_model_aligned` models (EF-LSTM, MFN, Graph-MFN) get every modality
  average-pooled to the text length when the lengths differ (`models/AMIO.py` ->
  `subNets/AlignNets.py` `AlignSubNet(mode="avg_pool")`): the sequence is padded with copies
  of its last step to a multiple of the text length L, then step l of the result averages
  steps l, l + L, l + 2L, ... (the order MMSA's `view` gives: strided, not consecutive windows).
  `window_pool_align`: the same step at thuiar/MMSA a94e65d (TETFN), which averages
  consecutive windows and leaves the text alone.
"""

from __future__ import annotations

import torch


def time_mean(x: torch.Tensor) -> torch.Tensor:
    """(B, T, d) -> (B, 1, d): the mean over all T steps, NaN -> 0 (MMSA `need_normalized`)."""
    return torch.nan_to_num(x.mean(dim=1, keepdim=True), nan=0.0, posinf=torch.inf, neginf=-torch.inf)


def _padded_to_multiple(x: torch.Tensor, length: int) -> tuple[torch.Tensor, int]:
    """`x` (B, T, d) padded with copies of its last step to a multiple of `length`; the pool size."""
    raw = x.size(1)
    if raw % length == 0:
        pad_len, pool_size = 0, raw // length
    else:
        pad_len, pool_size = length - raw % length, raw // length + 1
    pad = x[:, -1:, :].expand(x.size(0), pad_len, x.size(-1))
    return torch.cat([x, pad], dim=1), pool_size


def avg_pool_align(x: torch.Tensor, length: int) -> torch.Tensor:
    """(B, T, d) -> (B, length, d) as MMSA's AlignSubNet avg_pool (unchanged when T == length)."""
    if x.size(1) == length:
        return x
    padded, pool_size = _padded_to_multiple(x, length)
    return padded.view(x.size(0), pool_size, length, -1).mean(dim=1)


def window_pool_align(x: torch.Tensor, length: int) -> torch.Tensor:
    """(B, T, d) -> (B, length, d) as AlignSubNet avg_pool at thuiar/MMSA a94e65d (TETFN): the
    same padding, then step l averages the consecutive steps l*P .. l*P + P - 1 (P the pool
    size): that commit views the padded sequence as (B, length, P, d), 2.2.1 as (B, P, length, d)."""
    if x.size(1) == length:
        return x
    padded, pool_size = _padded_to_multiple(x, length)
    return padded.view(x.size(0), length, pool_size, -1).mean(dim=2)


def align_to_text(text: torch.Tensor, audio: torch.Tensor, vision: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """AMIO's alignment step: nothing when all three lengths are equal, else each pooled to text's."""
    if text.size(1) == audio.size(1) == vision.size(1):
        return text, audio, vision
    length = text.size(1)
    return avg_pool_align(text, length), avg_pool_align(audio, length), avg_pool_align(vision, length)
