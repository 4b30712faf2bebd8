"""Real-format data end to end: `data check`, sweeps on MMSA and MulT files, and the
model/data compatibility messages."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.cli import build_parser
from bench.config import RunConfig
from bench.data import DataError, load_dataset
from bench.runner import check_compatible, run_sweep
from models.registry import list_models, resolve_config
from tests.datagen import write_mmsa, write_mult

ROOT = Path(__file__).resolve().parents[1]


def bench(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def bench_inprocess(capsys, *args) -> tuple[int, str, str]:
    """The CLI in this process (no interpreter start-up): exit code, stdout, stderr."""
    parsed = build_parser().parse_args(list(args))
    code = parsed.func(parsed)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """MOSI unaligned (MMSA, audio/vision T cut to 40/60 so MulT trains in seconds) and IEMOCAP aligned (MulT)."""
    root = tmp_path_factory.mktemp("data")
    write_mmsa(root, "mosi", "unaligned", sizes=(30, 20, 10), t=(50, 40, 60))
    write_mult(root, "iemocap", "aligned", sizes=(30, 20, 10))
    return root


def test_data_check_prints_splits_shapes_checksum_and_warnings(data_root):
    out = bench("data", "check", "--dataset", "mosi", "--data-root", str(data_root))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "MOSI/Processed/unaligned_50.pkl" in text and "mmsa format" in text
    assert "[differs from the MMSA README sum 78e0f8b5" in text
    assert "dims      t 768, a 5, v 20   seq_lens t 50, a 40, v 60" in text
    assert "views: ids, features; vocab 30522" in text
    assert "| train   |  30 |" in text and "audio(40, 5)" in text and "vision(60, 20)" in text
    assert "30 samples, the standard MOSI train split has 1284" in text
    assert "OK: mosi unaligned passed validation" in text


def test_data_check_reports_errors(tmp_path, capsys):
    def bad(d):
        d["valid"]["vision"][7, 0, 0] = np.nan

    write_mmsa(tmp_path, "mosi", "unaligned", sizes=(6, 8, 4), t=(50, 12, 16), mutate=bad)
    code, out, err = bench_inprocess(capsys, "data", "check", "--dataset", "mosi,iemocap", "--data-root", str(tmp_path))
    assert code == 2 and not out
    assert f"DataError: {tmp_path}/MOSI/Processed/unaligned_50.pkl [split=valid, key=vision]: 1 NaN values " \
           "(first at index 7)" in err  # the full path, not the basename
    assert "IEMOCAP/iemocap_data.pkl, iemocap_data.pkl" in err  # the missing file lists the names


def _runs(out, dataset, root, models=("mult", "late_fusion")):
    # MulT's per-epoch Shapley pass (8 coalitions) is left to the synthetic tests: it triples this test's time
    return [RunConfig(model=m, dataset=dataset, seed=1111, epochs=1, out_dir=str(out), data_root=str(root),
                      contributions=m == "late_fusion") for m in models]


@pytest.mark.parametrize("dataset", ["mosi", "iemocap"])
def test_sweep_end_to_end_on_real_formats(tmp_path, data_root, dataset, caplog):
    caplog.set_level("INFO", logger="bench")
    summary = run_sweep(_runs(tmp_path, dataset, data_root))
    assert summary.ok == [f"{dataset}/mult/seed1111", f"{dataset}/late_fusion/seed1111"], summary.failed
    rec = json.loads((tmp_path / dataset / "mult" / "seed1111.json").read_text())
    assert rec["status"] == "ok" and rec["epochs_run"] == 1 and rec["selected_on"] == "valid"
    src = rec["data"]["source"]
    assert len(src["sha256"]) == 64 and src["format"] == ("mmsa" if dataset == "mosi" else "mult")
    assert any("the standard" in w for w in rec["data"]["warnings"])  # tiny files: split-size warnings kept
    assert any("data warning" in line for line in caplog.messages)
    test = rec["metrics"]["test"]
    if dataset == "mosi":
        assert rec["setting"] == "unaligned" and {"Has0_acc_2", "Non0_acc_2", "MAE", "Corr"} <= set(test)
    else:
        assert rec["setting"] == "aligned" and {"Acc_Neutral", "F1_Angry", "acc4"} <= set(test)
        assert "majority_baseline" in rec["metrics"] and len(rec["predictions"]["preds"][0]) == 8
        assert rec["predictions"]["ids"][:2] == ["test:0", "test:1"]


@pytest.mark.slow
def test_pase_on_iemocap_end_to_end(tmp_path, data_root):
    if "pase" not in list_models():
        pytest.skip("pase is not registered")
    summary = run_sweep(_runs(tmp_path, "iemocap", data_root, models=("pase",)))
    assert summary.ok == ["iemocap/pase/seed1111"], summary.failed


def test_bad_data_stops_the_sweep_before_training(tmp_path):
    root = tmp_path / "data"
    write_mmsa(root, "mosi", "unaligned", sizes=(6, 4, 4), t=(50, 12, 16),
               mutate=lambda d: d["train"].__setitem__("regression_labels", d["train"]["regression_labels"] * 10))
    with pytest.raises(DataError, match=r"\[split=train, key=regression_labels\]: \d+ labels outside \[-3, 3\]"):
        run_sweep(_runs(tmp_path / "out", "mosi", root))
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written


def test_wrong_file_dims_name_both_sides(tmp_path):
    """A MOSEI file where the MOSI one belongs (a mix-up users report: MulT #40, MMSA #48)."""
    root = tmp_path / "data"
    mosei_file = write_mmsa(root, "mosei", "unaligned", sizes=(6, 4, 4), t=(50, 12, 16))
    (root / "MOSI" / "Processed").mkdir(parents=True)
    mosi_file = mosei_file.rename(root / "MOSI" / "Processed" / "unaligned_50.pkl")
    with pytest.raises(DataError) as e:
        run_sweep(_runs(tmp_path / "out", "mosi", root, models=("mult",)))
    assert str(e.value) == (f"{mosi_file.resolve()} [key=audio]: audio dim 74, MOSI preset expects 5: MOSEI file or "
                            "74-d COVAREP MOSI? (model mult, preset mmsa)")
    assert not (tmp_path / "out").exists()


def test_feature_models_on_glove_and_bert_models_on_mult_files(data_root):
    iemocap = load_dataset("iemocap", data_root=str(data_root), setting="aligned", text_input="features")
    mosi_preset = resolve_config("mult", "mosi")
    with pytest.raises(DataError, match="iemocap is a 'iemocap' dataset but mult's MOSI preset is for 'regression'"):
        check_compatible(mosi_preset, iemocap, "mult")
    bert_like = dataclasses.replace(resolve_config("late_fusion", "iemocap"), text_input="ids")
    with pytest.raises(DataError) as e:
        check_compatible(bert_like, iemocap, "late_fusion")
    assert str(e.value) == (f"{(data_root / 'IEMOCAP' / 'iemocap_data.pkl').resolve()} [key=text_bert]: "
                            "model needs `text_bert`; MulT-format file has GloVe "
                            "text only (late_fusion) (BERT models: pass --glove PATH, the glove.840B.300d.txt "
                            "that made the vectors; the words are found again by exact lookup)")
    glove_for_bert_features = dataclasses.replace(resolve_config("mult", "iemocap"), dims=(768, 74, 35))
    with pytest.raises(DataError, match=r"text dim 300, IEMOCAP preset expects 768: GloVe text \(MulT-format file\)\?"):
        check_compatible(glove_for_bert_features, iemocap, "mult")
    check_compatible(resolve_config("mult", "iemocap"), iemocap, "mult")  # the paper preset fits


def test_run_cli_reports_data_errors_with_exit_2(tmp_path, capsys):
    code, _, err = bench_inprocess(capsys, "run", "--models", "late_fusion", "--datasets", "iemocap", "--data-root",
                                   str(tmp_path), "--seeds", "1111", "--out", str(tmp_path / "out"))
    assert code == 2 and err.startswith("DataError: IEMOCAP/iemocap_data.pkl: IEMOCAP aligned file not found")
