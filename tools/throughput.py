"""Sweep throughput on an idle machine: the measurements behind `--jobs` and `--runs-per-device`.

    python tools/throughput.py threads --models mult,late_fusion          # one run's step vs its threads
    python tools/throughput.py jobs --sweep sweeps/smoke.yaml --jobs 1,2,4,auto
    python tools/throughput.py jobs --models pase,mult --jobs 1,2,1,2           # the main command
    python tools/throughput.py jobs --sweep sweeps/smoke.yaml --jobs auto --runs-per-device 1,2,4 --device cuda

`threads`: `python -m bench perf --no-floor` per model at each thread count (OMP_NUM_THREADS
set before the process starts), the median step in ms. `jobs`: the wall time of the whole
sweep (`bench run --force --quiet` into a scratch folder) at each --jobs (and
--runs-per-device) value, and runs per hour. Each command is printed before it runs; the
table goes to stdout and everything to --out (JSON). Run it on an otherwise idle machine:
other work on the cores makes the numbers meaningless.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Run `cmd` from the repository root; its wall time in seconds (a failure stops the script)."""
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, check=True)
    return time.perf_counter() - t0


def threads(args) -> list[dict]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    counts = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, 2, 4, 8, cores} - {0})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for t in [t for t in counts if t <= cores]:
            out = Path(tmp) / f"t{t}.json"
            _run([sys.executable, "-m", "bench", "perf", "--models", args.models, "--no-floor", "--steps",
                  str(args.steps), "--device", "cpu", "--json", str(out)], {"OMP_NUM_THREADS": str(t)})
            for r in json.loads(out.read_text())["rows"]:
                rows.append({"threads": t, "model": r["model"], "step_ms_median": r.get("step_ms_median"),
                             "torch_threads": r.get("threads"), "error": r.get("error")})
    return rows


def jobs(args) -> list[dict]:
    rows = []
    n_runs = None
    for per_device in args.runs_per_device.split(","):
        for j in args.jobs.split(","):
            with tempfile.TemporaryDirectory() as out:
                what = ["--models", args.models] if args.models else ["--config", args.sweep]
                cmd = [sys.executable, "-m", "bench", "run", *what, "--out", out, "--force", "--quiet",
                       "--jobs", j, "--runs-per-device", per_device, "--device", args.device]
                wall = _run(cmd)
                n_runs = sum(1 for _ in Path(out).rglob("seed*.json"))
            rows.append({"jobs": j, "runs_per_device": per_device, "runs": n_runs, "wall_s": round(wall, 1),
                         "runs_per_hour": round(3600 * n_runs / wall, 1) if n_runs else None})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("threads")
    t.add_argument("--models", default="mult,late_fusion")
    t.add_argument("--threads", default=None, help="comma-separated counts (default 1,2,4,8 and all usable cores)")
    t.add_argument("--steps", default="5")
    j = sub.add_parser("jobs")
    j.add_argument("--sweep", default="sweeps/smoke.yaml")
    j.add_argument("--models", default=None, help="time `bench run --models M` (the main command) instead of a sweep")
    j.add_argument("--jobs", default="1,2,4,auto")
    j.add_argument("--runs-per-device", default="1")
    j.add_argument("--device", default="auto")
    p.add_argument("--out", default="throughput.json")
    args = p.parse_args()
    rows = threads(args) if args.what == "threads" else jobs(args)
    Path(args.out).write_text(json.dumps({"command": sys.argv, "rows": rows}, indent=1))
    keys = list(rows[0]) if rows else []
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(str(r[k]) for k in keys))


if __name__ == "__main__":
    main()
