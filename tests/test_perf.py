"""The perf benchmark's mechanics and statistics. No test depends on a timing: the interval and
the verdict are checked on synthetic step times with known answers, the interleaving with fake
sessions on a fake clock, the report on made-up rows (late_fusion runs for real only to check
the row's fields)."""

import itertools
import json
import random
import re
import statistics
import subprocess
from pathlib import Path

import pytest

from bench import perf
from bench.perf import (
    MET,
    MISSED,
    SHAPES,
    UNDECIDED,
    check_targets,
    format_report,
    interleave,
    median_interval,
    paired_ratios,
    random_batch,
    ratio_summary,
    run_perf,
    undecided,
    verdict,
    write_json,
)

ROOT = Path(__file__).resolve().parents[1]


def test_random_batch_has_the_real_shapes():
    b = random_batch(SHAPES["mosi"], 3, "regression")
    assert b.audio.shape == (3, 375, 5) and b.vision.shape == (3, 500, 20) and b.text_ids.shape == (3, 50)
    assert b.text_feats.shape == (3, 50, 768) and (b.text_ids[:, 0] == 101).all()
    assert random_batch(SHAPES["iemocap"], 2, "iemocap").labels.shape == (2, 4)


def test_run_perf_rows_table_and_json(tmp_path):
    from bench.data.conditions import condition_grid
    from models import create_model

    rows = run_perf(["late_fusion", "no_such_model"], "mosi", batch=4, steps=5, warmup=0, device="cpu",
                    floor=False, isolate=False)
    ok, bad = rows
    params = sum(p.numel() for p in create_model("late_fusion", "mosi").parameters())
    assert ok["model"] == "late_fusion" and ok["params"] == params and len(ok["step_ms"]) == 5
    assert ok["step_ms_median"] == statistics.median(ok["step_ms"]) and ok["step_ms_min"] == min(ok["step_ms"])
    assert 0 < ok["contributions_share"] < 1 and ok["peak_memory_bytes"] > 0 and "ratio_to_floor" not in ok
    passes = (1 + len(condition_grid())) * -(-SHAPES["mosi"]["splits"][2] // 4)  # clean + each condition, forward only
    assert ok["curves_ms"] == pytest.approx(passes * ok["forward_ms_median"]) and 0 < ok["curves_share"] < 1
    assert "error" in bad and "no_such_model" in bad["error"]  # failure is a row, not a crash
    table = perf.format_table(rows)
    assert "late_fusion" in table and "error" in table
    write_json(rows, str(tmp_path / "perf.json"))
    assert json.loads((tmp_path / "perf.json").read_text())["rows"][0]["step_ms"] == ok["step_ms"]


@pytest.mark.slow
def test_subprocess_sessions_answer_over_the_pipe_and_report_their_errors():
    rows = run_perf(["late_fusion", "no_such_model"], "mosi", batch=2, steps=5, warmup=0, device="cpu",
                    floor=False, isolate=True)
    ok, bad = rows
    assert ok["model"] == "late_fusion" and len(ok["step_ms"]) == 5 and ok["peak_memory_bytes"] > 0
    assert bad["model"] == "no_such_model" and re.match(r"\w+Error: ", bad["error"]) and "no_such_model" in bad["error"]


def test_shapley_cost_is_timed_on_three_batches_and_scaled_to_the_split(monkeypatch):
    import bench.train

    session = perf.Session("late_fusion", "mosi", batch=32, steps=5, warmup=0, device_name="cpu")
    clock, seen = [0.0], []

    def fake_utilities(model, split, device, batch_size, utility, amp):  # 1 s per batch of 32
        seen.append(len(split.labels))
        clock[0] += -(-len(split.labels) // batch_size)

    monkeypatch.setattr(bench.train, "coalition_utilities", fake_utilities)
    monkeypatch.setattr(perf, "time", type("FakeTime", (), {"perf_counter": staticmethod(lambda: clock[0])}))
    assert session._shapley_ms(229) == 8 * 1000.0 and seen == [96]  # MOSI valid: 8 batches, 3 timed
    assert session._shapley_ms(40) == 2 * 1000.0 and seen[-1] == 40  # fewer than 3 batches: all of them


def test_fewer_than_five_steps_are_refused():
    with pytest.raises(ValueError, match="at least 5"):
        run_perf(["late_fusion"], steps=4, isolate=False)


# -- statistics on synthetic step times ----------------------------------------------------
@pytest.mark.parametrize("n,k,coverage", [
    (5, 1, 1 - 2 / 2**5),  # min and max: 93.75 %
    (6, 1, 1 - 2 / 2**6),  # k = 2 would be 1 - 2 * 7 / 64 = 78 %
    (10, 2, 1 - 2 * (1 + 10) / 2**10),  # k = 3 would be 89.1 %
    (20, 6, 1 - 2 * (1 + 20 + 190 + 1140 + 4845 + 15504) / 2**20),  # k = 7 would be 88.5 %
])
def test_median_interval_is_the_sign_test_interval(n, k, coverage):
    values = [10.0 + ((i * 7) % n) for i in range(n)]  # 10, 11, ..., n + 9 shuffled
    low, high, cov = median_interval(values)
    assert (low, high) == (10.0 + k - 1, 10.0 + n - k) and cov == pytest.approx(coverage)
    assert cov >= 0.90


def test_median_interval_covers_the_true_median_as_often_as_it_says():
    rng = random.Random(0)  # lognormal step ratios, true median exp(0.1)
    true_median, trials = 1.1051709180756477, 4000
    hits = 0
    for _ in range(trials):
        low, high, cov = median_interval([rng.lognormvariate(0.1, 0.05) for _ in range(5)])
        hits += low <= true_median <= high
    assert abs(hits / trials - cov) < 0.015  # 93.75 %, binomial s.e. 0.4 %


@pytest.mark.parametrize("low,high,target,expected", [
    (1.02, 1.12, 1.15, MET),
    (1.16, 1.30, 1.15, MISSED),
    (1.10, 1.20, 1.15, UNDECIDED),
    (1.05, 1.15, 1.15, UNDECIDED),  # the upper end must be below the target
    (1.15, 1.20, 1.15, UNDECIDED),  # and the lower end above it for a miss
    (0.90, 1.29, 1.30, MET),
])
def test_verdict_claims_only_what_the_interval_shows(low, high, target, expected):
    assert verdict(low, high, target) == expected


def test_each_model_step_is_paired_with_the_floor_steps_around_it():
    assert paired_ratios([300.0, 420.0], [100.0, 200.0, 300.0]) == [300.0 / 150.0, 420.0 / 250.0]
    with pytest.raises(ValueError, match="2 model steps need 3 floor steps"):
        paired_ratios([300.0, 420.0], [100.0, 200.0])


def test_a_drifting_floor_cancels_in_the_paired_ratio():
    floor = [8400.0, 9000.0, 10000.0, 9200.0, 9600.0, 8800.0]  # the machine's load moves 8.4-10.0 s
    model = [1.1 * (a + b) / 2 for a, b in itertools.pairwise(floor)]  # a model 10 % slower than the floor
    s = ratio_summary(model, floor, target=1.15)
    assert s["ratio_to_floor"] == pytest.approx(1.1) and s["ratio_high"] == pytest.approx(1.1)
    assert s["verdict"] == MET and s["ratio_confidence"] == pytest.approx(0.9375)
    # the same model against the floor's median alone would straddle the target
    assert max(model) / statistics.median(floor) > 1.15 > min(model) / statistics.median(floor)


def test_ratio_summary_verdict_from_the_interval():
    floor = [100.0] * 6
    noisy = [110.0, 125.0, 112.0, 108.0, 119.0]  # ratios 1.08-1.25, median 1.12
    s = ratio_summary(noisy, floor, target=1.15)
    assert (s["ratio_low"], s["ratio_to_floor"], s["ratio_high"]) == pytest.approx((1.08, 1.12, 1.25))
    assert s["verdict"] == UNDECIDED  # median below the target, interval not
    assert ratio_summary([120.0, 125.0, 118.0, 130.0, 121.0], floor, 1.15)["verdict"] == MISSED
    assert "verdict" not in ratio_summary(noisy, floor, target=None)  # no target (no BERT): no verdict


# -- interleaving, with fake sessions on a fake clock --------------------------------------
class FakeClock:
    """Step times per session name; every event in order."""

    def __init__(self, times: dict[str, list[float]], fail: dict[str, str] | None = None):
        self.times, self.fail, self.events = {k: iter(v) for k, v in times.items()}, fail or {}, []

    def session(self, name, dataset_shapes, batch, steps, warmup, device, amp=True):
        clock = self
        if self.fail.get(name) == "build":
            raise RuntimeError(f"{name} cannot be built")

        class Fake:
            def step(self):
                clock.events.append(name)
                if clock.fail.get(name) == "step":
                    raise RuntimeError(f"{name} died")
                return next(clock.times[name])

            def finish(self, step_ms):
                clock.events.append(f"{name}.finish")
                return {"model": name, **perf.step_stats(step_ms), "bert": True}

        return Fake()


def fake_run(monkeypatch, times, models, fail=None):
    clock = FakeClock(times, fail)
    monkeypatch.setattr(perf, "Session", clock.session)
    return run_perf(models, steps=5, isolate=False), clock.events


def test_every_model_step_lies_between_two_floor_steps(monkeypatch):
    floor = [100.0 * (i + 1) for i in range(12)]  # a floor that drifts from 100 to 1200 ms
    a = [1.5 * (f + g) / 2 for f, g in itertools.pairwise(floor[:6])]
    b = [1.2 * (f + g) / 2 for f, g in itertools.pairwise(floor[6:])]
    rows, events = fake_run(monkeypatch, {"floor": floor, "a": a, "b": b}, ["a", "b"])
    assert events == ["floor", "a"] * 5 + ["floor", "a.finish"] + ["floor", "b"] * 5 + ["floor", "b.finish",
                                                                                         "floor.finish"]
    fl, ra, rb = rows
    assert ra["ratios"] == pytest.approx([1.5] * 5) and rb["ratios"] == pytest.approx([1.2] * 5)
    assert ra["floor_ms"] == floor[:6] and rb["floor_ms"] == floor[6:]
    assert fl["model"] == "floor" and fl["step_ms"] == floor and fl["ratio_to_floor"] == 1.0
    assert ra["verdict"] == MISSED and rb["verdict"] == MET  # target 1.3 (a BERT model not in TARGETS)


def test_without_a_floor_only_the_models_steps_run(monkeypatch):
    clock = FakeClock({"a": [10.0] * 5})
    monkeypatch.setattr(perf, "Session", clock.session)
    rows = run_perf(["a"], steps=5, isolate=False, floor=False)
    assert clock.events == ["a"] * 5 + ["a.finish"] and "ratio_to_floor" not in rows[0]


def test_a_failing_model_is_a_row_and_the_run_goes_on(monkeypatch):
    rows, _ = fake_run(monkeypatch, {"floor": [100.0] * 12, "ok": [110.0] * 5},
                            ["bad", "dies", "ok"], fail={"bad": "build", "dies": "step"})
    fl, bad, dies, ok = rows
    assert bad == {"model": "bad", "error": "RuntimeError: bad cannot be built"}
    assert dies == {"model": "dies", "error": "RuntimeError: dies died"}
    assert ok["ratio_to_floor"] == pytest.approx(1.1)
    assert fl["step_ms"] == [100.0] * 6  # the floor step timed before "dies" died pairs with nothing


def test_a_failing_floor_is_named_in_the_model_rows(monkeypatch):
    rows, _ = fake_run(monkeypatch, {"a": [1.0] * 5}, ["a"], fail={"floor": "step"})
    fl, a = rows
    assert fl == {"model": "floor", "error": "RuntimeError: floor died"}
    assert a == {"model": "a", "error": "floor: RuntimeError: floor died"}


# -- check and report ----------------------------------------------------------------------
def row(model, verdict_, low, median, high, target=1.15, **extra):
    r = {"model": model, "bert": True, "ratio_to_floor": median, "ratio_low": low, "ratio_high": high,
         "ratio_confidence": 0.9375, "target": target, "verdict": verdict_, "step_ms_median": 1000.0,
         "step_ms_min": 900.0, "step_ms_max": 1100.0, "forward_ms_median": 300.0, "peak_memory_bytes": 2**31,
         "params": 1234, "steps": 5, "warmup": 1}
    return {**r, **extra}


ROWS = [row("floor", None, 1.0, 1.0, 1.0, target=None, steps=12),  # 2 models' floor steps
        row("bert_text", MET, 1.02, 1.05, 1.10),
        row("mag_bert", MISSED, 1.18, 1.22, 1.25), row("pase", UNDECIDED, 1.2, 1.28, 1.4, target=1.3),
        row("mult", None, 1.3, 1.4, 1.5, target=None, bert=False),
        {"model": "glomo", "error": "RuntimeError: boom"}, row("euar", None, 1.0, 1.05, 1.1, target=None)]
for r in ROWS:
    for key in [k for k, v in r.items() if v is None]:
        del r[key]


def test_check_fails_only_on_a_miss_or_a_model_not_compared():
    misses = check_targets(ROWS)
    assert [m.split(":")[0] for m in misses] == ["mag_bert", "glomo", "euar"]
    assert "1.22x floor (1.18–1.25, 93.75%)" in misses[0] and "not measured" in misses[1] and "no floor" in misses[2]
    assert [u.split(":")[0] for u in undecided(ROWS)] == ["pase"]


def test_report_has_command_date_machine_method_and_table():
    info = {"cpu": "AMD EPYC 7B13", "cpus": 2, "threads": 2, "torch": "2.13.0+cpu", "torch_cuda": None, "gpu": None,
            "malloc": "kept", "scan_kernel": "on"}
    text = format_report(ROWS, "python -m bench perf --models all --check", info, "2026-12-04 21:50 UTC", 1234.5,
                         "cpu.json")
    lines = text.splitlines()
    assert lines[0] == "# Training-step benchmark" and lines[5] == "python -m bench perf --models all --check"
    assert "2026-12-04 21:50 UTC" in text and "AMD EPYC 7B13 (2 CPUs), 2 torch threads, torch 2.13.0+cpu, malloc kept, scan kernel on." in text
    assert "1 warm-up step(s), then 5 timed steps" in text  # the models', not the floor's 12
    assert "`cpu.json`" in text and "93.75% coverage" in text and "Wall time: 1,234 s" in text
    table = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]] for ln in lines if ln.startswith("| ")}
    assert table["mag_bert"][2:6] == ["1.22", "1.18–1.25", "≤ 1.15", MISSED]
    assert table["pase"][5] == UNDECIDED and table["bert_text"][5] == MET and table["mult"][5] == "–"
    assert table["glomo"][0] == "error: RuntimeError: boom"


@pytest.mark.parametrize("rows,code", [(ROWS[:3], 1), (ROWS[:2] + ROWS[3:5], 0), (ROWS[:2], 0)])
def test_cli_check_exit_code_and_report_files(rows, code, tmp_path, monkeypatch, capsys):
    from bench.cli import main

    monkeypatch.delenv("MSABENCH_MALLOC", raising=False)
    monkeypatch.setattr(perf, "run_perf", lambda *a, **k: [dict(r) for r in rows])
    monkeypatch.setattr("sys.argv", ["python -m bench", "perf", "--models", "bert_text", "--check",
                                     "--markdown", str(tmp_path / "perf" / "cpu.md")])
    with pytest.raises(SystemExit) as exc:
        main(["perf", "--models", "bert_text", "--check", "--markdown", str(tmp_path / "perf" / "cpu.md")])
    assert exc.value.code == code, capsys.readouterr().err
    report = (tmp_path / "perf" / "cpu.md").read_text()
    assert f"python -m bench perf --models bert_text --check --markdown {tmp_path / 'perf' / 'cpu.md'}" in report
    raw = json.loads((tmp_path / "perf" / "cpu.json").read_text())  # written on a miss too
    assert [r["model"] for r in raw["rows"]] == [r["model"] for r in rows] and raw["machine"]["threads"] >= 1


def _report_under(env: dict[str, str], model: str, tmp_path, monkeypatch) -> tuple[Path, str]:
    """`bench perf --models MODEL --markdown` (timings faked) with only `env` of the timing settings set:
    the report's path and text."""
    from bench.cli import main

    for name in ("MSABENCH_MALLOC", "MSABENCH_SCAN_KERNEL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(perf, "run_perf", lambda *a, **k: [dict(r) for r in ROWS[:2]])
    out = tmp_path / "cpu.md"
    monkeypatch.setattr("sys.argv", ["python -m bench", "perf", "--models", model, "--markdown", str(out)])
    with pytest.raises(SystemExit) as exc:
        main(["perf", "--models", model, "--markdown", str(out)])
    assert exc.value.code == 0
    return out, out.read_text()


def test_a_report_timed_with_glibcs_own_malloc_says_so_in_its_command(tmp_path, monkeypatch):
    """MSABENCH_MALLOC=system changes the timings (bench.threads.keep_freed_memory): the report's
    regenerate command carries it, and its machine line names the setting."""
    from bench.threads import malloc_mode

    monkeypatch.setenv("MSABENCH_MALLOC", "system")
    if malloc_mode() != "system":
        pytest.skip("not glibc: there is no setting")
    out, text = _report_under({"MSABENCH_MALLOC": "system"}, "bert_text", tmp_path, monkeypatch)
    assert f"\nMSABENCH_MALLOC=system python -m bench perf --models bert_text --markdown {out}\n" in text
    assert ", malloc system, scan kernel on." in text and json.loads(out.with_suffix(".json").read_text())["machine"]["malloc"] == "system"


def test_a_report_timed_without_the_scan_kernel_says_so(tmp_path, monkeypatch):
    """MSABENCH_SCAN_KERNEL=off runs MSAmba's PyTorch scan: the report's command carries it, the machine line
    and the JSON name it; a misspelt value is an error naming the variable."""
    out, text = _report_under({"MSABENCH_SCAN_KERNEL": "off"}, "msamba", tmp_path, monkeypatch)
    assert f"\nMSABENCH_SCAN_KERNEL=off python -m bench perf --models msamba --markdown {out}\n" in text
    assert ", scan kernel off." in text and json.loads(out.with_suffix(".json").read_text())["machine"]["scan_kernel"] == "off"
    monkeypatch.setenv("MSABENCH_SCAN_KERNEL", "of")
    with pytest.raises(ValueError, match="MSABENCH_SCAN_KERNEL='of': expected 'on' or 'off'"):
        perf.machine()


def test_the_committed_report_folder_is_not_ignored_and_generated_reports_are():
    def ignored(path: str) -> bool:
        try:
            done = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT, check=False)
        except FileNotFoundError:
            pytest.skip("no git")
        if done.returncode == 128:
            pytest.skip("not a git checkout")
        return done.returncode == 0

    assert not ignored("reports/perf/cpu.md") and not ignored("reports/perf/cpu.json")
    assert ignored("reports/mosi.md") and ignored("reports/perf.json")


def test_machine_records_threads_cpu_and_torch_build():
    import torch

    from bench.perf import machine

    from bench.threads import malloc_mode

    m = machine()
    assert m["threads"] == torch.get_num_threads() and m["torch"] == torch.__version__ and m["cpu"]
    assert m["malloc"] == malloc_mode()


def test_models_are_measured_on_the_shapes_they_read():
    from bench.perf import shape_for
    from models.registry import resolve_config

    mag = shape_for(SHAPES["mosi"], resolve_config("mag_bert", "mosi"))  # aligned_50
    assert mag["audio"] == (50, 5) and mag["vision"] == (50, 20)
    mult = shape_for(SHAPES["mosei"], resolve_config("mult", "mosei"))
    assert mult["audio"] == (500, 74) and mult["vision"] == (500, 35)


def test_interleave_alone():
    order = []
    model_ms, floor_ms = interleave(lambda: order.append("M") or 2.0, lambda: order.append("F") or 1.0, 3)
    assert "".join(order) == "FMFMFMF" and model_ms == [2.0] * 3 and floor_ms == [1.0] * 4
