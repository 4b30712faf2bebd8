"""Golden for MMIM against MMSA 2.2.1 (--code: the unpacked `mmsa==2.2.1` wheel).

    python tools/reference/mmim.py --code /path/to/unpacked/mmsa

MMSA's MMIM model (MOSI configuration: unaligned, bidirectional 1-layer LSTMs, widths as MMSA;
tiny BERT through MMSA's own BertTextEncoder.from_pretrained on a temporary checkpoint folder)
and the main-phase loss of MMSA's MMIM trainer (`train_others` at its third batch, so the
entropy term H counts): L1 + alpha nce - beta lld - beta H, with a memory of one previous
batch's positive / negative projections; the phase-1 loss (`train_mmilb`) is -lld of the same
forward. Dropout 0 in the train-mode pass. Weights float16-exact, gradients as fingerprints.
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
    round_to_half_,
    save_golden,
    tiny_bert_dir,
    token_batch,
    zero_dropout_,
)
from torch import nn

DIMS = (TINY_BERT["hidden_size"], 5, 20)
WIDTH = 12
LENGTHS = {"t": [12, 7, 9, 4, 11, 6, 10, 8], "a": [14, 9, 12, 5, 11, 14, 7, 13], "v": [12, 12, 10, 6, 13, 10, 9, 4]}
MOSI = {  # MMSA config_regression.json mmim mosi
    "n_layer": 1, "cpc_layers": 1, "d_vh": 16, "d_ah": 16, "d_vout": 16, "d_aout": 16, "bidirectional": True,
    "d_prjh": 128, "mmilb_mid_activation": "ReLU", "mmilb_last_activation": "Tanh", "cpc_activation": "Tanh",
    "dropout_a": 0.1, "dropout_v": 0.1, "dropout_prj": 0.0, "add_va": False, "alpha": 0.1, "beta": 0.1,
}
I_BATCH, MEM_ROWS = 2, 6  # train_others' batch index (> mem_size 1: H counts); rows of the stored batch


def reference_args(bert_dir: str, dims: tuple[int, int, int] = DIMS) -> SimpleNamespace:
    return SimpleNamespace(
        use_bert=True, use_finetune=True, transformers="bert", pretrained=bert_dir, feature_dims=dims,
        need_data_aligned=False, train_mode="regression", num_classes=1, **MOSI,
    )


def mmsa_parameters(model_module) -> dict[str, int]:
    """MMSA's MMIM at its MOSI size (bert-base, 768/5/20): parameters built and those that get a
    gradient (all but the BERT pooler)."""
    bert = bert_base_dir()
    try:
        ref = model_module.MMIM(reference_args(str(bert), (768, 5, 20)))
    finally:
        shutil.rmtree(bert)
    return {"total": sum(p.numel() for p in ref.parameters()),
            "with_grad": sum(p.numel() for n, p in ref.named_parameters() if ".pooler." not in n)}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    stubs = ("MMSA", "MMSA.models", "MMSA.models.singleTask")
    model_module = import_reference(args.code, "MMSA.models.singleTask.MMIM", stubs)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = model_module.MMIM(reference_args(str(tiny_bert_dir())))
    perturb_(model, gen)
    round_to_half_(model)

    n = len(LENGTHS["t"])
    tokens = token_batch(gen, LENGTHS["t"], WIDTH, TINY_BERT["vocab_size"])
    labels = torch.tensor([1.4, -0.6, 2.2, -1.8, 0.0, 0.8, -2.6, 0.4])  # both signs and a 0 (in neither class)
    batch = {
        **tokens, "audio": padded(gen, LENGTHS["a"], DIMS[1]), "vision": padded(gen, LENGTHS["v"], DIMS[2]),
        "audio_lengths": torch.tensor(LENGTHS["a"]), "vision_lengths": torch.tensor(LENGTHS["v"]),
        "labels": labels, "index": torch.arange(n),
    }
    text = torch.stack([tokens["text_ids"], tokens["text_mask"], tokens["text_segment"]], dim=1).float()
    audio, vision = (batch["audio"], batch["audio_lengths"]), (batch["vision"], batch["vision_lengths"])
    # the previous batch's tanh-projected positives / negatives (train_others' memory, mem_size 1)
    memory = {p: {side: torch.rand(MEM_ROWS, MOSI["d_vout"] // 4, generator=gen) * 1.6 - 0.8 for side in ("pos", "neg")}
              for p in ("tv", "ta")}

    model.eval()
    with torch.no_grad():
        out = model(text, audio, vision)
    evals = {k: out[k] for k in ("M", "Feature_t", "Feature_a", "Feature_v", "Feature_f", "lld", "nce")}
    patched = zero_dropout_(model)
    model.train()
    mem = {p: {side: [t] for side, t in d.items()} for p, d in memory.items()} | {"va": None}
    out = model(text, audio, vision, y=labels.view(-1, 1), mem=mem)
    y_loss = nn.L1Loss()(out["M"], labels.view(-1, 1))  # trains/singleTask/MMIM.py criterion
    total = y_loss + MOSI["alpha"] * out["nce"] - MOSI["beta"] * out["lld"]  # train_others, contrast true
    total = total - MOSI["beta"] * out["H"]  # i_batch > mem_size
    total.backward()
    state = {f"before.{p}.{side}": t for p, d in memory.items() for side, t in d.items()}
    state |= {f"after.{p}.{side}": out["pn_dic"][p][side] for p in ("tv", "ta") for side in ("pos", "neg")}
    save_golden(args, "mmim", {
        "weights": dict(model.state_dict()), "batch": batch, "eval": evals, "grad": grads(model), "state": state,
        "loss": {"L1": y_loss, "nce": out["nce"], "lld": out["lld"], "H": out["H"], "total": total,
                 "mmilb_total": -out["lld"]},  # train_mmilb's loss
    }, {
        "model": "mmim", "reference": "MMSA 2.2.1 (PyPI wheel) MMSA/models/singleTask/MMIM.py, "
                                      "MMSA/trains/singleTask/MMIM.py (train_others' and train_mmilb's losses)",
        "repository": "https://github.com/thuiar/MMSA", "version": "mmsa==2.2.1", "i_batch": I_BATCH,
        "patches": [
            "package __init__ files of MMSA, MMSA.models, MMSA.models.singleTask not run (they import the whole framework)",
            "BertTextEncoder.from_pretrained reads a temporary tiny BERT folder (random init, then perturbed)",
            "weights rounded to float16-exact values after the perturbation (stored as float16)",
            f"train-mode pass with dropout 0: {', '.join(patched) or 'nn.Dropout modules (dropout_prj 0)'}",
            "the trainer's loss lines are restated here (train_others loops over a DataLoader)",
        ],
        "bert_config": TINY_BERT,
        "mmsa_parameters_mosi": mmsa_parameters(model_module),
        "msabench": {"name": "mmim", "dataset": "mosi", "preset": "mmsa", "overrides": {
            "dims": DIMS, "dropout_prj": 0.0}},
    }, compact=True, model=model)


if __name__ == "__main__":
    main()
