"""EF-LSTM: early fusion with an LSTM (Williams et al., 2018; MMSA's baseline).

Source: thuiar/MMSA 2.2.1 `models/singleTask/EF_LSTM.py`, `trains/singleTask/EF_LSTM.py` and
`config/config_regression.json` ("mmsa" preset, the default). The three word-aligned feature
sequences are concatenated per step (MMSA's AMIO first average-pools them to the text length
when they differ: SIMS), BatchNorm1d over the *time steps* (channels = the sequence length),
a stacked LSTM over every step, padding included; its last layer's final hidden state ->
dropout -> ReLU linear -> dropout -> linear.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel
from models.layers.mmsa_align import align_to_text
from models.registry import choice, register_model


@dataclass(kw_only=True)
class EFLSTMConfig(ModelConfig):
    hidden: int = 128  # hidden_dims (MMSA mosi)
    num_layers: int = 4
    dropout: float = 0.5  # between LSTM layers and twice in the head
    seq_len: int = 50  # BatchNorm1d channels: the aligned (text) length, MMSA seq_lens after AMIO


class EFLSTM(MSAModel):
    cfg: EFLSTMConfig

    def __init__(self, cfg: EFLSTMConfig):
        super().__init__(cfg)
        self.norm = nn.BatchNorm1d(cfg.seq_len)
        self.lstm = nn.LSTM(sum(cfg.dims), cfg.hidden, num_layers=cfg.num_layers, dropout=cfg.dropout,
                            batch_first=True)
        self.dropout = nn.Dropout(cfg.dropout)
        self.linear = nn.Linear(cfg.hidden, cfg.hidden)
        self.out = nn.Linear(cfg.hidden, cfg.n_out)

    def forward(self, batch) -> ModelOutput:
        x = torch.cat(align_to_text(batch.text_feats, batch.audio, batch.vision), dim=-1)
        if x.size(1) != self.cfg.seq_len:
            raise ValueError(f"ef_lstm: the batch's text has {x.size(1)} steps but seq_len={self.cfg.seq_len} "
                             f"(BatchNorm over time steps needs the text length; --set seq_len={x.size(1)})")
        _, (h_n, _) = self.lstm(self.norm(x))
        h = h_n[-1]
        x = self.dropout(F.relu(self.linear(self.dropout(h))))
        return ModelOutput(pred=self.out(x), features={"f": h})

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        raise NotImplementedError("ef_lstm has no modality branch: early fusion, every parameter reads all three "
                                  "modalities (no per-modality gradient scaling)")


# -- presets ------------------------------------------------
_MMSA_MOSI = EFLSTMConfig(
    dims=(768, 5, 20), setting="aligned", seq_len=50,  # MMSA mosi aligned_50 (need_data_aligned), `text` features
    hidden=128, num_layers=4, dropout=0.5,  # MMSA config_regression.json ef_lstm mosi
    optimizer="adam", lr=1e-3, weight_decay=5e-3,  # torch Adam(weight_decay) (trains/singleTask/EF_LSTM.py:20)
    batch_size=32,
    max_epochs=200, early_stop_patience=8,  # early_stop 8; the 200-epoch cap is a harness decision
)
_MMSA_MOSEI = replace(
    _MMSA_MOSI, dims=(768, 74, 35),  # MMSA mosei aligned_50
    hidden=256, num_layers=2, dropout=0.4, batch_size=128, lr=5e-3, weight_decay=1e-4,  # MMSA mosei
)
_MMSA_SIMS = replace(
    _MMSA_MOSI, dims=(768, 33, 709), setting="unaligned", seq_len=39,  # SIMS unaligned_39 only: AMIO pools to 39
    hidden=32, num_layers=3, dropout=0.5, batch_size=128, lr=5e-4, weight_decay=1e-3,  # MMSA sims
)
# CH-SIMS v2 (harness decision: MMSA 2.2.1 has no simsv2 entry): the SIMS preset, ch-simsv2s.pkl's widths
# and text length
_SIMSV2 = replace(_MMSA_SIMS, dims=(768, 25, 177), seq_len=50)
# IEMOCAP (harness decision: MMSA 2.2.1 has no IEMOCAP entry): the MOSEI preset on MulT's aligned pickle (20 steps), GloVe text,
# the MulT protocol's 4 binary emotion heads (8 logits, cross-entropy)
_IEMOCAP = replace(_MMSA_MOSEI, task="iemocap", n_out=8, dims=(300, 74, 35), seq_len=20)
# synthetic "demo" (harness decision): a narrower, shallower LSTM so a CPU epoch takes seconds
_DEMO = replace(_MMSA_MOSI, hidden=32, num_layers=2, max_epochs=5, early_stop_patience=2)

PRESETS = {
    ("mosi", "mmsa"): _MMSA_MOSI,
    ("mosei", "mmsa"): _MMSA_MOSEI,
    ("sims", "mmsa"): _MMSA_SIMS,
    ("simsv2", "mmsa"): _SIMSV2,
    ("iemocap", "mmsa"): _IEMOCAP,
    ("synthetic", "demo"): _DEMO,
}
_TUNE = "MMSA 2.2.1 config_tune.json ef_lstm"
SEARCH_SPACE = {
    "hidden": choice(16, 32, 64, 128, 256, source=f"{_TUNE} [hidden_dims]"),
    "num_layers": choice(2, 3, 4, source=_TUNE),
    "dropout": choice(0.2, 0.3, 0.4, 0.5, source=_TUNE),
    "batch_size": choice(32, 64, 128, source=_TUNE),
    "lr": choice(5e-4, 1e-3, 2e-3, 5e-3, source=f"{_TUNE} [learning_rate]"),
    "weight_decay": choice(0.0, 1e-4, 1e-3, 5e-3, source=_TUNE),
}


@register_model("ef_lstm", config=EFLSTMConfig, presets=PRESETS, default_preset="mmsa", search_space=SEARCH_SPACE,
                display_name="EF-LSTM", paper="Williams et al., ACL Workshop 2018",
                reference="https://github.com/thuiar/MMSA; MMSA==2.2.1", family="early and late fusion", order=21)
def ef_lstm(cfg: EFLSTMConfig) -> EFLSTM:
    """EF-LSTM: concatenated aligned features, BatchNorm over time steps, stacked LSTM."""
    return EFLSTM(cfg)
