"""In-memory dataset containers shared by every loader.

A loader returns `MSAData`: three `Split`s holding whole-split tensors plus a `DatasetInfo`.
Batches are cut by indexing those tensors (no DataLoader workers: the features are already
in memory, and indexing is what a DataLoader would do anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Optional

import torch

from models.protocol import BERT_SPECIAL_IDS, Batch, last_attended

SPLITS = ("train", "valid", "test")


class DataError(Exception):
    """A data file cannot be used. The message names the file, split, key and problem."""

    problems: list[DataError]  # set by validation when it collected every problem before raising

    def __init__(self, file: str, problem: str, split: str | None = None, key: str | None = None):
        where = ", ".join(p for p in (f"split={split}" if split else "", f"key={key}" if key else "") if p)
        self.file, self.split, self.key, self.problem = file, split, key, problem
        super().__init__(f"{file}" + (f" [{where}]" if where else "") + f": {problem}")

    def __str__(self) -> str:  # shown as "DataError: file [split=.., key=..]: problem"
        return self.args[0]


@dataclass
class DatasetInfo:
    name: str  # synthetic | mosi | mosei | iemocap | sims | simsv2
    task: str  # regression | iemocap
    setting: str  # aligned | unaligned
    dims: dict[str, int]  # feature dims of t/a/v (text: 768 for token ids, as MMSA reports)
    seq_lens: dict[str, int]  # T of each modality, read from the train split
    text_views: tuple[str, ...]  # which text inputs exist: "ids", "features"
    vocab_size: Optional[int] = None  # token-id upper bound when ids exist
    special_ids: tuple[int, int, int] = BERT_SPECIAL_IDS
    source: dict[str, Any] = field(default_factory=dict)  # files, sha256, format, generator
    warnings: list[str] = field(default_factory=list)


@dataclass
class Split:
    """One split, whole-split tensors. `tensors` keys follow the Batch field names (under a
    missing-data condition also "complete.<field>" and "missing.<field>": `Batch.from_tensors`).

    `raw_text`: the transcripts, where the source has them and a loader keeps them (the
    synthetic raw-text view). `trim_text`: dynamic padding, each batch's `text_ids`,
    `text_mask` and `text_segment` cut to its longest row (the last attended position);
    set for token ids the harness made from raw text, which are stored padded to the
    longest text of the dataset."""

    name: str
    tensors: dict[str, torch.Tensor]
    ids: list[str]
    special_ids: tuple[int, int, int] = BERT_SPECIAL_IDS
    raw_text: Optional[list[str]] = None
    trim_text: bool = False

    def __len__(self) -> int:
        return int(self.tensors["labels"].shape[0])

    @property
    def labels(self) -> torch.Tensor:
        return self.tensors["labels"]

    def take(self, idx: torch.Tensor) -> Batch:
        """The samples at positions `idx` as a Batch."""
        fields: dict[str, Any] = {k: v[idx] for k, v in self.tensors.items()}
        if self.trim_text and "text_mask" in fields:
            trim_padding(fields)
        fields["index"] = idx.clone()
        ids = [self.ids[i] for i in idx.tolist()]
        return Batch.from_tensors(fields, ids=ids, special_ids=self.special_ids)

    def batches(self, batch_size: int, shuffle: bool = False, generator: Optional[torch.Generator] = None) -> Iterator[Batch]:
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            yield self.take(order[start : start + batch_size])

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def subset(self, idx: torch.Tensor, name: str | None = None) -> "Split":
        rows = idx.tolist()
        return replace(self, name=name or self.name, tensors={k: v[idx] for k, v in self.tensors.items()},
                       ids=[self.ids[i] for i in rows],
                       raw_text=[self.raw_text[i] for i in rows] if self.raw_text is not None else None)


def trim_padding(fields: dict[str, torch.Tensor]) -> None:
    """Cut `text_ids`/`text_mask`/`text_segment` after the last attended position of the
    batch (columns that are padding in every row), in place of the dict's entries."""
    mask = fields["text_mask"]
    n = last_attended(mask)
    if 0 < n < mask.shape[1]:
        for k in list(fields):  # also a missing-data condition's "complete.text_ids" / "missing.text_ids"
            if k.rpartition(".")[2] in ("text_ids", "text_mask", "text_segment"):
                fields[k] = fields[k][:, :n]


@dataclass
class MSAData:
    info: DatasetInfo
    train: Split
    valid: Split
    test: Split

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise KeyError(f"unknown split '{name}' (expected one of {SPLITS})")
        return getattr(self, name)
