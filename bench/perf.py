"""`python -m bench perf`: training-step time with its noise, forward time, peak memory and
parameter count per model on random inputs of a dataset's real shapes (no data files), each
against a *floor*: one plain transformers `BertModel` fine-tune step at the same batch and
sequence length. BERT models are built with bert-base-uncased shapes.

How a model is timed (`format_report` states the method in each report): the floor lives in
one subprocess for the whole run; each model is built in a fresh one (so its peak memory is
its own), warmed up, and its timed steps alternate with floor steps, F M F M ... M F. Pairing
each model step with the floor steps just before and after it cancels the load of a shared
machine at that moment, and slow drift to first order.

The interval: the sign-test interval for the median ratio (`median_interval`). It assumes only
independent steps from one continuous distribution, needs no seed, and is exact at n = 5,
where a bootstrap percentile interval (its median can only take the 5 observed values) covers
less than it claims.

Also reported: the exact-Shapley evaluations' share of an epoch (validation contributions;
PaSE's SGM every `sgm_every` epochs), a staged model's earlier stages' share of a run, and the
robustness curves' share of a run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from bench.plugins import WithPlugins

log = logging.getLogger(__name__)

# shapes of the MMSA unaligned_50 pickles and of MulT's IEMOCAP pickle
SHAPES: dict[str, dict[str, Any]] = {
    "mosi": {"text": 50, "audio": (375, 5), "vision": (500, 20), "text_dim": 768, "splits": (1284, 229, 686)},
    "mosei": {"text": 50, "audio": (500, 74), "vision": (500, 35), "text_dim": 768, "splits": (16326, 1871, 4659)},
    # MulT iemocap_data_noalign.pkl as third-party inspections report it [unverified]
    "iemocap": {"text": 20, "audio": (400, 74), "vision": (500, 35), "text_dim": 300, "splits": (2717, 798, 938)},
}


# × floor targets (issue "Speed, part 2"): BERT models 1.15, models that add encoders on BERT 1.3
TARGETS: dict[str, float] = {"mag_bert": 1.15, "self_mm": 1.15, "bert_text": 1.15}
DEFAULT_BERT_TARGET = 1.3


def target_for(row: dict[str, Any]) -> float | None:
    """The × floor target of a measured row; None for models without BERT (MulT, late_fusion)."""
    no_bert = row.get("model") == "floor" or not row.get("bert")
    return None if no_bert else TARGETS.get(row["model"], DEFAULT_BERT_TARGET)


def shape_for(shape: dict[str, Any], cfg) -> dict[str, Any]:
    """The dataset's shapes as this model reads them: its preset's audio/vision widths, and 50
    steps each where it reads word-aligned data (MMSA aligned_50, MAG pickles)."""
    (ta, _), (tv, _) = shape["audio"], shape["vision"]
    if getattr(cfg, "setting", "unaligned") == "aligned":
        ta = tv = shape["text"]
    return {**shape, "audio": (ta, cfg.dims[1]), "vision": (tv, cfg.dims[2])}


SPLIT_KEYS = ("audio", "vision", "audio_lengths", "vision_lengths", "labels",
              "text_ids", "text_mask", "text_segment", "text_feats", "text_lengths")


def random_batch(shape: dict[str, Any], batch: int, task: str, seed: int = 0):
    import torch

    from models.protocol import Batch

    g = torch.Generator().manual_seed(seed)
    L = shape["text"]
    (ta, da), (tv, dv) = shape["audio"], shape["vision"]
    ids = torch.randint(1000, 30000, (batch, L), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    labels = (torch.rand(batch, generator=g) * 6 - 3) if task == "regression" else torch.randint(0, 2, (batch, 4), generator=g)
    return Batch(
        audio=torch.randn(batch, ta, da, generator=g), vision=torch.randn(batch, tv, dv, generator=g),
        audio_lengths=torch.full((batch,), ta), vision_lengths=torch.full((batch,), tv),
        labels=labels, index=torch.arange(batch), ids=[str(i) for i in range(batch)],
        text_ids=ids, text_mask=torch.ones_like(ids), text_segment=torch.zeros_like(ids),
        text_feats=torch.randn(batch, L, shape["text_dim"], generator=g), text_lengths=torch.full((batch,), L),
    )


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device, n: int) -> list[float]:
    out = []
    for _ in range(n):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        out.append((time.perf_counter() - t) * 1000)
    return out


# -- statistics: paired ratios, their interval, the verdict ---------------------------------
MIN_STEPS = 5  # timed steps per model: the fewest for a 90 % sign-test interval (93.75 % at 5)
CONFIDENCE = 0.90
SHAPLEY_BATCHES = 3  # batches of a Shapley evaluation timed, then scaled to the split (Session._shapley_ms)
MET, MISSED, UNDECIDED = "target met", "missed", "undecided (within noise)"


def median_interval(values: Sequence[float], level: float = CONFIDENCE) -> tuple[float, float, float]:
    """(low, high, coverage): the sign-test interval for the median of the distribution the
    values were drawn from, the k-th smallest and k-th largest value with the largest k whose
    coverage 1 - 2 P(Binomial(n, 1/2) < k) is at least `level` (k = 1 when none is)."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        raise ValueError("median_interval: no values")

    def coverage(k: int) -> float:
        return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n

    k = 1
    while k < (n + 1) // 2 and coverage(k + 1) >= level:
        k += 1
    return xs[k - 1], xs[n - k], coverage(k)


def verdict(low: float, high: float, target: float) -> str:
    """"target met" only when the whole interval is below the target, "missed" only when it is
    all above, else undecided."""
    return MET if high < target else MISSED if low > target else UNDECIDED


def paired_ratios(model_ms: Sequence[float], floor_ms: Sequence[float]) -> list[float]:
    """Each model step over the mean of the floor steps just before and after it (F M F ... M F)."""
    if len(floor_ms) != len(model_ms) + 1:
        raise ValueError(f"{len(model_ms)} model steps need {len(model_ms) + 1} floor steps around them, "
                         f"got {len(floor_ms)}")
    return [m / ((before + after) / 2) for m, before, after in zip(model_ms, floor_ms, floor_ms[1:], strict=False)]


def ratio_summary(model_ms: Sequence[float], floor_ms: Sequence[float], target: float | None) -> dict[str, Any]:
    """A model row's × floor fields: the raw floor steps, the paired ratios, their median and
    interval, and (with a target) the verdict."""
    ratios = paired_ratios(model_ms, floor_ms)
    low, high, coverage = median_interval(ratios)
    out: dict[str, Any] = {"floor_ms": list(floor_ms), "ratios": ratios, "ratio_to_floor": statistics.median(ratios),
                           "ratio_low": low, "ratio_high": high, "ratio_confidence": coverage}
    if target is not None:
        out.update(target=target, verdict=verdict(low, high, target))
    return out


def step_stats(step_ms: Sequence[float]) -> dict[str, Any]:
    """The raw step times and their median, min and max."""
    return {"step_ms": list(step_ms), "step_ms_median": statistics.median(step_ms),
            "step_ms_min": min(step_ms), "step_ms_max": max(step_ms)}


def interleave(model_step: Callable[[], float], floor_step: Callable[[], float] | None,
               steps: int) -> tuple[list[float], list[float]]:
    """Time `steps` model steps, each between two floor steps (F M F M ... M F); without a floor,
    the model's steps alone. Returns (model ms, floor ms)."""
    floor_ms = [floor_step()] if floor_step else []
    model_ms = []
    for _ in range(steps):
        model_ms.append(model_step())
        if floor_step:
            floor_ms.append(floor_step())
    return model_ms, floor_ms


# -- one model (or the floor) in one process ------------------------------------------------
class Session:
    """A model (or "floor") built in this process on a random batch and warmed up: `step()`
    times one training step, `finish(step_ms)` measures the rest of its row."""

    def __init__(self, name: str, dataset_shapes: str, batch: int, steps: int, warmup: int, device_name: str,
                 amp: bool = True):
        import torch

        from bench.threads import apply_threads, run_threads
        from bench.train import build_optimizer, resolve_device

        apply_threads(run_threads())  # as a run: OMP_NUM_THREADS, else the cores this process may use
        self.name, self.batch, self.warmup, self.amp, self.dataset_shapes = name, batch, warmup, amp, dataset_shapes
        self.device = resolve_device(device_name)
        torch.manual_seed(0)
        self.model, self.task, self.shape = _build(name, dataset_shapes, self.device)
        self.b = random_batch(self.shape, batch, self.task).to(self.device)
        stages = self.model.stages() if name != "floor" else []
        self.earlier = [self._time_stage(stage, steps) for stage in stages[:-1]]
        self.last = stages[-1] if stages else None
        self._freeze = as_stage(self.model, self.last) if self.last else contextlib.nullcontext()
        self._freeze.__enter__()
        opt = (torch.optim.Adam(self.model.parameters(), lr=1e-5) if name == "floor" else
               build_optimizer(self.model, self.last.param_groups() if self.last and self.last.param_groups else None))
        self.train_step = step_fn(self.model, self.last, self.b, opt, self.device, amp)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        _timed(self.train_step, self.device, warmup)

    def step(self) -> float:
        """One timed training step, ms."""
        return _timed(self.train_step, self.device, 1)[0]

    def finish(self, step_ms: list[float]) -> dict[str, Any]:
        """The row: the given step times, forward time, peak memory, parameters, and the
        Shapley and earlier-stage costs."""
        import torch

        from bench.train import peak_memory

        _timed(self._forward, self.device, 1)
        fwd_ms = _timed(self._forward, self.device, len(step_ms))
        cfg = getattr(self.model, "cfg", None)
        row: dict[str, Any] = {
            "model": self.name, "preset": getattr(cfg, "preset", "-"), **step_stats(step_ms),
            "forward_ms_median": statistics.median(fwd_ms), "peak_memory_bytes": peak_memory(self.device),
            "params": sum(p.numel() for p in self.model.parameters()),
            "batch": self.batch, "steps": len(step_ms), "warmup": self.warmup, "device": str(self.device),
            "dataset_shapes": self.dataset_shapes, "threads": torch.get_num_threads(),
            "bert": self.name == "floor" or (getattr(cfg, "text_input", "") != "features" and hasattr(cfg, "text_encoder")),
        }
        if self.device.type == "cuda":
            row["tokens_per_s"] = self.batch * self.shape["text"] / (row["step_ms_median"] / 1000)
        n_train, n_valid, _ = self.shape["splits"]
        row["epoch_ms_est"] = (-(-n_train // self.batch) * row["step_ms_median"]
                               + -(-n_valid // self.batch) * row["forward_ms_median"])
        if self.name != "floor":
            row.update(self._shapley_costs(row["epoch_ms_est"]))
            row.update(self._curves_cost(row["epoch_ms_est"], row["forward_ms_median"]))
        if self.last is not None:
            row.update(self._stage_costs(row["epoch_ms_est"]))
        self._freeze.__exit__(None, None, None)
        return row

    def _forward(self) -> None:
        import torch

        from bench.train import autocast

        self.model.eval()
        with torch.no_grad(), autocast(self.device, self.amp):
            self.model(self.b)

    def _time_stage(self, stage, steps: int) -> dict[str, Any]:
        """An earlier stage's median step (a short timing, for its share of a run)."""
        from bench.train import build_optimizer

        with as_stage(self.model, stage):
            opt = build_optimizer(self.model, stage.param_groups() if stage.param_groups else None)
            step = step_fn(self.model, stage, self.b, opt, self.device, self.amp)
            ms = _timed(step, self.device, 1 + max(1, steps // 2))[1:]
        return {"stage": stage.name, "step_ms_median": statistics.median(ms),
                "epochs": _stage_epochs(stage, self.model.cfg)}

    def _shapley_ms(self, n: int) -> float:
        """Exact Shapley on n samples, the 8 coalitions batch by batch (contribution curves).
        The split is the perf batch repeated, so timing SHAPLEY_BATCHES of its batches and
        scaling to all of them is the same measurement, minutes shorter for MulT or MAG-BERT."""
        import torch

        from bench.data.base import Split
        from bench.metrics import contribution_utility
        from bench.train import coalition_utilities

        batches = -(-n // self.batch)
        timed = min(batches, SHAPLEY_BATCHES)
        m = min(n, timed * self.batch)
        split = Split("perf", {key: torch.cat([getattr(self.b, key).cpu()] * timed)[:m] for key in SPLIT_KEYS},
                      [str(i) for i in range(m)])
        t0 = time.perf_counter()
        coalition_utilities(self.model, split, self.device, self.batch,
                            lambda p, y: contribution_utility(self.task, p, y), self.amp)
        _sync(self.device)
        return (time.perf_counter() - t0) * 1000 * batches / timed

    def _shapley_costs(self, epoch_ms: float) -> dict[str, float]:
        """Per-epoch contributions on validation-sized data; PaSE's SGM on its train subsample,
        computed every `sgm_every` epochs."""
        cfg = self.model.cfg
        n_train, n_valid, _ = self.shape["splits"]
        out = {"contributions_ms": self._shapley_ms(n_valid)}
        out["contributions_share"] = out["contributions_ms"] / (epoch_ms + out["contributions_ms"])
        if getattr(cfg, "use_sgm", False):
            out["sgm_ms"] = self._shapley_ms(min(cfg.sgm_subsample, n_train)) / max(1, getattr(cfg, "sgm_every", 1))
            out["sgm_share"] = out["sgm_ms"] / (epoch_ms + out["sgm_ms"])
        return out

    def _curves_cost(self, epoch_ms: float, forward_ms: float) -> dict[str, float]:
        """`--robustness-curves`: forward passes over the test split, clean and under each
        condition, after training; its share of a run of `max_epochs` epochs."""
        from bench.data.conditions import condition_grid

        ms = (1 + len(condition_grid())) * -(-self.shape["splits"][2] // self.batch) * forward_ms  # the test split
        return {"curves_ms": ms, "curves_share": ms / (self.model.cfg.max_epochs * epoch_ms + ms)}

    def _stage_costs(self, epoch_ms: float) -> dict[str, Any]:
        """The timed (last) stage's name and the earlier stages' share of a run."""
        assert self.last is not None
        n_train = self.shape["splits"][0]
        earlier_ms = sum(-(-n_train // self.batch) * e["step_ms_median"] * e["epochs"] for e in self.earlier)
        run_ms = earlier_ms + _stage_epochs(self.last, self.model.cfg) * epoch_ms
        return {"stage": self.last.name, "earlier_stages": self.earlier,
                "earlier_stages_share": earlier_ms / run_ms if run_ms else 0.0}


def _build(name: str, dataset_shapes: str, device) -> tuple[Any, str, dict[str, Any]]:
    """(model on device, task, shapes as the model reads them); "floor" is the BertModel step."""
    if name == "floor":
        return _floor_model(device), "regression", SHAPES[dataset_shapes]
    from models.registry import get_model_entry, resolve_config

    entry = get_model_entry(name)
    fields = {f.name for f in dataclasses.fields(entry.config_cls)}
    cfg = resolve_config(name, dataset_shapes, None, **({"text_encoder": "bert-base"} if "text_encoder" in fields else {}))
    return entry.builder(cfg).to(device), cfg.task, shape_for(SHAPES[dataset_shapes], cfg)


@contextlib.contextmanager
def as_stage(model, stage):
    """The model as the trainer runs `stage`: `model.stage` set, the rest frozen."""
    from bench.train import frozen_except

    model.stage = stage.name
    with frozen_except(model, stage):
        yield
    model.stage = None


def _stage_epochs(stage, cfg) -> int:
    from models.base import INHERIT

    return min(cfg.max_epochs, cfg.max_epochs if stage.max_epochs is INHERIT else stage.max_epochs)


def step_fn(model, stage, b, opt, device, amp):
    """One training step: forward + loss + backward + optimizer step, as the trainer does it."""
    from bench.train import autocast

    loss_fn = (stage.loss if stage is not None and stage.loss else None) or model.loss

    def train_step():
        model.train()
        with autocast(device, amp):
            out = model(b)
            loss = loss_fn(out, b)["total"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return train_step


def _floor_model(device):
    """A plain transformers BertModel fine-tune step: [CLS] -> Linear -> L1."""
    import torch
    from torch import nn
    from transformers import BertConfig, BertModel

    from models.layers.text_encoder import NAMED_CONFIGS

    class Floor(nn.Module):
        def __init__(self):
            super().__init__()
            cfg = BertConfig(**NAMED_CONFIGS["bert-base"])
            cfg._attn_implementation = "sdpa"
            self.bert = BertModel(cfg)
            self.head = nn.Linear(768, 1)

        def forward(self, b):
            h = self.bert(input_ids=b.text_ids, attention_mask=b.text_mask, token_type_ids=b.text_segment).last_hidden_state
            return self.head(h[:, 0])

        def loss(self, out, b):
            return {"total": torch.nn.functional.l1_loss(out.view(-1), b.labels.view(-1).float())}

    return Floor().to(device)


# -- processes and the run -----------------------------------------------------------------
class PerfError(Exception):
    """A session (`source`: a model or "floor") failed; the message is its error."""

    def __init__(self, source: str, message: str):
        super().__init__(message)
        self.source, self.message = source, message

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


class Stepper(Protocol):
    """A Session seen from the run: in this process or in a subprocess."""

    name: str

    def step(self) -> float: ...

    def finish(self, step_ms: list[float]) -> dict[str, Any]: ...

    def close(self) -> None: ...


class _Local:
    """A Session in this process (peak memory is then the process's)."""

    def __init__(self, name: str, args: tuple):
        self.name = name
        self._session = self._guard(Session, *args)

    def _guard(self, fn: Callable, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as err:
            raise PerfError(self.name, f"{type(err).__name__}: {err}") from err

    def step(self) -> float:
        return self._guard(self._session.step)

    def finish(self, step_ms: list[float]) -> dict[str, Any]:
        return self._guard(self._session.finish, step_ms)

    def close(self) -> None:
        pass


class _Remote:
    """A Session in a spawned subprocess, driven over a pipe: its peak memory is its own."""

    def __init__(self, name: str, args: tuple):
        ctx = mp.get_context("spawn")
        self.name = name
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=WithPlugins(_serve), args=(args, child))
        self._proc.start()
        child.close()
        try:
            self._call(None)  # built and warmed up
        except PerfError:
            self.close()
            raise

    def _call(self, request: tuple | None) -> Any:
        """Send `request` (None: nothing), return the answer or raise the worker's error."""
        try:
            if request is not None:
                self._conn.send(request)
            status, value = self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(10)
            raise PerfError(self.name, f"worker process ended (exit code {self._proc.exitcode})") from None
        if status == "error":
            raise PerfError(self.name, value)
        return value

    def step(self) -> float:
        return self._call(("step", None))

    def finish(self, step_ms: list[float]) -> dict[str, Any]:
        return self._call(("finish", step_ms))

    def close(self) -> None:
        self._conn.close()  # a worker waiting for its next request sees EOF and exits
        self._proc.join(30)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join()


def _serve(args: tuple, conn) -> None:
    """The subprocess side of _Remote: build and warm up, then answer requests until "finish"."""
    try:
        session = Session(*args)
        conn.send(("ok", None))
        while True:
            request, payload = conn.recv()
            if request == "finish":
                conn.send(("ok", session.finish(payload)))
                return
            conn.send(("ok", session.step()))
    except EOFError:  # the parent closed the pipe
        return
    except Exception as err:  # noqa: BLE001 -- failure is data: the parent makes it an error row
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(err).__name__}: {err}"))


def run_perf(models: list[str], dataset_shapes: str = "mosi", batch: int = 32, steps: int = MIN_STEPS,
             warmup: int = 1, device: str = "auto", floor: bool = True, isolate: bool = True,
             amp: bool = True) -> list[dict[str, Any]]:
    """Rows for `models`, the floor's row first (with `floor`): each model timed step by step
    between floor steps (module docstring); a model that fails is a row with an `error`."""
    if dataset_shapes not in SHAPES:
        raise ValueError(f"unknown --dataset-shapes '{dataset_shapes}' (one of {', '.join(SHAPES)})")
    if steps < MIN_STEPS:
        raise ValueError(f"--steps {steps}: give at least {MIN_STEPS} (the fewest for a {CONFIDENCE:.0%} interval)")

    def start(name: str) -> Stepper:
        log.info("measuring %s (%s shapes, batch %d, %d steps)...", name, dataset_shapes, batch, steps)
        return (_Remote if isolate else _Local)(name, (name, dataset_shapes, batch, steps, warmup, device, amp))

    rows: list[dict[str, Any]] = []
    floor_ms: list[float] = []
    fl, floor_row = _start_floor(start) if floor else (None, None)
    try:
        for name in models:
            try:
                row, ms = _measure(start(name), fl, steps)
                floor_ms += ms
            except PerfError as err:
                row = {"model": name, "error": err.message if err.source == name else str(err)}
                if err.source == "floor" and fl is not None:  # no floor for the models after this one
                    fl.close()
                    fl, floor_row = None, {"model": "floor", "error": err.message}
            rows.append(row)
        if fl is not None:
            floor_row = _finish_floor(fl, floor_ms, steps)
    finally:
        if fl is not None:
            fl.close()
    return [floor_row, *rows] if floor_row else rows


def _start_floor(start: Callable[[str], Stepper]) -> tuple[Stepper | None, dict[str, Any] | None]:
    """(the floor session, None), or (None, its error row)."""
    try:
        return start("floor"), None
    except PerfError as err:
        return None, {"model": "floor", "error": err.message}


def _measure(model: Stepper, fl: Stepper | None, steps: int) -> tuple[dict[str, Any], list[float]]:
    """A model's row, with its × floor fields, and the floor steps timed around its steps."""
    with contextlib.closing(model):
        model_ms, floor_ms = interleave(model.step, fl.step if fl else None, steps)
        row = model.finish(model_ms)
    if floor_ms:
        row.update(ratio_summary(model_ms, floor_ms, target_for(row)))
        log.info("%s: median %s ms, %s", row["model"], _ms(row["step_ms_median"]), _ratio_text(row))
    return row, floor_ms


def _finish_floor(fl: Stepper, floor_ms: list[float], steps: int) -> dict[str, Any]:
    """The floor's row over every floor step of the run (its own steps when no model ran)."""
    try:
        row = fl.finish(floor_ms or [fl.step() for _ in range(steps)])
    except PerfError as err:
        return {"model": "floor", "error": err.message}
    return {**row, "ratio_to_floor": 1.0}


# -- targets and reports ----------------------------------------------------------------------
def _ms(v: float) -> str:
    return f"{v:,.0f}" if v >= 10 else f"{v:.1f}"


def _x(v: float) -> str:
    """A ratio: two decimals, two significant digits below 0.1 (a small model against BERT)."""
    return f"{v:.2f}" if v >= 0.1 else f"{v:.2g}"


def _interval(r: dict[str, Any]) -> str:
    return f"{_x(r['ratio_low'])}–{_x(r['ratio_high'])}"


def _ratio_text(r: dict[str, Any]) -> str:
    return f"{_x(r['ratio_to_floor'])}x floor ({_interval(r)}, {r['ratio_confidence']:.2%})"


def check_targets(rows: list[dict[str, Any]]) -> list[str]:
    """One line per model not measured and per BERT model that missed its target (its whole
    interval above it) or has no floor to compare with; "undecided" is not a miss."""
    misses = []
    for r in rows:
        if r.get("model") == "floor":
            continue
        if "error" in r:
            misses.append(f"{r['model']}: not measured ({r['error']})")
        elif target_for(r) is not None and "verdict" not in r:
            misses.append(f"{r['model']}: no floor to compare with")
        elif r.get("verdict") == MISSED:
            misses.append(f"{r['model']}: {_ratio_text(r)} above target {r['target']:.2f}x")
    return misses


def undecided(rows: list[dict[str, Any]]) -> list[str]:
    """One line per BERT model whose interval contains its target."""
    return [f"{r['model']}: {_ratio_text(r)} contains target {r['target']:.2f}x"
            for r in rows if r.get("verdict") == UNDECIDED]


def machine() -> dict[str, Any]:
    """What the timings depend on: threads, CPU model, torch build, whether runs keep the memory
    they free (bench.threads.malloc_mode), whether compiled kernels may run ($MSABENCH_SCAN_KERNEL)."""
    import os
    import platform

    import torch

    from bench.threads import malloc_mode
    from models.layers.scan_kernel import switched_off

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    return {"threads": torch.get_num_threads(), "cpu": cpu, "cpus": os.cpu_count(), "malloc": malloc_mode(),
            "scan_kernel": "off" if switched_off() else "on", "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "torch_config": torch.__config__.show().splitlines()[:12],
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown (GitHub) table."""
    from tabulate import tabulate

    headers = ["model", "step ms median", "min / max", "× floor", "interval", "target", "verdict", "forward ms",
               "peak GiB", "params", "Shapley/epoch", "SGM/epoch", "earlier stages/run", "curves/run"]
    return tabulate([_table_row(r, len(headers)) for r in rows], headers=headers, tablefmt="github",
                    disable_numparse=True)


def _table_row(r: dict[str, Any], width: int) -> list[str]:
    if "error" in r:
        return [r["model"], "error: " + r["error"]] + [""] * (width - 2)

    def f(key: str, fmt: str) -> str:
        return "–" if r.get(key) is None else format(r[key], fmt)

    return [
        r["model"] + (f" ({r['stage']} step)" if r.get("stage") else ""),
        _ms(r["step_ms_median"]), f"{_ms(r['step_ms_min'])} / {_ms(r['step_ms_max'])}",
        _x(r["ratio_to_floor"]) if "ratio_to_floor" in r else "–", _interval(r) if "ratio_low" in r else "–",
        f"≤ {r['target']:.2f}" if "target" in r else "–", r.get("verdict", "–"),
        _ms(r["forward_ms_median"]), f"{r['peak_memory_bytes'] / 2**30:.2f}", f"{r['params']:,}",
        f("contributions_share", ".1%"), f("sgm_share", ".1%"), f("earlier_stages_share", ".1%"),
        f("curves_share", ".1%"),
    ]


def format_report(rows: list[dict[str, Any]], command: str, info: dict[str, Any], date: str, wall_s: float,
                  raw_name: str) -> str:
    """The Markdown report: the command that regenerates it first, then date, machine, method and table."""
    timed = next((r for r in rows if "steps" in r and r["model"] != "floor"), {"steps": "?", "warmup": "?"})
    conf = next((r["ratio_confidence"] for r in rows if "ratio_confidence" in r), None)
    gpu = f", CUDA {info['torch_cuda']} on {info['gpu']}" if info.get("gpu") else ""
    method = (f"Each model: {timed['warmup']} warm-up step(s), then {timed['steps']} timed steps alternating with "
              "steps of the floor (a plain transformers BertModel fine-tune step at the same batch and length, "
              "one process for the whole run): floor, model, floor, ..., model, floor. `× floor` is the median "
              "of the model's per-step ratios (its step over the mean of the floor steps just before and after "
              "it); `interval` is the sign-test interval for that median"
              + (f" ({conf:.2%} coverage, distribution-free, no seed)" if conf is not None else "")
              + ". Verdict: \"target met\" when the interval's upper end is below the target, \"missed\" when "
              "its lower end is above it, else \"undecided (within noise)\"; `--check` exits 1 on \"missed\" or "
              "a model not measured. Shapley/epoch, SGM/epoch: the exact-Shapley evaluations' share of an epoch "
              "(3 batches timed, scaled to the split). curves/run: `--robustness-curves`' share of a run "
              "(the test split's forward passes, clean and under each of its conditions, over max_epochs "
              "epochs plus them).")
    return (f"# Training-step benchmark\n\nRegenerate with:\n\n```\n{command}\n```\n\n"
            f"Date: {date}. Machine: {info['cpu']} ({info['cpus']} CPUs), {info['threads']} torch threads, "
            f"torch {info['torch']}{gpu}, malloc {info.get('malloc', '?')}, scan kernel {info.get('scan_kernel', '?')}. Wall time: {wall_s:,.0f} s. Raw step times of every model and floor "
            f"step (ms): `{raw_name}`.\n\n{method}\n\n{format_table(rows)}\n")


def write_json(rows: list[dict[str, Any]], path: str) -> None:
    """The rows (raw step times included), the machine and the versions."""
    from pathlib import Path

    from bench.results import environment, write_json_atomic

    write_json_atomic(Path(path), {"rows": rows, "machine": machine(), **environment()})


__all__ = ["MET", "MISSED", "SHAPES", "TARGETS", "UNDECIDED", "Session", "check_targets", "format_report",
           "format_table", "interleave", "machine", "median_interval", "paired_ratios", "ratio_summary",
           "run_perf", "undecided", "verdict", "write_json"]
