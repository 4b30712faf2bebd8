"""What tools/reference/{tfn,lmf,mtfn,mlmf}.py share: MMSA 2.2.1's TFN-family model built at
small widths in one MMSA configuration, MMSA's own time-averaging of audio and vision
(`data_loader.py` `__normalize`, run on the padded batch), MMSA's trainer criterion, and the
parameter counts of MMSA's model in every configuration `config_regression.json` has for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from _golden import grads, import_reference, padded, perturb_, save_golden

DIMS = (16, 5, 20)  # text / audio / vision feature widths (MMSA mosi: 768/5/20, narrowed)
LENGTHS = {"t": [10, 7, 9, 4, 10, 6], "a": [14, 9, 12, 5, 11, 14], "v": [12, 12, 7, 3, 9, 10]}
STUBS = ("MMSA", "MMSA.models", "MMSA.models.singleTask", "MMSA.models.multiTask", "MMSA.trains",
         "MMSA.trains.singleTask", "MMSA.trains.multiTask")
PATCHES = ["package __init__ files of MMSA, MMSA.models, MMSA.models.singleTask/multiTask, MMSA.trains and "
           "MMSA.trains.singleTask/multiTask not run (they import the whole framework); pynvml stubbed (GPU "
           "query of MMSA.utils, never called); no reference code changed"]


def reference_args(dataset: str, fields: dict[str, Any]) -> SimpleNamespace:
    return SimpleNamespace(feature_dims=DIMS, train_mode="regression", num_classes=1, dataset_name=dataset,
                           **fields)


def make_batch(gen: torch.Generator, multitask: bool) -> dict[str, torch.Tensor]:
    """The padded batch in msabench's Batch field names (unimodal labels for the multi-task models)."""
    batch = {
        "text_feats": padded(gen, LENGTHS["t"], DIMS[0]),
        "audio": padded(gen, LENGTHS["a"], DIMS[1]),
        "vision": padded(gen, LENGTHS["v"], DIMS[2]),
        **{f"{k}_lengths": torch.tensor(LENGTHS[m]) for k, m in (("text", "t"), ("audio", "a"), ("vision", "v"))},
        "labels": torch.randn(6, generator=gen).clamp(-1, 1),
        "index": torch.arange(6),
    }
    if multitask:
        batch.update({f"labels_{m}": torch.randn(6, generator=gen).clamp(-1, 1) for m in "tav"})
    return batch


def mmsa_inputs(code: Path, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(text, audio, vision) as MMSA's data loader hands them to the model: audio and vision
    averaged by MMDataset.__normalize itself (run on a bare instance holding the batch)."""
    loader = import_reference(code, "MMSA.data_loader", STUBS)
    ds = object.__new__(loader.MMDataset)
    ds.audio, ds.vision = batch["audio"].numpy().copy(), batch["vision"].numpy().copy()
    ds._MMDataset__normalize()
    return batch["text_feats"], torch.from_numpy(ds.audio), torch.from_numpy(ds.vision)


def mmsa_param_counts(code: Path, model_cls: type, key: str) -> dict[str, dict[str, int]]:
    """MMSA's model built in each dataset configuration of config_regression.json[key]: every
    parameter (total) and MMSA's utils.count_parameters (requires_grad only)."""
    utils = import_reference(code, "MMSA.utils", STUBS, stub_modules=("pynvml",))
    config = json.loads((code / "MMSA" / "config" / "config_regression.json").read_text())
    out = {}
    for dataset, fields in config[key]["datasetParams"].items():
        dims = config["datasetCommonParams"][dataset]["unaligned"]["feature_dims"]
        args = SimpleNamespace(**{**vars(reference_args(dataset, fields)), "feature_dims": dims})
        model = model_cls(args)
        out[dataset] = {"total": sum(p.numel() for p in model.parameters()),
                        "count_parameters": utils.count_parameters(model)}
    return out


def write_golden(args: Any, name: str, model: torch.nn.Module, batch: dict[str, torch.Tensor],
                 loss_of: Any, meta: dict[str, Any]) -> None:
    """Perturb, run eval then train mode (dropout 0) on MMSA's inputs, save the golden. The
    weights are taken before the train-mode pass (it moves the BatchNorm running statistics)."""
    gen = torch.Generator().manual_seed(args.seed + 1)
    perturb_(model, gen)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = mmsa_inputs(args.code, batch)
    model.eval()
    with torch.no_grad():
        out = model(*inputs)
    evals = {k: v for k, v in out.items() if torch.is_tensor(v)}
    model.train()
    losses = loss_of(model(*inputs))
    losses["total"].backward()
    save_golden(args, name, {"weights": weights, "batch": batch, "eval": evals, "loss": losses, "grad": grads(model)},
                {**meta, "repository": "https://github.com/thuiar/MMSA", "version": "mmsa==2.2.1", "patches": PATCHES},
                model=model)


def multitask_loss_of(trainer: Any, ref: SimpleNamespace, batch: dict[str, torch.Tensor]) -> Any:
    """trains/multiTask/MTFN.py and MLMF.py's loss: sum over tasks "MTAV" of args.<task> x
    criterion(outputs[task], labels[task]); parts unweighted, then the total."""
    labels = {"M": batch["labels"], "T": batch["labels_t"], "A": batch["labels_a"], "V": batch["labels_v"]}

    def loss_of(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        parts = {m: trainer.criterion(out[m], labels[m].view(-1, 1)) for m in trainer.args.tasks}
        total = 0.0
        for m in trainer.args.tasks:
            total += getattr(ref, m) * parts[m]
        return {**parts, "total": total}

    return loss_of


def multitask_golden(args: Any, name: str, cls: str, fields: dict[str, Any], overrides: dict[str, Any]) -> None:
    """MTFN / MLMF in MMSA's SIMS configuration at small widths, dropout 0."""
    module = import_reference(args.code, f"MMSA.models.multiTask.{cls}", STUBS)
    trainer_module = import_reference(args.code, f"MMSA.trains.multiTask.{cls}", STUBS, stub_modules=("pynvml",))
    counts = mmsa_param_counts(args.code, getattr(module, cls), name)
    torch.manual_seed(args.seed)
    ref = reference_args("sims", fields)
    model = getattr(module, cls)(ref)
    batch = make_batch(torch.Generator().manual_seed(args.seed), multitask=True)
    trainer = getattr(trainer_module, cls)(ref)  # asserts dataset_name == "sims"; sets args.tasks = "MTAV"
    write_golden(args, name, model, batch, multitask_loss_of(trainer, ref, batch), {
        "model": name, "reference": f"MMSA 2.2.1 (PyPI wheel) MMSA/models/multiTask/{cls}.py, trains/multiTask/{cls}.py",
        "mmsa_params": counts,
        "msabench": {"name": name, "dataset": "sims", "preset": "mmsa", "overrides": {"dims": list(DIMS), **overrides}},
    })
