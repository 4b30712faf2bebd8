"""A run's result folder is one readable, unique path component for any --set value, and every
command finds every run it wrote (issue #23 item 1)."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from bench.config import RunConfig, variant_name  # noqa: E402
from bench.results import write_json_atomic  # noqa: E402
from result_factory import make_result  # noqa: E402

ODD_VALUES = ["/data/vox", "/data/vox/", "data/vox", "../up", "..", ".", "a\\b", "with space", "a+b=1", "x~y",
              "/ckpt/bert", "/ckpt/bert-base", "C:\\ckpt", "é", "tab\there", "x" * 300, "x" * 301, "",
              (768, 74, 47), (768, 74, 35), "1e-4", None, 0.0001, 1e-4 + 1e-12]


def test_simple_values_keep_their_names():
    assert variant_name("pase", {"use_sgm": False}) == "pase+no_sgm"
    assert variant_name("mult", {"lr": 1e-4}) == "mult+lr=0.0001"
    assert variant_name("mult", {"setting": "aligned", "layers": 3}) == "mult+layers=3+setting=aligned"


def test_any_value_gives_one_unique_readable_component():
    names = {variant_name("kebr", {"pretrain_dir": v}): v for v in ODD_VALUES}
    assert len(names) == len(ODD_VALUES)  # distinct values, distinct folders
    for name in names:
        assert "/" not in name and "\\" not in name and name not in (".", "..") and len(name.encode()) <= 255
        assert name.isprintable() and " " not in name
    assert variant_name("kebr", {"pretrain_dir": "/data/vox"}).startswith("kebr+pretrain_dir=data_vox~")
    many = {f"key{i}": "/a/long/path/" + "x" * 40 for i in range(30)}
    assert len(variant_name("kebr", many).encode()) <= 255
    assert variant_name("kebr", many) != variant_name("kebr", {**many, "key0": "/b"})


RUNS = [RunConfig(model="kebr", overrides={"pretrain_dir": "/data/vox"}),
        RunConfig(model="semi_iin", overrides={"unlabeled_dir": "/data/unlabeled"}),
        RunConfig(model="mag_bert", overrides={"text_encoder": "/ckpt/bert"})]


@pytest.fixture()
def written(tmp_path):
    """Two seeds of each run, written where the runner writes them (RunConfig.result_path)."""
    rng = np.random.default_rng(0)
    ids, y = [f"s{i}" for i in range(40)], rng.normal(size=40)
    history = [{"epoch": 0, "valid": {"Has0_acc_2": 0.6, "loss": 0.5},
                "contributions": {"split": "valid", "utility": {}, "shapley": {"t": 0.3, "a": 0.1, "v": 0.0}}}]
    for run in RUNS:
        for seed in (1111, 1112):
            run_s = RunConfig(model=run.model, seed=seed, overrides=run.overrides, out_dir=str(tmp_path / "results"))
            path = run_s.result_path()
            preds = (y + rng.normal(0, 0.5, 40)).tolist()
            write_json_atomic(path, make_result(run.run_name, seed, history=history, test={"MAE": 0.5},
                                                predictions=(ids, y.tolist(), preds)))
    return tmp_path


@pytest.mark.parametrize("run", RUNS, ids=lambda r: r.model)
def test_result_path_is_dataset_run_seed(run, tmp_path):
    path = RunConfig(model=run.model, overrides=run.overrides, out_dir=str(tmp_path)).result_path()
    assert path.relative_to(tmp_path).parts == ("synthetic", run.run_name, "seed1111.json")


def _bench(*argv: str) -> int:
    from bench.cli import build_parser

    args = build_parser().parse_args(list(argv))
    return args.func(args)


def test_table_figure_and_compare_find_every_run(written, capsys):
    from bench.report import display_name

    res, out = str(written / "results"), str(written / "reports")
    assert _bench("table", "--results", res, "--out", out, "--format", "csv") == 0
    shown = capsys.readouterr().out
    for run in RUNS:
        assert display_name(run.run_name, run.model) in shown
    names = [r.run_name for r in RUNS]
    assert _bench("figure", "predictions", "--models", ",".join(names), "--results", res, "--out", out) == 0
    for run in RUNS:
        assert _bench("figure", "contributions", "--model", run.run_name, "--compare", "none",
                      "--results", res, "--out", out) == 0
    assert _bench("compare", names[0], names[1], "--resamples", "50", "--results", res, "--out", out) == 0
    saved = json.loads(next((written / "reports").glob("compare_*.json")).read_text())
    assert saved["seeds"] == [1111, 1112]
