"""Sweep files and launchers: local, --jobs N, and submitit (local executor)."""

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


@pytest.mark.slow
def test_smoke_sweep_through_submitit_local_executor_and_resubmit_only_the_killed_job(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the local executor starts every job at once
    runs = load_sweep(ROOT / "sweeps" / "smoke.yaml", out=str(tmp_path), epochs=1,
                      contributions=False, robustness=False)
    opts = SlurmOptions(folder=str(tmp_path / ".submitit"), cluster="local", wait=False)
    jobs = submit(runs, opts, force=False, log=lambda s: None)
    assert len(jobs) == len(runs) >= 2
    jobs[0].cancel()  # kill one job before it finishes
    for job in jobs[1:]:
        job.wait()
    assert not is_complete(runs[0].result_path())
    assert all(is_complete(r.result_path()) for r in runs[1:])
    logs = []
    summary = launch(runs, launcher="submitit", slurm=SlurmOptions(folder=opts.folder, cluster="local"),
                     log=logs.append)
    assert any("submitted 1 job(s)" in line for line in logs), logs
    assert not summary.failed and len(summary.ok) == 1 and len(summary.skipped) == len(runs) - 1
    assert all(is_complete(r.result_path()) for r in runs)


@pytest.mark.slow
def test_jobs_runs_side_by_side(tmp_path):
    runs = load_sweep(ROOT / "sweeps" / "smoke.yaml", out=str(tmp_path), epochs=1,
                      contributions=False, robustness=False)
    summary = launch(runs, jobs=2, log=lambda s: None)
    assert len(summary.ok) == len(runs) and not summary.failed
