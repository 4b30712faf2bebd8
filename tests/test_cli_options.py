"""First-use defects of `run`/`tune`/`table` (issue #23 item 12): an unwritable --out is refused
before anything trains, a run says where its results went and that command shows them, result
folders a plain `table` does not read are named, --preset's help lists every preset."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import NOTHING_TO_SHOW, main
from bench.config import PRESET_SOURCES
from bench.report import load_result_set
from bench.results import other_result_roots, write_json_atomic
from result_factory import make_result, write_results

ROOT = Path(__file__).resolve().parents[1]
ONE_EPOCH = ["--models", "late_fusion", "--seeds", "1111", "--epochs", "1", "--quiet"]


def _main(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out + out.err


@pytest.mark.parametrize("command", [["run", *ONE_EPOCH], ["tune", "--models", "late_fusion", "--trials", "1"]])
def test_a_read_only_out_is_refused_before_anything_trains(command, tmp_path, capsys, monkeypatch):
    import bench.train

    monkeypatch.setattr(bench.train, "train_and_test", lambda *a, **k: pytest.fail("trained"))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        (ro / "probe").mkdir()
        pytest.skip("this user writes into read-only (0555) folders (root with CAP_DAC_OVERRIDE)")
    except PermissionError:
        pass
    code, text = _main([*command, "--out", str(ro / "results")], capsys)
    assert code == 2 and f"--out '{ro / 'results'}': cannot write" in text and "Traceback" not in text
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("command", [["run", *ONE_EPOCH], ["tune", "--models", "late_fusion", "--trials", "1"]])
def test_an_out_under_proc_is_refused_before_anything_trains(command, capsys, monkeypatch):
    import bench.train

    monkeypatch.setattr(bench.train, "train_and_test", lambda *a, **k: pytest.fail("trained"))
    code, text = _main([*command, "--out", "/proc/msabench/results"], capsys)
    assert code == 2 and "--out '/proc/msabench/results': cannot write" in text and "Traceback" not in text


def test_a_sweep_run_names_the_table_command_that_shows_it(tmp_path, capsys, monkeypatch):
    """README: `bench run --config sweeps/smoke.yaml` writes to results/smoke/."""
    monkeypatch.chdir(tmp_path)
    Path("smoke.yaml").write_text("seeds: [1111]\nepochs: 1\nout: results/smoke\nmodels: [late_fusion]\n")
    code, text = _main(["run", "--config", "smoke.yaml", "--quiet"], capsys)
    assert code == 0, text
    command = re.search(r"results: results/smoke/; show them with `(.+)`", text).group(1)
    assert command == "python -m bench table --results results/smoke"
    code, shown = _main([*shlex.split(command)[3:], "--format", "md"], capsys)
    assert code == 0 and re.search(r"\| Late fusion +\|", shown)
    code, plain = _main(["table", "--format", "md"], capsys)  # results/ holds only the smoke folder
    assert code == NOTHING_TO_SHOW and f"`{command}`" in plain


def test_table_names_result_folders_below_its_own(tmp_path, capsys):
    write_results(tmp_path / "results", [make_result("mult", 1111)])
    write_results(tmp_path / "results" / "smoke", [make_result("late_fusion", 1111)])
    code, text = _main(["table", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "reports"),
                        "--format", "md"], capsys)
    assert code == 0 and re.search(r"\| MulT +\|", text) and "Late fusion" not in text
    assert f"`python -m bench table --results {tmp_path / 'results' / 'smoke'}`" in text


def test_runs_an_older_msabench_wrote_below_a_path_value_are_found(tmp_path):
    """Before one-component folder names, `--set pretrain_dir=/data/vox` wrote
    results/mosi/kebr+pretrain_dir=/data/vox/seed1111.json: the run, not a results folder."""
    old = make_result("kebr+pretrain_dir=/data/vox", 1111, dataset="mosi")
    write_json_atomic(tmp_path / "mosi" / "kebr+pretrain_dir=" / "data" / "vox" / "seed1111.json", old)
    write_results(tmp_path, [make_result("mult", 1111, dataset="mosi")])
    assert sorted(r["run_name"] for r in load_result_set(tmp_path).records) == ["kebr+pretrain_dir=/data/vox", "mult"]
    assert other_result_roots(tmp_path) == []


def test_seeds_given_twice_are_refused(tmp_path, capsys):
    code, text = _main(["run", *ONE_EPOCH, "--seeds", "1111-1113,1112", "--out", str(tmp_path)], capsys)
    assert code == 2 and "seed 1112 is given twice" in text


def test_preset_help_lists_every_registered_preset(capsys):
    from models.registry import get_model_entry, list_models

    registered = {p for m in list_models() for (_, p) in get_model_entry(m).presets}
    assert registered == set(PRESET_SOURCES)
    for command in ("run", "tune"):
        code, text = _main([command, "--help"], capsys)
        assert code == 0 and all(name in " ".join(text.split()) for name in registered)


def test_help_imports_neither_torch_nor_the_models():
    """Only the torch-free names of models/constants.py (option choices); no model file, no torch."""
    probe = ("import sys; from bench.cli import build_parser; build_parser().format_help(); "
             "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('models.') and m != 'models.constants'))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
