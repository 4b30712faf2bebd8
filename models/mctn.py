"""MCTN: Multimodal Cyclic Translation Network (Pham et al., AAAI 2019), as MMSA 2.2.1 has it
(`models/singleTask/MCTN.py`, trainer `trains/singleTask/MCTN.py`, `config/config_regression.json`).

Audio and vision are zero-padded to the widest feature width (MMSA pads them to the text's 768).
A seq2seq model with attention translates text -> vision and back (vision -> text, the cyclic
loss), a second one translates the first encoder's states -> audio; a regression LSTM with
attention pooling reads the second encoder's states. Loss (MMSA's model):
0.1 MSE(vision) + 0.1 MSE(text) + 0.1 MSE(audio) + L1(prediction).

**As MMSA runs it, the recurrences run over the batch axis.** MMSA feeds batch-first tensors to
sequence-first `nn.LSTM`s and indexes "time steps" along dimension 0: every LSTM steps over the
samples of the batch (the sequence positions are its batch), the decoders' attention weighs the
other samples, and the translation decodes one sample after the other (the first sample's
output stays 0). A sample's prediction therefore depends on the other samples in its batch and
their order: `summary()` records `batch_dependent_eval`. The prediction reads the text only
(audio and vision enter through the translation losses), so `modalities` is ("t",).

MMSA's teacher forcing draws `random.random()` each decoding step, but both branches feed the
target (`top1 = trg[t]`): the draw changes nothing, and msabench does not draw.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel, task_loss
from models.registry import around_preset, choice, register_model


@dataclass(kw_only=True)
class MCTNConfig(ModelConfig):
    hid_dim: int = 32  # MMSA hid_dim
    max_seq_len: int = 50  # sequences cut to this many steps
    loss_weights: tuple[float, float, float] = (0.1, 0.1, 0.1)  # vision, text, audio translation MSE (MMSA's model)


def summed_directions(x: torch.Tensor, hid: int) -> torch.Tensor:
    """A bidirectional LSTM's two halves added."""
    return x[..., :hid] + x[..., hid:]


class Encoder(nn.Module):
    """MMSA Encoder: bidirectional LSTM (sequence-first, fed batch-first tensors); states = sum of
    directions; s = tanh(fc(last forward + last backward hidden state))."""

    def __init__(self, d_in: int, hid: int):
        super().__init__()
        self.hid = hid
        self.rnn = nn.LSTM(d_in, hid, bidirectional=True)
        self.fc = nn.Linear(hid, hid, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, (h_n, _) = self.rnn(x)
        return summed_directions(out, self.hid), torch.tanh(self.fc(h_n[-1] + h_n[-2]))


class Attention(nn.Module):
    """MMSA Attention: additive attention of s (L, H) over join (B, L, H) along dimension 0."""

    def __init__(self, hid: int):
        super().__init__()
        self.attn = nn.Linear(2 * hid, hid, bias=False)
        self.v = nn.Linear(hid, 1, bias=False)

    def forward(self, s: torch.Tensor, join: torch.Tensor) -> torch.Tensor:
        keys = join.transpose(0, 1)  # (L, B, H)
        energy = torch.tanh(self.attn(torch.cat([s.unsqueeze(1).expand_as(keys), keys], dim=2)))
        return F.softmax(self.v(energy).squeeze(2), dim=1)  # (L, B)


class Decoder(nn.Module):
    """MMSA Decoder step: attention context, then a one-step bidirectional LSTM from a zero state;
    returns (prediction (L, W), next s = sum of the two directions' hidden states)."""

    def __init__(self, width: int, hid: int):
        super().__init__()
        self.hid = hid
        self.attention = Attention(hid)
        self.rnn = nn.LSTM(width + hid, hid, bidirectional=True)
        self.fc_out = nn.Linear(2 * hid, width)

    def forward(self, dec_input: torch.Tensor, s: torch.Tensor, join: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        context = torch.bmm(self.attention(s, join).unsqueeze(1), join.transpose(0, 1)).squeeze(1)  # (L, H)
        out, (h_n, _) = self.rnn(torch.cat([dec_input, context], dim=1).unsqueeze(0))
        pred = self.fc_out(torch.cat([summed_directions(out[0], self.hid), context], dim=1))
        return pred, h_n[-1] + h_n[-2]


def translate(encoder: Encoder, decoder: Decoder, src: torch.Tensor, trg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MMSA Seq2Seq (teacher forcing always: both of its branches feed the target): the encoder's
    states and the outputs along dimension 0, the first left at 0."""
    join, s = encoder(src)
    outputs = [torch.zeros_like(trg[0])]
    for t in range(1, trg.shape[0]):
        pred, s = decoder(trg[t - 1], s, join)
        outputs.append(pred)
    return join, torch.stack(outputs)


class Regression(nn.Module):
    """MMSA Regression: LSTM (sequence-first, fed batch-first), tanh-linear scores softmaxed over
    dimension 1, the weighted sum, a linear layer."""

    def __init__(self, hid: int, n_out: int):
        super().__init__()
        self.rnn = nn.LSTM(hid, hid)
        self.linear, self.linear2 = nn.Linear(hid, 1), nn.Linear(hid, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.rnn(x)[0]
        weights = F.softmax(torch.tanh(self.linear(act)).squeeze(2), dim=1)
        return self.linear2((act * weights.unsqueeze(2)).sum(1))


class MCTN(MSAModel):
    cfg: MCTNConfig
    modalities = ("t",)  # the prediction reads the text only

    def __init__(self, cfg: MCTNConfig):
        super().__init__(cfg)
        width, hid = max(cfg.dims), cfg.hid_dim  # MMSA output_dim: the padded width
        self.encoder1, self.decoder1 = Encoder(width, hid), Decoder(width, hid)
        self.encoder2, self.decoder2 = Encoder(hid, hid), Decoder(width, hid)
        self.regression = Regression(hid, cfg.n_out)

    def _inputs(self, batch) -> dict[str, torch.Tensor]:
        width, steps = max(self.cfg.dims), self.cfg.max_seq_len
        x = {"t": batch.text_feats, "a": batch.audio, "v": batch.vision}
        return {m: F.pad(t, (0, width - t.shape[2]))[:, :steps] for m, t in x.items()}

    def forward(self, batch) -> ModelOutput:
        x = self._inputs(batch)
        if not self.training:  # the translations' outputs never reach the prediction
            join = self.encoder2(self.encoder1(x["t"])[0])[0]
            return ModelOutput(pred=self.regression(join), features={"f": join.mean(1)})
        join, vision = translate(self.encoder1, self.decoder1, x["t"], x["v"])
        _, text = translate(self.encoder1, self.decoder1, vision, x["t"])
        join, audio = translate(self.encoder2, self.decoder2, join, x["a"])
        w_v, w_t, w_a = self.cfg.loss_weights
        trans = w_v * F.mse_loss(vision, x["v"]) + w_t * F.mse_loss(text, x["t"]) + w_a * F.mse_loss(audio, x["a"])
        return ModelOutput(pred=self.regression(join), features={"f": join.mean(1)}, extras={"translation": trans})

    def loss(self, output: ModelOutput, batch) -> dict[str, torch.Tensor]:
        task = task_loss(output.pred, batch.labels, self.cfg.task)
        if "translation" not in output.extras:  # an evaluation-mode output
            return {"total": task, "task": task}
        trans = output.extras["translation"]
        return {"total": trans + task, "task": task, "translation": trans}

    def summary(self) -> dict[str, bool]:
        return {"batch_dependent_eval": True}

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        return {"t": [*self.encoder1.parameters(), *self.encoder2.parameters(), *self.regression.parameters()],
                "a": list(self.decoder2.parameters()), "v": list(self.decoder1.parameters())}


# -- presets: MMSA 2.2.1 config_regression.json `mctn` (MMSA names in brackets) -----------------------
# Optimiser (trains/singleTask/MCTN.py:26): torch Adam(lr=init_lr), no weight decay; clip_grad_norm_
# [grad_clip] before every step; early_stop 8, selection on the validation loss (KeyEval "Loss": MMSA's
# is its model's total loss, msabench's the L1: see the card); the 200-epoch cap is a harness decision.
_MMSA_MOSI = MCTNConfig(
    dims=(768, 5, 20), setting="aligned",  # datasetCommonParams mosi aligned (need_data_aligned true), `text`
    hid_dim=32, max_seq_len=50,  # [hid_dim], [max_seq_len]; [output_dim] 768 = the widest input
    optimizer="adam", lr=1e-4, weight_decay=0.0, batch_size=32, clip_grad_norm=1.0,  # [init_lr], [batch_size], [grad_clip]
    scheduler=None, max_epochs=200, early_stop_patience=8,  # [early_stop]
)
# MMSA 2.2.1 has no mosei entry for mctn (its run fails there): MOSI's values on MOSEI's widths
# (harness decision); MMSA's trainer would also stop each MOSEI epoch after 2 batches (a bug, not kept)
_MMSA_MOSEI = replace(_MMSA_MOSI, dims=(768, 74, 35))
# CH-SIMS / CH-SIMS v2: MMSA 2.2.1 configures neither for mctn, and has no aligned CH-SIMS file (its
# need_data_aligned run falls back to unaligned_39, whose 39 text steps meet 50 audio/vision steps and
# fail). Harness decision: MOSI's values on the CH-SIMS widths, max_seq_len = the text length (39 / 50),
# so audio and vision are cut to their first 39 / 50 frames by the model's own cut (MMSA's mechanism)
_SIMS = replace(_MMSA_MOSI, dims=(768, 33, 709), setting="unaligned", max_seq_len=39)
_SIMSV2 = replace(_SIMS, dims=(768, 25, 177), max_seq_len=50)
# IEMOCAP (harness decision: MMSA 2.2.1 has no IEMOCAP entry): the MOSEI preset on MulT's aligned pickle (max_seq_len = its 20 steps), GloVe text,
# the MulT protocol's 4 binary emotion heads (8 logits, cross-entropy)
_IEMOCAP = replace(_MMSA_MOSEI, task="iemocap", n_out=8, dims=(300, 74, 35), max_seq_len=20)
# synthetic "demo" (harness decision): MOSI's configuration with hid_dim 16, 5 epochs
_DEMO = replace(_MMSA_MOSI, hid_dim=16, lr=1e-3, max_epochs=5, early_stop_patience=2)

PRESETS = {
    ("mosi", "mmsa"): _MMSA_MOSI,
    ("mosei", "mmsa"): _MMSA_MOSEI,
    ("sims", "mmsa"): _SIMS,
    ("simsv2", "mmsa"): _SIMSV2,
    ("iemocap", "mmsa"): _IEMOCAP,
    ("synthetic", "demo"): _DEMO,
}
# `bench tune` search space (harness decision: MMSA 2.2.1 config_tune.json has no mctn entry)
SEARCH_SPACE = {
    "lr": around_preset(10, source="harness decision: log-uniform [preset/10, preset*10]"),
    "hid_dim": choice(16, 32, 64, source="harness decision"),
    "batch_size": choice(16, 32, 64, source="harness decision"),
}


@register_model("mctn", config=MCTNConfig, presets=PRESETS, default_preset="mmsa", search_space=SEARCH_SPACE,
                display_name="MCTN", paper="Pham et al., AAAI 2019",
                reference="https://github.com/thuiar/MMSA; MMSA==2.2.1", family="recurrent fusion", order=32)
def mctn(cfg: MCTNConfig) -> MCTN:
    """MCTN (Pham et al., AAAI 2019): cyclic text -> vision -> text and -> audio translations, text at test time."""
    return MCTN(cfg)
