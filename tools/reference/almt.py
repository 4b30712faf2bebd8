"""Golden for ALMT against thuiar/MMSA at a94e65d (--code: MMSA's `src` folder at that commit).

    python tools/reference/almt.py --code /path/to/MMSA/src

MMSA's ALMT (models/singleTask/ALMT.py; the layers are Haoyu-ha/ALMT's almt_layer.py line for
line) in its MOSI layout (unaligned, 8 learned tokens, AHL depth 3) at small widths, the tiny
BERT through MMSA's own BertTextEncoder.from_pretrained on a temporary checkpoint folder. The
position tables are longer than the batch (the reference slices them). Train-mode loss: the
trainer's nn.MSELoss()(outputs, labels.view(-1, 1)) (trains/singleTask/ALMT.py). Intermediates:
the three 8-token embeddings, every text-encoder layer, every AHL layer and the fused token.
MMSA 2.2.1 on PyPI does not ship ALMT, hence the git checkout.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
from _golden import (
    TINY_BERT,
    grads,
    import_reference,
    padded,
    parse_args,
    perturb_,
    record_hooks,
    round_to_half_,
    save_golden,
    tiny_bert_dir,
    token_batch,
)
from torch import nn

COMMIT = "a94e65d07fa1ae0d44e552390074b29b0898edfd"
DIMS = (TINY_BERT["hidden_size"], 5, 20)  # MMSA MOSI audio/vision widths; text = the BERT width
WIDTH = 12
LENGTHS = {"t": [12, 7, 9, 4, 11, 6], "a": [14, 9, 12, 5, 11, 14], "v": [12, 12, 7, 3, 9, 10]}
FEATURE_LENGTH = (14, 16, 13)  # position tables longer than the padded batch (12 / 14 / 12 steps)
SMALL = {  # MMSA config_regression.json almt mosi layout at small widths
    "dst_feature_dims": 16, "dst_feature_hidden_dims": 24, "dst_embedding_length": 8,
    "embedding_depth": [1, 2, 1], "embedding_heads": [2, 2, 2], "l_encoder_heads": 2, "AHL_depth": 3,
    "h_hyper_layer_heads": 2, "fusion_hidden_d": 20, "fusion_heads": 2, "fusion_layer_depth": 2,
}
HOOKS = {
    **{f"h_{m}": f"embedding_{m}" for m in "lav"},
    "fusion": "fusion_layer", **{f"l_encoder_{i}": f"l_encoder#{i}" for i in range(3)},
    **{f"ahl_{i}": f"h_hyper_layer.layers.{i}.0" for i in range(3)},
}


def reference_args(bert_dir: str) -> SimpleNamespace:
    return SimpleNamespace(use_bert=True, use_finetune=True, transformers="bert", pretrained=bert_dir,
                           feature_dims=DIMS, feature_length=FEATURE_LENGTH, **SMALL)


def build(model_module, bert_dir: str) -> nn.Module:
    """MMSA's ALMT; its regression head is Linear(128, 1) whatever the width, so at width 16 it is
    rebuilt as Linear(16, 1) (the only change)."""
    model = model_module.ALMT(reference_args(bert_dir))
    model.regression_head = nn.Linear(SMALL["dst_feature_dims"], 1)
    return model


def mmsa_param_counts(model_module) -> dict[str, int]:
    """Parameters of MMSA's ALMT outside BERT (use_bert false builds none) in its MOSI / MOSEI / SIMS rows."""
    config = json.loads((Path(model_module.__file__).parents[2] / "config" / "config_regression.json").read_text())
    counts = {}
    for dataset in ("mosi", "mosei", "sims"):
        row = config["almt"]["datasetParams"][dataset]
        keys = ("feature_dims", "feature_length", *SMALL)
        model = model_module.ALMT(SimpleNamespace(use_bert=False, **{k: row[k] for k in keys}))
        counts[dataset] = sum(p.numel() for p in model.parameters())
    return counts


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    model_module = import_reference(args.code, "MMSA.models.singleTask.ALMT",
                                    ("MMSA", "MMSA.models", "MMSA.models.singleTask"))
    counts = mmsa_param_counts(model_module)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = build(model_module, str(tiny_bert_dir()))
    perturb_(model, gen)
    round_to_half_(model)
    tokens = token_batch(gen, LENGTHS["t"], WIDTH, TINY_BERT["vocab_size"])
    batch = {
        **tokens, "audio": padded(gen, LENGTHS["a"], DIMS[1]), "vision": padded(gen, LENGTHS["v"], DIMS[2]),
        "audio_lengths": torch.tensor(LENGTHS["a"]), "vision_lengths": torch.tensor(LENGTHS["v"]),
        "labels": torch.randn(len(LENGTHS["t"]), generator=gen).clamp(-3, 3), "index": torch.arange(6),
    }
    text = torch.stack([tokens["text_ids"], tokens["text_mask"], tokens["text_segment"]], dim=1).float()
    hooked = record_hooks(model, HOOKS)

    model.eval()
    with torch.no_grad():
        out = model(text, batch["audio"], batch["vision"])
    evals = {"M": out, **hooked}
    model.train()
    out = model(text, batch["audio"], batch["vision"])
    loss = nn.MSELoss()(out, batch["labels"].view(-1, 1))  # trains/singleTask/ALMT.py criterion (regression)
    loss.backward()
    save_golden(args, "almt", {
        "weights": dict(model.state_dict()), "batch": batch, "eval": evals, "loss": {"MSE": loss}, "grad": grads(model),
    }, {
        "model": "almt", "reference": f"thuiar/MMSA@{COMMIT} src/MMSA/models/singleTask/ALMT.py",
        "repository": "https://github.com/thuiar/MMSA", "version": COMMIT,
        "loss_source": "trains/singleTask/ALMT.py: nn.MSELoss()(outputs, labels.view(-1, 1))",
        "patches": [
            "package __init__ files of MMSA, MMSA.models, MMSA.models.singleTask not run (they import the whole framework)",
            "BertTextEncoder.from_pretrained reads a temporary tiny BERT folder (random init, then perturbed)",
            "regression_head rebuilt as Linear(16, 1): MMSA hard-codes Linear(128, 1) (its dst_feature_dims)",
        ],
        "mmsa_params_without_bert": counts,
        "bert_config": TINY_BERT,
        "msabench": {"name": "almt", "dataset": "mosi", "preset": "mmsa", "overrides": {
            "dims": DIMS, "feature_length": FEATURE_LENGTH, "dim_head": 64,
            **{k.lower() if k == "AHL_depth" else k: tuple(v) if isinstance(v, list) else v for k, v in SMALL.items()}}},
    }, compact=True, model=model)


if __name__ == "__main__":
    main()
