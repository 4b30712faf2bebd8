"""The registry: one front door for models."""

import dataclasses
from pathlib import Path

import pytest

from bench.checks import check_builds
from conftest import assert_passes
from models import create_model, list_models
from models.base import ModelConfig, MSAModel
from models.registry import get_model_entry, register_model, resolve_config


def test_list_models_with_wildcards():
    assert {"mult", "late_fusion"} <= set(list_models())
    assert list_models("mu*") == ["mult"]
    assert "late_fusion" in list_models("*fusion")
    assert list_models("nothing*") == []


def test_unknown_model_suggests():
    with pytest.raises(KeyError, match="did you mean 'mult'"):
        create_model("mlut")


def test_duplicate_name_raises_naming_both_places():
    entry = get_model_entry("mult")
    again = lambda cfg: None  # noqa: E731
    first = f"{entry.builder.__code__.co_filename}:{entry.builder.__code__.co_firstlineno}"
    with pytest.raises(ValueError, match="registered twice") as err:
        register_model("mult", config=entry.config_cls, presets={})(again)
    assert f"first at {first}, again at {__file__}:{again.__code__.co_firstlineno}" in str(err.value)
    assert first.startswith(str(Path(__file__).parents[1] / "models" / "mult.py"))


def test_none_overrides_are_ignored_and_real_ones_apply():
    base = resolve_config("mult", "mosi", "mmsa")
    same = resolve_config("mult", "mosi", "mmsa", lr=None, d=None)
    assert same == base
    changed = resolve_config("mult", "mosi", "mmsa", lr=1e-4)
    assert changed.lr == 1e-4 and changed.d == base.d


def test_unknown_config_key_is_an_error_with_suggestion():
    with pytest.raises(KeyError, match="did you mean 'lr'"):
        resolve_config("mult", "mosi", None, lrr=1e-4)


def test_preset_resolution():
    assert resolve_config("mult", "mosi").preset == "mmsa"  # the default
    assert resolve_config("mult", "iemocap").preset == "paper"  # the only one
    assert resolve_config("mult", "synthetic").preset == "demo"  # CPU-sized demo on synthetic
    with pytest.raises(ValueError, match="no 'mmsa' preset for 'iemocap'"):
        resolve_config("mult", "iemocap", "mmsa")
    assert resolve_config("mult", "sims").preset == "mmsa"  # MMSA config_regression.json mult sims
    with pytest.raises(ValueError, match="no preset for dataset 'meld'"):
        resolve_config("mult", "meld")


@pytest.mark.parametrize("name", list_models())
def test_presets_are_config_dataclasses(name):
    entry = get_model_entry(name)
    assert dataclasses.is_dataclass(entry.config_cls) and issubclass(entry.config_cls, ModelConfig)
    assert ("synthetic", entry.resolve_preset("synthetic", None)) in entry.presets
    for (dataset, preset), cfg in entry.presets.items():
        assert isinstance(cfg, entry.config_cls), (dataset, preset)
        assert cfg.task in ("regression", "iemocap")
        assert cfg.n_out == (8 if cfg.task == "iemocap" else 1)


@pytest.mark.parametrize("name", list_models())
def test_builds_an_msamodel(name, subject):
    assert_passes(check_builds(subject(name)))
    model = create_model(name, "synthetic")
    assert isinstance(model, MSAModel) and model.cfg.dataset == "synthetic"


# -- the catalog `bench ls` reads (bench/catalog.json) ------------------------------------
def test_catalog_is_current_and_its_counts_are_real_builds():
    """The committed catalog matches the sources, and every count equals a fresh meta-device build
    (a stale catalog fails here: `python -m bench ls --write-catalog` rebuilds it)."""
    from bench.catalog import build_catalog, load_catalog, parameter_count

    committed = load_catalog()
    assert committed is not None, "bench/catalog.json is stale: run `python -m bench ls --write-catalog`"
    assert committed == build_catalog(parameter_count)


def test_catalog_goes_stale_when_a_model_source_changes(tmp_path, monkeypatch):
    import json
    import shutil

    from bench import catalog

    for name in catalog.source_files():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(catalog._root() / name, tmp_path / name)
    monkeypatch.setattr(catalog, "_root", lambda: tmp_path)
    files = catalog.source_files()
    written = {**json.loads(catalog.CATALOG_PATH.read_text()), "sources": files, "fingerprint": catalog.fingerprint(files)}
    (tmp_path / "catalog.json").write_text(json.dumps(written))
    assert catalog.load_catalog(tmp_path / "catalog.json") is not None
    (tmp_path / "models" / "my_model.py").write_text("# a new model file\n")
    assert catalog.load_catalog(tmp_path / "catalog.json") is None
    (tmp_path / "models" / "my_model.py").unlink()
    with open(tmp_path / "models" / "layers" / "transformer.py", "a") as f:
        f.write("# an edit\n")
    assert catalog.load_catalog(tmp_path / "catalog.json") is None


def test_catalog_lists_an_unsupported_dataset_only_as_na(monkeypatch):
    from bench.catalog import build_catalog, catalog_model

    # a dataset with presets that is declared unsupported (no registered model has one now)
    real = get_model_entry("bert_text")
    marked = dataclasses.replace(real, unsupported={"iemocap": "a reason"})
    monkeypatch.setattr("models.registry.get_model_entry", lambda name: marked if name == "bert_text" else real)
    listed = catalog_model("bert_text", None)
    assert "iemocap" in real.datasets() and "mosei" in listed["presets"]
    assert "iemocap" not in listed["presets"] and listed["unsupported"] == {"iemocap": "a reason"}
    monkeypatch.undo()
    catalog = build_catalog(None)
    for name in list_models():
        entry = get_model_entry(name)
        listed = catalog["models"][name]
        assert set(listed["presets"]) == set(entry.datasets()) - set(entry.unsupported), name
        assert listed["unsupported"] == entry.unsupported, name


# -- model metadata (display name, paper, reference, family, order, row labels) -------------------
def test_metadata_defaults_and_checks(monkeypatch):
    from models import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # restored after the test
    cfg = get_model_entry("late_fusion").config_cls
    register_model("tmp_bare", config=cfg, presets={})(lambda c: None)
    entry = get_model_entry("tmp_bare")
    assert (entry.display_name, entry.order, entry.row_labels, entry.paper) == ("tmp_bare", registry.DEFAULT_ORDER, {}, "")
    with pytest.raises(ValueError, match="'tmp_family': family 'cnn' is not one of"):
        register_model("tmp_family", config=cfg, presets={}, family="cnn")(lambda c: None)
    with pytest.raises(ValueError, match="'tmp_label'.*'vocab_sise' \\(did you mean 'vocab_size'"):
        register_model("tmp_label", config=cfg, presets={}, row_labels={"vocab_sise": "x"})(lambda c: None)


def test_every_model_declares_its_metadata():
    """One family each; a paper unless a harness baseline; a distinct table position, the
    proposed model (PaSE) last and the harness's own rows first."""
    from models.registry import DEFAULT_ORDER, FAMILIES

    entries = [get_model_entry(n) for n in list_models()]
    for e in entries:
        assert e.family in FAMILIES and bool(e.paper) == (e.family != "harness baseline"), e.name
        assert e.order != DEFAULT_ORDER and e.display_name, e.name
    ranked = sorted(entries, key=lambda e: e.order)
    assert len({e.order for e in entries}) == len(entries) and ranked[-1].name == "pase"
    assert {e.family for e in ranked[:2]} == {"harness baseline"}


def test_ls_shows_each_model_s_metadata_from_the_catalog():
    from bench.catalog import load_catalog
    from bench.cli.ls import model_text

    catalog = load_catalog()
    assert catalog is not None, "bench/catalog.json is stale: run `python -m bench ls --write-catalog`"
    for name in list_models():
        entry, text = get_model_entry(name), model_text(catalog["models"][name])
        assert f"table row '{entry.display_name}'" in text and entry.family in text and entry.reference in text
        assert entry.paper in text  # in the description or added
