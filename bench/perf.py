"""`python -m bench perf`: step time, forward time, peak memory and parameter count per
model on random inputs of a dataset's real shapes (no data files), plus a *floor* row
measured in the same run: one plain transformers `BertModel` fine-tune step at the same
batch and sequence length. BERT models are built with bert-base-uncased shapes.

Each model is measured in a fresh subprocess, so peak memory (CUDA: max_memory_allocated;
CPU: the subprocess's peak RSS) belongs to that model alone. The floor is measured before
every model and once after the last (floor, model, floor, model, ..., floor), all with the
same thread count, and each model's `× floor` divides by the mean of the two floor
measurements around it, so slow drift of the machine cancels. Also reported: the cost of the
exact-Shapley evaluations as a share of a training epoch (per-epoch contributions on the
validation split for every model; PaSE's SGM on its training subsample, every `sgm_every`
epochs); for a staged model, the step of its last (fusion) stage and the share of a run spent
in the earlier stages (their step time × their epoch budget). `--check` compares every
BERT-based model with its target (`TARGETS`) and exits non-zero on a miss.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import resource
import statistics
import sys
import time
from typing import Any, Optional

# shapes of the MMSA unaligned_50 pickles (data-and-metrics.md §2) and MulT's IEMOCAP pickle
SHAPES: dict[str, dict[str, Any]] = {
    "mosi": {"text": 50, "audio": (375, 5), "vision": (500, 20), "text_dim": 768, "splits": (1284, 229, 686)},
    "mosei": {"text": 50, "audio": (500, 74), "vision": (500, 35), "text_dim": 768, "splits": (16326, 1871, 4659)},
    # MulT iemocap_data_noalign.pkl as third-party inspections report it [unverified]
    "iemocap": {"text": 20, "audio": (400, 74), "vision": (500, 35), "text_dim": 300, "splits": (2717, 798, 938)},
}


# × floor targets (issue "Speed, part 2"): BERT models 1.15, models that add encoders on BERT 1.3
TARGETS: dict[str, float] = {"mag_bert": 1.15, "self_mm": 1.15, "bert_text": 1.15}
DEFAULT_BERT_TARGET = 1.3


def target_for(row: dict[str, Any]) -> Optional[float]:
    """The × floor target of a measured row; None for models without BERT (MulT, late_fusion)."""
    if row.get("model") == "floor" or not row.get("bert"):
        return None
    return TARGETS.get(row["model"], DEFAULT_BERT_TARGET)


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

    from bench.batch import Batch

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


def _peak(device) -> int:
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def measure(name: str, dataset_shapes: str, batch: int, steps: int, warmup: int, device_name: str,
            amp: bool = True) -> dict[str, Any]:
    """Measure one model (or the "floor" BERT step) in this process."""
    import torch

    from bench.train import autocast, build_optimizer, coalition_utilities, resolve_device  # noqa: F401
    from bench.data.base import Split

    device = resolve_device(device_name)
    torch.manual_seed(0)
    shape = SHAPES[dataset_shapes]
    if name == "floor":
        step_model = _floor_model(device)
        task = "regression"
    else:
        from models.registry import get_model_entry, resolve_config

        entry = get_model_entry(name)
        fields = {f.name for f in dataclasses.fields(entry.config_cls)}
        over = {"text_encoder": "bert-base"} if "text_encoder" in fields else {}
        cfg = resolve_config(name, dataset_shapes, None, **over)
        step_model = entry.builder(cfg).to(device)
        task = cfg.task
        shape = shape_for(shape, cfg)
    b = random_batch(shape, batch, task).to(device)
    stages = step_model.stages() if name != "floor" else []
    earlier: list[dict[str, Any]] = []
    for stage in stages[:-1]:  # earlier stages: a short timing each, for their share of a run
        with _as_stage(step_model, stage):
            opt = build_optimizer(step_model, stage.param_groups() if stage.param_groups else None)
            ms = _timed(_step_fn(step_model, stage, b, opt, device, amp), device, 1 + max(1, steps // 2))[1:]
        earlier.append({"stage": stage.name, "step_ms_median": statistics.median(ms),
                        "epochs": _stage_epochs(stage, step_model.cfg)})
    last = stages[-1] if stages else None
    freeze = _as_stage(step_model, last) if last else contextlib.nullcontext()
    freeze.__enter__()
    if name == "floor":
        opt = torch.optim.Adam(step_model.parameters(), lr=1e-5)
    else:
        opt = build_optimizer(step_model, last.param_groups() if last and last.param_groups else None)

    train_step = _step_fn(step_model, last, b, opt, device, amp)

    @torch.no_grad()
    def forward():
        step_model.eval()
        with autocast(device, amp):
            step_model(b)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _timed(train_step, device, warmup)
    step_ms = _timed(train_step, device, steps)
    _timed(forward, device, 1)
    fwd_ms = _timed(forward, device, steps)
    row: dict[str, Any] = {
        "model": name, "preset": getattr(getattr(step_model, "cfg", None), "preset", "-"),
        "step_ms_median": statistics.median(step_ms), "step_ms_min": min(step_ms), "step_ms_max": max(step_ms),
        "forward_ms_median": statistics.median(fwd_ms),
        "peak_memory_bytes": _peak(device),
        "params": sum(p.numel() for p in step_model.parameters()),
        "batch": batch, "steps": steps, "device": str(device), "dataset_shapes": dataset_shapes,
        "threads": torch.get_num_threads(),
        "bert": name == "floor" or (getattr(step_model.cfg, "text_input", "") != "features"
                                    and hasattr(step_model.cfg, "text_encoder")),
    }
    if device.type == "cuda":
        row["tokens_per_s"] = batch * shape["text"] / (row["step_ms_median"] / 1000)
    n_train, n_valid, _ = shape["splits"]
    epoch_ms = -(-n_train // batch) * row["step_ms_median"] + -(-n_valid // batch) * row["forward_ms_median"]
    row["epoch_ms_est"] = epoch_ms
    if name != "floor":
        # exact Shapley on validation-sized data: 8 coalitions in one pass (contribution curves)
        from bench.metrics import contribution_utility

        def shapley_ms(n: int) -> float:
            reps = -(-n // batch)
            split = Split("perf", {key: torch.cat([getattr(b, key).cpu()] * reps)[:n] for key in SPLIT_KEYS},
                          [str(i) for i in range(n)])
            t0 = time.perf_counter()
            coalition_utilities(step_model, split, device, batch, lambda p, y: contribution_utility(task, p, y), amp)
            _sync(device)
            return (time.perf_counter() - t0) * 1000

        row["contributions_ms"] = shapley_ms(n_valid)
        row["contributions_share"] = row["contributions_ms"] / (epoch_ms + row["contributions_ms"])
        if getattr(step_model.cfg, "use_sgm", False):  # PaSE's SGM: the same 8 coalitions on its train subsample
            every = max(1, getattr(step_model.cfg, "sgm_every", 1))  # computed every `sgm_every` epochs
            row["sgm_ms"] = shapley_ms(min(step_model.cfg.sgm_subsample, n_train)) / every
            row["sgm_share"] = row["sgm_ms"] / (epoch_ms + row["sgm_ms"])
    if last is not None:
        row["stage"] = last.name
        row["earlier_stages"] = earlier
        earlier_ms = sum(-(-n_train // batch) * e["step_ms_median"] * e["epochs"] for e in earlier)
        run_ms = earlier_ms + _stage_epochs(last, step_model.cfg) * epoch_ms
        row["earlier_stages_share"] = earlier_ms / run_ms if run_ms else 0.0
    freeze.__exit__(None, None, None)
    return row


def _as_stage(model, stage):
    """The model as the trainer runs `stage`: `model.stage` set, the rest frozen."""
    from bench.train import _frozen_except

    @contextlib.contextmanager
    def ctx():
        model.stage = stage.name
        with _frozen_except(model, stage):
            yield
        model.stage = None

    return ctx()


def _stage_epochs(stage, cfg) -> int:
    from models.base import INHERIT

    return min(cfg.max_epochs, cfg.max_epochs if stage.max_epochs is INHERIT else stage.max_epochs)


def _step_fn(model, stage, b, opt, device, amp):
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


def _worker(args: tuple, queue) -> None:
    try:
        queue.put(("ok", measure(*args)))
    except BaseException as err:  # reported as a row, timm-style: failure is data
        queue.put(("error", f"{type(err).__name__}: {err}"))


def run_perf(models: list[str], dataset_shapes: str = "mosi", batch: int = 32, steps: int = 5, warmup: int = 1,
             device: str = "auto", floor: bool = True, isolate: bool = True, amp: bool = True,
             log=lambda s: print(s, file=sys.stderr, flush=True)) -> list[dict[str, Any]]:
    """Rows for `models` (and the floor row first). With the floor on, the order is floor,
    model, floor, model, ..., floor; each model's ratio uses the floor runs just around it."""
    if dataset_shapes not in SHAPES:
        raise ValueError(f"unknown --dataset-shapes '{dataset_shapes}' (one of {', '.join(SHAPES)})")

    def one(name: str) -> dict[str, Any]:
        log(f"measuring {name} ({dataset_shapes} shapes, batch {batch}, {steps} steps)...")
        args = (name, dataset_shapes, batch, steps, warmup, device, amp)
        status, value = _in_subprocess(args) if isolate else _here(args)
        return value if status == "ok" else {"model": name, "error": value}

    if not floor:
        return [one(m) for m in models]
    floors = [one("floor")]
    rows = []
    for name in models:
        row = one(name)
        floors.append(one("floor"))
        around = [f["step_ms_median"] for f in floors[-2:] if "error" not in f]
        if around and "step_ms_median" in row:
            row["floor_ms"] = statistics.mean(around)
            row["ratio_to_floor"] = row["step_ms_median"] / row["floor_ms"]
        rows.append(row)
    good = [f for f in floors if "error" not in f]
    if not good:
        return [floors[0], *rows]
    summary = dict(good[0])  # the floor row: medians over every floor measurement of the run
    for key in ("step_ms_median", "forward_ms_median", "epoch_ms_est"):
        summary[key] = statistics.median(f[key] for f in good)
    summary["step_ms_min"] = min(f["step_ms_min"] for f in good)
    summary["step_ms_max"] = max(f["step_ms_max"] for f in good)
    summary["floor_runs"] = [f["step_ms_median"] for f in good]
    summary["ratio_to_floor"] = 1.0
    return [summary, *rows]


def _in_subprocess(args: tuple) -> tuple[str, Any]:
    queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_worker, args=(args, queue))
    proc.start()
    status, value = queue.get()
    proc.join()
    return status, value


def _here(args: tuple) -> tuple[str, Any]:
    try:
        return "ok", measure(*args)
    except Exception as err:
        return "error", f"{type(err).__name__}: {err}"


def check_targets(rows: list[dict[str, Any]]) -> list[str]:
    """One line per BERT-based model above its × floor target (or not measured)."""
    misses = []
    for r in rows:
        target = TARGETS.get(r.get("model", "")) if "error" in r else target_for(r)
        if "error" in r and r.get("model") != "floor":
            misses.append(f"{r['model']}: not measured ({r['error']})")
        elif target is not None and r.get("ratio_to_floor") is None:
            misses.append(f"{r['model']}: no floor to compare with")
        elif target is not None and r["ratio_to_floor"] > target:
            misses.append(f"{r['model']}: {r['ratio_to_floor']:.2f}x floor > target {target:.2f}x")
    return misses


def machine() -> dict[str, Any]:
    """What the timings depend on: threads, CPU model, torch build."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"threads": torch.get_num_threads(), "cpu": cpu, "cpus": __import__("os").cpu_count(),
            "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "torch_config": torch.__config__.show().splitlines()[:12],
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def format_table(rows: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    def f(v: Optional[float], fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    table = []
    for r in rows:
        if "error" in r:
            table.append([r["model"], "error: " + r["error"]] + [""] * 9)
            continue
        target = target_for(r)
        table.append([
            r["model"] + (f" ({r['stage']} step)" if r.get("stage") else ""),
            f"{r['step_ms_median']:,.0f}", f"{r['step_ms_min']:,.0f} / {r['step_ms_max']:,.0f}",
            f"{r['forward_ms_median']:,.0f}", f"{r['peak_memory_bytes'] / 2**30:.2f}", f"{r['params']:,}",
            f(r.get("ratio_to_floor"), ".2f"), "–" if target is None else f"≤ {target:.2f}",
            f(r.get("contributions_share"), ".1%"), f(r.get("sgm_share"), ".1%"),
            f(r.get("earlier_stages_share"), ".1%"),
        ])
    return tabulate(table, headers=["model", "step ms (median)", "min / max", "forward ms", "peak GiB", "params",
                                    "× floor", "target", "Shapley/epoch", "SGM/epoch", "earlier stages/run"],
                    tablefmt="github")


def write_json(rows: list[dict[str, Any]], path: str) -> None:
    from bench.results import environment, write_json_atomic

    write_json_atomic(path, {"rows": rows, "machine": machine(), **environment()})


__all__ = ["SHAPES", "TARGETS", "check_targets", "format_table", "machine", "measure", "run_perf", "write_json"]
