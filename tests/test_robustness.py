"""Robustness and reproducibility: missing-modality evaluation, determinism, crash safety,
numerical and resource faults."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.config import RunConfig
from bench.metrics import compute_metrics
from bench.results import is_complete, load_result
from bench.runner import run_sweep

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path, seeds=(1111,), epochs=2, **kw):
    return [RunConfig(model="late_fusion", seed=s, out_dir=str(tmp_path), epochs=epochs, **kw) for s in seeds]


def test_missing_modality_evaluation_in_result(tmp_path):
    run_sweep(_run(tmp_path))
    rec = load_result(tmp_path / "synthetic" / "late_fusion" / "seed1111.json")
    rob = rec["robustness"]
    assert rob["split"] == "test" and set(rob["coalitions"]) == {"t", "a", "v", "ta", "tv", "av", "tav"}
    assert set(rob["utility"]) == {"", "t", "a", "v", "ta", "tv", "av", "tav"}
    full = rob["coalitions"]["tav"]  # equal to the metrics recomputed from the stored test predictions
    p = rec["predictions"]
    recomputed = compute_metrics(rec["task"], np.array(p["preds"]), np.array(p["labels"]))
    assert {k: full[k] for k in recomputed} == pytest.approx(recomputed, rel=1e-12, abs=1e-12)
    assert rob["utility"]["tav"] == pytest.approx(-recomputed["MAE"])
    assert rob["coalitions"]["t"]["MAE"] != full["MAE"]
    assert sum(rob["shapley"].values()) == pytest.approx(rob["utility"]["tav"] - rob["utility"][""])
    assert rob["shapley"]["t"] > rob["shapley"]["v"]


def test_same_seed_twice_gives_identical_result_files(tmp_path):
    run_sweep(_run(tmp_path / "a"))
    run_sweep(_run(tmp_path / "b"))
    a = load_result(tmp_path / "a" / "synthetic" / "late_fusion" / "seed1111.json")
    b = load_result(tmp_path / "b" / "synthetic" / "late_fusion" / "seed1111.json")
    assert a["predictions"] == b["predictions"]  # bit for bit (floats compared exactly)
    assert a["metrics"] == b["metrics"] and a["robustness"] == b["robustness"]
    assert [h["valid"] for h in a["history"]] == [h["valid"] for h in b["history"]]
    assert a["nondeterministic_ops"] == b["nondeterministic_ops"] == []  # CPU kernels: all deterministic


def test_nan_loss_is_recorded_and_the_next_run_proceeds(tmp_path, monkeypatch):
    from models.late_fusion import LateFusion

    real = LateFusion.loss
    calls = {"n": 0}

    def poisoned(self, out, batch):
        parts = real(self, out, batch)
        if torch.is_grad_enabled() and self.training:
            calls["n"] += 1
            if calls["n"] == 50:  # epoch 1, batch 9 of the first run (41 batches per epoch)
                parts["total"] = parts["total"] + float("nan")
        return parts

    monkeypatch.setattr(LateFusion, "loss", poisoned)
    s = run_sweep(_run(tmp_path, seeds=(1111, 1112)))
    assert [f[0] for f in s.failed] == ["synthetic/late_fusion/seed1111"] and s.ok == ["synthetic/late_fusion/seed1112"]
    err = load_result(tmp_path / "synthetic" / "late_fusion" / "seed1111.json")["error"]
    assert err["type"] == "TrainingError" and "non-finite loss" in err["message"]
    assert (err["epoch"], err["batch"], err["step"]) == (1, 8, 49)
    assert err["last_valid_metrics"]["MAE"] > 0  # epoch 0's validation metrics, finite


def test_out_of_memory_is_explained(tmp_path, monkeypatch):
    import bench.runner as runner

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(runner, "execute_run", oom)
    s = run_sweep(_run(tmp_path))
    assert len(s.failed) == 1
    err = load_result(tmp_path / "synthetic" / "late_fusion" / "seed1111.json")["error"]
    assert "batch_size=16" in err["message"] and "grad_accum_steps=2" in err["message"]
    assert err["kind"] == "out_of_memory"


def _bench(args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


# `python -m bench ARGS`, except that the run of seed HOLD_SEED stops at the end of its first
# epoch: it writes MARKER and waits there until the process is killed. A signal sent after
# MARKER appears lands provably mid-run (seed 1111 finished, seed 1112 in training, seed 1113
# not started), however loaded the machine is.
HOLD = """
import signal, sys, time, types
from pathlib import Path
import bench.train
from bench.cli import main
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if started in the background
marker, hold_seed, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
train_and_test = bench.train.train_and_test
def held(model, *args, **kwargs):
    if kwargs.get("seed") == hold_seed:
        def stop(self, epoch, state):
            Path(marker).write_text(f"seed {hold_seed} epoch {epoch}")
            while True:
                time.sleep(0.05)
        model.on_epoch_end = types.MethodType(stop, model)
    return train_and_test(model, *args, **kwargs)
bench.train.train_and_test = held  # bench.runner.execute_run imports it at call time
main(argv)
"""


def _bench_held(args, marker: Path, seed: int = 1112):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", HOLD, str(marker), str(seed), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc, limit_s=900):
    """Poll until `path` exists; the limit only stops a broken test from hanging (the held
    process never ends by itself)."""
    start = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() - start < limit_s, f"no {path.name} after {limit_s} s"
        time.sleep(0.05)


SWEEP = ["run", "--models", "late_fusion", "--seeds", "1111-1113", "--epochs", "3", "--quiet"]


@pytest.mark.slow
def test_sigkill_mid_sweep_then_rerun_equals_uninterrupted(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = _bench_held([*SWEEP, "--out", str(killed)], tmp_path / "mid-run")
    _wait_for(tmp_path / "mid-run", proc)
    proc.send_signal(signal.SIGKILL)  # mid-way through seed 1112
    proc.communicate()
    files = sorted((killed / "synthetic" / "late_fusion").glob("seed*.json"))
    assert all(is_complete(f) for f in files)  # nothing partial or corrupt
    assert [f.name for f in files] == ["seed1111.json"]
    rerun = _bench([*SWEEP, "--out", str(killed)])
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert f"{3 - len(files)} ran, {len(files)} skipped" in err
    ref = _bench([*SWEEP, "--out", str(clean)])
    ref.communicate(timeout=300)
    for seed in (1111, 1112, 1113):
        a = load_result(killed / "synthetic" / "late_fusion" / f"seed{seed}.json")
        b = load_result(clean / "synthetic" / "late_fusion" / f"seed{seed}.json")
        assert a["metrics"] == b["metrics"] and a["predictions"] == b["predictions"]
    # the rendered tables (metrics and robustness) are identical too
    from bench.report import build_tables, load_result_set, to_markdown

    def tables(root):
        return [to_markdown(t) for t in build_tables(load_result_set(root), efficiency=False, robustness=True)]

    assert tables(killed) == tables(clean) and "3" in tables(clean)[0]


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_without_recording_the_run(tmp_path):
    proc = _bench_held([*SWEEP, "--out", str(tmp_path / "out")], tmp_path / "mid-run")
    _wait_for(tmp_path / "mid-run", proc)
    proc.send_signal(signal.SIGINT)  # in seed 1112's first epoch
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    done = sorted(p.name for p in (tmp_path / "out" / "synthetic" / "late_fusion").glob("seed*.json"))
    assert all(is_complete(tmp_path / "out" / "synthetic" / "late_fusion" / n) for n in done)
    assert done == ["seed1111.json"]  # the interrupted seed 1112 is not recorded
