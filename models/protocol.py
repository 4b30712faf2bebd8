"""What bench/ and models/ share: the batch every model reads, the one modality-masking rule,
the settings, and the metrics with their direction.

`Batch.without({"a", "v"})` returns the batch with those modalities removed at input level:
- text as token ids -> the empty sentence [CLS][SEP] + padding (mask 1 on those two tokens,
  segment ids 0);
- pre-extracted text features -> zeros, lengths kept;
- audio / vision -> zeros, lengths kept.
Shapley contributions, SGM and missing-modality evaluation all use this one function, so
contribution curves are comparable across models.

Under a missing-data condition (bench/data/conditions.py: MMSA's `data_missing` protocol, or
`--train-missing`) a batch also carries its complete inputs (`complete`) and the removed steps
(`missing`), so a model that reconstructs missing inputs (TFR-Net) reads them from the batch.

`improves(value, best, ...)` is the one "is this a new best" rule: the trainer's selection and
early stopping, CLGSI's record of that early stopping and PaSE's phase switch all use it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import torch

from models.constants import MODALITIES
BERT_SPECIAL_IDS = (101, 102, 0)  # [CLS], [SEP], [PAD] in the bert-base-uncased vocabulary
COMPLETE, MISSING = "complete.", "missing."  # flat-tensor prefixes of Batch.complete / Batch.missing


@dataclass
class Batch:
    audio: torch.Tensor  # (B, T_a, d_a)
    vision: torch.Tensor  # (B, T_v, d_v)
    audio_lengths: torch.Tensor  # (B,) int64, valid steps
    vision_lengths: torch.Tensor  # (B,)
    labels: torch.Tensor  # (B,) float regression | (B, 4) int64 IEMOCAP (1 = emotion present)
    index: torch.Tensor  # (B,) position of each sample in its split
    ids: list[str] = field(default_factory=list)
    text_ids: Optional[torch.Tensor] = None  # (B, L) int64 token ids
    text_mask: Optional[torch.Tensor] = None  # (B, L) int64 attention mask
    text_segment: Optional[torch.Tensor] = None  # (B, L) int64 segment ids
    text_feats: Optional[torch.Tensor] = None  # (B, T_t, d_t) pre-extracted text features
    text_lengths: Optional[torch.Tensor] = None  # (B,) valid text steps
    special_ids: tuple[int, int, int] = BERT_SPECIAL_IDS  # (cls, sep, pad)
    masked: frozenset = frozenset()  # modalities removed by `without`
    partners: Optional["Batch"] = None  # training samples paired with these (MSAModel.training_batch; ConFEDE)
    labels_t: Optional[torch.Tensor] = None  # (B,) float unimodal labels (CH-SIMS regression_labels_T), else None
    labels_a: Optional[torch.Tensor] = None  # (B,) CH-SIMS regression_labels_A
    labels_v: Optional[torch.Tensor] = None  # (B,) CH-SIMS regression_labels_V
    # under a missing-data condition (bench/data/conditions.py), else None: the batch before the
    # condition, and {input field name: (B, T) bool, True at the steps the condition removed}
    complete: Optional["Batch"] = None
    missing: Optional[dict[str, torch.Tensor]] = None

    _TENSORS = (
        "audio", "vision", "audio_lengths", "vision_lengths", "labels", "index",
        "text_ids", "text_mask", "text_segment", "text_feats", "text_lengths", "labels_t", "labels_a", "labels_v",
    )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        moved = {
            name: t.to(device, non_blocking=non_blocking)
            for name in self._TENSORS
            if (t := getattr(self, name)) is not None
        }
        partners = self.partners.to(device, non_blocking) if self.partners is not None else None
        complete = self.complete.to(device, non_blocking) if self.complete is not None else None
        missing = {k: t.to(device, non_blocking=non_blocking) for k, t in self.missing.items()} \
            if self.missing is not None else None
        return dataclasses.replace(self, **moved, partners=partners, complete=complete, missing=missing)

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], **fields: Any) -> "Batch":
        """A batch from flat tensors named as its fields; "complete.<field>" / "missing.<field>"
        entries (a split under a missing-data condition) fill `complete` and `missing`."""
        own: dict[str, Any] = {k: t for k, t in tensors.items() if "." not in k}
        return cls(**own, **fields).with_missing(tensors)

    def with_missing(self, tensors: dict[str, torch.Tensor]) -> "Batch":
        """This batch with `complete` (itself with the "complete.<field>" inputs) and `missing`
        (the "missing.<field>" masks) from `tensors`; unchanged when `tensors` holds no masks."""
        missing = {k[len(MISSING):]: t for k, t in tensors.items() if k.startswith(MISSING)}
        if not missing:
            return self
        complete: dict[str, Any] = {k[len(COMPLETE):]: t for k, t in tensors.items() if k.startswith(COMPLETE)}
        return dataclasses.replace(self, complete=dataclasses.replace(self, complete=None, missing=None, **complete),
                                   missing=missing)

    def without(self, modalities: Iterable[str]) -> "Batch":
        """The batch with `modalities` masked at input level (see module docstring)."""
        drop = frozenset(modalities)
        unknown = drop - set(MODALITIES)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; expected a subset of {MODALITIES}")
        changes: dict = {"masked": self.masked | drop}
        if "t" in drop:
            if self.text_ids is not None:
                cls, sep, pad = self.special_ids
                ids = torch.full_like(self.text_ids, pad)
                ids[:, 0], ids[:, 1] = cls, sep
                mask = torch.zeros_like(self.text_ids)
                mask[:, :2] = 1
                changes.update(text_ids=ids, text_mask=mask, text_segment=torch.zeros_like(self.text_ids))
            if self.text_feats is not None:
                changes["text_feats"] = torch.zeros_like(self.text_feats)
        if "a" in drop:
            changes["audio"] = torch.zeros_like(self.audio)
        if "v" in drop:
            changes["vision"] = torch.zeros_like(self.vision)
        return dataclasses.replace(self, **changes)


def last_attended(mask: torch.Tensor) -> int:
    """1 + the last column any row of a (B, L) attention mask attends (0 for an empty mask):
    the columns after it are padding in every row."""
    if not mask.numel():
        return 0
    return int((mask * torch.arange(1, mask.shape[1] + 1, device=mask.device)).max())


def lengths_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) bool, True at valid steps."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def improves(value: float, best: Optional[float], *, higher: bool, min_delta: float) -> bool:
    """Whether `value` is a new best over `best` (None: none yet): better by at least
    `min_delta` in the direction `higher` (True: higher is better). The first best must be
    finite; NaN never improves. Values are compared as given: the trainer rounds the
    validation loss (`val_loss_decimals`) before any caller sees it."""
    if best is None:
        return math.isfinite(value)
    return value >= best + min_delta if higher else value <= best - min_delta


def at_least_fp32(dtype: torch.dtype) -> torch.dtype:
    """The dtype to compute in where half precision is not enough: float32, or float64 for a
    model run in float64 (the reference-equivalence tests compare some models that way)."""
    return torch.float64 if dtype == torch.float64 else torch.float32
