"""Sweeps and result files: schema, resume, force, failures recorded, atomic writes."""

import json

import numpy as np
import pytest

from bench.config import RunConfig, parse_seeds, parse_set, variant_name
from bench.metrics import compute_metrics
from bench.results import OK_FIELDS, REQUIRED_FIELDS, SCHEMA_VERSION, is_complete, load_result, write_json_atomic
from bench.runner import run_sweep


def _runs(tmp_path, model="late_fusion", seeds=(1111,), **kw):
    return [RunConfig(model=model, seed=s, out_dir=str(tmp_path), epochs=kw.pop("epochs", 2), **kw) for s in seeds]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    summary = run_sweep(_runs(out, seeds=(1111, 1112)))
    assert len(summary.ok) == 2 and not summary.failed
    return out


def test_result_file_has_every_schema_field(finished):
    rec = load_result(finished / "synthetic" / "late_fusion" / "seed1111.json")
    for key in REQUIRED_FIELDS + OK_FIELDS:
        assert key in rec, key
    assert rec["schema_version"] == SCHEMA_VERSION and rec["status"] == "ok"
    assert rec["selected_on"] == "valid" and rec["preset"] == "demo"
    assert rec["config"]["model"]["max_epochs"] == 2 and rec["config"]["run"]["seed"] == 1111
    assert {"python", "torch", "transformers", "msabench"} <= set(rec["versions"])
    assert rec["params"]["total"] > 0 and rec["time"]["train_s"] > 0 and rec["peak_memory_bytes"] > 0
    assert all("contributions" in h for h in rec["history"])
    assert len(rec["predictions"]["ids"]) == len(rec["predictions"]["preds"]) == 686


def test_metrics_equal_recomputed_from_stored_predictions(finished):
    rec = load_result(finished / "synthetic" / "late_fusion" / "seed1112.json")
    p = rec["predictions"]
    recomputed = compute_metrics(rec["task"], np.array(p["preds"]), np.array(p["labels"]))
    for key, value in recomputed.items():
        assert rec["metrics"]["test"][key] == pytest.approx(value, abs=1e-12), key


def test_finished_runs_are_skipped_and_force_reruns(finished, caplog):
    caplog.set_level("INFO", logger="bench")
    path = finished / "synthetic" / "late_fusion" / "seed1111.json"
    before = path.read_text()
    s = run_sweep(_runs(finished))
    assert s.skipped == ["synthetic/late_fusion/seed1111"] and not s.ok
    assert path.read_text() == before and any("skip" in line for line in caplog.messages)
    caplog.clear()
    run_sweep(_runs(finished, epochs=3))  # a finished run with another config
    assert any("different max_epochs" in line and "--variant" in line for line in caplog.messages), caplog.messages
    s = run_sweep(_runs(finished), force=True)
    assert s.ok == ["synthetic/late_fusion/seed1111"]
    assert json.loads(path.read_text())["date"] >= json.loads(before)["date"]


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    import bench.runner as runner

    real = runner.execute_run

    def flaky(p, *a, **k):
        if p.run.seed == 1111:
            raise RuntimeError("boom in run 1111")
        return real(p, *a, **k)

    monkeypatch.setattr(runner, "execute_run", flaky)
    s = run_sweep(_runs(tmp_path, seeds=(1111, 1112), epochs=1))
    assert [f[0] for f in s.failed] == ["synthetic/late_fusion/seed1111"] and len(s.ok) == 1
    err = load_result(tmp_path / "synthetic" / "late_fusion" / "seed1111.json")
    assert err["status"] == "error" and err["error"]["message"] == "boom in run 1111"
    assert not is_complete(tmp_path / "synthetic" / "late_fusion" / "seed1111.json")
    # a rerun retries the failed run only
    monkeypatch.setattr(runner, "execute_run", real)
    s = run_sweep(_runs(tmp_path, seeds=(1111, 1112), epochs=1))
    assert s.ok == ["synthetic/late_fusion/seed1111"] and s.skipped == ["synthetic/late_fusion/seed1112"]


def test_variants_get_their_own_folder(tmp_path):
    run = RunConfig(model="late_fusion", overrides={"hidden": 8}, out_dir=str(tmp_path))
    assert run.result_path() == tmp_path / "synthetic" / "late_fusion+hidden=8" / "seed1111.json"
    assert variant_name("pase", {"use_sgm": False}) == "pase+no_sgm"
    assert variant_name("pase", {"use_sgm": False, "use_cal": False}) == "pase+no_cal+no_sgm"
    # an explicit --setting is part of the name: aligned and unaligned results never collide
    assert RunConfig(model="mult", setting="aligned").run_name == "mult+aligned"
    assert RunConfig(model="mult", setting="aligned", variant="mine").run_name == "mine"


def test_unknown_override_fails_before_training(tmp_path):
    with pytest.raises(KeyError, match="unknown config key"):
        run_sweep([RunConfig(model="late_fusion", overrides={"hiden": 8}, out_dir=str(tmp_path))])
    assert not any(tmp_path.rglob("*.json"))


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "a" / "seed1.json"
    write_json_atomic(path, {"x": 1})

    class Boom:
        def __repr__(self):
            raise RuntimeError("serialisation fails midway")

    with pytest.raises(TypeError):
        write_json_atomic(path, {"x": 2, "y": Boom()})
    assert json.loads(path.read_text()) == {"x": 1}
    assert [p.name for p in path.parent.iterdir()] == ["seed1.json"]


def test_parse_helpers():
    assert parse_seeds("1111-1113,1120") == [1111, 1112, 1113, 1120]
    assert parse_set(["use_sgm=false", "lr=1e-4", "dims=[1,2,3]", "text_encoder=/x/y"]) == {
        "use_sgm": False, "lr": 1e-4, "dims": (1, 2, 3), "text_encoder": "/x/y"}
    with pytest.raises(ValueError):
        parse_set(["novalue"])
