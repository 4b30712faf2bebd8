"""Golden for MCL-MCF against Zhudogsi/MCL-MCF@6e56e82 (--code: the checkout's `src/` folder).

    git --git-dir=<bare clone> archive 6e56e82 | tar -x -C mclmcf
    python tools/reference/mcl_mcf.py --code mclmcf/src

`model.py` MMIM with `config.py`'s defaults (n_layer 1, unidirectional LSTMs, contrast on,
alpha = nce2 = nce3 = 0.05) and solver.py's stage-1 loss. The code hard-codes its widths (BERT
768, LSTM outputs and hubs 64, fusion width 512, TCF features 256,036, Clip width 128): they
are patched at build time to the tiny BERT's 32, 16, 16, (16-6)^2 = 100 and 16 (recorded), so
that the golden stays small. The perturbation is re-drawn until every TCF map is alive (not
all zero) for every sample: the code's `y / ||y||` is NaN on a dead map. A second, "dead"
pass then kills one map on purpose and records the reference's NaN pattern.
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
    record_hooks,
    save_golden,
    tiny_bert_dir,
    token_batch,
    zero_dropout_,
)
from _patch import patched_class
from torch import nn

H, W, R, K, HID = TINY_BERT["hidden_size"], 16, 16, 16, 8  # BERT, LSTM outputs = hubs, fusion, Clip, LSTM hidden
DIMS = (H, 5, 20)  # MOSI COVAREP 5, Facet 20
WIDTH = 12
LENGTHS = {"t": [12, 7, 9, 4, 11, 6], "a": [14, 9, 12, 5, 11, 14], "v": [12, 12, 7, 3, 9, 10]}
ALPHA = NCE2 = NCE3 = 0.05  # config.py --alpha / --nce2 / --nce3
DEAD = ("conv_tfn_a.4.bias", -100.0)  # the VA stack's last conv: its ReLU then outputs 0 everywhere
MAX_DRAWS = 50


def hp() -> SimpleNamespace:
    """config.py's defaults that MMIM reads, at the patched widths; dropouts 0."""
    return SimpleNamespace(
        add_va=False, d_tin=H, d_vin=DIMS[2], d_ain=DIMS[1], d_vh=HID, d_ah=HID, d_vout=W, d_aout=W, n_layer=1,
        dropout_v=0.0, dropout_a=0.0, bidirectional=False, d_prjh=K, n_class=1, dropout_prj=0.0, embed_dim=H,
        num_heads=1, layers=1, attn_dropout=0.0, relu_dropout=0.0, res_dropout=0.0, embed_dropout=0.0,
        attn_mask=False)


def patch_widths(model_mod, enc_mod) -> list[str]:
    """The hard-coded widths at the golden's size (MMIM.__init__, Clip, get_resNet1-4)."""
    notes = []
    for name, reps in {
        "Clip": [("nn.Linear(x_size, 128)", f"nn.Linear(x_size, {K})", 1), ("nn.Linear(y_size, 128)", f"nn.Linear(y_size, {K})", 1)],
        "get_resNet": [("nn.Conv1d(768, 512,", f"nn.Conv1d({H}, {R},", 1)],
        "get_resNet2": [("nn.Conv1d(64, 512,", f"nn.Conv1d({W}, {R},", 1)],
        "get_resNet3": [("nn.Conv1d(64, 512,", f"nn.Conv1d({W}, {R},", 1)],
        "get_resNet4": [("nn.Conv1d(896, 512,", f"nn.Conv1d({H + 2 * W}, {R},", 1)],
    }.items():
        obj, n = patched_class(enc_mod, name, reps)
        setattr(model_mod, name, obj)
        notes += n
    mmim, n = patched_class(model_mod, "MMIM", [
        ("in_size=512,", f"in_size={R},", 1), ("Clip(768, 64)", f"Clip({H}, {W})", 3), ("Clip(64, 64)", f"Clip({W}, {W})", 4),
        ("in_channels=832,", f"in_channels={H + W},", 2), ("in_channels=128,", f"in_channels={2 * W},", 1),
        ("in_channels=896,", f"in_channels={H + 2 * W},", 1), ("out_channels=64,", f"out_channels={W},", 4),
        ("in_channels=2048, out_channels=512,", f"in_channels={4 * R}, out_channels={R},", 1),
        ("Clip(256036, 256036)", f"Clip({(R - 6) ** 2}, {(R - 6) ** 2})", 3),
    ])
    model_mod.MMIM = mmim
    return notes + n


HOOKS = {"text": "text_enc", "audio": "acoustic_enc#0", "vision": "visual_enc#0",
         **{k: p for k, p in (("res_t", "getresNet"), ("res_v", "getresNet2"), ("res_a", "getresNet3"),
                              ("hub_tv", "conv_tv"), ("hub_va", "conv_av"), ("hub_ta", "conv_vt"), ("hub_tav", "conv_tav"))},
         "map_tv": "conv_tfn_t", "map_ta": "conv_tfn_v", "map_va": "conv_tfn_a"}
SQUEEZE = {k: (lambda t: t.squeeze(2)) for k in HOOKS if k.startswith(("res_", "hub_"))}


def run(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """MMIM.forward on the batch (audio/vision sequence-first, as the code's loader gives them)."""
    return model(None, batch["vision"].transpose(0, 1), batch["audio"].transpose(0, 1), batch["vision_lengths"],
                 batch["audio_lengths"], batch["text_ids"], batch["text_segment"], batch["text_mask"])


def alive(model: nn.Module, batch: dict[str, torch.Tensor], hooked: dict[str, torch.Tensor]) -> bool:
    with torch.no_grad():
        run(model, batch)
    return all(bool((hooked[m].abs().sum(1) > 0).all()) for m in ("map_tv", "map_ta", "map_va"))


def losses(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """solver.py stage 1: L1(preds, y) + alpha nce + nce2 nce2 + nce3 nce3."""
    nce, preds, nce2, nce3 = run(model, batch)
    l1 = nn.L1Loss()(preds, batch["labels"].view(-1, 1))  # criterion = L1Loss (regression)
    return {"L1": l1, "nce": nce, "nce2": nce2, "nce3": nce3, "total": l1 + ALPHA * nce + NCE2 * nce2 + NCE3 * nce3}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    enc = import_reference(args.code, "modules.encoders", stub_packages=("modules",))
    model_mod = import_reference(args.code, "model", stub_modules=("torchvision",))
    enc.MODEL_PATH = str(tiny_bert_dir())
    notes = patch_widths(model_mod, enc)
    torch.manual_seed(args.seed)
    model = model_mod.MMIM(hp())
    zeroed = zero_dropout_(model)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(args.seed)
    tokens = token_batch(gen, LENGTHS["t"], WIDTH, TINY_BERT["vocab_size"])
    batch = {**tokens, "audio": padded(gen, LENGTHS["a"], DIMS[1]), "vision": padded(gen, LENGTHS["v"], DIMS[2]),
             "audio_lengths": torch.tensor(LENGTHS["a"]), "vision_lengths": torch.tensor(LENGTHS["v"]),
             "labels": torch.randn(6, generator=gen).clamp(-3, 3), "index": torch.arange(6)}
    hooked = record_hooks(model, HOOKS, {**SQUEEZE, "text": lambda t: t[:, 0]})
    model.eval()
    for draws in range(1, MAX_DRAWS + 1):  # re-draw until every TCF map is alive for every sample
        model.load_state_dict(init)
        perturb_(model, gen)
        if alive(model, batch, hooked):
            break
    else:
        raise RuntimeError(f"no perturbation out of {MAX_DRAWS} leaves every TCF map alive")
    with torch.no_grad():
        evals = {"preds": run(model, batch)[1], **hooked}
    model.train()
    parts = losses(model, batch)
    parts["total"].backward()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # the pitfall, on purpose: a dead VA map
        model.get_parameter(DEAD[0]).fill_(DEAD[1])
        dead = losses(model, batch)
    assert dead["nce3"].isnan() and not dead["nce"].isnan(), "the dead map should make exactly the TCF loss NaN"
    save_golden(args, "mcl_mcf", {
        "weights": weights, "batch": batch, "eval": evals, "loss": parts, "grad": grads(model),
        "dead_loss": dead,
    }, {
        "model": "mcl_mcf", "reference": "Zhudogsi/MCL-MCF@6e56e82 src/model.py MMIM (loss: src/solver.py stage 1)",
        "repository": "https://github.com/Zhudogsi/MCL-MCF", "commit": "6e56e826e96de0710a84ec43a677c2a07dff7fcb",
        "patches": [
            "package __init__ of modules not run; torchvision stubbed (imported, not used)",
            "modules/encoders.py MODEL_PATH ('src/bert/') points at a temporary tiny BERT",
            *notes,
            f"dropout set to 0 after building: every nn.Dropout module, and the floats {zeroed}",
        ],
        "perturbation_draws": draws,
        "dead_map": {"weight": DEAD[0], "value": DEAD[1],
                     "note": "dead_loss/: the reference's train-mode loss parts with this weight set (VA map all zero)"},
        "bert_config": TINY_BERT,
        "msabench": {"name": "mcl_mcf", "dataset": "mosi", "preset": "official", "overrides": {
            "dims": DIMS, "text_encoder": "tiny", "v_lstm_hidden": HID, "a_lstm_hidden": HID, "video_out": W,
            "audio_out": W, "hub_dim": W, "res_dim": R, "post_fusion_dim": K, "clip_dim": K,
            "post_fusion_dropout": 0.0}},
    }, model=model)


if __name__ == "__main__":
    main()
