"""Errors keep their cause (issue 23, item 7): only the project's own error types for a bad
input become a one-line message with exit 2; anything else keeps its traceback, on the
terminal and in a sweep's error record. Loaders refuse options they do not take; the
meta-device build check lets a fault of the model's code through."""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import models.registry as registry
from bench.cli import main
from bench.config import RunConfig
from bench.data import list_datasets, load_dataset
from bench.data import _LOADERS as LOADERS
from bench.results import load_result
from bench.runner import dry_build, plan_runs, run_sweep
from models.registry import ConfigError, get_model_entry

ROOT = Path(__file__).resolve().parents[1]


# -- the CLI: bugs are not summarised -----------------------------------------------------------
@pytest.mark.parametrize("error", [ValueError, KeyError, RuntimeError])
def test_run_lets_an_unexpected_error_through_with_its_type(error, tmp_path, monkeypatch):
    import bench.launch

    def launch(*a, **k):
        raise error("a fault inside the harness")

    monkeypatch.setattr(bench.launch, "launch", launch)
    with pytest.raises(error, match="a fault inside the harness"):  # not SystemExit(2) with one line
        main(["run", "--models", "late_fusion", "--seeds", "1111", "--out", str(tmp_path / "out")])


def test_tune_lets_an_unexpected_error_through_with_its_type(tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    import bench.runner

    def plan(*a, **k):
        raise KeyError("a lookup that failed inside the harness")

    monkeypatch.setattr(bench.runner, "plan_runs", plan)
    with pytest.raises(KeyError, match="a lookup that failed inside the harness"):
        main(["tune", "--models", "late_fusion", "--trials", "1", "--out", str(tmp_path / "out")])


def test_a_bad_input_is_still_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--models", "late_fusion", "--set", "hiden=3", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err and "hiden" in err


def test_the_terminal_shows_the_traceback_of_a_bug(tmp_path):
    """As a user's shell sees it: exit status 1 and the traceback down to the raising frame."""
    script = ("import bench.launch\n"
              "def launch_that_has_a_bug(*a, **k):\n"
              "    raise ValueError('not a bad input')\n"
              "bench.launch.launch = launch_that_has_a_bug\n"
              "from bench.cli import main\n"
              f"main(['run', '--models', 'late_fusion', '--seeds', '1111', '--out', {str(tmp_path / 'out')!r}])\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert out.returncode == 1, out.stderr
    assert "Traceback" in out.stderr and "launch_that_has_a_bug" in out.stderr, out.stderr
    assert out.stderr.rstrip().endswith("ValueError: not a bad input"), out.stderr


# -- a sweep's error record keeps the traceback and its cause -------------------------------------
def test_a_failed_run_records_the_traceback_with_its_cause(tmp_path, monkeypatch):
    import bench.train

    def train_with_a_bug(*a, **k):
        try:
            {}["missing"]
        except KeyError as err:
            raise RuntimeError("the trainer failed") from err

    monkeypatch.setattr(bench.train, "train_and_test", train_with_a_bug)
    summary = run_sweep([RunConfig(model="late_fusion", seed=1111, epochs=1, out_dir=str(tmp_path))])
    assert len(summary.failed) == 1
    rec = load_result(tmp_path / "synthetic" / "late_fusion" / "seed1111.json")
    tb = rec["error"]["traceback"]
    assert rec["status"] == "error" and rec["error"]["type"] == "RuntimeError"
    assert "train_with_a_bug" in tb and "KeyError: 'missing'" in tb and "direct cause" in tb, tb
    assert tb.rstrip().endswith("RuntimeError: the trainer failed"), tb


# -- dry_build -----------------------------------------------------------------------------------
def _with_builder(monkeypatch, builder) -> None:
    entry = get_model_entry("late_fusion")
    monkeypatch.setitem(registry._REGISTRY, "late_fusion", dataclasses.replace(entry, builder=builder))


def test_dry_build_lets_a_fault_of_the_model_code_through(monkeypatch):
    def builder(cfg):
        raise NotImplementedError("an op the meta device lacks")

    _with_builder(monkeypatch, builder)
    p = plan_runs([RunConfig(model="late_fusion")])[0]
    with pytest.raises(NotImplementedError, match="an op the meta device lacks"):
        dry_build(p)


def test_dry_build_turns_a_refused_config_into_a_config_error_with_its_cause(monkeypatch):
    def builder(cfg):
        raise ValueError("d=30 is not divisible by 4 heads")

    _with_builder(monkeypatch, builder)
    p = plan_runs([RunConfig(model="late_fusion")])[0]
    with pytest.raises(ConfigError, match="cannot be built with this config: d=30") as e:
        dry_build(p)
    assert isinstance(e.value.__cause__, ValueError)


# -- loaders take only the options they declare ---------------------------------------------------
@pytest.mark.parametrize("name", list(list_datasets()))
def test_a_misspelt_loader_option_is_refused(name, tmp_path):
    with pytest.raises(TypeError, match=r"unknown option\(s\) 'data_rot' \(did you mean 'data_root'\?\)"):
        load_dataset(name, data_rot=str(tmp_path))


@pytest.mark.parametrize("name", list(list_datasets()))
def test_no_loader_swallows_keyword_arguments(name):
    kinds = {p.kind for p in inspect.signature(LOADERS[name]).parameters.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds, f"the {name} loader would ignore a misspelt option"


def test_every_loader_takes_the_options_the_runner_passes(monkeypatch):
    """The runner passes the same options to every loader: each must name them."""
    import bench.runner

    seen = {}
    monkeypatch.setattr(bench.runner, "load_dataset", lambda name, **options: seen.update(options))
    bench.runner.load_data_for(plan_runs([RunConfig(model="late_fusion")])[0])
    for name, loader in LOADERS.items():
        assert set(seen) <= set(inspect.signature(loader).parameters), name


def test_an_explained_out_of_memory_error_keeps_the_original_in_the_record(tmp_path, monkeypatch):
    import torch

    import bench.runner

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(bench.runner, "execute_run", oom)
    run_sweep([RunConfig(model="late_fusion", seed=1111, out_dir=str(tmp_path))])
    tb = load_result(tmp_path / "synthetic" / "late_fusion" / "seed1111.json")["error"]["traceback"]
    assert "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB" in tb and "direct cause" in tb, tb
    assert "in oom" in tb  # the frame that raised it
