"""MAG-BERT: BERT with a Multimodal Adaptation Gate (Rahman et al., ACL 2020).

Sources: WasifurRahman/BERT_multimodal_transformer `modeling.py`, `multimodal_driver.py`
("paper" preset) and thuiar/MMSA 2.2.1 `models/singleTask/BERT_MAG.py`,
`models/subNets/AlignNets.py` + `config/config_regression.json` ("mmsa" preset, the
default).

Forward order:
1. audio/vision are brought to the text length by MMSA's `AlignSubNet` avg_pool (a no-op on
   word-aligned data, where all three have 50 steps);
2. token ids -> BERT embeddings e;
3. MAG (injection index 0): g_v = ReLU(W_hv[v; e]), g_a = ReLU(W_ha[a; e]),
   H = g_v * W_v v + g_a * W_a a, alpha = min(|e| / |H| * beta_shift, 1) (|H| = 0 counts as 1,
   eps 1e-6), e' = Dropout(LayerNorm(e + alpha H));
4. the BERT encoder on e', the pooler (tanh on [CLS]), Dropout(0.1), Linear(hidden -> n_out).
bert-base-uncased on MMSA dims: 110,705,665 parameters (MOSI 768/5/20), 110,834,689 (MOSEI
768/74/35), all of which receive a gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelOutput
from models.layers.bert_classifier import PRESETS as TEXT_PRESETS
from models.layers.bert_classifier import UNSUPPORTED, BertClassifier, BertTextConfig
from models.layers.mmsa_align import window_pool_align as avg_pool_to  # AlignSubNet avg_pool, consecutive windows
from models.registry import choice, register_model

MAG_EPS = 1e-6  # modeling.py MAG.forward


@dataclass(kw_only=True)
class MAGBertConfig(BertTextConfig):
    setting: str = "aligned"  # MMSA bert_mag need_data_aligned: aligned_50
    beta_shift: float = 1.0  # MMSA mosi/mosei beta_shift 1; driver --beta_shift 1.0
    dropout_prob: float = 0.3  # dropout after the MAG LayerNorm (MMSA mosi 0.3)
    dims_from_data: bool = True  # harness decision: the gate's audio/vision widths come from the file, so
    #   the same preset reads MMSA aligned_50 (5/20, 74/35) and MAG-BERT's own pickles (74/47, 74/35)


def mag_alpha(e: torch.Tensor, h: torch.Tensor, beta_shift: float) -> torch.Tensor:
    """alpha = min(|e| / (|H| + eps) * beta_shift, 1), with |H| = 0 counted as 1; shape (..., 1)."""
    h_norm = h.norm(p=2, dim=-1)
    h_norm = torch.where(h_norm == 0, torch.ones_like(h_norm), h_norm)
    return ((e.norm(p=2, dim=-1) / (h_norm + MAG_EPS)) * beta_shift).clamp(max=1.0).unsqueeze(-1)


class MAG(nn.Module):
    """The Multimodal Adaptation Gate (modeling.py MAG; MMSA BERT_MAG.MAG)."""

    def __init__(self, text_dim: int, audio_dim: int, vision_dim: int, beta_shift: float, dropout_prob: float):
        super().__init__()
        self.W_hv = nn.Linear(vision_dim + text_dim, text_dim)
        self.W_ha = nn.Linear(audio_dim + text_dim, text_dim)
        self.W_v = nn.Linear(vision_dim, text_dim)
        self.W_a = nn.Linear(audio_dim, text_dim)
        self.beta_shift = beta_shift
        self.norm = nn.LayerNorm(text_dim)  # torch default eps 1e-5, as in modeling.py
        self.dropout = nn.Dropout(dropout_prob)

    def shift(self, e: torch.Tensor, audio: torch.Tensor, vision: torch.Tensor) -> torch.Tensor:
        """The nonverbal displacement H."""
        g_v = F.relu(self.W_hv(torch.cat([vision, e], dim=-1)))
        g_a = F.relu(self.W_ha(torch.cat([audio, e], dim=-1)))
        return g_v * self.W_v(vision) + g_a * self.W_a(audio)

    def forward(self, e: torch.Tensor, audio: torch.Tensor, vision: torch.Tensor) -> torch.Tensor:
        h = self.shift(e, audio, vision)
        return self.dropout(self.norm(e + mag_alpha(e, h, self.beta_shift) * h))


class MAGBert(BertClassifier):
    """BERT + MAG after the embeddings; the pooled [CLS] feeds the head (BertForSequenceClassification)."""

    cfg: MAGBertConfig

    def __init__(self, cfg: MAGBertConfig):
        super().__init__(cfg)
        if self.text.pooler is None:
            raise ValueError(f"text encoder '{cfg.text_encoder}' has no pooler; MAG-BERT classifies the pooled [CLS]")
        self.mag = self.text.init_like_bert(MAG(self.text.hidden_size, cfg.dims[1], cfg.dims[2], cfg.beta_shift,
                                                cfg.dropout_prob))

    def forward(self, batch) -> ModelOutput:
        length = batch.text_ids.shape[1]
        audio, vision = avg_pool_to(batch.audio, length), avg_pool_to(batch.vision, length)
        seq = self.text(batch.text_ids, batch.text_mask, batch.text_segment, fuse=lambda e: self.mag(e, audio, vision))
        pooled = self.text.pool(seq)
        return ModelOutput(pred=self.classifier(self.dropout(pooled)), features={"t": seq[:, 0], "f": pooled})

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        # the gate's audio and vision halves; its LayerNorm and the head are shared (in no branch)
        return {"t": list(self.text.parameters()),
                "a": [*self.mag.W_ha.parameters(), *self.mag.W_a.parameters()],
                "v": [*self.mag.W_hv.parameters(), *self.mag.W_v.parameters()]}


# -- presets ---------------------------------------------------
# Data, optimiser, loss and stopping are bert_text's presets for the same (dataset, preset),
# which take them from MMSA bert_mag and the MAG-BERT driver (aligned_50; Adam lr 2e-5 / 1e-5,
# batch 32, L1 | transformers' AdamW 1e-5, wd 0.01, warm-up, batch 48, MSE, 40 epochs; IEMOCAP: the
# MOSEI values with 4 x 2 logits and CE; synthetic demo: tiny random-init BERT, lr 5e-4).
# MAG adds its gate: (beta_shift, dropout_prob).
_GATE = {("mosi", "mmsa"): (1.0, 0.3),  # MMSA config_regression.json bert_mag mosi
         ("mosei", "mmsa"): (1.0, 0.2),  # bert_mag mosei
         ("mosi", "paper"): (1.0, 0.5),  # multimodal_driver.py --beta_shift 1.0 --dropout_prob 0.5
         ("mosei", "paper"): (1.0, 0.5),
         ("iemocap", "mmsa"): (1.0, 0.2),  # the MOSEI values
         ("iemocap", "paper"): (1.0, 0.5),
         ("synthetic", "demo"): (1.0, 0.3)}  # harness decision: the MMSA MOSI gate


# What a MAG-BERT preset takes from the bert_text preset: the task, data widths, text encoder,
# optimiser, loss and stopping. Everything else (dims_from_data above all) keeps MAGBertConfig's
# own default; copying every field would carry bert_text's dims_from_data=False along.
FROM_TEXT_PRESET = (
    "task", "n_out", "dims", "text_encoder", "text_vocab_size", "loss",
    "optimizer", "lr", "weight_decay", "batch_size", "scheduler", "warmup_ratio",
    "max_epochs", "early_stop_patience", "val_loss_decimals",
)


def _mag(text_cfg: BertTextConfig, beta_shift: float, dropout_prob: float) -> MAGBertConfig:
    shared = {name: getattr(text_cfg, name) for name in FROM_TEXT_PRESET}
    return MAGBertConfig(**shared, beta_shift=beta_shift, dropout_prob=dropout_prob)


PRESETS = {key: _mag(TEXT_PRESETS[key], *gate) for key, gate in _GATE.items()}
# `bench tune` search space: MMSA 2.2.1 config/config_tune.json `bert_mag` debugParams (MMSA name
# in brackets); beta_shift [1] is a single value, so it stays at the preset's.
_TUNE = "MMSA 2.2.1 config_tune.json bert_mag"
SEARCH_SPACE = {"batch_size": choice(32, 48, 64, source=_TUNE),
                "lr": choice(2e-5, 5e-5, 1e-4, 1e-5, source=f"{_TUNE} [learning_rate]"),
                "dropout_prob": choice(0.1, 0.2, 0.3, 0.4, source=_TUNE)}


# MMSA's bert_mag sets need_data_aligned (MAG adds audio/vision to each word's embedding), and CH-SIMS /
# CH-SIMS v2 are published unaligned only: MMSA's config then falls back to unaligned_39.pkl, whose
# T differ per modality (39/400/55), which MAG cannot fuse
_NO_ALIGNED = "MAG fuses word-aligned audio/vision; CH-SIMS files are published unaligned only (no aligned pickle)"
UNSUPPORTED_MAG = {**UNSUPPORTED, "sims": _NO_ALIGNED, "simsv2": _NO_ALIGNED}


@register_model("mag_bert", config=MAGBertConfig, presets=PRESETS, default_preset="mmsa", unsupported=UNSUPPORTED_MAG,
                search_space=SEARCH_SPACE,
                display_name="MAG-BERT", paper="Rahman et al., ACL 2020",
                reference="https://github.com/WasifurRahman/BERT_multimodal_transformer; MMSA==2.2.1",
                family="BERT + fusion", order=40)
def mag_bert(cfg: MAGBertConfig) -> MAGBert:
    """MAG-BERT (Rahman et al., ACL 2020): a multimodal gate after the BERT embeddings."""
    return MAGBert(cfg)
