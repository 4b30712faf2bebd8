"""Golden for Self-MM against MMSA 2.2.1 (--code: the unpacked `mmsa==2.2.1` wheel).

    python tools/reference/self_mm.py --code /path/to/unpacked/mmsa

MMSA's SELF_MM model (MOSI configuration, unaligned, tiny BERT through MMSA's own
BertTextEncoder.from_pretrained on a temporary checkpoint folder) and MMSA's SELF_MM trainer
for the loss and ULGM: a training set of N samples whose generated labels have already moved
away from the human labels (a later epoch), stored features and centres; one training batch
at epoch 3: the four weighted L1 parts, their gradients, then MMSA's update_labels,
update_features and update_centers. Dropout 0 in the train-mode pass.
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
    save_golden,
    tiny_bert_dir,
    token_batch,
)

DIMS = (TINY_BERT["hidden_size"], 5, 20)
WIDTH = 12
LENGTHS = {"t": [12, 7, 9, 4, 11, 6], "a": [14, 9, 12, 5, 11, 14], "v": [12, 12, 7, 3, 9, 10]}
N_TRAIN, INDEX, EPOCH = 10, [7, 2, 9, 0, 4, 5], 3  # the batch's positions in the training split
SUBNETS = {  # MMSA config_regression.json self_mm mosi, dropouts 0
    "a_lstm_hidden_size": 16, "v_lstm_hidden_size": 32, "a_lstm_layers": 1, "v_lstm_layers": 1,
    "audio_out": 16, "video_out": 32, "a_lstm_dropout": 0.0, "v_lstm_dropout": 0.0,
    "post_fusion_dim": 128, "post_text_dim": 32, "post_audio_dim": 16, "post_video_dim": 32,
    "post_fusion_dropout": 0.0, "post_text_dropout": 0.0, "post_audio_dropout": 0.0, "post_video_dropout": 0.0,
}
MODES = {"M": "fusion", "T": "text", "A": "audio", "V": "vision"}


def reference_args(bert_dir: str) -> SimpleNamespace:
    return SimpleNamespace(
        need_data_aligned=False, use_finetune=True, transformers="bert", pretrained=bert_dir,
        feature_dims=DIMS, text_out=DIMS[0], train_mode="regression", dataset_name="mosi",
        train_samples=N_TRAIN, device=torch.device("cpu"), excludeZero=True, H=3.0, **SUBNETS,
    )


def ulgm_state(trainer, prefix: str) -> dict[str, torch.Tensor]:
    """The trainer's label, feature and centre memory."""
    out = {}
    for mode in MODES.values():
        out[f"{prefix}labels.{mode}"] = trainer.label_map[mode].clone()
        out[f"{prefix}features.{mode}"] = trainer.feature_map[mode].clone()
        for side in ("pos", "neg"):
            out[f"{prefix}centre.{mode}.{side}"] = trainer.center_map[mode][side].clone()
    return out


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    stubs = ("MMSA", "MMSA.models", "MMSA.models.multiTask", "MMSA.trains", "MMSA.trains.multiTask")
    model_module = import_reference(args.code, "MMSA.models.multiTask.SELF_MM", stubs, stub_modules=("pynvml",))
    trainer_module = import_reference(args.code, "MMSA.trains.multiTask.SELF_MM")
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    ref_args = reference_args(str(tiny_bert_dir()))
    model = model_module.SELF_MM(ref_args)
    perturb_(model, gen)
    trainer = trainer_module.SELF_MM(ref_args)

    tokens = token_batch(gen, LENGTHS["t"], WIDTH, TINY_BERT["vocab_size"])
    y_all = torch.randn(N_TRAIN, generator=gen).clamp(-3, 3)
    index = torch.tensor(INDEX)
    batch = {
        **tokens, "audio": padded(gen, LENGTHS["a"], DIMS[1]), "vision": padded(gen, LENGTHS["v"], DIMS[2]),
        "audio_lengths": torch.tensor(LENGTHS["a"]), "vision_lengths": torch.tensor(LENGTHS["v"]),
        "labels": y_all[index], "index": index,
    }
    # a later epoch's memory: generated labels moved off y_m, stored features, centres from them
    trainer.init_labels(torch.arange(N_TRAIN), y_all)
    for mode in ("text", "audio", "vision"):
        trainer.label_map[mode] = (y_all + 0.7 * torch.randn(N_TRAIN, generator=gen)).clamp(-3, 3)
    for mode, feats in trainer.feature_map.items():
        feats.copy_(torch.randn(feats.shape, generator=gen).relu())
    trainer.update_centers()
    before = ulgm_state(trainer, "before.")

    text = torch.stack([tokens["text_ids"], tokens["text_mask"], tokens["text_segment"]], dim=1).float()

    def run() -> dict[str, torch.Tensor]:
        return model(text, (batch["audio"], batch["audio_lengths"]), (batch["vision"], batch["vision_lengths"]))

    model.eval()
    with torch.no_grad():
        out = run()
    evals = {k: out[k] for k in ("M", "T", "A", "V", "Feature_t", "Feature_a", "Feature_v", "Feature_f")}
    model.train()
    out = run()
    losses = {m: trainer.weighted_loss(out[m], trainer.label_map[mode][index], indexes=index, mode=mode)
              for m, mode in MODES.items()}
    sum(losses.values()).backward()
    feats = {m: out[f"Feature_{m}"].detach() for m in "fta" + "v"}  # trains/multiTask/SELF_MM.py do_train order
    trainer.update_labels(feats["f"], feats["t"], feats["a"], feats["v"], EPOCH, index, out)
    trainer.update_features(feats["f"], feats["t"], feats["a"], feats["v"], index)
    trainer.update_centers()
    save_golden(args, "self_mm", {
        "weights": dict(model.state_dict()), "batch": batch, "eval": evals, "loss": losses, "grad": grads(model),
        "state": {**before, **ulgm_state(trainer, "after.")},
    }, {
        "model": "self_mm", "reference": "MMSA 2.2.1 (PyPI wheel) MMSA/models/multiTask/SELF_MM.py, "
                                         "MMSA/trains/multiTask/SELF_MM.py (weighted_loss, ULGM updates)",
        "repository": "https://github.com/thuiar/MMSA", "version": "mmsa==2.2.1", "epoch": EPOCH,
        "patches": [
            "package __init__ files of MMSA, MMSA.models, MMSA.models.multiTask, MMSA.trains, "
            "MMSA.trains.multiTask not run (they import the whole framework)",
            "pynvml (GPU selection in MMSA.utils.functions, unused here) replaced by an empty module",
            "BertTextEncoder.from_pretrained reads a temporary tiny BERT folder (random init, then perturbed)",
        ],
        "bert_config": TINY_BERT,
        "msabench": {"name": "self_mm", "dataset": "mosi", "preset": "mmsa", "overrides": {
            "dims": DIMS, "a_lstm_dropout": 0.0, "v_lstm_dropout": 0.0, "post_fusion_dropout": 0.0,
            "post_text_dropout": 0.0, "post_audio_dropout": 0.0, "post_video_dropout": 0.0}},
    }, model=model)


if __name__ == "__main__":
    main()
