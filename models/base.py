"""The model protocol the trainer relies on.

A model is an `MSAModel` (an nn.Module) built from a `ModelConfig` dataclass:
- `forward(batch) -> ModelOutput` with `pred` (B, 1) for regression or (B, 8) logits for
  IEMOCAP (4 emotions x (absent, present));
- `loss(output, batch) -> {"total": ..., named parts}`: the model owns its loss;
- `param_groups()` -> optimizer groups; `modality_params()` -> parameters per modality branch;
- hooks `on_epoch_start`, `on_epoch_end`, `training_batch`, `after_backward`, `on_stage_start`,
  `training_multipliers`: the only way a model changes training behaviour (a model never
  writes the optimizer: it declares a `Schedule` or returns `Multipliers` the trainer applies);
  `summary()` adds model-specific fields to the result file;
- optional `stages()` -> ordered `Stage`s (multi-stage methods: ConFEDE, MFON) and `phases()`
  -> `Phase`s (passes with their own optimizers inside every epoch: MMIM), each described on
  its class; `self.stage` / `self.train_phase` name the one running, so `forward` and `loss`
  can branch on them.

Training settings live in the same config as the architecture, so one preset states
everything a run needs and one `--set key=value` reaches any of it.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.protocol import Batch, at_least_fp32
from models.constants import MODALITIES

TASKS = ("regression", "iemocap")
OPTIMIZERS = ("adam", "adamw", "adamw_hf")  # ModelConfig.optimizer, built by bench.optim


@dataclass(kw_only=True)
class ModelConfig:
    """Fields shared by every model. Subclasses add architecture fields; presets fill values."""

    # identity (filled by create_model)
    dataset: str = "synthetic"
    preset: str = "mmsa"
    # data contract
    task: str = "regression"  # regression (MOSI/MOSEI, L1) | iemocap (4 x binary CE, MulT protocol)
    n_out: int = 1  # 1 for regression, 8 = 4 emotions x 2 logits for IEMOCAP
    dims: tuple[int, int, int] = (768, 5, 20)  # t/a/v input dims; MMSA MOSI (config_regression.json)
    text_input: str = "features"  # "features" (pre-extracted `text`) | "ids" (`text_bert` token ids)
    #   | "raw_text" (token ids made from `raw_text` by the --text-encoder folder's tokenizer)
    text_max_length: Optional[int] = None  # raw_text / MAG pickles: max tokens incl. [CLS]/[SEP]
    setting: str = "unaligned"  # which MMSA pickle the model reads: aligned_50 | unaligned_50
    dims_from_data: bool = False  # True: the runner takes audio/vision widths from the data file
    #   (models whose official widths are MAG's 74/47 but that also run on MMSA pickles)
    data_missing: Optional[str] = None  # MMSA's data_missing protocol: every split under this missing-data
    #   condition (e.g. "bernoulli/tav/0.2"), masks drawn once per split (bench/data/conditions.py); None: complete data
    # optimisation (the trainer reads these; presets give their sources)
    optimizer: str = "adam"  # adam (torch, coupled L2) | adamw (torch, decoupled) | adamw_hf (transformers 4.x
    #   AdamW: eps added before the bias correction, decay after the update; bench/optim.py)
    adam_epsilon: Optional[float] = None  # None: the optimizer's default (torch 1e-8, adamw_hf 1e-6)
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    eval_batch_size: Optional[int] = None  # None: same as batch_size
    grad_accum_steps: int = 1  # optimizer step every N batches; the trailing partial group is applied too
    clip_grad_value: Optional[float] = None  # clip_grad_value_ after every backward (MMSA MulT)
    clip_grad_norm: Optional[float] = None  # clip_grad_norm_ before every optimizer step
    scheduler: Optional[str] = None  # None | "plateau" (ReduceLROnPlateau on valid loss) | "linear_warmup"
    scheduler_patience: int = 5
    scheduler_factor: float = 0.1
    warmup_ratio: float = 0.1  # linear_warmup only
    max_epochs: int = 200  # harness safety cap
    early_stop_patience: Optional[int] = 8  # epochs without improvement; None = run all epochs
    min_delta: float = 1e-6  # an improvement must be at least this (MMSA)
    val_loss_decimals: Optional[int] = 4  # MMSA rounds the validation loss to 4 decimals before comparing
    selection_metric: str = "loss"  # validation key for model selection (lowest validation loss, MMSA's rule)


INHERIT: Any = "inherit"  # a Stage field left at INHERIT takes the model config's value
SCHEDULE_KINDS = ("linear_warmup", "cosine_warmup", "warmup_cosine_epochs", "cosine_epochs", "milestones", "plateau")


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule a model (`lr_schedule()`) or a Stage declares; the trainer
    applies it (bench/schedule.py): every optimizer group's lr = its `base_lr` x the factor,
    set at each epoch start and, for the per-step kinds, before every optimizer step. No model
    writes the optimizer itself. `source` says where the schedule comes from."""

    kind: Optional[str] = None  # None: constant lr | per optimizer step: "linear_warmup" (transformers
    #   get_linear_schedule_with_warmup), "cosine_warmup" (get_cosine_schedule_with_warmup) | per epoch:
    #   "warmup_cosine_epochs" (linear warm-up over warmup_ratio x epochs from lr 0, then cosine over the
    #   rest), "cosine_epochs" (CosineAnnealingLR(T_max=epochs), eta_min 0, per epoch, re-rising after
    #   T_max), "milestones" (x decay per milestone reached) | "plateau" (ReduceLROnPlateau on valid loss)
    warmup_ratio: float = 0.1  # warm-up kinds: warm-up length / schedule length
    epochs: Optional[int] = None  # the schedule's length in epochs; None: the stage's max_epochs
    cosine_clamp: bool = False  # cosine_warmup: clamp the progress at 1 (False, as transformers: the lr re-rises)
    milestones: tuple[int, ...] = ()  # milestones: the epochs from which the lr is multiplied by `decay` once more
    decay: float = 0.1  # milestones and plateau: the multiplier
    patience: int = 5  # plateau: epochs without improvement before a decay
    next_step_lr: bool = True  # per-step kinds: after an optimizer step the lr is the next step's (torch
    #   LambdaLR); False: each step's lr is set just before it, so an epoch ends on its last step's lr
    record_factor: bool = False  # each epoch's history gets `lr_factor`, the factor of its first step
    optimizer_reset: Optional[str] = None  # "every_epoch": the optimizer state (moments, step counts) is
    #   cleared before every epoch after the first, as a freshly built optimizer
    source: str = ""  # where the schedule comes from (paper, code file and line, or a harness decision)


@dataclass(frozen=True)
class StageData:
    """Data a stage trains on besides the labeled splits. The model only names it; bench/data
    loads and validates it before training and the trainer hands it over: with `as_batches`,
    each training step's batch is the source's next batch instead of the labeled one (a stage
    "epoch" keeps the labeled split's batch count); otherwise the loaded object is
    `state.stage_data` in the stage's hooks."""

    source: str  # a source bench/data knows: "kebr_pretrain_clips" | "unlabeled_clips"
    path_field: str  # the config field naming its folder (e.g. "pretrain_dir")
    as_batches: bool = False


@dataclass(frozen=True)
class Freeze:
    """Parameters a stage keeps frozen for its first `epochs` epochs, then trains: at each epoch
    start the trainer sets their requires_grad (they stay in the optimizer: a frozen epoch gives
    no gradient and no step) and records whether they were frozen in the history field `record`."""

    params: Callable[[], Iterable[nn.Parameter]]
    epochs: int
    record: str = "frozen"


@dataclass(frozen=True)
class Stage:
    """One stage of a multi-stage method.

    The trainer sets `model.stage = name`, freezes every parameter not in `trainable()`,
    builds the optimizer from `param_groups()` (default: the model's groups restricted to the
    trainable parameters), trains with `loss` (default `model.loss`) for at most
    `max_epochs` (always capped by the config's `max_epochs`, so `--epochs N` caps every
    stage), early-stops and selects on validation `selection_metric`, then loads the
    selected state before the next stage starts. The test split is scored once, after the last.
    """

    name: str
    trainable: Optional[Callable[[], Iterable[nn.Parameter]]] = None  # None: every parameter trainable as built
    param_groups: Optional[Callable[[], list[dict[str, Any]]]] = None  # None: model.param_groups() ∩ trainable
    loss: Optional[Callable[["ModelOutput", "Batch"], dict[str, torch.Tensor]]] = None  # None: model.loss
    max_epochs: Any = INHERIT  # int; INHERIT: cfg.max_epochs
    early_stop_patience: Any = INHERIT  # int | None (run every epoch); INHERIT: cfg.early_stop_patience
    selection_metric: Any = INHERIT  # a bench.metrics key; INHERIT: cfg.selection_metric
    batch_size: Any = INHERIT  # training batch size of this stage; INHERIT: cfg.batch_size
    warmup_ratio: Any = INHERIT  # the schedule's warmup_ratio in this stage; INHERIT: the schedule's own
    schedule: Any = INHERIT  # a Schedule; INHERIT: model.lr_schedule()
    optimizer: Any = INHERIT  # the stage's optimizer kind (ModelConfig.optimizer); INHERIT: cfg.optimizer
    contributions: bool = True  # Shapley values on validation each epoch (off for unimodal pre-training)
    data: Optional[StageData] = None  # other data the stage trains on (loaded by bench/data)
    freeze: Optional[Freeze] = None  # parameters frozen for the stage's first epochs


@dataclass(frozen=True)
class Phase:
    """One pass over the training split inside every epoch, with its own optimizer (MMIM:
    its MI-bound networks, then the rest). A model declaring `phases()` trains each epoch as
    these passes in order: the trainer sets `model.train_phase = name`, steps only this phase's
    optimizer (built once per stage from `param_groups()`, its state kept across epochs),
    clears every gradient before each batch and clips over every trainable parameter, as one
    `model.zero_grad()` / `clip_grad_norm_(model.parameters())` does. `fraction`: the share of
    the epoch's batches this pass reads (the first ceil(fraction x batches)). `schedule`:
    this phase's lr schedule (INHERIT: the stage's). An epoch's `train` history holds the
    last phase's loss parts, the others' as "<phase>.<part>"."""

    name: str
    param_groups: Callable[[], list[dict[str, Any]]]
    fraction: float = 1.0
    schedule: Any = INHERIT


@dataclass(frozen=True)
class Multipliers:
    """Scalings a model asks the trainer to apply for one epoch (PaSE's SGM).

    `lr`: {optimizer group name: factor}; before the epoch every group's lr becomes
    base_lr * factor (1.0 for a group not named). `grad`: {modality: factor}; after every
    backward (after `after_backward`, before clipping) the gradients of
    `modality_params()[m]` are multiplied by the factor. None leaves that part alone."""

    lr: Optional[dict[str, float]] = None
    grad: Optional[dict[str, float]] = None


@dataclass
class ModelOutput:
    pred: torch.Tensor  # (B, 1) regression or (B, 8) IEMOCAP logits
    unimodal: Optional[dict[str, torch.Tensor]] = None  # {"t","a","v"} -> predictions, same shape as pred
    features: Optional[dict[str, torch.Tensor]] = None
    extras: dict[str, Any] = field(default_factory=dict)


def task_loss(pred: torch.Tensor, labels: torch.Tensor, task: str, reduction: str = "mean") -> torch.Tensor:
    """L1 for regression (MMSA); CE over each emotion's 2 logits, averaged (MulT src/train.py)."""
    work = at_least_fp32(pred.dtype)  # fp32 at least (AMP), f64 kept
    if task == "regression":
        return F.l1_loss(pred.reshape(-1).to(work), labels.reshape(-1).to(work), reduction=reduction)
    if task == "iemocap":
        loss = F.cross_entropy(pred.to(work).reshape(-1, 2), labels.reshape(-1).long(), reduction=reduction)
        return loss if reduction != "none" else loss.view(labels.shape[0], -1).mean(1)
    raise ValueError(f"unknown task '{task}' (expected one of {TASKS})")


class MSAModel(nn.Module):
    """Base class: default loss, optimizer groups and no-op hooks."""

    cfg: ModelConfig
    modalities: tuple[str, ...] = MODALITIES  # the modalities the model reads (bert_text: text only)
    stage: Optional[str] = None  # the Stage being trained/evaluated; None: a model without stages
    train_phase: Optional[str] = None  # the Phase being trained; None: outside training or a model without phases
    # name fragments of parameters that are built but by design receive no gradient: the BERT
    # pooler a model does not read, and the reference code's dead modules (named `unused_*`).
    # They count in the parameter totals; `bench check-model` accepts them without a gradient.
    no_grad_params: tuple[str, ...] = ("pooler.", "unused_")

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.task not in TASKS:
            raise ValueError(f"unknown task '{cfg.task}' (expected one of {TASKS})")
        self.cfg = cfg

    # -- protocol ---------------------------------------------------------------------
    def forward(self, batch: "Batch") -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- optional: separable models (each modality encoded independently, then fused) ---
    def encode(self, batch: "Batch") -> dict[str, torch.Tensor]:
        """Per-modality representations {"t","a","v"}, each a function of its own input only."""
        raise NotImplementedError

    def fuse(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        """The fused prediction from per-modality representations; forward(b).pred == fuse(encode(b))."""
        raise NotImplementedError

    @property
    def separable(self) -> bool:
        """True when the model implements encode/fuse: coalition evaluations then encode each
        batch twice (with and without every modality) instead of running one forward per coalition."""
        return type(self).encode is not MSAModel.encode and type(self).fuse is not MSAModel.fuse

    def loss(self, output: ModelOutput, batch: "Batch") -> dict[str, torch.Tensor]:
        task = task_loss(output.pred, batch.labels, self.cfg.task)
        return {"total": task, "task": task}

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups: dicts with name, params, lr, weight_decay."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"name": "all", "params": params, "lr": self.cfg.lr, "weight_decay": self.cfg.weight_decay}]

    def lr_schedule(self) -> Schedule:
        """The learning-rate schedule the trainer applies; default: the config's `scheduler`."""
        cfg = self.cfg
        return Schedule(kind=cfg.scheduler, warmup_ratio=cfg.warmup_ratio, decay=cfg.scheduler_factor,
                        patience=cfg.scheduler_patience, source="ModelConfig.scheduler")

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        """Parameters of each modality branch; models override (PaSE's SGM needs it)."""
        raise NotImplementedError(f"{type(self).__name__} does not define modality branches")

    def on_epoch_start(self, epoch: int, state: Any) -> dict[str, Any]:
        """Called before each training epoch; returns fields for that epoch's history."""
        return {}

    def on_epoch_end(self, epoch: int, state: Any) -> dict[str, Any]:
        """Called after validation; returns fields for that epoch's history."""
        return {}

    def training_multipliers(self, epoch: int, state: Any) -> Optional[Multipliers]:
        """Called right after `on_epoch_start`; the lr / gradient scalings for that epoch (None: none)."""
        return None

    def stages(self) -> list[Stage]:
        """Ordered training stages; [] (the default) trains once with the config's settings."""
        return []

    def phases(self) -> list[Phase]:
        """Passes over the training split per epoch, each with its own optimizer; [] (the
        default): one pass with one optimizer over `param_groups()`."""
        return []

    def on_stage_start(self, stage: Stage, state: Any) -> dict[str, Any]:
        """Called before a stage's first epoch (e.g. ConFEDE builds its retriever from the
        training split); returns fields for that stage's record."""
        return {}

    def training_batch(self, batch: "Batch", state: Any) -> "Batch":
        """Called by the trainer on each training batch before `forward` (e.g. ConFEDE attaches
        partner samples drawn from `state.data.train`); `forward` reads only its batch."""
        return batch

    def after_backward(self, step: int) -> None:
        """Called after each backward pass, before clipping and the optimizer step."""

    def summary(self) -> dict[str, Any]:
        """Model-specific fields recorded in the result file (e.g. PaSE's switch epoch)."""
        return {}


def sum_terms(terms: Iterable[torch.Tensor]) -> torch.Tensor:
    """The sum of loss terms, added left to right (`sum()` is typed as int | Tensor by its 0 start)."""
    return functools.reduce(operator.add, terms)


def count_parameters(model: nn.Module) -> dict[str, int]:
    return {"total": sum(p.numel() for p in model.parameters()),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}
