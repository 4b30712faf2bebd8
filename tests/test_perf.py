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
