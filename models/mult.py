"""MulT: Multimodal Transformer (Tsai et al., ACL 2019).

Sources: yaohungt/Multimodal-Transformer `src/models.py` ("paper" preset) and thuiar/MMSA
2.2.1 `models/singleTask/MULT.py` + `config/config_regression.json` ("mmsa" preset, the
default). Forward order: text dropout -> Conv1d projections (no
bias, no padding: sequences shorten by k-1) -> six cross-modal transformers (target <-
source) -> three memory transformers over each pair -> last time step of each -> residual
head. Attention is fused (SDPA); MMSA's discarded attention maps are not computed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel
from models.layers.transformer import CrossModalTransformer, dropout
from models.registry import choice, register_model


@dataclass(kw_only=True)
class MulTConfig(ModelConfig):
    d: int = 50  # dst_feature_dim (MMSA mosi)
    heads: int = 10
    layers: int = 4  # cross-modal depth D (nlevels); memory blocks use max(D, 3)
    conv_kernels: tuple[int, int, int] = (5, 5, 5)  # conv1d_kernel_size_l/a/v
    positions: bool = False  # sinusoidal positions: original MulT yes, MMSA no
    causal_mask: bool = True  # MulT --attn_mask is store_false (on); MMSA attn_mask true
    text_dropout: float = 0.5  # on the text input before projection
    embed_dropout: float = 0.2  # inside every transformer, after x*sqrt(d)
    attn_dropout: float = 0.3  # source = text (and memory blocks)
    attn_dropout_a: float = 0.2  # source = audio
    attn_dropout_v: float = 0.0  # source = vision
    relu_dropout: float = 0.0
    res_dropout: float = 0.0
    out_dropout: float = 0.5  # output_dropout in the residual head


class MulT(MSAModel):
    cfg: MulTConfig

    def __init__(self, cfg: MulTConfig):
        super().__init__(cfg)
        d = cfg.d
        self.proj = nn.ModuleDict()
        for m, d_in, k in zip("tav", cfg.dims, cfg.conv_kernels, strict=True):
            # MulT/MMSA: identity when the input already has width d
            self.proj[m] = nn.Identity() if d_in == d else nn.Conv1d(d_in, d, kernel_size=k, padding=0, bias=False)
        source_dropout = {"t": cfg.attn_dropout, "a": cfg.attn_dropout_a, "v": cfg.attn_dropout_v}

        def stack(width: int, attn_dropout: float, layers: int) -> CrossModalTransformer:
            return CrossModalTransformer(
                width, cfg.heads, layers, attn_dropout, cfg.relu_dropout, cfg.res_dropout,
                cfg.embed_dropout, causal=cfg.causal_mask, positions=cfg.positions,
            )

        # cross[target + source]: e.g. "ta" = text attending to audio (uses audio's attention dropout)
        self.cross = nn.ModuleDict(
            {t + s: stack(d, source_dropout[s], cfg.layers) for t in "tav" for s in "tav" if s != t}
        )
        self.memory = nn.ModuleDict({m: stack(2 * d, cfg.attn_dropout, max(cfg.layers, 3)) for m in "tav"})
        width = 6 * d
        self.head_fc1, self.head_fc2 = nn.Linear(width, width), nn.Linear(width, width)
        self.out = nn.Linear(width, cfg.n_out)

    def forward(self, batch) -> ModelOutput:
        cfg = self.cfg
        text = dropout(batch.text_feats, cfg.text_dropout, self.training)
        seqs = {}
        for m, x in (("t", text), ("a", batch.audio), ("v", batch.vision)):
            # Conv1d wants (B, C, T); the transformers run batch-first (B, T, d)
            seqs[m] = self.proj[m](x.transpose(1, 2)).transpose(1, 2)
        last = {}
        for m in "tav":
            others = [s for s in "tav" if s != m]
            pair = torch.cat([self.cross[m + s](seqs[m], seqs[s]) for s in others], dim=-1)
            last[m] = self.memory[m](pair, last_only=True)[:, -1]  # MulT reads only the last step
        h = torch.cat([last["t"], last["a"], last["v"]], dim=-1)
        h_proj = self.head_fc2(dropout(F.relu(self.head_fc1(h)), cfg.out_dropout, self.training)) + h
        return ModelOutput(pred=self.out(h_proj), features={**last, "f": h})

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        # a branch: its input projection, the transformers where it is the target, its memory
        return {
            m: [*self.proj[m].parameters(), *(p for k, c in self.cross.items() if k[0] == m for p in c.parameters()),
                *self.memory[m].parameters()]
            for m in "tav"
        }


# -- presets ------------------------------------------------
_MMSA_MOSI = MulTConfig(
    dims=(768, 5, 20), setting="unaligned",  # MMSA unaligned_50, `text` features
    d=50, heads=10, layers=4, conv_kernels=(5, 5, 5), positions=False,  # MMSA config_regression.json mosi
    text_dropout=0.5, embed_dropout=0.2, attn_dropout=0.3, attn_dropout_a=0.2, attn_dropout_v=0.0,
    relu_dropout=0.0, res_dropout=0.0, out_dropout=0.5,
    optimizer="adam", lr=2e-3, weight_decay=0.0,  # torch Adam (MMSA trains/singleTask/MULT.py:21); config wd 5e-3 never reaches it
    batch_size=16, grad_accum_steps=8,  # update_epochs 8 (trailing group applied: harness fix)
    clip_grad_value=0.6,  # clip_grad_value_ after every backward
    scheduler="plateau", scheduler_patience=5, scheduler_factor=0.1,
    max_epochs=200, early_stop_patience=8,  # early_stop 8; 200-epoch cap is a harness decision
)
_MMSA_MOSEI = MulTConfig(
    dims=(768, 74, 35), setting="unaligned",
    d=30, heads=6, layers=4, conv_kernels=(5, 1, 3), positions=False,  # MMSA mosei
    text_dropout=0.3, embed_dropout=0.0, attn_dropout=0.4, attn_dropout_a=0.0, attn_dropout_v=0.0,
    relu_dropout=0.0, res_dropout=0.0, out_dropout=0.5,
    optimizer="adam", lr=5e-4, weight_decay=0.0,
    batch_size=4, grad_accum_steps=8, clip_grad_value=0.6,
    scheduler="plateau", scheduler_patience=20, max_epochs=200, early_stop_patience=8,
)
_MMSA_SIMS = MulTConfig(
    dims=(768, 33, 709), setting="unaligned",  # MMSA SIMS/Processed/unaligned_39.pkl, `text` features
    d=50, heads=10, layers=2, conv_kernels=(5, 1, 1), positions=False,  # MMSA config_regression.json mult sims
    text_dropout=0.3, embed_dropout=0.1, attn_dropout=0.2, attn_dropout_a=0.1, attn_dropout_v=0.0,
    relu_dropout=0.0, res_dropout=0.2, out_dropout=0.1,
    optimizer="adam", lr=2e-3, weight_decay=0.0,  # config wd 1e-3 never reaches MMSA's Adam (as for mosi)
    batch_size=16, grad_accum_steps=8, clip_grad_value=0.6,  # update_epochs 8, grad_clip 0.6
    scheduler="plateau", scheduler_patience=10, scheduler_factor=0.1,  # patience 10
    max_epochs=200, early_stop_patience=8,
)
# CH-SIMS v2: MMSA 2.2.1 has no SIMS v2 configuration; harness decision: the SIMS preset with the
# ch-simsv2s.pkl widths (ch-sims-v2 config feature_dims 768/25/177)
_SIMSV2 = replace(_MMSA_SIMS, dims=(768, 25, 177))
_PAPER_MOSI = MulTConfig(
    dims=(768, 5, 20), setting="unaligned",  # harness: MMSA `text` 768-d instead of GloVe
    d=40, heads=10, layers=4, conv_kernels=(1, 3, 3), positions=True,  # MulT paper Table 5
    text_dropout=0.2, embed_dropout=0.2,  # original reuses embed_dropout on the text input
    attn_dropout=0.2, attn_dropout_a=0.0, attn_dropout_v=0.0,  # a/v: main.py defaults
    relu_dropout=0.1, res_dropout=0.1, out_dropout=0.1,  # main.py defaults / Table 5
    optimizer="adam", lr=1e-3, batch_size=128, clip_grad_norm=0.8,  # torch Adam (src/train.py:38, main.py:60 --optim)
    scheduler="plateau", scheduler_patience=20,  # --when 20
    max_epochs=100, early_stop_patience=None,  # fixed epochs, best validation loss
    val_loss_decimals=None,
)
_PAPER_MOSEI = MulTConfig(
    dims=(768, 74, 35), setting="unaligned",
    d=40, heads=8, layers=4, conv_kernels=(1, 3, 3), positions=True,
    text_dropout=0.3, embed_dropout=0.3, attn_dropout=0.1, attn_dropout_a=0.0, attn_dropout_v=0.0,
    relu_dropout=0.1, res_dropout=0.1, out_dropout=0.1,
    optimizer="adam", lr=1e-3, batch_size=16, clip_grad_norm=1.0,
    scheduler="plateau", scheduler_patience=20, max_epochs=20, early_stop_patience=None, val_loss_decimals=None,
)
_PAPER_IEMOCAP = MulTConfig(
    task="iemocap", n_out=8, dims=(300, 74, 35), setting="aligned",  # MulT iemocap_data.pkl, GloVe 300
    d=40, heads=10, layers=4, conv_kernels=(3, 5, 3), positions=True,
    text_dropout=0.3, embed_dropout=0.3, attn_dropout=0.25, attn_dropout_a=0.0, attn_dropout_v=0.0,
    relu_dropout=0.1, res_dropout=0.1, out_dropout=0.1,
    optimizer="adam", lr=2e-3, batch_size=32, clip_grad_norm=0.8,
    scheduler="plateau", scheduler_patience=20, max_epochs=30, early_stop_patience=None, val_loss_decimals=None,
)
# synthetic "demo" (harness decision): MOSEI's width (d=30, 6 heads) at depth 2 on MOSI dims, so one
# CPU epoch takes seconds, not a minute; MMSA MOSI dropouts and optimiser; no accumulation.
_DEMO = replace(_MMSA_MOSI, d=30, heads=6, layers=2, batch_size=32, grad_accum_steps=1,
                scheduler_patience=2, max_epochs=5, early_stop_patience=2)

PRESETS = {
    ("mosi", "mmsa"): _MMSA_MOSI,
    ("mosei", "mmsa"): _MMSA_MOSEI,
    ("sims", "mmsa"): _MMSA_SIMS,
    ("simsv2", "mmsa"): _SIMSV2,
    ("mosi", "paper"): _PAPER_MOSI,
    ("mosei", "paper"): _PAPER_MOSEI,
    ("iemocap", "paper"): _PAPER_IEMOCAP,  # MMSA 2.2.1 has no IEMOCAP: paper preset only
    ("synthetic", "demo"): _DEMO,
    ("synthetic", "mmsa"): _MMSA_MOSI,  # the full MOSI configurations on synthetic data
    ("synthetic", "paper"): _PAPER_MOSI,
}
# `bench tune` search space: MMSA 2.2.1 config/config_tune.json `mult` debugParams (MMSA name in
# brackets). Not searched: weight_decay [0, 0.001, 0.005], which MMSA's Adam never receives.
_TUNE = "MMSA 2.2.1 config_tune.json mult"
SEARCH_SPACE = {
    "attn_dropout_a": choice(0.0, 0.1, 0.2, source=_TUNE),
    "attn_dropout_v": choice(0.0, 0.1, 0.2, source=_TUNE),
    "relu_dropout": choice(0.0, 0.1, 0.2, source=_TUNE),
    "embed_dropout": choice(0.0, 0.1, 0.2, source=_TUNE),
    "res_dropout": choice(0.0, 0.1, 0.2, source=_TUNE),
    "d,heads": choice((30, 6), (30, 10), (32, 8), (36, 6), (40, 5), (40, 8), (40, 10), (50, 10),
                      source=f"{_TUNE} [dst_feature_dim_nheads]"),
    "batch_size": choice(4, 8, 16, source=_TUNE),
    "lr": choice(5e-4, 1e-3, 2e-3, 5e-3, source=f"{_TUNE} [learning_rate]"),
    "layers": choice(2, 4, 6, source=f"{_TUNE} [nlevels]"),
    "conv_kernels[0]": choice(1, 3, 5, source=f"{_TUNE} [conv1d_kernel_size_l]"),
    "conv_kernels[1]": choice(1, 3, 5, source=f"{_TUNE} [conv1d_kernel_size_a]"),
    "conv_kernels[2]": choice(1, 3, 5, source=f"{_TUNE} [conv1d_kernel_size_v]"),
    "text_dropout": choice(0.1, 0.2, 0.3, 0.4, 0.5, source=_TUNE),
    "attn_dropout": choice(0.1, 0.2, 0.3, 0.4, 0.5, source=_TUNE),
    "out_dropout": choice(0.1, 0.2, 0.3, 0.4, 0.5, source=f"{_TUNE} [output_dropout]"),
    "clip_grad_value": choice(0.6, 0.8, 1.0, source=f"{_TUNE} [grad_clip]"),
    "scheduler_patience": choice(5, 10, 20, source=f"{_TUNE} [patience: ReduceLROnPlateau]"),
}


@register_model("mult", config=MulTConfig, presets=PRESETS, default_preset="mmsa", search_space=SEARCH_SPACE,
                display_name="MulT", paper="Tsai et al., ACL 2019",
                reference="https://github.com/yaohungt/Multimodal-Transformer; MMSA==2.2.1",
                family="transformer fusion", order=30)
def mult(cfg: MulTConfig) -> MulT:
    """MulT (Tsai et al., ACL 2019): cross-modal transformers over unaligned sequences."""
    return MulT(cfg)
