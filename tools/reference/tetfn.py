"""Golden for TETFN against thuiar/MMSA at a94e65d (--code: MMSA's `src` folder at that commit).

    python tools/reference/tetfn.py --code /path/to/MMSA/src

MMSA's TETFN (models/multiTask/TETFN.py) behind AMIO's need_model_aligned step (AlignSubNet
avg_pool, as models/AMIO.py runs it) in its MOSI layout at small widths (d 10, 5 heads, small
post heads), with kernels > 1 and an audio sequence longer than the token width so that the
alignment pooling, the convolutions and the causal mask offsets are exercised; the tiny BERT
through MMSA's own BertTextEncoder.from_pretrained on a temporary checkpoint folder. MMSA's
TETFN trainer (trains/multiTask/TETFN.py) gives the loss and ULGM: a training set of N samples
whose generated labels have already moved off the human labels (a later epoch), stored
features and centres; one training batch at epoch 3: the four weighted L1 parts, gradients,
then update_labels, update_features, update_centers. Dropout 0 in the train-mode pass.
MMSA 2.2.1 on PyPI does not ship TETFN, hence the git checkout.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from _golden import (
    TINY_BERT,
    bert_base_dir,
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

COMMIT = "a94e65d07fa1ae0d44e552390074b29b0898edfd"
DIMS = (TINY_BERT["hidden_size"], 5, 20)  # MMSA MOSI audio/vision widths; text = the BERT width
WIDTH = 12  # token columns; audio has 17 steps (window-pooled to 12), vision 12 (left alone)
LENGTHS = {"t": [12, 7, 9, 4, 11, 6], "a": [17, 9, 12, 5, 11, 14], "v": [12, 12, 7, 3, 9, 10]}
N_TRAIN, INDEX, EPOCH = 10, [7, 2, 9, 0, 4, 5], 3  # the batch's positions in the training split
SMALL = {  # MMSA config_regression.json tetfn mosi layout at small widths, dropouts 0
    "a_lstm_hidden_size": 8, "v_lstm_hidden_size": 12, "a_lstm_layers": 1, "v_lstm_layers": 1,
    "a_lstm_dropout": 0.0, "v_lstm_dropout": 0.0,
    "conv1d_kernel_size_l": 3, "conv1d_kernel_size_a": 2, "conv1d_kernel_size_v": 5,  # _v is never read
    "dst_feature_dims": 10, "nheads": 5,
    "attn_dropout": 0.0, "attn_dropout_a": 0.0, "attn_dropout_v": 0.0,
    "relu_dropout": 0.0, "embed_dropout": 0.0, "res_dropout": 0.0,
    "post_fusion_dim": 16, "post_text_dim": 8, "post_audio_dim": 8, "post_video_dim": 6,
    "post_fusion_dropout": 0.0, "post_text_dropout": 0.0, "post_audio_dropout": 0.0, "post_video_dropout": 0.0,
}
MODES = {"M": "fusion", "T": "text", "A": "audio", "V": "vision"}
SEQ_FIRST = ("trans_l_with_a", "trans_l_with_v", "trans_a_with_l", "trans_v_with_l", "trans_a_with_v",
             "trans_v_with_a", "trans_a_with_v.lower_mha", "trans_v_with_a.lower_mha")
CHANNELS_FIRST = ("audio_model", "video_model")


def reference_args(bert_dir: str, train_samples: int = N_TRAIN, **row: Any) -> SimpleNamespace:
    return SimpleNamespace(
        need_data_aligned=True, use_finetune=True, transformers="bert", pretrained=bert_dir,
        feature_dims=DIMS, seq_lens=(WIDTH, LENGTHS["a"][0], LENGTHS["v"][0]), train_mode="regression",
        dataset_name="mosi", train_samples=train_samples, device=torch.device("cpu"), excludeZero=True, H=3.0,
        **{**SMALL, **row},
    )


def mmsa_parameters(model_module) -> dict[str, Any]:
    """MMSA's TETFN in each config_regression.json row (feature dims of the datasets msabench reads):
    parameters outside BERT, and the MOSI / MOSEI totals with a bert-base-uncased-shaped BERT."""
    config = json.loads((Path(model_module.__file__).parents[2] / "config" / "config_regression.json").read_text())
    dims = {"mosi": (768, 5, 20), "mosei": (768, 74, 35), "sims": (768, 33, 709), "simsv2": (768, 25, 177)}
    bert = bert_base_dir()
    out: dict[str, Any] = {"without_bert": {}, "total": {}}
    try:
        for dataset, feature_dims in dims.items():
            row = {k: v for k, v in config["tetfn"]["datasetParams"][dataset].items() if k in SMALL}
            model = model_module.TETFN(SimpleNamespace(**{**vars(reference_args(str(bert))), **row,
                                                          "feature_dims": feature_dims}))
            total = sum(p.numel() for p in model.parameters())
            out["without_bert"][dataset] = total - sum(p.numel() for p in model.text_model.parameters())
            if dataset in ("mosi", "mosei"):
                out["total"][dataset] = total
    finally:
        shutil.rmtree(bert)
    return out


def ulgm_state(trainer, prefix: str) -> dict[str, torch.Tensor]:
    """The trainer's label, feature and centre memory."""
    out = {}
    for mode in MODES.values():
        out[f"{prefix}labels.{mode}"] = trainer.label_map[mode].clone()
        out[f"{prefix}features.{mode}"] = trainer.feature_map[mode].clone()
        for side in ("pos", "neg"):
            out[f"{prefix}centre.{mode}.{side}"] = trainer.center_map[mode][side].clone()
    return out


def later_epoch_(trainer, y_all: torch.Tensor, gen: torch.Generator) -> None:
    """A later epoch's memory: generated labels moved off y_m, stored features, centres from them."""
    trainer.init_labels(torch.arange(N_TRAIN), y_all)
    for mode in ("text", "audio", "vision"):
        trainer.label_map[mode] = (y_all + 0.7 * torch.randn(N_TRAIN, generator=gen)).clamp(-3, 3)
    for feats in trainer.feature_map.values():
        feats.copy_(torch.randn(feats.shape, generator=gen).relu())
    trainer.update_centers()


def hook_spec() -> tuple[dict[str, str], dict[str, Any]]:
    """Intermediates: projections, the cross-modal and text-enhanced transformers (made batch-first)."""
    spec = {"proj_l": "proj_l", **{k: k for k in (*SEQ_FIRST, *CHANNELS_FIRST)}}
    transform = {**{k: (lambda t: t.transpose(0, 1)) for k in SEQ_FIRST},
                 **{k: (lambda t: t.transpose(1, 2)) for k in CHANNELS_FIRST}}
    return spec, transform


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    stubs = ("MMSA", "MMSA.models", "MMSA.models.multiTask", "MMSA.trains", "MMSA.trains.multiTask")
    model_module = import_reference(args.code, "MMSA.models.multiTask.TETFN", stubs, stub_modules=("pynvml",))
    align_module = import_reference(args.code, "MMSA.models.subNets.AlignNets")
    trainer_module = import_reference(args.code, "MMSA.trains.multiTask.TETFN")
    counts = mmsa_parameters(model_module)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    ref_args = reference_args(str(tiny_bert_dir()))
    model = model_module.TETFN(ref_args)
    align = align_module.AlignSubNet(ref_args, "avg_pool")  # AMIO: need_model_aligned true
    perturb_(model, gen)
    round_to_half_(model)
    trainer = trainer_module.TETFN(ref_args)

    tokens = token_batch(gen, LENGTHS["t"], WIDTH, TINY_BERT["vocab_size"])
    y_all = torch.randn(N_TRAIN, generator=gen).clamp(-3, 3)
    index = torch.tensor(INDEX)
    batch = {
        **tokens, "audio": padded(gen, LENGTHS["a"], DIMS[1]), "vision": padded(gen, LENGTHS["v"], DIMS[2]),
        "audio_lengths": torch.tensor(LENGTHS["a"]), "vision_lengths": torch.tensor(LENGTHS["v"]),
        "labels": y_all[index], "index": index,
    }
    later_epoch_(trainer, y_all, gen)
    before = ulgm_state(trainer, "before.")
    text = torch.stack([tokens["text_ids"], tokens["text_mask"], tokens["text_segment"]], dim=1).float()
    hooked = record_hooks(model, *hook_spec())

    def run() -> dict[str, torch.Tensor]:  # AMIO.forward: align, then the model
        return model(*align(text, (batch["audio"], 0), (batch["vision"], 0)))

    model.eval()
    with torch.no_grad():
        out = run()
    evals = {**{k: out[k] for k in ("M", "T", "A", "V", "Feature_t", "Feature_a", "Feature_v", "Feature_f")},
             **hooked}
    model.train()
    out = run()
    losses = {m: trainer.weighted_loss(out[m], trainer.label_map[mode][index], indexes=index, mode=mode)
              for m, mode in MODES.items()}
    sum(losses.values()).backward()
    feats = {m: out[f"Feature_{m}"].detach() for m in "ftav"}  # trains/multiTask/TETFN.py do_train order
    trainer.update_labels(feats["f"], feats["t"], feats["a"], feats["v"], EPOCH, index, out)
    trainer.update_features(feats["f"], feats["t"], feats["a"], feats["v"], index)
    trainer.update_centers()
    save_golden(args, "tetfn", {
        "weights": dict(model.state_dict()), "batch": batch, "eval": evals, "loss": losses, "grad": grads(model),
        "state": {**before, **ulgm_state(trainer, "after.")},
    }, meta(counts), compact=True, model=model)


def meta(counts: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": "tetfn", "reference": f"thuiar/MMSA@{COMMIT} src/MMSA/models/multiTask/TETFN.py, "
                                       "src/MMSA/trains/multiTask/TETFN.py (weighted_loss, ULGM updates)",
        "repository": "https://github.com/thuiar/MMSA", "version": COMMIT, "epoch": EPOCH,
        "patches": [
            "package __init__ files of MMSA, MMSA.models, MMSA.models.multiTask, MMSA.trains, "
            "MMSA.trains.multiTask not run (they import the whole framework)",
            "pynvml (GPU selection in MMSA.utils.functions, unused here) replaced by an empty module",
            "BertTextEncoder.from_pretrained reads a temporary tiny BERT folder (random init, then perturbed)",
            "AMIO's alignment step run as AMIO.forward does: AlignSubNet(args, 'avg_pool'), "
            "seq_lens[0] = the token width",
        ],
        "mmsa_params_without_bert": counts["without_bert"], "mmsa_params_with_bert_base": counts["total"],
        "bert_config": TINY_BERT,
        "msabench": {"name": "tetfn", "dataset": "mosi", "preset": "mmsa", "overrides": {
            "dims": DIMS, "seq_len_t": WIDTH, "a_lstm_hidden": 8, "v_lstm_hidden": 12,
            "conv_kernel_l": 3, "conv_kernel_a": 2, "d": 10, "heads": 5, "post_fusion_dim": 16, "post_text_dim": 8, "post_audio_dim": 8, "post_video_dim": 6,
            **dict.fromkeys(("attn_dropout", "attn_dropout_a", "attn_dropout_v", "relu_dropout", "embed_dropout",
                             "res_dropout", "post_fusion_dropout", "post_text_dropout", "post_audio_dropout",
                             "post_video_dropout"), 0.0)}},
    }


if __name__ == "__main__":
    main()
