"""`python -m bench check-model NAME` (issue 26, item 2): a built-in model passes every check;
two deliberately broken models, registered here under their own names for the test only,
each fail with exit 1 and a FAIL line naming the check and why."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from models import registry
from models.late_fusion import PRESETS, LateFusion, LateFusionConfig

ROOT = Path(__file__).resolve().parents[1]


def _cli(argv: list[str]) -> int:
    from bench.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    return exit_.value.code


class DeadParameter(LateFusion):
    """late_fusion with a layer that is built (and trainable) but never called."""

    def __init__(self, cfg: LateFusionConfig):
        super().__init__(cfg)
        self.dead = nn.Linear(4, 1)


class LeakyText(LateFusion):
    """late_fusion whose text encoding also reads the audio input, while it still claims to be
    separable (it implements encode/fuse)."""

    def encode(self, batch) -> dict[str, torch.Tensor]:
        reps = super().encode(batch)
        return {**reps, "t": reps["t"] + batch.audio.mean(dim=(1, 2)).unsqueeze(-1)}


@pytest.fixture
def broken_models():
    """Registers the two broken models under test-only names; removes them afterwards."""
    classes = {"check_test_dead_param": DeadParameter, "check_test_leaky_text": LeakyText}
    for name, cls in classes.items():
        registry.register_model(name, config=LateFusionConfig, presets=PRESETS, default_preset="mmsa")(cls)
    try:
        yield list(classes)
    finally:
        for name in classes:
            registry._REGISTRY.pop(name, None)


def _lines(out: str) -> dict[str, tuple[str, str]]:
    """check name -> (status, why) from the checklist."""
    return {m[2]: (m[1], m[3]) for m in re.finditer(r"^(PASS|FAIL|SKIP)  (\S+) +(.*)$", out, re.MULTILINE)}


def test_a_built_in_model_passes_every_check(capsys):
    from bench.checks import CHECKS

    assert _cli(["check-model", "late_fusion"]) == 0
    lines = _lines(capsys.readouterr().out)
    assert list(lines) == list(CHECKS)
    assert {status for status, _ in lines.values()} == {"PASS", "SKIP"}
    assert lines["stages"] == ("SKIP", "no stages declared: the model trains as one stage")
    assert lines["output-shapes"][1] == "regression (8, 1), iemocap (8, 8)"


def assert_the_guide_quotes_its_failures(out: str) -> None:
    """docs/your-model.md shows these failures: its FAIL lines are the command's, verbatim."""
    guide = (ROOT / "docs" / "your-model.md").read_text()
    for line in (x for x in out.splitlines() if x.startswith("FAIL")):
        assert line in guide, f"docs/your-model.md does not quote: {line}"


def test_a_parameter_without_gradient_fails(broken_models, capsys):
    assert _cli(["check-model", "check_test_dead_param"]) == 1
    out = capsys.readouterr().out
    assert_the_guide_quotes_its_failures(out)
    lines = _lines(out)
    assert lines["gradients"] == ("FAIL", "2 trainable parameter(s) receive no gradient: dead.weight, dead.bias "
                                          "(freeze them, or name them in `no_grad_params`)")
    assert [n for n, (status, _) in lines.items() if status == "FAIL"] == ["gradients"]


def test_a_non_separable_model_claiming_separability_fails(broken_models, capsys):
    assert _cli(["check-model", "check_test_leaky_text"]) == 1
    out = capsys.readouterr().out
    assert_the_guide_quotes_its_failures(out)
    lines = _lines(out)
    status, why = lines["separable"]
    assert status == "FAIL" and re.fullmatch(
        r"the 't' encoding changes by \S+ when a/v are masked: it reads another modality's input", why), why
    status, why = lines["masking"]  # masking audio moves the prediction through the text encoding too
    assert status == "FAIL" and re.fullmatch(
        r"masking 'a' also moves the output through another modality's encoding \(by \S+\)", why), why
    assert [n for n, (status, _) in lines.items() if status == "FAIL"] == ["separable", "masking"]


def test_a_model_that_does_not_build_fails_and_skips_the_rest(broken_models, monkeypatch, capsys):
    import dataclasses

    entry = registry.get_model_entry("check_test_dead_param")

    def builder(cfg):
        raise RuntimeError("no such layer")

    monkeypatch.setitem(registry._REGISTRY, "check_test_dead_param", dataclasses.replace(entry, builder=builder))
    assert _cli(["check-model", "check_test_dead_param"]) == 1
    lines = _lines(capsys.readouterr().out)
    assert lines["builds"][0] == "FAIL" and lines["builds"][1].startswith("raised RuntimeError: no such layer (")
    assert {lines[n] for n in list(lines)[1:]} == {("SKIP", "the model does not build")}
