"""Result files: `results/<dataset>/<run_name>/seed<k>.json`, one per (dataset, model, seed).

Written atomically (temp file in the same folder, fsync, rename), so a killed run never
leaves a half-written file; a file either parses completely or does not exist. Files get
the mode the umask gives, as `open()` would. Result files are the only coordination point
between runs (resume, cluster jobs, reports).

Schema (SCHEMA_VERSION = 1); reports read only these fields:
  schema_version, status ("ok" | "error"), error {type, message, ...} (error only),
  model, run_name, variant (the --set overrides), preset, dataset, setting, task, seed,
  config {run: RunConfig, model: resolved model config},
  metrics {test, valid (at best epoch), majority_baseline (IEMOCAP)},
  best_epoch, epochs_run, selected_on ("valid"), selection {key, higher_is_better, value},
  history [ {epoch, train {loss parts}, lr {group: lr}, valid {metrics}, contributions
            {split, utility {coalition: u}, shapley {t, a, v}}, time_s, model hook fields} ],
  params {total, trainable, with_grad}, time {train_s, wall_s, per_epoch_s},
  peak_memory_bytes, device, threads {intra_op, inter_op, cores, omp_num_threads, mkl_num_threads, malloc},
  versions {python, torch, transformers, msabench}, git_hash,
  date, data {name, setting, source, warnings}, nondeterministic_ops, model_summary,
  predictions {split, ids, labels, preds}  (test split, in split order),
  robustness_curves {split, seed, noise_scale, conditions {clean | kind/modalities/level: metrics},
                     ids, predictions {condition: preds}, time_s}  (--robustness-curves),
  state {file, format, sha256}  (--save-state: seed<k>.safetensors beside the file).
`bench evaluate` writes curves-seed<k>.json beside a result file (never the result file itself).
Floats are full precision; NaN is written as the JSON extension `NaN` (Python reads it back).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import secrets
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 1
REQUIRED_FIELDS = ("schema_version", "status", "model", "run_name", "dataset", "seed")
OK_FIELDS = (
    "metrics", "best_epoch", "epochs_run", "selected_on", "history", "params", "time",
    "peak_memory_bytes", "device", "versions", "git_hash", "date", "config", "predictions",
)


class ResultFileError(ValueError):
    pass


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON so that `path` is either the old file, absent, or the complete new one."""
    write_text_atomic(path, json.dumps(obj, indent=1))


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write text so that `path` is either the old file, absent, or the complete new one."""
    write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write bytes so that `path` is either the old file, absent, or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _create_temp(path: Path) -> tuple[int, str]:
    """A new hidden temp file beside `path`, open for writing, with the mode a plain `open()`
    would give (0o666 less the umask; `mkstemp` would make it 0600, unreadable to colleagues
    on shared storage). Hidden: `iter_result_files` never sees it."""
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary file name for {path.name} after 100 tries")


def ensure_writable_dir(path: Path | str, option: str = "--out") -> None:
    """Create the result folder and write (then remove) a probe file in it, so an unwritable
    folder (read-only mount, a path under /proc) fails before anything trains, not after."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        from bench.config import OptionError

        raise OptionError(f"{option} '{path}': cannot write result files there ({type(err).__name__}: "
                         f"{err.strerror or err})") from None


def load_result(path: Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path) as f:
            obj = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultFileError(f"{path}: not a valid result file ({err})") from err
    if missing := [k for k in REQUIRED_FIELDS if k not in obj]:
        raise ResultFileError(f"{path}: missing field(s) {', '.join(missing)}")
    if obj["schema_version"] != SCHEMA_VERSION:
        raise ResultFileError(f"{path}: schema_version {obj['schema_version']}, this msabench reads {SCHEMA_VERSION}")
    return obj


def is_complete(path: Path) -> bool:
    """True when `path` holds a finished, successful run (resume skips it)."""
    try:
        return load_result(path).get("status") == "ok"
    except (FileNotFoundError, NotADirectoryError, ResultFileError):
        return False


def iter_result_files(root: Path) -> Iterator[Path]:
    """Every seed*.json below root/<dataset>/<run_name>/ (temp files are hidden and skipped),
    and those an older msabench wrote deeper, from a --set value with '/' in the run name."""
    root = Path(root)
    if root.is_dir():
        yield from sorted(root.glob("*/*/seed*.json"))
        yield from (path for path, where in deeper_result_files(root) if where == root)


def deeper_result_files(root: Path) -> list[tuple[Path, Path]]:
    """(file, the results folder it belongs to) for result files more than two folders below
    `root`: a run whose name held '/' (its folder is `root`), or a results folder of its own
    (`--out results/smoke`: its folder is root/smoke). Files that do not parse are left out."""
    root, out = Path(root), []
    for path in sorted(root.rglob("seed*.json")):
        parts = path.relative_to(root).parts
        if len(parts) <= 3:
            continue
        try:
            rec = load_result(path)
        except (ResultFileError, OSError):
            continue
        if parts[0] == rec["dataset"] and "/".join(parts[1:-1]) == rec["run_name"]:
            out.append((path, root))
        elif parts[-3] == rec["dataset"] and parts[-2] == rec["run_name"]:
            out.append((path, root.joinpath(*parts[:-3])))
    return out


def other_result_roots(root: Path) -> list[Path]:
    """Results folders below `root` (e.g. results/smoke from `bench run --config sweeps/smoke.yaml`)."""
    return sorted({where for _, where in deeper_result_files(root) if where != Path(root)})


CLEAN = "clean"  # robustness curves: the unchanged test split, scored in the same pass (level 0 of every curve)


def curves_path(result_path: Path) -> Path:
    """`curves-seed<k>.json` beside `seed<k>.json`: what `bench evaluate` wrote for that run."""
    p = Path(result_path)
    return p.with_name(f"curves-{p.name}")


def with_evaluated_curves(record: dict[str, Any], result_path: Path) -> dict[str, Any]:
    """The record with the conditions `bench evaluate` scored later (its curves file, when
    present) merged into `robustness_curves`; those scored later take precedence."""
    try:
        later = json.loads(curves_path(result_path).read_text())["robustness_curves"]
    except (OSError, ValueError, KeyError):
        return record
    curves = dict(record.get("robustness_curves") or {})
    curves.update({k: v for k, v in later.items() if k not in ("conditions", "predictions")})
    for key in ("conditions", "predictions"):
        curves[key] = {**curves.get(key, {}), **later.get(key, {})}
    return {**record, "robustness_curves": curves}


def git_hash() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    import torch
    import transformers

    import bench

    return {
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "msabench": bench.__version__},
        "git_hash": git_hash(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
    }
