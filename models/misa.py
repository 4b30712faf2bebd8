"""MISA: modality-invariant and -specific representations (Hazarika et al., ACM MM 2020).

Source: thuiar/MMSA 2.2.1 `models/singleTask/MISA.py`, `trains/singleTask/MISA.py` and
`config/config_regression.json` ("mmsa" preset, the default; MMSA adapts declare-lab/MISA).

Forward (MMSA, `use_bert` and `use_cmd_sim` on, LSTM cells):
1. text: BERT last hidden states, averaged over the attended tokens (mask-weighted mean);
2. audio / vision: two bidirectional LSTMs (hidden = the input width) over the packed
   sequences, LayerNorm on the first one's padded outputs in between; the utterance vector is
   [h1 fwd; h2 fwd; h1 bwd; h2 bwd] of the final states. MMSA packs audio and vision with the
   TEXT lengths (sum of the BERT mask, [CLS]/[SEP] included), also on unaligned data: the
   first n frames are read (`rnn_lengths="text"`; "own" reads each modality's own lengths);
3. per modality: project (Linear -> ReLU -> LayerNorm to `hidden_size`) = u_m; private
   p_m = sigmoid(W_m u_m); shared s_m = sigmoid(W_s u_m) (one W_s for all three);
   reconstruction r_m = R_m(p_m + s_m);
4. a 1-layer nn.TransformerEncoder (2 heads, feed-forward 2048, dropout 0.1: torch's
   defaults, as MMSA builds it) over the 6 tokens [p_t, p_v, p_a, s_t, s_v, s_a]; their
   concatenation -> Linear(6h, 3h) -> Dropout -> ReLU -> Linear(3h, 1).

Loss (MMSA's trainer; owned by `loss()`): MSE task loss + diff_weight x the orthogonality
(difference) loss over the 6 pairs (p_m, s_m), (p_a, p_t), (p_a, p_v), (p_t, p_v) +
sim_weight x the mean central-moment discrepancy (5 moments) of the shared pairs +
recon_weight x the mean MSE of r_m against u_m.

Built but never trained, as in MMSA: the shared-private discriminator (its output is
unused in the loss) and the text LayerNorm (`tlayer_norm`); both count in parameter totals.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_packed_sequence

from models.base import ModelConfig, ModelOutput, MSAModel, sum_terms
from models.layers.blocks import pack
from models.layers.text_encoder import build_text_encoder
from models.protocol import at_least_fp32
from models.registry import choice, register_model

DIFF_EPS = 1e-6  # trains/singleTask/MISA.py DiffLoss
PAIRS_DIFF = (("t", "t"), ("v", "v"), ("a", "a"))  # (private, shared) of the same modality
PAIRS_PRIVATE = (("a", "t"), ("a", "v"), ("t", "v"))  # across privates, MMSA's order
PAIRS_CMD = (("t", "v"), ("t", "a"), ("a", "v"))  # shared pairs, MMSA's order
TOKENS = ("t", "v", "a")  # MMSA's token order in the fusion transformer (privates, then shared)


@dataclass(kw_only=True)
class MISAConfig(ModelConfig):
    text_input: str = "ids"  # MMSA use_bert: `text_bert` token ids
    setting: str = "unaligned"  # need_data_aligned false: unaligned_50
    text_encoder: str = "bert-base-uncased"  # pretrained; local dir | "bert-base" | "tiny" | cached hub name
    text_vocab_size: Optional[int] = None  # vocabulary of a named random-init config (tiny)
    rnn_lengths: str = "text"  # "text": audio/vision packed with the text lengths (MMSA) | "own": their own lengths
    hidden_size: int = 128  # hidden_size (MMSA mosi)
    dropout: float = 0.2  # the fusion head's dropout (MMSA `dropout`)
    transformer_dropout: float = 0.1  # nn.TransformerEncoderLayer's default (MMSA passes none)
    cmd_moments: int = 5  # get_cmd_loss: CMD with 5 moments
    diff_weight: float = 0.1
    sim_weight: float = 0.3
    recon_weight: float = 1.0


class BiLSTMPair(nn.Module):
    """MISA.extract_features: BiLSTM -> LayerNorm on its padded outputs -> BiLSTM, both packed;
    returns [h1 fwd; h2 fwd; h1 bwd; h2 bwd] (MMSA's cat(dim 2).permute(1, 0, 2).view)."""

    def __init__(self, width: int):
        super().__init__()
        self.rnn1 = nn.LSTM(width, width, bidirectional=True)
        self.rnn2 = nn.LSTM(2 * width, width, bidirectional=True)
        self.norm = nn.LayerNorm(2 * width)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        seq1, (h1, _) = self.rnn1(pack(x, lengths))  # lengths >= 1 and within the sequence (harness guard)
        normed = self.norm(pad_packed_sequence(seq1, batch_first=True)[0])
        _, (h2, _) = self.rnn2(pack(normed, lengths))
        return torch.cat((h1, h2), dim=2).permute(1, 0, 2).reshape(x.shape[0], -1)


def _projection(in_dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.LayerNorm(hidden))


def diff_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """DiffLoss: mean squared entry of X^T Y after centring each and dividing every row by its
    detached L2 norm (+1e-6)."""
    x, y = x - x.mean(dim=0, keepdim=True), y - y.mean(dim=0, keepdim=True)
    x = x / (x.norm(p=2, dim=1, keepdim=True).detach() + DIFF_EPS)
    y = y / (y.norm(p=2, dim=1, keepdim=True).detach() + DIFF_EPS)
    return (x.t() @ y).pow(2).mean()


def cmd(x: torch.Tensor, y: torch.Tensor, moments: int) -> torch.Tensor:
    """Central moment discrepancy: |mean x - mean y| + sum_k=2..K |E(x-Ex)^k - E(y-Ey)^k| (L2 norms)."""
    mx, my = x.mean(0), y.mean(0)
    sx, sy = x - mx, y - my
    total = (mx - my).pow(2).sum().sqrt()
    for k in range(2, moments + 1):
        total = total + (sx.pow(k).mean(0) - sy.pow(k).mean(0)).pow(2).sum().sqrt()
    return total


class MISA(MSAModel):
    cfg: MISAConfig

    def __init__(self, cfg: MISAConfig):
        super().__init__(cfg)
        if cfg.rnn_lengths not in ("text", "own"):
            raise ValueError(f"misa: rnn_lengths '{cfg.rnn_lengths}' is not 'text' or 'own'")
        h = cfg.hidden_size
        self.text = build_text_encoder(cfg.text_encoder, cfg.text_vocab_size)
        width = {"t": self.text.hidden_size, "a": cfg.dims[1], "v": cfg.dims[2]}
        self.seq = nn.ModuleDict({m: BiLSTMPair(width[m]) for m in "va"})
        self.unused_tlayer_norm = nn.LayerNorm(2 * cfg.dims[0])  # MMSA's tlayer_norm: built, never used
        self.project = nn.ModuleDict({"t": _projection(width["t"], h),
                                      **{m: _projection(4 * width[m], h) for m in "va"}})
        self.private = nn.ModuleDict({m: nn.Sequential(nn.Linear(h, h), nn.Sigmoid()) for m in "tva"})
        self.shared = nn.Sequential(nn.Linear(h, h), nn.Sigmoid())
        self.recon = nn.ModuleDict({m: nn.Linear(h, h) for m in "tva"})
        self.unused_sp_discriminator = nn.Linear(h, 4)  # its outputs never reach MMSA's loss
        layer = nn.TransformerEncoderLayer(d_model=h, nhead=2, dropout=cfg.transformer_dropout)
        self.fusion_transformer = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.fusion = nn.Sequential(nn.Linear(6 * h, 3 * h), nn.Dropout(cfg.dropout), nn.ReLU(),
                                    nn.Linear(3 * h, cfg.n_out))

    def utterances(self, batch) -> dict[str, torch.Tensor]:
        """The utterance vectors before projection: masked-mean BERT states, audio/vision LSTM pairs."""
        hidden = self.text(batch.text_ids, batch.text_mask, batch.text_segment)
        mask = batch.text_mask.to(hidden.dtype)
        text_len = mask.sum(dim=1, keepdim=True)
        utt = {"t": (hidden * mask.unsqueeze(2)).sum(dim=1) / text_len}
        own = self.cfg.rnn_lengths == "own"
        for m, x, lengths in (("v", batch.vision, batch.vision_lengths), ("a", batch.audio, batch.audio_lengths)):
            utt[m] = self.seq[m](x, lengths if own else text_len.reshape(-1).long())
        return utt

    def forward(self, batch) -> ModelOutput:
        utt = self.utterances(batch)
        orig = {m: self.project[m](utt[m]) for m in "tva"}
        private = {m: self.private[m](orig[m]) for m in "tva"}
        shared = {m: self.shared(orig[m]) for m in "tva"}
        recon = {m: self.recon[m](private[m] + shared[m]) for m in "tva"}
        tokens = torch.stack([private[m] for m in TOKENS] + [shared[m] for m in TOKENS], dim=0)
        fused = torch.cat(tuple(self.fusion_transformer(tokens)), dim=1)
        named = {f"{kind}_{m}": t for kind, d in (("private", private), ("shared", shared), ("recon", recon))
                 for m, t in d.items()}
        return ModelOutput(pred=self.fusion(fused), features={**orig, "f": fused, **named})

    def loss(self, output: ModelOutput, batch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        work = at_least_fp32(output.pred.dtype)
        assert output.features is not None  # forward fills u_m (t/v/a), private_m, shared_m, recon_m
        f = {k: t.to(work) for k, t in output.features.items()}
        p, s = {m: f[f"private_{m}"] for m in "tva"}, {m: f[f"shared_{m}"] for m in "tva"}
        parts = {
            "task": F.mse_loss(output.pred.to(work).reshape(-1), batch.labels.to(work).reshape(-1)),
            "diff": sum_terms([diff_loss(p[a], s[b]) for a, b in PAIRS_DIFF]
                              + [diff_loss(p[a], p[b]) for a, b in PAIRS_PRIVATE]),
            "sim": sum_terms(cmd(s[a], s[b], cfg.cmd_moments) for a, b in PAIRS_CMD) / 3.0,
            "recon": sum_terms(F.mse_loss(f[f"recon_{m}"], f[m]) for m in "tva") / 3.0,
        }
        total = parts["task"] + cfg.diff_weight * parts["diff"] + cfg.sim_weight * parts["sim"] \
            + cfg.recon_weight * parts["recon"]
        return {"total": total, **parts}

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        out: dict[str, list[nn.Parameter]] = {}
        for m in "tva":
            encoder = self.text if m == "t" else self.seq[m]
            out[m] = [p for mod in (encoder, self.project[m], self.private[m], self.recon[m]) for p in mod.parameters()]
        return out

    def summary(self) -> dict[str, Any]:
        return {"rnn_lengths": self.cfg.rnn_lengths}


# -- presets ---------------------------------------------------
# trains/singleTask/MISA.py: Adam(lr=learning_rate) over every parameter, one group, NO weight
# decay (the config's weight_decay is never passed); MSE loss; clip_grad_value_ after every
# backward; an optimizer step every update_epochs batches (MMSA drops the trailing partial
# group: harness applies it); selection on the validation loss (MMSA: MSE; harness: its L1 loss).
_MMSA_MOSI = MISAConfig(  # MMSA config_regression.json misa (commonParams + mosi)
    dims=(768, 5, 20),  # feature_dims of MOSI unaligned_50 (text = BERT)
    optimizer="adam", lr=1e-4, weight_decay=0.0,  # learning_rate 1e-4; weight_decay 0.0 (unused by the trainer)
    batch_size=16, grad_accum_steps=2, clip_grad_value=0.8,  # batch_size, update_epochs, grad_clip
    early_stop_patience=8,  # early_stop
    hidden_size=128, dropout=0.2, diff_weight=0.1, sim_weight=0.3, recon_weight=1.0,
    # reverse_grad_weight 0.8 and sp_weight 1.0 are read by nothing with use_cmd_sim true: no fields
)
_MMSA_MOSEI = replace(  # MMSA misa mosei (weight_decay 5e-5 not passed to Adam)
    _MMSA_MOSI, dims=(768, 74, 35), batch_size=64, lr=1e-4, clip_grad_value=0.8,
    hidden_size=128, dropout=0.5, diff_weight=0.3, sim_weight=0.8, recon_weight=1.0,
)
_MMSA_SIMS = replace(  # MMSA misa sims: pretrained bert-base-chinese (weight_decay 5e-5 not passed)
    _MMSA_MOSI, dims=(768, 33, 709), text_encoder="bert-base-chinese", batch_size=64, lr=1e-4,
    clip_grad_value=1.0, hidden_size=128, dropout=0.0, diff_weight=0.3, sim_weight=1.0, recon_weight=0.8,
)
# CH-SIMS v2 (harness decision: MMSA 2.2.1 has no simsv2 entry): the SIMS preset, ch-simsv2s.pkl's widths
_SIMSV2 = replace(_MMSA_SIMS, dims=(768, 25, 177))
# synthetic `demo` (harness decision): tiny random-init BERT, lr 5e-4 as it learns from scratch,
# hidden 32, batch 32, 4 epochs
_DEMO = replace(_MMSA_MOSI, text_encoder="tiny", text_vocab_size=2048, lr=5e-4, hidden_size=32,
                batch_size=32, max_epochs=4, early_stop_patience=2)
PRESETS = {("mosi", "mmsa"): _MMSA_MOSI, ("mosei", "mmsa"): _MMSA_MOSEI, ("sims", "mmsa"): _MMSA_SIMS,
           ("simsv2", "mmsa"): _SIMSV2, ("synthetic", "demo"): _DEMO}
UNSUPPORTED = {"iemocap": "its task loss is MMSA's MSE on one regression output (MISA.loss); the MulT protocol's "
                          "4 binary emotion heads need a cross-entropy loss the model does not have"}

# `bench tune` search space: MMSA 2.2.1 config/config_tune.json `misa` debugParams (MMSA name in
# brackets). reverse_grad_weight and sp_weight are tuned there but read by nothing (use_cmd_sim
# true); weight_decay is tuned there but never reaches the optimizer: all three left out.
_TUNE = "MMSA 2.2.1 config_tune.json misa"
SEARCH_SPACE = {
    "batch_size": choice(16, 32, 64, source=_TUNE),
    "lr": choice(1e-4, 1e-3, 5e-4, source=f"{_TUNE} [learning_rate]"),
    "hidden_size": choice(64, 128, 256, source=_TUNE),
    "dropout": choice(0.5, 0.2, 0.0, source=_TUNE),
    "diff_weight": choice(0.1, 0.3, 0.5, source=_TUNE),
    "sim_weight": choice(0.5, 0.8, 1.0, source=_TUNE),
    "recon_weight": choice(0.5, 0.8, 1.0, source=_TUNE),
    "clip_grad_value": choice(None, 0.8, 1.0, source=f"{_TUNE} [grad_clip; -1.0 = off = None]"),
}


@register_model("misa", config=MISAConfig, presets=PRESETS, default_preset="mmsa", unsupported=UNSUPPORTED,
                search_space=SEARCH_SPACE,
                display_name="MISA", paper="Hazarika et al., ACM MM 2020",
                reference="https://github.com/thuiar/MMSA; MMSA==2.2.1",
                family="BERT + fusion", order=52)
def misa(cfg: MISAConfig) -> MISA:
    """MISA (Hazarika et al., ACM MM 2020): BERT + BiLSTMs, private/shared spaces, CMD/diff/recon losses."""
    return MISA(cfg)
