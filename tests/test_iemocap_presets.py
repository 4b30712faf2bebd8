"""IEMOCAP coverage (MulT protocol, 4 binary emotion heads): every built-in model either has an
IEMOCAP preset that builds and trains on generated MulT pickles (GloVe text; BERT models read
token ids through --glove), or declares IEMOCAP n/a with a reason."""

from __future__ import annotations

import json

import pytest

from models import list_models
from models.registry import get_model_entry, resolve_config
from tests.datagen import write_glove_iemocap

SIZES = (12, 8, 6)  # train / valid / test samples: one training step at batch size 16
BUILT_IN = [n for n in list_models() if get_model_entry(n).builder.__module__.startswith("models.")]
IEMOCAP_PRESETS = [(n, p) for n in BUILT_IN for d, p in get_model_entry(n).presets if d == "iemocap"]


@pytest.fixture(scope="module")
def iemocap(tmp_path_factory):
    """MulT's aligned and unaligned IEMOCAP pickles, their GloVe text from one GloVe file."""
    root = tmp_path_factory.mktemp("iemocap")
    for setting in ("aligned", "unaligned"):
        _, glove, _ = write_glove_iemocap(root, setting=setting, sizes=SIZES, seed=5)
    return root, glove


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_model_has_an_iemocap_preset_or_a_reason(name):
    entry = get_model_entry(name)
    presets = [p for d, p in entry.presets if d == "iemocap"]
    reason = entry.unsupported.get("iemocap", "")
    assert bool(presets) != bool(reason), f"{name}: IEMOCAP presets {presets}, n/a reason {reason!r} (need exactly one)"
    for preset in presets:
        cfg = resolve_config(name, "iemocap", preset)
        # audio 74 and vision 35 (MulT's COVAREP / Facet); text: 300-d GloVe or the BERT width
        assert (cfg.task, cfg.n_out, tuple(cfg.dims[1:])) == ("iemocap", 8, (74, 35)), f"{name} iemocap {preset}"


@pytest.mark.parametrize("name,preset", IEMOCAP_PRESETS)
def test_iemocap_preset_trains_a_step_on_generated_pickles(name, preset, iemocap, tmp_path):
    from bench import api

    root, glove = iemocap
    frame = api.run(name, datasets="iemocap", preset=preset, out=tmp_path, epochs=1, set={"batch_size": 16},
                    text_encoder="tiny", data_root=str(root), glove=str(glove), contributions=False,
                    robustness=False)
    assert list(frame["status"]) == ["ok"], frame.to_dict("records")
    res = json.loads(next(tmp_path.glob("iemocap/*/seed1111.json")).read_text())
    assert res["task"] == "iemocap" and res["config"]["model"]["n_out"] == 8
    assert res["config"]["model"]["setting"] == resolve_config(name, "iemocap", preset).setting
    assert {"Acc_Happy", "F1_Angry", "mean_acc"} <= set(res["metrics"]["test"])
