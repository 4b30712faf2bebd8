"""Semi-IIN: semi-supervised intra-inter modal interaction learning network (Lin, Wang, Xu, Liu;
AAAI 2025), the supervised row by default: "Semi-IIN (supervised)".

Reference: flow-ljh/Semi-IIN@55f1c4d (MIT) `code/model.py` (class `CMFM`),
`code/modules/multihead_attention_orign.py` (the masked attention), `code/modules/transformer.py`
(MulT's encoder), the deleted `main()` of 46cda75:code/model.py (hyperparameters) and the deleted
loader 63fa5cd:code/multi_semi_pseudo_together.py.
Only the network is released: `cross_transformer.py`, `run.py` and the self-training code are
missing (issues #5, #8), so the encoder wrapper and the training stages are rebuilt [inferred].

Forward (d = 128):
1. input dropout p = 0.5 on each raw feature sequence (the released forward takes `training=True`
   by default; here it follows `self.training`, a harness fix: `input_dropout_in_eval`);
2. bias-free Conv1d front-ends: text k3/s1/p1, vision k3/s1/p1, audio two convs: `stride8`
   (k4/s2 then k4/s4, the released MOSI/MOSEI branch for 50 Hz HuBERT frames) or `stride1`
   (k3/s1 twice, the released IEMOCAP branch; a harness decision for COVAREP on MMSA pickles);
3. modality-type embedding (audio 0, text 1, vision 2; N(0, 0.05)), sequence
   Z = [val; cls; audio; text; vision] + a learnable position table (trunc-normal 0.02) whose
   length is 2 + the post-conv lengths (252 on the native 800/100/50 layout);
4. IntraMAU and InterMAU: one 1-layer encoder each, with the IntraMASK / InterMASK, each applied
   `sharing_num` = 2 times with the same weights (the released ModuleList repeats one object);
5. gates G = sigmoid(W_A inter + W_V intra + b) (W_A without bias), Z = G inter + (1 - G) intra,
   one gate for the val token and one for the cls token;
6. one shared Linear(128, 128) -> Linear(128, 64), no activation between them (as coded), then
   fc_out1 (64 -> 1, sentiment) on the val token and fc_out2 (64 -> 7, emotion) on the cls token.
`attention="global"` is the released `--inter global` baseline (paper Table 2 "Baseline"): one
unmasked encoder, no gates, and the position table built but *not* added (as coded: a dead
parameter).

Masks (multihead_attention_orign.py:123-146, one (T, T) pattern for every head; built here from
the actual post-conv lengths instead of the hard-coded 2/100/100): Intra: the two special tokens
see every modality token but not each other or themselves, each modality token sees the special
tokens and its own modality. Inter: the special tokens as in Intra, each modality token sees every
token except those of its own modality. No key-padding mask (zero padding is attended, as coded).

Encoder wrapper (`cross_transformer.TransformerEncoder`, missing) [inferred]: MulT's
encoder (models/layers/transformer.py CrossModalTransformer: x * sqrt(d), sinusoidal positions,
embed dropout 0.2, pre-LN layers, final LayerNorm) with the mask in its attention, because
`model.py` passes `embed_dropout`, which only MulT's encoder uses. Applied twice per branch, the
wrapper runs in full on each application (scale, positions and dropout again). The network
calls it as `layer(x, x, x)` (model.py:151-163), so the MulT encoder takes its key/value branch
(modules/transformer.py:68-83: x_in_k and x_in_v embedded again, each with its own embed-dropout
draw, normalised by the layer's first LayerNorm) and the released attention builds K and V from
the key stream (multihead_attention_orign.py:62 `kv_same = True`; the value stream's draw is
never read, so it is not made here). Eval is the same function either way; in training the
queries and the keys/values see different dropout. Each inferred piece is a switch:
`wrapper_kv_stream`, `wrapper_embed_scale`, `wrapper_positions`, `wrapper_final_norm`
(`wrapper_embed_dropout` sets the dropout; 0 drops it).

Loss (paper eqs. 19-22; `val_r` 0.6 / `cls_r` 0.4 in 46cda75): 0.6 MSE(v^, v) + 0.4 CE(e^, e),
e the 7 bins of v of the paper's Supplementary Table 6 (`emotion_classes`).

Self-training (paper §3.4, Algorithm 1) is a second `Stage`, present only when `unlabeled_dir` is set:
stage "supervised" as above, then stage "self_training" from its selected state: the unlabeled clips
are predicted, the `pseudo_top_k` most confident per predicted emotion class are kept (max softmax
probability [inferred]; MOSI k = 40, MOSEI all clips), and training continues with 0.6 MSE + 0.4 CE on
the labeled batch + 0.2 CE on a pseudo-labeled batch (emotion only, eq. 23), the pseudo batch sized to
the pseudo set's share of labeled + pseudo (the released loader concatenates both sets) [inferred].
`unlabeled_dir` must hold `unlabeled.npz` (see `UNLABELED_FILE`), which bench/data/unlabeled.py checks
before training and hands to `on_stage_start` (`state.stage_data`); the AMI clips and the frozen
RoBERTa-large / HuBERT-large / FabNet features of the paper are not available here.

Inputs on the harness: MMSA `unaligned_50` pickles (frame-level, like the paper's features), text =
the 768-d BERT-base `text` features view (the released `--use_bert` branch, Conv1d(768 -> 128)),
each modality padded/truncated to `seq_lens` so the position table has a fixed length.

Parameters (built; tests/test_semi_iin.py): native widths (RoBERTa-large 1024 x 100, HuBERT-large
1024 x 800, FabNet 256 x 50; `stride8`): 1,602,376 with the masked attention, 1,338,056 with
`attention="global"`, equal to a hand count of the released layers and the paper's 1.6M / 1.3M. On MMSA widths
(`stride1`, unaligned lengths) the count is MOSI 961,096 / MOSEI 1,009,352: the text conv is
768-wide, the COVAREP/Facet convs are narrow and the position table covers 2 + 50 + 375 + 500
(MOSI) or 2 + 50 + 500 + 500 (MOSEI) tokens.

Not separable (the encoders mix all modalities); `modality_params` gives each modality its conv
front-end. Harness protocol: selection on validation (the released rule is unknown), all 30 epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel, Stage, StageData
from models.protocol import Batch
from models.layers.transformer import CrossModalTransformer, MultiheadAttention, dropout, dropout_keep
from models.registry import register_model

ATTENTIONS = ("masked", "global")
AUDIO_FRONTENDS = {  # (kernel, stride, padding) of the two audio convs (model.py:62-78)
    "stride8": ((4, 2, 1), (4, 4, 1)),  # MOSI/MOSEI branch: 800 HuBERT frames -> 100
    "stride1": ((3, 1, 1), (3, 1, 1)),  # IEMOCAP branch; a harness decision for COVAREP
}
N_SPECIAL = 2  # val and cls tokens (special_len = 2)
UNLABELED_FILE = "unlabeled.npz"
UNLABELED_KEYS = ("text", "audio", "vision")
UNSUPPORTED = {
    "iemocap": "Semi-IIN regresses valence with a 7-class emotion auxiliary; its code's IEMOCAP branch (64-d "
               "features, 6 classes) needs a valence label and features that are not released, the harness's "
               "IEMOCAP task is 4 binary emotions without valence, and the paper reports MOSI/MOSEI only",
}
# native inputs of the released code: RoBERTa-large 1024 x 100, HuBERT-large 1024 x 800,
# FabNet 256 x 50, the stride-8 audio front-end; for counting (no such features in the harness)
NATIVE = {"dims": (1024, 1024, 256), "seq_lens": (100, 800, 50), "audio_frontend": "stride8",
          "dims_from_data": False}


@dataclass(kw_only=True)
class SemiIINConfig(ModelConfig):
    text_input: str = "features"  # frozen text features (paper: RoBERTa-large; MMSA: 768-d `text`)
    setting: str = "unaligned"  # frame-level, unaligned features like the paper's
    dims_from_data: bool = True  # audio/vision widths from the file (harness decision)
    seq_lens: tuple[int, int, int] = (50, 375, 500)  # t/a/v steps fed to the convs (pad/truncate); MMSA MOSI unaligned
    d: int = 128  # hidden_dim (46cda75 tune_params)
    heads: int = 4  # t_num_heads
    sharing_num: int = 2  # each 1-layer encoder applied twice with the same weights
    mlp_layers: tuple[int, ...] = (128, 64)  # 'layers': '128,64' (Linear stack, no activation, as coded)
    n_emotions: int = 7  # fc_out2 width (Supplementary Table 6 bins)
    attention: str = field(default="masked", metadata={"choices": ATTENTIONS})
    #   masked: IntraMAU + InterMAU + gates (the paper's model) | global: --inter global, paper Table 2 "Baseline"
    audio_frontend: str = field(default="stride1", metadata={"choices": tuple(AUDIO_FRONTENDS)})
    #   stride1: the IEMOCAP branch's k3/s1 convs (harness decision for COVAREP) | stride8: the HuBERT branch as coded
    input_dropout: float = 0.5  # F.dropout(p=0.5) on text/audio/visual (model.py:119-126)
    input_dropout_in_eval: bool = False  # True: the released default `training=True` (also at eval); False: a fix
    attn_dropout: float = 0.1  # t_attn_dropout
    relu_dropout: float = 0.2  # t_relu_dropout
    res_dropout: float = 0.2  # t_res_dropout
    wrapper_embed_dropout: float = 0.2  # get_network(embed_dropout=0.2) [inferred wrapper]
    wrapper_embed_scale: bool = True  # x * sqrt(d) on every encoder call, as MulT's encoder [inferred]
    wrapper_positions: bool = True  # + sinusoidal positions on every call, as MulT's encoder [inferred]
    wrapper_final_norm: bool = True  # final LayerNorm of MulT's encoder (in the 1.6M count) [inferred]
    wrapper_kv_stream: bool = True  # layer(x, x, x): MulT's key/value branch, K and V from a second
    #   embed-dropout draw (modules/transformer.py:68-83, multihead_attention_orign.py:62); False: one stream
    val_weight: float = 0.6  # val_r / lambda_1 (paper §4.3)
    emo_weight: float = 0.4  # cls_r = 1 - lambda_1
    # self-training (paper §3.4; stage present only with unlabeled_dir)
    unlabeled_dir: Optional[str] = None  # folder with UNLABELED_FILE; None: supervised row only
    pseudo_top_k: Optional[int] = 40  # most confident clips kept per emotion class; None: all (MOSEI, README)
    pseudo_weight: float = 0.2  # lambda_2 on the pseudo-labeled emotion CE (paper eq. 23)


def conv_length(n: int, kernel: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - kernel) // stride + 1


def fit_steps(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, T, d) zero-padded or truncated on the time axis to n steps."""
    return F.pad(x, (0, 0, 0, n - x.shape[1])) if x.shape[1] < n else x[:, :n]


def emotion_classes(v: torch.Tensor) -> torch.Tensor:
    """Supplementary Table 6: [-3, -2.5) -> 0, [-2.5, -1.5) -> 1, ..., [-0.5, 0.5) -> 3, ..., [2.5, 3] -> 6."""
    return (torch.floor(v.float() + 0.5).long() + 3).clamp_(0, 6)


def group_mask(lengths: tuple[int, int, int], inter: bool) -> torch.Tensor:
    """(T, T) bool, True = the query (row) may attend to the key (column); groups in sequence
    order [special x2, audio, text, vision] (multihead_attention_orign.py:123-146)."""
    sizes = (N_SPECIAL, *lengths)
    group = torch.tensor([g for g, n in enumerate(sizes) for _ in range(n)], device="cpu")  # a buffer: moves with .to()
    same = group[:, None] == group[None, :]
    if inter:
        return ~same  # every token sees every other group; the specials see all modality tokens
    special_q, special_k = group[:, None] == 0, group[None, :] == 0
    # intra: a modality token sees the specials and its own modality; the specials see every modality token
    return torch.where(special_q, ~special_k, same | special_k)


class GroupMaskedAttention(MultiheadAttention):
    """MulT/fairseq self-attention (same packed parameters) with a fixed (T, T) group mask."""

    allowed: Optional[torch.Tensor]  # (T, T) bool buffer; None: every token sees every token

    def __init__(self, d: int, heads: int, attn_dropout: float, allowed: Optional[torch.Tensor]):
        super().__init__(d, heads, attn_dropout)
        self.register_buffer("allowed", allowed, persistent=False)

    def forward(self, x: torch.Tensor, kv: torch.Tensor, causal: bool = False) -> torch.Tensor:
        """Queries from x; keys and values both from kv (the released `kv_same = True`)."""
        b, t, d = x.shape
        h, w, bias = self.heads, self.in_proj_weight, self.in_proj_bias
        if kv is x:  # one stream: the packed projection
            q, k, v = F.linear(x, w, bias).view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        else:
            q = F.linear(x, w[:d], bias[:d]).view(b, t, h, d // h).transpose(1, 2)
            k, v = F.linear(kv, w[d:], bias[d:]).view(b, -1, 2, h, d // h).permute(2, 0, 3, 1, 4)
        p = self.attn_dropout if self.training else 0.0
        if x.device.type == "cpu" and p > 0:  # torch's CPU bernoulli is slow: the maps by hand, dropout_keep draws
            scores = q @ k.transpose(-1, -2) * (d // h) ** -0.5
            if self.allowed is not None:
                scores = scores.masked_fill(~self.allowed, float("-inf"))
            attn = torch.softmax(scores.float(), dim=-1) * dropout_keep(scores.shape, p, x.device)
            out = attn.to(v.dtype) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.allowed, dropout_p=p)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class Gate(nn.Module):
    """model.py `gate`: G = sigmoid(A(inter) + V(intra)), out = G * inter + (1 - G) * intra."""

    def __init__(self, d: int):
        super().__init__()
        self.A_affine = nn.Linear(d, d, bias=False)
        self.V_affine = nn.Linear(d, d, bias=True)

    def forward(self, intra: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.A_affine(inter) + self.V_affine(intra))
        return inter * g + intra * (1 - g)


class SemiIIN(MSAModel):
    cfg: SemiIINConfig

    def __init__(self, cfg: SemiIINConfig):
        super().__init__(cfg)
        if cfg.task != "regression":
            raise ValueError(f"Semi-IIN supports regression only: {UNSUPPORTED['iemocap']}")
        if cfg.attention not in ATTENTIONS or cfg.audio_frontend not in AUDIO_FRONTENDS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, audio_frontend one of {tuple(AUDIO_FRONTENDS)}")
        d, (d_t, d_a, d_v) = cfg.d, cfg.dims
        (k1, s1, p1), (k2, s2, p2) = AUDIO_FRONTENDS[cfg.audio_frontend]
        self.proj_t = nn.Conv1d(d_t, d, 3, 1, 1, bias=False)  # proj_1tt
        self.proj_a1 = nn.Conv1d(d_a, d, k1, s1, p1, bias=False)  # proj_1aa
        self.proj_a2 = nn.Conv1d(d, d, k2, s2, p2, bias=False)  # proj_2aa
        self.proj_v = nn.Conv1d(d_v, d, 3, 1, 1, bias=False)  # proj_1vv
        len_t, len_a, len_v = cfg.seq_lens
        len_a = conv_length(conv_length(len_a, k1, s1, p1), k2, s2, p2)
        self.token_lengths = (len_a, len_t, len_v)  # post-conv, in sequence order audio, text, vision
        self.seq_len = N_SPECIAL + sum(self.token_lengths)
        self.token_type = nn.Embedding(3, d)  # audio 0, text 1, visual 2
        nn.init.normal_(self.token_type.weight, 0.0, 0.05)  # init_weights: N(0, 0.05)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.seq_len, d))  # 252 on the native layout
        self.val_token = nn.Parameter(torch.zeros(1, 1, d))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        for p in (self.pos_embed, self.val_token, self.cls_token):
            nn.init.trunc_normal_(p, std=0.02)  # timm trunc_normal_(std=0.02): cut at +-2 (absolute)
        if cfg.attention == "masked":
            self.intra = self._encoder(group_mask(self.token_lengths, inter=False))  # cmfm1 (inter=False)
            self.inter = self._encoder(group_mask(self.token_lengths, inter=True))  # cmfm2 (inter=True)
            self.gate_val, self.gate_emo = Gate(d), Gate(d)
        else:
            self.encoder = self._encoder(None)  # cmfm (inter='global'), no gates
        widths = (d, *cfg.mlp_layers)  # a Linear stack shared by both tokens, no activation (as coded)
        self.mlp = nn.Sequential(*(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)))
        width = widths[-1]
        self.fc_val = nn.Linear(width, 1)  # fc_out1
        self.fc_emo = nn.Linear(width, cfg.n_emotions)  # fc_out2
        self._pseudo: Optional[dict[str, Any]] = None  # self-training stage only (set in on_stage_start)

    def _encoder(self, allowed: Optional[torch.Tensor]) -> CrossModalTransformer:
        """The inferred `cross_transformer.TransformerEncoder`: MulT's 1-layer encoder, masked."""
        cfg = self.cfg
        enc = CrossModalTransformer(cfg.d, cfg.heads, 1, cfg.attn_dropout, cfg.relu_dropout, cfg.res_dropout,
                                    cfg.wrapper_embed_dropout, causal=False, positions=cfg.wrapper_positions)
        for layer in enc.layers:
            layer.attn = GroupMaskedAttention(cfg.d, cfg.heads, cfg.attn_dropout, allowed)
        if not cfg.wrapper_embed_scale:
            enc.scale = 1.0
        if not cfg.wrapper_final_norm:
            enc.norm = nn.Identity()
        return enc

    # -- forward -----------------------------------------------------------------------------
    def tokens(self, text: torch.Tensor, audio: torch.Tensor, vision: torch.Tensor) -> torch.Tensor:
        """Raw (B, T, d_m) features -> Z (B, T_total, d) without the position table."""
        cfg = self.cfg
        drop = self.training or cfg.input_dropout_in_eval

        def conv(x: torch.Tensor, n: int, *convs: nn.Conv1d) -> torch.Tensor:
            h = dropout(fit_steps(x, n), cfg.input_dropout, drop).transpose(1, 2)
            for c in convs:
                h = c(h)
            return h.transpose(1, 2)

        len_t, len_a, len_v = cfg.seq_lens
        a = conv(audio, len_a, self.proj_a1, self.proj_a2) + self.token_type.weight[0]
        t = conv(text, len_t, self.proj_t) + self.token_type.weight[1]
        v = conv(vision, len_v, self.proj_v) + self.token_type.weight[2]
        b = t.shape[0]
        specials = [self.val_token.expand(b, -1, -1).to(t.dtype), self.cls_token.expand(b, -1, -1).to(t.dtype)]
        return torch.cat([*specials, a.to(t.dtype), t, v.to(t.dtype)], dim=1)

    def encode_with(self, encoder: CrossModalTransformer, x: torch.Tensor) -> torch.Tensor:
        """The network's `layer(x, x, x)`: the key/value branch (`wrapper_kv_stream`) or one stream."""
        return encoder(x, x if self.cfg.wrapper_kv_stream else None)

    def heads_of(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Z -> (sentiment (B, 1), emotion logits (B, n_emotions))."""
        cfg = self.cfg
        if cfg.attention == "masked":
            intra = inter = z + self.pos_embed
            for _ in range(cfg.sharing_num):
                intra = self.encode_with(self.intra, intra)
            for _ in range(cfg.sharing_num):
                inter = self.encode_with(self.inter, inter)
            f_val = self.gate_val(intra[:, 0], inter[:, 0])
            f_emo = self.gate_emo(intra[:, 1], inter[:, 1])
        else:  # 'global': the position table is not added (as coded)
            for _ in range(cfg.sharing_num):
                z = self.encode_with(self.encoder, z)
            f_val, f_emo = z[:, 0], z[:, 1]
        return self.fc_val(self.mlp(f_val)), self.fc_emo(self.mlp(f_emo))

    def predict(self, text: torch.Tensor, audio: torch.Tensor, vision: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads_of(self.tokens(text, audio, vision))

    def forward(self, batch) -> ModelOutput:
        pred, emo = self.predict(batch.text_feats, batch.audio, batch.vision)
        return ModelOutput(pred=pred, extras={"emotion_logits": emo})

    # -- losses ------------------------------------------------------------------------------
    def loss(self, output: ModelOutput, batch) -> dict[str, torch.Tensor]:
        v = batch.labels.reshape(-1).float()
        mse = F.mse_loss(output.pred.reshape(-1).float(), v)
        ce = F.cross_entropy(output.extras["emotion_logits"].float(), emotion_classes(v))
        return {"total": self.cfg.val_weight * mse + self.cfg.emo_weight * ce, "mse": mse, "ce": ce}

    def self_training_loss(self, output: ModelOutput, batch) -> dict[str, torch.Tensor]:
        """The labeled loss + pseudo_weight x emotion CE on the pseudo-labeled clips that
        `training_batch` attached as `batch.partners` (eq. 23)."""
        parts = self.loss(output, batch)
        if (pseudo := batch.partners) is None or not self.training:
            return parts
        _, emo = self.predict(pseudo.text_feats, pseudo.audio, pseudo.vision)
        ce_u = F.cross_entropy(emo.float(), pseudo.labels)
        return {**parts, "total": parts["total"] + self.cfg.pseudo_weight * ce_u, "ce_pseudo": ce_u}

    def training_batch(self, batch, state: Any):
        """In self-training, the next pseudo-labeled batch (a seeded permutation of the kept
        clips, redrawn when used up) rides along as `batch.partners`."""
        if (ps := self._pseudo) is None:
            return batch
        n = ps["per_batch"]
        if ps["cursor"] + n > len(ps["order"]):
            ps["order"], ps["cursor"] = torch.randperm(len(ps["order"]), generator=ps["gen"]), 0
        idx = ps["order"][ps["cursor"]: ps["cursor"] + n].to(ps["labels"].device)
        ps["cursor"] += n
        audio, vision = ps["audio"][idx], ps["vision"][idx]
        full = torch.full((n,), 0, dtype=torch.long, device=idx.device)
        pseudo = Batch(audio=audio, vision=vision, audio_lengths=full + audio.shape[1], vision_lengths=full + vision.shape[1],
                       labels=ps["labels"][idx], index=ps["index"][idx.cpu()], text_feats=ps["text"][idx],
                       text_lengths=full + ps["text"].shape[1])
        return replace(batch, partners=pseudo)

    # -- stages --------------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        if self.cfg.unlabeled_dir is None:
            return []  # the supervised row: one training run
        return [Stage("supervised"), Stage("self_training", loss=self.self_training_loss,
                                           data=StageData("unlabeled_clips", "unlabeled_dir"))]

    def on_stage_start(self, stage: Stage, state: Any) -> dict[str, Any]:
        if stage.name != "self_training":
            return {}
        return self.pseudo_label(state.stage_data, state.device, int(state.seed), len(state.data.train))

    @torch.no_grad()
    def pseudo_label(self, clips: dict[str, torch.Tensor], device: torch.device, seed: int,
                     n_labeled: int) -> dict[str, Any]:
        """Algorithm 1 steps 2-3: predict the unlabeled clips with the supervised model, keep the
        `pseudo_top_k` most confident per predicted emotion class (all with None)."""
        cfg = self.cfg
        was_training = self.training
        self.eval()
        lens = dict(zip(UNLABELED_KEYS, cfg.seq_lens, strict=True))  # stored fitted to seq_lens (fixed-size batches)
        fitted = {k: fit_steps(x, lens[k]).contiguous() for k, x in clips.items()}
        bs = cfg.eval_batch_size or cfg.batch_size
        probs = [F.softmax(self.predict(*(fitted[k][i:i + bs].to(device) for k in UNLABELED_KEYS))[1].float(), -1).cpu()
                 for i in range(0, len(fitted["text"]), bs)]  # UNLABELED_KEYS: predict's argument order
        self.train(was_training)
        conf, label = torch.cat(probs).max(-1)
        members = [torch.nonzero(label == c).flatten() for c in range(cfg.n_emotions)]
        keep = [m[conf[m].argsort(descending=True)][: cfg.pseudo_top_k] for m in members]  # top_k None: all
        idx = torch.cat(keep)
        if len(idx) == 0:
            raise ValueError("Semi-IIN's self-training kept no pseudo-labeled clip")
        per_batch = max(1, round(cfg.batch_size * len(idx) / (n_labeled + len(idx))))
        gen = torch.Generator().manual_seed(seed)
        self._pseudo = {
            **{k: x[idx].to(device) for k, x in fitted.items()}, "labels": label[idx].to(device), "index": idx,
            "per_batch": per_batch, "gen": gen, "order": torch.randperm(len(idx), generator=gen), "cursor": 0,
        }
        return {"unlabeled_clips": int(len(label)), "pseudo_labeled": int(len(idx)),
                "pseudo_per_class": [int(len(k)) for k in keep], "pseudo_per_batch": per_batch}

    # -- protocol --------------------------------------------------------------------------------
    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        # the conv front-ends (bias-free); the type embedding, tokens, encoders, gates and heads are shared
        return {"t": list(self.proj_t.parameters()), "a": [*self.proj_a1.parameters(), *self.proj_a2.parameters()],
                "v": list(self.proj_v.parameters())}

    def summary(self) -> dict[str, Any]:
        cfg = self.cfg
        out = {"attention": cfg.attention, "audio_frontend": cfg.audio_frontend, "seq_len": self.seq_len}
        if self._pseudo is not None:
            out["pseudo_labeled"] = int(len(self._pseudo["labels"]))
        return out


# -- presets --------------------------------------------------------------------------------------
# `official` (46cda75 tune_params, paper §4.3): Adam (torch's; no training code is released) lr 1e-4, wd 1e-4, batch 32, 30
# epochs (all run; selection: the harness default, lowest validation L1 loss; the released rule is unknown),
# d 128, 4 heads, sharing 2, dropouts 0.1/0.2/0.2, embed 0.2, input 0.5; loss 0.6 / 0.4.
# MMSA unaligned_50 (harness decision): MOSI t/a/v 50/375/500 steps, MOSEI 50/500/500; the widths
# 768 (text, the released --use_bert branch) and the audio/vision widths of the file.
# pseudo_top_k per the README: MOSI k = 40, MOSEI all (3,236 AMI clips).
_OFFICIAL_MOSI = SemiIINConfig(
    dims=(768, 5, 20), seq_lens=(50, 375, 500),
    optimizer="adam", lr=1e-4, weight_decay=1e-4, batch_size=32, max_epochs=30, early_stop_patience=None,
    pseudo_top_k=40,
)
_OFFICIAL_MOSEI = replace(_OFFICIAL_MOSI, dims=(768, 74, 35), seq_lens=(50, 500, 500), pseudo_top_k=None)
# synthetic `demo` (harness decision): the official network on the 50/50/50 synthetic steps
# (T = 152), d 32, 2 heads, lr 1e-3, 4 CPU epochs with patience 2.
_DEMO = replace(_OFFICIAL_MOSI, seq_lens=(50, 50, 50), d=32, heads=2, mlp_layers=(32, 16), lr=1e-3,
                max_epochs=4, early_stop_patience=2)

# CH-SIMS / CH-SIMS v2: the code and paper have no SIMS setting; harness decision: the MOSI preset
# with MMSA's unaligned steps and widths (unaligned_39.pkl 39/400/55, 33/709; ch-simsv2s.pkl
# 50/925/232, 25/177). Labels in [-1, 1] fill emotion bins 2-4 of the 7 (Supplementary Table 6).
_SIMS = replace(_OFFICIAL_MOSI, dims=(768, 33, 709), seq_lens=(39, 400, 55))
_SIMSV2 = replace(_OFFICIAL_MOSI, dims=(768, 25, 177), seq_lens=(50, 925, 232))
PRESETS = {("mosi", "official"): _OFFICIAL_MOSI,
           ("mosei", "official"): _OFFICIAL_MOSEI,
           ("sims", "official"): _SIMS,
           ("simsv2", "official"): _SIMSV2,
           ("synthetic", "demo"): _DEMO}


@register_model("semi_iin", config=SemiIINConfig, presets=PRESETS, default_preset="official", unsupported=UNSUPPORTED,
                display_name="Semi-IIN (supervised)", paper="Lin et al., AAAI 2025",
                reference="https://github.com/flow-ljh/Semi-IIN@55f1c4d",
                family="transformer fusion", order=130, row_labels={"unlabeled_dir": "Semi-IIN"})
def semi_iin(cfg: SemiIINConfig) -> SemiIIN:
    """Semi-IIN (Lin et al., AAAI 2025): intra/inter masked attention with gates; supervised row by default."""
    return SemiIIN(cfg)
