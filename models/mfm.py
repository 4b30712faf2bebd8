"""MFM: Multimodal Factorization Model (Tsai et al., ICLR 2019), as MMSA 2.2.1 has it
(`models/singleTask/MFM.py`, trainer `trains/singleTask/MFM.py`, `config/config_regression.json`).

Per modality an LSTM encoder gives a modality-specific factor z_m (last hidden state -> linear);
an MFN over the three sequences gives the multimodal discriminative factor z_y. Each z goes
through a two-layer MLP to f_m / f_y; the label is predicted from f_y; each modality's decoder
(an LSTMCell fed its own previous output, started from [f_y, f_m]) reconstructs its whole
sequence. Loss (MMSA's trainer): L1(pred) + sum_m lda_x_m * MSE(reconstruction_m, input_m)
+ lda_mmd * sum over z_t, z_a, z_v, z_y of the MMD against a fresh N(0, I) draw of its shape.
The reconstruction and MMD terms are computed in training mode only (MMSA computes them in
evaluation too, but they never reach its prediction or its validation loss).

Sequences of different lengths (CH-SIMS: MMSA has it only unaligned) are first aligned to the
text's length as MMSA's AMIO does for `need_model_aligned` models (AlignSubNet `avg_pool`,
models/layers/mmsa_align.py); MMSA's aligned_50 files need no alignment.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel, sum_terms, task_loss
from models.layers.memory_fusion import DeltaMemoryFusion
from models.layers.mmsa_align import align_to_text
from models.registry import choice, register_model


@dataclass(kw_only=True)
class MFMConfig(ModelConfig):
    hidden_dims: tuple[int, int, int] = (128, 32, 128)  # MFN LSTM widths t/a/v
    mem_size: int = 64  # MFN memory (memsize)
    att1: tuple[int, float] = (32, 0.7)  # MFN NN1Config (shapes, drop)
    att2: tuple[int, float] = (64, 0.0)  # NN2Config
    gamma1: tuple[int, float] = (32, 0.0)  # gamma1Config
    gamma2: tuple[int, float] = (64, 0.5)  # gamma2Config
    out_hidden: int = 128  # MFN outConfig shapes: its head is built, never used by MFM (mfn.out_*)
    z_sizes: tuple[int, int, int, int] = (80, 64, 80, 80)  # zy, zl, za, zv
    f_sizes: tuple[int, int, int, int] = (64, 32, 16, 64)  # fy, fl, fa, fv
    z_to_f_dropout: tuple[float, float, float, float] = (0.5, 0.5, 0.7, 0.5)  # zy/zl/za/zv_to_f*_dropout
    fy_to_y_dropout: float = 0.0
    lda_mmd: float = 100.0  # weight of the MMD sum
    lda_x: tuple[float, float, float] = (0.5, 0.01, 0.5)  # lda_xl, lda_xa, lda_xv: reconstruction weights


def mmd(z: torch.Tensor) -> torch.Tensor:
    """MMSA's loss_MMD: MMD between z and a N(0, I) sample of its shape, Gaussian kernel
    exp(-mean squared difference / dim)."""
    prior = torch.randn_like(z)

    def kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.exp(-(x.unsqueeze(1) - y.unsqueeze(0)).pow(2).mean(2) / float(x.shape[1]))

    return kernel(prior, prior).mean() + kernel(z, z).mean() - 2.0 * kernel(prior, z).mean()


class TwoLayer(nn.Module):
    """fc2(dropout(relu(fc1(x)))): MMSA's `*_fc1` / `*_fc2` / `*_dropout` triples."""

    def __init__(self, d_in: int, hidden: int, d_out: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2, self.dropout = nn.Linear(d_in, hidden), nn.Linear(hidden, d_out), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


class SeqEncoder(nn.Module):
    """MMSA encoderLSTM: an LSTM from a zero state; its last hidden state through a linear layer."""

    def __init__(self, d: int, h: int):
        super().__init__()
        self.lstm, self.fc1 = nn.LSTM(d, h, batch_first=True), nn.Linear(h, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc1(self.lstm(x)[0][:, -1])


class SeqDecoder(nn.Module):
    """MMSA decoderLSTM: an LSTMCell fed the code at step 0, then its own last hidden state;
    the hidden states through a linear layer to the input width. Returns (B, steps, d)."""

    def __init__(self, h: int, d: int):
        super().__init__()
        self.lstm, self.fc1 = nn.LSTMCell(h, h), nn.Linear(h, d)

    def forward(self, code: torch.Tensor, steps: int) -> torch.Tensor:
        h = c = torch.zeros_like(code)
        outs, inp = [], code
        for _ in range(steps):
            h, c = self.lstm(inp, (h, c))
            outs.append(h)
            inp = h
        return self.fc1(torch.stack(outs, dim=1))


class MFM(MSAModel):
    cfg: MFMConfig
    no_grad_params = (*MSAModel.no_grad_params, "mfn.out_")  # MMSA's MFN head: built, never called

    def __init__(self, cfg: MFMConfig):
        super().__init__(cfg)
        zy, *z_m = cfg.z_sizes
        fy, *f_m = cfg.f_sizes
        self.encoders = nn.ModuleDict({m: SeqEncoder(d, z) for m, d, z in zip("tav", cfg.dims, z_m, strict=True)})
        self.decoders = nn.ModuleDict({m: SeqDecoder(fy + f, d) for m, d, f in zip("tav", cfg.dims, f_m, strict=True)})
        blocks = {"att1": cfg.att1, "att2": cfg.att2, "gamma1": cfg.gamma1, "gamma2": cfg.gamma2,
                  "out": (cfg.out_hidden, 0.0)}  # MMSA's MFN head (out_*): built, never called by MFM
        n_mfn_out = 1 if cfg.task == "regression" else cfg.n_out
        self.mfn = DeltaMemoryFusion(cfg.dims, cfg.hidden_dims, cfg.mem_size, blocks, n_mfn_out)
        self.to_zy = nn.Linear(self.mfn.out_dim, zy)  # last_to_zy_fc1
        self.factor = nn.ModuleDict({k: TwoLayer(z, f, f, p) for k, z, f, p in
                                     zip("ytav", cfg.z_sizes, cfg.f_sizes, cfg.z_to_f_dropout, strict=True)})
        self.head = TwoLayer(fy, fy, cfg.n_out, cfg.fy_to_y_dropout)  # fy_to_y_fc1/fc2

    def _inputs(self, batch) -> dict[str, torch.Tensor]:
        t, a, v = align_to_text(batch.text_feats, batch.audio, batch.vision)  # MMSA need_model_aligned
        return {"t": t, "a": a, "v": v}

    def forward(self, batch) -> ModelOutput:
        x = self._inputs(batch)
        z = {m: self.encoders[m](x[m]) for m in "tav"}
        z["y"] = self.to_zy(self.mfn(x))
        f = {k: F.relu(self.factor[k](z[k])) for k in "ytav"}
        out = ModelOutput(pred=self.head(f["y"]), features={**z, "f": f["y"]})
        if self.training:  # the generative terms; every MMD draws its prior sample here (MMSA's order l, a, v, y)
            lda = dict(zip("tav", self.cfg.lda_x, strict=True))
            recon = {m: self.decoders[m](torch.cat([f["y"], f[m]], dim=1), x[m].shape[1]) for m in "tav"}
            out.extras["gen"] = sum_terms(lda[m] * F.mse_loss(recon[m], x[m]) for m in "tav")
            out.extras["mmd"] = self.cfg.lda_mmd * sum_terms(mmd(z[k]) for k in "tavy")
        return out

    def loss(self, output: ModelOutput, batch) -> dict[str, torch.Tensor]:
        task = task_loss(output.pred, batch.labels, self.cfg.task)
        if "gen" not in output.extras:  # an evaluation-mode output: the task loss alone (MMSA's validation loss)
            return {"total": task, "task": task}
        gen, mmd_part = output.extras["gen"], output.extras["mmd"]
        return {"total": task + gen + mmd_part, "task": task, "gen": gen, "mmd": mmd_part}

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        return {m: [*self.encoders[m].parameters(), *self.decoders[m].parameters(), *self.factor[m].parameters(),
                    *self.mfn.cell(m).parameters()] for m in "tav"}


# -- presets: MMSA 2.2.1 config_regression.json `mfm` (MMSA names in brackets) ---------------------
# Optimiser (trains/singleTask/MFM.py:19): torch Adam(model.parameters(), weight_decay=wd) with its
# default lr 1e-3: the config's learning_rate never reaches it. No clipping, no scheduler; early_stop 8,
# selection on the validation L1 (KeyEval "Loss"); the 200-epoch cap is a harness decision.
_TRAIN: dict[str, Any] = dict(optimizer="adam", lr=1e-3, scheduler=None, max_epochs=200, early_stop_patience=8)
_MMSA_MOSI = MFMConfig(
    dims=(768, 5, 20), setting="aligned",  # datasetCommonParams mosi aligned (need_data_aligned true)
    hidden_dims=(128, 32, 128), mem_size=64,  # [hidden_dims], [memsize]; windowsize 2
    att1=(32, 0.7), att2=(64, 0.0), gamma1=(32, 0.0), gamma2=(64, 0.5), out_hidden=128,  # NN1/NN2/gamma1/gamma2/outConfig
    z_sizes=(80, 64, 80, 80), f_sizes=(64, 32, 16, 64),  # [zy/zl/za/zv_size], [fy/fl/fa/fv_size]
    z_to_f_dropout=(0.5, 0.5, 0.7, 0.5), fy_to_y_dropout=0.0,  # [z*_to_f*_dropout], [fy_to_y_dropout]
    lda_mmd=100.0, lda_x=(0.5, 0.01, 0.5),  # [lda_mmd], [lda_xl, lda_xa, lda_xv]
    batch_size=64, weight_decay=1e-3, **_TRAIN,  # [batch_size], [weight_decay]
)
_MMSA_MOSEI = MFMConfig(
    dims=(768, 74, 35), setting="aligned",  # mosei aligned
    hidden_dims=(256, 32, 256), mem_size=64,
    att1=(1278, 0.5), att2=(32, 0.7), gamma1=(64, 0.5), gamma2=(128, 0.2), out_hidden=256,
    z_sizes=(32, 256, 80, 80), f_sizes=(16, 32, 80, 32),
    z_to_f_dropout=(0.2, 0.7, 0.7, 0.7), fy_to_y_dropout=0.2,
    lda_mmd=10.0, lda_x=(5.0, 2.0, 5.0),
    batch_size=64, weight_decay=5e-4, **_TRAIN,
)
_MMSA_SIMS = MFMConfig(
    dims=(768, 33, 709), setting="unaligned",  # sims: MMSA has only unaligned_39 (avg_pool-aligned to the text)
    hidden_dims=(64, 16, 64), mem_size=128,
    att1=(32, 0.5), att2=(64, 0.5), gamma1=(64, 0.7), gamma2=(256, 0.0), out_hidden=128,
    z_sizes=(48, 256, 32, 80), f_sizes=(48, 256, 80, 48),
    z_to_f_dropout=(0.5, 0.0, 0.7, 0.0), fy_to_y_dropout=0.7,
    lda_mmd=200.0, lda_x=(0.5, 0.01, 0.01),
    batch_size=128, weight_decay=5e-3, **_TRAIN,
)
# CH-SIMS v2 (harness decision: MMSA 2.2.1 has no simsv2 entry): the SIMS preset, ch-simsv2s.pkl's widths
_SIMSV2 = replace(_MMSA_SIMS, dims=(768, 25, 177))
# IEMOCAP (harness decision: MMSA 2.2.1 has no IEMOCAP entry): the MOSEI preset on MulT's aligned pickle, GloVe text,
# the MulT protocol's 4 binary emotion heads (8 logits, cross-entropy)
_IEMOCAP = replace(_MMSA_MOSEI, task="iemocap", n_out=8, dims=(300, 74, 35))
# synthetic "demo" (harness decision): MOSI's configuration at a quarter of its widths, 5 epochs
_DEMO = replace(_MMSA_MOSI, hidden_dims=(32, 8, 32), mem_size=16, att1=(8, 0.7), att2=(16, 0.0), gamma1=(8, 0.0),
                gamma2=(16, 0.5), out_hidden=32, z_sizes=(20, 16, 20, 20), f_sizes=(16, 8, 4, 16),
                max_epochs=5, early_stop_patience=2)

PRESETS = {
    ("mosi", "mmsa"): _MMSA_MOSI,
    ("mosei", "mmsa"): _MMSA_MOSEI,
    ("sims", "mmsa"): _MMSA_SIMS,
    ("simsv2", "mmsa"): _SIMSV2,
    ("iemocap", "mmsa"): _IEMOCAP,
    ("synthetic", "demo"): _DEMO,
}
# `bench tune` search space: MMSA 2.2.1 config_tune.json `mfm` debugParams. Not searched: learning_rate,
# which MMSA's Adam never receives (its default 1e-3 is used), and windowsize (fixed at 2).
_TUNE = "MMSA 2.2.1 config_tune.json mfm"
_NETS = (("att1", "NN1Config"), ("att2", "NN2Config"), ("gamma1", "gamma1Config"), ("gamma2", "gamma2Config"))
_DROP = (0.0, 0.2, 0.5, 0.7)
_SHAPES = (32, 64, 128, 256)
_Z = (8, 16, 32, 48, 64, 80)
_ZL = (32, 64, 88, 128, 156, 256)
SEARCH_SPACE = {
    "hidden_dims": choice((128, 16, 128), (64, 16, 64), (128, 32, 128), (256, 32, 256), (64, 32, 64), source=_TUNE),
    **{f"z_sizes[{i}]": choice(*(_ZL if k == "l" else _Z), source=f"{_TUNE} [z{k}_size]") for i, k in enumerate("ylav")},
    **{f"f_sizes[{i}]": choice(*(_ZL if k == "l" else _Z), source=f"{_TUNE} [f{k}_size]") for i, k in enumerate("ylav")},
    **{f"z_to_f_dropout[{i}]": choice(*_DROP, source=f"{_TUNE} [z{k}_to_f{k}_dropout]") for i, k in enumerate("ylav")},
    "fy_to_y_dropout": choice(*_DROP, source=_TUNE),
    "lda_mmd": choice(10.0, 50.0, 100.0, 200.0, source=_TUNE),
    **{f"lda_x[{i}]": choice(0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, source=f"{_TUNE} [lda_x{k}]") for i, k in enumerate("lav")},
    "mem_size": choice(64, 128, 256, 300, 400, source=f"{_TUNE} [memsize]"),
    **{f"{ours}[0]": choice(*_SHAPES, source=f"{_TUNE} [{ref}.shapes]") for ours, ref in _NETS},
    **{f"{ours}[1]": choice(*_DROP, source=f"{_TUNE} [{ref}.drop]") for ours, ref in _NETS},
    "out_hidden": choice(*_SHAPES, source=f"{_TUNE} [outConfig.shapes]"),
    "batch_size": choice(32, 64, 128, source=_TUNE),
}


@register_model("mfm", config=MFMConfig, presets=PRESETS, default_preset="mmsa", search_space=SEARCH_SPACE,
                display_name="MFM", paper="Tsai et al., ICLR 2019",
                reference="https://github.com/thuiar/MMSA; MMSA==2.2.1", family="recurrent fusion", order=31)
def mfm(cfg: MFMConfig) -> MFM:
    """MFM (Tsai et al., ICLR 2019): MFN discriminative factor + per-modality generative factors."""
    return MFM(cfg)
