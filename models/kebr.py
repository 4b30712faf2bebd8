"""KEBR: Knowledge-Enhanced self-supervised Balanced Representation (Zhu et al., ACM MM 2024).

Source: the released code aoqzhu/KEBR@171de2d (MIT; `models.py`, `main.py`, `pretrain.py`,
`data_loader.py`), read with git. The
released code is the reference; it is SKESL (qianfan1996/SKESL) plus the "MCC" loss.

Forward (models.py `PredictModel`):
1. text: BERT (pooler built, never used) over the token ids truncated to 39 positions as the
   code's tokenizer does (`max_length=39`, data_loader.py:45-50; [SEP] kept) -> last hidden states;
2. TCMF (`CrossmodalEncoder`): ONE `CrossmodalEncoderLayer` appended 4 times to a ModuleList,
   so the 4 passes share weights (models.py:113-127; `shared_layer=False` builds 4 for ablation).
   A layer: h = CMA_a(x, audio) + CMA_v(x, video) + x; x' = h + Dropout_0.5(W_fc LN(h)) (no
   activation). CMA(x, m) = W_o softmax(W_q LN(x) (W_k LN(m))^T / sqrt(e)) W_v LN(m), single
   head, no dropout (models.py:66-91). Audio and vision enter every pass raw: no projection, no
   padding mask (zero-padded frames are attended, as coded);
3. mean over ALL text positions, [PAD] included (no mask, models.py:250) -> fc1 -> ReLU ->
   Dropout 0.5 -> fc2 -> the score.
Loss (main.py:104-125): L1 + mean_i l_i, the multimodal cosine-constrained (MCC) term with
a_i = cos(audio_i, text_i), b_i = cos(video_i, text_i) on the flattened, L2-normalised TCMF
output / raw audio / raw video, tiled and zero-padded to a common width (`matrix_alignment`):
l_i = |cos(pi ((a+b)/2 + theta) exp(|a-b|/2))| if a >= 0 and b >= 0, else 1 + |a| + |b|
(theta 0.4). The per-modality terms sim_aa / sim_vv are logged only, as coded. Audio and
vision are inputs, so MCC gradients reach only BERT and the TCMF.

Quirks kept (each a switch): `video_tile_quirk` - models.py:54 tiles the (already tiled)
*audio* matrix into the video slot whenever video is narrower than half the widest input.
Harmless on the code's own widths, but on MMSA unaligned pickles (text 39x768 = 29,952, MOSI
audio 375x5, vision 500x20; MOSEI 500x74, 500x35) it fires: b_i is then a cosine of audio, not
video. `mean_over_padding` (no mask). Fixed: `mcc_eps` 1e-8 clamps the cosine denominator
(the code divides 0/0 = NaN on an all-zero input, e.g. a masked modality; 0 restores it).

Knowledge-enhanced pre-training (pretrain.py) is a `Stage`, present only when `pretrain_dir`
is set: otherwise the model trains once, and tables name the row
"KEBR (no pre-training)". With `pretrain_dir`, `stages()` = [pretrain, finetune]; the
directory must hold `emovoxceleb.pkl` in the format pretrain.py reads ({"raw_text", "audio",
"video"}, unlabeled VoxCeleb1-based EmoVoxCeleb clips with the same audio/vision features as the
fine-tuning data) and the VADER lexicon `vader_lexicon.txt`; the stage declares them
(`StageData("kebr_pretrain_clips")`) and bench/data/kebr_pretrain.py checks them before training
(missing or malformed files fail naming the file and key) and builds the masked batches. Pre-training: BERT frozen, TCMF + a "fitter" head (fc1/fc2 as above, a separate
module that fine-tuning discards, main.py:75-78) at lr 1e-4; the fitter reads the TCMF state at
the [MASK] of the sentence's highest-|valence| VADER word (all its occurrences masked; target
round(0.75 valence, 3); a random token and target 0 when none; crop to [idx-20, idx+19] when
idx > 36; attention mask from the unmasked text, data_loader.py:54-80); loss L1 + 0.5 mean
l'_i, l' = 1 - m if m < 0 else |cos(pi (m + 1/4))|, m = (a+b)/2 (pretrain.py:76-88).
Harness mechanics (the trainer has one training split per run): in the pretrain stage each
training step gets the next unlabeled batch (a `PretrainBatch`) instead of the labeled one (a stage "epoch" is as
many steps as the labeled split has batches; the unlabeled set cycles, reshuffled per pass),
and validation scores the fitter on the mean-pooled labeled validation split (selection on
validation; the code keeps its epoch-200 state). Tokens are encoded
directly rather than through convert_tokens_to_string + encode (same ids up to word-piece
round-trips). The tokenizer is the `pretrain_tokenizer` folder, else the `text_encoder` folder.

Parameters, bert-base shapes (tests/test_kebr.py, built on the meta device):
111,064,065 + 514 (d_a + d_v). Native widths (33, 709): 111,445,453, as a hand count of the released layers
on the code; MMSA MOSI (5, 20): 111,076,915; MOSEI (74, 35): 111,120,091. The PaSE supplement
reports 127,467,631 for KEBR: a published figure the released code does not reach (no layer
count or width pair gives it); not tuned towards. With `pretrain_dir` the fitter adds
197,121. Unshared ablation (33, 709): 116,743,729.

Not reproduced (harness protocol): selection on the validation L1 (the code
keeps the lowest validation L1 + MCC', MCC' a third formula, main.py:147-166); seed 666; its
loaders build tensors per sample. Kept: Adam, BERT and TCMF at 5e-6, head at 1e-4,
CosineAnnealingLR(T_max=20) stepped per epoch over 200 epochs (it re-rises, period 40), batch 32,
no weight decay, no clipping, every epoch run. Audio/vision lengths are the file's (the code
pads/truncates its own features to 400/55 frames).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Optional, cast

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel, Schedule, Stage, StageData, task_loss
from models.layers.seq_encoder import masked_mean
from models.layers.text_encoder import build_text_encoder
from models.registry import register_model

SCHEDULES = ("cosine", "none")
PRETRAIN, FINETUNE = "pretrain", "finetune"
PRETRAIN_FILE, LEXICON_FILE = "emovoxceleb.pkl", "vader_lexicon.txt"
UNSUPPORTED: dict[str, str] = {}  # IEMOCAP: a harness preset without pre-training, see PRESETS


@dataclass(kw_only=True)
class KEBRConfig(ModelConfig):
    text_input: str = "ids"  # BERT token ids (data_loader.py encode_words_bert)
    setting: str = "unaligned"  # raw, unaligned audio/vision sequences (get_*_embedding.py)
    dims_from_data: bool = True  # harness decision: audio/vision widths from the data file
    text_encoder: str = "bert-base-uncased"  # main.py --pretrained_language_model_name
    text_vocab_size: Optional[int] = None  # vocabulary of a named random-init config (tiny)
    text_length: Optional[int] = 39  # tokenizer max_length=39 (data_loader.py:45); None: the data's width
    embed_dim: int = 256  # main.py:45 embed_dim
    fc_dim: int = 256  # main.py:46 fc_dim
    num_layers: int = 4  # CrossmodalEncoder num_layers=4 (models.py:114)
    shared_layer: bool = True  # models.py:118-121: the same layer object appended num_layers times
    fusion_dropout: float = 0.5  # CrossmodalEncoderLayer attn_dropout=0.5, after fc (models.py:109)
    head_dropout: float = 0.5  # PredictModel fc_dropout=0.5 (models.py:232)
    mean_over_padding: bool = True  # torch.mean(output, dim=1) over all positions (models.py:250); False: masked mean
    # MCC loss (main.py:104-125)
    mcc_weight: float = 1.0  # loss = t_l + s_l (main.py:123)
    mcc_angle: float = 0.4  # main.py:95 angle
    video_tile_quirk: bool = True  # models.py:54 `matrix3 = matrix2.repeat(...)`; False tiles video itself
    mcc_eps: float = 1e-8  # harness fix: cosine denominator clamp; 0 = the code's 0/0 on all-zero inputs
    # optimiser (main.py:83-91): torch Adam (main.py:11, :89), coupled L2 0; `lr` is the fc1/fc2 groups' --learning_rate
    lr: float = 1e-4  # main.py:25 --learning_rate
    lr_bert: float = 5e-6  # main.py:86 pretrained_language_model lr
    lr_fusion: float = 5e-6  # main.py:87 crossmodal_encoder lr
    lr_schedule: str = field(default="cosine", metadata={"choices": SCHEDULES})  # CosineAnnealingLR per epoch
    cosine_t_max: int = 20  # CosineAnnealingLR(T_max=20), eta_min 0 (main.py:91)
    # knowledge-enhanced pre-training (pretrain.py): a stage only when pretrain_dir is set
    pretrain_dir: Optional[str] = None  # folder with emovoxceleb.pkl + vader_lexicon.txt; None: no stage
    pretrain_tokenizer: Optional[str] = None  # tokenizer folder; None: the text_encoder folder
    pretrain_epochs: int = 200  # pretrain.py --num_epochs; main.py loads model_epoch200.pth
    pretrain_lr: float = 1e-4  # pretrain.py --learning_rate (TCMF + fitter; BERT frozen)
    pretrain_batch_size: int = 32  # pretrain.py bs = 32
    pretrain_mcc_weight: float = 0.5  # loss = t_l + 0.5 * s_l (pretrain.py:86)
    pretrain_angle: float = 0.25  # pretrain.py angle = 1 / 4
    valence_scale: float = 0.75  # round(label * 0.75, 3) (data_loader.py:80)


class CrossModalAttention(nn.Module):
    """Single-head attention of text queries over a raw non-verbal sequence (models.py:66-91)."""

    def __init__(self, d_text: int, d_other: int, embed: int):
        super().__init__()
        self.ln_text, self.ln_other = nn.LayerNorm(d_text), nn.LayerNorm(d_other)
        self.q = nn.Linear(d_text, embed)
        self.k, self.v = nn.Linear(d_other, embed), nn.Linear(d_other, embed)
        self.out = nn.Linear(embed, d_text)
        self.scale = embed ** -0.5

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        q = self.q(self.ln_text(x))
        m = self.ln_other(m)
        attn = torch.softmax(q @ self.k(m).transpose(1, 2) * self.scale, dim=-1)
        return self.out(attn @ self.v(m))

    def other_side(self) -> list[nn.Parameter]:
        """The parameters that read only the non-verbal input (its LayerNorm, K and V)."""
        return [*self.ln_other.parameters(), *self.k.parameters(), *self.v.parameters()]


class TCMFLayer(nn.Module):
    """h = CMA_a + CMA_v + x; h + Dropout(W_fc LN(h)) (models.py:94-110)."""

    def __init__(self, d_text: int, d_a: int, d_v: int, embed: int, dropout: float):
        super().__init__()
        self.cma_a, self.cma_v = CrossModalAttention(d_text, d_a, embed), CrossModalAttention(d_text, d_v, embed)
        self.norm = nn.LayerNorm(d_text)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(d_text, d_text)

    def forward(self, x: torch.Tensor, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        h = self.cma_a(x, audio) + self.cma_v(x, video) + x
        return h + self.dropout(self.fc(self.norm(h)))


class TCMF(nn.Module):
    """`num_layers` applications of one shared layer (or of distinct layers when unshared)."""

    def __init__(self, cfg: KEBRConfig, d_text: int):
        super().__init__()
        make = lambda: TCMFLayer(d_text, cfg.dims[1], cfg.dims[2], cfg.embed_dim, cfg.fusion_dropout)  # noqa: E731
        n = cfg.num_layers  # shared: `new_layer = self.encoderlayer` appended n times (models.py:118-121)
        self.layers = nn.ModuleList([make()] * n if cfg.shared_layer else [make() for _ in range(n)])

    def forward(self, x: torch.Tensor, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, audio, video)
        return x


class Head(nn.Module):
    """fc1 -> ReLU -> Dropout -> fc2 (`PredictModel.predict`, `PretrainModel.fitter`)."""

    def __init__(self, d_in: int, d: int, dropout: float, n_out: int):
        super().__init__()
        self.fc1, self.dropout, self.fc2 = nn.Linear(d_in, d), nn.Dropout(dropout), nn.Linear(d, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


# -- MCC similarities and losses -------------------------------------------------------------
def aligned_widths(widths: tuple[int, int, int], video_tile_quirk: bool) -> tuple[tuple[int, int, int], int]:
    """`matrix_alignment` (models.py:37-62) as bookkeeping: per input (text, audio, video) the
    tile count, and which input fills the video slot (2 = video, 1 = the tiled audio: the
    quirk). Returns ((tiles_t, tiles_a, tiles_v), video_source)."""
    top = max(widths)
    tiles = [top // w if top // w >= 2 else 1 for w in widths]
    source = 1 if tiles[2] > 1 and video_tile_quirk else 2  # matrix3 = matrix2.repeat(...), matrix2 already tiled
    return (tiles[0], tiles[1], tiles[2]), source


def mcc_similarities(fused: torch.Tensor, audio: torch.Tensor, video: torch.Tensor,
                     video_tile_quirk: bool = True, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b), each (B,): cosine of the flattened, L2-normalised, tiled and zero-padded audio /
    video with the text (models.py:241-262), in float32. Zero padding changes no norm, so the
    dot runs over the common prefix without building the padded matrices."""
    flat = [F.normalize(x.float().flatten(1), dim=1) for x in (fused, audio, video)]
    tiles, source = aligned_widths((flat[0].shape[1], flat[1].shape[1], flat[2].shape[1]), video_tile_quirk)
    t = flat[0].repeat(1, tiles[0])
    a = flat[1].repeat(1, tiles[1])
    v = a.repeat(1, tiles[2]) if source == 1 else flat[2].repeat(1, tiles[2])

    def cos(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = min(x.shape[1], y.shape[1])
        dot = (x[:, :w] * y[:, :w]).sum(1)
        return dot / (x.norm(dim=1) * y.norm(dim=1)).clamp_min(eps)

    return cos(a, t), cos(v, t)


def mcc_finetune(a: torch.Tensor, b: torch.Tensor, angle: float) -> torch.Tensor:
    """Per sample: |cos(pi ((a+b)/2 + angle) exp(|a-b|/2))| if a, b >= 0 else 1 + |a| + |b| (main.py:122-125)."""
    both = torch.abs(torch.cos(math.pi * ((a + b) / 2 + angle) * torch.exp(torch.abs(a - b) * 0.5)))
    return torch.where((a >= 0) & (b >= 0), both, 1 + torch.abs(a) + torch.abs(b))


def mcc_single(sim: torch.Tensor, angle: float) -> torch.Tensor:
    """Per sample: 1 - sim if sim < 0 else |cos(pi (sim + angle))| (main.py:115-118, pretrain.py:83-84)."""
    return torch.where(sim < 0, 1 - sim, torch.abs(torch.cos(math.pi * (sim + angle))))


# -- the unlabeled pre-training batches (built by bench/data/kebr_pretrain.py) --------------
@dataclass
class PretrainBatch:
    """One batch of masked unlabeled clips (data_loader.py `mask_text_bert`)."""

    ids: torch.Tensor
    mask: torch.Tensor
    segment: torch.Tensor
    audio: torch.Tensor
    vision: torch.Tensor
    target: torch.Tensor  # (B,) masked word's scaled valence
    position: torch.Tensor  # (B,) [MASK] index
    sep: int  # the tokenizer's [SEP] id

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PretrainBatch":
        moved = {k: v.to(device, non_blocking=non_blocking) for k, v in vars(self).items() if k != "sep"}
        return PretrainBatch(**moved, sep=self.sep)


# -- the model -------------------------------------------------------------------------------
class KEBR(MSAModel):
    cfg: KEBRConfig

    def __init__(self, cfg: KEBRConfig):
        super().__init__(cfg)
        if cfg.task != "regression" and cfg.pretrain_dir:
            raise ValueError(f"KEBR's pre-training regresses a valence score; task '{cfg.task}' has none: "
                             "run it without pretrain_dir (fine-tuning only)")
        self.text = build_text_encoder(cfg.text_encoder, cfg.text_vocab_size)  # AutoModel: pooler built
        d = self.text.hidden_size
        self.fusion = TCMF(cfg, d)
        self.head = Head(d, cfg.fc_dim, cfg.head_dropout, cfg.n_out)
        # pretrain.py's fitter: a head of its own, dropped by main.py:78 (only with pre-training)
        self.fitter = Head(d, cfg.fc_dim, cfg.head_dropout, 1) if cfg.pretrain_dir else None

    def _text(self, ids: torch.Tensor, mask: torch.Tensor, segment: Optional[torch.Tensor], sep: int):
        """Token ids truncated as the code's tokenizer does (max_length, [SEP] last)."""
        n = self.cfg.text_length
        if n is not None and ids.shape[1] > n:
            overflow = mask[:, n:].sum(1) > 0
            ids, mask = ids[:, :n].clone(), mask[:, :n]
            segment = segment[:, :n] if segment is not None else None
            ids[:, -1] = torch.where(overflow, torch.full_like(ids[:, -1], sep), ids[:, -1])
        return ids, mask, segment

    def _fused(self, ids, mask, segment, audio, video, sep: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask, segment = self._text(ids, mask, segment, sep)
        return self.fusion(self.text(ids, mask, segment), audio, video), mask

    def _pool(self, fused: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The mean over the tokens; with mean_over_padding, [PAD] positions included (models.py:250)."""
        return fused.mean(1) if self.cfg.mean_over_padding else masked_mean(fused, mask)

    def forward(self, batch) -> ModelOutput:
        if isinstance(batch, PretrainBatch):  # pretrain.py: the fitter at the [MASK] position
            return self._pretrain_forward(batch)
        fused, mask = self._fused(batch.text_ids, batch.text_mask, batch.text_segment, batch.audio, batch.vision,
                                  batch.special_ids[1])
        pooled = self._pool(fused, mask)
        head = self._fitter() if self.stage == PRETRAIN else self.head  # pretrain validation: the fitter's score
        return ModelOutput(pred=head(pooled), features={"fused": pooled},
                           extras={"fused": fused, "audio": batch.audio, "video": batch.vision})

    def _fitter(self) -> Head:
        if self.fitter is None:
            raise RuntimeError("KEBR's pretrain stage needs pretrain_dir (no fitter was built)")
        return self.fitter

    def _pretrain_forward(self, pb: PretrainBatch) -> ModelOutput:
        """The fitter's score at each clip's [MASK] position of an unlabeled batch."""
        fused, _ = self._fused(pb.ids, pb.mask, pb.segment, pb.audio, pb.vision, pb.sep)
        at_mask = fused[torch.arange(fused.shape[0], device=fused.device), pb.position]
        return ModelOutput(pred=self._fitter()(at_mask), extras={"fused": fused, "audio": pb.audio, "video": pb.vision})

    def similarities(self, output: ModelOutput) -> tuple[torch.Tensor, torch.Tensor]:
        e = output.extras
        return mcc_similarities(e["fused"], e["audio"], e["video"], self.cfg.video_tile_quirk, self.cfg.mcc_eps)

    def loss(self, output: ModelOutput, batch) -> dict[str, torch.Tensor]:
        """L1 + MCC (main.py:104-125); sim_aa / sim_vv are logged, not back-propagated."""
        c = self.cfg
        a, b = self.similarities(output)
        task = task_loss(output.pred, batch.labels, c.task)
        mcc = mcc_finetune(a, b, c.mcc_angle).mean()
        return {"total": task + c.mcc_weight * mcc, "task": task, "mcc": mcc,
                "mcc_a": mcc_single(a, c.mcc_angle).mean().detach(), "mcc_v": mcc_single(b, c.mcc_angle).mean().detach()}

    def pretrain_loss(self, output: ModelOutput, batch) -> dict[str, torch.Tensor]:
        """L1(fitter, valence target) + 0.5 mean l'((a+b)/2) (pretrain.py:76-88)."""
        c = self.cfg
        a, b = self.similarities(output)
        target = batch.target if isinstance(batch, PretrainBatch) else batch.labels  # validation: the labelled split
        task = task_loss(output.pred, target, "regression")
        mcc = mcc_single((a + b) / 2, c.pretrain_angle).mean()
        return {"total": task + c.pretrain_mcc_weight * mcc, "task": task, "mcc": mcc}

    # -- stages, optimisation ----------------------------------------------------------------
    def stages(self) -> list[Stage]:
        """[] without `pretrain_dir`; else [pretrain (BERT frozen), finetune (all but the fitter)]."""
        if not self.cfg.pretrain_dir:
            return []
        c = self.cfg
        fitter = self._fitter()
        pre = [*self.fusion.parameters(), *fitter.parameters()]
        fit = {id(p) for p in fitter.parameters()}
        rest = [p for p in self.parameters() if id(p) not in fit]
        return [
            Stage(PRETRAIN, trainable=lambda: pre, loss=self.pretrain_loss, max_epochs=c.pretrain_epochs,
                  data=StageData("kebr_pretrain_clips", "pretrain_dir", as_batches=True),
                  batch_size=c.pretrain_batch_size, early_stop_patience=None, contributions=False,
                  schedule=Schedule(source="KEBR pretrain.py: constant lr"),
                  param_groups=lambda: [{"name": "pretrain", "params": pre, "lr": c.pretrain_lr, "weight_decay": 0.0}]),
            Stage(FINETUNE, trainable=lambda: rest),
        ]

    def on_stage_start(self, stage: Stage, state: Any) -> dict[str, Any]:
        return {"unlabeled_clips": len(state.stage_data)} if stage.name == PRETRAIN else {}

    def param_groups(self) -> list[dict[str, Any]]:
        c = self.cfg
        groups = [{"name": name, "params": list(mod.parameters()), "lr": lr, "weight_decay": c.weight_decay}
                  for name, mod, lr in (("bert", self.text, c.lr_bert), ("fusion", self.fusion, c.lr_fusion),
                                        ("head", self.head, c.lr))]
        if self.fitter is not None:  # trains only in the pretrain stage (its own group there)
            groups.append({"name": "fitter", "params": list(self.fitter.parameters()), "lr": c.pretrain_lr,
                           "weight_decay": 0.0})
        return groups

    def lr_schedule(self) -> Schedule:
        """CosineAnnealingLR(T_max=cosine_t_max) stepped per epoch (main.py:91), or constant; the
        pre-training stage keeps a constant lr (pretrain.py)."""
        if self.cfg.lr_schedule != "cosine":
            return Schedule(source="harness switch lr_schedule='none': constant lr")
        return Schedule(kind="cosine_epochs", epochs=self.cfg.cosine_t_max, record_factor=True,
                        source="KEBR main.py:91 CosineAnnealingLR(optimizer, T_max=20), scheduler.step() per epoch")

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        """t: BERT; a / v: each attention's non-verbal LayerNorm, K and V (shared layer counted once).
        Queries, output projections, the layer's LN/fc and the heads are fusion."""
        uniq = lambda ps: list({id(p): p for p in ps}.values())  # noqa: E731
        layers = [cast(TCMFLayer, layer) for layer in self.fusion.layers]
        return {"t": list(self.text.parameters()),
                "a": uniq(p for layer in layers for p in layer.cma_a.other_side()),
                "v": uniq(p for layer in layers for p in layer.cma_v.other_side())}

    def summary(self) -> dict[str, Any]:
        c = self.cfg
        return {"pretraining": bool(c.pretrain_dir), "text_length": c.text_length,
                "shared_layer": c.shared_layer, "video_tile_quirk": c.video_tile_quirk}


# -- presets ---------------------------------------------------------------------------------
# `official`: main.py defaults (the code has no per-dataset settings; only --dataset changes).
# Widths: MMSA pickles (MOSI 5/20, MOSEI 74/35); the runner takes them from the file
# (dims_from_data); the code's own features are 33/709 (main.py:43-44). 200 epochs, all run,
# the selected epoch the lowest validation loss (strict <, as main.py:244).
_OFFICIAL_MOSI = KEBRConfig(
    dims=(768, 5, 20), optimizer="adam", lr=1e-4, weight_decay=0.0, batch_size=32,  # main.py:21-33, 83-89
    max_epochs=200, early_stop_patience=None, min_delta=0.0, val_loss_decimals=None,  # main.py:231-250
)
_OFFICIAL_MOSEI = replace(_OFFICIAL_MOSI, dims=(768, 74, 35))
# synthetic `demo` (harness decision): tiny random-init BERT over the 2048-id vocabulary with
# lrs raised for a from-scratch encoder (bert_text's demo 5e-4), TCMF width 32, 4 CPU epochs.
_DEMO = replace(_OFFICIAL_MOSI, text_encoder="tiny", text_vocab_size=2048, embed_dim=32, fc_dim=32,
                lr_bert=5e-4, lr_fusion=1e-3, lr=1e-3, max_epochs=4, early_stop_patience=2)
# IEMOCAP (harness decision; the code supports neither IEMOCAP nor its labels): the MOSEI preset
# (MulT's noalign file has MOSEI's 74/35 widths) with the MulT protocol's 4 x 2 logits and CE;
# MCC uses no labels. Fine-tuning only: the pre-training's fitter regresses a valence score,
# which IEMOCAP's 4 binary emotions do not give (pretrain_dir is refused there).
_IEMOCAP = replace(_OFFICIAL_MOSEI, task="iemocap", n_out=8)
# CH-SIMS: main.py --dataset sims runs these same defaults (main.py:56-59, one sims.pkl); its features are
# the code's own 33/709 (main.py:43-44), MMSA's unaligned_39.pkl widths. Harness decision: bert-base-chinese
# (MMSA's SIMS text_bert ids; main.py lists English BERTs only); text_length 39 as every dataset.
_OFFICIAL_SIMS = replace(_OFFICIAL_MOSI, dims=(768, 33, 709), text_encoder="bert-base-chinese", text_vocab_size=21128)
# CH-SIMS v2: KEBR's code has no SIMS v2 route; harness decision: the SIMS preset, ch-simsv2s.pkl widths
_SIMSV2 = replace(_OFFICIAL_SIMS, dims=(768, 25, 177))
PRESETS = {("mosi", "official"): _OFFICIAL_MOSI,
           ("mosei", "official"): _OFFICIAL_MOSEI,
           ("sims", "official"): _OFFICIAL_SIMS,
           ("simsv2", "official"): _SIMSV2,
           ("iemocap", "official"): _IEMOCAP,
           ("synthetic", "demo"): _DEMO}


@register_model("kebr", config=KEBRConfig, presets=PRESETS, default_preset="official", unsupported=UNSUPPORTED,
                display_name="KEBR (no pre-training)", paper="Zhu et al., ACM MM 2024",
                reference="https://github.com/aoqzhu/KEBR@171de2d",
                family="BERT + fusion", order=120, row_labels={"pretrain_dir": "KEBR"})
def kebr(cfg: KEBRConfig) -> KEBR:
    """KEBR (Zhu et al., ACM MM 2024): text-centred cross-modal fusion (one layer x4) with the MCC loss."""
    return KEBR(cfg)
