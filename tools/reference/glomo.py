"""Golden for GLoMo against YetZzzzzz/GLoMo@90f5b3f (--code: the repository's `GLoMo_MSA/` folder).

    git --git-dir=<bare clone> archive 90f5b3f | tar -x -C glomo
    python tools/reference/glomo.py --code glomo/GLoMo_MSA

`GLoMo.GLoMo` (BERT without pooler, MIB transformers for audio/vision, three noisy top-k
MoEs, the fusion transformer and attention poolings) in the MOSI run line's structure
(MAG widths 74/47, 3 experts, k 2, granularity 3) at narrow widths on the tiny BERT. Eval:
`model.test(...)` (main_GLoMo.py's evaluation); train: `model(...)` with dropout 0, loss
L1 + the MoE losses as main_GLoMo.py train_epoch, the MoE gating noise recorded for replay.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from _golden import (
    TINY_BERT,
    RecordedDraws,
    grads,
    import_reference,
    old_transformers_names,
    padded,
    parse_args,
    perturb_,
    record_hooks,
    save_golden,
    tiny_bert_config,
    token_batch,
    zero_dropout_,
)

DIMS = (TINY_BERT["hidden_size"], 74, 47)  # TEXT_DIM = the BERT width; MAG MOSI COVAREP 74, Facet 47
WIDTH = 12  # --max_seq_length (60 in the MOSI run line); audio/vision word-aligned to it
LENGTHS = [12, 7, 9, 4, 11, 6]
ARCH = {"d_l": 16, "num_heads": 4, "layers": 2, "gran_t": 3, "gran_a": 3, "gran_v": 3,
        "experts_t": 3, "experts_a": 3, "experts_v": 3, "k": 2}  # run line structure, d_l 48 -> 16
HOOKS = {
    "text_global": "bert.linear1", "text_conv": "bert.proj_l",
    "audio_global": "audio_network#0", "audio_local": "audio_network#1",
    "vision_global": "video_network#0", "vision_local": "video_network#1",
    **{f"moe_{m}": f"moe_{m}#0" for m in "tav"}, **{f"moe_loss_{m}": f"moe_{m}#1" for m in "tav"},
    "fusion": "transformer_encoder",
}


def reference_args() -> SimpleNamespace:
    return SimpleNamespace(
        **ARCH, TEXT_DIM=DIMS[0], ACOUSTIC_DIM=DIMS[1], VISUAL_DIM=DIMS[2],
        dropout_prob=0.0, attn_dropout=0.0, relu_dropout=0.0, res_dropout=0.0, embed_dropout=0.0,
    )


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    aliased = old_transformers_names()
    glomo_module = import_reference(args.code, "GLoMo", stub_modules=("einops", "einops.layers.torch"))
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    config = tiny_bert_config()
    config.num_labels = 1
    model = glomo_module.GLoMo(config, reference_args())
    zeroed = zero_dropout_(model)  # nn.TransformerEncoderLayer's hard-coded 0.1 (modules and MHA float), Attention's 0.3
    perturb_(model, gen)
    tokens = token_batch(gen, LENGTHS, WIDTH, TINY_BERT["vocab_size"])
    aligned = torch.tensor([WIDTH] * len(LENGTHS))
    batch = {
        **tokens, "audio": padded(gen, LENGTHS, DIMS[1]), "vision": padded(gen, LENGTHS, DIMS[2]),
        "audio_lengths": aligned, "vision_lengths": aligned,
        "labels": torch.randn(len(LENGTHS), generator=gen).clamp(-3, 3), "index": torch.arange(len(LENGTHS)),
    }
    text = {"attention_mask": tokens["text_mask"], "token_type_ids": tokens["text_segment"]}
    hooked = record_hooks(model, HOOKS, {"fusion": lambda t: t.transpose(0, 1)})  # (6, B, d) -> (B, 6, d)

    model.eval()
    with torch.no_grad():
        logits, fused = model.test(tokens["text_ids"], batch["vision"], batch["audio"], **text)
    evals = {"logits": logits, "fused": fused, **hooked}
    model.train()
    with RecordedDraws() as draws:
        moe_loss, logits, _ = model(tokens["text_ids"], batch["vision"], batch["audio"], batch["labels"], **text)
    l1 = torch.nn.L1Loss()(logits.view(-1), batch["labels"].view(-1))  # main_GLoMo.py train_epoch
    (l1 + moe_loss).backward()
    save_golden(args, "glomo", {
        "weights": dict(model.state_dict()), "batch": batch, "eval": evals,
        "loss": {"L1": l1, "moe": moe_loss, "total": l1 + moe_loss}, "grad": grads(model), "state": draws.tensors(),
    }, {
        "model": "glomo", "reference": "YetZzzzzz/GLoMo@90f5b3f GLoMo_MSA/GLoMo.py, MoE.py, modules/ (loss: main_GLoMo.py)",
        "repository": "https://github.com/YetZzzzzz/GLoMo", "commit": "90f5b3fcd7c4942ea1192eef157369c68809aa20",
        "patches": [
            "einops (imported by GLoMo.py, never called) replaced by a stub module", aliased,
            "GLoMo built on the tiny BERT config directly (main_GLoMo.py: from_pretrained of bert-base-uncased)",
            f"dropout set to 0 after building: every nn.Dropout module, and the floats {zeroed}",
        ],
        "bert_config": TINY_BERT,
        "msabench": {"name": "glomo", "dataset": "mosi", "preset": "official", "overrides": {
            "dims": DIMS, "d": ARCH["d_l"], "heads": ARCH["num_heads"], "layers": ARCH["layers"],
            "attn_dropout": 0.0, "relu_dropout": 0.0, "res_dropout": 0.0, "embed_dropout": 0.0,
            "fusion_dropout": 0.0, "pool_dropout": 0.0}},
    }, model=model)


if __name__ == "__main__":
    main()
