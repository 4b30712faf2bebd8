"""Golden for MCTN against MMSA 2.2.1 (`pip download --no-deps mmsa==2.2.1`, wheel unpacked;
--code is the folder holding `MMSA/`).

    python tools/reference/mctn.py --code /path/to/unpacked/mmsa

MMSA's MCTN in its MOSI configuration (aligned `text` features, no BERT; audio/vision padded to
the text's width) at tiny widths, max_seq_len below the padded length (the cut is exercised).
Intermediates: the first encoder's states and s on the text, the second encoder's states.
Train mode: the model's loss (0.1 x the three translation MSEs + L1); its parts are recomputed
from the translations MMSA returned (hooked). Teacher forcing's `random.random()` draws change
nothing (both branches feed the target) and are not recorded.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from _golden import grads, import_reference, padded, parse_args, perturb_, record_hooks, save_golden

DIMS = (10, 4, 6)  # MMSA mosi (768, 5, 20), narrowed; text the widest, as in MMSA
LENGTHS = [7, 5, 6, 3, 7, 4]  # aligned: every modality padded to 7 steps, zeros after each length
HID, MAX_SEQ_LEN = 5, 6  # MMSA mosi hid_dim 32, max_seq_len 50


def reference_args(hid: int, width: int, max_seq_len: int) -> SimpleNamespace:
    return SimpleNamespace(hid_dim=hid, output_dim=width, max_seq_len=max_seq_len, use_bert=False)


def build(module: Any, args: SimpleNamespace) -> Any:
    model = module.MCTN(args)
    model.seq2seq1.device = model.seq2seq2.device = "cpu"  # MMSA hard-codes 'cuda' for the outputs buffer
    return model


def mmsa_parameter_counts(code: Path, module: Any) -> dict[str, int]:
    """Parameters of MMSA's MCTN built from config_regression.json for each dataset it configures."""
    config = json.loads((code / "MMSA/config/config_regression.json").read_text())["mctn"]
    return {dataset: sum(p.numel() for p in build(module, reference_args(
                p["hid_dim"], p["output_dim"], p["max_seq_len"])).parameters())
            for dataset, p in config["datasetParams"].items()}


def translations(model: Any) -> list[torch.Tensor]:
    """The outputs of each Seq2Seq call, in call order (live list)."""
    calls: list[torch.Tensor] = []
    for seq2seq in (model.seq2seq1, model.seq2seq2):
        seq2seq.register_forward_hook(lambda _m, _i, out: calls.append(out[1]))
    return calls


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    module = import_reference(args.code, "MMSA.models.singleTask.MCTN",
                              stub_packages=("MMSA", "MMSA.models", "MMSA.models.singleTask"))
    gen = torch.Generator().manual_seed(args.seed)
    model = build(module, reference_args(HID, max(DIMS), MAX_SEQ_LEN))
    perturb_(model, gen)
    aligned = torch.tensor([max(LENGTHS)] * len(LENGTHS))
    batch = {
        "text_feats": padded(gen, LENGTHS, DIMS[0]), "audio": padded(gen, LENGTHS, DIMS[1]),
        "vision": padded(gen, LENGTHS, DIMS[2]), "text_lengths": aligned, "audio_lengths": aligned,
        "vision_lengths": aligned, "labels": torch.randn(len(LENGTHS), generator=gen).clamp(-3, 3),
        "index": torch.arange(len(LENGTHS)),
    }
    labels = batch["labels"].view(-1, 1)  # trains/singleTask/MCTN.py: labels.view(-1, 1)
    hooked = record_hooks(model, {"join2": "encoder2#0"})

    def first_call(_m: Any, _i: Any, out: tuple[torch.Tensor, torch.Tensor]) -> None:  # encoder1 on the text
        for key, value in zip(("join1", "s1"), out, strict=True):
            hooked.setdefault(key, value.detach())

    model.encoder1.register_forward_hook(first_call)
    calls = translations(model)

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        return model(batch["text_feats"], batch["audio"], batch["vision"], labels, lengths=None)

    model.eval()
    with torch.no_grad():
        evals = {"pred": run()[1], **{k: v.clone() for k, v in hooked.items()}}
    model.train()
    calls.clear()
    total, pred = run()
    vision_1, text_1, audio_1 = calls
    target = {m: F.pad(x, (0, max(DIMS) - x.shape[2]))[:, :MAX_SEQ_LEN]
              for m, x in (("t", batch["text_feats"]), ("a", batch["audio"]), ("v", batch["vision"]))}
    translation = (0.1 * F.mse_loss(vision_1, target["v"]) + 0.1 * F.mse_loss(text_1, target["t"])
                   + 0.1 * F.mse_loss(audio_1, target["a"]))
    total.backward()
    save_golden(args, "mctn", {
        "weights": dict(model.state_dict()), "batch": batch, "eval": evals,
        "loss": {"total": total, "L1": torch.nn.L1Loss()(pred, labels), "translation": translation},
        "grad": grads(model),
    }, {
        "model": "mctn", "reference": "MMSA 2.2.1 (PyPI wheel) MMSA/models/singleTask/MCTN.py, trains/singleTask/MCTN.py",
        "repository": "https://github.com/thuiar/MMSA", "version": "mmsa==2.2.1",
        "patches": [
            "package __init__ files of MMSA, MMSA.models, MMSA.models.singleTask not run (they import the whole "
            "framework)",
            "Seq2Seq.device set to 'cpu' after building (MMSA hard-codes 'cuda' for its outputs buffer)",
        ],
        "reference_parameters": mmsa_parameter_counts(args.code, module),
        "msabench": {"name": "mctn", "dataset": "mosi", "preset": "mmsa", "overrides": {
            "dims": DIMS, "hid_dim": HID, "max_seq_len": MAX_SEQ_LEN}},
    }, model=model)


if __name__ == "__main__":
    main()
