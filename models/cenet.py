"""CENET: Cross-modal Enhancement Network (Wang et al., IEEE Transactions on Multimedia 2022).

Sources: thuiar/MMSA at commit a94e65d07fa1ae0d44e552390074b29b0898edfd
`models/singleTask/CENET.py` (a pytorch_transformers-era copy of BERT with the CE module inside
its encoder), `models/AMIO.py` (the build: `CENET.from_pretrained(pretrained, num_labels=1,
pos_tag_embedding=True, senti_embedding=True, polarity_embedding=True)`),
`trains/singleTask/CENET.py` (loss, optimiser groups, clipping) and `config/config_regression.json`
("mmsa" presets). MMSA 2.2.1 on PyPI does not ship CENET.

Forward (no audio/vision padding masks, as in the reference: the padded steps of the files'
fixed lengths take part in the CE attention):
1. BERT embeddings of the token ids, computed without gradient (the reference runs them under
   `torch.no_grad()`): the word, position and token-type tables and their LayerNorm never train;
2. BERT layer 0;
3. CE (injection index 1): audio and vision each Linear(d_m -> H) -> ReLU -> Linear(H -> H); one
   attention head per modality, queries from the text states, keys/values from the transformed
   sequence, softmax(Q K^T x 8) (a factor 8, no 1/sqrt(H)); h <- h + Linear(2H -> H)([att_v; att_a]);
4. BERT layers 1..N-1 with the usual text attention mask;
5. the last layer's [CLS] -> Dropout -> Linear(H, H) -> tanh -> Dropout -> Linear(H -> n_out), dropout
   the BERT config's hidden_dropout_prob (BertClassificationHead); the BERT pooler is built, unused.
Dead weights kept for the parameter count: the sentiment, POS-tag and polarity embedding tables
(3, 5, 6 rows) that AMIO switches on and the forward never reads (it passes no tag ids).
Loss: L1 (trainer `nn.L1Loss()`); torch Adam in three groups (decay, CE, no decay), clip-norm 2.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

import torch
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel
from models.layers.text_encoder import ATTENTIONS, build_text_encoder, split_no_decay
from models.registry import choice, register_model

TAG_TABLES = {"senti": 3, "pos_tag": 5, "polarity": 6}  # CENET.py BertEmbeddings: rows of each unused table


@dataclass(kw_only=True)
class CENETConfig(ModelConfig):
    text_input: str = "ids"  # MMSA `text_bert` (use_bert, use_finetune true)
    setting: str = "unaligned"  # need_data_aligned false: unaligned_50
    text_encoder: str = "bert-base-uncased"  # local dir | "bert-base" | "tiny" | cached hub name
    text_vocab_size: Optional[int] = None  # vocabulary of a named random-init config (tiny)
    text_attention: str = "sdpa"  # BERT attention kernel: sdpa (harness) | eager (the reference's op order)
    injection_index: int = 1  # BertEncoder.injection_index: CE runs before encoder layer 1
    attention_scale: float = 8.0  # SelfAttention: softmax(weight_score * 8)
    embeddings_grad: bool = False  # BertModel.forward: embeddings under torch.no_grad(); True trains them
    tag_tables: bool = True  # AMIO: senti/pos_tag/polarity tables built, never read; False leaves them out


class CrossAttention(nn.Module):
    """CENET.py `SelfAttention` with its one head: text queries, keys and values from another sequence."""

    def __init__(self, dim: int, scale: float):
        super().__init__()
        self.Wq, self.Wk, self.Wv = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.scale = scale

    def forward(self, text: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        scores = self.Wq(text) @ self.Wk(other).transpose(-1, -2)
        return torch.softmax(scores * self.scale, dim=-1) @ self.Wv(other)


def transform(dim_in: int, hidden: int) -> nn.Sequential:
    """CE's visual_transform / acoustic_transform: Linear -> ReLU -> Linear."""
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden))


class CE(nn.Module):
    """The cross-modal enhancement module (CENET.py `CE`; the reference's attribute names)."""

    def __init__(self, hidden: int, audio_dim: int, vision_dim: int, scale: float):
        super().__init__()
        self.visual_transform = transform(vision_dim, hidden)
        self.acoustic_transform = transform(audio_dim, hidden)
        self.hv, self.ha = CrossAttention(hidden, scale), CrossAttention(hidden, scale)
        self.cat_connect = nn.Linear(2 * hidden, hidden)

    def forward(self, text: torch.Tensor, audio: torch.Tensor, vision: torch.Tensor) -> torch.Tensor:
        v = self.hv(text, self.visual_transform(vision))
        a = self.ha(text, self.acoustic_transform(audio))
        return self.cat_connect(torch.cat((v, a), dim=-1)) + text


class ClassificationHead(nn.Module):
    """CENET.py `BertClassificationHead` on the [CLS] state."""

    def __init__(self, hidden: int, n_out: int, dropout: float):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden, n_out)

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(cls)))))


class CENET(MSAModel):
    cfg: CENETConfig
    # the embeddings run without gradient (as the reference); the tag tables are never read
    no_grad_params = (*MSAModel.no_grad_params, "text.bert.embeddings.")

    def __init__(self, cfg: CENETConfig):
        super().__init__(cfg)
        if cfg.text_attention not in ATTENTIONS:
            raise ValueError(f"config key 'text_attention'='{cfg.text_attention}' is not valid (expected one of {ATTENTIONS})")
        self.text = build_text_encoder(cfg.text_encoder, cfg.text_vocab_size, attention=cfg.text_attention)
        layers = len(self.text.bert.encoder.layer)
        if not 0 <= cfg.injection_index < layers:
            raise ValueError(f"config key 'injection_index'={cfg.injection_index} is outside 0..{layers - 1} "
                             f"(text encoder '{cfg.text_encoder}' has {layers} layers)")
        hidden, bert_config = self.text.hidden_size, self.text.bert.config
        self.ce = self.text.init_like_bert(CE(hidden, cfg.dims[1], cfg.dims[2], cfg.attention_scale))
        self.classifier = self.text.init_like_bert(ClassificationHead(hidden, cfg.n_out, bert_config.hidden_dropout_prob))
        if cfg.tag_tables:  # N(0, initializer_range) as BertPreTrainedModel._init_weights
            tables = {k: nn.Embedding(n, hidden) for k, n in TAG_TABLES.items()}
            for table in tables.values():
                nn.init.normal_(table.weight, std=bert_config.initializer_range)
            self.unused_tag_embeddings = nn.ModuleDict(tables)

    def forward(self, batch) -> ModelOutput:
        seq = self.text(batch.text_ids, batch.text_mask, batch.text_segment,
                        fuse=lambda h: self.ce(h, batch.audio, batch.vision), fuse_at=self.cfg.injection_index,
                        embeddings_grad=self.cfg.embeddings_grad)
        cls = seq[:, 0]
        return ModelOutput(pred=self.classifier(cls), features={"f": cls})

    def param_groups(self) -> list[dict[str, Any]]:
        """trains/singleTask/CENET.py: decay (not bias / LayerNorm.weight, not CE), CE (all of it,
        with decay), no decay (the rest); one lr."""
        lr, wd = self.cfg.lr, self.cfg.weight_decay
        ce = list(self.ce.parameters())
        in_ce = {id(p) for p in ce}
        decay, no_decay = ([p for p in group if id(p) not in in_ce] for group in split_no_decay(self))
        return [{"name": "decay", "params": decay, "lr": lr, "weight_decay": wd},
                {"name": "ce", "params": ce, "lr": lr, "weight_decay": wd},
                {"name": "no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0}]

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        # CE's per-modality halves; its cat_connect and the head are shared (in no branch)
        return {
            "t": list(self.text.parameters()),
            "a": [*self.ce.acoustic_transform.parameters(), *self.ce.ha.parameters()],
            "v": [*self.ce.visual_transform.parameters(), *self.ce.hv.parameters()],
        }


# -- presets ---------------------------------------------------
# trains/singleTask/CENET.py: torch Adam(eps=adam_epsilon), L2 weight decay except on bias and
# LayerNorm weights outside CE, clip_grad_norm_(2) (the trainer sets max_grad_norm = 2), L1 loss,
# no epoch cap (harness: max_epochs 200), early stop on the validation loss (KeyEval "Loss",
# rounded to 4 decimals) after `early_stop` epochs without improvement.
_CFG = "MMSA a94e65d config_regression.json cenet"
_MMSA_MOSI = CENETConfig(  # {_CFG} mosi (+ commonParams)
    dims=(768, 5, 20),  # datasetCommonParams mosi feature_dims (text: bert-base-uncased, `pretrained`)
    optimizer="adam", lr=1e-5, weight_decay=1e-4, adam_epsilon=3e-8,  # learning_rate, weight_decay, adam_epsilon
    batch_size=64, clip_grad_norm=2.0, early_stop_patience=8,  # batch_size; max_grad_norm; commonParams early_stop
)
_MMSA_MOSEI = replace(_MMSA_MOSI, dims=(768, 74, 35), adam_epsilon=1e-8)  # cenet mosei (lr 1e-5, wd 1e-4, batch 64)
_MMSA_SIMS = replace(  # cenet sims: pretrained bert-base-chinese (--text-encoder PATH)
    _MMSA_MOSI, dims=(768, 33, 709), text_encoder="bert-base-chinese", text_vocab_size=21128,
    lr=2e-6, weight_decay=0.0, adam_epsilon=2e-8, batch_size=32,
)
# cenet simsv2: lr 3e-5, wd 0, eps 3e-8, batch 64. Widths: ch-simsv2s.pkl's 25/177 (the tree's
# datasetCommonParams lists CH-SIMS' 33/709 for its own simsv2 file, which msabench does not read)
_MMSA_SIMSV2 = replace(_MMSA_SIMS, dims=(768, 25, 177), lr=3e-5, adam_epsilon=3e-8, batch_size=64)
# synthetic `demo` (harness decision): tiny random-init BERT, lr 5e-4 as it learns from scratch,
# batch 32, 4 CPU epochs
_DEMO = replace(_MMSA_MOSI, text_encoder="tiny", text_vocab_size=2048, lr=5e-4, batch_size=32,
                max_epochs=4, early_stop_patience=2)
PRESETS = {("mosi", "mmsa"): _MMSA_MOSI, ("mosei", "mmsa"): _MMSA_MOSEI, ("sims", "mmsa"): _MMSA_SIMS,
           ("simsv2", "mmsa"): _MMSA_SIMSV2, ("synthetic", "demo"): _DEMO}
UNSUPPORTED = {"iemocap": "MMSA configures CENET for regression only (config_regression.json; its trainer's "
                          "L1 loss on one output): no IEMOCAP setting"}

# `bench tune` search space: MMSA a94e65d config/config_tune.json `cenet` debugParams (MMSA name in
# brackets); max_grad_norm [2] is a single value, so it stays at the preset's
_TUNE = "MMSA a94e65d config_tune.json cenet"
SEARCH_SPACE = {
    "lr": choice(1e-6, 2e-6, 5e-6, 1e-5, 3e-5, 5e-5, source=f"{_TUNE} [learning_rate]"),
    "weight_decay": choice(0.0, 1e-4, source=_TUNE),
    "adam_epsilon": choice(1e-8, 2e-8, 3e-8, source=_TUNE),
    "batch_size": choice(32, 64, 128, source=_TUNE),
}


@register_model("cenet", config=CENETConfig, presets=PRESETS, default_preset="mmsa", unsupported=UNSUPPORTED,
                search_space=SEARCH_SPACE,
                display_name="CENET", paper="Wang et al., IEEE TMM 2022",
                reference="https://github.com/thuiar/MMSA; thuiar/MMSA@a94e65d07fa1ae0d44e552390074b29b0898edfd",
                family="BERT + fusion", order=64)
def cenet(cfg: CENETConfig) -> CENET:
    """CENET (Wang et al., IEEE TMM 2022): audio/vision cross-attention added to BERT's states after layer 0."""
    return CENET(cfg)
