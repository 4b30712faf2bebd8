"""Golden for CLGSI against AZYoung233/CLGSI@c1070c8 (--code: a checkout of it).

    git --git-dir=<bare clone> archive c1070c8 | tar -x -C clgsi
    python tools/reference/clgsi.py --code clgsi

`models/multiTask/CLGSI.py` in its MOSI configuration (config/config_regression.py: audio 5-d
1 head, vision 20-d 4 heads, 2 layers each, GLFK 16 filters, skip-net reduction 2, gamma 0.95)
on the tiny BERT, unaligned sequences with padding. Train-mode loss as
trains/multiTask/CLGSI.py: L1 + gamma * the contrastive loss of models/contrastive_loss.py
(dividing line 0.4), dropout 0. Compact golden (float16-exact weights, gradient fingerprints):
the default 2048-wide encoder feed-forwards dominate the size. Run in float64 (weights still
float16-exact): in float32 the contrastive loss's gradients carry ~1e-4 relative rounding that
differs between CPU kernels (AVX-512, AVX2), more than the comparison's tolerance.
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
    round_to_half_,
    save_golden,
    tiny_bert_dir,
    token_batch,
    zero_dropout_,
)

DIMS = (TINY_BERT["hidden_size"], 5, 20)
WIDTH = 12
LENGTHS = {"t": [12, 7, 9, 4, 11, 6], "a": [14, 9, 12, 5, 11, 14], "v": [12, 12, 7, 3, 9, 10]}
MOSI = {  # config/config_regression.py datasetParas mosi (dropouts 0 for the train-mode pass)
    "fusion_filter_nums": 16, "a_encoder_heads": 1, "v_encoder_heads": 4, "a_encoder_layers": 2, "v_encoder_layers": 2,
    "text_out": DIMS[0], "audio_out": DIMS[1], "video_out": DIMS[2], "post_fusion_dim": 128, "post_text_dim": 64,
    "post_audio_dim": 64, "post_video_dim": 64, "post_fusion_dropout": 0.0, "post_text_dropout": 0.0,
    "post_audio_dropout": 0.0, "post_video_dropout": 0.0, "skip_net_reduction": 2,
}
GAMMA, DIVIDING_LINE = 0.95, 0.4
HOOKS = {"text_skip": "text_skip_net", "audio_skip": "audio_skip_net", "video_skip": "video_skip_net", "GLFK": "GLFK"}


def tiny_auto(bert_dir: str) -> SimpleNamespace:
    """Stand-ins for AutoModel / AutoTokenizer whose from_pretrained reads the tiny folder."""
    from transformers import AutoModel, AutoTokenizer

    return SimpleNamespace(
        model=type("TinyAutoModel", (), {"from_pretrained": staticmethod(lambda *_a, **_k: AutoModel.from_pretrained(bert_dir))}),
        tokenizer=type("TinyAutoTokenizer", (), {"from_pretrained": staticmethod(lambda *_a, **_k: AutoTokenizer.from_pretrained(bert_dir))}),
    )


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    torch.set_default_dtype(torch.float64)  # every tensor the reference creates, BERT included
    stubs = ("models", "models.multiTask", "models.subNets")
    bert_module = import_reference(args.code, "models.subNets.BertTextEncoder", stubs)
    auto = tiny_auto(str(tiny_bert_dir()))
    bert_module.AutoModel, bert_module.AutoTokenizer = auto.model, auto.tokenizer
    clgsi_module = import_reference(args.code, "models.multiTask.CLGSI")
    loss_module = import_reference(args.code, "models.contrastive_loss")
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    ref_args = SimpleNamespace(need_data_aligned=False, language="en", use_finetune=True, feature_dims=DIMS,
                               seq_lens=(WIDTH, max(LENGTHS["a"]), max(LENGTHS["v"])), device=torch.device("cpu"), **MOSI)
    model = clgsi_module.CLGSI(ref_args).double()
    zeroed = zero_dropout_(model)
    perturb_(model, gen)
    round_to_half_(model)
    weights = {k: v.clone() for k, v in model.state_dict().items()}  # before train mode moves the BatchNorm stats
    tokens = token_batch(gen, LENGTHS["t"], WIDTH, TINY_BERT["vocab_size"])
    batch = {
        **tokens, "audio": padded(gen, LENGTHS["a"], DIMS[1]), "vision": padded(gen, LENGTHS["v"], DIMS[2]),
        "audio_lengths": torch.tensor(LENGTHS["a"]), "vision_lengths": torch.tensor(LENGTHS["v"]),
        "labels": torch.tensor([2.4, -1.8, 0.6, 0.0, -0.4, 1.2]), "index": torch.arange(6),  # pairs on both sides of 0.4
    }
    text = torch.stack([tokens["text_ids"], tokens["text_mask"], tokens["text_segment"]], dim=1).float()
    hooked = record_hooks(model, HOOKS)

    def run() -> dict[str, torch.Tensor]:
        return model(text, (batch["audio"], batch["audio_lengths"]), (batch["vision"], batch["vision_lengths"]))

    model.eval()
    with torch.no_grad():
        out = run()
    evals = {**{k: out[k] for k in ("M", "Feature_t", "Feature_a", "Feature_v", "Feature_f")}, **hooked}
    model.train()
    out = run()
    l1 = torch.mean(torch.abs(out["M"].view(-1) - batch["labels"].view(-1)))  # trains/multiTask/CLGSI.py l1_loss
    cl = loss_module.contrastive_loss("mosi", torch.device("cpu"), DIVIDING_LINE)(out, batch["labels"])
    (l1 + GAMMA * cl).backward()
    save_golden(args, "clgsi", {
        "weights": weights, "batch": batch, "eval": evals,
        "loss": {"L1": l1, "CL": cl, "total": l1 + GAMMA * cl}, "grad": grads(model),
    }, {
        "model": "clgsi", "reference": "AZYoung233/CLGSI@c1070c8 models/multiTask/CLGSI.py, models/contrastive_loss.py "
                                       "(loss as trains/multiTask/CLGSI.py)",
        "repository": "https://github.com/AZYoung233/CLGSI", "commit": "c1070c8",
        "patches": [
            "package __init__ files of models, models.multiTask, models.subNets not run (they import the framework)",
            "BertTextEncoder's AutoModel/AutoTokenizer.from_pretrained('bert-base-uncased') read a temporary tiny BERT folder",
            f"dropout set to 0 after building: every nn.Dropout module, and the floats {zeroed}",
        ],
        "bert_config": TINY_BERT, "dtype": "float64",
        "msabench": {"name": "clgsi", "dataset": "mosi", "preset": "official", "overrides": {
            "dims": DIMS, "encoder_dropout": 0.0, "post_fusion_dropout": 0.0, "post_text_dropout": 0.0,
            "post_audio_dropout": 0.0, "post_video_dropout": 0.0}},
    }, compact=True, model=model)


if __name__ == "__main__":
    main()
