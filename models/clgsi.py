"""CLGSI: Contrastive Learning Guided by Sentiment Intensity (Yang, Dong, Qiang; Findings of NAACL 2024).

Sources: the released code AZYoung233/CLGSI (MIT), HEAD `c1070c8` (2025-02-06) by default and
the paper-era upload `af1f83a` (2024-06-25) as `variant="paper_era"`:
`models/multiTask/CLGSI.py`, `models/contrastive_loss.py`, `trains/multiTask/CLGSI.py`,
`config/config_regression.py`. The code is the reference.

Forward (CLGSI.py `CLGSI.forward`), reading MMSA `unaligned_50` (`text_bert` ids):
  text:   BERT last hidden states over all L tokens -> text_h = ReLU(Linear(Dropout([CLS])));
          skip_t = Sigmoid(Linear(ReLU(Linear(mean over ALL L positions, padding included))))
  audio/vision: x + sinusoidal positions (the PE dropout is defined but not applied) ->
          nn.TransformerEncoder (post-LN, ff 2048, dropout 0.1, no padding mask) ->
          h = ReLU(Linear(Dropout(out[:, -1]))) (the LAST time step, usually padding);
          skip = the same gate branch over the mean of all T steps; every skip outputs P_t
  GLFK:   stack [text_h, audio_h, video_h] (B, P, 3) -> the `GLFK` convolutions -> (B, P)
  head:   [GLFK; skip_t; skip_a; skip_v] -> Dropout -> Linear(4P, 3P_f) -> ReLU(Linear(3P_f,
          2P_f)) -> BatchNorm1d -> Linear(2P_f, 1)
Loss (trains/multiTask/CLGSI.py:144-153): L1 + gamma * CL, CL = L(v,a) + L(v,t) + L(t,a) on
the post-ReLU features text_h/audio_h/video_h with the human labels (see `clgsi_contrastive_loss`).
It is computed in fp32 with autocast disabled: its exponents reach ~38.6 (bf16/fp16 cannot).

Quirks kept as coded, each a switch: the contrastive weights multiply the similarities BEFORE
the exponential, so excluded pairs contribute e^0 = 1 to both sums (`mask_before_exp`; measured
here: every row's positive sum holds its intra diagonal e^(0.996/0.03) ~ e^33.2, so the ones
move the loss by < 2B e^-33, i.e. not at all in fp32 at tau 0.03; they matter at large tau); the
cosine schedule's progress is not clamped, so past `warm_up_epochs` the LR rises again
(`cosine_clamp`); no padding mask, the last (padded) step and means over padding
(`use_lengths`); the paper-era layout (`variant`). Harness decisions: an epoch cap
(`max_epochs` 40, the LCTW re-run's; the code has none, `summary()` records whether it
bound); selection on validation MAE as coded (KeyEval 'MAE'); `.squeeze()` on explicit dims
(the code's bare squeeze breaks on a batch of one); unused modules frozen (`freeze_unused`).

Parameter counts (built on the meta device with bert-base shapes, tests/test_clgsi.py):
110,415,204 (MOSI) and 112,057,061 (MOSEI), as a hand count of the released layers; paper-era MOSI
110,174,480 (skip-net reduction 8: MOSI's audio gate is 5 -> 5//8 = 0 wide, a constant 0.5).
Dead modules count (README HD 4), named `unused_*` here: the registered template encoder
layer of each nn.TransformerEncoder, `post_*_layer_2`, `post_fusion_layer_1`,
`skip_connection_BatchNorm` (146,117 MOSI / 627,465 MOSEI). They are built but never run; `freeze_unused` (default) sets
requires_grad False on them, so "trainable" is 110,269,087 / 111,429,596 (the code logs the
total: AdamW never updates a parameter without a gradient, so training is unchanged), and the
BERT pooler (590,592) is unused as well: 109,678,495 / 110,839,004 receive a gradient.

Paper-era (`variant="paper_era"`, af1f83a): the encoders were seq-first `TransformerEncoderLayer`s
fed batch-first tensors, so attention ran ACROSS THE SAMPLES of a batch at each time step:
predictions depend on batch composition, and `summary()` records `batch_dependent_eval: true`
(evaluation then uses the preset's eval batch size in split order, README HD 5); its skip-net
reduction, warm-up epochs and gamma are VARIANT_DEFAULTS'.

Schedule: `lr_schedule()` declares transformers' `get_cosine_schedule_with_warmup` per optimizer
step; the trainer sets lr = base_lr * factor(step) just before step `step`, as a LambdaLR stepped
after every optimizer step does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel, Schedule, task_loss
from models.layers.seq_encoder import masked_mean, sinusoidal_table
from models.layers.text_encoder import build_text_encoder, split_no_decay
from models.protocol import at_least_fp32, improves, lengths_mask
from models.constants import METRICS
from models.registry import register_model

VARIANTS = ("head", "paper_era")
SCHEDULES = ("cosine_warmup", "none")
# values a variant sets unless a field gives one (None); synthetic is MOSI-shaped, so it takes MOSI's
VARIANT_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "head": {  # c1070c8 config/config_regression.py:128-130 (mosi), :166-169 (mosei)
        "mosi": dict(skip_net_reduction=2, warm_up_epochs=75, gamma=0.95),
        "mosei": dict(skip_net_reduction=8, warm_up_epochs=40, gamma=0.48),
    },
    "paper_era": {  # af1f83a: no skip_net_reduction key (class default 8); warm_up 110/120, gamma 0.24/0.33
        "mosi": dict(skip_net_reduction=8, warm_up_epochs=110, gamma=0.24),
        "mosei": dict(skip_net_reduction=8, warm_up_epochs=120, gamma=0.33),
    },
}
UNSUPPORTED = {"iemocap": "CLGSI is defined for continuous sentiment labels (its contrastive weights use "
                          "|y_i - y_j|, which 4 binary emotions do not have) and its code supports MOSI/MOSEI/SIMS only",
               # config_regression.py has simsv2 data paths but no CLGSI parameters for it (run.py
               # raises KeyError), and the SIMS preset's 3 audio heads do not divide its 25-d audio
               "simsv2": "CLGSI's code configures no model for CH-SIMS v2 (datasetParas has no 'simsv2' entry)"}


@dataclass(kw_only=True)
class CLGSIConfig(ModelConfig):
    text_input: str = "ids"  # `text_bert` (data/load_data.py:29-30, use_bert)
    setting: str = "unaligned"  # unaligned_50.pkl, full A/V sequences (need_data_aligned False)
    text_encoder: str = "bert-base-uncased"  # BertTextEncoder: AutoModel bert-base-uncased, fine-tuned
    text_vocab_size: Optional[int] = None  # vocabulary of a named random-init config (tiny)
    # head (c1070c8, batch-first) | paper_era (af1f83a: seq-first, attention across the batch)
    variant: str = field(default="head", metadata={"choices": VARIANTS})
    # optimiser: torch AdamW (optim.AdamW, trains/multiTask/CLGSI.py:14, :83), 5 groups (:64-83); lr / weight_decay are the "other" group's
    optimizer: str = "adamw"
    lr: float = 1e-2  # learning_rate_other (mosi)
    weight_decay: float = 1e-3  # weight_decay_other (mosi)
    lr_bert: float = 5e-5  # learning_rate_bert (BERT decay and no-decay groups)
    lr_audio: float = 5e-3  # learning_rate_audio: the audio encoder only
    lr_video: float = 1e-3  # learning_rate_video: the video encoder only
    weight_decay_bert: float = 1e-2  # weight_decay_bert; bias/LayerNorm get 0
    weight_decay_audio: float = 1e-2
    weight_decay_video: float = 1e-3
    # schedule: get_cosine_schedule_with_warmup per step (trains/multiTask/CLGSI.py:84-87, 160-166)
    # cosine_warmup (as coded) | none (constant lr, harness switch)
    lr_schedule: str = field(default="cosine_warmup", metadata={"choices": SCHEDULES})
    warmup_ratio: float = 0.1  # num_warmup_steps = 0.1 * total_steps
    warm_up_epochs: Optional[int] = None  # total_steps = steps per epoch * this; None: the variant's
    cosine_clamp: bool = False  # False as coded: HF's lambda does not clamp progress, so the lr re-rises
    # audio/vision encoders (AuVi_Encoder; config :111-114)
    a_encoder_heads: int = 1
    v_encoder_heads: int = 4
    a_encoder_layers: int = 2
    v_encoder_layers: int = 2
    encoder_ff_dim: int = 2048  # nn.TransformerEncoderLayer default (CLGSI.py passes none)
    encoder_dropout: float = 0.1  # nn.TransformerEncoderLayer default
    use_lengths: bool = False  # False as coded: no padding mask, last step, means over padding (head only)
    # heads (config :110, :120-127)
    fusion_filter_nums: int = 16  # GLFK F
    post_fusion_dim: int = 128
    post_text_dim: int = 64
    post_audio_dim: int = 64
    post_video_dim: int = 64
    post_fusion_dropout: float = 0.2
    post_text_dropout: float = 0.05
    post_audio_dropout: float = 0.05
    post_video_dropout: float = 0.05
    skip_net_reduction: Optional[int] = None  # r of unimodal_skip_net; None: the variant's
    # loss (contrastive_loss.py; config :94, :130)
    gamma: Optional[float] = None  # CL weight; None: the variant's
    dividing_line: float = 0.4  # delta: positive pairs |y~_i - y~_j| <= delta
    gain: float = 1.5  # g of the tanh weights (class default)
    temperature: float = 0.03  # tau (class default)
    negative_factor: float = 0.8  # hard-coded on negatives (get_negative_pair)
    label_shift: float = 3.0  # y~ = (y + 3) / 3 - 1 (label_map_reconstruction, not SIMSv2)
    mask_before_exp: bool = True  # True as coded: excluded pairs count exp(0) = 1; False: dropped
    freeze_unused: bool = True  # harness: built-but-never-run modules get requires_grad False
    # protocol
    batch_size: int = 64  # config :100
    early_stop_patience: Optional[int] = 8  # early_stop 8, min delta 1e-6 (trains :186-205)
    max_epochs: int = 40  # harness safety cap (the code has none; the LCTW re-run used 40)
    selection_metric: str = "MAE"  # KeyEval 'MAE' (config :38)
    val_loss_decimals: Optional[int] = None  # selection is on MAE, not the rounded loss


def resolved(cfg: CLGSIConfig) -> dict[str, Any]:
    """gamma, warm_up_epochs and skip_net_reduction: the config's, else the variant's for the dataset."""
    if cfg.variant not in VARIANTS:
        raise ValueError(f"unknown CLGSI variant '{cfg.variant}' (expected one of {VARIANTS})")
    table = VARIANT_DEFAULTS[cfg.variant]["mosei" if cfg.dataset == "mosei" else "mosi"]
    return {k: (getattr(cfg, k) if getattr(cfg, k) is not None else v) for k, v in table.items()}


# -- the sentiment-intensity-weighted contrastive loss ---------------------------------------
def intensity_weights(labels: torch.Tensor, dividing_line: float, gain: float,
                      label_shift: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W+, W-, positive region) from label distances d_ij = |y~_i - y~_j|, y~ = (y+3)/3 - 1:
    W+ = -g tanh(d - 2 delta) where d <= delta, W- = g tanh(d) where d > delta, else 0
    (contrastive_loss.py get_supervised_mask; same fp32 arithmetic, so boundary pairs match)."""
    y = (labels.reshape(-1).to(at_least_fp32(labels.dtype)) + label_shift) / label_shift - 1
    d = (y[:, None] - y[None, :]).abs()
    pos = d <= dividing_line
    w_pos = torch.where(pos, -torch.tanh(d - dividing_line * 2) * gain, torch.zeros_like(d))
    w_neg = torch.where(pos, torch.zeros_like(d), torch.tanh(d) * gain)
    return w_pos, w_neg, pos


def _modality_term(s_inter: torch.Tensor, s_intra: torch.Tensor, w_pos: torch.Tensor, w_neg: torch.Tensor,
                   pos: torch.Tensor, cfg: CLGSIConfig) -> torch.Tensor:
    """mean_i -log(sum_j (inter+ + intra+) / sum_j (inter+ + intra+ + inter- + intra-)) (compute_contrastive_loss)."""
    terms = []
    for s in (s_inter, s_intra):
        p = torch.exp(s * w_pos / cfg.temperature)  # mask multiplied before exp: excluded pairs give e^0 = 1
        n = torch.exp(s * w_neg * cfg.negative_factor / cfg.temperature)
        if not cfg.mask_before_exp:  # harness switch: a proper mask drops the excluded pairs
            p, n = p * pos, n * ~pos
        terms.append((p, n))
    (p1, n1), (p2, n2) = terms
    molecular = p1 + p2
    return -torch.log(molecular.sum(1) / (molecular + n1 + n2).sum(1)).mean()


def clgsi_contrastive_loss(features: dict[str, torch.Tensor], labels: torch.Tensor, cfg: CLGSIConfig) -> torch.Tensor:
    """CL = L(v,a) + L(v,t) + L(t,a), L(A,B) = (L_A + L_B) / 2 on L2-normalised features; in fp32
    with autocast disabled whatever the caller's autocast (contrastive_loss.py forward)."""
    device_type = labels.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        w_pos, w_neg, pos = intensity_weights(labels, cfg.dividing_line, cfg.gain, cfg.label_shift)
        work = at_least_fp32(features["t"].dtype)
        total = labels.new_zeros((), dtype=work)
        for a, b in (("v", "a"), ("v", "t"), ("t", "a")):
            x, y = F.normalize(features[a].to(work), dim=1), F.normalize(features[b].to(work), dim=1)
            loss_x = _modality_term(x @ y.T, x @ x.T, w_pos, w_neg, pos, cfg)
            loss_y = _modality_term(y @ x.T, y @ y.T, w_pos, w_neg, pos, cfg)
            total = total + (loss_x + loss_y) / 2
    return total


# -- sub-networks ----------------------------------------------------------------------------
class AuViEncoder(nn.Module):
    """x + sinusoidal positions -> nn.TransformerEncoder (AuVi_Encoder). The template layer
    `unused_encoder_layer` is registered (it counts) but never run; the layers are its deep copies."""

    def __init__(self, d: int, heads: int, layers: int, ff: int, dropout: float, batch_first: bool):
        super().__init__()
        self.unused_encoder_layer = nn.TransformerEncoderLayer(d, heads, ff, dropout, batch_first=batch_first)
        self.transformer_encoder = nn.TransformerEncoder(self.unused_encoder_layer, layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, padding: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, T, d) -> (B, T, d). Seq-first (paper_era): the layers read dim 0 (the batch) as
        the sequence, so attention mixes the samples at each time step, as af1f83a did."""
        x = x + sinusoidal_table(x.shape[1], x.shape[2], x.device, x.dtype)  # PositionalEncoding; its dropout unused
        return self.transformer_encoder(x, src_key_padding_mask=padding)


class SkipNet(nn.Module):
    """Mean over time -> Linear(c, c//r) -> ReLU -> Linear(c//r, out, no bias) -> Sigmoid (unimodal_skip_net)."""

    def __init__(self, channels: int, out: int, reduction: int):
        super().__init__()
        hidden = channels // reduction  # 0 for MOSI audio at r = 8 (paper-era): a constant 0.5 gate
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, out, bias=False),
                                    nn.Sigmoid())

    def forward(self, x: torch.Tensor, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.fc(x.mean(1) if valid is None else masked_mean(x, valid))


class GLFK(nn.Module):
    """(B, P, 3) -> Conv(1x3) -> Conv 1->F/2 -> PReLU -> Conv F/2->F -> Conv F->1 -> Tanh -> (B, P)."""

    def __init__(self, filters: int):
        super().__init__()
        self.fc = nn.Sequential(nn.Conv2d(1, 1, kernel_size=(1, 3)), nn.Conv2d(1, filters // 2, 1), nn.PReLU(),
                                nn.Conv2d(filters // 2, filters, 1), nn.Conv2d(filters, 1, 1), nn.Tanh())

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        return self.fc(stacked.unsqueeze(1)).squeeze(3).squeeze(1)  # explicit dims: a batch of 1 works


class CLGSI(MSAModel):
    cfg: CLGSIConfig

    def __init__(self, cfg: CLGSIConfig):
        super().__init__(cfg)
        if cfg.task != "regression":
            raise ValueError(f"CLGSI needs continuous sentiment labels; task '{cfg.task}' is not supported")
        self.values = resolved(cfg)
        if cfg.use_lengths and cfg.variant != "head":
            raise ValueError("use_lengths needs variant='head' (a padding mask has no meaning across the batch)")
        p_t, p_a, p_v, p_f = cfg.post_text_dim, cfg.post_audio_dim, cfg.post_video_dim, cfg.post_fusion_dim
        if not p_t == p_a == p_v:
            raise ValueError(f"GLFK stacks the three features: post_text/audio/video_dim must be equal, got {p_t}/{p_a}/{p_v}")
        r, batch_first = self.values["skip_net_reduction"], cfg.variant == "head"
        # construction order of CLGSI.__init__ (the seeded initialisation follows it)
        self.text_model = build_text_encoder(cfg.text_encoder, cfg.text_vocab_size)
        text_out = self.text_model.hidden_size  # text_out 768
        _, d_a, d_v = cfg.dims
        self.audio_model = AuViEncoder(d_a, cfg.a_encoder_heads, cfg.a_encoder_layers, cfg.encoder_ff_dim,
                                       cfg.encoder_dropout, batch_first)
        self.video_model = AuViEncoder(d_v, cfg.v_encoder_heads, cfg.v_encoder_layers, cfg.encoder_ff_dim,
                                       cfg.encoder_dropout, batch_first)
        self.unused_post_fusion_layer_1 = nn.Linear(p_t + p_a + p_v, p_f)  # built, never used
        self.glfk = GLFK(cfg.fusion_filter_nums)
        skip_len = p_t + p_a + p_v + p_t
        self.unused_skip_connection_batchnorm = nn.BatchNorm1d(skip_len)  # built, never used
        self.skip_connection_dropout = nn.Dropout(cfg.post_fusion_dropout)
        self.post_fusion_layer_skip_connection = nn.Linear(skip_len, p_f * 3)
        self.post_fusion_layer_2 = nn.Linear(p_f * 3, p_f * 2)
        self.post_fusion_layer_3 = nn.Linear(p_f * 2, cfg.n_out)
        self.fusion_batchnorm = nn.BatchNorm1d(p_f * 2)
        self.post_text_dropout = nn.Dropout(cfg.post_text_dropout)
        self.text_skip_net = SkipNet(text_out, p_t, r)
        self.post_text_layer_1 = nn.Linear(text_out, p_t)
        self.unused_post_text_layer_2 = nn.Linear(p_t, p_t)  # built, never used
        self.post_audio_dropout = nn.Dropout(cfg.post_audio_dropout)
        self.audio_skip_net = SkipNet(d_a, p_t, r)  # every skip branch outputs post_text_dim
        self.post_audio_layer_1 = nn.Linear(d_a, p_a)
        self.unused_post_audio_layer_2 = nn.Linear(p_a, p_a)  # built, never used
        self.post_video_dropout = nn.Dropout(cfg.post_video_dropout)
        self.video_skip_net = SkipNet(d_v, p_t, r)
        self.post_video_layer_1 = nn.Linear(d_v, p_v)
        self.unused_post_video_layer_2 = nn.Linear(p_v, p_v)  # built, never used
        if cfg.freeze_unused:
            for p in self.unused_parameters():
                p.requires_grad_(False)
        self._steps_per_epoch = 0  # seen by on_epoch_start, for summary()
        self._last_step = -1
        self._epochs_run, self._best, self._since_best = 0, None, 0

    def unused_parameters(self) -> list[nn.Parameter]:
        """Parameters the code builds but never runs (they count in the total, README HD 4)."""
        mods = (self.audio_model.unused_encoder_layer, self.video_model.unused_encoder_layer,
                self.unused_post_fusion_layer_1, self.unused_skip_connection_batchnorm,
                self.unused_post_text_layer_2, self.unused_post_audio_layer_2, self.unused_post_video_layer_2)
        return [p for m in mods for p in m.parameters()]

    # -- forward -------------------------------------------------------------------------
    def _last_step_and_skip(self, encoder: AuViEncoder, skip: SkipNet, x: torch.Tensor,
                            lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.cfg.use_lengths:  # as coded: out[:, -1] and the mean over all T steps
            out = encoder(x)
            return out[:, -1], skip(out)
        lengths = lengths.clamp(1, x.shape[1])
        valid = lengths_mask(lengths, x.shape[1])
        out = encoder(x, padding=~valid)
        return out[torch.arange(x.shape[0], device=x.device), lengths - 1], skip(out, valid)

    def encode(self, batch) -> dict[str, torch.Tensor]:
        """Per modality [h (P, the CL feature) ; skip gate (P_t)]. Each depends on its own
        modality only (paper_era: on that modality of the whole batch)."""
        hidden = self.text_model(batch.text_ids, batch.text_mask, batch.text_segment)  # all L tokens
        valid_t = batch.text_mask.bool() if self.cfg.use_lengths else None
        text_h = F.relu(self.post_text_layer_1(self.post_text_dropout(hidden[:, 0])))
        text_skip = self.text_skip_net(hidden, valid_t)
        a_last, audio_skip = self._last_step_and_skip(self.audio_model, self.audio_skip_net, batch.audio,
                                                      batch.audio_lengths)
        v_last, video_skip = self._last_step_and_skip(self.video_model, self.video_skip_net, batch.vision,
                                                      batch.vision_lengths)
        audio_h = F.relu(self.post_audio_layer_1(self.post_audio_dropout(a_last)))
        video_h = F.relu(self.post_video_layer_1(self.post_video_dropout(v_last)))
        return {"t": torch.cat([text_h, text_skip], -1), "a": torch.cat([audio_h, audio_skip], -1),
                "v": torch.cat([video_h, video_skip], -1)}

    def _split(self, reps: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        p = self.cfg.post_text_dim
        return {m: r[:, :-p] for m, r in reps.items()}, {m: r[:, -p:] for m, r in reps.items()}

    def fuse(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        h, skip = self._split(reps)
        fusion = self.glfk(torch.stack([h["t"], h["a"], h["v"]], dim=-1))
        x = self.skip_connection_dropout(torch.cat([fusion, skip["t"], skip["a"], skip["v"]], dim=-1))
        x = self.post_fusion_layer_skip_connection(x)
        x = self.fusion_batchnorm(F.relu(self.post_fusion_layer_2(x)))
        return self.post_fusion_layer_3(x)

    def forward(self, batch) -> ModelOutput:
        reps = self.encode(batch)
        return ModelOutput(pred=self.fuse(reps), features=self._split(reps)[0])  # Feature_t/a/v

    def loss(self, output: ModelOutput, batch) -> dict[str, torch.Tensor]:
        assert output.features is not None  # forward fills it
        task = task_loss(output.pred, batch.labels, self.cfg.task)
        cl = clgsi_contrastive_loss(output.features, batch.labels, self.cfg)
        return {"total": task + self.values["gamma"] * cl, "task": task, "contrastive": cl}

    # -- optimiser and schedule --------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        live = lambda ps: [p for p in ps if p.requires_grad]  # noqa: E731 (frozen unused modules stay out)
        bert_decay, bert_no_decay = split_no_decay(self.text_model)
        sub = {id(p) for m in (self.text_model, self.audio_model, self.video_model) for p in m.parameters()}
        other = [p for p in self.parameters() if id(p) not in sub]
        return [{"name": "bert", "params": live(bert_decay), "lr": cfg.lr_bert, "weight_decay": cfg.weight_decay_bert},
                {"name": "bert_no_decay", "params": live(bert_no_decay), "lr": cfg.lr_bert, "weight_decay": 0.0},
                {"name": "audio", "params": live(self.audio_model.parameters()), "lr": cfg.lr_audio,
                 "weight_decay": cfg.weight_decay_audio},
                {"name": "video", "params": live(self.video_model.parameters()), "lr": cfg.lr_video,
                 "weight_decay": cfg.weight_decay_video},
                {"name": "other", "params": live(other), "lr": cfg.lr, "weight_decay": cfg.weight_decay}]

    def lr_schedule(self) -> Schedule:
        cfg = self.cfg
        if cfg.lr_schedule not in SCHEDULES:
            raise ValueError(f"unknown lr_schedule '{cfg.lr_schedule}' (expected one of {SCHEDULES})")
        if cfg.lr_schedule == "none":
            return Schedule(source="harness switch: constant lr")
        return Schedule(kind="cosine_warmup", warmup_ratio=cfg.warmup_ratio, epochs=self.values["warm_up_epochs"],
                        cosine_clamp=cfg.cosine_clamp, next_step_lr=False, record_factor=True,
                        source="get_cosine_schedule_with_warmup per step (trains/multiTask/CLGSI.py:84-87, 160-166)")

    def on_epoch_start(self, epoch: int, state: Any) -> dict[str, Any]:
        """Notes the steps per epoch for `summary()` (the trainer applies the schedule)."""
        n_batches = state.data.train.num_batches(self.cfg.batch_size)
        self._steps_per_epoch = -(-n_batches // max(1, self.cfg.grad_accum_steps))
        return {}

    def after_backward(self, step: int) -> None:
        if self.training:  # the optimizer step about to be taken, for summary()
            self._last_step = step

    def on_epoch_end(self, epoch: int, state: Any) -> dict[str, Any]:
        """Tracks what the trainer's early stopping sees, so `summary()` can say whether the cap bound."""
        self._epochs_run = epoch + 1
        if (value := state.valid_metrics.get(self.cfg.selection_metric)) is not None:
            higher = METRICS[self.cfg.selection_metric].higher_is_better
            better = improves(value, self._best, higher=higher, min_delta=self.cfg.min_delta)
            self._best, self._since_best = (value, 0) if better else (self._best, self._since_best + 1)
        return {}

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        # each branch: its encoder, gate branch and post layers (unused layer_2 included); GLFK and the head are shared
        of = lambda *mods: [p for mod in mods for p in mod.parameters()]  # noqa: E731
        return {"t": of(self.text_model, self.text_skip_net, self.post_text_layer_1, self.unused_post_text_layer_2),
                "a": of(self.audio_model, self.audio_skip_net, self.post_audio_layer_1, self.unused_post_audio_layer_2),
                "v": of(self.video_model, self.video_skip_net, self.post_video_layer_1, self.unused_post_video_layer_2)}

    def summary(self) -> dict[str, Any]:
        cfg = self.cfg
        out: dict[str, Any] = {"variant": cfg.variant, "batch_dependent_eval": cfg.variant == "paper_era",
                               **self.values, "mask_before_exp": cfg.mask_before_exp, "use_lengths": cfg.use_lengths,
                               "max_epochs_cap": cfg.max_epochs, "epochs_run": self._epochs_run}
        patience = cfg.early_stop_patience
        out["cap_bound"] = self._epochs_run >= cfg.max_epochs and (patience is None or self._since_best < patience)
        if cfg.lr_schedule != "none" and self._steps_per_epoch:
            total = self._steps_per_epoch * self.values["warm_up_epochs"]
            out["lr_schedule"] = {"kind": cfg.lr_schedule, "steps_per_epoch": self._steps_per_epoch,
                                  "total_steps": total, "warmup_steps": cfg.warmup_ratio * total,
                                  "last_step": self._last_step,
                                  "rerose": self._last_step > total and not cfg.cosine_clamp}
        return out


# -- presets ---------------------------------------------------------------------------------
_OFFICIAL_MOSI = CLGSIConfig(  # c1070c8 config/config_regression.py mosi (:100-132)
    dims=(768, 5, 20), batch_size=64,
    lr_bert=5e-5, lr_audio=5e-3, lr_video=1e-3, lr=1e-2,
    weight_decay_bert=0.01, weight_decay_audio=0.01, weight_decay_video=0.001, weight_decay=0.001,
    fusion_filter_nums=16, a_encoder_heads=1, v_encoder_heads=4, a_encoder_layers=2, v_encoder_layers=2,
    post_fusion_dim=128, post_text_dim=64, post_audio_dim=64, post_video_dim=64,
    post_fusion_dropout=0.2, post_text_dropout=0.05, post_audio_dropout=0.05, post_video_dropout=0.05,
)  # skip_net_reduction / warm_up_epochs / gamma: None = the variant's (VARIANT_DEFAULTS)
_OFFICIAL_MOSEI = replace(  # c1070c8 config_regression.py mosei (:138-171)
    _OFFICIAL_MOSI, dims=(768, 74, 35), batch_size=128,
    lr_bert=5e-5, lr_audio=5e-4, lr_video=5e-4, lr=2.5e-3,
    weight_decay_bert=0.001, weight_decay_audio=0.0, weight_decay_video=0.0, weight_decay=0.01,
    a_encoder_heads=2, v_encoder_heads=5,
    post_fusion_dim=256, post_text_dim=128, post_audio_dim=128, post_video_dim=128,
    post_fusion_dropout=0.1, post_text_dropout=0.01, post_audio_dropout=0.01, post_video_dropout=0.01,
)
_OFFICIAL_SIMS = replace(  # c1070c8 config_regression.py sims (:175-211)
    _OFFICIAL_MOSI, dims=(768, 33, 709), batch_size=64,
    text_encoder="bert-base-chinese", text_vocab_size=21128,  # MMSA's CH-SIMS text_bert: bert-base-chinese ids
    lr_bert=5e-5, lr_audio=5e-4, lr_video=5e-4, lr=5e-4,
    weight_decay_bert=0.001, weight_decay_audio=0.01, weight_decay_video=0.01, weight_decay=0.001,
    fusion_filter_nums=16, a_encoder_heads=3, v_encoder_heads=1, a_encoder_layers=2, v_encoder_layers=2,
    post_fusion_dim=256, post_text_dim=128, post_audio_dim=128, post_video_dim=128,
    post_fusion_dropout=0.1, post_text_dropout=0.4, post_audio_dropout=0.4, post_video_dropout=0.4,
    skip_net_reduction=8, warm_up_epochs=95, gamma=0.38,
    # label_shift stays 3: contrastive_loss.py label_map_reconstruction maps (y+3)/3-1 for every dataset
    # but simsv2, CH-SIMS included (as coded)
)
# synthetic `demo` (harness decision): a tiny random-init BERT (lr 5e-4: it learns from
# scratch), 16-wide features, ff 128, batch 32; warm-up over the 4 demo epochs (40 steps per
# epoch, 16 warm-up steps), gamma and r MOSI's
_DEMO = replace(_OFFICIAL_MOSI, text_encoder="tiny", text_vocab_size=2048, lr_bert=5e-4, batch_size=32,
                encoder_ff_dim=128, post_fusion_dim=16, post_text_dim=16, post_audio_dim=16, post_video_dim=16,
                warm_up_epochs=4, max_epochs=4, early_stop_patience=2)
PRESETS = {("mosi", "official"): _OFFICIAL_MOSI,
           ("mosei", "official"): _OFFICIAL_MOSEI,
           ("sims", "official"): _OFFICIAL_SIMS,
           ("synthetic", "demo"): _DEMO}


@register_model("clgsi", config=CLGSIConfig, presets=PRESETS, default_preset="official", unsupported=UNSUPPORTED,
                display_name="CLGSI", paper="Yang et al., NAACL Findings 2024",
                reference="https://github.com/AZYoung233/CLGSI@c1070c8",
                family="contrastive", order=70)
def clgsi(cfg: CLGSIConfig) -> CLGSI:
    """CLGSI (Yang et al., NAACL Findings 2024): BERT + A/V transformers, GLFK fusion, intensity-weighted CL."""
    return CLGSI(cfg)
