"""Figures from small hand-written result files: files written, and the figure's content inspected."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bench.figures import (  # noqa: E402
    COLUMN_WIDTH_IN, aggregate_by_epoch, contributions_for_runs, predictions_for_runs, save_figure, switch_epochs,
)
from bench.report import load_result_set  # noqa: E402
from result_factory import make_result, write_results  # noqa: E402



def history(n_epochs: int, switch: int | None, shift: float = 0.0) -> list[dict]:
    """Shapley t = 0.4 + shift, a = 0.1, v = 0.03 at every epoch; valid Acc-2 = 0.8 + 0.01 * epoch."""
    out = []
    for e in range(n_epochs):
        h = {"epoch": e, "valid": {"Has0_acc_2": 0.8 + 0.01 * e, "loss": 0.5},
             "contributions": {"split": "valid", "utility": {}, "shapley": {"t": 0.4 + shift, "a": 0.1, "v": 0.03}}}
        if switch is not None:
            h["phase"] = 1 if e < switch else 2
        out.append(h)
    return out


@pytest.fixture()
def pase_results(tmp_path) -> Path:
    """PaSE seeds stop early at different epochs (6, 8, 10) and switch at epochs 3, 4, 5;
    seed 1113 records the switch only through `phase` (no model_summary)."""
    recs = [
        make_result("pase", 1111, history=history(6, 3, shift=0.00), model_summary={"switch_epoch": 3}),
        make_result("pase", 1112, history=history(8, 4, shift=0.02), model_summary={"switch_epoch": 4}),
        make_result("pase", 1113, history=history(10, 5, shift=0.04)),
        make_result("pase+no_sgm", 1111, history=history(6, 3)),
        make_result("late_fusion", 1111, history=history(4, None)),
        make_result("mult", 1111, history=[{"epoch": 0, "valid": {}}]),  # run without contributions
    ]
    return write_results(tmp_path / "results", recs)


def _lines(fig, prefix: str) -> list:
    return [l for ax in fig.axes for l in ax.get_lines() if (l.get_gid() or "").startswith(prefix)]


def _line(fig, gid: str):
    (line,) = [l for ax in fig.axes for l in ax.get_lines() if l.get_gid() == gid]
    return line


def test_aggregate_averages_over_the_seeds_present_at_each_epoch():
    c = aggregate_by_epoch([{0: 1.0, 1: 2.0, 2: 5.0}, {0: 3.0, 1: 4.0}])
    assert c.epochs.tolist() == [0, 1, 2] and c.mean.tolist() == [2.0, 3.0, 5.0] and c.n.tolist() == [2, 2, 1]
    assert c.high[0] - c.mean[0] == pytest.approx(np.sqrt(2))  # sample std of (1, 3)
    assert c.low[2] == c.high[2] == 5.0  # one seed: no band
    mm = aggregate_by_epoch([{0: 1.0}, {0: 3.0}, {0: 2.0}], band="minmax")
    assert (mm.low[0], mm.mean[0], mm.high[0]) == (1.0, 2.0, 3.0)


def test_contribution_figure_content_and_files(pase_results, tmp_path):
    rs = load_result_set(pase_results)
    fig, compare = contributions_for_runs(rs, "synthetic", "pase")
    assert compare == "pase+no_sgm"  # picked automatically
    shapley = _lines(fig, "shapley:pase:")
    valid = _line(fig, "valid:pase")
    assert sorted(l.get_gid() for l in shapley) == ["shapley:pase:a", "shapley:pase:t", "shapley:pase:v"]
    t = next(l for l in shapley if l.get_gid().endswith(":t"))
    # epochs 0-5: three seeds (0.40, 0.42, 0.44); 6-7: two (0.42, 0.44); 8-9: one (0.44)
    assert list(t.get_xdata()) == list(range(10))
    assert np.allclose(t.get_ydata(), [0.42] * 6 + [0.43] * 2 + [0.44] * 2)
    assert np.allclose(valid.get_ydata()[:3], [80.0, 81.0, 82.0])  # ×100, on the right axis
    assert valid.axes is not t.axes
    dashed = _lines(fig, "shapley:pase+no_sgm:")
    assert len(dashed) == 3 and all(l.get_linestyle() == "--" for l in dashed)
    assert all(l.get_linestyle() == "-" for l in shapley)
    switch = _line(fig, "switch:pase")
    assert switch.get_xdata()[0] == pytest.approx(4.0)  # mean of 3, 4 and 5 (the last from `phase`)
    assert any(p.get_gid() == "switch_range:pase" for p in t.axes.patches)
    # paper column width, fonts >= 7 pt
    assert fig.get_size_inches()[0] == pytest.approx(COLUMN_WIDTH_IN)
    texts = [x for x in fig.findobj(matplotlib.text.Text) if x.get_text()]
    assert texts and min(x.get_fontsize() for x in texts) >= 7
    legend = [x.get_text() for x in fig.legends[0].get_texts()]
    assert {"text", "audio", "vision", "PaSE", "PaSE w/o SGM", "phase switch"} <= set(legend)
    assert t.axes.get_title() == "PaSE on synthetic, seeds 1111–1113\nPaSE w/o SGM: seed 1111"  # model, dataset, seeds
    paths = save_figure(fig, tmp_path / "reports", "contributions_synthetic_pase")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"


def test_contribution_figure_without_switch_or_comparison(pase_results):
    rs = load_result_set(pase_results)
    fig, compare = contributions_for_runs(rs, "synthetic", "late_fusion")
    assert compare is None and len(_lines(fig, "shapley:late_fusion:")) == 3 and not _lines(fig, "switch:")
    fig, compare = contributions_for_runs(rs, "synthetic", "pase", compare="none")
    assert compare is None and not _lines(fig, "shapley:pase+no_sgm:")
    with pytest.raises(KeyError, match="no result files with contribution history for 'mult'"):
        contributions_for_runs(rs, "synthetic", "mult")
    with pytest.raises(KeyError, match="'nope'"):
        contributions_for_runs(rs, "synthetic", "pase", compare="nope")


def test_switch_epochs_from_summary_or_phase():
    recs = [{"model_summary": {"switch_epoch": 7}, "history": []},
            {"model_summary": {}, "history": [{"epoch": 0, "phase": 1}, {"epoch": 1, "phase": 2}]},
            {"history": [{"epoch": 0}]}]
    assert switch_epochs(recs) == [7, 1]


def test_predictions_figure(tmp_path):
    ids = [f"s{i}" for i in range(5)]
    labels = [-2.0, -1.0, 0.0, 1.0, 2.0]
    recs = [make_result("mult", s, predictions=(ids, labels, [y + d for y in labels]))
            for s, d in ((1111, 0.5), (1112, -0.3))]
    recs.append(make_result("pase", 1112, predictions=(ids, labels, [y - 0.1 for y in labels])))
    fig = predictions_for_runs(load_result_set(write_results(tmp_path, recs)), "synthetic")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["MulT: MAE 0.400 (2 seeds)", "PaSE: MAE 0.100 (1 seed)"]
    assert fig.get_suptitle() == "Test predictions on synthetic"
    assert len(panels[0].collections) == 2  # one scatter per seed
    # a legend names each seed's colour, and a seed has that colour in every panel
    dots = {c.get_gid(): tuple(c.get_facecolor()[0][:3]) for ax in panels for c in ax.collections}
    (legend,) = fig.legends
    named = {t.get_text(): tuple(matplotlib.colors.to_rgb(h.get_color())) for t, h in
             zip(legend.get_texts(), legend.legend_handles)}
    assert named == {"seed 1111": dots["scatter:mult:1111"], "seed 1112": dots["scatter:mult:1112"]}
    assert dots["scatter:pase:1112"] == dots["scatter:mult:1112"] != dots["scatter:mult:1111"]
    assert _line(fig, "identity:mult").get_xydata().tolist() == [[-3.0, -3.0], [3.0, 3.0]]
    with pytest.raises(KeyError, match="bert_text"):
        predictions_for_runs(load_result_set(tmp_path), "synthetic", ["bert_text"])


def test_cli_figure_with_default_directories(pase_results, monkeypatch, capsys):
    from bench.cli import build_parser

    monkeypatch.chdir(pase_results.parent)  # holds results/, as after `python -m bench run`

    def bench(*argv: str) -> int:
        args = build_parser().parse_args(list(argv))
        return args.func(args)

    assert bench("figure", "contributions", "--model", "late_fusion") == 0
    for suffix in ("png", "pdf"):
        assert Path("reports", f"contributions_synthetic_late_fusion.{suffix}").stat().st_size > 1000
    assert bench("figure", "scatter") == 0 and Path("reports", "predictions_synthetic.png").exists()
    assert bench("figure", "contributions", "--model", "mult") == 2
    assert "contribution history" in capsys.readouterr().err
