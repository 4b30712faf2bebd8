"""Sweeps and result files: schema, resume, force, failures recorded, atomic writes."""

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.config import RunConfig, parse_seeds, parse_set, variant_name
from bench.metrics import compute_metrics
from bench.results import (
    OK_FIELDS,
    REQUIRED_FIELDS,
    SCHEMA_VERSION,
    is_complete,
    iter_result_files,
    load_result,
    write_json_atomic,
)
from bench.runner import run_sweep

ROOT = Path(__file__).resolve().parents[1]


def _runs(tmp_path, model="late_fusion", seeds=(1111,), **kw):
    return [RunConfig(model=model, seed=s, out_dir=str(tmp_path), epochs=kw.pop("epochs", 2), **kw) for s in seeds]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    summary = run_sweep(_runs(out, seeds=(1111, 1112)))
    assert len(summary.ok) == 2 and not summary.failed
    return out


def test_result_file_has_every_schema_field(finished):
    rec = load_result(finished / "synthetic" / "late_fusion" / "seed1111.json")
    for key in REQUIRED_FIELDS + OK_FIELDS:
        assert key in rec, key
    assert rec["schema_version"] == SCHEMA_VERSION and rec["status"] == "ok"
    assert rec["selected_on"] == "valid" and rec["preset"] == "demo"
    assert rec["config"]["model"]["max_epochs"] == 2 and rec["config"]["run"]["seed"] == 1111
    assert {"python", "torch", "transformers", "msabench"} <= set(rec["versions"])
    assert rec["params"]["total"] > 0 and rec["time"]["train_s"] > 0 and rec["peak_memory_bytes"] > 0
    assert all("contributions" in h for h in rec["history"])
    assert len(rec["predictions"]["ids"]) == len(rec["predictions"]["preds"]) == 686


def test_metrics_equal_recomputed_from_stored_predictions(finished):
    rec = load_result(finished / "synthetic" / "late_fusion" / "seed1112.json")
    p = rec["predictions"]
    recomputed = compute_metrics(rec["task"], np.array(p["preds"]), np.array(p["labels"]))
    for key, value in recomputed.items():
        assert rec["metrics"]["test"][key] == pytest.approx(value, abs=1e-12), key


def test_finished_runs_are_skipped_and_force_reruns(finished, caplog):
    caplog.set_level("INFO", logger="bench")
    path = finished / "synthetic" / "late_fusion" / "seed1111.json"
    before = path.read_text()
    s = run_sweep(_runs(finished))
    assert s.skipped == ["synthetic/late_fusion/seed1111"] and not s.ok
    assert path.read_text() == before and any("skip" in line for line in caplog.messages)
    caplog.clear()
    run_sweep(_runs(finished, epochs=3))  # a finished run with another config
    assert any("different max_epochs" in line and "--variant" in line for line in caplog.messages), caplog.messages
    s = run_sweep(_runs(finished), force=True)
    assert s.ok == ["synthetic/late_fusion/seed1111"]
    assert json.loads(path.read_text())["date"] >= json.loads(before)["date"]


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    import bench.runner as runner

    real = runner.execute_run

    def flaky(p, *a, **k):
        if p.run.seed == 1111:
            raise RuntimeError("boom in run 1111")
        return real(p, *a, **k)

    monkeypatch.setattr(runner, "execute_run", flaky)
    s = run_sweep(_runs(tmp_path, seeds=(1111, 1112), epochs=1))
    assert [f[0] for f in s.failed] == ["synthetic/late_fusion/seed1111"] and len(s.ok) == 1
    err = load_result(tmp_path / "synthetic" / "late_fusion" / "seed1111.json")
    assert err["status"] == "error" and err["error"]["message"] == "boom in run 1111"
    assert not is_complete(tmp_path / "synthetic" / "late_fusion" / "seed1111.json")
    # a rerun retries the failed run only
    monkeypatch.setattr(runner, "execute_run", real)
    s = run_sweep(_runs(tmp_path, seeds=(1111, 1112), epochs=1))
    assert s.ok == ["synthetic/late_fusion/seed1111"] and s.skipped == ["synthetic/late_fusion/seed1112"]


def test_variants_get_their_own_folder(tmp_path):
    run = RunConfig(model="late_fusion", overrides={"hidden": 8}, out_dir=str(tmp_path))
    assert run.result_path() == tmp_path / "synthetic" / "late_fusion+hidden=8" / "seed1111.json"
    assert variant_name("pase", {"use_sgm": False}) == "pase+no_sgm"
    assert variant_name("pase", {"use_sgm": False, "use_cal": False}) == "pase+no_cal+no_sgm"
    # an explicit --setting is part of the name: aligned and unaligned results never collide
    assert RunConfig(model="mult", setting="aligned").run_name == "mult+aligned"
    assert RunConfig(model="mult", setting="aligned", variant="mine").run_name == "mine"


def test_unknown_override_fails_before_training(tmp_path):
    with pytest.raises(KeyError, match="unknown config key"):
        run_sweep([RunConfig(model="late_fusion", overrides={"hiden": 8}, out_dir=str(tmp_path))])
    assert not any(tmp_path.rglob("*.json"))


def _record(version: int, rows: int = 3) -> dict:
    """A minimal result file whose payload says whether it is complete."""
    return {"schema_version": SCHEMA_VERSION, "status": "ok", "model": "m", "run_name": "m", "dataset": "d",
            "seed": 1, "version": version, "rows": rows, "payload": [[i] * 8 for i in range(rows)], "end": True}


def _check_complete(rec: dict) -> None:
    assert rec["end"] is True and len(rec["payload"]) == rec["rows"], "a partial result file"
    assert rec["payload"][-1] == [rec["rows"] - 1] * 8


@pytest.mark.parametrize("fault", ["fsync", "replace"])
@pytest.mark.parametrize("existing", [True, False])
def test_atomic_write_fault_between_write_and_rename(tmp_path, monkeypatch, fault, existing):
    """The text is written, then its fsync or the rename fails: the target stays the old file
    (or absent), readers never see the temp file, and it is gone afterwards."""
    path = tmp_path / "d" / "m" / "seed1.json"
    if existing:
        write_json_atomic(path, _record(1))
    before = path.read_text() if existing else None
    seen = []  # what a reader finds at the moment of the fault: (files, their versions)

    def failing(*args):
        files = list(iter_result_files(tmp_path))
        seen.append(([p.name for p in files], [load_result(p)["version"] for p in files]))
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(os, fault, failing)
    with pytest.raises(OSError, match="injected"):
        write_json_atomic(path, _record(2))
    monkeypatch.undo()
    assert seen == [(["seed1.json"], [1]) if existing else ([], [])]
    assert (path.read_text() if path.exists() else None) == before
    assert sorted(p.name for p in path.parent.iterdir()) == (["seed1.json"] if existing else [])


# Writes the result file argv[2] (with "version" set) to argv[1] again and again, printing
# "writing V" before and "wrote V" after each write, until killed. Versions start at argv[3].
# With argv[4] == "pause", every fsync of a file (the temp file is complete, not yet renamed;
# not the folder's fsync after the rename) prints "synced" and waits a minute: a kill right
# after "synced" then provably lands inside a write, on any machine however slow.
WRITER = """
import json, os, stat, sys, time
from bench.results import write_json_atomic
path, rec, version = sys.argv[1], json.loads(open(sys.argv[2]).read()), int(sys.argv[3])
if sys.argv[4:] == ["pause"]:
    fsync = os.fsync
    def announced(fd):
        fsync(fd)
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            print("synced", flush=True)
            time.sleep(60.0)
    os.fsync = announced
while True:
    print(f"writing {version}", flush=True)
    write_json_atomic(path, {**rec, "version": version})
    print(f"wrote {version}", flush=True)
    version += 1
"""


def _kill_while_writing(path: Path, template: Path, start: int, when, pause: bool = False) -> list[int]:
    """Start WRITER, wait for its first write to begin, then for `when()` (returns at the
    moment to strike) or, with `pause`, for WRITER's "synced" (its temp file is complete and
    it waits), SIGKILL it; returns the versions it reported as written."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(template), str(start)]
                            + (["pause"] if pause else []), cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().strip()
        assert first == f"writing {start}", first
        if pause:
            synced = proc.stdout.readline().strip()
            assert synced == "synced", synced
        else:
            when()
        proc.send_signal(signal.SIGKILL)
        out = proc.stdout.read()
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return [int(line.split()[1]) for line in out.splitlines() if line.startswith("wrote ") and len(line.split()) == 2]


def _listing(folder: Path) -> dict[str, int]:
    """{name: size} of the files in `folder` (empty when absent or changing under us)."""
    try:
        return {p.name: p.stat().st_size for p in folder.iterdir()}
    except FileNotFoundError:
        return {}


@pytest.mark.slow
def test_sigkill_during_large_writes_leaves_complete_files_or_none(tmp_path):
    """A real SIGKILL while large result files are written (at a random time, or a random
    moment after the folder changes: a temp file appears, or a file is truncated): after each
    kill the target is absent or complete (the last finished write, or the one being renamed),
    and readers see no temp file."""
    path = tmp_path / "d" / "m" / "seed1.json"
    template = tmp_path / "template.json"
    t0 = time.perf_counter()
    write_json_atomic(template, _record(0, rows=40_000))  # about 6 MB of JSON
    write_s = time.perf_counter() - t0
    rng = random.Random(23)

    def at_random():
        time.sleep(rng.uniform(0, 3 * write_s))

    def once_the_folder_changes():
        old, limit = _listing(path.parent), time.monotonic() + 20 * write_s
        while _listing(path.parent) == old and time.monotonic() < limit:
            time.sleep(0.0005)
        time.sleep(rng.uniform(0, write_s / 4))

    last_done, mid_write = None, 0
    for kill in range(10):  # kills 0 and 5 wait for a complete, not yet renamed temp file: they land inside a write
        old_temps = {n for n in _listing(path.parent) if n.endswith(".tmp")}
        start = 1000 * (kill + 1)
        done = _kill_while_writing(path, template, start, (at_random, once_the_folder_changes)[kill % 2],
                                   pause=kill % 5 == 0)
        junk = set(_listing(path.parent)) - {"seed1.json"}
        mid_write += bool(junk - old_temps)  # killed between creating and renaming a temp file
        assert junk - old_temps or kill % 5, f"kill {kill} struck a paused write, yet left no temp file"
        files = list(iter_result_files(tmp_path))
        assert [p.name for p in files] in ([], ["seed1.json"])
        assert all(n.startswith(".seed1.json.") and n.endswith(".tmp") for n in junk), junk
        if not files:
            assert last_done is None and not done  # nothing ever finished
            continue
        rec = load_result(files[0])  # raises on a partial file
        _check_complete(rec)
        assert rec["version"] in {done[-1] if done else last_done, start + len(done)}
        last_done = rec["version"]
    assert mid_write >= 2  # the paused kills (at least) provably landed inside a write


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)], ids=["022", "077", "002"])
def test_result_files_respect_the_umask(tmp_path, umask, mode):
    path = tmp_path / "d" / "m" / "seed1.json"
    old = os.umask(umask)
    try:
        write_json_atomic(path, _record(1))
        write_json_atomic(path, _record(2))  # replacing a file: the new one gets the umask's mode too
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert load_result(path)["version"] == 2


def test_parse_helpers():
    assert parse_seeds("1111-1113,1120") == [1111, 1112, 1113, 1120]
    assert parse_set(["use_sgm=false", "lr=1e-4", "dims=[1,2,3]", "text_encoder=/x/y"]) == {
        "use_sgm": False, "lr": 1e-4, "dims": (1, 2, 3), "text_encoder": "/x/y"}
    with pytest.raises(ValueError):
        parse_set(["novalue"])
