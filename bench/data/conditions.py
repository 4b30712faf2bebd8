"""Test conditions for robustness curves: incomplete and noisy modalities.

A `Condition` changes the input of a split, never the model:
- `random` missing: round(rate * n) of a sample's n valid steps of each target modality,
  chosen uniformly without replacement, go missing;
- `structural` missing: the same count, as one contiguous block of valid steps at a uniform
  random start (TFR-Net's structural temporal missing);
- `noise`: Gaussian noise of std level * (the modality's std over the split's valid steps)
  added to every valid step of the target feature modalities.
A missing text token becomes [UNK] (MMSA / TFR-Net's rule), a missing feature step (text
features, audio, vision) becomes 0. Valid steps: text tokens with attention mask 1 other than
[CLS] and [SEP]; feature steps before the sample's length. Padding, [CLS] and [SEP] are never
touched, so rate 0 leaves the split as it is, and rate 1 on "tav" is the *empty input*: every
valid step missing.

- `bernoulli` missing: each valid step goes missing independently with probability rate
  (MMSA's `data_missing`, TFR-Net's protocol: MMSA 2.2.1 data_loader.py `generate_m`).

Masks are drawn from `CONDITION_SEED` (recorded with the curves), one generator per (kind,
level, modality), over the whole split: identical for every model and run on the same data
(paired comparisons), and the audio mask of "random/a/0.3" is the audio mask of "random/tav/0.3".
`bernoulli` masks of a split are MMSA's own: numpy's legacy generator seeded with the seed
itself for each modality, uniform draws over the split's (samples, steps) array, a step
missing where its draw is <= rate.

MMSA's protocol (`with_data_missing`, the model config's `data_missing`): every split (train,
valid, test) under one condition, masks drawn once per split at load from `MMSA_MISSING_SEED`,
so training, selection and the test all see the same incomplete inputs each epoch. A split or
batch under a missing-data condition also keeps its complete inputs and the masks
(`Batch.complete`, `Batch.missing`): models that reconstruct what is missing (TFR-Net) read
them there and never draw masks themselves.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from bench.data.base import SPLITS, MSAData, Split
from models.constants import MODALITIES
from models.protocol import BERT_SPECIAL_IDS, COMPLETE, MISSING, Batch

CONDITION_SEED = 0  # harness decision: one fixed seed, so every model sees the same masks
MMSA_MISSING_SEED = 1111  # MMSA 2.2.1 config_regression.json datasetCommonParams missing_seed (each modality)
MISSING_KINDS = ("random", "structural")  # the robustness curves' grid
BERNOULLI = "bernoulli"  # MMSA's data_missing: each valid step missing with probability rate
NOISE = "noise"
RATES = tuple(round(0.1 * i, 1) for i in range(1, 10))  # the 0.1 ... 0.9
NOISE_LEVELS = (0.1, 0.5, 1.0)  # harness decision: noise std as a multiple of the feature std
MISSING_TARGETS = ("t", "a", "v", "tav")  # each modality alone and all three
NOISE_TARGETS = ("a", "v", "av")  # feature modalities (text is token ids for most models)
BERT_UNK_ID = 100  # [UNK] in the bert-base-uncased vocabulary every text view here uses
_FEATURES = {"t": ("text_feats", "text_lengths"), "a": ("audio", "audio_lengths"), "v": ("vision", "vision_lengths")}


class ConditionError(ValueError):
    """A condition name or value that cannot be used; the message names it."""


@dataclass(frozen=True)
class Condition:
    kind: str  # random | structural | noise
    modalities: str  # the targets, e.g. "a" or "tav"
    level: float  # missing rate in [0, 1], or noise level (x the feature std)

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.modalities}/{self.level:g}"

    @classmethod
    def parse(cls, name: str) -> "Condition":
        """'random/tav/0.3' -> Condition('random', 'tav', 0.3)."""
        parts = name.split("/")
        forms = "KIND/MODALITIES/LEVEL, e.g. random/tav/0.3, structural/a/0.5 or noise/av/1"
        if len(parts) != 3:
            raise ConditionError(f"condition '{name}': give {forms}")
        kind, mods, raw = parts
        try:
            level = float(raw)
        except ValueError:
            raise ConditionError(f"condition '{name}': level '{raw}' is not a number ({forms})") from None
        cond = cls(kind, mods, level)
        cond.check()
        return cond

    @property
    def missing(self) -> bool:
        """Whether the condition removes steps (every kind but noise)."""
        return self.kind != NOISE

    def check(self) -> None:
        kinds = (*MISSING_KINDS, BERNOULLI, NOISE)
        if self.kind not in kinds:
            raise ConditionError(f"condition '{self.name}': kind '{self.kind}' is not one of {', '.join(kinds)}")
        if not self.modalities or set(self.modalities) - set(MODALITIES) or len(set(self.modalities)) != len(self.modalities):
            raise ConditionError(f"condition '{self.name}': modalities '{self.modalities}' are not distinct letters of 'tav'")
        if self.kind != NOISE and not 0.0 <= self.level <= 1.0:
            raise ConditionError(f"condition '{self.name}': missing rate {self.level:g} is outside [0, 1]")
        if self.kind == NOISE and not self.level >= 0.0:
            raise ConditionError(f"condition '{self.name}': noise level {self.level:g} is negative")


def condition_grid() -> list[Condition]:
    """Every condition of a robustness curve: missing (random, structural) x targets x rates,
    then noise x targets x levels."""
    missing = [Condition(k, m, r) for k in MISSING_KINDS for m in MISSING_TARGETS for r in RATES]
    return missing + [Condition(NOISE, m, lv) for m in NOISE_TARGETS for lv in NOISE_LEVELS]


def unk_id(special_ids: tuple[int, int, int]) -> int:
    """The [UNK] id of the vocabulary with these (cls, sep, pad) ids."""
    if tuple(special_ids) != BERT_SPECIAL_IDS:
        raise ConditionError(f"missing text tokens become [UNK]: known for the bert-base-uncased vocabulary "
                             f"(special ids {BERT_SPECIAL_IDS}), not for special ids {tuple(special_ids)}")
    return BERT_UNK_ID


def valid_steps(tensors: dict[str, torch.Tensor], m: str, special_ids: tuple[int, int, int]) -> dict[str, torch.Tensor]:
    """{tensor name: (N, T) bool, True at the valid steps of modality `m`} for each view present."""
    out = {}
    if m == "t" and "text_ids" in tensors:
        ids, cls, sep = tensors["text_ids"], special_ids[0], special_ids[1]
        out["text_ids"] = tensors["text_mask"].bool() & (ids != cls) & (ids != sep)
    feats, lengths = _FEATURES[m]
    if feats in tensors:
        steps = torch.arange(tensors[feats].shape[1])
        out[feats] = steps[None, :] < tensors[lengths][:, None]
    return out


def missing_mask(valid: torch.Tensor, kind: str, rate: float, gen: torch.Generator,
                 seed: Optional[int] = None) -> torch.Tensor:
    """(N, T) bool: the steps that go missing, round(rate * n) of each row's n valid steps
    (`bernoulli`: each valid step with probability rate, from numpy's legacy generator seeded
    with `seed` as MMSA's generate_m when given, else from `gen`)."""
    if kind == BERNOULLI:
        draws = (torch.from_numpy(np.random.RandomState(seed).uniform(size=tuple(valid.shape))) if seed is not None
                 else torch.rand(valid.shape, generator=gen, dtype=torch.float64))
        return valid & (draws <= rate)  # MMSA keeps a step where its draw > missing_rate
    n = valid.sum(1, keepdim=True)
    k = torch.round(rate * n.double()).long()
    position = valid.long().cumsum(1) - 1  # index among the row's valid steps
    if kind == "random":
        scores = torch.rand(valid.shape, generator=gen).masked_fill(~valid, 2.0)
        rank = scores.argsort(dim=1, stable=True).argsort(dim=1, stable=True)  # valid steps rank first
        return valid & (rank < k)
    start = (torch.rand(n.shape, generator=gen) * (n - k + 1)).long()
    return valid & (position >= start) & (position < start + k)


def modality_std(tensors: dict[str, torch.Tensor], m: str) -> float:
    """The std of modality `m`'s features over its valid steps (the unit of `noise` levels)."""
    feats = _FEATURES[m][0]
    valid = valid_steps(tensors, m, BERT_SPECIAL_IDS).get(feats)
    if valid is None or not valid.any():
        return 0.0
    return float(tensors[feats][valid].double().std())


def apply(tensors: dict[str, torch.Tensor], cond: Condition, special_ids: tuple[int, int, int],
          seed: Optional[int] = CONDITION_SEED, gen: Optional[torch.Generator] = None,
          scale: Optional[dict[str, float]] = None, record: bool = False) -> dict[str, torch.Tensor]:
    """`tensors` (Batch / Split field names) under `cond`; untouched tensors are shared.
    Masks come from `seed` (one generator per kind, level and modality), or from `gen`
    when given (training under missing data: fresh masks every batch). `scale`: the noise
    unit per modality (default: `modality_std` of these tensors). `record` (or tensors that
    already hold masks): each input a missing-data condition changes is also kept as
    "complete.<name>" (its value before the first condition) and its removed steps as
    "missing.<name>" (accumulated over conditions)."""
    out = dict(tensors)
    record = record or any(k.startswith(MISSING) for k in tensors)
    for m in cond.modalities:
        g = gen if gen is not None else _generator(seed, cond, m)
        for name, valid in valid_steps(tensors, m, special_ids).items():
            x = tensors[name]
            if cond.kind == NOISE:
                if name == "text_ids":
                    continue  # token ids take no additive noise
                unit = scale[m] if scale is not None else modality_std(tensors, m)
                noise = torch.randn(x.shape, generator=g, dtype=torch.float64) * (cond.level * unit)
                out[name] = torch.where(valid[..., None], x + noise.to(x.dtype), x)
                continue
            gone = missing_mask(valid, cond.kind, cond.level, g, seed if gen is None else None)
            out[name] = (x.masked_fill(gone, unk_id(special_ids)) if name == "text_ids"
                         else x.masked_fill(gone[..., None], 0.0))
            if record:
                out.setdefault(COMPLETE + name, x)
                out[MISSING + name] = gone | tensors[MISSING + name] if MISSING + name in tensors else gone
    return out


def apply_to_split(split: Split, cond: Condition, seed: int = CONDITION_SEED,
                   scale: Optional[dict[str, float]] = None, record: bool = False) -> Split:
    """The split with its inputs under `cond` (labels, ids and order unchanged); `record`: see `apply`."""
    return dataclasses.replace(split, tensors=apply(split.tensors, cond, split.special_ids, seed, scale=scale,
                                                    record=record))


def apply_to_batch(batch: Batch, cond: Condition, gen: torch.Generator) -> Batch:
    """The batch under `cond`, masks drawn from `gen` (training under missing data), with its
    complete inputs and the masks in `complete` / `missing`."""
    tensors = {k: t for k in Batch._TENSORS if (t := getattr(batch, k)) is not None}
    if batch.missing is not None and batch.complete is not None:  # already incomplete: accumulate
        tensors.update({MISSING + k: t for k, t in batch.missing.items()})
        tensors.update({COMPLETE + k: getattr(batch.complete, k) for k in batch.missing})
    changed: dict[str, Any] = apply(tensors, cond, batch.special_ids, gen=gen, record=True)
    own = {k: v for k, v in changed.items() if "." not in k and v is not tensors[k]}
    return dataclasses.replace(batch, **own).with_missing(changed)


def data_missing_condition(name: str) -> Condition:
    """The condition of a `data_missing` value: one that removes steps (not noise)."""
    cond = Condition.parse(name)
    if not cond.missing:
        raise ConditionError(f"'{name}': '{cond.kind}' removes no steps; give a missing-data condition "
                             f"({', '.join((*MISSING_KINDS, BERNOULLI))}), e.g. bernoulli/tav/0.2")
    return cond


def with_data_missing(data: MSAData, name: Optional[str], seed: int = MMSA_MISSING_SEED) -> MSAData:
    """MMSA's `data_missing` protocol: every split under the missing-data condition `name`
    (e.g. "bernoulli/tav/0.2"), masks drawn once per split from `seed`, complete inputs and
    masks recorded. None or "": `data` as it is."""
    if not name:
        return data
    cond = data_missing_condition(name)
    splits: dict[str, Any] = {s: apply_to_split(data.split(s), cond, seed, record=True) for s in SPLITS}
    return dataclasses.replace(data, **splits)


def noise_scale(split: Split) -> dict[str, float]:
    """The noise unit of each modality on `split` (recorded with the curves)."""
    return {m: modality_std(split.tensors, m) for m in MODALITIES}


def _generator(seed: Optional[int], cond: Condition, m: str) -> torch.Generator:
    """A generator that depends only on (seed, kind, level, modality)."""
    key = f"{seed}/{cond.kind}/{cond.level:g}/{m}".encode()
    return torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1)
