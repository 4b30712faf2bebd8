"""TETFN: Text Enhanced Transformer Fusion Network (Wang et al., Pattern Recognition 2023).

Sources: thuiar/MMSA at commit a94e65d07fa1ae0d44e552390074b29b0898edfd
`models/multiTask/TETFN.py`, `trains/multiTask/TETFN.py`, `models/AMIO.py` + `subNets/AlignNets.py`
(need_model_aligned) and `config/config_regression.json` ("mmsa" preset). MMSA 2.2.1 on PyPI
does not ship TETFN.

Forward (no padding masks after BERT, as in the reference: padded steps take part everywhere):
1. audio / vision window-pooled to `seq_len_t` steps (MMSA's seq_lens[0], the token width) when
   their lengths differ (AMIO's AlignSubNet avg_pool at that commit; aligned MOSI/MOSEI are
   already equal);
2. BERT last hidden states over every token column (ids padded to `seq_len_t`) -> Conv1d(768 ->
   d, k_l, no bias); audio and vision: LSTM over the whole padded sequence -> Conv1d(hidden -> d,
   k_a, no bias) (the video sub-network is built with the audio kernel, as MMSA's code does);
3. MulT-style causal cross-modal transformers (2 layers, no positions): text <- audio, text <-
   vision, audio <- text, vision <- text; the text-enhanced transformers (sinusoidal positions):
   audio <- [vision <- text] and vision <- [audio <- text] (a 1-layer transformer where the
   other non-text modality attends to the text, then 2 layers where the target attends to it);
4. per modality its pair concatenated -> a 2-layer memory transformer (2d) -> last step;
   [l; a; v] -> the fusion head; the unimodal heads read the max over time of each projected
   sequence (step 2's Conv1d outputs).
Heads, Self-MM's ULGM label generation, its weighted L1 loss and the five Adam groups are
models/layers/ulgm.py's (the trainer is Self-MM's line for line).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelOutput
from models.layers.mmsa_align import window_pool_align
from models.layers.text_encoder import build_text_encoder
from models.layers.transformer import CrossModalTransformer
from models.layers.ulgm import HEADS, ULGMConfig, ULGMModel
from models.registry import choice, register_model


@dataclass(kw_only=True)
class TETFNConfig(ULGMConfig):
    text_input: str = "ids"  # MMSA `text_bert` (use_bert, use_finetune true)
    setting: str = "aligned"  # need_data_aligned true: aligned_50
    text_encoder: str = "bert-base-uncased"  # local dir | "bert-base" | "tiny" | cached hub name
    text_vocab_size: Optional[int] = None  # vocabulary of a named random-init config (tiny)
    seq_len_t: int = 50  # seq_lens[0]: token columns BERT reads (ids padded to it) and audio/vision are pooled to
    a_lstm_hidden: int = 16  # a_lstm_hidden_size
    v_lstm_hidden: int = 64  # v_lstm_hidden_size
    a_lstm_layers: int = 1
    v_lstm_layers: int = 1
    a_lstm_dropout: float = 0.0  # torch LSTM dropout: between stacked layers only
    v_lstm_dropout: float = 0.0
    conv_kernel_l: int = 1  # conv1d_kernel_size_l (text projection)
    conv_kernel_a: int = 1  # conv1d_kernel_size_a (audio, and vision unless conv_kernel_v is set)
    conv_kernel_v: Optional[int] = None  # None: the audio kernel, as MMSA builds it (conv1d_kernel_size_v unread)
    d: int = 50  # dst_feature_dims
    heads: int = 5  # nheads
    attn_dropout: float = 0.1  # source = text, the text-enhanced and the memory transformers
    attn_dropout_a: float = 0.0  # text <- audio
    attn_dropout_v: float = 0.1  # text <- vision
    relu_dropout: float = 0.0
    embed_dropout: float = 0.0
    res_dropout: float = 0.1


class RNNConv(nn.Module):
    """TETFN's AuViSubNet: LSTM over every step, then Conv1d(hidden -> d, kernel, no bias)."""

    def __init__(self, in_dim: int, hidden: int, layers: int, dropout: float, out_dim: int, kernel: int):
        super().__init__()
        self.rnn = nn.LSTM(in_dim, hidden, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
                           batch_first=True)
        self.conv = nn.Conv1d(hidden, out_dim, kernel_size=kernel, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, in_dim) -> (B, T - kernel + 1, d)."""
        h, _ = self.rnn(x)
        return self.conv(h.transpose(1, 2)).transpose(1, 2)


class TextEnhanced(nn.Module):
    """TextEnhancedTransformer: c = [query <- text] (1 layer), then [key <- c] (2 layers); positions on."""

    def __init__(self, cfg: TETFNConfig):
        super().__init__()
        kw: dict[str, Any] = dict(attn_dropout=cfg.attn_dropout, relu_dropout=cfg.relu_dropout,
                                  res_dropout=cfg.res_dropout, embed_dropout=cfg.embed_dropout,
                                  causal=True, positions=True)
        self.lower = CrossModalTransformer(cfg.d, cfg.heads, 1, **kw)
        self.upper = CrossModalTransformer(cfg.d, cfg.heads, 2, **kw)

    def forward(self, query: torch.Tensor, key: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.upper(key, self.lower(query, text))


class TETFN(ULGMModel):
    cfg: TETFNConfig

    def __init__(self, cfg: TETFNConfig):
        super().__init__(cfg)
        d = cfg.d
        self.text = build_text_encoder(cfg.text_encoder, cfg.text_vocab_size)
        self.audio_net = RNNConv(cfg.dims[1], cfg.a_lstm_hidden, cfg.a_lstm_layers, cfg.a_lstm_dropout, d,
                                 cfg.conv_kernel_a)
        self.video_net = RNNConv(cfg.dims[2], cfg.v_lstm_hidden, cfg.v_lstm_layers, cfg.v_lstm_dropout, d,
                                 cfg.conv_kernel_v or cfg.conv_kernel_a)
        self.proj_t = nn.Conv1d(self.text.hidden_size, d, kernel_size=cfg.conv_kernel_l, padding=0, bias=False)

        def stack(width: int, attn_dropout: float) -> CrossModalTransformer:
            return CrossModalTransformer(width, cfg.heads, 2, attn_dropout, cfg.relu_dropout, cfg.res_dropout,
                                         cfg.embed_dropout, causal=True)

        # cross[target + source]: "ta" = text attending to audio (MMSA trans_l_with_a)
        self.cross = nn.ModuleDict({"ta": stack(d, cfg.attn_dropout_a), "tv": stack(d, cfg.attn_dropout_v),
                                    "at": stack(d, cfg.attn_dropout), "vt": stack(d, cfg.attn_dropout)})
        # enhanced["av"]: audio attending to [vision <- text] (MMSA trans_a_with_v)
        self.enhanced = nn.ModuleDict({"av": TextEnhanced(cfg), "va": TextEnhanced(cfg)})
        self.memory_net = nn.ModuleDict({m: stack(2 * d, cfg.attn_dropout) for m in "tav"})
        self.heads = self.build_heads(6 * d, d, d, d)

    def tokens(self, batch) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Token ids, mask and segments padded to `seq_len_t` columns (MMSA's pickles already have
        them; trimmed batches get them back, so a prediction never depends on its batch)."""
        width, n = self.cfg.seq_len_t, batch.text_ids.shape[1]
        if n > width:
            raise ValueError(f"tetfn: the batch has {n} token columns, more than config key 'seq_len_t'={width} "
                             "(MMSA's seq_lens[0]; set it to the data's token width)")
        pad = (0, width - n)
        segment = F.pad(batch.text_segment, pad) if batch.text_segment is not None else None
        return F.pad(batch.text_ids, pad, value=batch.special_ids[2]), F.pad(batch.text_mask, pad), segment

    def sequences(self, batch) -> dict[str, torch.Tensor]:
        """The projected sequences (B, T_m, d): BERT over every token column -> Conv1d; audio and
        vision window-pooled to `seq_len_t` steps (AMIO need_model_aligned), then LSTM -> Conv1d."""
        text = self.text(*self.tokens(batch))
        width = self.cfg.seq_len_t
        return {"t": self.proj_t(text.transpose(1, 2)).transpose(1, 2),
                "a": self.audio_net(window_pool_align(batch.audio, width)),
                "v": self.video_net(window_pool_align(batch.vision, width))}

    def forward(self, batch) -> ModelOutput:
        x = self.sequences(batch)
        pairs = {
            "t": (self.cross["ta"](x["t"], x["a"]), self.cross["tv"](x["t"], x["v"])),
            "a": (self.cross["at"](x["a"], x["t"]), self.enhanced["av"](x["v"], x["a"], x["t"])),
            "v": (self.cross["vt"](x["v"], x["t"]), self.enhanced["va"](x["a"], x["v"], x["t"])),
        }
        # the memory transformers are read at their last step only (exact under the causal mask)
        last = {m: self.memory_net[m](torch.cat(pairs[m], dim=-1), last_only=True)[:, -1] for m in "tav"}
        inputs = {"f": torch.cat([last["t"], last["a"], last["v"]], dim=-1),
                  **{m: x[m].max(dim=1).values for m in "tav"}}  # torch.max: the gradient goes to one step
        feats, preds = {}, {}
        for h in HEADS:
            feats[h], preds[h] = self.heads[h](inputs[h])
        return ModelOutput(pred=preds["f"], unimodal={s: preds[s] for s in "tav"}, features=feats)

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        # a branch: its encoder / projection, the transformers where it is the target, its memory, its head
        own: dict[str, list[nn.Module]] = {"t": [self.text, self.proj_t], "a": [self.audio_net], "v": [self.video_net]}
        for key, block in (*self.cross.items(), *self.enhanced.items()):
            own[key[0]].append(block)
        return {m: [p for module in (*own[m], self.memory_net[m], self.heads[m]) for p in module.parameters()]
                for m in "tav"}

    def summary(self) -> dict[str, Any]:
        used = "generated by ULGM from the multimodal label (labels_t/a/v unread, as MMSA's trainer)"
        return {**super().summary(), "unimodal_labels": used if self.cfg.use_ulgm else "the multimodal label"}


# -- presets: MMSA a94e65d config_regression.json `tetfn` ------------------------------------
_COMMON: dict[str, Any] = dict(
    optimizer="adam",  # torch Adam, coupled L2, 5 groups (trains/multiTask/TETFN.py do_train)
    grad_accum_steps=4,  # commonParams update_epochs 4 (the trailing group is applied: harness fix)
    early_stop_patience=8, label_bound=3.0, exclude_zero=True,  # early_stop 8; H 3; excludeZero true
    a_lstm_layers=1, v_lstm_layers=1, a_lstm_dropout=0.0, v_lstm_dropout=0.0, d=50, heads=5,
)
_MMSA_MOSI = TETFNConfig(  # datasetParams mosi; aligned_50 (need_data_aligned true)
    dims=(768, 5, 20), setting="aligned", batch_size=64, seq_len_t=50, **_COMMON,  # seq_lens [50, 50, 50]
    a_lstm_hidden=16, v_lstm_hidden=64, conv_kernel_l=1, conv_kernel_a=1,  # conv1d_kernel_size_v 3: unread
    attn_dropout=0.1, attn_dropout_a=0.0, attn_dropout_v=0.1, relu_dropout=0.0, embed_dropout=0.0, res_dropout=0.1,
    post_fusion_dim=64, post_text_dim=32, post_audio_dim=32, post_video_dim=16,
    post_fusion_dropout=0.0, post_text_dropout=0.0, post_audio_dropout=0.0, post_video_dropout=0.0,
    lr_bert=3e-5, lr_audio=5e-4, lr_video=3e-4, lr=3e-4,  # learning_rate_bert/audio/video/other
    weight_decay_bert=1e-3, weight_decay_audio=1e-2, weight_decay_video=0.0, weight_decay=1e-2,
)
_MMSA_MOSEI = replace(  # datasetParams mosei
    _MMSA_MOSI, dims=(768, 74, 35), batch_size=32,
    a_lstm_hidden=32, v_lstm_hidden=32, conv_kernel_l=1, conv_kernel_a=1,
    attn_dropout=0.1, attn_dropout_a=0.0, attn_dropout_v=0.1, relu_dropout=0.1, embed_dropout=0.1, res_dropout=0.0,
    post_fusion_dim=64, post_text_dim=64, post_audio_dim=32, post_video_dim=16,
    post_fusion_dropout=0.0, post_text_dropout=0.1, post_audio_dropout=0.0, post_video_dropout=0.1,
    lr_bert=3e-5, lr_audio=1e-3, lr_video=5e-3, lr=1e-4,
    weight_decay_bert=1e-3, weight_decay_audio=0.0, weight_decay_video=1e-3, weight_decay=1e-2,
)
_MMSA_SIMS = replace(  # datasetParams sims; unaligned_39 window-pooled to the 39 tokens (AMIO)
    _MMSA_MOSI, dims=(768, 33, 709), setting="unaligned", batch_size=64,
    text_encoder="bert-base-chinese", text_vocab_size=21128,  # pretrained bert-base-chinese (--text-encoder PATH)
    a_lstm_hidden=16, v_lstm_hidden=64, conv_kernel_l=3, conv_kernel_a=5,  # conv1d_kernel_size_v 1: unread
    attn_dropout=0.0, attn_dropout_a=0.1, attn_dropout_v=0.0, relu_dropout=0.1, embed_dropout=0.0, res_dropout=0.0,
    post_fusion_dim=64, post_text_dim=64, post_audio_dim=16, post_video_dim=32,
    post_fusion_dropout=0.1, post_text_dropout=0.0, post_audio_dropout=0.0, post_video_dropout=0.0,
    lr_bert=3e-5, lr_audio=3e-3, lr_video=5e-4, lr=3e-3,
    weight_decay_bert=1e-3, weight_decay_audio=0.0, weight_decay_video=1e-2, weight_decay=1e-3,
)  # H stays 3 (the config's), although CH-SIMS labels lie in [-1, 1]
_MMSA_SIMSV2 = replace(  # datasetParams simsv2; dims: ch-simsv2s.pkl's 25/177 (MMSA's own SIMSv2 pickle: 33/709)
    _MMSA_SIMS, dims=(768, 25, 177), seq_len_t=50,  # ch-simsv2s.pkl's 50 tokens (MMSA's pickle: 39)
    a_lstm_hidden=16, v_lstm_hidden=32, conv_kernel_l=5, conv_kernel_a=3,  # conv1d_kernel_size_v 1: unread
    attn_dropout=0.1, attn_dropout_a=0.0, attn_dropout_v=0.1, relu_dropout=0.0, embed_dropout=0.0, res_dropout=0.1,
    post_fusion_dim=128, post_text_dim=64, post_audio_dim=16, post_video_dim=32,
    post_fusion_dropout=0.1, post_text_dropout=0.1, post_audio_dropout=0.0, post_video_dropout=0.0,
    lr_bert=5e-6, lr_audio=5e-4, lr_video=5e-3, lr=3e-4,
    weight_decay_bert=1e-3, weight_decay_audio=1e-3, weight_decay_video=1e-3, weight_decay=1e-3,
)
# synthetic `demo` (harness decision): tiny random-init BERT (lr_bert 5e-4: it learns from scratch),
# d 20, 32 x 2 accumulated, 4 epochs so that ULGM updates labels in 3 of them
_DEMO = replace(_MMSA_MOSI, text_encoder="tiny", text_vocab_size=2048, lr_bert=5e-4, d=20,
                batch_size=32, grad_accum_steps=2, max_epochs=4, early_stop_patience=2)
PRESETS = {("mosi", "mmsa"): _MMSA_MOSI, ("mosei", "mmsa"): _MMSA_MOSEI, ("sims", "mmsa"): _MMSA_SIMS,
           ("simsv2", "mmsa"): _MMSA_SIMSV2, ("synthetic", "demo"): _DEMO}
UNSUPPORTED = {"iemocap": "TETFN is regression only: MMSA's trainer asserts train_mode 'regression' and its "
                          "ULGM generates signed sentiment labels (no IEMOCAP setting in MMSA)"}
# `bench tune`: MMSA a94e65d config_tune.json `tetfn` debugParams (MMSA name in brackets). Not
# searched: conv1d_kernel_size_v (MMSA never reads it), the single-valued a/v LSTM layers 1,
# dropouts 0, H 3, and d 50 / nheads 5 (commonParams).
_TUNE = "MMSA a94e65d config_tune.json tetfn"
_LRS = (1e-4, 3e-4, 5e-4, 1e-3, 3e-3, 5e-3)
SEARCH_SPACE = {
    "batch_size": choice(32, 64, 128, source=_TUNE),
    "lr_bert": choice(5e-6, 1e-5, 3e-5, 5e-5, source=f"{_TUNE} [learning_rate_bert]"),
    "lr_audio": choice(*_LRS, source=f"{_TUNE} [learning_rate_audio]"),
    "lr_video": choice(*_LRS, source=f"{_TUNE} [learning_rate_video]"),
    "lr": choice(*_LRS, source=f"{_TUNE} [learning_rate_other]"),
    "weight_decay_bert": choice(1e-3, 1e-2, source=_TUNE),
    "weight_decay_audio": choice(0.0, 1e-3, 1e-2, source=_TUNE),
    "weight_decay_video": choice(0.0, 1e-3, 1e-2, source=_TUNE),
    "weight_decay": choice(1e-3, 1e-2, source=f"{_TUNE} [weight_decay_other]"),
    "a_lstm_hidden": choice(16, 32, source=f"{_TUNE} [a_lstm_hidden_size]"),
    "v_lstm_hidden": choice(32, 64, source=f"{_TUNE} [v_lstm_hidden_size]"),
    "post_fusion_dim": choice(64, 128, source=_TUNE),
    "post_text_dim": choice(32, 64, source=_TUNE),
    "post_audio_dim": choice(16, 32, source=_TUNE),
    "post_video_dim": choice(16, 32, source=_TUNE),
    **{f"post_{m}_dropout": choice(0.1, 0.0, source=_TUNE) for m in ("fusion", "text", "audio", "video")},
    **{k: choice(0.1, 0.0, source=_TUNE) for k in ("attn_dropout", "attn_dropout_a", "attn_dropout_v",
                                                     "relu_dropout", "embed_dropout", "res_dropout")},
    "conv_kernel_l": choice(1, 3, 5, source=f"{_TUNE} [conv1d_kernel_size_l]"),
    "conv_kernel_a": choice(1, 3, 5, source=f"{_TUNE} [conv1d_kernel_size_a]"),
}


@register_model("tetfn", config=TETFNConfig, presets=PRESETS, default_preset="mmsa", unsupported=UNSUPPORTED,
                search_space=SEARCH_SPACE,
                display_name="TETFN", paper="Wang et al., Pattern Recognition 2023",
                reference="https://github.com/thuiar/MMSA; thuiar/MMSA@a94e65d07fa1ae0d44e552390074b29b0898edfd",
                family="transformer fusion", order=66)
def tetfn(cfg: TETFNConfig) -> TETFN:
    """TETFN (Wang et al., Pattern Recognition 2023): text-enhanced cross-modal transformers, ULGM labels."""
    return TETFN(cfg)
