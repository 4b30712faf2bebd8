"""Golden for TFR-Net against MMSA 2.2.1 (--code: the unpacked `mmsa==2.2.1` wheel).

    python tools/reference/tfr_net.py --code /path/to/unpacked/mmsa

MMSA's TFR_NET (MOSI configuration: crossmodal_attn alignment with attn_mask, linear generators,
c_gate fusion, recloss_type combine, weight_gen_loss [5, 2, 20], weight_sim_loss 5; unaligned
data) at small widths: d 8 with 2 heads, nlevels 2, fusion widths 6/4/8, 2 temporal heads, tiny
BERT through MMSA's own BertTextEncoder on a temporary checkpoint (vocabulary 128, so that
MMSA's [UNK] id 100 and [CLS]/[SEP] 101/102 exist). The missing inputs come from MMSA's own
data_loader.py `generate_m` (missing_rate 0.2, missing_seed 1111 per modality) on the complete
batch taken as a split; the golden's batch holds both and the masks (msabench's
`bench/data/conditions.py` must draw the same ones: tests/test_tfr_net.py). Loss: the trainer's
L1 criterion plus the weighted generation loss (its `epochs > 1` branch); each modality's
RECLoss value is recorded as MMSA computes it. Dropout 0 in the train-mode pass (the tiny
BERT's config dropouts are 0). MMSA's parameter counts at the real MOSI / MOSEI sizes are
recorded, and that its CH-SIMS configuration (num_temporal_head 25, lengths 39/400/55) cannot
be built.
"""

from __future__ import annotations

import functools
import shutil
from typing import Any

import numpy as np
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
    zero_dropout_,
)

BERT = {**TINY_BERT, "vocab_size": 128}  # MMSA's text ids 100 ([UNK]), 101, 102 must exist
DIMS = (BERT["hidden_size"], 5, 20)
LENGTHS = {"t": [12, 7, 9, 4, 11, 6], "a": [14, 9, 12, 5, 11, 14], "v": [12, 12, 10, 6, 11, 10]}
SEQ_LENS = (12, 14, 12)  # the batch's padded lengths = MMSA's seq_lens from the data
RATE, SEED = 0.2, 1111  # config_regression.json datasetCommonParams missing_rate, missing_seed
GEN_WEIGHTS = (5.0, 2.0, 20.0)  # tfr_net mosi weight_gen_loss
MOSI = {  # config_regression.json tfr_net (commonParams + mosi), widths reduced
    "alignmentModule": "crossmodal_attn", "generatorModule": "linear", "fusionModule": "c_gate",
    "recloss_type": "combine", "without_generator": False, "use_bert_finetune": True, "attn_mask": True,
    "text_dropout": 0.2, "conv1d_kernel_size_l": 1, "conv1d_kernel_size_a": 5, "conv1d_kernel_size_v": 3,
    "attn_dropout": 0.2, "attn_dropout_a": 0.1, "attn_dropout_v": 0.0, "relu_dropout": 0.2, "embed_dropout": 0.2,
    "res_dropout": 0.2, "dst_feature_dim_nheads": [8, 2], "nlevels": 2, "fusion_t_hid": 6, "fusion_a_hid": 4,
    "fusion_v_hid": 8, "fusion_gru_layers": 3, "fusion_drop": 0.2, "cls_hidden_dim": 16, "cls_dropout": 0.0,
    "weight_gen_loss": list(GEN_WEIGHTS), "weight_sim_loss": 5, "num_temporal_head": 2,
    "seq_lens": SEQ_LENS, "feature_dims": list(DIMS), "train_mode": "regression", "device": torch.device("cpu"),
}
HOOKS = {**{f"fusion_{m}": f"fusion_subnet.Model.{m}_encoder" for m in ("text", "audio", "vision")},
         **{f"gen_{m}": f"generator_{m}" for m in "tav"}}
ALIGNED = ("h_t", "h_a", "h_v", "h_t_n", "h_a_n", "h_v_n")  # CM_ATTN's outputs, batch-first


class Args(dict):
    """MMSA's EasyDict args: attribute and key access (CM_ATTN reads both)."""

    __getattr__ = dict.__getitem__
    __setattr__ = dict.__setitem__  # type: ignore[assignment]


def missing_batch(gen: torch.Generator, data_loader: Any) -> dict[str, torch.Tensor]:
    """The complete batch and MMSA's generate_m of it (rate 0.2, seed 1111 per modality), in
    msabench's field names: the incomplete inputs, "complete.*" and "missing.*" (True = removed)."""
    tokens = token_batch(gen, LENGTHS["t"], SEQ_LENS[0], 100)  # words 5..99
    ids = tokens["text_ids"]
    ids[ids == 1], ids[ids == 2] = 101, 102  # bert-base-uncased [CLS] / [SEP]
    audio, vision = padded(gen, LENGTHS["a"], DIMS[1]), padded(gen, LENGTHS["v"], DIMS[2])
    generate_m = functools.partial(data_loader.MMDataset.generate_m, None)  # uses nothing of `self`
    text = torch.stack([ids, tokens["text_mask"], tokens["text_segment"]], 1).float().numpy()
    ids_m, _, text_mask, kept_t = generate_m(text[:, 0, :], text[:, 1, :], None, RATE, SEED, mode="text")
    audio_m, _, audio_mask, kept_a = generate_m(audio.numpy(), None, LENGTHS["a"], RATE, SEED, mode="audio")
    vision_m, _, vision_mask, kept_v = generate_m(vision.numpy(), None, LENGTHS["v"], RATE, SEED, mode="vision")
    removed = {"text_ids": text_mask - kept_t, "audio": audio_mask - kept_a, "vision": vision_mask - kept_v}
    return {
        **tokens, "text_ids": torch.from_numpy(ids_m).long(), "audio": torch.from_numpy(audio_m).float(),
        "vision": torch.from_numpy(vision_m).float(),
        "audio_lengths": torch.tensor(LENGTHS["a"]), "vision_lengths": torch.tensor(LENGTHS["v"]),
        "labels": torch.randn(len(LENGTHS["t"]), generator=gen).clamp(-3, 3), "index": torch.arange(len(LENGTHS["t"])),
        "complete.text_ids": ids.clone(), "complete.audio": audio, "complete.vision": vision,
        **{f"missing.{k}": torch.from_numpy(np.asarray(v)).bool() for k, v in removed.items()},
    }


def reference_inputs(b: dict[str, torch.Tensor]) -> tuple[tuple, tuple, tuple]:
    """TFR_NET.forward's (text, text_m, missing_mask_t), (audio, audio_m, audio_mask, missing_mask_a), ... as
    the trainer passes them (missing masks: 1 = kept, as data_loader.py stores them)."""
    def text(ids: torch.Tensor) -> torch.Tensor:
        return torch.stack([ids, b["text_mask"], b["text_segment"]], 1).float()

    def steps(lengths: torch.Tensor, width: int) -> torch.Tensor:
        return (torch.arange(width)[None, :] < lengths[:, None]).long()

    kept = {k: (b["text_mask"].bool() if k == "text_ids" else steps(b[f"{k}_lengths"], b[k].shape[1]).bool())
            & ~b[f"missing.{k}"] for k in ("text_ids", "audio", "vision")}
    return ((text(b["complete.text_ids"]), text(b["text_ids"]), kept["text_ids"].float()),
            (b["complete.audio"], b["audio"], steps(b["audio_lengths"], SEQ_LENS[1]), kept["audio"].float()),
            (b["complete.vision"], b["vision"], steps(b["vision_lengths"], SEQ_LENS[2]), kept["vision"].float()))


def record_aligned(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    captured: dict[str, torch.Tensor] = {}

    def hook(_m: Any, _i: Any, out: tuple) -> None:
        captured.update({k: t.detach().clone() for k, t in zip(ALIGNED, out, strict=True)})

    model.align_subnet.Model.register_forward_hook(hook)
    return captured


def record_rec_losses(model: torch.nn.Module) -> list[torch.Tensor]:
    """RECLoss values in call order (text, audio, vision)."""
    calls: list[torch.Tensor] = []
    model.gen_loss.register_forward_hook(lambda _m, _i, out: calls.append(out))
    return calls


def sims_build_error(model_module: Any) -> str:
    """What MMSA says when building TFR_NET in its sims configuration (num_temporal_head 25 on the
    lengths 39/400/55 of unaligned_39.pkl; tiny BERT: the error comes before BERT matters)."""
    try:
        mmsa_parameters(model_module, (768, 33, 709), (39, 400, 55), {**FULL, "nlevels": 2})
    except AssertionError as err:
        return f"AssertionError: {err}"
    return ""


def mmsa_parameters(model_module: Any, dims: tuple, seq_lens: tuple, config: dict) -> int:
    """MMSA's TFR_NET at its real size (bert-base, config_regression.json tfr_net)."""
    bert = bert_base_dir()
    orig = model_module.BertTextEncoder
    model_module.BertTextEncoder = functools.partial(orig, pretrained=str(bert))
    try:
        ref = model_module.TFR_NET(Args({**MOSI, **config, "feature_dims": list(dims), "seq_lens": seq_lens}))
    finally:
        model_module.BertTextEncoder = orig
        shutil.rmtree(bert)
    return sum(p.numel() for p in ref.parameters())


FULL = {"dst_feature_dim_nheads": [30, 6], "nlevels": 3, "fusion_t_hid": 36, "fusion_a_hid": 20, "fusion_v_hid": 48,
        "cls_hidden_dim": 128, "num_temporal_head": 25}  # tfr_net mosi / mosei


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    stubs = ("MMSA", "MMSA.models", "MMSA.models.missingTask", "MMSA.trains", "MMSA.trains.missingTask")
    model_module = import_reference(args.code, "MMSA.models.missingTask.TFR_NET.model", stubs, stub_modules=("pynvml",))
    trainer_module = import_reference(args.code, "MMSA.trains.missingTask.TFR_NET")
    data_loader = import_reference(args.code, "MMSA.data_loader")
    counts = {"mosi": mmsa_parameters(model_module, (768, 5, 20), (50, 375, 500), FULL),
              "mosei": mmsa_parameters(model_module, (768, 74, 35), (50, 500, 500), FULL)}
    sims_error = sims_build_error(model_module)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    bert_dir = tiny_bert_dir()
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(**BERT)).save_pretrained(bert_dir)  # the 128-word vocabulary
    model_module.BertTextEncoder = functools.partial(model_module.BertTextEncoder, pretrained=str(bert_dir))
    ref_args = Args(MOSI)
    model = model_module.TFR_NET(ref_args)
    perturb_(model, gen)
    round_to_half_(model)
    trainer = trainer_module.TFR_NET(Args({"train_mode": "regression", "dataset_name": "mosi"}))
    batch = missing_batch(gen, data_loader)
    inputs = reference_inputs(batch)
    hooked, aligned = record_hooks(model, HOOKS), record_aligned(model)

    weights = {k: v.clone() for k, v in model.state_dict().items()}  # before the train pass moves BatchNorm's statistics
    model.eval()
    with torch.no_grad():
        pred, _ = model(*inputs)
    evals = {"M": pred, **{k: v.clone() for k, v in hooked.items()}, **{k: v.clone() for k, v in aligned.items()}}
    patched = zero_dropout_(model)
    rec_calls = record_rec_losses(model)
    model.train()
    pred, gen_loss = model(*inputs)
    l1 = trainer.criterion(pred, batch["labels"].view(-1, 1))
    losses = {"L1": l1, "gen": gen_loss.reshape(()), "total": (l1 + gen_loss).reshape(()),  # do_train, epochs > 1
              **{f"rec_{m}": c.reshape(()) for m, c in zip("tav", rec_calls, strict=True)}}
    losses["total"].backward()
    save_golden(args, "tfr_net", {
        "weights": weights, "batch": batch, "eval": evals, "loss": losses, "grad": grads(model),
    }, {
        "model": "tfr_net",
        "reference": "MMSA 2.2.1 (PyPI wheel) MMSA/models/missingTask/TFR_NET/, MMSA/trains/missingTask/TFR_NET.py "
                     "(criterion, the epochs > 1 total), MMSA/data_loader.py (generate_m)",
        "repository": "https://github.com/thuiar/MMSA", "version": "mmsa==2.2.1",
        "patches": [
            "package __init__ files of MMSA, MMSA.models, MMSA.models.missingTask, MMSA.trains, "
            "MMSA.trains.missingTask not run (they import the whole framework)",
            "pynvml (GPU selection in MMSA.utils.functions, unused here) replaced by an empty module",
            "TFR_NET builds BertTextEncoder with its default pretrained='bert-base-uncased': the name is bound to "
            "a temporary tiny BERT folder (random init, vocabulary 128, then perturbed)",
            "MMDataset.generate_m called unbound (it reads nothing of self) on the batch taken as a split",
            f"train-mode pass with dropout 0: {', '.join(patched) or 'nn.Dropout modules'}; BERT config dropouts 0",
        ],
        "bert_config": BERT,
        "missing": {"condition": f"bernoulli/tav/{RATE:g}", "seed": SEED},
        "mmsa_parameters": counts,
        "sims_config_build_error": sims_error,
        "msabench": {"name": "tfr_net", "dataset": "mosi", "preset": "mmsa", "overrides": {
            "dims": DIMS, "seq_lens": SEQ_LENS, "d": 8, "heads": 2, "layers": 2, "temporal_heads": 2,
            "fusion_hidden": (6, 4, 8), "cls_hidden": 16, "text_dropout": 0.0, "attn_dropout": 0.0,
            "attn_dropout_a": 0.0, "attn_dropout_v": 0.0, "relu_dropout": 0.0, "embed_dropout": 0.0,
            "res_dropout": 0.0, "fusion_dropout": 0.0}},
    }, compact=True, model=model)


if __name__ == "__main__":
    main()
