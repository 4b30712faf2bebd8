"""Golden for MSAmba against the third-party copy jien0404/msa@915d81c it was reconstructed from,
with mamba-ssm's pure-PyTorch reference scan (`selective_scan_ref`) standing in for the CUDA kernel.

    git --git-dir=<bare clone of jien0404/msa> archive 915d81c | tar -x -C msa
    git --git-dir=<bare clone of state-spaces/mamba> archive v2.2.2 | tar -x -C mamba
    pip install --target DEPS einops   # the copy and mamba-ssm import it (the test does not)
    PYTHONPATH=DEPS python tools/reference/msamba.py --code msa --mamba mamba

`models/msamba.py` MSAmba_v5_c1 in opts.py's configuration (mamba_type 'mamba' = upstream
unidirectional Mamba, Block_GLCE, text_guided_fusion depth 1, sub_loss, MOSI widths) with ISM
depth 2 (opts.py: 4) and the hard-coded width 128 patched to 64 (and BERT's 768 to the tiny
BERT's width), so that the golden stays small. mamba-ssm's CUDA/Triton pieces are replaced by
its own PyTorch references: `selective_scan_fn` by `selective_scan_ref`, the fused add+RMSNorm
(`rms_norm_fn`) by `rms_norm_ref` (both read from --mamba). Loss: train_msamba.py's L1 plus 0.5
x the six sub-losses, dropout 0 (the copy has none on this path).
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Any

import torch
from _golden import (
    TINY_BERT,
    grads,
    imported_files,
    padded,
    parse_args,
    perturb_,
    record_hooks,
    round_to_half_,
    save_golden,
    token_batch,
    zero_dropout_,
)
from _patch import module_from_functions, patched_class
from torch import nn

D, DEPTH, SEQ = 64, 2, 50  # patched width (copy: 128), ISM depth (opts.py: 4), the copy's seq_len
DIMS = (TINY_BERT["hidden_size"], 5, 20)  # MOSI audio 5 / vision 20 (MSAmba_v5_c1)
BERT = {**TINY_BERT, "max_position_embeddings": 64}  # 50 token positions
LENGTHS = {"t": [50, 17, 33, 9, 41, 24], "a": [50, 31, 12, 44, 7, 26], "v": [50, 22, 38, 15, 29, 5]}
SUB_LAMBDA = 0.5  # opts.py --sub_loss_lambda
MAMBA_COMMIT = "8ffd905c91d207f5c0cc84fc2a2fb748655094f0"  # state-spaces/mamba v2.2.2


def mamba_arg() -> Path:
    """--mamba DIR (taken off argv before the shared parser reads it)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--mamba", type=Path, required=True, help="checkout of state-spaces/mamba v2.2.2")
    known, rest = p.parse_known_args()
    sys.argv = [sys.argv[0], *rest]
    if not (known.mamba / "mamba_ssm").is_dir():
        p.error(f"--mamba {known.mamba}: no mamba_ssm/ folder inside")
    return known.mamba


def norm_module(mamba: Path) -> types.ModuleType:
    """`mamba_ssm.ops.triton.layer_norm` without Triton: the file's own `rms_norm_ref` /
    `layer_norm_ref`, wrapped with the fused functions' signatures (residual kept in fp32)."""
    mod = module_from_functions("mamba_ssm.ops.triton.layer_norm", mamba / "mamba_ssm/ops/triton/layer_norm.py",
                                ("layer_norm_ref", "rms_norm_ref"), {})

    def fused(ref: Any) -> Any:
        def fn(x, weight, bias, residual=None, eps=1e-6, prenorm=False, residual_in_fp32=False, **kw: Any):
            assert not kw.get("dropout_p"), "dropout in the fused norm is not used by the copy"
            out = ref(x, weight, bias, residual=residual, eps=eps, prenorm=prenorm, upcast=True)
            if not prenorm:
                return out
            return out[0], out[1].float() if residual_in_fp32 else out[1].to(x.dtype)
        return fn

    class RMSNorm(nn.Module):  # the file's RMSNorm: weight ones, no bias
        def __init__(self, hidden_size: int, eps: float = 1e-5, **_kw: Any):
            super().__init__()
            self.eps, self.weight = eps, nn.Parameter(torch.ones(hidden_size))
            self.register_parameter("bias", None)

    mod.rms_norm_fn, mod.layer_norm_fn, mod.RMSNorm = fused(mod.rms_norm_ref), fused(mod.layer_norm_ref), RMSNorm
    return mod


def import_copy(code: Path, mamba: Path) -> tuple[types.ModuleType, list[str]]:
    """The copy's models/msamba.py on top of mamba-ssm's Python files (package inits not run)."""
    import transformers  # noqa: F401  (before the timm stubs: it probes whether timm is installed)
    from _golden import import_reference

    sys.path.insert(0, str(mamba))
    for pkg in ("mamba_ssm", "mamba_ssm.ops", "mamba_ssm.modules", "mamba_ssm.ops.triton"):
        sys.modules[pkg] = types.ModuleType(pkg)
        sys.modules[pkg].__path__ = [str(mamba / pkg.replace(".", "/"))]  # type: ignore[attr-defined]
    norm_module(mamba)
    msamba = import_reference(code, "models.msamba", stub_packages=("models",),
                              stub_modules=("selective_scan_cuda", "timm.models.vision_transformer",
                                            "timm.models.registry", "timm.models.layers"))
    msamba.trunc_normal_ = nn.init.trunc_normal_  # type: ignore[attr-defined]
    scan = sys.modules["mamba_ssm.ops.selective_scan_interface"]
    for name in ("mamba_ssm.modules.mamba_simple", "models.mixer", "models.msamba"):
        sys.modules[name].selective_scan_fn = scan.selective_scan_ref  # type: ignore[attr-defined]
    return msamba, [
        "package __init__ of models, mamba_ssm, mamba_ssm.ops, mamba_ssm.modules, mamba_ssm.ops.triton not run",
        ("selective_scan_cuda, timm.models.{vision_transformer,registry,layers} stubbed (imported, not called);"
        " timm's trunc_normal_ = torch.nn.init.trunc_normal_ (initial values only: every weight is stored)"),
        ("selective_scan_fn -> mamba_ssm selective_scan_ref in mamba_simple (Mamba slow path: causal_conv1d is"
        " absent) and models/mixer.py (MambaVisionMixer)"),
        ("mamba_ssm.ops.triton.layer_norm (Triton) replaced by its own rms_norm_ref/layer_norm_ref (upcast, prenorm"
        " residual in fp32 as residual_in_fp32) and an RMSNorm module with the same parameters"),
    ]


def build(msamba: types.ModuleType, bert_dir: str) -> tuple[nn.Module, list[str]]:
    cls, notes = patched_class(msamba, "MSAmba_v5_c1", [
        ("self.sm_embed_dim = 128", f"self.sm_embed_dim = {D}", 1),
        ("nn.Linear(768, 128)", f"nn.Linear({DIMS[0]}, {D})", 3),
        ("nn.Linear(5, 128)", f"nn.Linear(5, {D})", 1),
        ("nn.Linear(20, 128)", f"nn.Linear(20, {D})", 1),
        ("nn.Linear(128 * 3, 1)", f"nn.Linear({D} * 3, 1)", 1),
    ])
    model = cls(dataset="mosi", bert_pretrained=bert_dir, sm_depth=DEPTH, mamba_type="mamba",
                cross_modal_fusion="text_guided_fusion", fusion_depth=1, sub_loss=True, use_mlp=False,
                use_con_loss=False, use_roberta=False, sm_block_type="Block_GLCE")
    return model, notes


def bert_dir() -> str:
    import tempfile

    from transformers import BertConfig, BertModel

    path = Path(tempfile.mkdtemp(prefix="tiny_bert_"))
    BertModel(BertConfig(**BERT)).save_pretrained(path)
    words = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"] + [f"w{i}" for i in range(BERT["vocab_size"] - 5)]
    (path / "vocab.txt").write_text("\n".join(words) + "\n")
    return str(path)


HOOKS = {
    **{f"ism_{m}": f"layers_{ref}.{DEPTH - 1}#0" for m, ref in (("t", "text"), ("a", "audio"), ("v", "video"))},
    **{f"chm_{a}": f"fusion_layers_{a.upper()}.0.mixer_main" for a in "tav"},  # anchors' mixers
    **{f"chm_{a}_{i}_token0": f"fusion_layers_{a.upper()}.0.mixer_{ref}" for a in "tav" for i, ref in ((1, "V"), (2, "A"))},
    "text": "text_model",
}
TOKEN0 = {k: (lambda t: t[:, 0]) for k in HOOKS if k.endswith("_token0")}  # the context mixers' outputs reach
#   the prediction only through position 0 (fusion depth 1): stored there only, for size


def main() -> None:
    mamba = mamba_arg()
    args = parse_args(__doc__.splitlines()[0])
    msamba, patches = import_copy(args.code, mamba)
    torch.manual_seed(args.seed)
    model, width_notes = build(msamba, bert_dir())
    zeroed = zero_dropout_(model)
    gen = torch.Generator().manual_seed(args.seed)
    perturb_(model, gen)
    round_to_half_(model)  # compact golden
    tokens = token_batch(gen, LENGTHS["t"], SEQ, BERT["vocab_size"])
    batch = {**tokens, "audio": padded(gen, LENGTHS["a"], DIMS[1]), "vision": padded(gen, LENGTHS["v"], DIMS[2]),
             "audio_lengths": torch.tensor(LENGTHS["a"]), "vision_lengths": torch.tensor(LENGTHS["v"]),
             "labels": torch.randn(6, generator=gen).clamp(-3, 3), "index": torch.arange(6)}
    text = torch.stack([tokens["text_ids"], tokens["text_mask"], tokens["text_segment"]], dim=1).float()  # MMSA text_bert
    hooked = record_hooks(model, HOOKS, TOKEN0)
    model.eval()
    with torch.no_grad():
        out = model(batch["vision"], batch["audio"], text)
        evals = {"output": out["output"], **{k: out[k] for k in out if k != "output"}, **hooked}
    model.train()
    out = model(batch["vision"], batch["audio"], text)
    label = batch["labels"].view(-1, 1)
    l1 = nn.L1Loss()  # train_msamba.py loss_fn
    parts = {"L1": l1(out["output"], label),
             **{k: l1(out[k], label) for k in ("sub_output_V", "sub_output_T", "sub_output_A", "cls_V", "cls_A", "cls_T")}}
    total = parts["L1"] + SUB_LAMBDA * sum(v for k, v in parts.items() if k != "L1")
    total.backward()
    save_golden(args, "msamba", {
        "weights": model.state_dict(), "batch": batch, "eval": evals, "loss": {**parts, "total": total},
        "grad": grads(model),
    }, {
        "model": "msamba", "reference": "jien0404/msa@915d81c models/msamba.py MSAmba_v5_c1 (loss: train_msamba.py),"
        " on state-spaces/mamba v2.2.2's selective_scan_ref",
        "repository": "https://github.com/jien0404/msa", "commit": "915d81cd71f0b2b0f589b4129b78fa244bd1c33d",
        "mamba": {"repository": "https://github.com/state-spaces/mamba", "tag": "v2.2.2", "commit": MAMBA_COMMIT,
                  "imported_files": imported_files(mamba)},
        "patches": [*patches, *width_notes,
                    "BertTextEncoder's from_pretrained reads a temporary tiny BERT (max 64 positions: 50 tokens)",
                    f"ISM depth {DEPTH} (opts.py --single_modality_depth 4), width {D} (hard-coded 128): golden size",
                    f"dropout set to 0 after building: every nn.Dropout module, and the floats {zeroed}"],
        "bert_config": BERT,
        "msabench": {"name": "msamba", "dataset": "mosi", "preset": "official", "overrides": {
            "dims": DIMS, "text_encoder": "tiny", "d_model": D, "ism_depth": DEPTH, "ism_direction": "uni",
            "glce_local": "token_channels", "chm_a_text": "t_block", "sub_loss": True, "sub_loss_weight": SUB_LAMBDA}},
    }, compact=True, model=model)


if __name__ == "__main__":
    main()
