"""What every reference script shares: import the reference code from --code DIR, perturb its
model, build the fixed padded batch, and write the golden (safetensors + JSON metadata).

A golden is `<model>.safetensors` with tensors under prefixes
  weights/<reference name>   the perturbed reference state (parameters and buffers)
  batch/<Batch field>        the fixed batch, in msabench's `Batch` field names
  eval/<name>                eval-mode outputs and named intermediates
  loss/<part>                train-mode loss parts (dropout 0)
  grad/<reference name>      gradients of the train-mode total loss
  state/<name>               model-specific extra state (e.g. Self-MM's label memory)
and `<model>.json`: repository, commit or version, sha256 of every imported reference file,
versions, seed, the build-time patches, and the msabench configuration that matches.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import platform
import sys
import tempfile
import types
import zlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # reference code asking for a hub checkpoint fails at once

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = ROOT / "tests" / "golden_ref"
PERTURB_STD = 0.02  # N(0, 0.02^2) on every parameter: reference inits are degenerate (zero biases, copies)
TINY_BERT: dict[str, Any] = {  # small enough that a golden with BERT stays well under 2 MB
    "vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
    "max_position_embeddings": 32, "type_vocab_size": 2,
    "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,  # SDPA reads the float, not nn.Dropout
}


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--code", type=Path, required=True, help="checkout of the reference code (import root)")
    p.add_argument("--out", type=Path, default=GOLDEN_DIR, help="folder for <model>.safetensors/.json")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if not args.code.is_dir():
        p.error(f"--code {args.code}: no such directory")
    torch.manual_seed(args.seed)  # everything random from here on (tiny BERT init included) is seeded
    return args


def _unused(name: str) -> type:
    if name.startswith("__"):
        raise AttributeError(name)

    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError(f"{name} is a stub: the reference code path used here should not call it")

    return type(name, (), {"__init__": fail})


def import_reference(code: Path, module: str, stub_packages: tuple[str, ...] = (),
                     stub_modules: tuple[str, ...] = ()) -> types.ModuleType:
    """Import `module` from `code` (also put on sys.path). Packages in `stub_packages` get an
    empty `__init__` (their real one imports the whole framework); modules in `stub_modules`
    (third-party imports the compared code never calls) become modules whose every attribute
    is a class that fails when built. Record both as patches in the golden's metadata."""
    if str(code) not in sys.path:
        sys.path.insert(0, str(code))
    for name in stub_packages:
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(code / name.replace(".", "/"))]
        sys.modules[name] = pkg
    for name in stub_modules:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            stub = sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
            stub.__getattr__ = _unused  # type: ignore[attr-defined,method-assign]
            stub.__path__ = []  # type: ignore[attr-defined]
    return importlib.import_module(module)


def zero_dropout_(model: nn.Module) -> list[str]:
    """Dropout 0 everywhere: nn.Dropout modules, nn.MultiheadAttention's float, and every float
    module attribute named *dropout* (functional dropout reads those). Returns what was set."""
    changed = []
    for path, m in model.named_modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = 0.0
            continue
        for attr, value in vars(m).items():
            if "dropout" in attr.lower() and isinstance(value, float) and value != 0.0:
                setattr(m, attr, 0.0)
                changed.append(f"{path}.{attr}")
    return changed


def record_hooks(model: nn.Module, spec: dict[str, str],
                 transform: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """Capture module outputs while the model runs: spec maps a golden name to "path" or
    "path#i" (element i of a tuple output); `transform` optionally maps a name to a function
    applied first (e.g. a sequence-first output made batch-first). Returns the live dict."""
    captured: dict[str, torch.Tensor] = {}
    for key, where in spec.items():
        path, _, index = where.partition("#")
        fn = (transform or {}).get(key, lambda t: t)

        def hook(_m: nn.Module, _i: Any, out: Any, key: str = key, index: str = index, fn: Any = fn) -> None:
            value = out[int(index)] if index else (out if torch.is_tensor(out) else out[0])
            captured[key] = fn(value).detach()

        model.get_submodule(path).register_forward_hook(hook)
    return captured


def perturb_(model: nn.Module, gen: torch.Generator) -> None:
    """Every parameter += N(0, 0.02^2); BatchNorm running mean/var moved off 0/1."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * PERTURB_STD)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None and m.running_var is not None:
                m.running_mean.add_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.mul_(torch.exp(torch.randn(m.running_var.shape, generator=gen) * 0.2))


def round_to_half_(model: nn.Module) -> None:
    """Make every parameter and BatchNorm running statistic exactly representable in float16
    (before running the reference), so the golden stores them at half size with nothing lost.
    Other buffers (constant tables such as sinusoidal positions) are left exact."""
    bn_stats = [t for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                for t in (m.running_mean, m.running_var) if t is not None]
    with torch.no_grad():
        for t in [*model.parameters(), *bn_stats]:
            t.copy_(t.half().float())


def _half_if_exact(t: torch.Tensor) -> torch.Tensor:
    return t.half() if t.is_floating_point() and torch.equal(t, t.half().float()) else t


FINGERPRINT_DIRECTIONS = 8


def grad_fingerprint(name: str, grad: torch.Tensor) -> torch.Tensor:
    """(8,) float64 projections of a gradient on fixed Gaussian directions seeded by its name
    (crc32): the test recomputes them from msabench's gradient; any change moves them."""
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    directions = torch.randn(FINGERPRINT_DIRECTIONS, grad.numel(), generator=gen, dtype=torch.float64)
    return directions @ grad.detach().reshape(-1).double()


def padded(gen: torch.Generator, lengths: list[int], dim: int) -> torch.Tensor:
    """(B, max(lengths), dim) features, zero after each sample's true length."""
    x = torch.randn(len(lengths), max(lengths), dim, generator=gen)
    for i, n in enumerate(lengths):
        x[i, n:] = 0
    return x


def token_batch(gen: torch.Generator, lengths: list[int], width: int, vocab: int) -> dict[str, torch.Tensor]:
    """BERT inputs: [CLS] words [SEP] then padding (id 0, mask 0); `lengths` count [CLS]/[SEP]."""
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(5, vocab, (n,), generator=gen)
        ids[i, 0], ids[i, n - 1] = 1, 2  # [CLS], [SEP] of the tiny vocabulary
        mask[i, :n] = 1
    return {"text_ids": ids, "text_mask": mask, "text_segment": torch.zeros_like(ids)}


def tiny_bert_dir(vocab_words: int | None = None) -> Path:
    """A random-init tiny BERT checkpoint folder (config, weights, vocab.txt) for reference
    code that calls `from_pretrained(path)`; its weights are perturbed and saved afterwards."""
    from transformers import BertConfig, BertModel

    path = Path(tempfile.mkdtemp(prefix="tiny_bert_"))
    config = BertConfig(**TINY_BERT)
    BertModel(config).save_pretrained(path)
    words = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"] + [f"w{i}" for i in range(TINY_BERT["vocab_size"] - 5)]
    (path / "vocab.txt").write_text("\n".join(words[: vocab_words or len(words)]) + "\n")
    return path


def bert_base_dir() -> Path:
    """A random-init bert-base-uncased-shaped checkpoint folder (transformers' default BertConfig)
    for building reference code at its real size to count its parameters; delete it after use."""
    from transformers import BertConfig, BertModel

    path = Path(tempfile.mkdtemp(prefix="bert_base_"))
    BertModel(BertConfig()).save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) + "\n")
    return path


def tiny_bert_config():
    """The tiny BERT config, eager-free: SDPA attention, as msabench builds it."""
    from transformers import BertConfig

    config = BertConfig(**TINY_BERT)
    config._attn_implementation = "sdpa"
    return config


def grads(model: nn.Module) -> dict[str, torch.Tensor]:
    """Gradient of every parameter that received one, by reference name."""
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def imported_files(code: Path) -> dict[str, str]:
    """sha256 of every file under `code` that is loaded as a module now."""
    code = code.resolve()
    out = {}
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if f and Path(f).resolve().is_relative_to(code):
            out[str(Path(f).resolve().relative_to(code))] = _sha256(Path(f))
    return dict(sorted(out.items()))


def versions() -> dict[str, str]:
    import numpy
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": numpy.__version__}


def bert_attention(model: nn.Module) -> list[str]:
    """The attention implementations of the transformers models inside `model` (SDPA and eager
    differ by ~1e-6, so the test builds msabench's BERT with the same one)."""
    from transformers import PreTrainedModel

    return sorted({m.config._attn_implementation for m in model.modules() if isinstance(m, PreTrainedModel)})


def _zero_fairseq_dummies(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fairseq's `embed_positions._float_tensor` is an uninitialised 1-element buffer (garbage
    memory, never read for its value): stored as 0 so that goldens regenerate byte-identical."""
    return {k: torch.zeros_like(v) if k.endswith("._float_tensor") else v for k, v in weights.items()}


def save_golden(args: argparse.Namespace, name: str, sections: dict[str, dict[str, torch.Tensor]],
                meta: dict[str, Any], compact: bool = False, model: nn.Module | None = None) -> None:
    """Write `<out>/<name>.safetensors` (sections flattened to "section/key") and `<name>.json`.
    `compact` (for models too large for full goldens): weights that are float16-exact (see
    `round_to_half_`) stored as float16, gradients as `gradfp/` fingerprints."""
    from safetensors.torch import save_file

    if compact:
        sections = {**{k: v for k, v in sections.items() if k != "grad"},
                    "weights": {k: _half_if_exact(t) for k, t in sections["weights"].items()},
                    "gradfp": {k: grad_fingerprint(k, g) for k, g in sections["grad"].items()}}
        meta = {**meta, "compact": "float16-exact weights stored as float16; gradients as 8 projections on directions seeded by crc32(name)"}

    sections = {**sections, "weights": _zero_fairseq_dummies(sections["weights"])}
    flat = {f"{sec}/{k}": v.detach().contiguous().clone() for sec, d in sections.items() for k, v in d.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(flat, str(args.out / f"{name}.safetensors"))
    if model is not None and bert_attention(model):
        meta = {**meta, "bert_attention": bert_attention(model)}
    meta = {**meta, "seed": args.seed, "imported_files": imported_files(args.code), "versions": versions(),
            "perturbation": f"every parameter + N(0, {PERTURB_STD}^2); BatchNorm running stats moved"}
    (args.out / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    size = (args.out / f"{name}.safetensors").stat().st_size
    print(f"wrote {args.out / name}.safetensors ({size / 1e6:.2f} MB, {len(flat)} tensors)")


class RecordedDraws:
    """Context manager recording every `torch.randn_like` result (e.g. MoE gating noise), so
    the test can replay the reference's exact draws into msabench's train-mode pass."""

    def __init__(self) -> None:
        self.draws: list[torch.Tensor] = []

    def __enter__(self) -> RecordedDraws:
        self._orig = torch.randn_like

        def recording(t: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            out = self._orig(t, *args, **kwargs)
            self.draws.append(out.detach().clone())
            return out

        torch.randn_like = recording  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        torch.randn_like = self._orig  # type: ignore[assignment]

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"randn_like.{i}": t for i, t in enumerate(self.draws)}


def old_transformers_names() -> str:
    """Older reference code imports helpers that transformers 4.x moved from `modeling_utils`
    to `pytorch_utils`; make the old import path work again. Returns the patch's description."""
    import transformers.modeling_utils as mu
    import transformers.pytorch_utils as pu

    names = ("apply_chunking_to_forward", "find_pruneable_heads_and_indices", "prune_linear_layer")
    for name in names:
        if not hasattr(mu, name):
            setattr(mu, name, getattr(pu, name))
    return f"transformers.modeling_utils.{{{', '.join(names)}}} aliased to transformers.pytorch_utils (moved in 4.x)"
