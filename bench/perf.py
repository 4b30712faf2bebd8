"""`python -m bench perf`: step time, forward time, peak memory and parameter count per
model on random inputs of a dataset's real shapes (no data files), plus a *floor* row
measured in the same run: one plain transformers `BertModel` fine-tune step at the same
batch and sequence length. BERT models are built with bert-base-uncased shapes.

Each model is measured in a fresh subprocess, so peak memory (CUDA: max_memory_allocated;
CPU: the subprocess's peak RSS) belongs to that model alone. Also reported: the cost of the
exact-Shapley evaluations as a share of a training epoch (per-epoch contributions on the
validation split for every model; PaSE's SGM on its 512-sample training subsample).
"""

from __future__ import annotations

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

    from bench.train import autocast, build_optimizer, coalition_utilities, resolve_device
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
    b = random_batch(shape, batch, task).to(device)
    opt = build_optimizer(step_model) if name != "floor" else torch.optim.Adam(step_model.parameters(), lr=1e-5)

    def train_step():
        step_model.train()
        with autocast(device, amp):
            out = step_model(b)
            loss = step_model.loss(out, b)["total"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

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
            row["sgm_ms"] = shapley_ms(min(step_model.cfg.sgm_subsample, n_train))
            row["sgm_share"] = row["sgm_ms"] / (epoch_ms + row["sgm_ms"])
    return row


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
    if dataset_shapes not in SHAPES:
        raise ValueError(f"unknown --dataset-shapes '{dataset_shapes}' (one of {', '.join(SHAPES)})")
    rows = []
    names = (["floor"] if floor else []) + list(models)
    ctx = mp.get_context("spawn")
    for name in names:
        log(f"measuring {name} ({dataset_shapes} shapes, batch {batch}, {steps} steps)...")
        args = (name, dataset_shapes, batch, steps, warmup, device, amp)
        if isolate:
            queue = ctx.Queue()
            proc = ctx.Process(target=_worker, args=(args, queue))
            proc.start()
            status, value = queue.get()
            proc.join()
        else:
            try:
                status, value = "ok", measure(*args)
            except Exception as err:
                status, value = "error", f"{type(err).__name__}: {err}"
        rows.append(value if status == "ok" else {"model": name, "error": value})
    floor_ms = next((r["step_ms_median"] for r in rows if r.get("model") == "floor" and "error" not in r), None)
    for r in rows:
        if floor_ms and "step_ms_median" in r:
            r["ratio_to_floor"] = r["step_ms_median"] / floor_ms
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    def f(v: Optional[float], fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    table = []
    for r in rows:
        if "error" in r:
            table.append([r["model"], "error: " + r["error"]] + [""] * 7)
            continue
        share = r.get("sgm_share", r.get("contributions_share"))
        table.append([
            r["model"], f"{r['step_ms_median']:,.0f}", f"{r['step_ms_min']:,.0f} / {r['step_ms_max']:,.0f}",
            f"{r['forward_ms_median']:,.0f}", f"{r['peak_memory_bytes'] / 2**30:.2f}", f"{r['params']:,}",
            f(r.get("ratio_to_floor"), ".2f"),
            f(r.get("contributions_share"), ".1%"), f(r.get("sgm_share"), ".1%"),
        ])
    return tabulate(table, headers=["model", "step ms (median)", "min / max", "forward ms", "peak GiB", "params",
                                    "× floor", "Shapley/epoch", "SGM/epoch"], tablefmt="github")


def write_json(rows: list[dict[str, Any]], path: str) -> None:
    from bench.results import environment, write_json_atomic

    write_json_atomic(path, {"rows": rows, **environment()})


__all__ = ["SHAPES", "format_table", "measure", "run_perf", "write_json"]
