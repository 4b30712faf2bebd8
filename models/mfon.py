"""MFON: Modal Feature Optimization Network with Prompt (Zhang, Wei, Zou; COLING 2025).

Source: the released code 123sprouting/MFON @fd44467 (MOSI/ and MOSEI/ trees). The released code is the reference.

Model (`models/model.py` TVA_fusion, D = encoder_dim = 768):
- text: BERT `last_hidden_state` of token ids from `raw_text` (<= 256 tokens, padded to the
  longest in the batch) -> proj_t Linear(768, D) -> dropout 0.3; x_t = the [CLS] row;
- modal prompt attention (MPA): P_v = proj_v(vision) + promptv_m, P_a = proj_a(audio) +
  prompta_m, prompts (T x D) init uniform [0, 1), added frame-wise, so the data's T must be
  the prompt length (MOSI v 500 / a 375, MOSEI 500 / 500; the full padded length, no masks);
- cross-modal MulT-style transformers, query = the text sequence, K/V = the prompted
  modality (vision 2 layers; audio MOSI 5 / MOSEI 3), 8 heads, every dropout 0.1, FFN
  width D (not 4D: `trans/transformer.py` fc1 = fc2 = Linear(d, d)), sinusoidal positions
  on both streams, MulT's causal mask (`attn_mask=True`): query i sees keys j <= i +
  |T_k - T_q|; x_v = h_tv[0], x_a = h_ta[0];
- TVA_decoder MLP(3D -> D -> D/2 -> D/8 -> 1, GELU);
- teachers (VisionEncoder / AudioEncoder): Linear(d_m, D) + a self-attention encoder of the
  same kind without mask (vision 4 layers; audio MOSI 3 / MOSEI 2; dropout MOSI v 0.3 / a 0,
  MOSEI 0), output = position 0, pre-trained with a head MLP(D -> D/2 -> D/8 -> 1) on MSE.
Fusion loss (TVA_train.py:83-85, model.py:158-177): MSE(pred, y) + delta_va (KL_v + KL_a) +
delta_nce (NCE(x_v, x_t) + NCE(x_a, x_t)), KL_m = KLDivLoss(batchmean)(log_softmax(x_m),
softmax(teacher_m)) over the D features, NCE(u, w) = -mean_i[cos(u_i, w_i) - logsumexp_j
cos(u_i, w_j)] (temperature 1); KL and NCE in fp32 here. Both only in training mode.

Exact computation, less work: in cross-attention every query row is transformed on its own
(per-row LayerNorm, attention and FFN; K/V are not updated across layers), and the code reads
only row 0. So the stacks run on the [CLS] row alone, and the causal mask becomes "the first
min(T_k, |T_k - T_q| + 1) key frames" (T_q = the batch's padded text width), applied by
slicing K/V before the stack: the same function as the full stack's row 0 (a test checks).
BERT runs through `TextEncoder.cls` (all-padding columns dropped: the same [CLS] state).

Stages (`Vtrain`, `Atrain` then `TVA_train_fusion`, main.py order), per seed:
"vision" (vision teacher + its head), "audio" (audio teacher + head), each 25 epochs, Adam
amsgrad, coupled L2, pred = that teacher head's prediction; then "fusion": everything but
the teachers and their heads (frozen: `load_froze` / `set_froze`), 25 epochs, Adam in the
code's four groups (text = BERT + proj_t; audio = proj_a, audio_with_text, prompta_m;
vision likewise; other = `*_decoder*`). Batch 32, gradient accumulation 4 in every stage.

Parameters with bert-base shapes (tests/test_mfon.py builds them on the meta device): the
fusion model TVA_fusion is 162,547,777 (MOSI) / 152,132,929 (MOSEI), exactly a hand count
of the released code, of which the frozen teachers hold 24,850,176 / 21,368,064 and
137,697,601 / 130,764,865 train in fusion (BERT's pooler included; it never receives a gradient, so Adam skips it). The module
also holds the two pre-training heads (2 x 332,353 = 664,706), which the released code builds
in its separate VisionPretrain / AudioPretrain models, so `count_parameters` gives
163,212,483 / 152,797,635; `fusion_parameter_count()` and `summary()` give the fusion model's.

Harness decisions and deviations (each a field below with its source):
- protocol: selection on validation every epoch of every stage, as the code
  (it keeps the best validation MSE), but on MAE: the harness's metrics have no MSE key;
  the harness's data order; the teachers pre-train per seed;
- `drop_partial_accum`: the trailing partial accumulation group of an epoch is discarded, as
  coded (the `if not left_epochs` after the loop never fires), by clearing those batches'
  gradients in `after_backward`; a split with fewer batches than one group keeps them (the code
  would never step);
- `teacher_dropout_in_fusion`: the frozen teachers run in training mode during fusion, as coded
  (`model.train()` reaches them; dropout 0.3 on the MOSI vision teacher);
- eval predictions depend on the batch (the causal window follows the batch's padded text
  width): eval batch 32 in split order, as the (unshuffled) valid loader; `summary()` records
  `batch_dependent_eval` (= `attn_mask`);
- K and V of a stack share one embedding-dropout mask (the shared MulT layer; the code
  draws two): identical in evaluation, the same dropout rate in training;
- stage None (the model used outside the trainer, e.g. registry tests): the fusion stage with
  trainable teachers, whose pre-training objectives are added (KD targets detached).
IEMOCAP: unsupported (see UNSUPPORTED).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel, Stage
from models.layers.blocks import MLP  # ConFEDE's BaseClassifier: Linear-GELU per hidden size, then Linear
from models.layers.text_encoder import build_text_encoder
from models.layers.transformer import CrossModalTransformer, dropout
from models.registry import register_model

UNSUPPORTED = {"iemocap": "MFON's code is MOSI/MOSEI/SIMS regression only (MSE, one output); its prompts are "
                          "tied to the MMSA unaligned_50 padded lengths"}
TEACHER_STAGES = {"vision": "v", "audio": "a"}  # stage -> modality, main.py order (Vtrain, then Atrain)
FUSION = "fusion"


@dataclass(kw_only=True)
class MFONConfig(ModelConfig):
    text_input: str = "raw_text"  # Text_encoder.py: BertTokenizer on raw_text
    text_max_length: Optional[int] = 256  # Text_encoder.py:26 padding=True, truncation, max_length=256
    setting: str = "unaligned"  # config.py raw_data_path data/MOSI/unaligned_50.pkl
    text_encoder: str = "bert-base-uncased"  # Text_encoder.py from_pretrained; local dir | bert-base | tiny
    text_vocab_size: Optional[int] = None  # vocabulary of a named random-init config (tiny)
    encoder_dim: int = 768  # config.py encoder_fea_dim
    text_dropout: float = 0.3  # text_drop_out
    # modal prompts (model.py:66-67): one row per padded frame
    audio_seq_len: int = 375  # alen = audio_seq_len (MOSEI 500)
    vision_seq_len: int = 500  # vlen = vision_seq_len
    # cross-modal transformers (model.py:73-84)
    cross_heads: int = 8  # vision_text_nhead, audio_text_nhead
    vision_text_layers: int = 2  # vision_text_tf_num_layers
    audio_text_layers: int = 5  # audio_text_tf_num_layers (MOSEI 3)
    cross_dropout: float = 0.1  # drop_out: attn, relu, res and embed dropout
    attn_mask: bool = True  # config attn_mask: MulT buffered_future_mask
    ffn_dim: Optional[int] = None  # None = encoder_dim: trans/transformer.py fc1/fc2 are Linear(d, d)
    # teachers (Vision_encoder.py, Audio_encoder.py)
    teacher_heads: int = 8  # vision_nhead, audio_nhead
    vision_teacher_layers: int = 4  # vision_tf_num_layers
    audio_teacher_layers: int = 3  # audio_tf_num_layers (MOSEI 2)
    vision_teacher_dropout: float = 0.3  # vision_drop_out (MOSEI 0)
    audio_teacher_dropout: float = 0.0  # audio_drop_out
    teacher_attn_mask: bool = False  # vision_attn_mask / audio_attn_mask (MOSI/MOSEI False, SIMS True)
    teacher_dropout_in_fusion: bool = True  # TVA_train.py model.train() also puts the frozen teachers in train mode
    # fusion loss (TVAtrain)
    kd_weight: float = 0.5  # delta_va (MOSEI 0.3)
    nce_weight: float = 0.5  # delta_nce (MOSEI 0.001); delta_tva is unused by the code
    # optimisation: TVAtrain groups, visionPretrain / audioPretrain
    text_lr: float = 5e-5  # TVAtrain.text_lr
    audio_lr: float = 1e-3  # TVAtrain.audio_lr
    vision_lr: float = 1e-3  # TVAtrain.vision_lr (MOSEI 1e-4)
    lr: float = 1e-3  # TVAtrain.other_lr (TVA_decoder)
    text_decay: float = 1e-3  # TVAtrain.text_decay (MOSEI 1e-2)
    audio_decay: float = 1e-3  # TVAtrain.audio_decay
    vision_decay: float = 1e-3  # TVAtrain.vision_decay
    weight_decay: float = 1e-3  # TVAtrain.other_decay
    vision_pretrain_lr: float = 1e-3  # visionPretrain.lr (MOSEI 1e-4)
    audio_pretrain_lr: float = 1e-3  # audioPretrain.lr (MOSEI 1e-4)
    vision_pretrain_decay: float = 1e-3  # visionPretrain.decay
    audio_pretrain_decay: float = 1e-3  # audioPretrain.decay
    pretrain_amsgrad: bool = True  # Vtrain.py / Atrain.py Adam(amsgrad=True)
    vision_epochs: int = 25  # visionPretrain.epoch
    audio_epochs: int = 25  # audioPretrain.epoch
    fusion_epochs: int = 25  # TVAtrain.epoch
    optimizer: str = "adam"  # torch.optim.Adam, weight decay as coupled L2 (every stage)
    batch_size: int = 32  # downStream.batch_size (train, valid and test loaders)
    grad_accum_steps: int = 4  # update_epochs
    drop_partial_accum: bool = True  # the trailing partial group's gradients are discarded (never stepped)
    early_stop_patience: Optional[int] = None  # the code runs every epoch and keeps the best
    selection_metric: str = "MAE"  # code: best valid MSE; the harness has no MSE key (module docstring)
    max_epochs: int = 25  # harness cap = the longest stage


class Teacher(nn.Module):
    """VisionEncoder / AudioEncoder: Linear(d_m, D), then a MulT-style self-attention
    encoder (MulT's causal mask only if `causal`, sinusoidal positions, FFN width `ffn`); the output is position 0."""

    def __init__(self, d_in: int, d: int, heads: int, layers: int, p: float, ffn: int, causal: bool = False):
        super().__init__()
        self.proj = nn.Linear(d_in, d)
        self.encoder = CrossModalTransformer(d, heads, layers, p, p, p, p, causal=causal, positions=True, ffn_dim=ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.proj(x))[:, 0]


def kd_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KLDivLoss(batchmean)(log_softmax(student, 1), softmax(teacher, 1)) (model.py get_KL_loss), fp32."""
    return F.kl_div(F.log_softmax(student.float(), dim=1), F.softmax(teacher.float(), dim=1), reduction="batchmean")


def info_nce(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """-mean_i[cos(u_i, w_i) - logsumexp_j cos(u_i, w_j)] (model.py get_InfoNCE_loss), fp32."""
    x1 = u.float() / u.float().norm(dim=1, keepdim=True)  # as coded: no epsilon
    x2 = w.float() / w.float().norm(dim=1, keepdim=True)
    return -((x1 * x2).sum(-1) - torch.logsumexp(x1 @ x2.T, dim=-1)).mean()


def visible_keys(t_q: int, t_k: int, causal: bool) -> int:
    """Key frames the first query row sees under MulT's mask (j <= 0 + |T_k - T_q|)."""
    return min(t_k, abs(t_k - t_q) + 1) if causal else t_k


class MFON(MSAModel):
    cfg: MFONConfig

    def __init__(self, cfg: MFONConfig):
        super().__init__(cfg)
        if cfg.task != "regression":
            raise ValueError(f"MFON is regression-only (task '{cfg.task}'): {UNSUPPORTED['iemocap']}")
        d, ffn = cfg.encoder_dim, cfg.ffn_dim or cfg.encoder_dim
        self.prompt_a = nn.Parameter(torch.rand(cfg.audio_seq_len, d))  # prompta_m: torch.rand
        self.prompt_v = nn.Parameter(torch.rand(cfg.vision_seq_len, d))  # promptv_m
        self.text = build_text_encoder(cfg.text_encoder, cfg.text_vocab_size)
        self.proj_t = nn.Linear(self.text.hidden_size, d)
        p = cfg.cross_dropout
        # causal=False: the mask is applied by slicing K/V to the [CLS] row's window (module docstring)
        cross = lambda layers: CrossModalTransformer(d, cfg.cross_heads, layers, p, p, p, p, causal=False,  # noqa: E731
                                                     positions=True, ffn_dim=ffn)
        self.proj_v = nn.Linear(cfg.dims[2], d)
        self.vision_with_text = cross(cfg.vision_text_layers)
        self.proj_a = nn.Linear(cfg.dims[1], d)
        self.audio_with_text = cross(cfg.audio_text_layers)
        teacher = lambda d_in, layers, drop: Teacher(d_in, d, cfg.teacher_heads, layers, drop, ffn,  # noqa: E731
                                                     cfg.teacher_attn_mask)
        self.teacher = nn.ModuleDict({"v": teacher(cfg.dims[2], cfg.vision_teacher_layers, cfg.vision_teacher_dropout),
                                      "a": teacher(cfg.dims[1], cfg.audio_teacher_layers, cfg.audio_teacher_dropout)})
        self.decoder = MLP(3 * d, [d, d // 2, d // 8], cfg.n_out)  # TVA_decoder
        # stage-1 heads (VisionPretrain / AudioPretrain classifier): not part of TVA_fusion
        self.teacher_head = nn.ModuleDict({m: MLP(d, [d // 2, d // 8], cfg.n_out) for m in "va"})
        self._batch_in_epoch = 0
        self._drop_from: Optional[int] = None  # first batch of the epoch's trailing partial group
        self.teacher_valid: dict[str, float] = {}

    # -- forward -----------------------------------------------------------------------------
    @staticmethod
    def _input(batch, m: str) -> torch.Tensor:
        return batch.vision if m == "v" else batch.audio

    def _prompted(self, batch, m: str) -> torch.Tensor:
        """MPA: proj_m(x_m) + prompt_m, frame by frame."""
        x, prompt = self._input(batch, m), self.prompt_v if m == "v" else self.prompt_a
        if x.shape[1] != prompt.shape[0]:
            name = "vision_seq_len" if m == "v" else "audio_seq_len"
            raise ValueError(f"{'vision' if m == 'v' else 'audio'} has {x.shape[1]} frames but the prompt has "
                             f"{prompt.shape[0]} rows (MFON adds one prompt row per padded frame): set {name}")
        return (self.proj_v if m == "v" else self.proj_a)(x) + prompt

    @contextlib.contextmanager
    def _teacher_mode(self) -> Iterator[None]:
        """The teachers' mode during fusion: the model's (as coded) or eval."""
        saved = [t.training for t in self.teacher.values()]
        if not self.cfg.teacher_dropout_in_fusion:
            self.teacher.eval()
        try:
            yield
        finally:
            for t, mode in zip(self.teacher.values(), saved, strict=True):
                t.train(mode)

    def forward(self, batch) -> ModelOutput:
        if self.stage in TEACHER_STAGES:  # pre-training: only the stage's teacher and its head run
            m = TEACHER_STAGES[self.stage]
            rep = self.teacher[m](self._input(batch, m))
            pred = self.teacher_head[m](rep)
            return ModelOutput(pred=pred, unimodal={m: pred}, features={m: rep})
        cfg = self.cfg
        cls = self.text.cls(batch.text_ids, batch.text_mask, batch.text_segment)
        x_t = dropout(self.proj_t(cls), cfg.text_dropout, self.training)  # F.dropout(proj_t(h)); only [CLS] is read
        t_q = batch.text_ids.shape[1]  # the batch's padded text width (dynamic padding, as coded)
        feats = {"t": x_t}
        for m, stack in (("v", self.vision_with_text), ("a", self.audio_with_text)):
            kv = self._prompted(batch, m)
            kv = kv[:, : visible_keys(t_q, kv.shape[1], cfg.attn_mask)]
            feats[m] = stack(x_t.unsqueeze(1), kv)[:, 0]  # h_tm[0]
        pred = self.decoder(torch.cat([feats["t"], feats["v"], feats["a"]], dim=-1))
        extras: dict[str, Any] = {}
        unimodal = None
        if self.training:  # mode='train': the teachers' targets for the distillation
            if self.stage is None:  # outside the trainer: trainable teachers, their objectives added
                reps = {m: self.teacher[m](self._input(batch, m)) for m in "va"}
                unimodal = {m: self.teacher_head[m](reps[m]) for m in "va"}
                extras["teacher"] = {m: r.detach() for m, r in reps.items()}
            else:
                with torch.no_grad(), self._teacher_mode():
                    extras["teacher"] = {m: self.teacher[m](self._input(batch, m)) for m in "va"}
        return ModelOutput(pred=pred, unimodal=unimodal, features=feats, extras=extras)

    def loss(self, output: ModelOutput, batch) -> dict[str, torch.Tensor]:
        y = batch.labels.reshape(-1).float()
        mse = lambda p: F.mse_loss(p.reshape(-1).float(), y)  # noqa: E731  torch.mean((pred - label) ** 2)
        task = mse(output.pred)
        if self.stage in TEACHER_STAGES or "teacher" not in output.extras:
            return {"total": task, "task": task}
        f, teacher = output.features, output.extras["teacher"]
        assert f is not None  # forward fills it
        parts = {"task": task, "kd_v": kd_loss(f["v"], teacher["v"]), "kd_a": kd_loss(f["a"], teacher["a"]),
                 "nce": info_nce(f["v"], f["t"]) + info_nce(f["a"], f["t"])}
        total = task + self.cfg.kd_weight * (parts["kd_v"] + parts["kd_a"]) + self.cfg.nce_weight * parts["nce"]
        if output.unimodal:  # stage None
            for m, p in output.unimodal.items():
                parts[f"pretrain_{m}"] = mse(p)
                total = total + parts[f"pretrain_{m}"]
        return {"total": total, **parts}

    # -- stages ------------------------------------------------------------------------------
    def teacher_parameters(self, m: str) -> list[nn.Parameter]:
        return [*self.teacher[m].parameters(), *self.teacher_head[m].parameters()]

    def fusion_parameters(self) -> list[nn.Parameter]:
        """What trains in fusion: all of TVA_fusion but the frozen teachers (set_froze)."""
        skip = {id(p) for m in "va" for p in self.teacher_parameters(m)}
        return [p for p in self.parameters() if id(p) not in skip]

    def fusion_parameter_count(self) -> int:
        """Parameters of the released fusion model TVA_fusion (all but the stage-1 heads)."""
        return sum(p.numel() for p in self.parameters()) - sum(p.numel() for p in self.teacher_head.parameters())

    def stages(self) -> list[Stage]:
        cfg = self.cfg

        def teacher(name: str, epochs: int) -> Stage:
            m = TEACHER_STAGES[name]
            return Stage(name, trainable=lambda: self.teacher_parameters(m), max_epochs=epochs, contributions=False)

        return [teacher("vision", cfg.vision_epochs), teacher("audio", cfg.audio_epochs),
                Stage(FUSION, trainable=self.fusion_parameters, max_epochs=cfg.fusion_epochs)]

    def on_epoch_start(self, epoch: int, state: Any) -> dict[str, Any]:
        """Find the epoch's trailing partial accumulation group (dropped, as coded)."""
        self._batch_in_epoch = 0
        n, accum = state.data.train.num_batches(self.cfg.batch_size), max(1, self.cfg.grad_accum_steps)
        full = (n // accum) * accum
        self._drop_from = full if self.cfg.drop_partial_accum and 0 < full < n else None
        return {"dropped_batches": n - full} if self._drop_from is not None else {}

    def after_backward(self, step: int) -> None:
        i, self._batch_in_epoch = self._batch_in_epoch, self._batch_in_epoch + 1
        if self._drop_from is not None and i >= self._drop_from:
            for p in self.parameters():  # never stepped in the code: this group's update is skipped
                p.grad = None

    def on_epoch_end(self, epoch: int, state: Any) -> dict[str, Any]:
        if self.stage in TEACHER_STAGES:  # the teachers' best validation value, for summary()
            if (value := state.valid_metrics.get("MAE")) is not None:
                self.teacher_valid[self.stage] = min(value, self.teacher_valid.get(self.stage, float("inf")))
        return {}

    # -- protocol ----------------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """TVA_train.py's four groups, then each teacher's pre-training group (Adam amsgrad)."""
        cfg = self.cfg
        group = lambda name, params, lr, wd, amsgrad=False: {  # noqa: E731
            "name": name, "params": params, "lr": lr, "weight_decay": wd, "amsgrad": amsgrad}
        of = lambda *mods: [p for mod in mods for p in mod.parameters()]  # noqa: E731
        ams = cfg.pretrain_amsgrad
        return [group("text", of(self.text, self.proj_t), cfg.text_lr, cfg.text_decay),
                group("audio", [*of(self.proj_a, self.audio_with_text), self.prompt_a], cfg.audio_lr, cfg.audio_decay),
                group("vision", [*of(self.proj_v, self.vision_with_text), self.prompt_v], cfg.vision_lr,
                      cfg.vision_decay),
                group("other", of(self.decoder), cfg.lr, cfg.weight_decay),
                group("teacher_v", self.teacher_parameters("v"), cfg.vision_pretrain_lr, cfg.vision_pretrain_decay, ams),
                group("teacher_a", self.teacher_parameters("a"), cfg.audio_pretrain_lr, cfg.audio_pretrain_decay, ams)]

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        # t: BERT + proj_t; a / v: projection, prompt, cross-modal stack, teacher and its head; the decoder is shared
        return {"t": [*self.text.parameters(), *self.proj_t.parameters()],
                "a": [*self.proj_a.parameters(), self.prompt_a, *self.audio_with_text.parameters(),
                      *self.teacher_parameters("a")],
                "v": [*self.proj_v.parameters(), self.prompt_v, *self.vision_with_text.parameters(),
                      *self.teacher_parameters("v")]}

    def summary(self) -> dict[str, Any]:
        cfg = self.cfg
        return {"batch_dependent_eval": cfg.attn_mask, "fusion_model_params": self.fusion_parameter_count(),
                "teacher_params": sum(p.numel() for p in self.teacher.parameters()),
                "teacher_valid_MAE": dict(self.teacher_valid), "drop_partial_accum": cfg.drop_partial_accum,
                "teacher_dropout_in_fusion": cfg.teacher_dropout_in_fusion}


# -- presets ---------------------------------------------------------------------------------
_OFFICIAL_MOSI = MFONConfig(dims=(768, 5, 20))  # MOSI/config.py: every default above is MOSI's
_OFFICIAL_MOSEI = replace(  # MOSEI/config.py
    _OFFICIAL_MOSI, dims=(768, 74, 35), audio_seq_len=500, audio_text_layers=3, audio_teacher_layers=2,
    vision_teacher_dropout=0.0, audio_teacher_dropout=0.0, kd_weight=0.3, nce_weight=0.001,
    vision_lr=1e-4, text_decay=1e-2, vision_pretrain_lr=1e-4, audio_pretrain_lr=1e-4,
)
_OFFICIAL_SIMS = replace(  # SIMS/config.py (every other value as MOSI/config.py)
    _OFFICIAL_MOSI, dims=(768, 33, 709),  # audio_fea_dim 33, vision_fea_dim 709
    text_encoder="bert-base-chinese", text_vocab_size=21128,  # language 'cn': Text_encoder.py:14 BertTokenizer/BertModel 'bert-base-chinese'
    audio_seq_len=400, vision_seq_len=55,  # audio_seq_len 400, vision_seq_len 55 (alen / vlen)
    vision_teacher_dropout=0.1, audio_teacher_dropout=0.5,  # vision_drop_out, audio_drop_out = 0.1, 0.5
    vision_teacher_layers=5, audio_teacher_layers=3,  # vision_tf_num_layers, audio_tf_num_layers = 5, 3
    teacher_attn_mask=True,  # vision_attn_mask, audio_attn_mask = True, True
    vision_text_layers=5, audio_text_layers=2,  # vision_text_tf_num_layers, audio_text_tf_num_layers = 5, 2
    cross_dropout=0.6, text_dropout=0.5,  # drop_out 0.6, text_drop_out 0.5
    vision_pretrain_lr=1e-4,  # visionPretrain.lr (audioPretrain.lr 1e-3 as MOSI)
    vision_decay=1e-2, weight_decay=1e-2,  # TVAtrain.vision_decay, other_decay
    nce_weight=0.005,  # delta_nce
)
# CH-SIMS v2: MFON's code has no SIMS v2 configuration; harness decision: the SIMS preset with the
# ch-simsv2s.pkl widths 768/25/177 and the prompts' T_a 925, T_v 232
_SIMSV2 = replace(_OFFICIAL_SIMS, dims=(768, 25, 177), audio_seq_len=925, vision_seq_len=232)
# synthetic `demo` (harness decision): tiny random-init BERT on the synthetic token ids, a
# 32-wide model with one layer per stack, prompts for the synthetic T = 50, a few epochs per
# stage, no accumulation (the demo subsets have only a few batches)
_DEMO = replace(_OFFICIAL_MOSI, text_encoder="tiny", text_vocab_size=2048, text_input="ids", text_max_length=None,
                encoder_dim=32, cross_heads=4, teacher_heads=4, vision_text_layers=1, audio_text_layers=1,
                vision_teacher_layers=1, audio_teacher_layers=1, audio_seq_len=50, vision_seq_len=50,
                text_lr=5e-4, vision_epochs=2, audio_epochs=2, fusion_epochs=3, grad_accum_steps=1, max_epochs=3)

PRESETS = {("mosi", "official"): _OFFICIAL_MOSI,
           ("mosei", "official"): _OFFICIAL_MOSEI,
           ("sims", "official"): _OFFICIAL_SIMS,
           ("simsv2", "official"): _SIMSV2,
           ("synthetic", "demo"): _DEMO}


@register_model("mfon", config=MFONConfig, presets=PRESETS, default_preset="official", unsupported=UNSUPPORTED,
                display_name="MFON", paper="Zhang et al., COLING 2025",
                reference="https://github.com/123sprouting/MFON@fd44467",
                family="transformer fusion", order=90)
def mfon(cfg: MFONConfig) -> MFON:
    """MFON (Zhang et al., COLING 2025): modal prompts, text-queried cross-modal transformers, frozen KD teachers."""
    return MFON(cfg)
