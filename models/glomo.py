"""GLoMo: Global-Local Modal fusion with modality-specific mixtures of experts (Zhuang et al.,
ACM MM 2024).

Source (the reference): YetZzzzzz/GLoMo@90f5b3f (MIT) `GLoMo_MSA/GLoMo.py`, `MoE.py`,
`main_GLoMo.py`, `modules/transformer.py`; the run lines of `GLoMo_MSA/readme.md`.
Forward order (nothing is masked, as coded: convs, max-pools and transformers see the padding):
1. text: BERT without pooler. Global = Linear(hidden -> d)(last-layer [CLS]); local =
   Conv1d(hidden -> d, k3, p1, no bias) over [last layer ‖ second-to-last layer] joined along
   the *sequence* axis (2L steps), then AdaptiveMaxPool1d(3) -> (B, d, 3);
2. audio / vision: Conv1d(D -> d, k3, p1, no bias) -> MulT/MIB transformer encoder (x*sqrt(d)
   + sinusoidal positions, pre-LN, FFN 4d, final LN, no mask) -> global AdaptiveMaxPool1d(1)
   and local AdaptiveMaxPool1d(3);
3. one noisy top-k MoE per modality on the flattened local (B, 3d) (channel-major): 3 experts
   Linear(3d, d)-ReLU-Linear(d, d), k = 2, zero-initialised w_gate / w_noise, combined in log
   space, y = log(sum_i g_i exp(E_i(x))) (MoE.py SparseDispatcher.combine), plus the
   load-balancing loss 0.01 * (CV²(importance) + CV²(load));
4. fusion: the 6 tokens [glob_t, moe_t, glob_a, moe_a, glob_v, moe_v] through a 2-layer
   `nn.TransformerEncoder` (PyTorch defaults: FF 2048, dropout 0.1, ReLU, post-LN); attention
   pooling over the global outputs (h0, h2, h4) and over the local ones (h1, h3, h5);
   Z1 = fc_all([pooled_g; pooled_l]); Z2 = sum_m w^global_m fc_m([h_glob_m; h_loc_m]);
   pred = Linear(2d -> 1)([Z1; Z2]) (no nonlinearity between these linears, as coded).
Loss: L1(pred, y) + the three MoE losses (main_GLoMo.py train_epoch).

Separable: every branch, its MoE included, reads only its own modality (the gates of a
sample depend on that sample's own local vector), so `encode` gives per-modality vectors
[global; MoE(local)] and `fuse` is steps 4 on; the MoE loss is batch-level but never enters
the prediction.

Parameters (built with bert-base shapes, tests/test_glomo.py): MOSI MAG widths (74/47, d 48, 4
layers) 109,818,887 and MOSEI (74/35, d 192, 3 layers) 115,949,447, both exactly a hand count
of the released code's layers and the PaSE supplement's MOSI figure; all receive a gradient
(w_noise through the noisy logits and the load loss). On MMSA aligned_50 widths: MOSI (5/20)
109,805,063, MOSEI (74/35) 115,949,447.

Initialisation (`init="bert"`, [mem] transformers 4.30 `from_pretrained` fast init): every
module missing from the BERT checkpoint is re-initialised by BertPreTrainedModel._init_weights,
i.e. Linear N(0, 0.02) / zero bias and LayerNorm (1, 0); Conv1d keeps PyTorch's default, the
MulT in-projections stay xavier and the two fusion layers share their (deep-copied) initial
in-projection; w_gate / w_noise stay zero.

Harness deviations: selection on validation L1 loss (the code selects nothing and prints the
validation MSE; its authors pick "mostly lowest validation loss"); evaluation in split order
(the code shuffles dev/test, harmless: per-sample outputs). The optimizer is the code's
transformers AdamW (`adamw_hf`: eps added before the bias correction, decay after the update),
re-created every epoch (`reset_optimizer_each_epoch`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel, Schedule, task_loss
from models.layers.bert_classifier import UNSUPPORTED as BERT_UNSUPPORTED
from models.layers.text_encoder import build_text_encoder
from models.layers.transformer import CrossModalTransformer
from models.registry import register_model

COMBINES = ("log", "linear")
INITS = ("bert", "torch")
NO_DECAY = ("bias", "LayerNorm.weight")  # main_GLoMo.py train_epoch: a name rule (only BERT's LNs are "LayerNorm")
CV_EPS = 1e-10  # MoE.py cv_squared
# IEMOCAP: a harness preset (the GLoMo repository has no IEMOCAP code), see PRESETS
# CH-SIMS / CH-SIMS v2: the reference trains on word-aligned MAG/MIB pickles (one audio/vision row per
# word); CH-SIMS is published unaligned only (no aligned or word-aligned pickle exists)
UNSUPPORTED = {**BERT_UNSUPPORTED, **dict.fromkeys(("sims", "simsv2"), "GLoMo reads word-aligned audio/vision (MAG/MIB "
                                                                      "pickles or aligned_50); CH-SIMS files are published unaligned only")}


@dataclass(kw_only=True)
class GLoMoConfig(ModelConfig):
    text_input: str = "ids"  # main_GLoMo.py: BERT token ids, mask, segment ids
    setting: str = "aligned"  # MAG/MIB word-aligned pickles; MMSA aligned_50 is the same alignment
    dims_from_data: bool = True  # official widths are MAG's (74/47, 74/35); MMSA pickles give 5/20, 74/35
    text_encoder: str = "bert-base-uncased"  # README: bert-base-uncased in BERT_EN/
    text_vocab_size: Optional[int] = None  # vocabulary of a named random-init config (tiny)
    d: int = 48  # --d_l (MOSI run line)
    layers: int = 4  # --layers: audio/vision transformer depth (MOSI run line)
    heads: int = 16  # --num_heads: audio/vision transformers and the fusion transformer
    granularity: tuple[int, int, int] = (3, 3, 3)  # --gran_t/a/v: local max-pool bins
    experts: tuple[int, int, int] = (3, 3, 3)  # --experts_t/a/v
    top_k: int = 2  # --k
    noisy_gating: bool = True  # MoE(noisy_gating=True)
    noise_epsilon: float = 1e-2  # MoE.noisy_top_k_gating noise_epsilon
    moe_loss_weight: float = 1e-2  # MoE.forward loss_coef; appendix omega = 1e-2
    moe_combine: str = "log"  # "log": code's log(sum g exp(E)) (MoE.py combine); "linear": sum g E (Shazeer)
    moe_cdf_mean: float = 0.1  # MoE.py registers Normal(mean=0.1, std=1) for P(in top-k); Shazeer: 0
    positions: bool = True  # MIB TransformerEncoder adds sinusoidal positions
    attn_dropout: float = 0.5  # --attn_dropout
    relu_dropout: float = 0.3  # --relu_dropout
    res_dropout: float = 0.3  # --res_dropout
    embed_dropout: float = 0.2  # --embed_dropout
    fusion_layers: int = 2  # GLoMo.py: nn.TransformerEncoder(..., num_layers=2)
    fusion_ff: int = 2048  # nn.TransformerEncoderLayer default dim_feedforward
    fusion_dropout: float = 0.1  # nn.TransformerEncoderLayer default dropout
    pool_dropout: float = 0.3  # GLoMo.py Attention(dropout=0.3)
    init: str = "bert"  # "bert": HF fast init of non-checkpoint modules ([mem], module doc); "torch": constructors' own
    reset_optimizer_each_epoch: bool = True  # main_GLoMo.py train_epoch builds a new AdamW every epoch (:356-364)
    lr_milestones: tuple[int, ...] = (80, 100)  # --schedule 80 100 (adjust_learning_rate, x lr_decay each)
    lr_decay: float = 0.1  # adjust_learning_rate: lr *= 0.1 per milestone reached


def cv_squared(x: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation, unbiased variance (MoE.py cv_squared); 0 for one value."""
    x = x.float()
    return x.new_zeros(()) if x.numel() == 1 else x.var() / (x.mean() ** 2 + CV_EPS)


def normal_cdf(z: torch.Tensor, mean: float) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf((z - mean) / math.sqrt(2.0)))


class ExpertMLP(nn.Module):
    """MoE.py MLP: Linear(d_in, hidden) -> ReLU -> Linear(hidden, d_out)."""

    def __init__(self, d_in: int, d_out: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_in, hidden), nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class NoisyTopKMoE(nn.Module):
    """Sparsely-gated MoE (Shazeer et al. 2017) as GLoMo's MoE.py computes it.

    Every expert runs on the whole batch (3 small MLPs: cheaper than the code's dispatch);
    an expert whose gate is zero contributes exactly 0, as in the sparse dispatch. Gating,
    the load loss and the combination run in float32 outside autocast (the code is fp32).
    """

    def __init__(self, d_in: int, d_out: int, experts: int, hidden: int, k: int, *, noisy: bool = True,
                 noise_epsilon: float = 1e-2, combine: str = "log", cdf_mean: float = 0.1, loss_weight: float = 1e-2):
        super().__init__()
        if not 0 < k <= experts:
            raise ValueError(f"top_k={k} must be in 1..{experts} (the number of experts)")
        if combine not in COMBINES:
            raise ValueError(f"unknown moe_combine '{combine}' (expected one of {COMBINES})")
        self.experts = nn.ModuleList(ExpertMLP(d_in, d_out, hidden) for _ in range(experts))
        self.w_gate = nn.Parameter(torch.zeros(d_in, experts))  # MoE.py: zero-initialised
        self.w_noise = nn.Parameter(torch.zeros(d_in, experts))
        self.k, self.noisy, self.noise_epsilon = k, noisy, noise_epsilon
        self.combine, self.cdf_mean, self.loss_weight = combine, cdf_mean, loss_weight

    def gating(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gates (B, E) with k non-zeros per row, load (E,)) for float32 x (B, d_in)."""
        n_exp = self.w_gate.shape[1]
        logits = clean = x @ self.w_gate
        noisy_train = self.noisy and self.training
        if noisy_train:
            std = F.softplus(x @ self.w_noise) + self.noise_epsilon
            logits = noisy = clean + torch.randn_like(clean) * std
        top, idx = logits.topk(min(self.k + 1, n_exp), dim=1)
        gates = torch.zeros_like(logits).scatter(1, idx[:, : self.k], torch.softmax(top[:, : self.k], dim=1))
        if noisy_train and self.k < n_exp:
            # P(expert in the top k) under fresh noise (MoE.py _prob_in_top_k); Normal(cdf_mean, 1)
            thr_in, thr_out = top[:, self.k : self.k + 1], top[:, self.k - 1 : self.k]
            prob = torch.where(noisy > thr_in, normal_cdf((clean - thr_in) / std, self.cdf_mean),
                               normal_cdf((clean - thr_out) / std, self.cdf_mean))
            load = prob.sum(0)
        else:
            load = (gates > 0).sum(0).float()  # MoE.py _gates_to_load
        return gates, load

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y (B, d_out) float32, load-balancing loss) for x (B, d_in)."""
        outs = torch.stack([e(x) for e in self.experts], dim=1)  # (B, E, d_out)
        with torch.autocast(x.device.type, enabled=False):
            gates, load = self.gating(x.float())
            aux = self.loss_weight * (cv_squared(gates.sum(0)) + cv_squared(load))
            g = gates.unsqueeze(-1)
            outs = outs.float()
            if self.combine == "linear":
                return (g * outs).sum(1), aux
            # MoE.py combine: exp only where a gate is non-zero (those experts are not run there)
            picked = torch.exp(torch.where(g > 0, outs, torch.zeros_like(outs)))
            combined = (g * picked).sum(1)
            # "add eps to all zero values in order to avoid nans when going back to log space"
            combined = torch.where(combined == 0, torch.full_like(combined, torch.finfo(torch.float64).eps), combined)
            return combined.log(), aux


class SequenceBranch(nn.Module):
    """GLoMo.py Audio_Video_network: Conv1d -> MIB transformer -> global and local max-pools."""

    def __init__(self, d_in: int, cfg: GLoMoConfig, bins: int):
        super().__init__()
        self.proj = nn.Conv1d(d_in, cfg.d, kernel_size=3, padding=1, bias=False)
        self.encoder = CrossModalTransformer(cfg.d, cfg.heads, cfg.layers, cfg.attn_dropout, cfg.relu_dropout,
                                             cfg.res_dropout, cfg.embed_dropout, causal=False,
                                             positions=cfg.positions)  # attn_mask=False
        self.bins = bins

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) -> global (B, d), local (B, d * bins), channel-major."""
        h = self.proj(x.transpose(1, 2)).transpose(1, 2)
        h = self.encoder(h).transpose(1, 2)  # (B, d, T); padded steps included, as coded
        return F.adaptive_max_pool1d(h, 1).squeeze(2), F.adaptive_max_pool1d(h, self.bins).flatten(1)


class AttentionPool(nn.Module):
    """GLoMo.py Attention: w = softmax_m(fc_att(ReLU(Dropout(Linear(3d, d)(cat)))) / sqrt(d))."""

    def __init__(self, d: int, hidden: int, dropout: float):
        super().__init__()
        self.mlp = nn.Linear(3 * d, hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc_att = nn.Linear(hidden, 3)
        self.scale = d**-0.5

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(weights (B, 3, 1), sum_m w_m feats_m (B, d)) for three (B, d) inputs."""
        att = self.fc_att(F.relu(self.dropout(self.mlp(torch.cat(feats, dim=1)))))  # Linear -> Dropout -> ReLU
        w = torch.softmax(att.unsqueeze(2) * self.scale, dim=1)
        return w, torch.bmm(torch.stack(feats, dim=2), w).squeeze(2)


class GLoMo(MSAModel):
    cfg: GLoMoConfig

    def __init__(self, cfg: GLoMoConfig):
        super().__init__(cfg)
        if cfg.init not in INITS:
            raise ValueError(f"unknown init '{cfg.init}' (expected one of {INITS})")
        d = cfg.d
        self.text = build_text_encoder(cfg.text_encoder, cfg.text_vocab_size, pooler=False)  # GLoMo_BertModel: no pooler
        hidden = self.text.hidden_size
        self.text_global = nn.Linear(hidden, d)  # GLoMo_BertModel.linear1
        self.text_conv = nn.Conv1d(hidden, d, kernel_size=3, padding=1, bias=False)  # GLoMo_BertModel.proj_l
        self.audio = SequenceBranch(cfg.dims[1], cfg, cfg.granularity[1])
        self.vision = SequenceBranch(cfg.dims[2], cfg, cfg.granularity[2])
        self.moe = nn.ModuleDict({m: NoisyTopKMoE(d * g, d, e, d, cfg.top_k, noisy=cfg.noisy_gating,
                                                  noise_epsilon=cfg.noise_epsilon, combine=cfg.moe_combine,
                                                  cdf_mean=cfg.moe_cdf_mean, loss_weight=cfg.moe_loss_weight)
                                  for m, g, e in zip("tav", cfg.granularity, cfg.experts, strict=True)})
        layer = nn.TransformerEncoderLayer(d, cfg.heads, cfg.fusion_ff, cfg.fusion_dropout, batch_first=True)
        # deep-copies `layer`, as in the code; batch-first on (B, 6, d) = the code's (6, B, d)
        self.fusion = nn.TransformerEncoder(layer, cfg.fusion_layers, enable_nested_tensor=False)
        self.pool_global = AttentionPool(d, d, cfg.pool_dropout)  # attn_cs
        self.pool_local = AttentionPool(d, d, cfg.pool_dropout)  # attn_fs
        self.fc_modality = nn.ModuleDict({m: nn.Linear(2 * d, d) for m in "tav"})  # fc_ts / fc_as / fc_vs
        self.fc_all = nn.Linear(2 * d, d)
        self.classifier = nn.Linear(2 * d, cfg.n_out)
        if cfg.init == "bert":
            for name, module in self.named_children():
                if name != "text":
                    self.text.init_like_bert(module)

    # -- branches (each reads only its own modality) ----------------------------------
    def _branches(self, batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Per-modality [global; MoE(local)] (B, 2d) and the summed MoE losses."""
        hs = self.text.hidden_states(batch.text_ids, batch.text_mask, batch.text_segment)
        last, prev = hs[-1], hs[-2]
        glob = {"t": self.text_global(last[:, 0])}
        # concatenated along the sequence axis (GLoMo.py :216); the conv window crosses the seam
        text_seq = self.text_conv(torch.cat([last, prev], dim=1).transpose(1, 2))
        local = {"t": F.adaptive_max_pool1d(text_seq, self.cfg.granularity[0]).flatten(1)}
        glob["a"], local["a"] = self.audio(batch.audio)
        glob["v"], local["v"] = self.vision(batch.vision)
        moe = {m: self.moe[m](local[m]) for m in "tav"}  # m -> (y, its load-balancing loss)
        reps = {m: torch.cat([glob[m], y.to(glob[m].dtype)], dim=1) for m, (y, _) in moe.items()}
        return reps, torch.stack([loss for _, loss in moe.values()]).sum()

    def encode(self, batch) -> dict[str, torch.Tensor]:
        return self._branches(batch)[0]

    def _fuse(self, reps: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.cfg.d
        tokens = torch.stack([part for m in "tav" for part in (reps[m][:, :d], reps[m][:, d:])], dim=1)
        h = self.fusion(tokens)  # (B, 6, d): [glob_t, loc_t, glob_a, loc_a, glob_v, loc_v]
        w_glob, pooled_glob = self.pool_global([h[:, 0], h[:, 2], h[:, 4]])
        _, pooled_loc = self.pool_local([h[:, 1], h[:, 3], h[:, 5]])
        z1 = self.fc_all(torch.cat([pooled_glob, pooled_loc], dim=1))
        per_mod = torch.stack([self.fc_modality[m](torch.cat([h[:, 2 * i], h[:, 2 * i + 1]], dim=1))
                               for i, m in enumerate("tav")], dim=2)  # (B, d, 3)
        z2 = torch.bmm(per_mod, w_glob).squeeze(2)  # the *global* pooling weights, as coded
        fused = torch.cat([z1, z2], dim=1)
        return self.classifier(fused), fused

    def fuse(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._fuse(reps)[0]

    def forward(self, batch) -> ModelOutput:
        reps, moe_loss = self._branches(batch)
        pred, fused = self._fuse(reps)
        return ModelOutput(pred=pred, features={**reps, "f": fused}, extras={"moe_loss": moe_loss})

    def loss(self, output: ModelOutput, batch) -> dict[str, torch.Tensor]:
        task = task_loss(output.pred, batch.labels, self.cfg.task)  # L1 (main_GLoMo.py train_epoch)
        moe = output.extras["moe_loss"]
        return {"total": task + moe, "task": task, "moe": moe}

    # -- optimisation --------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        live = [(any(k in name for k in NO_DECAY), p) for name, p in self.named_parameters() if p.requires_grad]
        cfg = self.cfg
        return [{"name": "decay", "params": [p for skip, p in live if not skip], "lr": cfg.lr,
                 "weight_decay": cfg.weight_decay},
                {"name": "no_decay", "params": [p for skip, p in live if skip], "lr": cfg.lr, "weight_decay": 0.0}]

    def lr_schedule(self) -> Schedule:
        """The code's train_epoch: a fresh AdamW (moments and step counts reset) and the
        step schedule's lr, every epoch."""
        cfg = self.cfg
        return Schedule(kind="milestones" if cfg.lr_milestones else None, milestones=cfg.lr_milestones,
                        decay=cfg.lr_decay, optimizer_reset="every_epoch" if cfg.reset_optimizer_each_epoch else None,
                        source="main_GLoMo.py train_epoch (:356-364, a new AdamW each epoch), adjust_learning_rate")

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        # a branch: its encoder, its projections and its MoE; fusion, poolings and head are shared
        return {"t": [*self.text.parameters(), *self.text_global.parameters(), *self.text_conv.parameters(),
                      *self.moe["t"].parameters()],
                "a": [*self.audio.parameters(), *self.moe["a"].parameters()],
                "v": [*self.vision.parameters(), *self.moe["v"].parameters()]}


# -- presets ------------------------------------------------------------------------------
# `official`: GLoMo_MSA/readme.md run lines + main_GLoMo.py defaults. On MMSA
# aligned_50 the sequences are the file's 50 steps (text_max_length is read by the MAG loader only).
_OFFICIAL_MOSI = GLoMoConfig(
    dims=(768, 74, 47),  # TEXT_DIM 768, ACOUSTIC_DIM 74, --VISUAL_DIM=47 (MAG MOSI Facet)
    text_max_length=60,  # --max_seq_length=60: the MAG loader pads/truncates to it
    d=48, layers=4,  # --d_l=48 --layers=4
    optimizer="adamw_hf", lr=4e-5, weight_decay=1e-4,  # transformers AdamW (main_GLoMo.py:23, :363), --learning_rate=4e-5, --wd 1e-4
    adam_epsilon=1e-8,  # --adam_epsilon 1e-8 (main_GLoMo.py:73)
    batch_size=240, eval_batch_size=128,  # --train_batch_size=240; --dev/test_batch_size 128
    max_epochs=70, early_stop_patience=None,  # --n_epochs=70, no early stopping (harness: best valid L1)
    val_loss_decimals=None, scheduler=None,  # not MMSA: no rounding; step schedule in lr_schedule()
)
_OFFICIAL_MOSEI = replace(
    _OFFICIAL_MOSI,
    dims=(768, 74, 35), d=192, layers=3, text_max_length=80,  # --VISUAL_DIM=35 --d_l=192 --layers=3 --max_seq_length=80
    lr=1e-5, batch_size=64, max_epochs=100,  # --learning_rate=1e-5 --train_batch_size=64 --n_epochs=100
)
# synthetic `demo` (harness decision): tiny random-init BERT over the 2048-id synthetic
# vocabulary, d 32 with 4 heads, 1-layer a/v encoders, a small fusion FFN; lr 5e-4 as
# bert_text's demo (a random-init encoder learns from scratch); no step schedule.
_DEMO = replace(_OFFICIAL_MOSI, dims=(768, 5, 20), text_encoder="tiny", text_vocab_size=2048,
                d=32, heads=4, layers=1, fusion_ff=64, lr=5e-4, batch_size=32, eval_batch_size=None,
                max_epochs=4, early_stop_patience=2, lr_milestones=())

# IEMOCAP (harness decision; the repository has no IEMOCAP code): the MOSEI preset (MulT's file
# has MOSEI's 74/35 widths) with the MulT protocol's 4 x 2 logits and CE; the loss is task + MoE,
# nothing regression-specific. Text: the words recovered from the GloVe vectors (--glove).
_IEMOCAP = replace(_OFFICIAL_MOSEI, task="iemocap", n_out=8)
PRESETS = {("mosi", "official"): _OFFICIAL_MOSI,
           ("mosei", "official"): _OFFICIAL_MOSEI,
           ("iemocap", "official"): _IEMOCAP,
           ("synthetic", "demo"): _DEMO}


@register_model("glomo", config=GLoMoConfig, presets=PRESETS, default_preset="official", unsupported=UNSUPPORTED,
                display_name="GLoMo", paper="Zhuang et al., ACM MM 2024",
                reference="https://github.com/YetZzzzzz/GLoMo@90f5b3f",
                family="mixture of experts", order=100)
def glomo(cfg: GLoMoConfig) -> GLoMo:
    """GLoMo (Zhuang et al., ACM MM 2024): global-local BERT/MulT encoders, per-modality noisy top-k MoE."""
    return GLoMo(cfg)
