"""Tables from small hand-written result files, compared with golden Markdown (tests/golden/).

Set MSABENCH_UPDATE_GOLDEN=1 to rewrite the golden files after an intended change (then read
the diff). The key cells are also asserted literally below, worked out by hand.
"""

from __future__ import annotations

import csv
import io
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import (
    build_tables, display_name, format_seeds, load_result_set, summarize, to_csv, to_latex, to_markdown, write_tables,
)
from result_factory import make_error, make_result, write_results

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"


def reg(acc: float, mae: float, corr: float) -> dict[str, float]:
    """Test metrics with the other accuracies at fixed offsets from `acc` (easy to check by hand)."""
    return {"Has0_acc_2": acc, "Non0_acc_2": acc + 0.02, "Has0_F1_score": acc - 0.01, "Non0_F1_score": acc + 0.01,
            "Mult_acc_7": acc - 0.40, "MAE": mae, "Corr": corr, "n": 686}


def synthetic_records() -> list[dict]:
    return [
        # MulT: 3 seeds, acc 80/82/84 -> 82.00 ± 2.00; MAE 0.720 ± 0.020; Corr 0.800 ± 0.000
        make_result("mult", 1111, test=reg(0.80, 0.70, 0.80), params=(2_571_551, 2_571_551, 2_571_551),
                    train_s=100.0, per_epoch_s=(10.0, 10.0), peak_memory_bytes=512 * 2**20),
        make_result("mult", 1112, test=reg(0.82, 0.72, 0.80), params=(2_571_551, 2_571_551, 2_571_551),
                    train_s=110.0, per_epoch_s=(11.0, 11.0), peak_memory_bytes=512 * 2**20),
        make_result("mult", 1113, test=reg(0.84, 0.74, 0.80), params=(2_571_551, 2_571_551, 2_571_551),
                    train_s=120.0, per_epoch_s=(12.0, 12.0), peak_memory_bytes=512 * 2**20),
        # PaSE: seed 1113 failed -> 2/3; acc 85/87 -> 86.00 ± 1.41 (the best Acc-2); MAE 0.640 ± 0.014
        make_result("pase", 1111, test=reg(0.85, 0.65, 0.85), params=(1_000_000, 900_000, 890_000),
                    train_s=200.0, per_epoch_s=(20.0,) * 4, peak_memory_bytes=3 * 2**29),
        make_result("pase", 1112, test=reg(0.87, 0.63, 0.83), params=(1_000_000, 900_000, 890_000),
                    train_s=220.0, per_epoch_s=(22.0,) * 4, peak_memory_bytes=3 * 2**29),
        make_error("pase", 1113, "CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail"),
        # PaSE w/o SGM: Corr NaN on seed 1113 -> that cell shows its own n=2
        make_result("pase+no_sgm", 1111, test=reg(0.83, 0.66, 0.82)),
        make_result("pase+no_sgm", 1112, test=reg(0.83, 0.66, 0.82)),
        make_result("pase+no_sgm", 1113, test=reg(0.83, 0.66, math.nan)),
        # Late fusion: one seed only -> "± –", n 1/3, seeds 1112-1113 missing
        make_result("late_fusion", 1111, test=reg(0.75, 0.80, 0.70)),
    ]


@pytest.fixture()
def synthetic_results(tmp_path) -> Path:
    return write_results(tmp_path / "results", synthetic_records())


def emotions(acc: float, f1: float) -> dict[str, float]:
    out = {}
    for k, e in enumerate(("Neutral", "Happy", "Sad", "Angry")):
        out[f"Acc_{e}"], out[f"F1_{e}"] = acc + 0.01 * k, f1 + 0.01 * k
    out["mean_acc"] = acc + 0.015
    return out


def iemocap_records() -> list[dict]:
    majority = {**emotions(0.70, 0.60), "mean_acc": 0.715}
    kw = dict(dataset="iemocap", task="iemocap", predictions=(["i0"], [[1, 0, 0, 0]], [[0.0] * 8]))
    return [make_result("mult", seed, **kw,
                        extra={"metrics": {"test": emotions(acc, f1), "valid": {}, "majority_baseline": majority}})
            for seed, acc, f1 in ((1111, 0.80, 0.78), (1112, 0.82, 0.80))]


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("MSABENCH_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with MSABENCH_UPDATE_GOLDEN=1 once and read it"
    assert text == path.read_text(), f"{name} differs from the golden file (MSABENCH_UPDATE_GOLDEN=1 to accept)"


def _table(tables, name):
    return next(t for t in tables if t.name == name)


def _cells(md: str, label: str) -> list[str]:
    line = next(l for l in md.splitlines() if l.startswith(f"| {label} "))
    return [c.strip() for c in line.strip("|").split("|")]


def test_summary_statistics_follow_the_reporting_conventions():
    s = summarize([0.80, 0.82, 0.84])
    assert s.n == 3 and math.isclose(s.mean, 0.82) and math.isclose(s.std, 0.02)  # sample std, ddof = 1
    one = summarize([0.5])
    assert one.n == 1 and math.isnan(one.std)
    assert summarize([0.5, math.nan, None, 0.7]).n == 2  # NaN and missing values left out
    assert summarize([]).n == 0


def test_display_names_and_seed_ranges():
    assert display_name("pase") == "PaSE"
    assert display_name("pase+no_sgm") == "PaSE w/o SGM"
    assert display_name("pase+no_cal+no_sgm") == "PaSE w/o CAL, SGM"
    assert display_name("mult+lr=0.0001") == "MulT (lr=0.0001)"
    assert display_name("bert_text") == "BERT (text only)"
    assert display_name("pase_small", model="pase") == "PaSE [pase_small]"
    assert format_seeds([1115, 1111, 1112, 1113]) == "1111–1113, 1115"
    assert format_seeds([1111, 1112]) == "1111, 1112"


def test_regression_table_matches_golden_and_shows_gaps(synthetic_results):
    tables = build_tables(load_result_set(synthetic_results))
    md = to_markdown(_table(tables, "table_synthetic"))
    check_golden("table_synthetic.md", md)
    # hand-computed cells
    # every run stores the same test predictions, so the bootstrap separates none: all tied (†), none bold
    assert _cells(md, "MulT")[:3] == ["MulT", "3", "82.00 ± 2.00†"]
    assert _cells(md, "MulT")[7:9] == ["0.720 ± 0.020†", "0.800 ± 0.000†"]
    assert _cells(md, "PaSE")[:3] == ["PaSE", "2/3", "86.00 ± 1.41†"]  # best Acc-2, not separated; a visible gap
    assert "**" not in md
    assert _cells(md, "PaSE w/o SGM")[8] == "0.820 ± 0.000 (n=2)†"  # NaN seed left out, its n shown
    assert _cells(md, "Late fusion")[1:3] == ["1/3", "75.00 ± –†"]
    assert "PaSE: 2/3 seeds — seed 1113 failed (RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB)" in md
    assert "Late fusion: 1/3 seeds — seed 1112: no result file; seed 1113: no result file." in md
    # rows: baselines first, the proposed model and its variant last
    order = [l.split("|")[1].strip() for l in md.splitlines() if l.startswith("| ") and "Model" not in l]
    assert order == ["Late fusion", "MulT", "PaSE", "PaSE w/o SGM"]


def test_expected_seeds_from_the_command_line(synthetic_results):
    rs = load_result_set(synthetic_results)
    md = to_markdown(build_tables(rs, seeds=[1111, 1112, 1113, 1114, 1115], efficiency=False)[0])
    assert _cells(md, "MulT")[1] == "3/5" and _cells(md, "PaSE")[1] == "2/5"
    assert "seed 1114: no result file; seed 1115: no result file" in md
    only = to_markdown(build_tables(rs, seeds=[1111, 1112], efficiency=False)[0])
    assert _cells(only, "MulT")[1:3] == ["2", "81.00 ± 1.41†"]  # seed 1113 not asked for: not aggregated


def test_efficiency_table_matches_golden(synthetic_results):
    tables = build_tables(load_result_set(synthetic_results))
    md = to_markdown(_table(tables, "efficiency_synthetic"))
    check_golden("efficiency_synthetic.md", md)
    # MulT train time 100/110/120 s -> 1.8 ± 0.2 min (column unit: min, as PaSE's max is 210 s)
    assert _cells(md, "MulT")[2] == "2,571,551" and _cells(md, "MulT")[5] == "1.8 ± 0.2"
    assert _cells(md, "PaSE")[2:5] == ["1,000,000", "900,000", "890,000"]
    assert _cells(md, "PaSE")[6] == "3.5 ± 0.2"  # wall = train + 1 s in the factory: 211 s
    assert _cells(md, "PaSE")[8] == "1536 ± 0"  # 1.5 GiB in MiB
    assert "Train time (min)" in md and "Peak memory (MiB)" in md


def test_iemocap_table_has_majority_baseline_and_na_for_unsupported(tmp_path):
    rs = load_result_set(write_results(tmp_path, iemocap_records()))
    tables = build_tables(rs, models=["mult", "mag_bert"],
                          unsupported={("iemocap", "mag_bert"):
                                       "needs BERT token ids; IEMOCAP pickles carry GloVe only"})
    md = to_markdown(_table(tables, "table_iemocap"))
    check_golden("table_iemocap.md", md)
    header = next(l for l in md.splitlines() if l.startswith("| Model"))
    assert [c.strip() for c in header.strip("|").split("|")][2:4] == ["Happy Acc", "Happy F1"]
    # Happy is emotion 1 in the label order: acc 0.81/0.83 -> 82.00 ± 1.41
    assert _cells(md, "MulT")[2] == "82.00 ± 1.41"
    assert _cells(md, "MAG-BERT")[1:4] == ["n/a", "n/a", "n/a"]
    assert _cells(md, "Majority baseline")[2] == "71.00"  # a fixed number, never bold, no std
    assert "MAG-BERT: n/a on iemocap: needs BERT token ids" in md


def test_unsupported_model_asked_for_with_results_elsewhere_is_na_not_missing(tmp_path):
    rs = load_result_set(write_results(tmp_path, iemocap_records()))
    md = to_markdown(build_tables(rs, models=["mag_bert"], unsupported={("iemocap", "mag_bert"): "no token ids"},
                                  efficiency=False)[0])
    assert _cells(md, "MAG-BERT")[1] == "n/a"
    md = to_markdown(build_tables(rs, models=["mult", "self_mm"], efficiency=False)[0])
    assert _cells(md, "Self-MM")[1:3] == ["0/2", "–"]  # asked for, supported, never run: a visible gap
    assert "Self-MM: 0/2 seeds — seed 1111: no result file; seed 1112: no result file." in md


def test_robustness_table_matches_golden(tmp_path):
    def rob(acc_tav: float, mae_tav: float) -> dict:
        coalitions = {k: {"Has0_acc_2": acc_tav - 0.01 * (3 - len(k)), "MAE": mae_tav + 0.1 * (3 - len(k))}
                      for k in ("t", "a", "v", "ta", "tv", "av", "tav")}
        return {"robustness": {"split": "test", "coalitions": coalitions, "utility": {},
                               "shapley": {"t": 0.3, "a": 0.1, "v": 0.05}}}

    records = [make_result("mult", 1111, extra=rob(0.80, 0.70)), make_result("mult", 1112, extra=rob(0.82, 0.72)),
               make_result("pase", 1111, extra=rob(0.86, 0.60)), make_result("pase", 1112)]
    tables = build_tables(load_result_set(write_results(tmp_path, records)), robustness=True)
    md = to_markdown(_table(tables, "robustness_synthetic"))
    check_golden("robustness_synthetic.md", md)
    assert _cells(md, "MulT")[1:4] == ["2", "79.00 ± 1.41", "0.910 ± 0.014"]  # t: acc - 0.02, MAE + 0.2
    assert _cells(md, "PaSE")[1] == "1/2"
    assert "PaSE: seed 1112: no robustness data in the result file." in md


def test_reference_rows_are_labelled_and_never_ranked(tmp_path):
    records = [make_result("mult", s, dataset="mosi", test=reg(0.70 + 0.01 * i, 0.9, 0.6))
               for i, s in enumerate((1111, 1112))]
    rs = load_result_set(write_results(tmp_path, records))
    md = to_markdown(build_tables(rs, reference=True, efficiency=False)[0])
    paper = _cells(md, "MulT (paper, aligned, non0)")
    assert paper[1] == "pub." and paper[2] == "–" and paper[3] == "83.00" and paper[8] == "0.698"
    assert _cells(md, "Self-MM (MMSA result-stat, has0/non0)")[2] == "83.44"
    assert "**" not in md and "†" not in md.split("\n\n- ")[0]  # one msabench row: nothing ranked; reference rows never are
    assert "Tsai et al., ACL 2019" in md and "PaSE (paper, has0/non0)" in md
    only_mult = to_markdown(build_tables(rs, models=["mult"], reference=True, efficiency=False)[0])
    assert "Self-MM (" not in only_mult and "MSAmba" not in only_mult and "MulT (MMSA result-stat" in only_mult


def test_unreadable_file_is_a_gap_not_a_crash(synthetic_results):
    (synthetic_results / "synthetic" / "mult" / "seed1113.json").write_text('{"truncated": ')
    md = to_markdown(build_tables(load_result_set(synthetic_results), efficiency=False)[0])
    assert _cells(md, "MulT")[1:3] == ["2/3", "81.00 ± 1.41†"]
    assert "MulT: 2/3 seeds — seed 1113: unreadable result file" in md


def test_latex_and_csv(synthetic_results):
    t = build_tables(load_result_set(synthetic_results))[0]
    tex = to_latex(t)
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "86.00 $\\pm$ 1.41$^\\dagger$" in tex and "75.00 $\\pm$ --" in tex
    assert "_" not in tex.replace("\\_", "")  # every underscore escaped
    rows = list(csv.DictReader(io.StringIO(to_csv(t))))
    mult = {r["column"]: r for r in rows if r["run_name"] == "mult"}
    assert float(mult["Has0_acc_2"]["mean"]) == pytest.approx(0.82, abs=1e-15)  # full precision, stored units
    assert float(mult["Has0_acc_2"]["std"]) == pytest.approx(0.02, abs=1e-15)
    assert mult["MAE"]["n"] == "3" and mult["MAE"]["n_expected"] == "3"
    nosgm = {r["column"]: r for r in rows if r["run_name"] == "pase+no_sgm"}
    assert nosgm["Corr"]["n"] == "2"
    assert mult["Has0_acc_2"]["mark"] == "tied" and {r["mark"] for r in rows} == {"tied"}


def bootstrap_records() -> list[dict]:
    """300 test samples, 3 seeds: PaSE (errors sd 0.5) clearly beats MulT (sd 1.5); "Self-MM" is
    PaSE plus tiny noise (within noise of it). Test metrics computed from the stored predictions."""
    import numpy as np

    from bench.metrics import regression_metrics

    rng = np.random.default_rng(7)
    ids = [f"s{k}" for k in range(300)]
    y = np.round(rng.uniform(-3, 3, len(ids)), 1)
    out = []
    for seed in (1111, 1112, 1113):
        pase = y + rng.normal(0, 0.5, len(ids))
        for run, p in (("mult", y + rng.normal(0, 1.5, len(ids))), ("pase", pase),
                       ("self_mm", pase + rng.normal(0, 0.02, len(ids)))):
            out.append(make_result(run, seed, test=regression_metrics(p, y), predictions=(ids, y.tolist(), p.tolist())))
    return out


def test_bold_only_when_the_paired_bootstrap_separates_the_best(tmp_path):
    rs = load_result_set(write_results(tmp_path, bootstrap_records()))
    clear = build_tables(rs, models=["mult", "pase"], efficiency=False)[0]
    assert clear.marks and all(m == {clear.rows.index(_row(clear, "PaSE")): "best"} for m in clear.marks.values())
    md = to_markdown(clear)
    assert all(c.startswith("**") and c.endswith("**") for c in _cells(md, "PaSE")[2:])
    assert "**" not in "".join(_cells(md, "MulT")) and "†" not in md.split("\n\n- ")[0]
    assert "\\textbf{" in to_latex(clear)
    assert {r["mark"] for r in csv.DictReader(io.StringIO(to_csv(clear))) if r["run_name"] == "pase"} == {"best"}

    close = build_tables(rs, efficiency=False)[0]
    pase, selfmm = (close.rows.index(_row(close, label)) for label in ("PaSE", "Self-MM"))
    for key in ("MAE", "Corr", "Mult_acc_7"):  # PaSE and Self-MM within noise: both tied, no bold
        assert close.marks[key] == {pase: "tied", selfmm: "tied"}, key
    md = to_markdown(close)
    assert _cells(md, "PaSE")[7].endswith("†") and _cells(md, "Self-MM")[7].endswith("†")
    assert "**" not in md
    assert "B = 10,000, RNG seed 0" in md and "95% interval" in md and "alpha = 0.05" in md


def test_runs_that_cannot_be_compared_are_tied_and_noted(tmp_path):
    records = bootstrap_records()
    for r in records:
        if r["run_name"] == "mult":
            r["predictions"] = None  # e.g. a result file written before predictions were stored
    rs = load_result_set(write_results(tmp_path, records))
    table = build_tables(rs, models=["mult", "pase"], efficiency=False)[0]
    assert set(table.marks["MAE"].values()) == {"tied"} and len(table.marks["MAE"]) == 2
    assert any(n.startswith("Not compared (pase vs mult), counted as tied:") and "no predictions" in n
               for n in table.notes)


def _row(table, label):
    return next(r for r in table.rows if r.label == label)


def test_write_tables(tmp_path, synthetic_results):
    paths = write_tables(build_tables(load_result_set(synthetic_results)), tmp_path / "reports")
    names = sorted(p.name for p in paths)
    assert names == sorted(f"{t}_synthetic.{f}" for t in ("table", "efficiency") for f in ("md", "tex", "csv"))
    assert all(p.stat().st_size > 0 for p in paths)


def test_cli_table_with_default_directories(tmp_path):
    write_results(tmp_path / "results", synthetic_records())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "bench", "table"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "| PaSE " in out.stdout and "2/3" in out.stdout
    assert (tmp_path / "reports" / "table_synthetic.md").read_text() == (GOLDEN / "table_synthetic.md").read_text()
    assert (tmp_path / "reports" / "table_synthetic.tex").exists()


def test_cli_table_without_results_says_what_to_do(tmp_path, monkeypatch, capsys):
    from bench.cli import build_parser

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["table"])
    assert args.func(args) == 2  # nothing to show: as figure and compare (bench.cli.NOTHING_TO_SHOW)
    assert "no result files under 'results/'" in capsys.readouterr().err


# -- model metadata: declared at registration, read by the tables ---------------------------------

def test_a_registered_model_s_metadata_names_and_places_its_row(tmp_path, monkeypatch):
    """A model outside the catalog (a plugin) registered in this process: its display name, its
    variant row label and its order reach the table; unregistered afterwards."""
    from models import registry
    from models.late_fusion import LateFusionConfig

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # restored after the test
    registry.register_model("tmp_plugin", config=LateFusionConfig, presets={}, display_name="Plugin Net",
                            paper="Doe et al., NeurIPS 2030", family="transformer fusion", order=25,
                            row_labels={"vocab_size": "Plugin Net (own vocabulary)"})(lambda cfg: None)
    records = [make_result(name, 1111, test=reg(0.8, 0.7, 0.8)) for name in ("mult", "late_fusion", "tmp_plugin")]
    records.append(make_result("tmp_plugin+own", 1111, test=reg(0.8, 0.7, 0.8),
                               extra={"config": {"run": {}, "model": {"vocab_size": 100}}}))
    md = to_markdown(build_tables(load_result_set(write_results(tmp_path, records)), efficiency=False)[0])
    order = [line.split("|")[1].strip() for line in md.splitlines()[4:] if line.startswith("| ")]
    # order 25: after Late fusion (10), before MulT (30); the run whose config sets the field: its label
    assert order == ["Late fusion", "Plugin Net", "Plugin Net (own vocabulary) (own)", "MulT"]


def test_an_unknown_model_keeps_its_name_between_the_baselines_and_the_proposed_model(tmp_path):
    records = [make_result(name, 1111, test=reg(0.8, 0.7, 0.8)) for name in ("pase", "msamba", "a_plugin")]
    md = to_markdown(build_tables(load_result_set(write_results(tmp_path, records)), efficiency=False)[0])
    order = [line.split("|")[1].strip() for line in md.splitlines()[4:] if line.startswith("| ")]
    assert order == ["MSAmba (reconstructed)", "a_plugin", "PaSE"]


def test_row_labels_follow_the_run_s_config():
    assert display_name("kebr") == "KEBR (no pre-training)"
    assert display_name("kebr", "kebr", config={"pretrain_dir": "/data/voxceleb"}) == "KEBR"
    assert display_name("semi_iin+tuned", config={"unlabeled_dir": None}) == "Semi-IIN (supervised) (tuned)"
    assert display_name("semi_small", "semi_iin", config={"unlabeled_dir": "/data/ami"}) == "Semi-IIN [semi_small]"


def test_tables_read_metadata_without_importing_the_models(synthetic_results):
    """Built-in models' metadata comes from bench/catalog.json: no model file, no torch (only the
    torch-free names in models/constants.py)."""
    code = ("import sys\nfrom bench.report import build_tables, load_result_set, to_markdown\n"
            f"md = to_markdown(build_tables(load_result_set({str(synthetic_results)!r}))[0])\n"
            "assert '| Late fusion ' in md and '| PaSE w/o SGM ' in md, md\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('models.') and m != 'models.constants'))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_no_bench_module_keeps_a_list_of_model_names():
    """Names, order and labels of models come from the registry: no literal in bench/ (a tuple, list,
    set or dict) holds two or more registered names. perf.TARGETS (speed targets of the perf
    issue, keyed by model) is the one allowed exception."""
    import ast

    from models import list_models

    allowed = {("bench/perf.py", "TARGETS")}
    names, found = set(list_models()), []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        rel, tree = str(path.relative_to(ROOT)), ast.parse(path.read_text())
        skip = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.AnnAssign | ast.Assign)
                and (rel, getattr(n.targets[0] if isinstance(n, ast.Assign) else n.target, "id", None)) in allowed}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)) and id(node) not in skip:
                items = node.keys if isinstance(node, ast.Dict) else node.elts
                hits = [i.value for i in items if isinstance(i, ast.Constant) and i.value in names]
                if len(hits) >= 2:
                    found.append(f"{rel}:{node.lineno}: {hits}")
    assert not found, "model names listed outside the registry (declare them at register_model):\n" + "\n".join(found)
