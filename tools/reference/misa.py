"""Golden for MISA against MMSA 2.2.1 (--code: the unpacked `mmsa==2.2.1` wheel).

    python tools/reference/misa.py --code /path/to/unpacked/mmsa

MMSA's MISA model (MOSI configuration: use_bert, use_cmd_sim, LSTM cells, unaligned data; tiny
BERT through MMSA's own BertTextEncoder.from_pretrained on a temporary checkpoint folder;
hidden_size 16 instead of 128 to keep the golden small) and MMSA's MISA trainer for the loss:
the MSE task loss and its get_diff_loss, get_cmd_loss, get_recon_loss with MMSA's MOSI weights.
Dropout 0 in the train-mode pass. Audio and vision are longer than the text, as in
unaligned_50: MMSA packs them with the text lengths. Gradients are stored as fingerprints
(the fusion transformer's 2048-wide feed-forward dominates the size).
"""

from __future__ import annotations

import shutil
from types import SimpleNamespace

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
from torch import nn

DIMS = (TINY_BERT["hidden_size"], 5, 20)
HIDDEN = 16
WIDTH = 12
LENGTHS = {"t": [12, 7, 9, 4, 11, 6], "a": [14, 9, 12, 5, 11, 14], "v": [12, 12, 10, 6, 13, 10]}
WEIGHTS = {"diff_weight": 0.1, "sim_weight": 0.3, "recon_weight": 1.0}  # config_regression.json misa mosi
HOOKS = {"utt_t_orig": "project_t", "utt_v_orig": "project_v", "utt_a_orig": "project_a",
         "private_t": "private_t", "private_v": "private_v", "private_a": "private_a",
         "transformer": "transformer_encoder"}  # the transformer's output is sequence-first on both sides


def reference_args(bert_dir: str) -> SimpleNamespace:
    return SimpleNamespace(
        use_bert=True, use_finetune=True, transformers="bert", pretrained=bert_dir, feature_dims=DIMS,
        train_mode="regression", num_classes=1, dropout=0.0, rnncell="lstm", use_cmd_sim=True,
        hidden_size=HIDDEN, reverse_grad_weight=0.8, **WEIGHTS, dataset_name="mosi", device=torch.device("cpu"),
    )


def mmsa_parameters(model_module) -> dict[str, int]:
    """MMSA's MISA at its MOSI size (bert-base, feature dims 768/5/20, hidden 128): parameters built
    and those the trainer's loss reaches (the BERT pooler, sp_discriminator, tlayer_norm get none)."""
    bert = bert_base_dir()
    try:
        ref = model_module.MISA(SimpleNamespace(**{**vars(reference_args(str(bert))), "feature_dims": (768, 5, 20),
                                                   "hidden_size": 128}))
    finally:
        shutil.rmtree(bert)
    unused = ("bertmodel.model.pooler.", "sp_discriminator.", "tlayer_norm.")
    return {"total": sum(p.numel() for p in ref.parameters()),
            "with_grad": sum(p.numel() for n, p in ref.named_parameters() if not n.startswith(unused))}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    stubs = ("MMSA", "MMSA.models", "MMSA.models.singleTask", "MMSA.trains", "MMSA.trains.singleTask")
    model_module = import_reference(args.code, "MMSA.models.singleTask.MISA", stubs, stub_modules=("pynvml",))
    trainer_module = import_reference(args.code, "MMSA.trains.singleTask.MISA")
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    ref_args = reference_args(str(tiny_bert_dir()))
    model = model_module.MISA(ref_args)
    # MMSA hard-codes project_t's input width as 768 (bert-base); the tiny BERT's is DIMS[0]
    model.project_t.project_t = nn.Linear(DIMS[0], HIDDEN)
    perturb_(model, gen)
    round_to_half_(model)
    trainer = trainer_module.MISA(ref_args)
    trainer.model = SimpleNamespace(Model=model)  # the trainer reads intermediates from model.Model

    tokens = token_batch(gen, LENGTHS["t"], WIDTH, TINY_BERT["vocab_size"])
    batch = {
        **tokens, "audio": padded(gen, LENGTHS["a"], DIMS[1]), "vision": padded(gen, LENGTHS["v"], DIMS[2]),
        "audio_lengths": torch.tensor(LENGTHS["a"]), "vision_lengths": torch.tensor(LENGTHS["v"]),
        "labels": torch.randn(len(LENGTHS["t"]), generator=gen).clamp(-3, 3),
        "index": torch.arange(len(LENGTHS["t"])),
    }
    text = torch.stack([tokens["text_ids"], tokens["text_mask"], tokens["text_segment"]], dim=1).float()
    hooked = record_hooks(model, HOOKS)

    model.eval()
    with torch.no_grad():
        out = model(text, batch["audio"], batch["vision"])
    evals = {"M": out["M"], **{k: v.clone() for k, v in hooked.items()},
             **{f"shared_{m}": getattr(model, f"utt_shared_{m}").clone() for m in "tva"},
             **{f"recon_{m}": getattr(model, f"utt_{m}_recon").clone() for m in "tva"}}
    patched = zero_dropout_(model)
    model.train()
    out = model(text, batch["audio"], batch["vision"])
    losses = {"cls": trainer.criterion(out["M"], batch["labels"].view(-1, 1)), "diff": trainer.get_diff_loss(),
              "cmd": trainer.get_cmd_loss(), "recon": trainer.get_recon_loss()}
    losses["total"] = (losses["cls"] + WEIGHTS["diff_weight"] * losses["diff"] + WEIGHTS["sim_weight"] * losses["cmd"]
                       + WEIGHTS["recon_weight"] * losses["recon"])  # do_train's sum (use_cmd_sim)
    losses["total"].backward()
    save_golden(args, "misa", {
        "weights": dict(model.state_dict()), "batch": batch, "eval": evals, "loss": losses, "grad": grads(model),
    }, {
        "model": "misa", "reference": "MMSA 2.2.1 (PyPI wheel) MMSA/models/singleTask/MISA.py, "
                                      "MMSA/trains/singleTask/MISA.py (criterion, get_diff/cmd/recon_loss)",
        "repository": "https://github.com/thuiar/MMSA", "version": "mmsa==2.2.1",
        "patches": [
            "package __init__ files of MMSA, MMSA.models, MMSA.models.singleTask, MMSA.trains, "
            "MMSA.trains.singleTask not run (they import the whole framework)",
            "pynvml (GPU selection in MMSA.utils.functions, unused here) replaced by an empty module",
            "BertTextEncoder.from_pretrained reads a temporary tiny BERT folder (random init, then perturbed)",
            f"project_t's Linear(768, hidden) (768 hard-coded for bert-base) rebuilt as Linear({DIMS[0]}, hidden) "
            "for the tiny BERT",
            "weights rounded to float16-exact values after the perturbation (stored as float16)",
            f"train-mode pass with dropout 0: {', '.join(patched) or 'nn.Dropout modules'}",
        ],
        "bert_config": TINY_BERT,
        "mmsa_parameters_mosi": mmsa_parameters(model_module),
        "msabench": {"name": "misa", "dataset": "mosi", "preset": "mmsa", "overrides": {
            "dims": DIMS, "hidden_size": HIDDEN, "dropout": 0.0, "transformer_dropout": 0.0}},
    }, compact=True, model=model)


if __name__ == "__main__":
    main()
