"""The CUDA path, proven without a GPU where it can be (issue: speed, part 2, item 4).

Every registered model takes one training step and one evaluation under
`torch.autocast("cpu", dtype=torch.bfloat16)` — the dtype behaviour of the trainer's CUDA
bf16 path — with finite losses; the parts the specs keep in full precision are checked; and
an audit counts host transfers (`.item()`, `.cpu()`, `.tolist()`, `.numpy()`, `float(t)`,
`bool(t)`) made by model code (files under models/) inside forward and loss.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest
import torch

from bench.checks import check_bf16_autocast
from conftest import assert_passes
from models import create_model, list_models

MODELS_DIR = str(Path(__file__).resolve().parents[1] / "models")
# file:function -> why its host transfer is required or harmless (PaSE's CAL reads K' through
# nonzero(), which the audit does not see; the trainer's one loss.item() per batch is the NaN check)
ALLOWED_SYNCS: dict[str, str] = {
    "transformer.py:dropout_keep": "CPU-only path: seeds numpy from torch's CPU generator (CUDA uses F.dropout)",
    "transformer.py:blocked_attention_with_dropout": "CPU-only path, same seed draw (CUDA uses SDPA)",
    "text_encoder.py:cls": "the batch's last attended column, to drop all-padding columns (a shape: host-side)",
    "protocol.py:last_attended": "the same last attended column, for the callers' padding trims (a shape: host-side)",
    "euar.py:_text_states": "the same padding trim before BERT (exact; `trim_padding=False` removes it)",
    "blocks.py:pack": "every packed LSTM (Self-MM, MCL-MCF, MISA, MMIM, TFN's packed_text): pack_padded_sequence takes "
                      "CPU lengths (torch API), as MMSA's LSTMs",
}


def _bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


@pytest.fixture(scope="module")
def batch(synthetic):
    return synthetic.train.take(torch.arange(8))


@pytest.mark.parametrize("name", list_models())
def test_train_step_and_eval_under_bf16_autocast(name, subject):
    assert_passes(check_bf16_autocast(subject(name)))


def test_pase_keeps_prototypes_pcl_and_cal_in_full_precision(batch, monkeypatch):
    import models.pase as pase_mod

    torch.manual_seed(0)
    model = create_model("pase", "synthetic")
    model.phase = 2  # CAL is on in phase 2
    model.train()
    costs = []
    real_plan = pase_mod.ot_plan
    monkeypatch.setattr(pase_mod, "ot_plan", lambda c, *a: costs.append(c.dtype) or real_plan(c, *a))
    for _ in range(3):  # prototypes are initialised by the first batches
        with _bf16():
            out = model(batch)
            parts = model.loss(out, batch)
    assert costs and set(costs) == {torch.float64}  # CAL's OT in float64
    assert parts["intra"].dtype == torch.float32 and parts["intra"] > 0  # PCL in float32, not bf16
    assert all(b.protos.dtype == torch.float32 for b in model.banks.values())


class _SyncAudit:
    """Counts host transfers whose direct caller is model code."""

    METHODS = ("item", "cpu", "tolist", "numpy", "__float__", "__int__", "__bool__")

    def __init__(self):
        self.calls: list[str] = []

    @contextlib.contextmanager
    def watching(self):
        saved = {m: getattr(torch.Tensor, m) for m in self.METHODS}

        def wrap(method, real):
            def spy(t, *a, **k):
                caller = sys._getframe(1)
                if caller.f_code.co_filename.startswith(MODELS_DIR):
                    self.calls.append(f"{Path(caller.f_code.co_filename).name}:{caller.f_code.co_name}"
                                      f":{caller.f_lineno} .{method}")
                return real(t, *a, **k)
            return spy

        for m, real in saved.items():
            setattr(torch.Tensor, m, wrap(m, real))
        try:
            yield self
        finally:
            for m, real in saved.items():
                setattr(torch.Tensor, m, real)


@pytest.mark.parametrize("name", list_models())
def test_no_host_sync_in_model_forward_or_loss(name, batch):
    torch.manual_seed(0)
    model = create_model(name, "synthetic")
    model.stage = model.stages()[-1].name if model.stages() else None
    model.train()
    with model_warm(model, batch):
        pass
    audit = _SyncAudit()
    with audit.watching():
        out = model(batch)
        model.loss(out, batch)
    calls = [c for c in audit.calls if ":".join(c.split(":")[:2]) not in ALLOWED_SYNCS]
    assert not calls, f"{name} moves tensors to the host per batch: {calls[:5]}"


@contextlib.contextmanager
def model_warm(model, batch):
    """One step first, so state built on the first batch (prototypes, label memories) exists."""
    out = model(batch)
    model.loss(out, batch)
    yield
