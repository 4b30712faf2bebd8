"""No global side effects (issue 23, item 8): a run, and a tuning study, put back what they
change in the process: deterministic algorithms, cuDNN benchmark, CUBLAS_WORKSPACE_CONFIG,
warning filters, torch threads and Optuna's verbosity; also when they end by an exception."""

from __future__ import annotations

import inspect
import os
import warnings

import pytest
import torch

from bench.config import RunConfig
from bench.runner import run_sweep
from bench.train import process_state_restored, seed_everything


def snapshot() -> dict:
    return {
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "filters": list(warnings.filters),
        "threads": torch.get_num_threads(),
    }


@pytest.fixture
def caller_state(monkeypatch):
    """A caller whose settings differ from everything a run sets; put back after the test."""
    before = snapshot()
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = True
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="the caller's own filter")
        yield snapshot()
    torch.use_deterministic_algorithms(before["deterministic"], warn_only=before["warn_only"])
    torch.backends.cudnn.benchmark = before["cudnn_benchmark"]
    torch.set_num_threads(before["threads"])


def test_the_context_restores_everything_a_run_changes_also_after_an_exception(caller_state):
    with pytest.raises(RuntimeError, match="the run failed"):
        with process_state_restored():
            seed_everything(1111)
            warnings.simplefilter("ignore")
            torch.set_num_threads(max(1, caller_state["threads"] + 1))
            assert snapshot() != caller_state  # the run did change them
            raise RuntimeError("the run failed")
    assert snapshot() == caller_state


def test_a_sweep_leaves_the_process_as_it_found_it(caller_state, tmp_path):
    summary = run_sweep([RunConfig(model="late_fusion", seed=1111, epochs=1, out_dir=str(tmp_path),
                                   contributions=False, robustness=False)])
    assert len(summary.ok) == 1
    assert snapshot() == caller_state


def test_an_interrupted_run_leaves_the_process_as_it_found_it(caller_state, tmp_path, monkeypatch):
    import bench.train

    def interrupted(model, data, *, seed, **kw):
        seed_everything(seed)
        raise KeyboardInterrupt

    monkeypatch.setattr(bench.train, "train_and_test", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep([RunConfig(model="late_fusion", seed=1111, epochs=1, out_dir=str(tmp_path))])
    assert snapshot() == caller_state


# -- Optuna ----------------------------------------------------------------------------------------
def test_tuning_puts_optuna_verbosity_back_also_after_an_exception(monkeypatch):
    optuna = pytest.importorskip("optuna")
    import bench.tune

    inside = []

    def failing_study(*a, **k):
        inside.append(optuna.logging.get_verbosity())
        raise RuntimeError("the study failed")

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.DEBUG)
    try:
        bench.tune.require_optuna()
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG  # importing it changes nothing
        for name, call in (("_tune", lambda: bench.tune.tune(None)),
                           ("_run_worker", lambda: bench.tune.run_worker(None, None, None))):
            monkeypatch.setattr(bench.tune, name, failing_study)
            with pytest.raises(RuntimeError, match="the study failed"):
                call()
            assert inside[-1] == optuna.logging.WARNING  # quiet while the study runs
            assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
    finally:
        optuna.logging.set_verbosity(before)


def test_a_trial_leaves_the_process_as_it_found_it(caller_state, tmp_path):
    optuna = pytest.importorskip("optuna")
    from bench.tune import TuneSpec, tune

    run = RunConfig(model="late_fusion", epochs=1, out_dir=str(tmp_path), device="cpu", contributions=False,
                    robustness=False)
    before = optuna.logging.get_verbosity()
    summary = tune(TuneSpec(run=run, trials=1, sampler="random", pruner="none"), final=False)
    assert summary["trials"]["complete"] == 1
    assert snapshot() == caller_state and optuna.logging.get_verbosity() == before


# -- logging: the library logs, the CLI shows ------------------------------------------------------
def test_the_library_logs_through_logging_and_prints_nothing(tmp_path, caplog, capsys):
    caplog.set_level("INFO", logger="bench")
    run_sweep([RunConfig(model="late_fusion", seed=1111, epochs=2, out_dir=str(tmp_path), contributions=False,
                         robustness=False)])
    by = {(r.name, r.getMessage().split(" ")[0]) for r in caplog.records}
    assert {("bench.runner", "[1/1]"), ("bench.runner", "done"), ("bench.train", "epoch")} <= by, by
    out = capsys.readouterr()
    assert "[1/1]" not in out.err + out.out  # no handler of its own: the application decides


@pytest.mark.parametrize("quiet", [False, True])
def test_the_cli_shows_the_library_lines_unless_quiet(quiet, tmp_path, capsys):
    import logging

    from bench.cli import main

    handlers, level = list(logging.getLogger("bench").handlers), logging.getLogger("bench").level
    with pytest.raises(SystemExit) as e:
        main(["run", "--models", "late_fusion", "--seeds", "1111", "--epochs", "1", "--no-contributions",
              "--no-robustness", "--out", str(tmp_path / "out"), *(["--quiet"] if quiet else [])])
    err = capsys.readouterr().err
    assert e.value.code == 0 and "1 ran, 0 skipped" in err
    shown = ("[1/1] synthetic/late_fusion/seed1111", "epoch   0", "done synthetic/late_fusion/seed1111")
    assert all((line in err) != quiet for line in shown), err
    assert logging.getLogger("bench").handlers == handlers and logging.getLogger("bench").level == level


def test_no_library_function_takes_a_print_callback():
    import bench.launch
    import bench.runner
    import bench.train
    import bench.tune

    for module in (bench.runner, bench.launch, bench.train, bench.tune):
        for name, fn in vars(module).items():
            if inspect.isfunction(fn) and fn.__module__ == module.__name__:
                params = set(inspect.signature(fn).parameters)
                assert not {"log", "echo", "print_fn"} & params, f"{module.__name__}.{name}"
