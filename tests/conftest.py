"""Shared fixtures. Tests use the embedded synthetic data (or slices of it) and tmp dirs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(min(2, torch.get_num_threads()))
# plugin packages installed beside msabench (CI installs examples/msabench-example) stay out of the
# registry-wide tests, here and in the commands tests start; tests/test_plugins.py turns them on
os.environ["MSABENCH_DISABLE_ENTRY_POINTS"] = "1"
# the tests' sweeps are tiny: one after another in-process, where starting --jobs workers would cost
# more than it saves (the default, --jobs auto, has its own tests in tests/test_threads.py)
os.environ["MSABENCH_JOBS"] = "1"
# every built-in model registered now (the registry loads them on first read): tests that copy
# the registry to restore it later copy a complete one
__import__("models.registry").registry.list_models()


@pytest.fixture(scope="session")
def synthetic():
    from bench.data import load_dataset

    return load_dataset("synthetic")


@pytest.fixture(scope="session")
def subject(synthetic):
    """The protocol checks' (bench/checks.py) subject for a model name: a few synthetic samples.
    One per name for the session, so the training steps several checks read are taken once."""
    import functools

    from bench.checks import Subject

    return functools.cache(lambda name: Subject.on(name, synthetic))


def assert_passes(result) -> None:
    """A bench.checks Result did not fail (its reason is the assertion message)."""
    assert result.ok, result.why


def slice_data(data, n_train: int = 96, n_valid: int = 48, n_test: int = 48):
    """A small MSAData made of the first samples of each split (fast trainer tests)."""
    from bench.data.base import MSAData

    return MSAData(
        data.info,
        data.train.subset(torch.arange(n_train)),
        data.valid.subset(torch.arange(n_valid)),
        data.test.subset(torch.arange(n_test)),
    )


@pytest.fixture(scope="session")
def small_synthetic(synthetic):
    return slice_data(synthetic)


def train_demo(model, data, sizes: tuple[int, int, int], key: str = "total") -> dict:
    """Train `model` (a demo preset; its max_epochs set, no early stop) on the first `sizes`
    samples of `data` through the harness trainer, assert that it ran every epoch and that the
    training loss `key` went down, and return the result dict for the model's own checks."""
    from bench.train import train_and_test

    res = train_and_test(model, slice_data(data, *sizes), seed=1111, device=torch.device("cpu"),
                         contributions=False, robustness=False)
    losses = [r["train"][key] for r in res["history"]]
    assert len(losses) == model.cfg.max_epochs and losses[-1] < losses[0], losses
    return res
