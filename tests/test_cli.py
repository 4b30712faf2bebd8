"""The command line, as a user runs it."""

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench(*args, timeout=1200):  # a guard against a hang only
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_ls_lists_models_with_parameter_counts():
    out = bench("ls")
    assert out.returncode == 0, out.stderr
    assert "mult" in out.stdout and "late_fusion" in out.stdout and "2,571,551" in out.stdout
    assert "synthetic" in out.stdout


def test_ls_is_instant_and_readable():
    """`ls` reads the catalog: no torch import (importing it alone takes ~2 s), lines that fit a
    terminal, and a dataset a model cannot run on shows as n/a with a numbered reason, no presets."""
    code = ("import sys\nfrom bench.cli import main\ntry:\n    main(['ls'])\nexcept SystemExit as e:\n"
            "    assert e.code == 0, e.code\nassert 'torch' not in sys.modules, 'ls imported torch'\n")
    out = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(map(len, lines)) <= 100
    clgsi_iemocap = [line for line in lines if line.startswith("| clgsi ") and "| iemocap " in line]
    assert len(clgsi_iemocap) == 1 and re.search(r"n/a \[(\d+)\]", clgsi_iemocap[0]), clgsi_iemocap
    note = re.search(r"n/a \[(\d+)\]", clgsi_iemocap[0])[1]
    from models.registry import get_model_entry

    reason = get_model_entry("clgsi").unsupported["iemocap"]
    assert any(line.startswith(f"  [{note}] " + " ".join(reason.split()[:4])) for line in lines), note
    notes = out.stdout.split("\nn/a: ")[1]
    assert reason.split()[-1] in notes.split(f"[{note}]")[1].split(f"[{int(note) + 1}]")[0]  # the whole reason, wrapped


def test_ls_counts_builds_on_request():
    out = bench("ls", "mult", "--counts")
    assert out.returncode == 0, out.stderr
    assert "counting parameters: mult" in out.stderr and "2,571,551" in out.stdout


def test_run_writes_skips_and_forces(tmp_path):
    args = ("run", "--models", "late_fusion", "--seeds", "1111", "--epochs", "1", "--out", str(tmp_path))
    first = bench(*args)
    assert first.returncode == 0, first.stderr
    path = tmp_path / "synthetic" / "late_fusion" / "seed1111.json"
    rec = json.loads(path.read_text())
    assert rec["status"] == "ok" and rec["epochs_run"] == 1
    again = bench(*args)
    assert again.returncode == 0 and "skip synthetic/late_fusion/seed1111" in again.stderr
    assert json.loads(path.read_text())["date"] == rec["date"]
    forced = bench(*args, "--force", "--quiet")
    assert forced.returncode == 0 and "1 ran" in forced.stderr


def test_clear_errors():
    out = bench("run", "--models", "mlut", "--seeds", "1111")
    assert out.returncode == 2 and "did you mean 'mult'" in out.stderr and "Traceback" not in out.stderr
    out = bench("run", "--models", "late_fusion", "--set", "hiden=3")
    assert out.returncode == 2 and "did you mean 'hidden'" in out.stderr


def test_ls_with_a_stale_catalog_lists_the_live_registry_without_counts(monkeypatch, capsys):
    import pytest

    import bench.catalog
    from bench.cli import main

    monkeypatch.setattr(bench.catalog, "load_catalog", lambda *a, **k: None)  # as after editing a model file
    with pytest.raises(SystemExit) as exc:
        main(["ls", "mult"])
    out = capsys.readouterr()
    assert exc.value.code == 0 and "parameter counts left out (--counts builds them)" in out.err
    rows = [line for line in out.out.splitlines() if line.startswith("| mult ")]
    from models.registry import get_model_entry

    assert len(rows) == len(get_model_entry("mult").presets)  # every preset listed, none counted
    assert all(line.rstrip(" |").endswith("–") for line in rows)


def test_readme_mag_bert_command_on_a_mag_file(tmp_path):
    """README: `bench run --models mag_bert --preset paper --datasets mosi --data-format mag ...`
    on a file in MAG-BERT's own format (74-d audio, 47-d vision): the gate takes the file's widths."""
    from tests.datagen import write_mag

    write_mag(tmp_path / "data")
    out = bench("run", "--models", "mag_bert", "--preset", "paper", "--datasets", "mosi", "--data-format", "mag",
                "--data-root", str(tmp_path / "data"), "--text-encoder", "tiny", "--seeds", "1111", "--epochs", "1",
                "--out", str(tmp_path / "results"))
    assert out.returncode == 0, out.stderr
    rec = json.loads((tmp_path / "results" / "mosi" / "mag_bert+mag" / "seed1111.json").read_text())
    assert rec["status"] == "ok" and rec["config"]["model"]["dims"][1:] == [74, 47]
