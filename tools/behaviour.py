"""What a run computed, without its timings: a digest per model of the fields that describe
behaviour (metrics, predictions, history, robustness, selection, parameter counts), to check
that a refactor changes no result bit.

    python tools/behaviour.py run DIR [MODELS]   # every registered model (or MODELS, comma-separated),
                                                 # synthetic, seed 1111, 2 epochs
    python tools/behaviour.py digest DIR > F.json
    python tools/behaviour.py compare F.json DIR [--only-present]
                                                 # exit 1 when any model differs (and says where);
                                                 # --only-present: only the models DIR has

`run` is `python -m bench run --models '*' --seeds 1111 --epochs 2 --jobs 2` with one thread
per process, so two checkouts on one machine compute bit for bit the same thing.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

FIELDS = ("status", "metrics", "predictions", "robustness", "best_epoch", "epochs_run", "selection", "params",
          "model_summary", "stages")
TIMING_KEYS = {"time", "train_s", "wall_s", "epoch_s", "seconds", "peak_memory_bytes", "date"}
RUN = ["-m", "bench", "run", "--models", "*", "--seeds", "1111", "--epochs", "2", "--jobs", "2", "--quiet"]


def without_timing(value: Any) -> Any:
    """`value` with every timing or memory field dropped, at any depth."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING_KEYS and not k.endswith("_s")}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def behaviour(record: dict[str, Any]) -> dict[str, Any]:
    """The parts of a result file that say what the run computed."""
    out = {k: record.get(k) for k in FIELDS}
    out["history"] = without_timing(record.get("history"))
    return without_timing(out)


def digest(folder: Path) -> dict[str, dict[str, str]]:
    """{model: {field: sha256 of its canonical JSON}} for every result file under `folder`."""
    out = {}
    for path in sorted(folder.glob("*/*/seed*.json")):
        parts = behaviour(json.loads(path.read_text()))
        out[path.parent.name] = {k: hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest()[:16]
                                 for k, v in sorted(parts.items())}
    return out


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "run":
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MSABENCH_DISABLE_ENTRY_POINTS": "1"}
        run = [*RUN[:4], args[1], *RUN[5:]] if len(args) > 1 else RUN
        return subprocess.run([sys.executable, *run, "--out", args[0]], env=env, check=False).returncode
    if command == "digest":
        print(json.dumps(digest(Path(args[0])), indent=1, sort_keys=True))
        return 0
    if command == "compare":
        want, got = json.loads(Path(args[0]).read_text()), digest(Path(args[1]))
        want = {m: v for m, v in want.items() if m in got} if len(args) > 2 and args[2] == "--only-present" else want
        bad = {m: sorted(k for k in want[m] if got.get(m, {}).get(k) != want[m][k]) for m in want}
        bad = {m: ks for m, ks in bad.items() if ks}
        for m in sorted(set(got) - set(want)):
            print(f"{m}: not in {args[0]}")
        for m, ks in bad.items():
            print(f"{m}: differs in {', '.join(ks)}")
        print(f"{len(want) - len(bad)} of {len(want)} models bit-identical")
        return 1 if bad else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
