"""MMIM: hierarchical mutual-information maximisation (Han et al., EMNLP 2021).

Source: thuiar/MMSA 2.2.1 `models/singleTask/MMIM.py`, `trains/singleTask/MMIM.py` and
`config/config_regression.json` ("mmsa" preset, the default; MMSA adapts
declare-lab/Multimodal-Infomax).

Forward: BERT last-layer [CLS] = t; audio / vision through a (bidirectional) LSTM over the
packed own lengths, [final fwd; final bwd] of the FIRST layer (MMSA's `final_states[0][0/1]`)
-> Dropout -> Linear = a, v; fusion [t; a; v] -> Dropout -> tanh(Linear) -> tanh(Linear) = f
-> Linear = prediction. Every non-BERT weight matrix is xavier-normal initialised (MMSA's
trainer does it before training).

Mutual-information terms (all owned by `loss()`):
- lld: the MMILB Gaussian log-likelihood lower bound of I(t; v) and I(t; a):
  mean_batch sum_d -(mu(t) - y)^2 / (2 exp(logvar(t))), y = v or a;
- nce: the CPC bound between the fusion f and each of t, a, v (cosine scores, logsumexp over
  the batch);
- H: the entropy estimate 1/4 (logdet Sigma_pos + logdet Sigma_neg) of tanh-projected v and a
  of the positive / negative samples of this batch and the previous `mem_size` batches
  (memory keyed by batch order within an epoch, reset at every epoch start).

Training, as MMSA's trainer, is two phases per epoch, each its own optimizer (`phases()`):
"mmilb" (the MMILB networks, Adam lr_mmilb) minimises -lld over the training split (MOSEI:
its first half of batches); then "main" (BERT and the rest, Adam lr_bert / lr_main, the
plateau schedule on the validation loss) minimises L1 + alpha nce - beta lld - beta H (H from
the batch after the memory is full). Gradients are clipped by norm over every parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional, cast

import torch
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel, Phase, Schedule, sum_terms, task_loss
from models.layers.blocks import pack
from models.layers.text_encoder import build_text_encoder
from models.registry import choice, register_model

PAIRS = {"tv": ("t", "v"), "ta": ("t", "a"), "va": ("v", "a")}  # MMILB (x, y) pairs; va only with add_va


@dataclass(kw_only=True)
class MMIMConfig(ModelConfig):
    text_input: str = "ids"  # MMSA use_bert: `text_bert` token ids
    setting: str = "unaligned"  # need_data_aligned false: unaligned_50, audio/vision with their own lengths
    text_encoder: str = "bert-base-uncased"  # pretrained; local dir | "bert-base" | "tiny" | cached hub name
    text_vocab_size: Optional[int] = None  # vocabulary of a named random-init config (tiny)
    n_layer: int = 1  # LSTM layers (MMSA mosi)
    bidirectional: bool = True
    d_ah: int = 16
    d_vh: int = 16
    d_aout: int = 16
    d_vout: int = 16
    dropout_a: float = 0.1  # LSTM and output dropout, only with n_layer > 1 (MMSA: 0.0 otherwise)
    dropout_v: float = 0.1
    dropout_prj: float = 0.1
    d_prjh: int = 128
    cpc_layers: int = 1
    cpc_activation: str = "Tanh"  # between CPC layers (cpc_layers > 1)
    mmilb_mid_activation: str = "ReLU"  # MMILB's MLP middle activation (mmilb_last_activation is never applied)
    add_va: bool = False  # a third MMILB between vision and audio
    contrast: bool = True  # the MI terms and the "mmilb" phase; False: L1 only, one phase
    mem_size: int = 1  # batches of positive/negative projections kept for the entropy estimate
    alpha: float = 0.1  # weight of nce
    beta: float = 0.1  # weight of lld and H
    mmilb_fraction: float = 1.0  # share of the training batches the "mmilb" phase reads (MMSA mosei: 0.5)
    lr_bert: float = 5e-5
    weight_decay_bert: float = 1e-4
    lr_mmilb: float = 1e-3
    weight_decay_mmilb: float = 1e-4


class RNNEncoder(nn.Module):
    """MMSA MMIM RNNEncoder: LSTM over the packed lengths; [h fwd; h bwd] of the first layer
    (or its final state) -> Dropout -> Linear."""

    def __init__(self, in_size: int, hidden: int, out: int, layers: int, dropout: float, bidirectional: bool):
        super().__init__()
        self.bidirectional = bidirectional
        self.rnn = nn.LSTM(in_size, hidden, num_layers=layers, dropout=dropout, bidirectional=bidirectional)
        self.dropout = nn.Dropout(dropout)
        self.linear_1 = nn.Linear((2 if bidirectional else 1) * hidden, out)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.rnn(pack(x, lengths))  # lengths >= 1 and within the sequence (harness guard)
        return self.linear_1(self.dropout(torch.cat((h[0], h[1]), dim=-1) if self.bidirectional else h[0]))


class MMILB(nn.Module):
    """The modality MI lower bound: Gaussian q(y | x) with MLP mean and log-variance, and the
    tanh projection the entropy estimate reads."""

    def __init__(self, x_size: int, y_size: int, mid_activation: str):
        super().__init__()
        act = getattr(nn, mid_activation)
        self.mlp_mu = nn.Sequential(nn.Linear(x_size, y_size), act(), nn.Linear(y_size, y_size))
        self.mlp_logvar = nn.Sequential(nn.Linear(x_size, y_size), act(), nn.Linear(y_size, y_size))
        self.entropy_prj = nn.Sequential(nn.Linear(y_size, y_size // 4), nn.Tanh())

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.mlp_mu(x), self.mlp_logvar(x)
        return torch.mean(torch.sum(-(mu - y) ** 2 / 2.0 / torch.exp(logvar), -1))


class CPC(nn.Module):
    """Contrastive predictive coding score: x predicted from y, cosine scores, InfoNCE over the batch."""

    def __init__(self, x_size: int, y_size: int, n_layers: int, activation: str):
        super().__init__()
        if n_layers == 1:
            self.net: nn.Module = nn.Linear(y_size, x_size)
        else:  # MMSA: the activation only after the first layer
            layers: list[nn.Module] = [nn.Linear(y_size, x_size), getattr(nn, activation)()]
            layers += [nn.Linear(x_size, x_size) for _ in range(n_layers - 1)]
            self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_pred = self.net(y)
        x_pred = x_pred / x_pred.norm(dim=1, keepdim=True)
        x = x / x.norm(dim=1, keepdim=True)
        pos = torch.sum(x * x_pred, dim=-1)
        neg = torch.logsumexp(torch.matmul(x, x_pred.t()), dim=-1)
        return -(pos - neg).mean()


class FusionHead(nn.Module):
    """MMSA MMIM Fusion: Dropout -> tanh(Linear) -> tanh(Linear) (the fused feature) -> Linear."""

    def __init__(self, in_size: int, hidden: int, n_out: int, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.linear_1, self.linear_2 = nn.Linear(in_size, hidden), nn.Linear(hidden, hidden)
        self.linear_3 = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fused = torch.tanh(self.linear_2(torch.tanh(self.linear_1(self.drop(x)))))
        return fused, self.linear_3(fused)


def gaussian_entropy(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """1/4 (logdet Sigma_pos + logdet Sigma_neg), Sigma the (biased) covariance of the rows."""
    def logdet_cov(x: torch.Tensor) -> torch.Tensor:
        c = x - x.mean(dim=0)
        return torch.logdet(torch.mean(torch.bmm(c.unsqueeze(-1), c.unsqueeze(1)), dim=0))
    return 0.25 * (logdet_cov(pos) + logdet_cov(neg))


class MMIM(MSAModel):
    cfg: MMIMConfig
    # MMILB's entropy projections are never updated, as in MMSA: they sit in the "mmilb"
    # phase's optimizer, whose loss (-lld) does not reach them; their gradient (from H, in the
    # "main" phase, from an epoch's third batch on) reaches no optimizer that holds them
    no_grad_params = (*MSAModel.no_grad_params, "entropy_prj.")

    def __init__(self, cfg: MMIMConfig):
        super().__init__(cfg)
        if cfg.task != "regression":
            raise ValueError(f"mmim: the entropy memory splits samples by the sign of regression labels; task '{cfg.task}'")
        self.text = build_text_encoder(cfg.text_encoder, cfg.text_vocab_size)
        d = {"t": self.text.hidden_size, "a": cfg.d_aout, "v": cfg.d_vout}
        deep = cfg.n_layer > 1
        self.audio_enc = RNNEncoder(cfg.dims[1], cfg.d_ah, cfg.d_aout, cfg.n_layer, cfg.dropout_a if deep else 0.0,
                                    cfg.bidirectional)
        self.vision_enc = RNNEncoder(cfg.dims[2], cfg.d_vh, cfg.d_vout, cfg.n_layer, cfg.dropout_v if deep else 0.0,
                                     cfg.bidirectional)
        pairs = [p for p in PAIRS if p != "va" or cfg.add_va]
        self.mi = nn.ModuleDict({p: MMILB(d[PAIRS[p][0]], d[PAIRS[p][1]], cfg.mmilb_mid_activation) for p in pairs})
        self.cpc = nn.ModuleDict({m: CPC(d[m], cfg.d_prjh, cfg.cpc_layers, cfg.cpc_activation) for m in "tva"})
        self.fusion = FusionHead(sum(d.values()), cfg.d_prjh, cfg.n_out, cfg.dropout_prj)
        with torch.no_grad():  # trains/singleTask/MMIM.py do_train: xavier_normal_ on every non-BERT matrix
            for name, p in self.named_parameters():
                if not name.startswith("text.") and p.dim() > 1:
                    nn.init.xavier_normal_(p)
        self.memory: dict[str, dict[str, list[torch.Tensor]]] = {}
        self.batch_in_epoch = 0

    def forward(self, batch) -> ModelOutput:
        h = {"t": self.text.cls(batch.text_ids, batch.text_mask, batch.text_segment),
             "a": self.audio_enc(batch.audio, batch.audio_lengths),
             "v": self.vision_enc(batch.vision, batch.vision_lengths)}
        fused, pred = self.fusion(torch.cat([h["t"], h["a"], h["v"]], dim=1))
        lld = sum_terms(self.mi[p](h[PAIRS[p][0]], h[PAIRS[p][1]]) for p in self.mi)
        nce = sum_terms(self.cpc[m](h[m], fused) for m in "tva")
        return ModelOutput(pred=pred, features={**h, "f": fused}, extras={"lld": lld, "nce": nce})

    def entropy(self, output: ModelOutput, labels: torch.Tensor) -> Optional[torch.Tensor]:
        """H over this batch and the memory (None before the memory is full, or outside
        training); stores this batch's projections, replacing the oldest."""
        if not self.training or self.train_phase == "mmilb":
            return None
        assert output.features is not None
        y = labels.reshape(-1)
        pn = {}
        for p in self.mi:
            proj = cast(MMILB, self.mi[p]).entropy_prj(output.features[PAIRS[p][1]])
            pn[p] = {"pos": proj[y > 0], "neg": proj[y < 0]}
        i, size = self.batch_in_epoch, self.cfg.mem_size
        H = None
        if i > size:  # MMSA computes H from batch mem_size on, and subtracts it from batch mem_size + 1 on
            H = sum_terms(gaussian_entropy(torch.cat(self.memory[p]["pos"] + [pn[p]["pos"]]),
                                           torch.cat(self.memory[p]["neg"] + [pn[p]["neg"]])) for p in pn)
        for p in pn:
            for side in ("pos", "neg"):
                kept = self.memory.setdefault(p, {"pos": [], "neg": []})[side]
                if len(kept) < size:
                    kept.append(pn[p][side].detach())
                else:
                    kept[i % size] = pn[p][side].detach()
        self.batch_in_epoch += 1
        return H

    def loss(self, output: ModelOutput, batch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        lld, nce = output.extras["lld"], output.extras["nce"]
        if self.train_phase == "mmilb":  # train_mmilb: maximise the lower bound only
            return {"total": -lld, "lld": lld}
        task = task_loss(output.pred, batch.labels, cfg.task)
        if not cfg.contrast:
            return {"total": task, "task": task}
        parts = {"task": task, "nce": nce, "lld": lld}
        total = task + cfg.alpha * nce - cfg.beta * lld
        H = self.entropy(output, batch.labels) if not batch.masked else None
        if H is not None:
            parts["H"] = H
            total = total - cfg.beta * H
        return {"total": total, **parts}

    def on_epoch_start(self, epoch: int, state: Any) -> dict[str, Any]:
        self.memory, self.batch_in_epoch = {}, 0  # train_others: a fresh memory every epoch
        return {}

    def param_groups(self) -> list[dict[str, Any]]:
        """Every optimizer group of both phases (their union)."""
        return [*self._mmilb_groups(), *self._main_groups()]

    def _mmilb_groups(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        return [{"name": "mmilb", "params": list(self.mi.parameters()), "lr": cfg.lr_mmilb,
                 "weight_decay": cfg.weight_decay_mmilb}]

    def _main_groups(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        mi = {id(p) for p in self.mi.parameters()}
        main = [p for n, p in self.named_parameters() if not n.startswith("text.") and id(p) not in mi]
        return [{"name": "bert", "params": list(self.text.parameters()), "lr": cfg.lr_bert,
                 "weight_decay": cfg.weight_decay_bert},
                {"name": "main", "params": main, "lr": cfg.lr, "weight_decay": cfg.weight_decay}]

    def phases(self) -> list[Phase]:
        if not self.cfg.contrast:  # MMSA skips train_mmilb
            return [Phase("main", self._main_groups)]
        return [Phase("mmilb", self._mmilb_groups, fraction=self.cfg.mmilb_fraction, schedule=Schedule()),
                Phase("main", self._main_groups)]

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        return {"t": list(self.text.parameters()), "a": list(self.audio_enc.parameters()),
                "v": list(self.vision_enc.parameters())}

    def summary(self) -> dict[str, Any]:
        return {"contrast": self.cfg.contrast, "mmilb_fraction": self.cfg.mmilb_fraction}


# -- presets ---------------------------------------------------
_MMSA_MOSI = MMIMConfig(  # MMSA config_regression.json mmim (commonParams + mosi)
    dims=(768, 5, 20),  # feature_dims of MOSI unaligned_50 (text = BERT)
    optimizer="adam",  # optim "Adam" (torch, coupled L2)
    batch_size=32, clip_grad_norm=1.0,  # grad_clip: clip_grad_norm_ over every parameter, every step
    lr=1e-3, weight_decay=1e-4,  # lr_main, weight_decay_main
    lr_bert=5e-5, weight_decay_bert=1e-4, lr_mmilb=1e-3, weight_decay_mmilb=1e-4,
    scheduler="plateau", scheduler_patience=20, scheduler_factor=0.5,  # when 20; ReduceLROnPlateau factor 0.5
    early_stop_patience=8,  # early_stop (update_epochs 2 is read by nothing in MMIM's trainer)
    n_layer=1, cpc_layers=1, d_vh=16, d_ah=16, d_vout=16, d_aout=16, bidirectional=True, d_prjh=128,
    dropout_a=0.1, dropout_v=0.1, dropout_prj=0.1, mmilb_mid_activation="ReLU", cpc_activation="Tanh",
    add_va=False, mem_size=1, contrast=True, alpha=0.1, beta=0.1,
)
_MMSA_MOSEI = replace(_MMSA_MOSI, dims=(768, 74, 35),  # MMSA mmim mosei: the same values
                      mmilb_fraction=0.5)  # train_mmilb: "for mosei we only use 50% dataset in stage 1"
_MMSA_SIMS = replace(_MMSA_MOSI, dims=(768, 33, 709), text_encoder="bert-base-chinese")  # MMSA mmim sims
# CH-SIMS v2 (harness decision: MMSA 2.2.1 has no simsv2 entry): the SIMS preset, ch-simsv2s.pkl's widths
_SIMSV2 = replace(_MMSA_SIMS, dims=(768, 25, 177))
# synthetic `demo` (harness decision): tiny random-init BERT, lr_bert 5e-4 as it learns from scratch, 4 epochs
_DEMO = replace(_MMSA_MOSI, text_encoder="tiny", text_vocab_size=2048, lr_bert=5e-4, max_epochs=4,
                early_stop_patience=2)
PRESETS = {("mosi", "mmsa"): _MMSA_MOSI, ("mosei", "mmsa"): _MMSA_MOSEI, ("sims", "mmsa"): _MMSA_SIMS,
           ("simsv2", "mmsa"): _SIMSV2, ("synthetic", "demo"): _DEMO}
UNSUPPORTED = {"iemocap": "its entropy memory splits samples by the sign of a regression label (MMIM refuses any "
                          "other task); IEMOCAP's labels are 4 binary emotions"}

# `bench tune` search space: MMSA 2.2.1 config/config_tune.json `mmim` debugParams (MMSA name in brackets)
_TUNE = "MMSA 2.2.1 config_tune.json mmim"
_DROPOUTS = (0.0, 0.1, 0.2, 0.3, 0.4)
_WIDTHS = (16, 32, 64, 128)
SEARCH_SPACE = {
    "batch_size": choice(16, 32, source=_TUNE),
    "clip_grad_norm": choice(0.6, 0.8, 1.0, source=f"{_TUNE} [grad_clip]"),
    "lr": choice(1e-4, 1e-3, 5e-3, source=f"{_TUNE} [lr_main]"),
    "weight_decay": choice(0.0, 1e-3, 1e-4, source=f"{_TUNE} [weight_decay_main]"),
    "lr_bert": choice(1e-4, 1e-3, 5e-3, source=_TUNE),
    "weight_decay_bert": choice(0.0, 1e-3, 1e-4, source=_TUNE),
    "lr_mmilb": choice(1e-4, 1e-3, 5e-3, source=_TUNE),
    "weight_decay_mmilb": choice(0.0, 1e-3, 1e-4, source=_TUNE),
    "alpha": choice(0.0, 0.1, 0.2, 0.3, 0.4, source=_TUNE),
    "beta": choice(0.0, 0.1, 0.2, 0.3, 0.4, source=_TUNE),
    "dropout_a": choice(*_DROPOUTS, source=_TUNE),
    "dropout_v": choice(*_DROPOUTS, source=_TUNE),
    "dropout_prj": choice(*_DROPOUTS, source=_TUNE),
    "n_layer": choice(1, 2, 3, 4, source=_TUNE),
    "cpc_layers": choice(1, 2, 3, 4, source=_TUNE),
    "d_vh": choice(*_WIDTHS, source=_TUNE),
    "d_ah": choice(*_WIDTHS, source=_TUNE),
    "d_vout": choice(*_WIDTHS, source=_TUNE),
    "d_aout": choice(*_WIDTHS, source=_TUNE),
    "d_prjh": choice(64, 128, 256, 512, source=_TUNE),
}

@register_model("mmim", config=MMIMConfig, presets=PRESETS, default_preset="mmsa", unsupported=UNSUPPORTED,
                search_space=SEARCH_SPACE,
                display_name="MMIM", paper="Han et al., EMNLP 2021",
                reference="https://github.com/thuiar/MMSA; MMSA==2.2.1",
                family="BERT + fusion", order=54)
def mmim(cfg: MMIMConfig) -> MMIM:
    """MMIM (Han et al., EMNLP 2021): BERT + LSTMs, MMILB / CPC mutual-information bounds, two training phases."""
    return MMIM(cfg)
