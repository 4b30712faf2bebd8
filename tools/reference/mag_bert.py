"""Golden for MAG-BERT against MMSA 2.2.1 (--code: the unpacked `mmsa==2.2.1` wheel).

    python tools/reference/mag_bert.py --code /path/to/unpacked/mmsa

MMSA's BERT_MAG (MAG at injection index 0, pooled [CLS] -> Dropout -> Linear) in its MOSI
configuration (beta_shift 1, aligned data) on the tiny BERT; dropout 0 for the train-mode
pass. Intermediates: the MAG output (fused embeddings), the encoder's last hidden states and
the pooled [CLS].
"""

from __future__ import annotations

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
    save_golden,
    tiny_bert_config,
    token_batch,
)
from torch import nn

DIMS = (TINY_BERT["hidden_size"], 5, 20)  # MMSA MOSI audio/vision widths; text = the BERT width
WIDTH = 12  # token columns (MMSA pads to 50); audio/vision are word-aligned to them
LENGTHS = [12, 7, 9, 4, 11, 6]  # true token counts incl. [CLS]/[SEP]
HOOKS = {"MAG": "model.bert.MAG", "encoder": "model.bert.encoder", "pooler": "model.bert.pooler"}


def build(mag_module) -> nn.Module:
    """BERT_MAG without its `from_pretrained('bert-base-uncased')`: the same classes on the tiny config."""
    args = SimpleNamespace(feature_dims=DIMS, beta_shift=1.0, dropout_prob=0.0, device=torch.device("cpu"))
    model = mag_module.BERT_MAG.__new__(mag_module.BERT_MAG)
    nn.Module.__init__(model)
    config = tiny_bert_config()
    config.num_labels = 1
    model.model = mag_module.MAG_BertForSequenceClassification(config, args=args)
    return model


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    mag_module = import_reference(args.code, "MMSA.models.singleTask.BERT_MAG",
                                  stub_packages=("MMSA", "MMSA.models", "MMSA.models.singleTask"))
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = build(mag_module)
    perturb_(model, gen)
    tokens = token_batch(gen, LENGTHS, WIDTH, TINY_BERT["vocab_size"])
    aligned = [WIDTH] * len(LENGTHS)  # aligned_50: audio/vision carry one row per token column
    batch = {
        **tokens, "audio": padded(gen, LENGTHS, DIMS[1]), "vision": padded(gen, LENGTHS, DIMS[2]),
        "audio_lengths": torch.tensor(aligned), "vision_lengths": torch.tensor(aligned),
        "labels": torch.randn(len(LENGTHS), generator=gen).clamp(-3, 3), "index": torch.arange(len(LENGTHS)),
    }
    text = torch.stack([tokens["text_ids"], tokens["text_mask"], tokens["text_segment"]], dim=1)  # MMSA text_bert
    hooked = record_hooks(model, HOOKS)

    model.eval()
    with torch.no_grad():
        out = model(text, batch["audio"], batch["vision"])
    evals = {"M": out["M"], **hooked}
    model.train()
    out = model(text, batch["audio"], batch["vision"])
    loss = nn.L1Loss()(out["M"], batch["labels"].view(-1, 1))  # trains/singleTask/BERT_MAG.py criterion
    loss.backward()
    save_golden(args, "mag_bert", {
        "weights": dict(model.state_dict()), "batch": batch, "eval": evals, "loss": {"L1": loss}, "grad": grads(model),
    }, {
        "model": "mag_bert", "reference": "MMSA 2.2.1 (PyPI wheel) MMSA/models/singleTask/BERT_MAG.py",
        "repository": "https://github.com/thuiar/MMSA", "version": "mmsa==2.2.1",
        "loss_source": "trains/singleTask/BERT_MAG.py: nn.L1Loss()(outputs, labels.view(-1, 1))",
        "patches": [
            "package __init__ files of MMSA, MMSA.models, MMSA.models.singleTask not run (they import the whole framework)",
            "BERT_MAG.__init__ not run: its from_pretrained('bert-base-uncased') is replaced by "
            "MAG_BertForSequenceClassification(tiny config, args) (same classes, random weights)",
        ],
        "bert_config": TINY_BERT,
        "msabench": {"name": "mag_bert", "dataset": "mosi", "preset": "mmsa", "overrides": {
            "dims": DIMS, "dropout_prob": 0.0, "head_dropout": 0.0}},
    }, model=model)


if __name__ == "__main__":
    main()
