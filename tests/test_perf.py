"""The perf benchmark's mechanics (timings themselves are measured by `bench perf`, not tested)."""

import json

from bench.perf import SHAPES, format_table, random_batch, run_perf, write_json


def test_random_batch_has_the_real_shapes():
    b = random_batch(SHAPES["mosi"], 3, "regression")
    assert b.audio.shape == (3, 375, 5) and b.vision.shape == (3, 500, 20) and b.text_ids.shape == (3, 50)
    assert b.text_feats.shape == (3, 50, 768) and (b.text_ids[:, 0] == 101).all()
    assert random_batch(SHAPES["iemocap"], 2, "iemocap").labels.shape == (2, 4)


def test_run_perf_rows_table_and_json(tmp_path):
    rows = run_perf(["late_fusion", "no_such_model"], "mosi", batch=4, steps=1, warmup=0, device="cpu",
                    floor=False, isolate=False, log=lambda s: None)
    ok, bad = rows
    assert ok["model"] == "late_fusion" and ok["params"] == 27_254 and ok["step_ms_median"] > 0
    assert 0 < ok["contributions_share"] < 1 and ok["peak_memory_bytes"] > 0
    assert "error" in bad and "no_such_model" in bad["error"]  # failure is a row, not a crash
    table = format_table(rows)
    assert "late_fusion" in table and "error" in table
    write_json(rows, str(tmp_path / "perf.json"))
    assert json.loads((tmp_path / "perf.json").read_text())["rows"][0]["model"] == "late_fusion"


def test_floor_is_interleaved_and_each_ratio_uses_the_floors_around_it(monkeypatch):
    import bench.perf as perf

    order, clock = [], iter([100.0, 300.0, 200.0, 420.0, 300.0])  # floor 100, a 300, floor 200, b 420, floor 300

    def fake(name, *a, **k):
        order.append(name)
        ms = next(clock)
        return {"model": name, "step_ms_median": ms, "step_ms_min": ms, "step_ms_max": ms, "forward_ms_median": 1.0,
                "epoch_ms_est": 1.0, "peak_memory_bytes": 1, "params": 1, "bert": True}

    monkeypatch.setattr(perf, "measure", fake)
    rows = run_perf(["a", "b"], "mosi", steps=1, warmup=0, device="cpu", isolate=False, log=lambda s: None)
    assert order == ["floor", "a", "floor", "b", "floor"]
    floor, a, b = rows
    assert floor["step_ms_median"] == 200.0 and floor["floor_runs"] == [100.0, 200.0, 300.0]
    assert a["ratio_to_floor"] == 300.0 / 150.0 and b["ratio_to_floor"] == 420.0 / 250.0


def test_check_flags_models_above_their_target():
    from bench.perf import check_targets

    rows = [{"model": "floor", "ratio_to_floor": 1.0, "bert": True},
            {"model": "bert_text", "ratio_to_floor": 1.10, "bert": True},
            {"model": "mag_bert", "ratio_to_floor": 1.20, "bert": True},  # target 1.15
            {"model": "pase", "ratio_to_floor": 1.29, "bert": True},  # default 1.3
            {"model": "mult", "ratio_to_floor": 1.9, "bert": False},  # no BERT: no target
            {"model": "glomo", "error": "RuntimeError: boom"}]
    misses = check_targets(rows)
    assert len(misses) == 2 and misses[0].startswith("mag_bert: 1.20x") and "glomo: not measured" in misses[1]


def test_machine_records_threads_cpu_and_torch_build():
    import torch

    from bench.perf import machine

    m = machine()
    assert m["threads"] == torch.get_num_threads() and m["torch"] == torch.__version__ and m["cpu"]


def test_models_are_measured_on_the_shapes_they_read():
    from bench.perf import shape_for
    from models.registry import resolve_config

    mag = shape_for(SHAPES["mosi"], resolve_config("mag_bert", "mosi"))  # aligned_50
    assert mag["audio"] == (50, 5) and mag["vision"] == (50, 20)
    mult = shape_for(SHAPES["mosei"], resolve_config("mult", "mosei"))
    assert mult["audio"] == (500, 74) and mult["vision"] == (500, 35)
