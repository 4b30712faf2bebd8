"""Golden for Semi-IIN against flow-ljh/Semi-IIN@55f1c4d (--code: the checkout's `code/` folder).

    git --git-dir=<bare clone> archive 55f1c4d | tar -x -C semiiin
    python tools/reference/semi_iin.py --code semiiin/code

The released pieces: `model.py` `CMFM` (masked IntraMAU/InterMAU, gates, heads) in the
hyperparameters of the deleted `main()` (46cda75: hidden 128, 4 heads, 1-layer encoders,
sharing_num 2, layers '128,64'), `modules/transformer.py` (MulT's encoder) and
`modules/multihead_attention_orign.py` (the masked attention). `cross_transformer.py` is not
released: the minimal wrapper below is MulT's released encoder with the masked attention in
its layer and `(output, None)` returned, because `model.py` unpacks two values; it is
msabench's inferred wrapper, so this golden proves msabench equals the released pieces joined
by it, not the authors' missing file. Native sequence layout (the attention hard-codes
2 + 100 audio + 100 text + the rest; `pos_embed` 252): text 100 steps, audio 800 frames
(stride-8 convs), vision 50 frames, zero-padded after varied true lengths; the front-end
convs are rebuilt at narrow input widths (same kernel/stride/padding) so the golden stays
small. Train mode: dropout 0 except the wrapper's embed dropout (0.2), whose masks are
recorded so the test can replay them: per encoder call MulT's encoder draws one for the
queries, one for the key stream and one for the value stream (never read by the released
attention, `kv_same = True`). Loss: 0.6 MSE + 0.4 CE on the 7 bins of Supplementary Table 6
(the paper's eqs. 19-22 and 46cda75's val_r/cls_r; the training script is not released).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _golden import (
    grads,
    import_reference,
    padded,
    parse_args,
    perturb_,
    record_hooks,
    round_to_half_,
    save_golden,
    zero_dropout_,
)
from torch import nn

DIMS = (24, 8, 16)  # narrow text/audio/vision widths (released: 1024 or 768, 1024, 256)
SEQ_LENS = (100, 800, 50)  # text/audio/vision steps of the released layout (post-conv 100/100/50)
LENGTHS = {"t": [100, 62, 80, 23, 91, 47], "a": [640, 410, 555, 160, 610, 320], "v": [50, 31, 44, 12, 50, 27]}
PARAMS: dict[str, Any] = {  # 46cda75:code/model.py main() tune_params, dropouts as there (zeroed below)
    "hidden_dim": 128, "layers": "128,64", "t_num_heads": 4, "t_attn_dropout": 0.1, "t_relu_dropout": 0.2,
    "t_res_dropout": 0.2, "sharing_num": 2, "val_r": 0.6, "cls_r": 0.4,
}
EMBED_DROPOUT = 0.2  # get_network(embed_dropout=0.2)
BINS = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])  # Supplementary Table 6: [-3,-2.5) -> 0 ... [2.5,3] -> 6
HOOKS = {"gate_val": "gate1", "gate_emo": "gate2", "intra": "cmfm1#0", "inter": "cmfm2#0"}
SHARED = ("cmfm_intra.", "cmfm_inter.")  # ModuleLists repeating cmfm1 / cmfm2: state_dict lists them again


def wrapper_module(transformer: types.ModuleType, attention: types.ModuleType) -> types.ModuleType:
    """`cross_transformer` (not released): MulT's encoder with the masked attention, `inter` passed."""

    class TransformerEncoder(transformer.TransformerEncoder):  # type: ignore[name-defined]
        def __init__(self, embed_dim: int, num_heads: int, layers: int, attn_dropout: float, relu_dropout: float,
                     res_dropout: float, embed_dropout: float, attn_mask: bool, inter: Any) -> None:
            super().__init__(embed_dim, num_heads, layers, attn_dropout, relu_dropout, res_dropout, embed_dropout, attn_mask)
            for layer in self.layers:
                layer.self_attn = attention.MultiheadAttention(embed_dim, num_heads, attn_dropout, inter=inter)

        def forward(self, x_in: torch.Tensor, x_in_k: Any = None, x_in_v: Any = None) -> tuple[torch.Tensor, None]:
            return super().forward(x_in, x_in_k, x_in_v), None

    module = types.ModuleType("cross_transformer")
    module.TransformerEncoder = TransformerEncoder  # type: ignore[attr-defined]
    return module


def import_cmfm(args: Any) -> types.ModuleType:
    """model.py with its missing/unused imports provided: modules.multihead_attention (only the
    `_orign` file is released), cross_transformer (the wrapper), timm's trunc_normal_, clusterv2."""
    attention = import_reference(args.code, "modules.multihead_attention_orign")
    sys.modules["modules.multihead_attention"] = attention
    transformer = import_reference(args.code, "modules.transformer")
    import transformers  # noqa: F401  before the timm stub: transformers probes for timm when first imported

    sys.modules["cross_transformer"] = wrapper_module(transformer, attention)
    for name in ("timm", "timm.models", "timm.models.layers"):
        sys.modules[name] = types.ModuleType(name)
    sys.modules["timm.models.layers"].trunc_normal_ = nn.init.trunc_normal_  # type: ignore[attr-defined]
    return import_reference(args.code, "model", stub_modules=("clusterv2",))


class RecordingF:
    """`torch.nn.functional` for modules/transformer.py whose dropout (p > 0, training) is
    x * a recorded mask (the same function as F.dropout; the mask kept for the test)."""

    def __init__(self, gen: torch.Generator) -> None:
        self.gen, self.masks = gen, []  # type: ignore[var-annotated]

    def __getattr__(self, name: str) -> Any:
        return getattr(F, name)

    def dropout(self, x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> torch.Tensor:
        if not training or p == 0:
            return x
        keep = (torch.rand(x.shape, generator=self.gen) >= p).float() / (1 - p)
        self.masks.append(keep)
        return x * keep


@contextmanager
def cpu_cuda() -> Iterator[None]:
    """model.py moves its token-type ids with `.cuda()`: a no-op on this CPU run."""
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.cuda = original  # type: ignore[method-assign]


def build(model_module: types.ModuleType) -> nn.Module:
    model = model_module.CMFM(PARAMS, SimpleNamespace(inter="masked", dataset="mosi", use_bert=True))
    model.proj_1tt = nn.Conv1d(DIMS[0], 128, stride=1, kernel_size=3, padding=1, bias=False)
    model.proj_1aa = nn.Conv1d(DIMS[1], 128, stride=2, kernel_size=4, padding=1, bias=False)
    model.proj_1vv = nn.Conv1d(DIMS[2], 128, stride=1, kernel_size=3, padding=1, bias=False)
    assert all(m is model.cmfm1 for m in model.cmfm_intra) and all(m is model.cmfm2 for m in model.cmfm_inter)
    return model


def fit(x: torch.Tensor, n: int) -> torch.Tensor:
    """Zero-pad the time axis to the released layout's n steps (the loader's padding)."""
    return F.pad(x, (0, 0, 0, n - x.shape[1]))


def packed_masks(masks: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The recorded keep masks as packed bits (numpy.packbits of mask > 0), their shape and p."""
    packed = {f"embed_dropout.{i}": torch.from_numpy(np.packbits(m.numpy() > 0)) for i, m in enumerate(masks)}
    return {**packed, "embed_dropout_shape": torch.tensor(masks[0].shape), "embed_dropout_p": torch.tensor(EMBED_DROPOUT)}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    model_module = import_cmfm(args)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model: Any = build(model_module)
    zeroed = zero_dropout_(model)
    model.cmfm1.dropout = model.cmfm2.dropout = EMBED_DROPOUT  # the wrapper's embed dropout stays, recorded
    perturb_(model, gen)
    round_to_half_(model)
    weights = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(SHARED)}
    batch = {
        "text_feats": padded(gen, LENGTHS["t"], DIMS[0]), "audio": padded(gen, LENGTHS["a"], DIMS[1]),
        "vision": padded(gen, LENGTHS["v"], DIMS[2]), "text_lengths": torch.tensor(LENGTHS["t"]),
        "audio_lengths": torch.tensor(LENGTHS["a"]), "vision_lengths": torch.tensor(LENGTHS["v"]),
        "labels": torch.tensor([2.4, -1.8, 0.5, 0.0, -2.5, 1.2]), "index": torch.arange(6),
    }
    inputs = [fit(batch[k], n) for k, n in (("vision", SEQ_LENS[2]), ("text_feats", SEQ_LENS[0]), ("audio", SEQ_LENS[1]))]
    transformer = sys.modules["modules.transformer"]
    recording = RecordingF(gen)
    transformer.F = recording  # type: ignore[attr-defined]
    specials = {k: (lambda t: t.transpose(0, 1)[:, :2]) for k in ("intra", "inter")}  # the val and cls tokens
    hooked = record_hooks(model, HOOKS, specials)
    with cpu_cuda():
        model.eval()
        with torch.no_grad():
            p_val, p_emo = model(*inputs, training=False)
        evals = {"p_val": p_val, "p_emo": p_emo, **hooked}
        model.train()
        p_val, p_emo = model(*inputs, training=False)  # training=False: the input dropout (p=0.5) off
    classes = torch.bucketize(batch["labels"], BINS, right=True)
    mse, ce = F.mse_loss(p_val.view(-1), batch["labels"]), F.cross_entropy(p_emo, classes)
    total = PARAMS["val_r"] * mse + PARAMS["cls_r"] * ce
    total.backward()
    save_golden(args, "semi_iin", {
        "weights": weights, "batch": batch, "eval": evals, "loss": {"MSE": mse, "CE": ce, "total": total},
        "grad": grads(model), "state": packed_masks(recording.masks),
    }, {
        "model": "semi_iin", "reference": "flow-ljh/Semi-IIN@55f1c4d code/model.py CMFM, code/modules/transformer.py, "
                                          "code/modules/multihead_attention_orign.py, joined by msabench's inferred wrapper",
        "repository": "https://github.com/flow-ljh/Semi-IIN", "commit": "55f1c4d4a6105082e904c32278ef2c00caf3c0d9",
        "loss_source": "not released: 0.6 MSE + 0.4 CE on Supplementary Table 6's bins (paper eqs. 19-22, 46cda75 val_r/cls_r)",
        "weights_note": "cmfm_intra.*/cmfm_inter.* left out: the same module objects as cmfm1/cmfm2 "
                        f"(state_dict lists them again; sharing_num {PARAMS['sharing_num']})",
        "eval_note": "intra/inter: the last application's output at the val and cls tokens (what the gates read)",
        "emotion_classes": classes.tolist(), "embed_dropout": EMBED_DROPOUT,
        "patches": [
            ("cross_transformer (not released): modules/transformer.py TransformerEncoder with each layer's self_attn "
             "replaced by multihead_attention_orign.MultiheadAttention(inter=inter), forward returning (output, None)"),
            "modules.multihead_attention (not released) aliased to modules/multihead_attention_orign.py",
            "timm.models.layers.trunc_normal_ provided as torch.nn.init.trunc_normal_; clusterv2 (not released, unused) stubbed",
            "torch.Tensor.cuda a no-op while the model runs (model.py moves its token-type ids with .cuda())",
            f"front-end convs rebuilt at input widths {DIMS} (released 768/1024/256), same kernel, stride, padding, no bias",
            (f"dropout set to 0 after building: every nn.Dropout module, and the floats {zeroed}; then the two encoders' "
             f"embed dropout back to {EMBED_DROPOUT}, drawn as x * mask by a recording stand-in for modules/transformer.py's F"),
            "train-mode pass with forward(training=False): the input dropout (F.dropout p=0.5) off",
        ],
        "msabench": {"name": "semi_iin", "dataset": "mosi", "preset": "official", "overrides": {
            "dims": DIMS, "seq_lens": SEQ_LENS, "audio_frontend": "stride8", "input_dropout": 0.0, "attn_dropout": 0.0,
            "relu_dropout": 0.0, "res_dropout": 0.0, "wrapper_embed_dropout": 0.0}},
    }, compact=True, model=model)


if __name__ == "__main__":
    main()
