"""Sweep files and launchers: local, --jobs N, and submitit (local executor)."""

import functools
import os
import signal
import sys
from pathlib import Path

import pytest

from bench.config import SweepFileError, load_sweep
from bench.launch import SlurmOptions, launch, submit
from bench.results import is_complete

ROOT = Path(__file__).resolve().parents[1]


def test_sweep_file_expands_models_variants_datasets_seeds(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(
        "datasets: [synthetic]\nseeds: 1111-1112\nepochs: 2\nout: OUT\n"
        "models:\n  - mult\n  - name: late_fusion\n    set: {hidden: 8}\n    variants: [{}, {dropout: 0.0}]\n"
    )
    runs = load_sweep(f)
    assert [(r.run_name, r.seed) for r in runs] == [
        ("mult", 1111), ("mult", 1112),
        ("late_fusion+hidden=8", 1111), ("late_fusion+hidden=8", 1112),
        ("late_fusion+dropout=0.0+hidden=8", 1111), ("late_fusion+dropout=0.0+hidden=8", 1112),
    ]
    assert all(r.epochs == 2 and r.out_dir == "OUT" for r in runs)
    # command-line values override the file's
    assert {r.seed for r in load_sweep(f, seeds="1113", out="X")} == {1113}


@pytest.mark.parametrize("text,match", [
    ("models: [mult]\nseed: [1]\n", r"\[key=seed\]: unknown key"),
    ("datasets: [synthetic]\n", r"\[key=models\]: missing"),
    ("models:\n  - name: mult\n    sets: {}\n", r"\[key=models\[0\]\.sets\]"),
    ("models: [mult\n", "not valid YAML"),
])
def test_bad_sweep_files_name_file_and_key(tmp_path, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(SweepFileError, match=match):
        load_sweep(f)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "sweeps").glob("*.yaml")))
def test_shipped_sweeps_are_valid(name):
    from bench.runner import plan_runs

    runs = load_sweep(ROOT / "sweeps" / name)
    assert runs and plan_runs(runs)  # every model, preset and override resolves


def _run_one_holding(run, force, hold: str, marker: str):
    """`bench.launch.run_one` as a job runs it, except that the run whose result file is `hold`
    stops at the end of its first epoch: it writes its process id to `marker` and waits there
    until it is killed. A kill sent after `marker` appears therefore lands on a job that is
    provably mid-run, however loaded the machine is (the job cannot finish on its own)."""
    import os
    import time
    import types
    from pathlib import Path

    import bench.train
    from bench.launch import run_one

    if str(run.result_path()) == hold:
        train_and_test = bench.train.train_and_test

        def held(model, *args, **kwargs):
            def stop(self, epoch, state):
                tmp = Path(marker + ".tmp")
                tmp.write_text(str(os.getpid()))  # epoch `epoch` done, result not written
                tmp.replace(marker)
                while True:  # until the test kills this process
                    time.sleep(0.05)

            model.on_epoch_end = types.MethodType(stop, model)
            return train_and_test(model, *args, **kwargs)

        bench.train.train_and_test = held  # bench.runner.execute_run imports it at call time
    return run_one(run, force)


def _wait_for_marker(marker: Path, job, limit_s: float = 900) -> None:
    """Poll until `marker` exists; a job that ends first fails the test with its log. The limit
    only stops a broken test from hanging: the held job never ends by itself."""
    import time

    start = time.monotonic()
    while not marker.exists():
        assert not job.done(), f"job ended before it was mid-run:\n{job.stderr()}"
        assert time.monotonic() - start < limit_s, f"no mid-run signal after {limit_s} s:\n{job.stderr()}"
        time.sleep(0.1)


@pytest.mark.slow
def test_smoke_sweep_through_submitit_local_executor_and_resubmit_only_the_killed_job(tmp_path, monkeypatch, caplog):
    import cloudpickle

    import bench.launch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the local executor starts every job at once
    runs = load_sweep(ROOT / "sweeps" / "smoke.yaml", out=str(tmp_path), epochs=1,
                      contributions=False, robustness=False)
    opts = SlurmOptions(folder=str(tmp_path / ".submitit"), cluster="local", wait=False)
    marker = tmp_path / "job0-mid-run"
    with monkeypatch.context() as m:  # job 0 holds in its first epoch; the others run as usual
        m.setattr(bench.launch, "run_one", functools.partial(
            _run_one_holding, hold=str(runs[0].result_path()), marker=str(marker)))
        cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the jobs cannot import this test file
        try:
            jobs = submit(runs, opts, force=False)
        finally:
            cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert len(jobs) == len(runs) >= 2
    _wait_for_marker(marker, jobs[0])
    # SIGKILL job 0's task while it is provably mid-run (as the OOM killer or a node failure
    # would; `job.cancel()` sends SIGINT, which a shell's background job may ignore)
    os.kill(int(marker.read_text()), signal.SIGKILL)
    for job in jobs:
        job.wait()
    assert not is_complete(runs[0].result_path()) and not runs[0].result_path().exists()
    assert all(is_complete(r.result_path()) for r in runs[1:])
    caplog.set_level("INFO", logger="bench")
    summary = launch(runs, launcher="submitit", slurm=SlurmOptions(folder=opts.folder, cluster="local"))
    assert any("submitted 1 job(s)" in line for line in caplog.messages), caplog.messages
    assert not summary.failed and len(summary.ok) == 1 and len(summary.skipped) == len(runs) - 1
    assert all(is_complete(r.result_path()) for r in runs)


@pytest.mark.slow
def test_jobs_runs_side_by_side(tmp_path):
    runs = load_sweep(ROOT / "sweeps" / "smoke.yaml", out=str(tmp_path), epochs=1,
                      contributions=False, robustness=False)
    summary = launch(runs, jobs=2)
    assert len(summary.ok) == len(runs) and not summary.failed
