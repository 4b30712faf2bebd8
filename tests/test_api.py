"""bench.api: run() returns what the result files say; load_results() reads any results folder;
docs/api.md's example runs as written."""

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench import api
from bench.config import OptionError, variant_name
from bench.results import load_result
from models.registry import ConfigError
from tests.result_factory import make_error, make_result, write_results

ROOT = Path(__file__).resolve().parents[1]
QUICK = dict(epochs=1, contributions=False, robustness=False)


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    return out, api.run("late_fusion", seeds=[1111], out=out, **QUICK)


def test_run_returns_one_row_with_the_result_files_values(one_run):
    out, df = one_run
    path = out / "synthetic" / "late_fusion" / "seed1111.json"
    rec = load_result(path)
    assert len(df) == 1 and df.loc[0, "path"] == str(path)
    row = df.loc[0]
    assert (row["dataset"], row["model"], row["variant"], row["seed"], row["status"]) == (
        "synthetic", "late_fusion", "late_fusion", 1111, "ok")
    for split in ("test", "valid"):
        assert rec["metrics"][split]
        for name, value in rec["metrics"][split].items():
            assert row[f"{split}.{name}"] == value, f"{split}.{name}"
    assert row["best_epoch"] == rec["best_epoch"] and row["epochs_run"] == rec["epochs_run"] == 1
    assert [row[f"params.{k}"] for k in ("total", "trainable", "with_grad")] == list(rec["params"].values())
    assert row["time.train_s"] == rec["time"]["train_s"] and row["device"] == rec["device"]
    assert row["config.lr"] == rec["config"]["model"]["lr"] and row["run.epochs"] == 1
    assert row["config.dims"] == tuple(rec["config"]["model"]["dims"])


def test_run_skips_a_finished_run_and_force_reruns_it(one_run):
    out, first = one_run
    path = Path(first.loc[0, "path"])
    before = path.stat().st_mtime_ns
    write_results(out, [make_result("mult", 1111)])  # in the folder, not asked for: not returned
    again = api.run("late_fusion", seeds="1111", out=str(out), **QUICK)
    assert path.stat().st_mtime_ns == before
    pd.testing.assert_frame_equal(again, first)
    api.run(["late_fusion"], seeds=1111, out=out, force=True, **QUICK)
    assert path.stat().st_mtime_ns != before


def test_load_results_finds_variants_errors_and_unreadable_files(one_run, tmp_path):
    out, df = one_run
    out = Path(shutil.copytree(out / "synthetic" / "late_fusion", tmp_path / "synthetic" / "late_fusion")).parents[1]
    hashed = variant_name("late_fusion", {"pretrain_dir": "/data/vox", "hidden": 8})
    assert "~" in hashed  # a folder name with a digest
    write_results(out, [
        make_result(hashed, 1111, test={"MAE": 0.5}),
        make_result("mult", 1112, dataset="mosi", test={"MAE": 0.9}),
        make_error("late_fusion+no_x", 1112, "out of memory at batch_size=32"),
    ])
    bad = out / "synthetic" / "semi_iin" / "seed7.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    got = api.load_results(out)
    assert len(got) == 5
    by = got.set_index(["dataset", "variant", "seed"])
    assert by.loc[("synthetic", hashed, 1111), "test.MAE"] == 0.5
    assert by.loc[("synthetic", hashed, 1111), "model"] == "late_fusion"
    err = by.loc[("synthetic", "late_fusion+no_x", 1112)]
    assert (err["status"], err["error.type"], err["error.message"]) == (
        "error", "RuntimeError", "out of memory at batch_size=32")
    assert pd.isna(err["test.MAE"]) and pd.isna(err["best_epoch"])
    unreadable = by.loc[("synthetic", "semi_iin", 7)]
    assert unreadable["status"] == "unreadable" and str(bad) in unreadable["error.message"]
    row = got[got["variant"] == "late_fusion"]
    assert row["test.MAE"].item() == df.loc[0, "test.MAE"]


def test_load_results_filters_like_bench_table(tmp_path):
    write_results(tmp_path, [make_result("pase"), make_result("pase+no_sgm"), make_result("mult"),
                             make_result("mult", dataset="mosi")])
    assert sorted(api.load_results(tmp_path, models="pase")["variant"]) == ["pase", "pase+no_sgm"]
    assert list(api.load_results(tmp_path, models=["pase+no_sgm"])["variant"]) == ["pase+no_sgm"]
    assert list(api.load_results(tmp_path, models="mu*", datasets="mosi")["dataset"]) == ["mosi"]
    assert len(api.load_results(tmp_path, datasets=["synthetic", "mosi"])) == 4


def test_column_dtypes(tmp_path):
    write_results(tmp_path, [make_result("mult", 1111, test={"MAE": 0.5, "Corr": 0.25}),
                             make_error("mult", 1112, "boom")])
    df = api.load_results(tmp_path)
    for col in ("seed", "best_epoch", "epochs_run", "params.total", "params.trainable", "peak_memory_bytes"):
        assert df[col].dtype == "Int64", col
    assert df["best_epoch"].isna().tolist() == [False, True]
    for col in ("test.MAE", "test.Corr", "time.train_s", "time.wall_s"):
        assert df[col].dtype == "float64", col
    assert df["seed"].tolist() == [1111, 1112] and df["status"].tolist() == ["ok", "error"]
    assert df.groupby("variant")["test.MAE"].mean().loc["mult"] == 0.5


def test_empty_and_missing_folders(tmp_path):
    empty = api.load_results(tmp_path)
    assert len(empty) == 0 and {"dataset", "model", "variant", "seed", "status", "path"} <= set(empty.columns)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope")) + ".*does not exist"):
        api.load_results(tmp_path / "nope")


@pytest.mark.parametrize("options, error, words", [
    (dict(max_epochs=1), TypeError, ["'max_epochs'", "did you mean 'epochs'"]),
    (dict(quiet=True), TypeError, ["'quiet'", "progress"]),
    (dict(epochs=0), OptionError, ["epochs=0", ">= 1"]),
    (dict(setting="diagonal"), OptionError, ["setting='diagonal'", "aligned"]),
    (dict(amp="no"), OptionError, ["amp='no'", "True or False"]),
    (dict(set="lr=1"), OptionError, ["set='lr=1'", "mapping"]),
    (dict(set={"hiden": 3}), ConfigError, ["hiden", "did you mean 'hidden'"]),
    (dict(seeds="x"), OptionError, ["seeds='x'"]),
])
def test_bad_options_fail_before_anything_runs(tmp_path, options, error, words):
    kwargs = {"out": tmp_path / "out", **options}
    with pytest.raises(error) as info:
        api.run("late_fusion", **kwargs)
    for w in words:
        assert w in str(info.value), (w, str(info.value))
    assert not (tmp_path / "out").exists()


def test_include_loads_the_user_s_model_file_and_names_a_missing_one(monkeypatch, tmp_path):
    import bench.plugins as plugins
    from bench.plugins import PluginError
    from models import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # restored after the test
    monkeypatch.setattr(plugins, "_LOADED", {})
    with pytest.raises(PluginError, match="include=: '.*no_such_model.py' does not exist"):
        api.run("late_fusion", include=tmp_path / "no_such_model.py", out=tmp_path / "out")
    example = ROOT / "examples" / "msabench-example" / "msabench_example" / "mean_pool.py"
    frame = api.run("mean_pool", include=[example], out=tmp_path / "out", epochs=1, contributions=False)
    assert list(frame["model"]) == ["mean_pool"] and list(frame["status"]) == ["ok"]


def test_importing_the_api_is_light():
    import os
    import subprocess
    import sys

    code = "import sys, bench.api; print(sorted({'torch', 'pandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert out.strip() == "[]"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


@pytest.mark.slow
def test_the_guide_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = code_blocks((ROOT / "docs" / "api.md").read_text())
    assert blocks
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), {})
    printed = capsys.readouterr().out
    for model in ("late_fusion", "semi_iin"):
        assert re.search(rf"^{model}: MAE \d+\.\d{{3}} ± \d+\.\d{{3}} \(n=2\)$", printed, re.MULTILINE), printed
    assert len(list((tmp_path / "results" / "synthetic").glob("*/seed*.json"))) == 4
