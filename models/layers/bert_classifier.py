"""What the BERT fine-tuning baselines share (bert_text, MAG-BERT; Self-MM and GLoMo take the
preset table and the IEMOCAP note): `BertTextConfig` (text encoder fields and the task-loss
switch), `BertClassifier` (encoder, Dropout -> Linear head, loss, no-decay groups), and
bert_text's presets, which MAG-BERT's build on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel, task_loss
from models.layers.text_encoder import build_text_encoder, split_no_decay

LOSSES = {"regression": ("l1", "mse"), "iemocap": ("ce",)}
# IEMOCAP runs on token ids of the words recovered from MulT's GloVe vectors (bench.data.glove, --glove)
UNSUPPORTED: dict[str, str] = {}


@dataclass(kw_only=True)
class BertTextConfig(ModelConfig):
    text_input: str = "ids"  # MMSA `text_bert` token ids (input ids, mask, segment ids)
    setting: str = "aligned"  # harness decision: the same MMSA pickle as MAG-BERT (aligned_50)
    text_encoder: str = "bert-base-uncased"  # local dir | "bert-base" | "tiny" | cached hub name
    text_vocab_size: Optional[int] = None  # vocabulary of a named random-init config (tiny); checkpoints bring theirs
    head_dropout: float = 0.1  # Dropout before the classifier: BERT hidden_dropout_prob (MMSA BERT_MAG)
    loss: str = "l1"  # task loss: l1 (MMSA) | mse (MAG-BERT multimodal_driver.py) | ce (IEMOCAP, MulT protocol)


def check_loss(cfg: BertTextConfig) -> None:
    allowed = LOSSES[cfg.task]
    if cfg.loss not in allowed:
        raise ValueError(f"config key 'loss'='{cfg.loss}' is not valid for task '{cfg.task}' (expected one of {allowed})")


def bert_loss(pred: torch.Tensor, labels: torch.Tensor, cfg: BertTextConfig) -> torch.Tensor:
    """The configured task loss: MSE for the MAG-BERT paper preset, else `task_loss` (L1 / CE)."""
    if cfg.loss == "mse":
        return F.mse_loss(pred.reshape(-1).float(), labels.reshape(-1).float())
    return task_loss(pred, labels, cfg.task)


def no_decay_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups over every parameter: weight decay except on biases and LayerNorm
    (MAG-BERT `multimodal_driver.py`; with weight_decay 0 the split changes nothing)."""
    decay, no_decay = split_no_decay(model)
    return [
        {"name": "decay", "params": decay, "lr": lr, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0},
    ]


class BertClassifier(MSAModel):
    """What bert_text and MAG-BERT share: the text encoder, Dropout -> Linear(hidden -> n_out)
    initialised as BERT's own layers, the configured task loss, the no-decay groups."""

    cfg: BertTextConfig

    def __init__(self, cfg: BertTextConfig):
        super().__init__(cfg)
        check_loss(cfg)
        self.text = build_text_encoder(cfg.text_encoder, cfg.text_vocab_size)
        self.dropout = nn.Dropout(cfg.head_dropout)
        self.classifier = self.text.init_like_bert(nn.Linear(self.text.hidden_size, cfg.n_out))

    def loss(self, output: ModelOutput, batch) -> dict[str, torch.Tensor]:
        task = bert_loss(output.pred, batch.labels, self.cfg)
        return {"total": task, "task": task}

    def param_groups(self) -> list[dict[str, Any]]:
        return no_decay_groups(self, self.cfg.lr, self.cfg.weight_decay)


# -- presets (the optimiser rows are MAG-BERT's) ---------------------------------------
_MMSA_MOSI = BertTextConfig(
    dims=(768, 5, 20),  # MMSA MOSI dims; the text width comes from the encoder
    optimizer="adam", lr=2e-5, weight_decay=0.0,  # MMSA config_regression.json bert_mag mosi
    batch_size=32, loss="l1", early_stop_patience=8,  # bert_mag mosi; MMSA early_stop 8
)
_MMSA_MOSEI = replace(_MMSA_MOSI, dims=(768, 74, 35), lr=1e-5)  # bert_mag mosei
# `paper` (harness decision): MAG-BERT's own driver settings, so the text-only row can pair
# with MAG-BERT's `paper` preset too (multimodal_driver.py defaults)
_PAPER_MOSI = replace(
    _MMSA_MOSI,
    # transformers' AdamW (multimodal_driver.py:28, :345; its default eps 1e-6), wd 0.01 (0 on bias/LayerNorm)
    optimizer="adamw_hf", lr=1e-5, weight_decay=0.01,
    scheduler="linear_warmup", warmup_ratio=0.1,  # get_linear_schedule_with_warmup, 10 % warm-up
    batch_size=48, loss="mse", max_epochs=40,  # --train_batch_size 48, MSELoss, --n_epochs 40
    early_stop_patience=None, val_loss_decimals=None,  # best validation L1 of 40 epochs (harness decision)
)
_PAPER_MOSEI = replace(_PAPER_MOSI, dims=(768, 74, 35))
# IEMOCAP (harness decision): the MOSEI presets (MulT's file has MOSEI's audio/vision widths 74/35)
# with 4 x 2 logits and CE (MulT protocol); token ids of the words recovered from the GloVe vectors
_IEMOCAP = dict(task="iemocap", n_out=8, loss="ce")
# synthetic `demo` (harness decision): a random-init tiny BERT over the 2048-id synthetic
# vocabulary; lr 5e-4 because a random-init encoder learns from scratch (at 2e-4 the
# validation L1 is still falling after 3 epochs; 1e-5 barely moves it); 4 CPU epochs.
_DEMO = replace(
    _MMSA_MOSI, text_encoder="tiny", text_vocab_size=2048,
    lr=5e-4, batch_size=32, max_epochs=4, early_stop_patience=2,
)

def bert_preset_table(mmsa_mosi, mmsa_mosei, paper_mosi, paper_mosei, iemocap: dict, demo) -> dict:
    """The preset table of a BERT baseline: mmsa and paper for MOSI/MOSEI, IEMOCAP = each
    MOSEI preset with the `iemocap` changes, and the synthetic demo."""
    return {
        ("mosi", "mmsa"): mmsa_mosi,
        ("mosei", "mmsa"): mmsa_mosei,
        ("mosi", "paper"): paper_mosi,
        ("mosei", "paper"): paper_mosei,
        ("iemocap", "mmsa"): replace(mmsa_mosei, **iemocap),
        ("iemocap", "paper"): replace(paper_mosei, **iemocap),
        ("synthetic", "demo"): demo,
    }


PRESETS = bert_preset_table(_MMSA_MOSI, _MMSA_MOSEI, _PAPER_MOSI, _PAPER_MOSEI, _IEMOCAP, _DEMO)
