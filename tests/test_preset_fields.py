"""Presets built from another model's presets copy only what they mean to (issue #23 item 0)."""

import dataclasses

import pytest

from models.layers.bert_classifier import PRESETS as TEXT_PRESETS
from models.layers.bert_classifier import BertTextConfig
from models.mag_bert import FROM_TEXT_PRESET, MAGBertConfig
from models.registry import get_model_entry, list_models, resolve_config


def _defaults(cls: type) -> dict:
    return {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}


def _registered_parent(config_cls: type) -> type | None:
    """The nearest base class of `config_cls` that is another registered model's config."""
    others = {get_model_entry(n).config_cls for n in list_models()} - {config_cls}
    return next((b for b in config_cls.__mro__[1:] if b in others), None)


def _redeclared(config_cls: type, parent: type) -> dict:
    """Fields whose default `config_cls` changes from `parent`'s: a decision of the subclass."""
    own, base = _defaults(config_cls), _defaults(parent)
    return {k: v for k, v in own.items() if k in base and base[k] != v}


DERIVED = [n for n in list_models() if _registered_parent(get_model_entry(n).config_cls)]


def test_derived_models_found():
    assert "mag_bert" in DERIVED  # the check below covers at least the model that had the bug


@pytest.mark.parametrize("name", DERIVED)
def test_derived_presets_keep_the_subclass_defaults(name):
    """A preset built from a parent model's preset keeps every default its own config changes."""
    entry = get_model_entry(name)
    changed = _redeclared(entry.config_cls, _registered_parent(entry.config_cls))
    for key, cfg in entry.presets.items():
        kept = {k: getattr(cfg, k) for k in changed}
        assert kept == changed, f"{name} preset {key}: copied a parent's value over the model's own default"


def test_mag_copies_exactly_what_the_text_presets_set():
    base = _defaults(BertTextConfig)
    set_by_text = {k for cfg in TEXT_PRESETS.values() for k in base if getattr(cfg, k) != base[k]}
    assert set_by_text <= set(FROM_TEXT_PRESET), "a bert_text preset value MAG-BERT would not receive"
    assert set(FROM_TEXT_PRESET) <= set(base), "FROM_TEXT_PRESET names a field bert_text lacks"
    assert not set(FROM_TEXT_PRESET) & set(_redeclared(MAGBertConfig, BertTextConfig))
    mag = get_model_entry("mag_bert").presets
    for key, text_cfg in TEXT_PRESETS.items():
        copied = {k: getattr(mag[key], k) for k in FROM_TEXT_PRESET}
        assert copied == {k: getattr(text_cfg, k) for k in FROM_TEXT_PRESET}, key


@pytest.mark.parametrize("preset", ["mmsa", "paper"])
@pytest.mark.parametrize("dataset", ["mosi", "mosei"])
def test_mag_bert_reads_widths_from_the_file(dataset, preset):
    assert resolve_config("mag_bert", dataset, preset).dims_from_data is True
