"""Golden for MulT against MMSA 2.2.1 (`pip download --no-deps mmsa==2.2.1`, wheel unpacked;
--code is the folder holding `MMSA/`).

    python tools/reference/mult.py --code /path/to/unpacked/mmsa

MMSA's MULT in its MOSI configuration (text features, no BERT, causal mask, kernels 5/5/5),
at tiny widths, dropout 0 everywhere (eval outputs do not depend on it; train-mode losses
and gradients are compared with dropout 0). Intermediates: the six cross-modal transformer
outputs (hooked, stored batch-first) and MMSA's Feature_t/a/v/f.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from _golden import (
    grads,
    import_reference,
    padded,
    parse_args,
    perturb_,
    record_hooks,
    save_golden,
)

WIDTHS = {"dims": (32, 5, 20), "d": 12, "heads": 3, "layers": 2, "conv_kernels": (5, 5, 5)}  # MMSA mosi, narrowed
LENGTHS = {"t": [10, 7, 9, 4, 10, 6], "a": [14, 9, 12, 5, 11, 14], "v": [12, 12, 7, 3, 9, 10]}
CROSS = ("trans_l_with_a", "trans_l_with_v", "trans_a_with_l", "trans_a_with_v", "trans_v_with_l", "trans_v_with_a")


def reference_args() -> SimpleNamespace:
    return SimpleNamespace(
        use_bert=False, use_finetune=False, transformers="bert", pretrained="",
        dst_feature_dim_nheads=(WIDTHS["d"], WIDTHS["heads"]), feature_dims=WIDTHS["dims"],
        nlevels=WIDTHS["layers"], attn_mask=True, train_mode="regression", num_classes=1,
        conv1d_kernel_size_l=5, conv1d_kernel_size_a=5, conv1d_kernel_size_v=5,
        attn_dropout=0.0, attn_dropout_a=0.0, attn_dropout_v=0.0, relu_dropout=0.0, embed_dropout=0.0,
        res_dropout=0.0, output_dropout=0.0, text_dropout=0.0,
    )


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    mult_module = import_reference(args.code, "MMSA.models.singleTask.MULT",
                                   stub_packages=("MMSA", "MMSA.models", "MMSA.models.singleTask"))
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = mult_module.MULT(reference_args())
    perturb_(model, gen)
    batch = {
        "text_feats": padded(gen, LENGTHS["t"], WIDTHS["dims"][0]),
        "audio": padded(gen, LENGTHS["a"], WIDTHS["dims"][1]),
        "vision": padded(gen, LENGTHS["v"], WIDTHS["dims"][2]),
        **{f"{k}_lengths": torch.tensor(LENGTHS[m]) for k, m in (("text", "t"), ("audio", "a"), ("vision", "v"))},
        "labels": torch.randn(6, generator=gen).clamp(-3, 3),
        "index": torch.arange(6),
    }
    cross = record_hooks(model, {n: n for n in CROSS}, {n: lambda t: t.transpose(0, 1) for n in CROSS})  # batch-first

    def run() -> dict[str, torch.Tensor]:
        return model(batch["text_feats"], batch["audio"], batch["vision"])

    model.eval()
    with torch.no_grad():
        out = run()
    evals = {**{k: out[k] for k in ("M", "Feature_t", "Feature_a", "Feature_v", "Feature_f")}, **cross}
    model.train()
    out = run()
    loss = torch.nn.L1Loss()(out["M"], batch["labels"].view(-1, 1))  # trains/singleTask/MULT.py criterion
    loss.backward()
    save_golden(args, "mult", {
        "weights": dict(model.state_dict()), "batch": batch, "eval": evals, "loss": {"L1": loss}, "grad": grads(model),
    }, {
        "model": "mult", "reference": "MMSA 2.2.1 (PyPI wheel) MMSA/models/singleTask/MULT.py, trains/singleTask/MULT.py",
        "repository": "https://github.com/thuiar/MMSA", "version": "mmsa==2.2.1",
        "patches": [("package __init__ files of MMSA, MMSA.models, MMSA.models.singleTask not run (they import the "
                    "whole framework); no reference code changed")],
        "msabench": {"name": "mult", "dataset": "mosi", "preset": "mmsa", "overrides": {
            **WIDTHS, "text_dropout": 0.0, "embed_dropout": 0.0, "attn_dropout": 0.0, "attn_dropout_a": 0.0,
            "attn_dropout_v": 0.0, "relu_dropout": 0.0, "res_dropout": 0.0, "out_dropout": 0.0}},
    }, model=model)


if __name__ == "__main__":
    main()
