"""`python -m bench plan`: before anything runs, how many runs a sweep has and about how long
they take on this machine, from the step times `python -m bench perf --json FILE` measured.

A run's estimate (seconds) from its perf row (same model, preset and dataset shapes):
  epoch  = (n_train x step_ms + n_valid x forward_ms) / perf batch   (per sample: the run's own
           batch size is taken to cost the same per sample as the perf batch)
           / (1 - contributions_share)   with per-epoch contributions
           / (1 - sgm_share)             with PaSE's SGM
  run    = epoch x max_epochs / (1 - earlier_stages_share) + the test pass (x 8 coalitions with
           robustness)
max_epochs is the budget, so the estimate is an upper bound: early stopping ends runs sooner.
A run whose (model, preset, dataset) the perf file did not measure is listed, not guessed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from bench.config import OptionError

# harness decision: a sweep longer than this one after another is worth a scheduler
LONG_SWEEP_S = 12 * 3600
TEST_PASSES_WITH_ROBUSTNESS = 8  # every modality coalition (bench.train.COALITIONS)


@dataclass
class Estimate:
    """One run: its group (dataset/run name), epoch budget, and seconds (None: not measured, `why`)."""
    group: str
    epochs: int
    seconds: Optional[float]
    why: str = ""


def load_perf(path: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(rows, machine) of a `bench perf --json` file (or the .json beside a --markdown report)."""
    hint = "write one with `python -m bench perf --models MODELS --json FILE`"
    try:
        obj = json.loads(Path(path).expanduser().read_text())
    except FileNotFoundError:
        raise OptionError(f"--perf '{path}': no such file; {hint}") from None
    except (OSError, ValueError) as err:
        raise OptionError(f"--perf '{path}': not readable as JSON ({err}); {hint}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("rows"), list):
        raise OptionError(f"--perf '{path}': key 'rows' missing: not a `bench perf` JSON file; {hint}")
    return [r for r in obj["rows"] if isinstance(r, dict)], obj.get("machine") or {}


def perf_row(rows: list[dict[str, Any]], model: str, preset: str, dataset: str) -> Optional[dict[str, Any]]:
    """The measured row of `model` at `preset` on `dataset`'s shapes, or None."""
    from bench.perf import SHAPES

    return next((r for r in rows if r.get("model") == model and r.get("preset") == preset
                 and r.get("dataset_shapes") == dataset in SHAPES and "error" not in r), None)


def run_seconds(row: dict[str, Any], cfg: Any, contributions: bool, robustness: bool) -> float:
    """The module docstring's estimate of one run, in seconds."""
    from bench.perf import SHAPES

    n_train, n_valid, n_test = SHAPES[row["dataset_shapes"]]["splits"]
    per_sample_step, per_sample_fwd = row["step_ms_median"] / row["batch"], row["forward_ms_median"] / row["batch"]
    epoch_ms = n_train * per_sample_step + n_valid * per_sample_fwd
    if contributions:
        epoch_ms /= 1 - row.get("contributions_share", 0.0)
    if getattr(cfg, "use_sgm", False):
        epoch_ms /= 1 - row.get("sgm_share", 0.0)
    run_ms = epoch_ms * cfg.max_epochs / (1 - row.get("earlier_stages_share", 0.0))
    run_ms += n_test * per_sample_fwd * (TEST_PASSES_WITH_ROBUSTNESS if robustness else 1)
    return run_ms / 1000


def estimate(planned: list, rows: list[dict[str, Any]]) -> list[Estimate]:
    """An Estimate per planned run (bench.runner.PlannedRun)."""
    out = []
    for p in planned:
        run, cfg = p.run, p.model_config
        group = f"{run.dataset}/{run.run_name}"
        row = perf_row(rows, run.model, cfg.preset, run.dataset)
        if row is None:
            why = f"no perf row for {run.model} at preset {cfg.preset} on {run.dataset} shapes"
            out.append(Estimate(group, cfg.max_epochs, None, why))
        else:
            out.append(Estimate(group, cfg.max_epochs, run_seconds(row, cfg, run.contributions, run.robustness)))
    return out


def duration(seconds: float) -> str:
    """'45 s', '12 min', '3.4 h', '2.1 days'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 72 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def machine_note(perf_machine: dict[str, Any], here: dict[str, Any]) -> str:
    """A warning when the perf file was measured on another CPU, core count or GPU ('' if not)."""
    keys = ("cpu", "cpus", "gpu")
    if all(perf_machine.get(k) == here.get(k) for k in keys):
        return ""
    def name(m: dict[str, Any]) -> str:
        return f"{m.get('cpu')} ({m.get('cpus')} CPUs{', ' + m['gpu'] if m.get('gpu') else ''})"
    return f"NOTE: the perf file was measured on {name(perf_machine)}, this machine is {name(here)}: " \
           "the estimate is for that machine; rerun `bench perf` here for this one"


def count_line(source: str, total: int, finished: int, todo: int) -> str:
    return f"{source}: {total} runs, {finished} finished, {todo} to run"


def format_plan(source: str, total: int, finished: int, estimates: list[Estimate], perf: str,
                perf_machine: dict[str, Any], jobs: Any = 1) -> str:
    """The lines `bench plan` prints."""
    from tabulate import tabulate

    lines = [count_line(source, total, finished, len(estimates))]
    if not estimates:
        return lines[0]
    groups: dict[str, list[Estimate]] = {}
    for e in estimates:
        groups.setdefault(e.group, []).append(e)
    table = []
    for group, es in groups.items():
        secs = [e.seconds for e in es if e.seconds is not None]
        each = duration(max(secs)) if secs else "not measured: " + es[0].why
        table.append([group, len(es), max(e.epochs for e in es), each, duration(sum(secs)) if secs else "–"])
    lines.append(f"estimate from {perf} ({perf_machine.get('cpu')}, {perf_machine.get('cpus')} CPUs, "
                 f"{perf_machine.get('threads')} torch threads{', ' + perf_machine['gpu'] if perf_machine.get('gpu') else ''}):")
    lines.append(tabulate(table, headers=["dataset/run", "to run", "max epochs", "per run (at most)", "subtotal"],
                          tablefmt="github", disable_numparse=True))
    measured = [e.seconds for e in estimates if e.seconds is not None]
    missing = len(estimates) - len(measured)
    total_s = math.fsum(measured)
    lines.append(f"one after another: at most {duration(total_s)} for the {len(measured)} measured runs "
                 "(max_epochs each; early stopping ends runs sooner)"
                 + (f"; {missing} runs not measured" if missing else ""))
    if jobs != 1:
        lines.append(f"--jobs {jobs}: runs go side by side; on one CPU they share its cores, so the total "
                     "shrinks by less than the number of jobs (GPUs: one slot per job)")
    if total_s > LONG_SWEEP_S:
        lines.append(f"more than {LONG_SWEEP_S // 3600} h here: consider --launcher submitit "
                     "(one scheduler job per run)")
    return "\n".join(lines)
