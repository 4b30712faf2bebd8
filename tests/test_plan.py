"""`python -m bench plan` (bench/plan.py, bench/cli/plan.py): the run count and the wall-time
estimate from a fake perf table; nothing trains."""

import json

import pytest

from bench.cli import main
from bench.config import OptionError
from bench.perf import SHAPES
from bench.plan import LONG_SWEEP_S, TEST_PASSES_WITH_ROBUSTNESS, load_perf, run_seconds
from models.registry import resolve_config

N_TRAIN, N_VALID, N_TEST = SHAPES["mosi"]["splits"]


def _row(model="mult", step_ms=320.0, forward_ms=32.0, **extra):
    preset = resolve_config(model, "mosi", None).preset
    return {"model": model, "preset": preset, "dataset_shapes": "mosi", "batch": 32, "step_ms_median": step_ms,
            "forward_ms_median": forward_ms, "device": "cpu", **extra}


def _perf_file(tmp_path, rows, machine=None):
    from bench.perf import machine as here

    path = tmp_path / "perf.json"
    path.write_text(json.dumps({"rows": rows, "machine": machine or here()}))
    return str(path)


def _plan(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as stop:
        main(["plan", *argv])
    assert stop.value.code == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_run_seconds_from_per_sample_step_times():
    cfg = resolve_config("mult", "mosi", None, max_epochs=3)
    row = _row(contributions_share=0.5)  # 10 ms per training sample, 1 ms per evaluated sample
    epoch_ms = N_TRAIN * 10 + N_VALID * 1
    assert run_seconds(row, cfg, False, False) == pytest.approx((3 * epoch_ms + N_TEST) / 1000)
    assert run_seconds(row, cfg, True, False) == pytest.approx((3 * 2 * epoch_ms + N_TEST) / 1000)
    with_robustness = (3 * epoch_ms + TEST_PASSES_WITH_ROBUSTNESS * N_TEST) / 1000
    assert run_seconds(row, cfg, False, True) == pytest.approx(with_robustness)
    staged = dict(row, earlier_stages_share=0.75)  # the last stage is a quarter of the run
    assert run_seconds(staged, cfg, False, False) == pytest.approx((4 * 3 * epoch_ms + N_TEST) / 1000)


def test_plan_counts_runs_and_estimates_from_the_perf_file(tmp_path, capsys):
    perf = _perf_file(tmp_path, [_row(), _row("late_fusion", step_ms=32.0, forward_ms=3.2)])
    common = ["--datasets", "mosi", "--seeds", "1111-1113", "--epochs", "2", "--out", str(tmp_path / "res"),
              "--perf", perf, "--no-contributions", "--no-robustness"]
    finished = tmp_path / "res" / "mosi" / "mult" / "seed1111.json"
    finished.parent.mkdir(parents=True)
    finished.write_text(json.dumps({"schema_version": 1, "status": "ok", "model": "mult", "run_name": "mult",
                                    "dataset": "mosi", "seed": 1111}))
    out = _plan(capsys, "--models", "mult,late_fusion,msamba", *common)
    assert "9 runs, 1 finished, 8 to run" in out
    mult_s = (2 * (N_TRAIN * 10 + N_VALID) + N_TEST) / 1000  # 27 s
    lines = {ln.split("|")[1].strip(): ln for ln in out.splitlines() if ln.startswith("| mosi/")}
    assert "| 2 " in lines["mosi/mult"] and f"{mult_s:.0f} s" in lines["mosi/mult"]
    assert "not measured: no perf row for msamba" in lines["mosi/msamba"]
    assert "for the 5 measured runs" in out and "3 runs not measured" in out
    assert "submitit" not in out and not (tmp_path / "res" / "mosi" / "late_fusion").exists()  # nothing ran


@pytest.mark.parametrize("share,suggested", [(1.2, True), (0.8, False)])
def test_a_long_sweep_suggests_the_cluster_launcher(tmp_path, capsys, share, suggested):
    cfg = resolve_config("mult", "mosi", None, max_epochs=1)
    per_ms = run_seconds(_row(step_ms=1.0, forward_ms=0.0), cfg, False, False)  # seconds per step-ms
    row = _row(step_ms=share * LONG_SWEEP_S / per_ms, forward_ms=0.0)  # the run takes `share` of the threshold
    out = _plan(capsys, "--models", "mult", "--datasets", "mosi", "--seeds", "1111", "--out", str(tmp_path),
                "--epochs", "1", "--no-contributions", "--no-robustness", "--perf", _perf_file(tmp_path, [row]),
                "--jobs", "2")
    assert ("consider --launcher submitit" in out) == suggested and "--jobs 2: runs go side by side" in out


def test_without_a_perf_file_the_count_alone(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no reports/perf/cpu.json here
    out = _plan(capsys, "--models", "mult,late_fusion", "--seeds", "1111,1112", "--out", str(tmp_path))
    assert "4 runs, 0 finished, 4 to run" in out and "no estimate" in out and "--perf FILE" in out


def test_perf_from_another_machine_is_named(tmp_path, capsys):
    other = {"cpu": "Some Other CPU", "cpus": 128, "threads": 64, "gpu": None}
    out = _plan(capsys, "--models", "mult", "--datasets", "mosi", "--seeds", "1111", "--out", str(tmp_path),
                "--perf", _perf_file(tmp_path, [_row()], other))
    assert "measured on Some Other CPU (128 CPUs)" in out


@pytest.mark.parametrize("text,match", [(None, "no such file"), ("{", "not readable as JSON"),
                                        ('{"machine": {}}', "key 'rows' missing")])
def test_bad_perf_files_are_named(tmp_path, text, match):
    path = tmp_path / "p.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(OptionError, match=f"--perf '{path}': {match}"):
        load_perf(str(path))
