"""ALMT: Adaptive Language-guided Multimodal Transformer (Zhang et al., EMNLP 2023).

Sources: thuiar/MMSA at commit a94e65d07fa1ae0d44e552390074b29b0898edfd
`models/singleTask/ALMT.py`, `trains/singleTask/ALMT.py`, `config/config_regression.json`
("mmsa" preset). MMSA 2.2.1 on PyPI does not ship ALMT. The network is the authors' own
(Haoyu-ha/ALMT `models/almt.py`, `models/almt_layer.py`, commit da94610): the layer code is the
same line for line and the model computes the same function.

Forward (no padding masks anywhere after BERT, as in the reference: padded steps take part in
every attention):
1. BERT last hidden states over the padded token columns;
2. per modality: Linear(d_m -> d), then a pre-norm ViT encoder over [8 learned tokens; x] +
   learned positions, keeping the 8 learned tokens -> h_t, h_a, h_v (B, 8, d);
3. the text encoder (AHL_depth - 1 layers) keeps every layer's output h_t^0..h_t^{D-1};
4. AHL: h_hyper starts as a learned (8, d) table; layer i: h_hyper <- LN(h_hyper) +
   W_o (Attn(LN h_t^i -> LN h_a) + Attn(LN h_t^i -> LN h_v)) (the residual is on the
   normalised h_hyper, as the reference's in-place `h_hyper += shift` on the LayerNorm output);
5. cross transformer: a shared learned token is prepended to h_hyper (source) and h_t^{D-1}
   (target), each with its own positions; queries from the target; its first token ->
   Linear(d -> 1).
Loss: MSE (trainer `nn.MSELoss()`); AdamW over all parameters; the authors' warm-up + cosine
per-epoch schedule (MMSA's copy of `get_scheduler` returns nothing, see the model card).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel, Schedule, task_loss
from models.layers.text_encoder import build_text_encoder
from models.registry import choice, register_model


@dataclass(kw_only=True)
class ALMTConfig(ModelConfig):
    text_input: str = "ids"  # MMSA `text_bert` (use_bert, use_finetune true)
    setting: str = "unaligned"  # need_data_aligned false: unaligned_50
    text_encoder: str = "bert-base-uncased"  # local dir | "bert-base" | "tiny" | cached hub name
    text_vocab_size: Optional[int] = None  # vocabulary of a named random-init config (tiny)
    feature_length: tuple[int, int, int] = (50, 375, 500)  # longest t/a/v sequence: sizes the position tables
    dst_feature_dims: int = 128  # d: projection, token and fusion width
    dst_feature_hidden_dims: int = 128  # MLP width of the embedding encoders
    dst_embedding_length: int = 8  # learned tokens per modality (= h_hyper length)
    embedding_depth: tuple[int, int, int] = (1, 1, 1)
    embedding_heads: tuple[int, int, int] = (8, 8, 8)
    dim_head: int = 64  # head width of every ViT attention (reference default, not in the config)
    l_encoder_heads: int = 8
    ahl_depth: int = 3  # AHL_depth: AHL layers; the text encoder has AHL_depth - 1
    h_hyper_layer_heads: int = 8  # AHL head width is d / heads
    fusion_hidden_d: int = 128
    fusion_heads: int = 8
    fusion_layer_depth: int = 2
    loss: str = "mse"  # trains/singleTask/ALMT.py criterion nn.MSELoss(); "l1" harness switch
    lr_schedule: str = "warmup_cosine"  # authors' get_scheduler | "constant" (harness switch)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, heads * dh) -> (B, heads, N, dh)."""
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) v on split heads, merged back to (B, N, heads * dh)."""
    out = torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1) @ v
    return out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1)


def out_projection(dim: int, heads: int, dim_head: int) -> nn.Module:
    """Linear(heads * dh -> d), or Identity for one head of width d (reference `project_out`)."""
    return nn.Identity() if heads == 1 and dim_head == dim else nn.Sequential(nn.Linear(heads * dim_head, dim))


class Attention(nn.Module):
    """Multi-head attention with bias-free q/k/v projections."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        inner = dim_head * heads
        self.heads, self.scale = heads, dim_head ** -0.5
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = out_projection(dim, heads, dim_head)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(x, self.heads) for x in (self.to_q(q), self.to_k(k), self.to_v(v)))
        return self.to_out(attend(q, k, v, self.scale))


class HyperAttention(nn.Module):
    """AHL attention: text queries, separate key/value projections for audio (ta) and vision (tv)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        dim_head = dim // heads
        inner = dim_head * heads
        self.heads, self.scale = heads, dim_head ** -0.5
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k_ta, self.to_k_tv = nn.Linear(dim, inner, bias=False), nn.Linear(dim, inner, bias=False)
        self.to_v_ta, self.to_v_tv = nn.Linear(dim, inner, bias=False), nn.Linear(dim, inner, bias=False)
        self.to_out = out_projection(dim, heads, dim_head)

    def forward(self, h_t: torch.Tensor, h_a: torch.Tensor, h_v: torch.Tensor) -> torch.Tensor:
        """W_o (Attn(h_t -> h_a) + Attn(h_t -> h_v)): the shift added to h_hyper."""
        def split(x: torch.Tensor) -> torch.Tensor:
            return split_heads(x, self.heads)
        q = split(self.to_q(h_t))
        out_ta = attend(q, split(self.to_k_ta(h_a)), split(self.to_v_ta(h_a)), self.scale)
        out_tv = attend(q, split(self.to_k_tv(h_v)), split(self.to_v_tv(h_v)), self.scale)
        return self.to_out(out_ta + out_tv)


class PreNormAttention(nn.Module):
    def __init__(self, dim: int, fn: Attention):
        super().__init__()
        self.norm_q, self.norm_k, self.norm_v = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm_q(q), self.norm_k(k), self.norm_v(v))


class PreNormForward(nn.Module):
    """LN -> Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn: Any = nn.Module()  # `fn.net`: the reference's parameter names
        self.fn.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Identity(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn.net(self.norm(x))


def encoder_layers(dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int) -> nn.ModuleList:
    """`depth` x [pre-norm attention, pre-norm feed-forward] (reference TransformerEncoder)."""
    return nn.ModuleList(
        nn.ModuleList([PreNormAttention(dim, Attention(dim, heads, dim_head)), PreNormForward(dim, mlp_dim)])
        for _ in range(depth)
    )


def layer_pairs(layers: nn.ModuleList) -> list[tuple[Any, Any]]:
    """(attention, feed-forward) of each layer from `encoder_layers`."""
    return [(layer[0], layer[1]) for layer in layers]  # type: ignore[index]


class Encoder(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int):
        super().__init__()
        self.layers = encoder_layers(dim, depth, heads, dim_head, mlp_dim)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output, the input first."""
        hidden = [x]
        for attn, ff in layer_pairs(self.layers):
            x = attn(x, x, x) + x
            x = ff(x) + x
            hidden.append(x)
        return hidden


class TokenTransformer(nn.Module):
    """[token_len learned tokens; x] + learned positions -> the encoder (reference `Transformer`)."""

    def __init__(self, num_frames: int, token_len: Optional[int], dim: int, depth: int, heads: int,
                 dim_head: int, mlp_dim: int):
        super().__init__()
        self.token_len, self.num_frames = token_len or 0, num_frames
        self.pos_embedding = nn.Parameter(torch.randn(1, num_frames + self.token_len, dim))
        self.extra_token = nn.Parameter(torch.zeros(1, token_len, dim)) if token_len else None
        self.encoder = Encoder(dim, depth, heads, dim_head, mlp_dim)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b, n, _ = x.shape
        if n > self.num_frames:
            raise ValueError(f"sequence of {n} steps is longer than the model's position table ({self.num_frames}): "
                             f"config key 'feature_length' must be at least the data's padded length")
        if self.extra_token is not None:
            x = torch.cat([self.extra_token.expand(b, -1, -1), x], dim=1)
        return self.encoder(x + self.pos_embedding[:, :n + self.token_len])


class HyperLayer(nn.Module):
    """One AHL layer: LN on each input; the attention shift is added to LN(h_hyper)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.norm2, self.norm3, self.norm4 = (nn.LayerNorm(dim) for _ in range(4))
        self.fn = HyperAttention(dim, heads)

    def forward(self, h_t: torch.Tensor, h_a: torch.Tensor, h_v: torch.Tensor, h_hyper: torch.Tensor) -> torch.Tensor:
        return self.norm4(h_hyper) + self.fn(self.norm1(h_t), self.norm2(h_a), self.norm3(h_v))


class CrossTransformer(nn.Module):
    """A shared learned token before source and target, separate positions; queries from the target."""

    def __init__(self, frames: int, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int):
        super().__init__()
        self.pos_embedding_s = nn.Parameter(torch.randn(1, frames + 1, dim))
        self.pos_embedding_t = nn.Parameter(torch.randn(1, frames + 1, dim))
        self.extra_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.layers = encoder_layers(dim, depth, heads, dim_head, mlp_dim)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        token = self.extra_token.expand(source.shape[0], -1, -1)
        source = torch.cat([token, source], dim=1) + self.pos_embedding_s[:, :source.shape[1] + 1]
        target = torch.cat([token, target], dim=1) + self.pos_embedding_t[:, :target.shape[1] + 1]
        for attn, ff in layer_pairs(self.layers):
            target = attn(target, source, source) + target
            target = ff(target) + target
        return target


class ALMT(MSAModel):
    cfg: ALMTConfig

    def __init__(self, cfg: ALMTConfig):
        super().__init__(cfg)
        if cfg.loss not in ("mse", "l1"):
            raise ValueError(f"config key 'loss'='{cfg.loss}' is not valid for ALMT (expected 'mse' or 'l1')")
        if cfg.lr_schedule not in ("warmup_cosine", "constant"):
            raise ValueError(f"config key 'lr_schedule'='{cfg.lr_schedule}' is not valid (expected 'warmup_cosine' or 'constant')")
        d, n = cfg.dst_feature_dims, cfg.dst_embedding_length
        self.text = build_text_encoder(cfg.text_encoder, cfg.text_vocab_size)  # pooler built, unused (as MMSA)
        widths = (self.text.hidden_size, cfg.dims[1], cfg.dims[2])
        self.embedding = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(widths[i], d),
                             TokenTransformer(cfg.feature_length[i], n, d, cfg.embedding_depth[i],
                                              cfg.embedding_heads[i], cfg.dim_head, cfg.dst_feature_hidden_dims))
            for i, m in enumerate("tav")
        })
        self.l_encoder = TokenTransformer(n, None, d, cfg.ahl_depth - 1, cfg.l_encoder_heads, cfg.dim_head, d)
        self.h_hyper = nn.Parameter(torch.ones(1, n, d))
        self.h_hyper_layer = nn.ModuleList(HyperLayer(d, cfg.h_hyper_layer_heads) for _ in range(cfg.ahl_depth))
        self.fusion_layer = CrossTransformer(n, d, cfg.fusion_layer_depth, cfg.fusion_heads, cfg.dim_head,
                                             cfg.fusion_hidden_d)
        self.regression_head = nn.Linear(d, cfg.n_out)

    def forward(self, batch) -> ModelOutput:
        n = self.cfg.dst_embedding_length
        seq = {"t": self.text(batch.text_ids, batch.text_mask, batch.text_segment), "a": batch.audio, "v": batch.vision}
        h = {m: self.embedding[m](seq[m])[-1][:, :n] for m in "tav"}
        h_t_list = self.l_encoder(h["t"])
        h_hyper = self.h_hyper.expand(h["t"].shape[0], -1, -1)
        for layer, h_t in zip(self.h_hyper_layer, h_t_list, strict=True):
            h_hyper = layer(h_t, h["a"], h["v"], h_hyper)
        feat = self.fusion_layer(h_hyper, h_t_list[-1])[:, 0]
        return ModelOutput(pred=self.regression_head(feat), features={"t": h_t_list[-1][:, 0], "f": feat})

    def loss(self, output: ModelOutput, batch) -> dict[str, torch.Tensor]:
        if self.cfg.task == "regression" and self.cfg.loss == "mse":
            task = F.mse_loss(output.pred.reshape(-1).float(), batch.labels.reshape(-1).float())
        else:
            task = task_loss(output.pred, batch.labels, self.cfg.task)
        return {"total": task, "task": task}

    def lr_schedule(self) -> Schedule:
        """Haoyu-ha/ALMT core/scheduler.py: GradualWarmupScheduler(multiplier=1, total_epoch=0.1 N) then
        CosineAnnealingLR(T_max=0.9 N), stepped per epoch (epoch 0 trains at lr 0)."""
        if self.cfg.lr_schedule == "constant":
            return Schedule(source="harness switch: constant lr")
        return Schedule(kind="warmup_cosine_epochs", warmup_ratio=0.1, epochs=self.cfg.max_epochs,
                        source="Haoyu-ha/ALMT core/scheduler.py get_scheduler (MMSA's copy returns None)")

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        # text: BERT, its embedding and the text encoder; AHL, fusion and head are shared
        return {
            "t": [*self.text.parameters(), *self.embedding["t"].parameters(), *self.l_encoder.parameters()],
            "a": list(self.embedding["a"].parameters()),
            "v": list(self.embedding["v"].parameters()),
        }

    def summary(self) -> dict[str, Any]:
        return {"loss": self.cfg.loss, "lr_schedule": self.cfg.lr_schedule}


# -- presets ---------------------------------------------------
_CFG = "MMSA a94e65d config_regression.json almt"
_MMSA_MOSI = ALMTConfig(  # {_CFG} mosi (+ commonParams)
    dims=(768, 5, 20), feature_length=(50, 375, 500),  # feature_dims, feature_length
    optimizer="adamw", lr=1e-4, weight_decay=1e-4,  # trainer torch AdamW(model.parameters()); learning_rate, weight_decay
    batch_size=64, max_epochs=200, early_stop_patience=32,  # batch_size; commonParams max_epochs 200, early_stop 32
    # max_grad_norm 2 is in the config but neither MMSA's nor the authors' trainer clips: not applied
    dst_feature_dims=128, dst_feature_hidden_dims=128, dst_embedding_length=8,
    embedding_depth=(1, 1, 1), embedding_heads=(8, 8, 8), l_encoder_heads=8, ahl_depth=3,
    h_hyper_layer_heads=8, fusion_hidden_d=128, fusion_heads=8, fusion_layer_depth=2,
)
_MMSA_MOSEI = replace(_MMSA_MOSI, dims=(768, 74, 35), feature_length=(50, 500, 500),  # almt mosei
                      fusion_layer_depth=4)
_MMSA_SIMS = replace(  # almt sims: pretrained bert-base-chinese (--text-encoder PATH)
    _MMSA_MOSEI, dims=(768, 33, 709), feature_length=(39, 400, 55),
    text_encoder="bert-base-chinese", text_vocab_size=21128,
)
# synthetic `demo` (harness decision): tiny random-init BERT, the synthetic 50-step sequences,
# one fusion layer, 4 CPU epochs at a constant lr 5e-4 (the warm-up would spend them near 0)
_DEMO = replace(_MMSA_MOSI, text_encoder="tiny", text_vocab_size=2048, feature_length=(50, 50, 50),
                dst_feature_dims=32, dst_feature_hidden_dims=32, fusion_hidden_d=32, dim_head=16,
                embedding_heads=(2, 2, 2), l_encoder_heads=2, h_hyper_layer_heads=2, fusion_heads=2,
                fusion_layer_depth=1, lr=5e-4, batch_size=32, max_epochs=4, early_stop_patience=2,
                lr_schedule="constant")
PRESETS = {("mosi", "mmsa"): _MMSA_MOSI, ("mosei", "mmsa"): _MMSA_MOSEI, ("sims", "mmsa"): _MMSA_SIMS,
           ("synthetic", "demo"): _DEMO}
UNSUPPORTED = {
    "iemocap": "ALMT is configured for regression only (MMSA and the authors' repository have no IEMOCAP setting)",
    "simsv2": "MMSA's config_regression.json has no CH-SIMS v2 row for ALMT",
}
# `bench tune`: MMSA's config_tune.json has no `almt` entry; harness decision: the widths and
# depths of the authors' paper ablations around the MMSA preset, and the optimiser's lr / decay
_TUNE = "harness decision (no almt entry in MMSA config_tune.json)"
SEARCH_SPACE = {
    "lr": choice(5e-5, 1e-4, 2e-4, source=_TUNE),
    "weight_decay": choice(1e-4, 1e-3, source=_TUNE),
    "batch_size": choice(32, 64, source=_TUNE),
    "ahl_depth": choice(2, 3, 4, source=_TUNE),
    "fusion_layer_depth": choice(2, 4, source=_TUNE),
}


@register_model("almt", config=ALMTConfig, presets=PRESETS, default_preset="mmsa", unsupported=UNSUPPORTED,
                search_space=SEARCH_SPACE,
                display_name="ALMT", paper="Zhang et al., EMNLP 2023",
                reference="https://github.com/Haoyu-ha/ALMT; thuiar/MMSA@a94e65d07fa1ae0d44e552390074b29b0898edfd",
                family="BERT + fusion", order=62)
def almt(cfg: ALMTConfig) -> ALMT:
    """ALMT (Zhang et al., EMNLP 2023): language-guided hyper-modality learning over BERT + ViT encoders."""
    return ALMT(cfg)
