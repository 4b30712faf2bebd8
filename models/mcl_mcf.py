"""MCL-MCF: multi-level contrastive learning and multi-layer convolution fusion
(Fan, Zhu, Tao, Yi, Xue, Lv; IEEE TAC 16(1):207-222, DOI 10.1109/TAFFC.2024.3423671).

Sources: the released code Zhudogsi/MCL-MCF (no licence, built on MMIM), HEAD `6e56e82`
(2024-06-03): `src/model.py` (MMIM), `src/modules/encoders.py` (Clip, RNNEncoder, SubNet,
get_resNet*), `src/solver.py`, `src/config.py`, `src/data_loader.py`. The code is the reference.

Forward (model.py `MMIM.forward`), on MMSA `unaligned_50` (`text_bert` ids by default):
  t = BERT last-layer [CLS] (the pooler is built, as `BertModel.from_pretrained`, never used);
  a, v = 1-layer LSTM over the packed true lengths -> h_n -> Dropout(0: n_layer 1) -> Linear
         (RNNEncoder; the same module as Self-MM's `AuViSubNet`, from models/layers/blocks.py);
  MCF (prediction): res = ReLU(Conv1d_k1(H->R)(t)), res2 = ReLU(Conv1d(dv->R)(v)),
         res3 = ReLU(Conv1d(da->R)(a)), q = ReLU(Conv1d(H+da+dv->R)([t, a, v])),
         r = Conv1d(4R->R)([res, res2, res3, q]) (no activation),
         pred = SubNet(r) = Linear(tanh(Linear(tanh(Linear(Dropout(r)))))) (R = 512).
Loss (solver.py:146-151): L1(pred, y) + 0.05 nce + 0.05 nce2 + 0.05 nce3 (alpha, nce2, nce3):
  level 1 (unimodal)   nce  = Clip(t, a) + Clip(t, v) + Clip(v, a);
  level 2 (cross-modal) nce2 = Clip(t, m_va) + Clip(v, m_ta) + Clip(a, m_tv) + Clip(a, m_tav),
         hubs m_xy = Conv1d_k1([x, y]) -> 64, no activation (m_ta is the code's `conv_vt`);
  level 3 (high-level fusion, TCF) nce3 = Clip(TV, TA) + Clip(TV, VA) + Clip(TA, VA), where
         TV = stack(res (x) res2), TA = stack(res (x) res3), VA = stack(res2 (x) res3): each outer
         product (B, 1, R, R) through its own Conv2d(1->4, 3x3) -> ReLU -> Conv2d(4->6) -> ReLU ->
         Conv2d(6->1) -> ReLU -> Flatten, no padding: (R-6)^2 = 256,036 features. TCF does not
         feed the prediction; it shapes res/res2/res3 through nce3 only.
The contrastive unit `Clip(x, y)` (encoders.py:237-256), quirks kept as coded:
  x^ = normalize(W_x x + b_x); y^ = W_y normalize(y) + b_y (y is normalised BEFORE its
  projection and not after); logits = ln(1/0.07) x^ y^T (a fixed 2.659, not CLIP's
  exp(ln(1/0.07)) = 14.3); loss = (CE(logits, arange B) + CE(logits^T, arange B)) / 2, in fp32.
  The three TCF Clips are Linear(256036, 128) pairs (196.6 M parameters, "the very wide
  tensor-fusion linears as coded").
Init: `_init_weights` (solver.py:70-82; biases keep PyTorch's default). Optimiser, schedule and
protocol: the config fields (config.py, solver.py; the plateau schedule reads the validation L1).

Deviations and switches (README HD 1-2):
- The released HEAD crashes: `best_valid`/`best_mae` are never initialised, so solver.py:251
  raises NameError at epoch 1 (the first upload `9fccf96` had them, with both conditions
  `if True`). The fix is the harness's own selection: validation L1 only, lowest wins (strict
  `<` in the code; min_delta 0 here, so an exact tie also counts), patience 10. The code's
  extra condition that the TEST MAE also improve before an epoch is recorded (solver.py:258)
  is NOT reproduced (test leakage). No switch: neither changes what the model computes.
- Data: MMSA `unaligned_50.pkl` instead of MulT noalign pickles + label CSV:
  same widths (MOSI 5/20, MOSEI 74/35); the file's audio/vision lengths instead of counting
  nonzero frames; text = the file's `text_bert` ids (bert-base-uncased, 50 tokens, as the
  code's `encode_plus(max_length=50, padding='max_length')`), which also removes the code's
  MOSEI CSV-row-order join. `text_input="raw_text"` (with `text_max_length` 50, SENT_LEN)
  tokenizes the pickle's `raw_text` with the --text-encoder folder's tokenizer instead.
  MulT pickles carry GloVe `text` only and no `raw_text`: the model cannot read them (the code
  joins MMSA's label.csv on (video_id, clip_id), which the harness does not do).
- Lengths of 0 are clamped to 1 for both LSTMs (the code does it for vision only; a 0 audio
  length makes its pack_padded_sequence raise).
- `norm_eps` (default 1e-12, F.normalize's; 0.0 = as coded, the raw x / ||x||): the norm is
  clamped, which changes nothing wherever the code is finite and avoids its NaN on an all-zero
  input. That input is common: a TCF conv stack (4 and 6 channels, xavier weights, default
  biases, ReLU after every conv) is often dead at init, all zeros for every sample (demo
  preset: an all-dead stack in 4 of 6 seeds; 512-wide maps in a simulation at plausible input
  scales: 7-45% of stacks), and a dead TA or VA map is the `y` of two TCF Clips, so the code's loss is NaN at
  the first step. A dead stack stays dead (ReLU passes no gradient) and its Clips then
  contrast against a constant.
- In eval mode the contrastive branches are skipped: the prediction does not depend on them
  (the code computes and discards them in `evaluate`); `loss()` then has the task term only.
- SubNet computes `linear_2(y_1)` twice and discards the first (encoders.py:63); computed once.
- `Clip`'s `labels = torch.arange(B)` lives on the loss's device (the code relies on a CUDA
  default tensor type); `final_states[0].squeeze()` is read as h_n[-1], so a batch of one works.
- The code's `--bidirectional` LSTM flag (off by default) and `n_layer` > 1 are not offered.

Parameter counts (built on the meta device with bert-base shapes, tests/test_mcl_mcf.py):
308,778,168 (MOSI) and 308,799,672 (MOSEI), equal to a hand count of the released layers; the
pooler (590,592) gets no gradient. IEMOCAP: a harness preset (4 x 2 logits, CE; see PRESETS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel, task_loss
from models.layers.blocks import AuViSubNet
from models.layers.text_encoder import build_text_encoder
from models.registry import register_model

UNSUPPORTED: dict[str, str] = {}  # IEMOCAP: a harness preset (the code: MOSI/MOSEI regression), see PRESETS
LEVELS = ("nce", "nce2", "nce3")  # unimodal, cross-modal, high-level fusion (TCF)


@dataclass(kw_only=True)
class MCLMCFConfig(ModelConfig):
    text_input: str = "ids"  # MMSA `text_bert` ids (the code: bert-base-uncased encode_plus of the CSV text)
    text_max_length: Optional[int] = 50  # SENT_LEN = 50 (data_loader.py); read for text_input="raw_text" only
    setting: str = "unaligned"  # unaligned sequences with true lengths (MulT noalign in the code)
    text_encoder: str = "bert-base-uncased"  # BertModel.from_pretrained('src/bert/'), fine-tuned, pooler built
    text_vocab_size: Optional[int] = None  # vocabulary of a named random-init config (tiny)
    # encoders (config.py:70-85): LSTM n_layer 1, unidirectional; dropout_v/a only apply if n_layer > 1
    v_lstm_hidden: int = 64  # d_vh
    a_lstm_hidden: int = 64  # d_ah
    video_out: int = 64  # d_vout
    audio_out: int = 64  # d_aout
    # fusion (model.py:56-137, encoders.py:389-450)
    hub_dim: int = 64  # out_channels of conv_tv / conv_av / conv_vt / conv_tav
    res_dim: int = 512  # R: getresNet1-4 and conv_res width; TCF maps are R x R ("tcf_dim")
    tcf_channels: tuple[int, int] = (4, 6)  # conv_tfn_*: Conv2d 1->4->6->1, 3x3, no padding
    post_fusion_dim: int = 128  # d_prjh (SubNet hidden)
    post_fusion_dropout: float = 0.1  # dropout_prj
    clip_dim: int = 128  # Clip projection width (encoders.py:241-242)
    logit_scale: float = math.log(1 / 0.07)  # encoders.py:246: ln(1/0.07) ~ 2.659, fixed, not exponentiated
    norm_eps: float = 1e-12  # harness fix: clamp ||x|| (0 = as coded, x / ||x||: NaN on a dead, all-zero TCF map)
    # loss (solver.py:146-151; config.py:108-115); beta is unused in the code: no field
    contrast: bool = True  # --contrast default True
    nce_weight: float = 0.05  # alpha (level 1)
    nce2_weight: float = 0.05  # nce2 (level 2)
    nce3_weight: float = 0.05  # nce3 (level 3)
    # optimisation (config.py:98-130, solver.py:66-95); `lr` / `weight_decay` are the main group's
    optimizer: str = "adam"  # getattr(torch.optim, 'Adam'): coupled L2
    lr: float = 1e-4  # lr_main
    weight_decay: float = 1e-4  # weight_decay_main
    lr_bert: float = 5e-5  # lr_bert ('bert' in name)
    weight_decay_bert: float = 1e-4  # weight_decay_bert (no bias/LayerNorm exemption)
    batch_size: int = 128  # --batch_size default 128 (train, dev and test loaders)
    clip_grad_norm: Optional[float] = 1.0  # --clip 1.0 (clip_grad_norm_ over all parameters)
    scheduler: Optional[str] = "plateau"  # ReduceLROnPlateau(mode min) on the validation L1
    scheduler_patience: int = 20  # --when 20
    scheduler_factor: float = 0.5  # solver.py:95
    max_epochs: int = 200  # --num_epochs 200
    early_stop_patience: Optional[int] = 10  # --patience 10 (fires before the plateau's 20)
    min_delta: float = 0.0  # `val_loss < best_valid`: no margin
    val_loss_decimals: Optional[int] = None  # the code compares the unrounded L1


class Clip(nn.Module):
    """The contrastive unit (encoders.py `Clip`): symmetric InfoNCE between projected x and y."""

    def __init__(self, x_size: int, y_size: int, dim: int, logit_scale: float, eps: float = 0.0):
        super().__init__()
        self.proj_x = nn.Linear(x_size, dim)  # x_learn_weight
        self.proj_y = nn.Linear(y_size, dim)  # y_learn_weight
        self.logit_scale, self.eps = logit_scale, eps

    def _unit(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.norm(dim=1, keepdim=True)
        return x / (norm.clamp_min(self.eps) if self.eps > 0 else norm)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        px = self.proj_x(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            y_unit = self._unit(y.float())  # quirk (encoders.py:248-249): y normalised BEFORE its projection
        py = self.proj_y(y_unit)  # ... and not renormalised after it
        with torch.autocast(device_type=x.device.type, enabled=False):
            logits = self.logit_scale * (self._unit(px.float()) @ py.float().T)  # fixed scale ln(1/0.07)
            labels = torch.arange(logits.shape[0], device=logits.device)
            return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def _conv_k1(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """A kernel-1 Conv1d on a (B, C) vector, as the code's unsqueeze(2) -> conv -> squeeze(2)."""
    return conv(x.unsqueeze(-1)).squeeze(-1)


def tcf_stack(channels: tuple[int, int]) -> nn.Sequential:
    """conv_tfn_*: Conv2d(1->c1, 3x3) -> ReLU -> Conv2d(c1->c2) -> ReLU -> Conv2d(c2->1) -> ReLU -> Flatten."""
    c1, c2 = channels
    return nn.Sequential(nn.Conv2d(1, c1, 3), nn.ReLU(), nn.Conv2d(c1, c2, 3), nn.ReLU(),
                         nn.Conv2d(c2, 1, 3), nn.ReLU(), nn.Flatten())


class SubNet(nn.Module):
    """Dropout -> tanh(Linear) -> tanh(Linear) -> Linear (encoders.py `SubNet`; its unused
    first `linear_2` result is not computed)."""

    def __init__(self, in_size: int, hidden: int, n_out: int, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.linear_1, self.linear_2 = nn.Linear(in_size, hidden), nn.Linear(hidden, hidden)
        self.linear_3 = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_3(torch.tanh(self.linear_2(torch.tanh(self.linear_1(self.drop(x))))))


class MCLMCF(MSAModel):
    cfg: MCLMCFConfig

    def __init__(self, cfg: MCLMCFConfig):
        super().__init__(cfg)
        if cfg.res_dim < 7:
            raise ValueError(f"res_dim {cfg.res_dim} is too small: three unpadded 3x3 convs need R >= 7")
        _, d_a, d_v = cfg.dims
        # construction order of MMIM.__init__
        self.text_enc = build_text_encoder(cfg.text_encoder, cfg.text_vocab_size)
        h = self.text_enc.hidden_size  # 768
        dv, da, hub, r, k = cfg.video_out, cfg.audio_out, cfg.hub_dim, cfg.res_dim, cfg.clip_dim
        self.visual_enc = AuViSubNet(d_v, cfg.v_lstm_hidden, dv, 0.0)  # dropout 0.0 because n_layer = 1
        self.acoustic_enc = AuViSubNet(d_a, cfg.a_lstm_hidden, da, 0.0)
        self.fusion_prj = SubNet(r, cfg.post_fusion_dim, cfg.n_out, cfg.post_fusion_dropout)
        clip = lambda x, y: Clip(x, y, k, cfg.logit_scale, cfg.norm_eps)  # noqa: E731
        # level 1 (model.py:73-75) and level 2 (:76-79) units
        self.ta_clip, self.tv_clip, self.av_clip = clip(h, da), clip(h, dv), clip(dv, da)
        self.mass_t_clip, self.mass_v_clip = clip(h, hub), clip(dv, hub)
        self.mass_a_clip, self.mass_tav_clip = clip(da, hub), clip(da, hub)
        # level-2 hubs (model.py:81-88)
        self.conv_tv = nn.Conv1d(h + dv, hub, 1)
        self.conv_av = nn.Conv1d(dv + da, hub, 1)
        self.conv_vt = nn.Conv1d(h + da, hub, 1)  # the t-a hub, named conv_vt in the code
        self.conv_tav = nn.Conv1d(h + dv + da, hub, 1)
        self.conv_res = nn.Conv1d(4 * r, r, 1)
        # MCF branches (getresNet1-4: Conv1d_k1 -> ReLU)
        self.get_res_t = nn.Conv1d(h, r, 1)
        self.get_res_v = nn.Conv1d(dv, r, 1)
        self.get_res_a = nn.Conv1d(da, r, 1)
        self.get_res_tav = nn.Conv1d(h + da + dv, r, 1)
        # level 3: TCF Clips over the flattened (R-6)^2 maps (model.py:95-97), then the conv stacks
        self.tcf_features = (r - 6) ** 2  # 256,036 at R = 512
        self.tfn_tv, self.tfn_ta, self.tfn_av = (clip(self.tcf_features, self.tcf_features) for _ in range(3))
        # conv_tfn_t runs on res(x)res2, conv_tfn_v on res(x)res3, conv_tfn_a on res2(x)res3 (model.py:179-184)
        self.conv_tfn_t, self.conv_tfn_v, self.conv_tfn_a = (tcf_stack(cfg.tcf_channels) for _ in range(3))
        self._init_weights()

    def _init_weights(self) -> None:
        """xavier_normal_ on every non-BERT parameter with dim > 1 (solver.py:79-82)."""
        text = {id(p) for p in self.text_enc.parameters()}
        for p in self.parameters():
            if id(p) not in text and p.dim() > 1:
                nn.init.xavier_normal_(p)

    # -- encoders and the prediction path (MCF) ----------------------------------------------
    def encode(self, batch) -> dict[str, torch.Tensor]:
        """t = last-layer [CLS]; a, v = LSTM over the true lengths (each from its own input only)."""
        if batch.text_ids is None:
            raise ValueError("MCL-MCF needs BERT token ids (text_input 'ids' or 'raw_text'); this data has GloVe "
                             "text only (MulT pickles carry no raw_text)")
        return {"t": self.text_enc.cls(batch.text_ids, batch.text_mask, batch.text_segment),
                "a": self.acoustic_enc(batch.audio, batch.audio_lengths),
                "v": self.visual_enc(batch.vision, batch.vision_lengths)}

    def branches(self, reps: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """res (text), res2 (vision), res3 (audio): ReLU(Conv1d_k1) to R (getresNet1-3)."""
        return (F.relu(_conv_k1(reps["t"], self.get_res_t)), F.relu(_conv_k1(reps["v"], self.get_res_v)),
                F.relu(_conv_k1(reps["a"], self.get_res_a)))

    def _predict(self, reps: dict[str, torch.Tensor], res: tuple[torch.Tensor, ...]) -> torch.Tensor:
        q = F.relu(_conv_k1(torch.cat([reps["t"], reps["a"], reps["v"]], dim=1), self.get_res_tav))  # order t, a, v
        return self.fusion_prj(_conv_k1(torch.cat([*res, q], dim=1), self.conv_res))

    def fuse(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._predict(reps, self.branches(reps))

    # -- the three contrastive levels --------------------------------------------------------
    def contrast_unimodal(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        """Level 1: Clip(t, a) + Clip(t, v) + Clip(v, a) (model.py:192-194, 209)."""
        t, a, v = reps["t"], reps["a"], reps["v"]
        return self.ta_clip(t, a) + self.tv_clip(t, v) + self.av_clip(v, a)

    def hubs(self, reps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The level-2 fused "message hubs" (model.py:154-162): kernel-1 convs, no activation."""
        t, a, v = reps["t"], reps["a"], reps["v"]
        return {"tv": _conv_k1(torch.cat([t, v], 1), self.conv_tv), "va": _conv_k1(torch.cat([v, a], 1), self.conv_av),
                "ta": _conv_k1(torch.cat([t, a], 1), self.conv_vt),
                "tav": _conv_k1(torch.cat([t, v, a], 1), self.conv_tav)}

    def contrast_crossmodal(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        """Level 2: Clip(t, m_va) + Clip(v, m_ta) + Clip(a, m_tv) + Clip(a, m_tav) (model.py:196-200, 210)."""
        m = self.hubs(reps)
        return (self.mass_t_clip(reps["t"], m["va"]) + self.mass_v_clip(reps["v"], m["ta"])
                + self.mass_a_clip(reps["a"], m["tv"]) + self.mass_tav_clip(reps["a"], m["tav"]))

    def tcf_maps(self, res: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The outer products res(x)res2, res(x)res3, res2(x)res3 through their conv stacks (model.py:173-184)."""
        r_t, r_v, r_a = res
        outer = lambda x, y: torch.bmm(x.unsqueeze(2), y.unsqueeze(1)).unsqueeze(1)  # noqa: E731  (B, 1, R, R)
        return {"tv": self.conv_tfn_t(outer(r_t, r_v)), "ta": self.conv_tfn_v(outer(r_t, r_a)),
                "va": self.conv_tfn_a(outer(r_v, r_a))}

    def contrast_fusion(self, res: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Level 3 (TCF): Clip(TV, TA) + Clip(TV, VA) + Clip(TA, VA) (model.py:202-204, 212)."""
        m = self.tcf_maps(res)
        return self.tfn_tv(m["tv"], m["ta"]) + self.tfn_ta(m["tv"], m["va"]) + self.tfn_av(m["ta"], m["va"])

    # -- protocol ----------------------------------------------------------------------------
    def forward(self, batch) -> ModelOutput:
        reps = self.encode(batch)
        res = self.branches(reps)
        pred = self._predict(reps, res)
        extras: dict[str, Any] = {}
        if self.training and self.cfg.contrast:  # eval: skipped, pred does not depend on them
            extras = {"nce": self.contrast_unimodal(reps), "nce2": self.contrast_crossmodal(reps),
                      "nce3": self.contrast_fusion(res)}
        return ModelOutput(pred=pred, features=reps, extras=extras)

    def loss(self, output: ModelOutput, batch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        task = task_loss(output.pred, batch.labels, cfg.task)
        if not (cfg.contrast and all(k in output.extras for k in LEVELS)):
            return {"total": task, "task": task}
        nce = {k: output.extras[k] for k in LEVELS}
        total = task + cfg.nce_weight * nce["nce"] + cfg.nce2_weight * nce["nce2"] + cfg.nce3_weight * nce["nce3"]
        return {"total": total, "task": task, **nce}

    def param_groups(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        bert = {id(p) for p in self.text_enc.parameters()}
        return [{"name": "bert", "params": list(self.text_enc.parameters()), "lr": cfg.lr_bert,
                 "weight_decay": cfg.weight_decay_bert},
                {"name": "main", "params": [p for p in self.parameters() if id(p) not in bert], "lr": cfg.lr,
                 "weight_decay": cfg.weight_decay}]

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        # each branch: its encoder and its MCF branch (getresNet1/2/3); hubs, Clips, TCF and the head are shared
        return {"t": [*self.text_enc.parameters(), *self.get_res_t.parameters()],
                "a": [*self.acoustic_enc.parameters(), *self.get_res_a.parameters()],
                "v": [*self.visual_enc.parameters(), *self.get_res_v.parameters()]}

    def summary(self) -> dict[str, Any]:
        cfg = self.cfg
        return {"contrast": cfg.contrast, "tcf_features": self.tcf_features, "norm_eps": cfg.norm_eps,
                "selection": "validation L1 only (the code also required a test-MAE improvement: not reproduced)"}


# -- presets ---------------------------------------------------------------------------------
# The repository has one config for both datasets (config.py); only the input widths differ.
_OFFICIAL_MOSI = MCLMCFConfig(dims=(768, 5, 20))  # MulT/MMSA MOSI: COVAREP 5, Facet 20 ("768 20 5", main.py:70)
_OFFICIAL_MOSEI = replace(_OFFICIAL_MOSI, dims=(768, 74, 35))  # MOSEI: COVAREP 74, Facet 35
# synthetic `demo` (harness decision): tiny random-init BERT (lr 5e-4: it learns from scratch),
# narrow fusion R = 32 (TCF maps 26^2 = 676), 16-wide LSTMs/hubs, 32-wide Clips and SubNet;
# lr 1e-3 for the rest (4 epochs), batch 32
_DEMO = replace(_OFFICIAL_MOSI, text_encoder="tiny", text_vocab_size=2048, lr_bert=5e-4, lr=1e-3,
                v_lstm_hidden=16, a_lstm_hidden=16, video_out=16, audio_out=16, hub_dim=16, res_dim=32,
                post_fusion_dim=32, clip_dim=32, batch_size=32, max_epochs=4, early_stop_patience=2)
# IEMOCAP (harness decision; the code supports MOSI/MOSEI regression only): the MOSEI preset on
# MulT's iemocap_data_noalign.pkl (74/35 widths) with the MulT protocol's 4 x 2 logits and CE in
# place of L1; the three contrastive levels pair samples by batch position, not by label.
# Text: the words recovered from the GloVe vectors (--glove).
_IEMOCAP = replace(_OFFICIAL_MOSEI, task="iemocap", n_out=8)
# CH-SIMS / CH-SIMS v2: the code supports MOSI/MOSEI only; harness decision: its one config (MOSI's
# preset) with MMSA's widths (unaligned_39.pkl 33/709, ch-simsv2s.pkl 25/177) and bert-base-chinese
# (MMSA's SIMS text_bert ids)
_SIMS = replace(_OFFICIAL_MOSI, dims=(768, 33, 709), text_encoder="bert-base-chinese", text_vocab_size=21128)
_SIMSV2 = replace(_SIMS, dims=(768, 25, 177))
PRESETS = {("mosi", "official"): _OFFICIAL_MOSI,
           ("mosei", "official"): _OFFICIAL_MOSEI,
           ("sims", "official"): _SIMS,
           ("simsv2", "official"): _SIMSV2,
           ("iemocap", "official"): _IEMOCAP,
           ("synthetic", "demo"): _DEMO}


@register_model("mcl_mcf", config=MCLMCFConfig, presets=PRESETS, default_preset="official", unsupported=UNSUPPORTED,
                display_name="MCL-MCF", paper="Fan et al., IEEE TAC 2025",
                reference="https://github.com/Zhudogsi/MCL-MCF@6e56e82",
                family="contrastive", order=80)
def mcl_mcf(cfg: MCLMCFConfig) -> MCLMCF:
    """MCL-MCF (Fan et al., IEEE TAC 2025): BERT + LSTMs, multi-layer conv fusion, three-level contrast."""
    return MCLMCF(cfg)
