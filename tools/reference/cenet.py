"""Golden for CENET against thuiar/MMSA at a94e65d (--code: MMSA's `src` folder at that commit).

    python tools/reference/cenet.py --code /path/to/MMSA/src

MMSA's CENET (models/singleTask/CENET.py: its own copy of BERT with the CE module before encoder
layer 1), built as models/AMIO.py builds it (num_labels 1; the pos-tag, sentiment and polarity
tables on), on the tiny BERT config in MMSA's MOSI layout: unaligned, audio and vision longer than
the text and zero-padded (no masks), widths 5 / 20. CENET.py imports pytorch_transformers 1.x,
which is not installed here: its three names come from transformers 4.x (BertConfig,
PreTrainedModel, prune_linear_layer); CENET uses them only to build and initialise. Train-mode
loss: the trainer's nn.L1Loss()(logits, labels.view(-1, 1)) (trains/singleTask/CENET.py).
Intermediates: encoder layer 0's output, the two CE attentions, the CE output and the last hidden
states. The metadata also holds MMSA's parameter counts at bert-base size per dataset.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import torch
from _golden import TINY_BERT, grads, import_reference, padded, parse_args, perturb_, record_hooks, save_golden, token_batch
from torch import nn

COMMIT = "a94e65d07fa1ae0d44e552390074b29b0898edfd"
DIMS = (TINY_BERT["hidden_size"], 5, 20)  # MMSA MOSI audio/vision widths; text = the BERT width
WIDTH = 12
LENGTHS = {"t": [12, 7, 9, 4, 11, 6], "a": [14, 9, 12, 5, 11, 14], "v": [16, 12, 7, 3, 9, 10]}
HOOKS = {"layer_0": "bert.encoder.layer.0#0", "CE_v": "bert.encoder.CE.hv", "CE_a": "bert.encoder.CE.ha",
         "CE": "bert.encoder.CE", "encoder": "bert.encoder#0"}
CE_SCALE = 3.0  # CE's perturbed weights x 3: attention scores of order 1 (x 1: about 0.02, a uniform softmax)
NO_GRAD = ("bert.embeddings.", "bert.pooler.")  # embeddings under torch.no_grad(); the pooler's output unused


def pytorch_transformers_shim() -> str:
    """The pytorch_transformers 1.x names CENET.py imports, taken from transformers 4.x."""
    import transformers
    from transformers.pytorch_utils import prune_linear_layer

    package = types.ModuleType("pytorch_transformers")
    utils = types.ModuleType("pytorch_transformers.modeling_utils")
    package.BertConfig = transformers.BertConfig  # type: ignore[attr-defined]
    package.BERT_PRETRAINED_MODEL_ARCHIVE_MAP = {}  # type: ignore[attr-defined]
    utils.PreTrainedModel = transformers.PreTrainedModel  # type: ignore[attr-defined]
    utils.prune_linear_layer = prune_linear_layer  # type: ignore[attr-defined]
    package.modeling_utils = utils  # type: ignore[attr-defined]
    sys.modules.update({"pytorch_transformers": package, "pytorch_transformers.modeling_utils": utils})
    return ("pytorch_transformers (1.x, not installed) given transformers 4.x's BertConfig, PreTrainedModel and "
            "pytorch_utils.prune_linear_layer; BERT_PRETRAINED_MODEL_ARCHIVE_MAP = {} (only from_pretrained reads it)")


def build(model_module, config, dims) -> nn.Module:
    """AMIO's CENET without from_pretrained: the same constructor on `config` (num_labels 1)."""
    config.num_labels = 1
    return model_module.CENET(config, pos_tag_embedding=True, senti_embedding=True, polarity_embedding=True,
                              args=SimpleNamespace(feature_dims=dims))


def mmsa_parameters(model_module) -> dict[str, dict[str, int]]:
    """MMSA's CENET at bert-base-uncased shapes on each dataset's widths (config_regression.json
    datasetCommonParams; simsv2: ch-simsv2s.pkl's 25/177, the file msabench reads): parameters
    built and those the trainer's loss reaches."""
    from transformers import BertConfig

    config = json.loads((Path(model_module.__file__).parents[2] / "config" / "config_regression.json").read_text())
    widths = {d: tuple(config["datasetCommonParams"][d]["unaligned"]["feature_dims"]) for d in ("mosi", "mosei", "sims")}
    counts = {}
    for dataset, dims in {**widths, "simsv2": (768, 25, 177)}.items():
        with torch.device("meta"):
            model = build(model_module, BertConfig(), dims)
        counts[dataset] = {"total": sum(p.numel() for p in model.parameters()),
                           "with_grad": sum(p.numel() for n, p in model.named_parameters() if not n.startswith(NO_GRAD))}
    return counts


def main() -> None:
    from transformers import BertConfig

    args = parse_args(__doc__.splitlines()[0])
    shim = pytorch_transformers_shim()
    model_module = import_reference(args.code, "MMSA.models.singleTask.CENET", ("MMSA", "MMSA.models", "MMSA.models.singleTask"))
    counts = mmsa_parameters(model_module)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = build(model_module, BertConfig(**TINY_BERT), DIMS)
    perturb_(model, gen)
    with torch.no_grad():  # at BERT's init scale CE's attention is near-uniform: scores and Wq/Wk barely matter
        for p in model.bert.encoder.CE.parameters():
            p.mul_(CE_SCALE)
    tokens = token_batch(gen, LENGTHS["t"], WIDTH, TINY_BERT["vocab_size"])
    batch = {
        **tokens, "audio": padded(gen, LENGTHS["a"], DIMS[1]), "vision": padded(gen, LENGTHS["v"], DIMS[2]),
        "audio_lengths": torch.tensor(LENGTHS["a"]), "vision_lengths": torch.tensor(LENGTHS["v"]),
        "labels": torch.randn(len(LENGTHS["t"]), generator=gen).clamp(-3, 3), "index": torch.arange(len(LENGTHS["t"])),
    }
    text = torch.stack([tokens["text_ids"], tokens["text_mask"], tokens["text_segment"]], dim=1).float()  # text_bert
    hooked = record_hooks(model, HOOKS)

    model.eval()
    with torch.no_grad():
        out = model(text, batch["audio"], batch["vision"])  # AMIO: Model(text, audio, vision)
    evals = {"M": out[0], **{k: v.clone() for k, v in hooked.items()}}
    model.train()  # the tiny config's dropout is 0 (BERT and the classification head read it)
    logits = model(text, batch["audio"], batch["vision"])[0]
    loss = nn.L1Loss()(logits, batch["labels"].view(-1, 1))  # trains/singleTask/CENET.py criterion
    loss.backward()
    save_golden(args, "cenet", {
        "weights": dict(model.state_dict()), "batch": batch, "eval": evals, "loss": {"L1": loss}, "grad": grads(model),
    }, {
        "model": "cenet", "reference": f"thuiar/MMSA@{COMMIT} src/MMSA/models/singleTask/CENET.py",
        "repository": "https://github.com/thuiar/MMSA", "version": COMMIT,
        "loss_source": "trains/singleTask/CENET.py: nn.L1Loss()(logits, labels.view(-1, 1))",
        "patches": [
            "package __init__ files of MMSA, MMSA.models, MMSA.models.singleTask not run (they import the whole framework)",
            shim,
            "AMIO's CENET.from_pretrained(pretrained, config=BertConfig(num_labels=1), tag tables on) replaced by "
            "CENET(tiny BertConfig with num_labels 1, the same tables on, args.feature_dims) (random weights, then perturbed)",
            f"every CE parameter multiplied by {CE_SCALE} after the perturbation, so that its attention scores are of "
            "order 1 (at BERT's init scale they are about 0.02 and the softmax is uniform)",
        ],
        "mmsa_parameters": counts,
        "bert_config": TINY_BERT,
        "msabench": {"name": "cenet", "dataset": "mosi", "preset": "mmsa",
                     "overrides": {"dims": DIMS, "text_attention": "eager"}},
    }, model=model)


if __name__ == "__main__":
    main()
