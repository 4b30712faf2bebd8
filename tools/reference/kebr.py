"""Golden for KEBR (no pre-training) against aoqzhu/KEBR@171de2d (--code: a checkout of it).

    git --git-dir=<bare clone> archive 171de2d | tar -x -C kebr
    python tools/reference/kebr.py --code kebr

`models.py` `PredictModel` as `main.py` builds it (BERT + the TCMF `CrossmodalEncoder`: one
layer shared by 4 passes, embed 256; fc 256), on the tiny BERT, with MMSA MOSI widths (audio
5-d, vision 20-d) and unaligned, zero-padded sequences. No pre-training: the TCMF and the head
start from their (perturbed) init, as `baseline.py` would if it ran. Train-mode loss as
`main.py` `train_epoch` (L1 + the MCC term, dropout 0). The widths make `matrix_alignment`
tile audio and fire its video-slot quirk (models.py:54), as on MMSA pickles.
"""

from __future__ import annotations

import math

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
    tiny_bert_dir,
    token_batch,
    zero_dropout_,
)

DIMS = (TINY_BERT["hidden_size"], 5, 20)
WIDTH = 12  # token columns; flattened text 12 x 32 = 384 wide
LENGTHS = {"t": [12, 7, 9, 4, 11, 6], "a": [14, 9, 12, 5, 11, 14], "v": [9, 9, 7, 3, 6, 8]}  # audio 70, video 180 wide
EMBED_DIM, FC_DIM, NUM_LAYERS, ANGLE = 256, 256, 4, 0.4  # main.py:45-46, models.py:114, main.py:95
HOOKS = {"text": "pretrained_language_model", "fused": "crossmodal_encoder"}


def mcc_loss(sim_a: list[torch.Tensor], sim_v: list[torch.Tensor], bs: int) -> torch.Tensor:
    """main.py:119-128 `sim_sum` / bs, verbatim."""
    sim_sum = [
        torch.abs(torch.cos(math.pi * ((a + b) / 2 + ANGLE) * torch.exp(abs(a - b) * 0.5))) if a >= 0 and b >= 0
        else 1 + torch.abs(a) + torch.abs(b) for a, b in zip(sim_a, sim_v)]
    return sum(sim_sum) / bs  # type: ignore[return-value]


def shared_layer_grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Gradients by name; the shared TCMF layer's (torch names it `encoderlayer`, its first
    registration) stored under `layers.0`, the name msabench's shared ModuleList gives it."""
    return {k.replace(".encoderlayer.", ".layers.0."): g for k, g in grads(model).items()}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    kebr = import_reference(args.code, "models")
    bert_dir = str(tiny_bert_dir())
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    encoder = kebr.CrossmodalEncoder(DIMS[0], DIMS[1], DIMS[2], EMBED_DIM, NUM_LAYERS)
    model = kebr.PredictModel(kebr.PretrainedLanguageModel(bert_dir), encoder, DIMS[0], FC_DIM)
    zeroed = zero_dropout_(model)
    perturb_(model, gen)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    tokens = token_batch(gen, LENGTHS["t"], WIDTH, TINY_BERT["vocab_size"])
    batch = {
        **tokens, "audio": padded(gen, LENGTHS["a"], DIMS[1]), "vision": padded(gen, LENGTHS["v"], DIMS[2]),
        "audio_lengths": torch.tensor(LENGTHS["a"]), "vision_lengths": torch.tensor(LENGTHS["v"]),
        "labels": torch.tensor([2.4, -1.8, 0.6, 0.0, -0.4, 1.2]), "index": torch.arange(6),
    }
    hooked = record_hooks(model, HOOKS)

    def run() -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        return model(tokens["text_ids"], tokens["text_segment"], tokens["text_mask"], batch["audio"], batch["vision"])

    model.eval()
    with torch.no_grad():
        pred, sim_a, sim_v = run()
    evals = {"pred": pred, "sim_a": torch.stack(sim_a), "sim_v": torch.stack(sim_v), **hooked}
    model.train()
    pred, sim_a, sim_v = run()
    l1 = torch.nn.L1Loss()(pred, batch["labels"].view(-1, 1))  # main.py:127 criterion(output, label)
    mcc = mcc_loss(sim_a, sim_v, len(LENGTHS["t"]))
    (l1 + mcc).backward()
    branches = ["a,b >= 0" if a >= 0 and b >= 0 else "else" for a, b in zip(sim_a, sim_v)]
    save_golden(args, "kebr", {
        "weights": weights, "batch": batch, "eval": evals,
        "loss": {"L1": l1, "MCC": mcc, "total": l1 + mcc}, "grad": shared_layer_grads(model),
    }, {
        "model": "kebr", "reference": "aoqzhu/KEBR@171de2d models.py PredictModel (loss as main.py train_epoch); "
                                      "no pre-training",
        "repository": "https://github.com/aoqzhu/KEBR", "commit": "171de2d9dfdff9cb564bc0160fba41ea56c90cd9",
        "mcc_branches": branches,
        "grad_names": "the shared TCMF layer's gradients under crossmodal_encoder.layers.0 (torch lists them under encoderlayer)",
        "patches": [
            "PretrainedLanguageModel's AutoModel.from_pretrained reads a temporary tiny BERT folder",
            "PredictModel built from a fresh CrossmodalEncoder (main.py loads them from a pre-training checkpoint)",
            f"dropout set to 0 after building: every nn.Dropout module, and the floats {zeroed}",
        ],
        "bert_config": TINY_BERT,
        "msabench": {"name": "kebr", "dataset": "mosi", "preset": "official", "overrides": {
            "dims": DIMS, "fusion_dropout": 0.0, "head_dropout": 0.0}},
    }, model=model)


if __name__ == "__main__":
    main()
