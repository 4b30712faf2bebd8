"""`bench tune`: search spaces, validation-only trials, pruning, resume after a kill, shared
studies across submitit workers, the tuned row and the tuning table/figure."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.config import RunConfig
from bench.launch import SlurmOptions
from models.registry import (ConfigError, around_preset, check_search_space, choice, default_search_space,
                             get_model_entry, int_range, list_models, register_model, resolve_config,
                             search_space_of, uniform)
from tests.datagen import write_mmsa

ROOT = Path(__file__).resolve().parents[1]
PLATEAU = 1e-12  # a learning rate that leaves the validation loss flat (rounded to 4 decimals)
needs_optuna = pytest.mark.skipif(importlib.util.find_spec("optuna") is None,
                                  reason='Optuna is an optional extra: pip install "msabench[tune]"')


def _cli(argv: list[str]) -> int:
    from bench.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    return exit_.value.code


# -- search spaces (no Optuna needed) --------------------------------------------------------------

@pytest.mark.parametrize("model", list_models())
def test_every_model_has_a_valid_space_on_every_preset(model):
    entry = get_model_entry(model)
    for dataset, preset in entry.presets:
        cfg = resolve_config(model, dataset, preset)
        space, declared = search_space_of(model, cfg)
        assert space, f"{model} {dataset}/{preset}: empty space"
        assert all(p.source for p in space.values())
        check_search_space(model, entry.config_cls, space, cfg)


@pytest.mark.parametrize("model", ["bert_text", "late_fusion", "mag_bert", "mult", "pase", "self_mm"])
def test_the_seed_models_declare_their_spaces(model):
    space, declared = search_space_of(model, resolve_config(model, "mosi" if model != "late_fusion" else "synthetic"))
    assert declared
    if model in ("mult", "mag_bert", "self_mm"):
        assert any("MMSA 2.2.1 config_tune.json" in p.source for p in space.values())


def test_mult_space_is_mmsa_config_tune():
    space = get_model_entry("mult").search_space
    assert space["d,heads"].choices[0] == (30, 6) and len(space["d,heads"].choices) == 8
    assert space["lr"].choices == (5e-4, 1e-3, 2e-3, 5e-3)
    assert space["conv_kernels[1]"].choices == (1, 3, 5)
    assert "weight_decay" not in space  # MMSA's Adam never receives it
    demo, _ = search_space_of("mult", resolve_config("mult", "synthetic"))  # CPU-sized demo preset
    assert not {"d,heads", "batch_size", "layers"} & set(demo) and "lr" in demo


def test_default_space_for_a_model_without_one():
    cfg = resolve_config("late_fusion", "synthetic")
    space = default_search_space(cfg)
    assert set(space) == {"lr", "dropout"}
    assert space["lr"].relative and space["lr"].log and "harness default" in space["lr"].source
    assert (space["dropout"].low, space["dropout"].high) == (0.0, 0.5)


@pytest.mark.parametrize("space,match", [
    ({"hiden": choice(16, 32, source="s")}, r"model 'late_fusion', field 'hiden'.*no field 'hiden'.*did you mean 'hidden'"),
    ({"dropout": choice("a", 0.1, source="s")}, r"field 'dropout': value 'a'"),
    ({"dropout": choice(0.1, 1.5, source="s")}, r"field 'dropout': value 1.5"),
    ({"hidden": uniform(8, 64, source="s")}, r"field 'hidden': a float range cannot set 'hidden'"),
    ({"hidden": choice(True, source="s")}, r"field 'hidden': value true"),
    ({"dims": choice((768, 5, 20), source="s")}, r"field 'dims': 'dims' is fixed by the run"),
    ({"lr": uniform(1e-3, 1e-4, source="s")}, r"field 'lr': range needs low < high"),
    ({"lr": choice(1e-3, source="")}, r"field 'lr': no source"),
    ({"hidden,dropout": choice(16, source="s")}, r"field 'hidden,dropout': choice 16 must give 2 values"),
    ({"hidden": around_preset(10, source="s")}, r"field 'hidden': a float range cannot set 'hidden'"),
    ({"hidden": int_range(8, 64, source="s")}, None),
])
def test_bad_spaces_name_model_field_and_problem(space, match):
    cfg_cls = get_model_entry("late_fusion").config_cls
    if match is None:
        check_search_space("late_fusion", cfg_cls, space)
        return
    with pytest.raises(ConfigError, match=match):
        check_search_space("late_fusion", cfg_cls, space)


def test_a_bad_space_fails_at_registration():
    cfg_cls = get_model_entry("late_fusion").config_cls
    with pytest.raises(ConfigError, match=r"model 'tune_test_model', field 'nope'"):
        register_model("tune_test_model", config=cfg_cls, presets={},
                       search_space={"nope": choice(1, source="s")})(lambda cfg: None)
    with pytest.raises(KeyError):
        get_model_entry("tune_test_model")  # nothing registered


def test_tuple_elements_and_joint_targets_become_overrides():
    from models.registry import apply_search_values

    cfg = resolve_config("mult", "mosi")
    out = apply_search_values(cfg, {"d,heads": (40, 8), "conv_kernels[0]": 1, "conv_kernels[2]": 3, "lr": 1e-3})
    assert out == {"d": 40, "heads": 8, "conv_kernels": (1, cfg.conv_kernels[1], 3), "lr": 1e-3}
    resolve_config("mult", "mosi", **out)  # a valid config


def test_show_space_prints_ranges_and_sources(capsys):
    assert _cli(["tune", "--show-space", "mult", "--datasets", "mosi"]) == 0
    out = capsys.readouterr().out
    assert "d,heads" in out and "MMSA 2.2.1 config_tune.json mult [dst_feature_dim_nheads]" in out
    assert _cli(["tune", "--show-space", "late_fusion"]) == 0
    assert "[0.0001, 0.01]" in capsys.readouterr().out  # 1e-3 / 10 .. 1e-3 * 10


def test_without_optuna_tune_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    assert _cli(["tune", "--models", "late_fusion", "--trials", "1"]) == 2
    assert 'pip install "msabench[tune]"' in capsys.readouterr().err


# -- studies (Optuna) ------------------------------------------------------------------------------

from bench.tune import (TuneSpec, counts, final_runs, open_study, run_final, submit_workers,  # noqa: E402
                        summary_path, tune)

if importlib.util.find_spec("optuna") is not None:
    import optuna


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("data")
    write_mmsa(root, "mosi", "unaligned", sizes=(96, 48, 48))
    return str(root)


def _run(out: Path, data_root: str, epochs: int = 3) -> RunConfig:
    return RunConfig(model="late_fusion", dataset="mosi", epochs=epochs, out_dir=str(out), data_root=data_root,
                     device="cpu", contributions=False, robustness=False)


@needs_optuna
def test_a_trial_trains_on_the_cores_it_may_use_not_torchs_guess(tmp_path, data_root, monkeypatch):
    import torch

    import bench.train

    seen = []
    train = bench.train.train_and_test
    monkeypatch.setattr(bench.train, "train_and_test", lambda *a, **k: (seen.append(torch.get_num_threads()),
                                                                        train(*a, **k))[1])
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)  # one usable core
    caller = torch.get_num_threads()
    torch.set_num_threads(2)  # torch's guess on a 2-core machine: the trial must not keep it
    try:
        tune(TuneSpec(run=_run(tmp_path, data_root, epochs=1), trials=1), final=False)
        assert seen == [1] and torch.get_num_threads() == 2  # and restored after the trial
    finally:
        torch.set_num_threads(caller)


@needs_optuna
def test_a_continued_study_must_keep_its_objective(tmp_path, data_root):
    spec = TuneSpec(run=_run(tmp_path, data_root), trials=2)
    study = open_study(spec)
    assert study.user_attrs["budget"] == {"trials": 2} and study.user_attrs["metric"] == "loss"
    assert open_study(dataclasses.replace(spec, trials=5)).user_attrs["budget"] == {"trials": 5}
    with pytest.raises(ValueError, match=r"another objective \(epochs: study 3, now 4"):
        open_study(dataclasses.replace(spec, run=_run(tmp_path, data_root, epochs=4)))


@needs_optuna
@pytest.mark.parametrize("final_seeds,trial_seed,expected", [
    ((1111, 1112, 1113, 1114, 1115), None, 1110),
    ((1110, 1111), None, 1109),  # the default is never a final seed
    ((1111,), 7, 7),
])
def test_trials_train_with_a_seed_no_final_run_uses(final_seeds, trial_seed, expected, tmp_path, data_root,
                                                    monkeypatch):
    import bench.train

    used = []
    original = bench.train.train_and_test

    def spy(model, data, seed, **kw):
        used.append(seed)
        return original(model, data, seed=seed, **kw)

    monkeypatch.setattr(bench.train, "train_and_test", spy)
    space = {"lr": choice(1e-2, 1e-3, source="test")}
    spec = TuneSpec(run=_run(tmp_path, data_root, epochs=1), trials=2, space=space, final_seeds=final_seeds,
                    trial_seed=trial_seed)
    summary = tune(spec, final=False)
    assert used == [expected, expected] and summary["trial_seed"] == expected
    study = optuna.load_study(study_name=spec.study_name, storage=spec.storage_url())
    assert [t.user_attrs["seed"] for t in study.trials] == [expected, expected]
    assert not set(used) & set(final_seeds) and {r.seed for r in final_runs(spec, summary)} == set(final_seeds)


def test_a_trial_seed_among_the_final_seeds_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--trial-seed 1112 is one of the final seeds"):
        TuneSpec(run=_run(tmp_path, "x"), trials=1, trial_seed=1112)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, data_root):
    """6 trials of late_fusion on small MOSI-format data, 2 of them a constructed plateau
    (lr 1e-12) that the median pruner stops after their first epoch; test_once is made to
    raise during the search, so a trial touching the test split would fail; then 5 seeds."""
    import bench.train

    out = tmp_path_factory.mktemp("tuned")
    space = {"lr": choice(1e-2, PLATEAU, source="test: lr 1e-12 is a constructed plateau")}
    spec = TuneSpec(run=_run(out, data_root), trials=6, pruner_startup_trials=2, space=space)
    study = open_study(spec)
    for lr in (1e-2, 1e-2, PLATEAU, 1e-2, PLATEAU, 1e-2):
        study.enqueue_trial({"lr": lr})

    def no_test(*args, **kwargs):
        raise AssertionError("a trial evaluated the test split")

    original = bench.train.test_once
    bench.train.test_once = no_test
    try:
        summary = tune(spec, final=False)
    finally:
        bench.train.test_once = original
    final = run_final(spec, summary)
    return spec, summary, final, optuna.load_study(study_name=spec.study_name, storage=spec.storage_url())


@pytest.mark.slow
@needs_optuna
def test_six_trials_two_pruned_by_a_plateau_then_five_seeds(tuned):
    spec, summary, final, study = tuned
    assert summary["trials"] == {"complete": 4, "pruned": 2, "fail": 0, "running": 0, "waiting": 0, "finished": 6}
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE", "PRUNED", "COMPLETE"]
    assert all(t.params["lr"] == PLATEAU for t in study.trials if t.state.name == "PRUNED")
    assert all(len(t.intermediate_values) == 1 for t in study.trials if t.state.name == "PRUNED")  # stopped at epoch 0
    for t in study.trials:  # validation only: a trial's record holds validation metrics, nothing of test
        assert set(t.user_attrs) <= {"worker", "overrides", "best_epoch", "epochs_run", "valid", "seed"}
        assert t.user_attrs["seed"] == summary["trial_seed"] == 1110 and 1110 not in spec.final_seeds
        assert t.state.name == "PRUNED" or set(t.user_attrs["valid"]) >= {"loss", "Has0_acc_2", "MAE"}
    assert summary["best"]["overrides"] == {"lr": 1e-2} and summary["budget"] == {"trials": 6}
    assert len(final.ok) == 5 and not final.failed
    runs = final_runs(spec, summary)
    assert [r.run_name for r in runs] == ["late_fusion+tuned"] * 5 and {r.overrides["lr"] for r in runs} == {1e-2}
    assert all(r.result_path().is_file() for r in runs)


@pytest.mark.slow
@needs_optuna
def test_tuned_row_table_and_figure(tuned, tmp_path, capsys):
    from bench.report import build_tables, load_result_set

    spec, *_ = tuned
    out = spec.run.out_dir
    table = build_tables(load_result_set(out), ["mosi"])[0]
    assert [r.label for r in table.rows] == ["Late fusion (tuned, 6 trials)"]
    assert _cli(["table", "--results", out, "--tuning", "--out", str(tmp_path), "--format", "md,csv"]) == 0
    text = capsys.readouterr().out
    assert "| Late fusion (tuned, 6 trials) |" in text and "| 6 trials |" in text
    row = next(line for line in text.splitlines() if line.startswith("| Late fusion"))
    assert [c.strip() for c in row.split("|")[3:7]] == ["6 trials", "4", "2", "0"] and "lr=0.01" in row
    assert _cli(["figure", "tuning", "--model", "late_fusion", "--dataset", "mosi", "--results", out,
                 "--out", str(tmp_path)]) == 0
    assert (tmp_path / "tuning_mosi_late_fusion_tuned.png").stat().st_size > 0
    assert (tmp_path / "tuning_mosi_late_fusion_tuned.pdf").stat().st_size > 0


# -- a killed process / worker, deterministically: stopped while a trial runs, then killed ---------

def _stop_during_trial(storage_url: str, study_name: str, after: int, pid_of, proc_alive, deadline_s: float = 600) -> int:
    """Wait until `after` trials finished and a running trial has reported an epoch; SIGSTOP its
    worker; if the trial is still running then (no race), SIGKILL the worker and return the
    trial's number, else let the worker go on and wait for the next trial."""
    from bench.tune import open_storage

    end = time.monotonic() + deadline_s
    storage = None
    while time.monotonic() < end:
        assert proc_alive(), "the tuning process ended before it could be killed"
        try:
            storage = storage or open_storage(storage_url, heartbeat=False)
            study = optuna.load_study(study_name=study_name, storage=storage)
        except Exception:  # noqa: BLE001 - the storage or the study is still being created
            storage = None
            time.sleep(0.2)
            continue
        trials = study.get_trials(deepcopy=False)
        running = [t for t in trials if t.state.name == "RUNNING" and t.intermediate_values and "worker" in t.user_attrs]
        if counts(study)["finished"] >= after and running:
            trial = running[0]
            pid = pid_of(trial)
            os.kill(pid, signal.SIGSTOP)
            fresh = optuna.load_study(study_name=study_name, storage=open_storage(storage_url, heartbeat=False))
            if fresh.trials[trial.number].state.name == "RUNNING":
                os.kill(pid, signal.SIGKILL)
                return trial.number
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.1)
    raise AssertionError("no running trial to stop before the deadline")


@pytest.mark.slow
@needs_optuna
def test_killed_mid_study_then_rerun_completes_the_same_total(tmp_path, data_root):
    from bench.cli import build_parser
    from bench.cli.tune import build_specs

    argv = ["tune", "--models", "late_fusion", "--datasets", "mosi", "--data-root", data_root, "--trials", "6",
            "--epochs", "4", "--out", str(tmp_path), "--device", "cpu", "--sampler", "random", "--pruner", "none",
            "--no-final"]
    spec = build_specs(build_parser().parse_args(argv))[0]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "bench", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        killed = _stop_during_trial(spec.storage_url(), spec.study_name, 2,
                                    pid_of=lambda t: proc.pid, proc_alive=lambda: proc.poll() is None)
    finally:
        if proc.poll() is None and proc.returncode is None and "killed" not in locals():
            proc.kill()  # the test failed before the kill: do not leave the process behind
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    study = optuna.load_study(study_name=spec.study_name, storage=spec.storage_url())
    assert study.trials[killed].state.name == "RUNNING" and counts(study)["finished"] >= 2

    summary = tune(spec, final=False)  # the same command again
    study = optuna.load_study(study_name=spec.study_name, storage=spec.storage_url())
    assert summary["trials"]["finished"] == 6 and summary["trials"]["fail"] == 1
    assert study.trials[killed].state.name == "FAIL"
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == study.trials[killed].params
    assert len(study.trials) == 7 and summary_path(tmp_path, "mosi", "late_fusion+tuned").is_file()


@pytest.mark.slow
@needs_optuna
def test_submitit_workers_share_a_journal_study_and_a_killed_worker_trial_is_retried(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the local executor starts every job at once
    run = _run(tmp_path, data_root, epochs=4)
    spec = TuneSpec(run=run, trials=4, sampler="random", pruner="none", launcher="submitit", workers=2,
                    slurm=SlurmOptions(cluster="local", time_min=10))
    assert spec.storage_url().startswith("journal:") and spec.storage_url().endswith(".journal")
    open_study(spec)
    jobs = submit_workers(spec, [2, 2], None, folder=str(tmp_path / ".submitit" / "%j"))
    killed = _stop_during_trial(spec.storage_url(), spec.study_name, 0,
                                pid_of=lambda t: int(t.user_attrs["worker"]["pid"]),
                                proc_alive=lambda: not all(j.done() for j in jobs))
    for job in jobs:
        try:
            job.wait()
        except Exception:  # noqa: BLE001 - the killed one
            pass
    from bench.tune import open_storage

    study = optuna.load_study(study_name=spec.study_name, storage=open_storage(spec.storage_url()))
    workers = {t.user_attrs["worker"]["pid"] for t in study.trials if "worker" in t.user_attrs}
    assert len(workers) == 2  # both jobs worked on the one study
    assert study.trials[killed].state.name == "RUNNING"

    summary = tune(spec, final=False)  # the driver: fail, requeue, finish the budget
    study = optuna.load_study(study_name=spec.study_name, storage=open_storage(spec.storage_url()))
    assert summary["trials"]["finished"] == 4 and summary["trials"]["fail"] == 1
    assert study.trials[killed].state.name == "FAIL"
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE"


@needs_optuna
def test_tune_checks_every_model_and_the_data_before_the_first_study(tmp_path, data_root, capsys):
    """A bad second model, or a data root without the file, stops `bench tune` with exit 2
    before any study is opened (no storage, no trial)."""
    base = ["tune", "--datasets", "mosi", "--trials", "2", "--epochs", "1", "--out", str(tmp_path)]
    assert _cli([*base, "--models", "late_fusion,nope", "--data-root", data_root]) == 2
    assert "nope" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _cli([*base, "--models", "late_fusion", "--data-root", str(empty)]) == 2
    assert "unaligned_50.pkl" in capsys.readouterr().err
    assert not (tmp_path / "tuning").exists()


@needs_optuna
def test_tuning_figure_names_a_missing_study_file(tmp_path, capsys):
    from bench.tune import summary_path

    path = summary_path(tmp_path, "mosi", "late_fusion+tuned")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"study": "s", "storage": f"sqlite:///{tmp_path}/gone.db", "model": "late_fusion"}))
    assert _cli(["figure", "tuning", "--model", "late_fusion", "--dataset", "mosi", "--results", str(tmp_path),
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "gone.db does not exist" in err and not (tmp_path / "gone.db").exists()
