"""TFR-Net: Transformer-based Feature Reconstruction Network (Yuan et al., ACM MM 2021).

Source: thuiar/MMSA 2.2.1 `models/missingTask/TFR_NET/{model,alignment,fusion,generator}.py`,
`trains/missingTask/TFR_NET.py`, `data_loader.py` (missing inputs) and
`config/config_regression.json` ("mmsa" preset, the default).

TFR-Net trains and is evaluated on incomplete inputs: MMSA removes each valid step of every
modality with probability `missing_rate` (0.2), masks drawn once per split, and feeds the model
both the incomplete and the complete inputs. Here the harness does that (the config's
`data_missing`, bench/data/conditions.py); the model reads the incomplete inputs as its batch
and the complete ones and the masks from `batch.complete` / `batch.missing`.

Forward (on the incomplete inputs):
1. BERT last hidden states; text dropout; per modality a bias-free Conv1d (kernel k, padding
   (k-1)//2: lengths kept) to width d;
2. per modality m: a memory (self-attention) transformer and two cross-modal transformers (m
   attending to each other modality), MulT's fairseq blocks with sinusoidal positions and
   the causal mask -> h_m = [mem; cross; cross] (B, T_m, 3d);
3. fusion: per modality a C-GATE (3-layer bidirectional GRU over the true lengths, a Conv1d
   sigmoid gate, tanh(Linear([h_m; tanh(gru) * gate])), max over every step) -> BatchNorm ->
   Linear -> LeakyReLU -> Dropout -> Linear(1).
Reconstruction (training loss only): a temporal transformer per modality whose width is that
modality's sequence length T_m (`seq_lens`) reads h_m transposed to (3d, B, T_m): as in MMSA
it attends across the samples of the batch under the causal mask. A Linear generator maps its
output back to the input width; the loss per modality is SmoothL1(sum) + sim_weight x CMD
(3 moments) on the missing steps only, each divided by (number of masked entries + 1e-4);
the BERT states of the complete text are the text target. Total: L1 + sum_m w_m rec_m, the
reconstruction counted from the second epoch on (MMSA's trainer).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_packed_sequence

from models.base import ModelConfig, ModelOutput, MSAModel, sum_terms, task_loss
from models.layers.blocks import pack
from models.layers.text_encoder import build_text_encoder, split_no_decay
from models.layers.transformer import CrossModalTransformer, dropout
from models.protocol import Batch, at_least_fp32
from models.registry import choice, register_model

REC_EPS = 1e-4  # model.py RECLoss.eps
CMD_EPS = 1e-12  # model.py CMD.matchnorm
CMD_MOMENTS = 3  # CMD.forward n_moments default
REC_LOSSES = ("SmoothL1Loss", "MSELoss", "cmd", "combine")  # recloss_type
INPUTS = {"t": "text_ids", "a": "audio", "v": "vision"}  # the Batch field whose missing steps each modality reconstructs


@dataclass(kw_only=True)
class TFRNetConfig(ModelConfig):
    text_input: str = "ids"  # MMSA use_bert: `text_bert` token ids
    setting: str = "unaligned"  # need_data_aligned false: unaligned_50
    text_encoder: str = "bert-base-uncased"  # local dir | "bert-base" | "tiny" | cached hub name
    text_vocab_size: Optional[int] = None  # vocabulary of a named random-init config (tiny)
    seq_lens: tuple[int, int, int] = (50, 375, 500)  # t/a/v steps (MMSA seq_lens from the data): inputs are
    #   padded/cut to them; they are the widths of the temporal transformers
    d: int = 30  # dst_feature_dim_nheads[0]
    heads: int = 6  # dst_feature_dim_nheads[1]
    layers: int = 3  # nlevels: cross-modal depth; memory and temporal transformers use max(nlevels, 3)
    conv_kernels: tuple[int, int, int] = (1, 5, 3)  # conv1d_kernel_size_l/a/v
    causal_mask: bool = True  # attn_mask
    text_dropout: float = 0.2
    attn_dropout: float = 0.2  # source = text, and every memory / temporal transformer
    attn_dropout_a: float = 0.1  # source = audio
    attn_dropout_v: float = 0.0  # source = vision
    relu_dropout: float = 0.2
    embed_dropout: float = 0.2
    res_dropout: float = 0.2
    temporal_heads: int = 25  # num_temporal_head: heads of the temporal transformers (divides each seq_len)
    fusion_hidden: tuple[int, int, int] = (36, 20, 48)  # fusion_t_hid, fusion_a_hid, fusion_v_hid
    fusion_gru_layers: int = 3
    fusion_dropout: float = 0.2  # fusion_drop
    cls_hidden: int = 128  # cls_hidden_dim
    cls_dropout: float = 0.0
    use_generator: bool = True  # not without_generator: the reconstruction branch and its loss
    rec_loss: str = field(default="combine", metadata={"choices": REC_LOSSES})  # recloss_type: SmoothL1Loss |
    #   MSELoss | cmd | combine (SmoothL1 + CMD)
    rec_weights: tuple[float, float, float] = (5.0, 2.0, 20.0)  # weight_gen_loss (t, a, v)
    sim_weight: float = 5.0  # weight_sim_loss: the CMD term of "combine"
    rec_from_epoch: int = 1  # the reconstruction joins the total from this epoch (MMSA: `if epochs > 1`)
    lr_bert: float = 2e-6  # learning_rate_bert
    weight_decay_bert: float = 1e-4  # weight_decay_bert (BERT biases and LayerNorms: 0)


def fit_steps(x: torch.Tensor, n: int) -> torch.Tensor:
    """`x` (B, T, ...) zero-padded or cut to n steps."""
    if x.shape[1] >= n:
        return x[:, :n]
    return F.pad(x, [0, 0] * (x.dim() - 2) + [0, n - x.shape[1]])


def cmd(x1: torch.Tensor, x2: torch.Tensor, moments: int = CMD_MOMENTS) -> torch.Tensor:
    """model.py CMD over the flattened steps: ||mean x1 - mean x2|| + sum_k=2..K ||E(x1-Ex1)^k -
    E(x2-Ex2)^k||, each norm sqrt(sum of squares + 1e-12)."""
    x1, x2 = x1.reshape(-1, x1.shape[-1]), x2.reshape(-1, x2.shape[-1])
    m1, m2 = x1.mean(0), x2.mean(0)
    s1, s2 = x1 - m1, x2 - m2

    def norm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((a - b).pow(2).sum() + CMD_EPS) ** 0.5

    return sum_terms([norm(m1, m2), *(norm(s1.pow(k).mean(0), s2.pow(k).mean(0)) for k in range(2, moments + 1))])


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str,
                        sim_weight: float) -> torch.Tensor:
    """model.py RECLoss: the loss between pred and target on the masked steps (mask (B, T), 1 =
    missing), divided by the number of masked entries + 1e-4."""
    m = mask.to(pred.dtype).unsqueeze(-1).expand_as(pred)
    p, t = pred * m, target * m
    denom = m.sum() + REC_EPS
    if kind == "MSELoss":
        base = F.mse_loss(p, t, reduction="sum")
    elif kind == "cmd":
        base = cmd(p, t)
    else:  # SmoothL1Loss, combine
        base = F.smooth_l1_loss(p, t, reduction="sum")
    loss = base / denom
    if kind == "combine" and sim_weight != 0:
        loss = loss + sim_weight * cmd(p, t) / denom
    return loss


class CGate(nn.Module):
    """fusion.py C_GATE: BiGRU over the true lengths -> sigmoid(Conv1d) gate -> tanh(Linear([x;
    tanh(gru) * gate])) -> max over every step (padding included, as MMSA) -> dropout."""

    def __init__(self, d_in: int, hidden: int, layers: int, drop: float):
        super().__init__()
        self.gru = nn.GRU(d_in, hidden, num_layers=layers, bidirectional=True, batch_first=True)
        self.cnn = nn.Conv1d(2 * hidden, 1, kernel_size=3, stride=1, padding=1)
        self.fc = nn.Linear(2 * hidden + d_in, hidden)
        self.dropout = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = pad_packed_sequence(self.gru(pack(x, lengths))[0], batch_first=True, total_length=x.shape[1])[0]
        gate = torch.sigmoid(self.cnn(h.transpose(1, 2)).transpose(1, 2))
        rep = torch.tanh(self.fc(torch.cat([x, torch.tanh(h) * gate], dim=-1)))
        return self.dropout(rep.max(dim=1)[0])


class TFRNet(MSAModel):
    cfg: TFRNetConfig
    epoch: Optional[int] = None  # set by on_epoch_start; None outside the trainer: the full loss

    def __init__(self, cfg: TFRNetConfig):
        super().__init__(cfg)
        if cfg.rec_loss not in REC_LOSSES:
            raise ValueError(f"tfr_net: rec_loss '{cfg.rec_loss}' is not one of {REC_LOSSES}")
        d = cfg.d
        self.text = build_text_encoder(cfg.text_encoder, cfg.text_vocab_size)
        width = {"t": self.text.hidden_size, "a": cfg.dims[1], "v": cfg.dims[2]}
        self.proj = nn.ModuleDict({  # identity where the input already has width d (MMSA)
            m: nn.Identity() if width[m] == d else nn.Conv1d(width[m], d, k, padding=(k - 1) // 2, bias=False)
            for m, k in zip("tav", cfg.conv_kernels, strict=True)})
        source_dropout = {"t": cfg.attn_dropout, "a": cfg.attn_dropout_a, "v": cfg.attn_dropout_v}
        self.cross = nn.ModuleDict({t + s: self._stack(d, cfg.heads, cfg.layers, source_dropout[s], True)
                                    for t in "tav" for s in "tav" if s != t})
        deep = max(cfg.layers, 3)
        self.memory = nn.ModuleDict({m: self._stack(d, cfg.heads, deep, cfg.attn_dropout, True) for m in "tav"})
        self.temporal = nn.ModuleDict({m: self._stack(n, cfg.temporal_heads, deep, cfg.attn_dropout, False)
                                       for m, n in zip("tav", cfg.seq_lens, strict=True)})
        self.generator = nn.ModuleDict({m: nn.Linear(3 * d, width[m]) for m in "tav"}) if cfg.use_generator else None
        self.fusion = nn.ModuleDict({m: CGate(3 * d, h, cfg.fusion_gru_layers, cfg.fusion_dropout)
                                     for m, h in zip("tav", cfg.fusion_hidden, strict=True)})
        hidden = sum(cfg.fusion_hidden)
        self.classifier = nn.Sequential(nn.BatchNorm1d(hidden), nn.Linear(hidden, cfg.cls_hidden), nn.LeakyReLU(),
                                        nn.Dropout(cfg.cls_dropout), nn.Linear(cfg.cls_hidden, cfg.n_out))

    def _stack(self, width: int, heads: int, layers: int, attn_dropout: float, positions: bool) -> CrossModalTransformer:
        cfg = self.cfg
        return CrossModalTransformer(width, heads, layers, attn_dropout, cfg.relu_dropout, cfg.res_dropout,
                                     cfg.embed_dropout, causal=cfg.causal_mask, positions=positions)

    # -- forward -----------------------------------------------------------------------------
    def text_states(self, batch: Batch) -> torch.Tensor:
        """BERT last hidden states of the batch's token ids, fitted to seq_lens[0] steps."""
        n = self.cfg.seq_lens[0]
        assert batch.text_ids is not None and batch.text_mask is not None, "tfr_net reads BERT token ids"
        ids, mask = fit_steps(batch.text_ids, n), fit_steps(batch.text_mask, n)
        segment = fit_steps(batch.text_segment, n) if batch.text_segment is not None else None
        return self.text(ids, mask, segment)

    def aligned(self, text: torch.Tensor, audio: torch.Tensor, vision: torch.Tensor) -> dict[str, torch.Tensor]:
        """alignment.py CM_ATTN up to h_m = [memory; cross; cross] (B, T_m, 3d) per modality."""
        text = dropout(text, self.cfg.text_dropout, self.training)
        x = {m: self.proj[m](v.transpose(1, 2)).transpose(1, 2) for m, v in (("t", text), ("a", audio), ("v", vision))}
        return {m: torch.cat([self.memory[m](x[m])] + [self.cross[m + s](x[m], x[s]) for s in "tav" if s != m], dim=-1)
                for m in "tav"}

    def temporal_states(self, h: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The temporal transformers on h_m: (B, T_m, 3d) per modality. Each runs over
        (3d, B, T_m), i.e. across the samples of the batch (MMSA's permute(1, 2, 0))."""
        return {m: self.temporal[m](h[m].permute(2, 0, 1)).permute(1, 2, 0) for m in "tav"}

    def reconstructed(self, h: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The generators on the temporal states: (B, T_m, input width) per modality."""
        assert self.generator is not None
        return {m: self.generator[m](s) for m, s in self.temporal_states(h).items()}

    def encoded(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(BERT states of the batch's text, h_m per modality) on the batch's (incomplete) inputs."""
        cfg = self.cfg
        text = self.text_states(batch)
        audio, vision = fit_steps(batch.audio, cfg.seq_lens[1]), fit_steps(batch.vision, cfg.seq_lens[2])
        return text, self.aligned(text, audio.to(text.dtype), vision.to(text.dtype))

    def forward(self, batch: Batch) -> ModelOutput:
        cfg = self.cfg
        text, h = self.encoded(batch)
        assert batch.text_mask is not None
        mask = fit_steps(batch.text_mask, cfg.seq_lens[0])
        lengths = {"t": torch.argmin(F.pad(mask.float(), (0, 1)), dim=1),  # the first unattended column (fusion.py)
                   "a": batch.audio_lengths.clamp(max=cfg.seq_lens[1]),
                   "v": batch.vision_lengths.clamp(max=cfg.seq_lens[2])}
        reps = {m: self.fusion[m](h[m], lengths[m]) for m in "tav"}
        fused = torch.cat([reps["t"], reps["a"], reps["v"]], dim=1)
        extras: dict[str, Any] = {}
        if self.training and self.generator is not None:  # the reconstruction is a training loss only
            extras = {"reconstructed": self.reconstructed(h), "text_states": text}
        return ModelOutput(pred=self.classifier(fused), features={**reps, "f": fused}, extras=extras)

    # -- loss --------------------------------------------------------------------------------
    def loss(self, output: ModelOutput, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        task = task_loss(output.pred, batch.labels, cfg.task)
        if "reconstructed" not in output.extras:
            return {"total": task, "task": task}
        work = at_least_fp32(output.pred.dtype)
        targets, masks = self.targets(output, batch)
        rec = {f"rec_{m}": reconstruction_loss(output.extras["reconstructed"][m].to(work), targets[m].to(work),
                                              masks[m], cfg.rec_loss, cfg.sim_weight) for m in "tav"}
        weighted = sum_terms(w * rec[f"rec_{m}"] for m, w in zip("tav", cfg.rec_weights, strict=True))
        counted = self.epoch is None or self.epoch >= cfg.rec_from_epoch
        return {"total": task + weighted if counted else task, "task": task, "rec": weighted, **rec}

    def targets(self, output: ModelOutput, batch: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The complete inputs (BERT states for text) and the missing-step masks (B, T_m) per
        modality; a batch without a missing-data condition has nothing missing."""
        cfg = self.cfg
        complete = batch.complete if batch.complete is not None else batch
        text = output.extras["text_states"] if batch.complete is None else self.text_states(complete)
        targets = {"t": text, "a": fit_steps(complete.audio, cfg.seq_lens[1]),
                   "v": fit_steps(complete.vision, cfg.seq_lens[2])}
        missing = batch.missing or {}
        masks = {m: fit_steps(missing[INPUTS[m]].float(), n) if INPUTS[m] in missing
                 else torch.zeros(targets[m].shape[:2], device=text.device)
                 for m, n in zip("tav", cfg.seq_lens, strict=True)}
        return targets, masks

    # -- training protocol -------------------------------------------------------------------
    def on_epoch_start(self, epoch: int, state: Any) -> dict[str, Any]:
        self.epoch = epoch
        return {"reconstruction_in_loss": epoch >= self.cfg.rec_from_epoch} if self.generator is not None else {}

    def param_groups(self) -> list[dict[str, Any]]:
        """trains/missingTask/TFR_NET.py: BERT with its own lr and decay (none on biases and
        LayerNorms), everything else at learning_rate_other / weight_decay_other (torch Adam)."""
        cfg = self.cfg
        decay, no_decay = split_no_decay(self.text)
        bert = {id(p) for p in self.text.parameters()}
        return [
            {"name": "bert", "params": decay, "lr": cfg.lr_bert, "weight_decay": cfg.weight_decay_bert},
            {"name": "bert_no_decay", "params": no_decay, "lr": cfg.lr_bert, "weight_decay": 0.0},
            {"name": "other", "params": [p for p in self.parameters() if id(p) not in bert], "lr": cfg.lr,
             "weight_decay": cfg.weight_decay},
        ]

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        # a branch: its encoder or projection, the transformers where it is the target, its
        # reconstruction and its fusion gate; the classifier is shared
        out: dict[str, list[nn.Parameter]] = {}
        for m in "tav":
            mods: list[nn.Module] = [self.proj[m], self.memory[m], self.temporal[m], self.fusion[m],
                                     *(c for k, c in self.cross.items() if k[0] == m)]
            mods += [self.text] if m == "t" else []
            mods += [self.generator[m]] if self.generator is not None else []
            out[m] = [p for mod in mods for p in mod.parameters()]
        return out

    def summary(self) -> dict[str, Any]:
        return {"data_missing": self.cfg.data_missing, "reconstruction": self.cfg.use_generator,
                "rec_loss": self.cfg.rec_loss}


# -- presets ---------------------------------------------------
_CFG = "MMSA 2.2.1 config_regression.json tfr_net"
# trains/missingTask/TFR_NET.py: torch Adam over three groups (BERT decay / no decay / other), L1
# loss, clip_grad_value_ after every backward, ReduceLROnPlateau(min, factor 0.1) on the valid
# loss, early stopping on it; its loop steps the optimizer after every batch (see the card).
_MMSA_MOSI = TFRNetConfig(  # {_CFG} commonParams + mosi
    dims=(768, 5, 20), seq_lens=(50, 375, 500), setting="unaligned",  # feature_dims; MOSI unaligned_50 lengths
    data_missing="bernoulli/tav/0.2",  # data_missing true; datasetCommonParams missing_rate [0.2]*3, missing_seed 1111
    d=30, heads=6, layers=3, conv_kernels=(1, 5, 3), causal_mask=True,  # dst_feature_dim_nheads, nlevels, attn_mask
    text_dropout=0.2, attn_dropout=0.2, attn_dropout_a=0.1, attn_dropout_v=0.0,
    relu_dropout=0.2, embed_dropout=0.2, res_dropout=0.2, temporal_heads=25,  # num_temporal_head
    fusion_hidden=(36, 20, 48), fusion_gru_layers=3, fusion_dropout=0.2, cls_hidden=128, cls_dropout=0.0,
    use_generator=True, rec_loss="combine", rec_weights=(5.0, 2.0, 20.0), sim_weight=5.0,  # weight_gen_loss, weight_sim_loss
    optimizer="adam", lr=1e-3, weight_decay=1e-3, lr_bert=2e-6, weight_decay_bert=1e-4,  # learning_rate_other, ...
    batch_size=24, grad_accum_steps=1, clip_grad_value=0.8,  # batch_size; update_epochs 4 (see the card); grad_clip
    scheduler="plateau", scheduler_patience=5, scheduler_factor=0.1,  # patience
    max_epochs=200, early_stop_patience=6,  # early_stop 6; KeyEval Loss; the 200-epoch cap is a harness decision
)
_MMSA_MOSEI = replace(  # {_CFG} mosei
    _MMSA_MOSI, dims=(768, 74, 35), seq_lens=(50, 500, 500),  # MOSEI unaligned_50 lengths
    lr_bert=1e-5, lr=2e-3, rec_weights=(5e-6, 2e-6, 2e-5),
)
_MMSA_SIMS = replace(  # {_CFG} sims: pretrained bert-base-chinese (--text-encoder PATH)
    _MMSA_MOSI, dims=(768, 33, 709), seq_lens=(39, 400, 55),  # SIMS unaligned_39 lengths
    text_encoder="bert-base-chinese", text_vocab_size=21128,
    layers=2, relu_dropout=0.0, embed_dropout=0.1, cls_dropout=0.1, batch_size=16, lr_bert=1e-5, lr=2e-3,
    scheduler_patience=10, rec_weights=(1.0, 0.01, 0.0001),
    temporal_heads=1,  # config_tune.json commonParams num_temporal_head 1: the sims row's 25 divides
    #   neither 39 nor 55, and MMSA cannot build the model with it (see the card); trans_hid_* are read by nothing
)
# synthetic `demo` (harness decision): tiny random-init BERT (lr 5e-4: it learns from scratch), the
# synthetic 50-step sequences, width 16, one cross-modal layer, small fusion, 4 CPU epochs
_DEMO = replace(_MMSA_MOSI, text_encoder="tiny", text_vocab_size=2048, seq_lens=(50, 50, 50),
                d=16, heads=2, layers=1, temporal_heads=2, fusion_hidden=(16, 16, 16), fusion_gru_layers=1,
                cls_hidden=32, lr_bert=5e-4, batch_size=32, max_epochs=4, early_stop_patience=2)
PRESETS = {("mosi", "mmsa"): _MMSA_MOSI, ("mosei", "mmsa"): _MMSA_MOSEI, ("sims", "mmsa"): _MMSA_SIMS,
           ("synthetic", "demo"): _DEMO}
UNSUPPORTED = {
    "iemocap": "TFR-Net has one regression output (fusion.py: Linear(cls_hidden_dim, 1)) and MMSA configures no "
               "IEMOCAP setting for it",
    "simsv2": "MMSA's config_regression.json has no CH-SIMS v2 row for TFR-Net",
}

# `bench tune` search space: MMSA 2.2.1 config/config_tune.json `tfr_net` debugParams (MMSA name in
# brackets). Not searched: trans_hid_* (read by no module) and fusion_*_in (the model sets them to 3d).
_TUNE = "MMSA 2.2.1 config_tune.json tfr_net"
SEARCH_SPACE = {
    "rec_loss": choice("SmoothL1Loss", "MSELoss", "combine", source=f"{_TUNE} [recloss_type]"),
    "conv_kernels[0]": choice(1, 3, 5, source=f"{_TUNE} [conv1d_kernel_size_l]"),
    "conv_kernels[1]": choice(1, 3, 5, source=f"{_TUNE} [conv1d_kernel_size_a]"),
    "conv_kernels[2]": choice(1, 3, 5, source=f"{_TUNE} [conv1d_kernel_size_v]"),
    "text_dropout": choice(0.1, 0.2, 0.3, source=_TUNE),
    "attn_dropout": choice(0.0, 0.1, 0.2, 0.3, 0.4, source=_TUNE),
    "attn_dropout_a": choice(0.0, 0.1, 0.2, source=_TUNE),
    "attn_dropout_v": choice(0.0, 0.1, 0.2, source=_TUNE),
    "relu_dropout": choice(0.0, 0.1, 0.2, source=_TUNE),
    "embed_dropout": choice(0.0, 0.1, 0.2, source=_TUNE),
    "res_dropout": choice(0.0, 0.1, 0.2, source=_TUNE),
    "d,heads": choice((30, 6), (30, 10), (32, 8), (36, 6), (40, 5), (40, 8), (40, 10), (48, 8), (50, 10),
                      source=f"{_TUNE} [dst_feature_dim_nheads]"),
    "layers": choice(2, 3, 4, source=f"{_TUNE} [nlevels]"),
    "fusion_hidden[0]": choice(20, 30, 32, 36, 40, 48, source=f"{_TUNE} [fusion_t_hid]"),
    "fusion_hidden[1]": choice(20, 30, 32, 36, 40, 48, source=f"{_TUNE} [fusion_a_hid]"),
    "fusion_hidden[2]": choice(20, 30, 32, 36, 40, 48, source=f"{_TUNE} [fusion_v_hid]"),
    "fusion_gru_layers": choice(1, 2, 3, source=_TUNE),
    "fusion_dropout": choice(0.1, 0.2, 0.3, source=f"{_TUNE} [fusion_drop]"),
    "cls_hidden": choice(64, 96, 128, source=f"{_TUNE} [cls_hidden_dim]"),
    "cls_dropout": choice(0.0, 0.1, 0.2, source=_TUNE),
    "batch_size": choice(24, 32, 48, source=_TUNE),
    "lr_bert": choice(2e-5, 1e-5, source=f"{_TUNE} [learning_rate_bert]"),
    "lr": choice(5e-4, 1e-3, 2e-3, source=f"{_TUNE} [learning_rate_other]"),
    "clip_grad_value": choice(0.6, 0.8, 1.0, source=f"{_TUNE} [grad_clip]"),
    "scheduler_patience": choice(5, 10, source=f"{_TUNE} [patience: ReduceLROnPlateau]"),
    "weight_decay_bert": choice(0.0, 1e-4, source=_TUNE),
    "weight_decay": choice(0.0, 1e-3, source=f"{_TUNE} [weight_decay_other]"),
    "rec_weights": choice((5e-6, 2e-6, 2e-5), (2e-6, 1e-6, 2e-6), (4e-6, 2e-6, 4e-6), (1e-6, 5e-7, 1e-6),
                          (4e-6, 1e-6, 2e-6), source=f"{_TUNE} [weight_gen_loss]"),
}


@register_model("tfr_net", config=TFRNetConfig, presets=PRESETS, default_preset="mmsa", unsupported=UNSUPPORTED,
                search_space=SEARCH_SPACE,
                display_name="TFR-Net", paper="Yuan et al., ACM MM 2021",
                reference="https://github.com/thuiar/MMSA; MMSA==2.2.1",
                family="transformer fusion", order=68)
def tfr_net(cfg: TFRNetConfig) -> TFRNet:
    """TFR-Net (Yuan et al., ACM MM 2021): cross-modal transformers on incomplete inputs, reconstructing what is missing."""
    return TFRNet(cfg)
