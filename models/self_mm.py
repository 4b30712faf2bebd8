"""Self-MM: self-supervised multi-task learning with unimodal label generation (Yu et al., AAAI 2021).

Sources: thuiar/Self-MM `models/multiTask/SELF_MM.py`, `trains/multiTask/SELF_MM.py`,
`config/config_regression.py` ("paper" preset) and thuiar/MMSA 2.2.1
`models/multiTask/SELF_MM.py`, `trains/multiTask/SELF_MM.py`, `config/config_regression.json`
("mmsa" preset, the default).

Forward: BERT last-layer [CLS] (the pooler is built but unused, so it never gets a gradient);
audio and vision each through a 1-layer LSTM over the packed true lengths (clamped to >= 1; on
aligned data the loaders give the text length), final hidden state -> Dropout -> Linear; fusion
head [t; a; v] -> Dropout -> Linear -> ReLU (= F_f) -> Linear -> ReLU -> Linear (= y_m), and the
same head shape per modality (F_s, y_s).

ULGM, the weighted loss, the post heads and the five Adam groups are models/layers/ulgm.py's
(shared with TETFN).

IEMOCAP: ULGM is off; the four heads are trained on the human labels with weight 1.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

import torch
from torch import nn

from models.base import ModelOutput
from models.layers.bert_classifier import UNSUPPORTED, bert_preset_table
from models.layers.blocks import AuViSubNet
from models.layers.text_encoder import build_text_encoder
from models.layers.ulgm import HEADS, ULGMConfig, ULGMModel
from models.registry import choice, register_model


@dataclass(kw_only=True)
class SelfMMConfig(ULGMConfig):
    text_input: str = "ids"  # MMSA `text_bert`
    setting: str = "unaligned"  # need_data_aligned false: unaligned_50 with audio/vision lengths
    text_encoder: str = "bert-base-uncased"  # local dir | "bert-base" | "tiny" | cached hub name
    text_vocab_size: Optional[int] = None  # vocabulary of a named random-init config (tiny)
    # sub-networks (MMSA mosi); t_bert_dropout is in MMSA's config but never used: no field
    a_lstm_hidden: int = 16
    v_lstm_hidden: int = 32
    a_lstm_dropout: float = 0.0  # dropout on the LSTM's final state
    v_lstm_dropout: float = 0.0
    audio_out: int = 16
    video_out: int = 32


class SelfMM(ULGMModel):
    cfg: SelfMMConfig

    def __init__(self, cfg: SelfMMConfig):
        super().__init__(cfg)
        self.text = build_text_encoder(cfg.text_encoder, cfg.text_vocab_size)
        text_out = self.text.hidden_size  # text_out 768 for bert-base
        self.audio_net = AuViSubNet(cfg.dims[1], cfg.a_lstm_hidden, cfg.audio_out, cfg.a_lstm_dropout)
        self.video_net = AuViSubNet(cfg.dims[2], cfg.v_lstm_hidden, cfg.video_out, cfg.v_lstm_dropout)
        self.heads = self.build_heads(text_out + cfg.audio_out + cfg.video_out, text_out, cfg.audio_out, cfg.video_out)

    def encode(self, batch) -> dict[str, torch.Tensor]:
        """The three sub-network outputs: [CLS] (text_out), audio_out, video_out. The LSTMs read
        `batch.audio_lengths` / `vision_lengths`: the files' own for unaligned data; for aligned
        data the loader sets them to the text length sum(input_mask), as MMSA's Self-MM does
        (bench/data/mmsa.py rule 4). Masking the text keeps them, so audio never depends on it."""
        return {"t": self.text.cls(batch.text_ids, batch.text_mask, batch.text_segment),
                "a": self.audio_net(batch.audio, batch.audio_lengths),
                "v": self.video_net(batch.vision, batch.vision_lengths)}

    def fuse(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.heads["f"](torch.cat([reps["t"], reps["a"], reps["v"]], dim=-1))[1]

    def forward(self, batch) -> ModelOutput:
        reps = self.encode(batch)
        inputs = {"f": torch.cat([reps["t"], reps["a"], reps["v"]], dim=-1), **reps}
        out = {h: self.heads[h](inputs[h]) for h in HEADS}  # (feature, prediction) per head
        return ModelOutput(pred=out["f"][1], unimodal={s: out[s][1] for s in "tav"},
                           features={h: feature for h, (feature, _) in out.items()})

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        # each branch: its encoder and its unimodal head; the fusion head is shared
        return {"t": [*self.text.parameters(), *self.heads["t"].parameters()],
                "a": [*self.audio_net.parameters(), *self.heads["a"].parameters()],
                "v": [*self.video_net.parameters(), *self.heads["v"].parameters()]}


# -- presets ---------------------------------------------------
_COMMON: dict[str, Any] = dict(
    optimizer="adam",  # torch Adam, coupled L2, 5 groups (MMSA trains/multiTask/SELF_MM.py:89; Self-MM :96)
    grad_accum_steps=4,  # update_epochs 4 (the trailing group is applied: harness fix)
    early_stop_patience=8, label_bound=3.0,  # early_stop 8; H 3.0
)
_MMSA_MOSI = SelfMMConfig(  # MMSA config_regression.json self_mm mosi
    dims=(768, 5, 20), batch_size=16, **_COMMON,
    lr_bert=5e-5, lr_audio=5e-3, lr_video=5e-3, lr=1e-3,
    weight_decay_bert=1e-3, weight_decay_audio=1e-3, weight_decay_video=1e-3, weight_decay=1e-3,
    a_lstm_hidden=16, v_lstm_hidden=32, audio_out=16, video_out=32,
    post_fusion_dim=128, post_text_dim=32, post_audio_dim=16, post_video_dim=32,
    post_fusion_dropout=0.0, post_text_dropout=0.1, post_audio_dropout=0.1, post_video_dropout=0.0,
    exclude_zero=True,  # excludeZero true
)
_MMSA_MOSEI = replace(  # MMSA self_mm mosei (the values not named are mosi's)
    _MMSA_MOSI, dims=(768, 74, 35), batch_size=32, lr_video=1e-4,
    weight_decay_audio=0.0, weight_decay_video=0.0, weight_decay=1e-2,
    post_fusion_dropout=0.1, post_text_dropout=0.0, post_audio_dropout=0.0,
)
_MMSA_SIMS = replace(  # MMSA config_regression.json self_mm sims (the values not named are mosi's)
    _MMSA_MOSI, dims=(768, 33, 709), batch_size=32,
    text_encoder="bert-base-chinese", text_vocab_size=21128,  # pretrained bert-base-chinese (--text-encoder PATH)
    weight_decay_audio=1e-2, weight_decay_video=1e-2, v_lstm_hidden=64, post_text_dim=64,
    label_bound=1.0,  # H 1.0: CH-SIMS labels lie in [-1, 1]
)
# CH-SIMS v2: MMSA 2.2.1 has no SIMS v2 configuration; harness decision: the SIMS preset with the
# ch-simsv2s.pkl widths (ch-sims-v2 config feature_dims 768/25/177)
_SIMSV2 = replace(_MMSA_SIMS, dims=(768, 25, 177))
_PAPER_MOSI = replace(  # Self-MM repo config/config_regression.py mosi (the paper's values were lost, issue #2)
    _MMSA_MOSI, batch_size=32, lr_audio=1e-3, lr_video=1e-4, weight_decay_audio=1e-2,
    a_lstm_hidden=32, v_lstm_hidden=64, post_text_dim=64,
    post_fusion_dropout=0.1, post_text_dropout=0.0, post_audio_dropout=0.1, post_video_dropout=0.1,
    exclude_zero=False,  # excludeZero unset: positive centre over y >= 0
)
_PAPER_MOSEI = replace(  # Self-MM repo config_regression.py mosei (the values not named are its mosi's)
    _PAPER_MOSI, dims=(768, 74, 35), lr_audio=5e-3,
    weight_decay_audio=0.0, weight_decay_video=0.0, weight_decay=1e-2,
    v_lstm_hidden=32, post_text_dim=32, post_video_dim=16,
    post_fusion_dropout=0.0, post_text_dropout=0.1, post_audio_dropout=0.0,
)
_IEMOCAP = dict(task="iemocap", n_out=8, use_ulgm=False)  # MOSEI presets, 4 x 2 logits, CE, ULGM off
# synthetic `demo` (harness decision): tiny random-init BERT; lr_bert 5e-4 because it learns
# from scratch; 32 x 2 accumulated = MMSA's effective 16 x 4 and its 21 steps per 1284-sample
# epoch, in half the (CPU-bound) batches; 4 epochs, so ULGM updates labels in 3 of them
_DEMO = replace(_MMSA_MOSI, text_encoder="tiny", text_vocab_size=2048, lr_bert=5e-4,
                batch_size=32, grad_accum_steps=2, max_epochs=4, early_stop_patience=2)

PRESETS = {**bert_preset_table(_MMSA_MOSI, _MMSA_MOSEI, _PAPER_MOSI, _PAPER_MOSEI, _IEMOCAP, _DEMO),
           ("sims", "mmsa"): _MMSA_SIMS, ("simsv2", "mmsa"): _SIMSV2}
# `bench tune` search space: MMSA 2.2.1 config/config_tune.json `self_mm` debugParams (MMSA name in
# brackets). Single-valued there, so left at the preset's: learning_rate_bert 5e-5, audio_out 16,
# video_out 32, a/v_lstm_dropout 0, H 3.0 (t_bert_dropout is unused, text_out is BERT's 768).
_TUNE = "MMSA 2.2.1 config_tune.json self_mm"
SEARCH_SPACE = {"batch_size": choice(16, 32, source=_TUNE),
                "lr_audio": choice(1e-4, 1e-3, 5e-3, source=f"{_TUNE} [learning_rate_audio]"),
                "lr_video": choice(1e-4, 1e-3, 5e-3, source=f"{_TUNE} [learning_rate_video]"),
                "lr": choice(1e-4, 1e-3, source=f"{_TUNE} [learning_rate_other]"),
                "weight_decay_bert": choice(1e-3, 1e-2, source=_TUNE),
                "weight_decay": choice(1e-3, 1e-2, source=f"{_TUNE} [weight_decay_other]"),
                "weight_decay_audio": choice(0.0, 1e-3, 1e-2, source=_TUNE),
                "weight_decay_video": choice(0.0, 1e-3, 1e-2, source=_TUNE),
                "a_lstm_hidden": choice(16, 32, source=f"{_TUNE} [a_lstm_hidden_size]"),
                "v_lstm_hidden": choice(32, 64, source=f"{_TUNE} [v_lstm_hidden_size]"),
                "post_fusion_dim": choice(64, 128, source=_TUNE),
                "post_text_dim": choice(32, 64, source=_TUNE),
                "post_audio_dim": choice(16, 32, source=_TUNE),
                "post_video_dim": choice(16, 32, source=_TUNE),
                **{f"post_{m}_dropout": choice(0.1, 0.0, source=_TUNE) for m in ("fusion", "text", "audio", "video")}}


@register_model("self_mm", config=SelfMMConfig, presets=PRESETS, default_preset="mmsa", unsupported=UNSUPPORTED,
                search_space=SEARCH_SPACE,
                display_name="Self-MM", paper="Yu et al., AAAI 2021",
                reference="https://github.com/thuiar/Self-MM; MMSA==2.2.1",
                family="BERT + fusion", order=50)
def self_mm(cfg: SelfMMConfig) -> SelfMM:
    """Self-MM (Yu et al., AAAI 2021): BERT + LSTMs, fusion + unimodal heads, ULGM labels."""
    return SelfMM(cfg)
