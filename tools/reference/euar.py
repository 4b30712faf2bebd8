"""Golden for EUAR against the released ZixianGao/EUAR@233e274 (--code: a checkout of it).

    git --git-dir=<bare clone> archive 233e274 | tar -x -C euar
    python tools/reference/euar.py --code euar

`EUAR.EUAR` in its own (hard-coded) configuration: d 72, 4 heads, 3-layer MulT encoders, four
enhanced experts per modality, top-3 batch-normalised gate; MOSI widths (audio 74, vision 47
from global_configs.py) on the tiny BERT. Eval: `model.test(...)`; train: `model(...)`, which
computes the loss and calls backward itself (its optimizer steps are disabled, so the
gradients are those of that loss). The gate normalises over the batch, so the golden's batch
must be replayed as one batch.
"""

from __future__ import annotations

import os
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
    zero_dropout_,
)
from torch import nn

DIMS = (TINY_BERT["hidden_size"], 74, 47)  # TEXT_DIM patched to the BERT width; global_configs MOSI 74/47
WIDTH = 12
LENGTHS = [12, 7, 9, 4, 11, 6]
HOOKS = {"text": "bert", "audio": "transa", "vision": "transv",
         **{f"moe_{m}": f"fusion.{ref}_MoE#0" for m, ref in (("t", "text"), ("a", "audio"), ("v", "img"))},
         "fusion_moe_loss": "fusion#1"}


def no_verbose_plateau() -> str:
    """torch removed ReduceLROnPlateau's `verbose` argument, which EUAR.__init__ passes."""
    original = torch.optim.lr_scheduler.ReduceLROnPlateau.__init__

    def init(self, *args, verbose=None, **kwargs):
        original(self, *args, **kwargs)

    torch.optim.lr_scheduler.ReduceLROnPlateau.__init__ = init
    return "ReduceLROnPlateau(verbose=True): the `verbose` argument (removed from torch) is dropped"


def build(args, bert_dir: Path) -> tuple[nn.Module, list[str]]:
    patches = [no_verbose_plateau()]
    configs = import_reference(args.code, "global_configs")
    configs.TEXT_DIM, configs.DEVICE = DIMS[0], torch.device("cpu")
    patches.append(f"global_configs.TEXT_DIM = {DIMS[0]} (the tiny BERT width), DEVICE = cpu")
    euar_module = import_reference(args.code, "EUAR")
    cwd = os.getcwd()
    os.chdir(bert_dir.parent)  # EUAR_BertModel loads './prebert'
    try:
        model = euar_module.EUAR(None, SimpleNamespace(learning_rate1=1e-5, learning_rate2=2e-5), num_labels=1)
    finally:
        os.chdir(cwd)
    model.proj_l = nn.Conv1d(DIMS[0], model.d_l, kernel_size=3, stride=1, padding=1, bias=False)
    patches.append("the dead EUAR.proj_l, hard-coded Conv1d(768, 72, 3) and never called, rebuilt at the BERT width")
    for opt in (model.optimizer_l, model.optimizer_all):
        opt.step = lambda *a, **k: None
    patches.append("optimizer_l.step / optimizer_all.step inside forward() disabled (gradients are kept, weights fixed)")
    patches.append(f"dropout set to 0 after building: every nn.Dropout module, and the floats {zero_dropout_(model)}")
    return model, patches


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    bert_dir = tiny_bert_dir()
    prebert = Path(str(bert_dir) + "_root") / "prebert"
    prebert.parent.mkdir()
    bert_dir.rename(prebert)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model, patches = build(args, prebert)
    perturb_(model, gen)
    round_to_half_(model)  # compact golden: d 72 and 3-layer encoders are hard-coded
    tokens = token_batch(gen, LENGTHS, WIDTH, TINY_BERT["vocab_size"])
    aligned = torch.tensor([WIDTH] * len(LENGTHS))
    batch = {
        **tokens, "audio": padded(gen, LENGTHS, DIMS[1]), "vision": padded(gen, LENGTHS, DIMS[2]),
        "audio_lengths": aligned, "vision_lengths": aligned,
        "labels": torch.randn(len(LENGTHS), generator=gen).clamp(-3, 3), "index": torch.arange(len(LENGTHS)),
    }
    last = {k: (lambda t: t[-1]) for k in ("audio", "vision")}  # the code reads outputa[-1]
    hooked = record_hooks(model, HOOKS, last)
    mask = tokens["text_mask"]
    model.eval()
    with torch.no_grad():
        pred = model.test(tokens["text_ids"], batch["vision"], batch["audio"], attention_mask=mask)
    evals = {"pred": pred, **{k: v for k, v in hooked.items() if k != "fusion_moe_loss"}}
    model.train()
    pred, _, _ = model(tokens["text_ids"], batch["vision"], batch["audio"], batch["labels"], attention_mask=mask)
    l1 = nn.L1Loss()(pred.view(-1), batch["labels"].view(-1))  # EUAR.forward loss_m
    moe = hooked["fusion_moe_loss"]  # fusion.forward: 1e-5 * the three MoE losses
    save_golden(args, "euar", {
        "weights": dict(model.state_dict()), "batch": batch, "eval": evals,
        "loss": {"L1": l1, "moe": moe, "total": moe + 10 * l1}, "grad": grads(model),
    }, {
        "model": "euar", "reference": "ZixianGao/EUAR@233e274 EUAR.py, MoE.py, modules/",
        "repository": "https://github.com/ZixianGao/EUAR", "commit": "233e2747b47e7ec9d1ec8343e193da0e20e31293",
        "patches": patches + ["BERT loaded from a temporary tiny checkpoint folder at ./prebert"],
        "bert_config": TINY_BERT,
        "msabench": {"name": "euar", "dataset": "mosi", "preset": "official", "overrides": {
            "dims": DIMS, "attn_dropout": 0.0, "relu_dropout": 0.0, "res_dropout": 0.0, "embed_dropout": 0.0}},
    }, compact=True, model=model)


if __name__ == "__main__":
    main()
