"""Every reimplementation against its reference code, from committed goldens.

Each golden (`tests/golden_ref/<model>.safetensors` + `.json`, written by
`tools/reference/<model>.py` from the reference code itself) holds the reference model's
perturbed weights, one padded batch, and what the reference computed on it: eval outputs and
intermediates, train-mode loss parts (dropout 0) and gradients. The test builds msabench's
model in the matching configuration, loads the weights through an explicit name map (every
tensor mapped, none left over on either side), and compares everything at atol 1e-5 /
rtol 1e-4 (gradient projections at the tolerance that implies, see `fingerprint_problems`).
A tampered weight must make the comparison fail.
"""

from __future__ import annotations

import contextlib
import json
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from models.base import ModelOutput, MSAModel
from models.protocol import Batch
from models.registry import create_model

GOLDEN_DIR = Path(__file__).parent / "golden_ref"
ATOL, RTOL = 1e-5, 1e-4
TAMPER = 1e-3


@dataclass(frozen=True)
class RefMap:
    """How a reference model's names translate to msabench's.

    weights: (regex on the reference name, msabench name template) rules, first match wins;
      a template of None drops a tensor that is not a weight (the reason goes in the comment).
    outputs: golden eval name -> msabench ModelOutput path ("pred", "features.t", ...) or
      "hook:<module path>" (the output of that msabench module, batch-first).
    losses: golden loss part -> msabench loss-dict key, or a function of the loss dict.
    tamper: a reference weight name; +1e-3 on its first element must make the comparison fail.
    prepare: optional setup of the msabench model from the golden before the train-mode pass;
      returns the state its `training_batch` hook gets (None: none needed).
    after: optional msabench state after the train-mode loss, compared with the golden's
      `state/after.*` tensors (Self-MM's label memory).
    extra_outputs: optional eval-mode values computed from the msabench model and batch beyond
      its forward (e.g. MFON's pre-training heads), compared with the same golden eval keys.
    """

    weights: tuple[tuple[str, str | None], ...]
    outputs: dict[str, str]
    losses: dict[str, str | Callable[[dict[str, torch.Tensor]], torch.Tensor]]
    tamper: str
    prepare: Callable[[Any, dict[str, dict[str, torch.Tensor]]], Any] | None = None  # returns the hooks' state
    after: Callable[[Any], dict[str, torch.Tensor]] | None = None
    extra_outputs: Callable[[Any, Batch], dict[str, torch.Tensor]] | None = None


# -- name maps -----------------------------------------------------------------------------
def prefixed(pairs: tuple[tuple[str, str], ...], rules: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The same block rules under each (reference prefix, msabench prefix) pair."""
    return tuple((rf"{re.escape(ref)}\.{src}", f"{ours}.{dst}") for ref, ours in pairs for src, dst in rules)


_MULT_BLOCK = (  # MMSA TransformerEncoder -> models/layers/transformer.py CrossModalTransformer
    (r"layers\.(\d+)\.self_attn\.(in_proj_weight|in_proj_bias)", r"layers.\1.attn.\2"),
    (r"layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", r"layers.\1.attn.out_proj.\2"),
    (r"layers\.(\d+)\.(fc1|fc2)\.(weight|bias)", r"layers.\1.\2.\3"),
    (r"layers\.(\d+)\.layer_norms\.0\.(weight|bias)", r"layers.\1.ln_attn.\2"),
    (r"layers\.(\d+)\.layer_norms\.1\.(weight|bias)", r"layers.\1.ln_ffn.\2"),
    (r"layer_norm\.(weight|bias)", r"norm.\1"),
)
_MMSA_MOD = (("l", "t"), ("a", "a"), ("v", "v"))  # MMSA's modality letters -> msabench's
_MULT_CROSS = tuple((f"trans_{r}_with_{rs}", f"cross.{m}{ms}") for r, m in _MMSA_MOD for rs, ms in _MMSA_MOD if rs != r)
MULT = RefMap(
    weights=(
        *((rf"proj_{r}\.weight", f"proj.{m}.weight") for r, m in _MMSA_MOD),
        *prefixed(_MULT_CROSS + tuple((f"trans_{r}_mem", f"memory.{m}") for r, m in _MMSA_MOD), _MULT_BLOCK),
        (r"trans_\w+\.version", None),  # fairseq's constant version buffer ([2.]): not a weight
        (r"proj1\.(weight|bias)", r"head_fc1.\1"),
        (r"proj2\.(weight|bias)", r"head_fc2.\1"),
        (r"out_layer\.(weight|bias)", r"out.\1"),
    ),
    outputs={"M": "pred", **{f"Feature_{m}": f"features.{m}" for m in "tavf"},
             **{ref: f"hook:{ours}" for ref, ours in _MULT_CROSS}},
    losses={"L1": "task"},
    tamper="trans_v_mem.layers.0.fc2.bias",
)

MAG_BERT = RefMap(
    weights=(
        *prefixed((("model.bert", "text.bert"),), ((r"(embeddings|encoder|pooler)\.(.+)", r"\1.\2"),)),
        *prefixed((("model.bert.MAG", "mag"),), ((r"(W_hv|W_ha|W_v|W_a)\.(weight|bias)", r"\1.\2"),
                                                  (r"LayerNorm\.(weight|bias)", r"norm.\1"))),
        (r"model\.classifier\.(weight|bias)", r"classifier.\1"),
    ),
    outputs={"M": "pred", "MAG": "hook:mag", "encoder": "hook:text.bert.encoder", "pooler": "features.f"},
    losses={"L1": "task"},
    tamper="model.bert.MAG.W_a.weight",
)

_SELF_MM_HEADS = (("fusion", "f"), ("text", "t"), ("audio", "a"), ("vision", "v"))


def _self_mm_memory(model: Any, golden: dict[str, dict[str, torch.Tensor]]) -> None:
    """The golden's later-epoch ULGM memory (labels, features, centres) at epoch 3."""
    from models.layers.ulgm import ULGMMemory

    state = golden["state"]
    memory = ULGMMemory(state["before.labels.fusion"], model.feature_dims, exclude_zero=True, bound=3.0)
    for ref, ours in _SELF_MM_HEADS:
        memory.labels[ours] = state[f"before.labels.{ref}"].clone()
        memory.features[ours] = state[f"before.features.{ref}"].clone()
        memory.centres[ours] = (state[f"before.centre.{ref}.pos"], state[f"before.centre.{ref}.neg"])
    model.memory, model.epoch = memory, 3


def _self_mm_after(model: Any) -> dict[str, torch.Tensor]:
    out = {}
    for ref, ours in _SELF_MM_HEADS:
        out[f"after.labels.{ref}"] = model.memory.labels[ours]
        out[f"after.features.{ref}"] = model.memory.features[ours]
        out[f"after.centre.{ref}.pos"], out[f"after.centre.{ref}.neg"] = model.memory.centres[ours]
    return out


SELF_MM = RefMap(
    weights=(
        *prefixed((("text_model.model", "text.bert"),), ((r"(embeddings|encoder|pooler)\.(.+)", r"\1.\2"),)),
        *prefixed((("audio_model", "audio_net"), ("video_model", "video_net")),
                  ((r"rnn\.(\w+_l0)", r"rnn.\1"), (r"linear_1\.(weight|bias)", r"linear.\1"))),
        *((rf"post_{ref}_layer_(\d)\.(weight|bias)", rf"heads.{ours}.layer_\1.\2")
          for ref, ours in (("fusion", "f"), ("text", "t"), ("audio", "a"), ("video", "v"))),
    ),
    outputs={"M": "pred", **{m.upper(): f"unimodal.{m}" for m in "tav"},
             **{f"Feature_{m}": f"features.{m}" for m in "tavf"}},
    losses={"M": "task", "T": "t", "A": "a", "V": "v"},
    tamper="audio_model.linear_1.bias",
    prepare=_self_mm_memory,
    after=_self_mm_after,
)

GLOMO = RefMap(
    weights=(
        *prefixed((("bert", "text.bert"),), ((r"(embeddings|encoder)\.(.+)", r"\1.\2"),)),
        (r"bert\.linear1\.(weight|bias)", r"text_global.\1"),
        (r"bert\.proj_l\.weight", "text_conv.weight"),
        *((rf"{ref}_network\.projs\.weight", f"{ours}.proj.weight") for ref, ours in (("audio", "audio"), ("video", "vision"))),
        *prefixed((("audio_network.encoder", "audio.encoder"), ("video_network.encoder", "vision.encoder")), _MULT_BLOCK),
        (r"\w+_network\.encoder\.(version|embed_positions\._float_tensor)", None),  # fairseq constants, not weights
        *prefixed(tuple((f"moe_{m}", f"moe.{m}") for m in "tav"),
                  ((r"experts\.(\d+)\.(fc1|fc2)\.(weight|bias)", r"experts.\1.\2.\3"), (r"(w_gate|w_noise)", r"\1"))),
        (r"moe_[tav]\.(mean|std)", None),  # MoE.py's Normal(0.1, 1) buffers: config moe_cdf_mean, std 1
        (r"transformer_encoder\.(.+)", r"fusion.\1"),  # nn.TransformerEncoder on both sides
        *((rf"attn_{ref}\.attention_mlp\.attention_mlp\.(weight|bias)", rf"{ours}.mlp.\1")
          for ref, ours in (("cs", "pool_global"), ("fs", "pool_local"))),
        *((rf"attn_{ref}\.fc_att\.(weight|bias)", rf"{ours}.fc_att.\1") for ref, ours in (("cs", "pool_global"), ("fs", "pool_local"))),
        *((rf"fc_{m}s\.(weight|bias)", rf"fc_modality.{m}.\1") for m in "tav"),
        (r"(fc_all|classifier)\.(weight|bias)", r"\1.\2"),
    ),
    outputs={"logits": "pred", "fused": "features.f", "text_global": "hook:text_global", "text_conv": "hook:text_conv",
             **{f"{ref}_{part}": f"hook:{ref}#{i}" for ref in ("audio", "vision") for i, part in enumerate(("global", "local"))},
             **{f"moe_{m}": f"hook:moe.{m}#0" for m in "tav"}, **{f"moe_loss_{m}": f"hook:moe.{m}#1" for m in "tav"},
             "fusion": "hook:fusion"},
    losses={"L1": "task", "moe": "moe", "total": "total"},
    tamper="moe_a.w_gate",
)

_EUAR_MOE = (("text", "t"), ("audio", "a"), ("img", "v"))
EUAR = RefMap(
    weights=(
        *prefixed((("bert.encoder", "text.bert"),), ((r"(embeddings|encoder|pooler)\.(.+)", r"\1.\2"),)),
        (r"bert\.proj_l\.weight", "text_proj.weight"),
        (r"(proj_a|proj_v)\.weight", r"\1.weight"),
        (r"proj_l\.weight", "unused_proj_l.weight"),  # built, never called (as in the code)
        *prefixed((("transa", "trans_a"), ("transv", "trans_v")), _MULT_BLOCK),
        (r"trans[av]\.(version|embed_positions\._float_tensor)", None),  # fairseq constants, not weights
        (r"fusion\.classfier\.(\d+)\.clf\.0\.(weight|bias)", r"fusion.classifier.\1.\2"),  # LinearLayer
        (r"fusion\.classfier\.(\d+)\.(weight|bias)", r"fusion.classifier.\1.\2"),  # LayerNorm
        (r"fusion\.decoder\.0\.clf\.0\.(weight|bias)", r"fusion.unused_decoder.\1"),
        *prefixed(tuple((f"fusion.{ref}_MoE", f"fusion.moe.{m}") for ref, m in _EUAR_MOE),
                  ((r"ffn\.experts\.(\d+)\.(mu|logvar)\.(weight|bias)", r"\2.\1.\3"),
                   (r"ffn\.gate\.w_gate\.(weight|bias)", r"gate.\1"), (r"add_norm\.(weight|bias)", r"unused_add_norm.\1"))),
    ),
    outputs={"pred": "pred", "text": "features.t", "audio": "features.a", "vision": "features.v",
             **{f"moe_{m}": f"hook:fusion.moe.{m}#0" for m in "tav"}},
    losses={"L1": "task", "total": "total", "moe": lambda p: 1e-5 * (p["moe_lb"] + p["moe_kl"] + p["moe_u"])},
    tamper="fusion.img_MoE.ffn.experts.2.mu.bias",
)

CLGSI = RefMap(
    weights=(
        *prefixed((("text_model.model", "text_model.bert"),), ((r"(embeddings|encoder|pooler)\.(.+)", r"\1.\2"),)),
        (r"(audio|video)_model\.encoder_layer\.(.+)", r"\1_model.unused_encoder_layer.\2"),  # nn.TransformerEncoder's template
        (r"(audio|video)_model\.transformer_encoder\.(.+)", r"\1_model.transformer_encoder.\2"),
        (r"(audio|video)_model\.position_embbeding\.pe", None),  # the sinusoidal table, a constant
        (r"GLFK\.fc\.(\d)\.(weight|bias)", r"glfk.fc.\1.\2"),
        (r"fusionBatchNorm\.(\w+)", r"fusion_batchnorm.\1"),
        (r"skip_connection_BatchNorm\.(\w+)", r"unused_skip_connection_batchnorm.\1"),
        (r"(post_(text|audio|video)_layer_2|post_fusion_layer_1)\.(weight|bias)", r"unused_\1.\3"),  # never used
        (r"(post_\w+_layer_\w+|\w+_skip_net\.fc\.\d)\.(weight|bias)", r"\1.\2"),
    ),
    outputs={"M": "pred", **{f"Feature_{m}": f"features.{m}" for m in "tav"},
             "Feature_f": "hook:post_fusion_layer_skip_connection", "GLFK": "hook:glfk",
             **{f"{ref}_skip": f"hook:{ref}_skip_net" for ref in ("text", "audio", "video")}},
    losses={"L1": "task", "CL": "contrastive", "total": "total"},
    tamper="video_model.transformer_encoder.layers.1.linear2.bias",
)

def _mfon_teachers(model: Any, batch: Batch) -> dict[str, torch.Tensor]:
    """The teachers' outputs and the pre-training heads' predictions on them (stages vision/audio)."""
    out = {}
    for m, x in (("v", batch.vision), ("a", batch.audio)):
        out[f"teacher_{m}"] = model.teacher[m](x)
        out[f"pretrain_pred_{m}"] = model.teacher_head[m](out[f"teacher_{m}"])
    return out


_MFON_BLOCKS = (("vision_with_text", "vision_with_text"), ("audio_with_text", "audio_with_text"),
                ("vision_encoder_froze.trans_encoder_a", "teacher.v.encoder"),
                ("audio_encoder_froze.trans_encoder_a", "teacher.a.encoder"))
MFON = RefMap(
    weights=(
        *prefixed((("text_encoder.extractor", "text.bert"),), ((r"(embeddings|encoder|pooler)\.(.+)", r"\1.\2"),)),
        (r"(proj_[tva])\.(weight|bias)", r"\1.\2"),
        (r"prompt([av])_m", r"prompt_\1"),
        *prefixed(_MFON_BLOCKS, _MULT_BLOCK),
        (r"[\w.]+\.(version|embed_positions\._float_tensor)", None),  # fairseq constants, not weights
        (r"vision_encoder_froze\.proj_a\.(weight|bias)", r"teacher.v.proj.\1"),  # VisionEncoder names it proj_a
        (r"audio_encoder_froze\.proj_a\.(weight|bias)", r"teacher.a.proj.\1"),
        (r"TVA_decoder\.MLP\.(\d)\.(weight|bias)", r"decoder.net.\1.\2"),
        (r"pretrain_([va])\.MLP\.(\d)\.(weight|bias)", r"teacher_head.\1.net.\2.\3"),  # Vision/AudioPretrain heads
    ),
    outputs={"pred": "pred", **{f"x_{m}": f"features.{m}" for m in "tva"}},
    losses={"mse": "task", "kl_v": "kd_v", "kl_a": "kd_a", "nce": "nce", "total": "total"},
    tamper="audio_with_text.layers.4.fc2.bias",
    extra_outputs=_mfon_teachers,
)

# -- KEBR, Semi-IIN (issue #24, second batch) ----------------------------------------------
def _kebr_similarities(model: Any, batch: Batch) -> dict[str, torch.Tensor]:
    """The MCC cosines a_i, b_i that the reference's forward returns (msabench: `similarities`)."""
    sim_a, sim_v = model.similarities(model(batch))
    return {"sim_a": sim_a, "sim_v": sim_v}


_KEBR_CMA = (("modality1_ln", "ln_text"), ("modality2_ln", "ln_other"), ("proj_modality1", "q"),
             ("proj_modality2_k", "k"), ("proj_modality2_v", "v"), ("proj", "out"))
KEBR = RefMap(
    weights=(
        *prefixed((("pretrained_language_model.model", "text.bert"),), ((r"(embeddings|encoder|pooler)\.(.+)", r"\1.\2"),)),
        (r"crossmodal_encoder\.encoderlayer\..+", None),  # the same module object as layers.0-3, listed again
        *((rf"crossmodal_encoder\.layers\.(\d)\.cma_([av])\.{ref}\.(weight|bias)", rf"fusion.layers.\1.cma_\2.{ours}.\3")
          for ref, ours in _KEBR_CMA),
        (r"crossmodal_encoder\.layers\.(\d)\.layernorm\.(weight|bias)", r"fusion.layers.\1.norm.\2"),
        (r"crossmodal_encoder\.layers\.(\d)\.fc\.(weight|bias)", r"fusion.layers.\1.fc.\2"),
        (r"(fc1|fc2)\.(weight|bias)", r"head.\1.\2"),
    ),
    outputs={"pred": "pred", "text": "hook:text", "fused": "hook:fusion"},
    losses={"L1": "task", "MCC": "mcc", "total": "total"},
    # the 4 passes share one layer: the golden's layers.0-3 all load into it, layers.3 last
    tamper="crossmodal_encoder.layers.3.cma_v.proj_modality2_k.weight",
    extra_outputs=_kebr_similarities,
)


def _semi_iin_specials(model: Any, batch: Batch) -> dict[str, torch.Tensor]:
    """The val and cls tokens of the last IntraMAU / InterMAU application (what the gates read)."""
    captured: dict[str, torch.Tensor] = {}
    handles = [getattr(model, n).register_forward_hook(lambda _m, _i, out, n=n: captured.__setitem__(n, out[:, :2]))
               for n in ("intra", "inter")]
    model(batch)
    for h in handles:
        h.remove()
    return captured


def _semi_iin_embed_dropout(model: Any, golden: dict[str, dict[str, torch.Tensor]]) -> None:
    """Replay the reference's embed-dropout masks (packed bits, sequence-first). Per encoder call
    MulT's encoder draws for the queries, the key stream and the value stream, which the released
    attention never reads (kv_same): msabench's kv stream (`wrapper_kv_stream`) takes the first two."""
    import numpy as np

    state = golden["state"]
    p = float(state["embed_dropout_p"])
    shape = tuple(state["embed_dropout_shape"].tolist())
    draws = sorted((k for k in state if k.startswith("embed_dropout.")), key=lambda k: int(k.split(".")[1]))
    keep = [torch.from_numpy(np.unpackbits(state[k].numpy())[: int(np.prod(shape))].reshape(shape)).float() / (1 - p)
            for k in draws]
    queue = [m.transpose(0, 1) for i, m in enumerate(keep) if i % 3 != 2]
    for encoder in (model.intra, model.inter):
        embed = encoder._embed
        encoder._embed = lambda x, embed=embed: embed(x) * queue.pop(0)


SEMI_IIN = RefMap(
    weights=(
        *prefixed((("cmfm1", "intra"), ("cmfm2", "inter")), _MULT_BLOCK),
        (r"cmfm[12]\.(version|embed_positions\._float_tensor)", None),  # fairseq constants, not weights
        *((rf"gate{i}\.(A|V)_affline\.(weight|bias)", rf"gate_{ours}.\1_affine.\2") for i, ours in ((1, "val"), (2, "emo"))),
        (r"token_type_embeddings\.weight", "token_type.weight"),
        (r"(pos_embed|val_token|cls_token)", r"\1"),
        *((rf"{ref}\.weight", f"{ours}.weight") for ref, ours in
          (("proj_1tt", "proj_t"), ("proj_1aa", "proj_a1"), ("proj_2aa", "proj_a2"), ("proj_1vv", "proj_v"))),
        (r"module\.(\d)\.(weight|bias)", r"mlp.\1.\2"),
        (r"fc_out1\.(weight|bias)", r"fc_val.\1"),
        (r"fc_out2\.(weight|bias)", r"fc_emo.\1"),
    ),
    outputs={"p_val": "pred", "p_emo": "extras.emotion_logits", "gate_val": "hook:gate_val", "gate_emo": "hook:gate_emo"},
    losses={"MSE": "mse", "CE": "ce", "total": "total"},
    tamper="cmfm2.layers.0.fc2.bias",
    prepare=_semi_iin_embed_dropout,
    extra_outputs=_semi_iin_specials,
)

def test_kebr_golden_shares_one_layer(tmp_path):
    """The reference's 4 TCMF passes are one module (its copies in the golden are equal, so
    loading them in turn into msabench's shared layer loses nothing) and msabench shares too."""
    meta, golden = load_golden("kebr")
    w = golden["weights"]
    for name in (k for k in w if k.startswith("crossmodal_encoder.encoderlayer.")):
        for i in range(4):
            assert torch.equal(w[name], w[name.replace("encoderlayer", f"layers.{i}")]), name
    layers = build_model(meta, tmp_path).fusion.layers
    assert all(layer is layers[0] for layer in layers)
# -- end KEBR, Semi-IIN ----------------------------------------------------------------------

# -- MSAmba, MCL-MCF, ConFEDE (issue #24, third batch) ---------------------------------------
_MSAMBA_MODS = (("text", "T", "t"), ("audio", "A", "a"), ("video", "V", "v"))  # copy names -> msabench's
_SSM = r"(conv1d|x_proj|dt_proj)\.(weight|bias)"


def _msamba_context_tokens(model: Any, batch: Batch) -> dict[str, torch.Tensor]:
    """Position 0 of each CHM context mixer's output (all that reaches the prediction at fusion depth 1)."""
    hooks: list[Any] = []
    out: dict[str, torch.Tensor] = {}
    for m in "tav":
        for i in (1, 2):
            hooks.append(model.get_submodule(f"chm.{m}.0.mixers.{i}").register_forward_hook(
                lambda _m, _i, y, key=f"chm_{m}_{i}_token0": out.__setitem__(key, y[:, 0])))
    model(batch)
    for h in hooks:
        h.remove()
    return out


MSAMBA = RefMap(
    weights=(
        *prefixed((("text_model.model", "text.bert"),), ((r"(embeddings|encoder|pooler)\.(.+)", r"\1.\2"),)),
        *((rf"proj_{ref}0\.(weight|bias)", rf"proj.{m}.\1") for ref, m in (("l", "t"), ("a", "a"), ("v", "v"))),
        *((rf"(cls_token|pos_embed)_{ref}", rf"\1.{m}") for ref, _, m in _MSAMBA_MODS),
        *prefixed(tuple((f"layers_{ref}", f"ism.{m}") for ref, _, m in _MSAMBA_MODS), (
            (r"(\d+)\.(norm|layer_norm_2|global_extractor|local_extractor)\.(weight|bias)", r"\1.\2.\3"),
            (r"(\d+)\.mixer\.(in_proj|out_proj)\.weight", r"\1.mixer.\2.weight"),
            (rf"(\d+)\.mixer\.{_SSM}", r"\1.mixer.fwd.\2.\3"),  # uni: the one scan branch
            (r"(\d+)\.mixer\.(A_log|D)", r"\1.mixer.fwd.\2"))),
        *prefixed(tuple((f"fusion_layers_{letter}", f"chm.{m}") for _, letter, m in _MSAMBA_MODS), tuple(
            rule for ref, i in (("main", 0), ("V", 1), ("A", 2)) for rule in (  # anchor, first, second context
                (rf"(\d+)\.norm_{ref}\.weight", rf"\1.norms.{i}.weight"),
                (rf"(\d+)\.mixer_{ref}\.(in_proj|out_proj|conv1d_z)\.weight", rf"\1.mixers.{i}.\2.weight"),
                (rf"(\d+)\.mixer_{ref}\.conv1d_x\.weight", rf"\1.mixers.{i}.ssm.conv1d.weight"),
                (rf"(\d+)\.mixer_{ref}\.{_SSM}", rf"\1.mixers.{i}.ssm.\2.\3"),
                (rf"(\d+)\.mixer_{ref}\.(A_log|D)", rf"\1.mixers.{i}.ssm.\2")))),
        *((rf"sub_fc_{letter}\.(weight|bias)", rf"sub_head.{m}.\1") for _, letter, m in _MSAMBA_MODS),
        *((rf"sub_fc_{letter}_cls\.(weight|bias)", rf"chm_head.{m}.\1") for _, letter, m in _MSAMBA_MODS),
        (r"fc\.(weight|bias)", r"fc.\1"),
    ),
    outputs={"output": "pred", "text": "hook:text",
             **{f"sub_output_{letter}": f"unimodal.{m}" for _, letter, m in _MSAMBA_MODS},
             **{f"cls_{letter}": f"hook:chm_head.{m}" for _, letter, m in _MSAMBA_MODS},
             **{f"ism_{m}": f"hook:ism.{m}.1#0" for m in "tav"}, **{f"chm_{m}": f"hook:chm.{m}.0.mixers.0" for m in "tav"}},
    losses={"L1": "task", "total": "total", **{f"sub_output_{letter}": f"ism_{m}" for _, letter, m in _MSAMBA_MODS},
            **{f"cls_{letter}": f"chm_{m}" for _, letter, m in _MSAMBA_MODS}},
    tamper="fusion_layers_A.0.mixer_V.out_proj.weight",  # a context mixer: the prediction moves ~2e-6
    extra_outputs=_msamba_context_tokens,
)


def _mcl_mcf_branches(model: Any, batch: Batch) -> dict[str, torch.Tensor]:
    """MCF branches res/res2/res3, the level-2 hubs and the TCF maps (eval skips the contrastive levels)."""
    reps = model.encode(batch)
    res = model.branches(reps)
    return {**{f"res_{m}": r for m, r in zip("tva", res)}, **{f"hub_{k}": h for k, h in model.hubs(reps).items()},
            **{f"map_{k}": x for k, x in model.tcf_maps(res).items()}}


def _clip(ref: str, ours: str) -> tuple[tuple[str, str], ...]:
    return ((rf"{ref}\.x_learn_weight\.(weight|bias)", rf"{ours}.proj_x.\1"),
            (rf"{ref}\.y_learn_weight\.(weight|bias)", rf"{ours}.proj_y.\1"))


MCL_MCF = RefMap(
    weights=(
        *prefixed((("text_enc.bertmodel", "text_enc.bert"),), ((r"(embeddings|encoder|pooler)\.(.+)", r"\1.\2"),)),
        (r"(acoustic_enc|visual_enc)\.rnn\.(\w+_l0)", r"\1.rnn.\2"),
        (r"(acoustic_enc|visual_enc)\.linear_1\.(weight|bias)", r"\1.linear.\2"),
        *(rule for name in ("ta_clip", "tv_clip", "av_clip", "mass_t_clip", "mass_v_clip", "mass_a_clip",
                            "mass_tav_clip", "tfn_tv", "tfn_ta", "tfn_av") for rule in _clip(name, name)),
        *((rf"getresNet{ref}\.0\.0\.(weight|bias)", rf"get_res_{ours}.\1")
          for ref, ours in (("", "t"), ("2", "v"), ("3", "a"), ("4", "tav"))),
        (r"(conv_tv|conv_av|conv_vt|conv_tav|conv_res)\.(weight|bias)", r"\1.\2"),
        (r"(conv_tfn_[tva])\.([024])\.(weight|bias)", r"\1.\2.\3"),
        (r"fusion_prj\.(linear_[123])\.(weight|bias)", r"fusion_prj.\1.\2"),
    ),
    outputs={"preds": "pred", "text": "features.t", "audio": "features.a", "vision": "features.v"},
    losses={"L1": "task", "nce": "nce", "nce2": "nce2", "nce3": "nce3", "total": "total"},
    tamper="conv_tfn_a.2.weight",  # a TCF stack: only the level-3 loss, its maps and gradients see it
    extra_outputs=_mcl_mcf_branches,
)


def test_mcl_mcf_dead_map_nan_as_the_reference(tmp_path):
    """The code's `y / ||y||` is NaN on a dead (all-zero) TCF map: with `norm_eps=0` msabench gives
    the reference's NaN pattern (and its finite parts); the default clamp keeps the loss finite."""
    meta, golden = load_golden("mcl_mcf")
    weight, value = meta["dead_map"]["weight"], meta["dead_map"]["value"]
    found = {}
    base = meta["msabench"]["overrides"]
    for eps in (0.0, None):  # None: msabench's default clamp
        meta["msabench"]["overrides"] = {**base, "norm_eps": eps} if eps is not None else base
        model = build_model(meta, tmp_path / str(eps))
        model.load_state_dict(map_tensors(golden["weights"], MCL_MCF.weights, set(model.state_dict())))
        with torch.no_grad():
            model.get_parameter(str(map_name(weight, MCL_MCF.weights)[1])).fill_(value)
        batch = Batch(**golden["batch"])  # type: ignore[arg-type]
        model.train()
        parts = model.loss(model(batch), batch)
        found[eps] = {k: parts[v] for k, v in MCL_MCF.losses.items() if isinstance(v, str)}
    assert golden["dead_loss"]["nce3"].isnan(), "the golden's dead pass should be NaN in the TCF loss"
    assert not differences(golden["dead_loss"], found[0.0], "dead_loss", {})
    assert all(bool(v.isfinite()) for v in found[None].values()), f"default norm_eps gave {found[None]}"




class _FixedPartners:
    """Stands in for ConFEDE's training split: `take` returns the golden's partners (6 per
    anchor, ss ss dd dd sd sd), whatever ids the retriever drew."""

    def __init__(self, partners: Batch, n: int):
        self.partners, self.n = partners, n

    def __len__(self) -> int:
        return self.n

    def take(self, ids: torch.Tensor) -> Batch:
        assert len(ids) == len(self.partners), f"{len(ids)} partners drawn, the golden holds {len(self.partners)}"
        return self.partners


def _confede_partners(model: Any, golden: dict[str, dict[str, torch.Tensor]]) -> Any:
    state = golden["state"]
    partners = Batch(**{k[len("partner."):]: v for k, v in state.items() if k.startswith("partner.")})  # type: ignore[arg-type]
    n = int(torch.cat([golden["batch"]["index"], partners.index]).max()) + 1
    model.candidates = {kind: torch.zeros(n, 2, dtype=torch.long) for kind in ("ss", "dd", "sd")}
    model._gen = torch.Generator().manual_seed(0)
    return SimpleNamespace(data=SimpleNamespace(train=_FixedPartners(partners, n)))


_CONFEDE_ENC = (("vision_encoder", "vision"), ("audio_encoder", "audio"))
CONFEDE = RefMap(
    weights=(
        *prefixed((("text_encoder.extractor", "text.bert"),), ((r"(embeddings|encoder|pooler)\.(.+)", r"\1.\2"),)),
        *prefixed(_CONFEDE_ENC, (
            (r"encoder\.pos_encoder\.(cls_token|position_embeddings)", r"\1"),
            (r"encoder\.pos_encoder\.proj\.(weight|bias)", r"proj.\1"),
            (r"encoder\.transformer_encoder\.layers\.(.+)", r"encoder.layers.\1"),
            (r"layernorm\.(weight|bias)", r"layernorm.\1"),
            (r"(fc|dense)\.(weight|bias)", r"unused_\1.\2"))),  # built, never called (as in the code)
        (r"(vision|audio)_encoder\.cls_embedding", None),  # nn.Parameter(): 0 elements, never used
        *((rf"{m.upper()}_{kind}_proj\.fc\.([01])\.(weight|bias)", rf"proj.{kind}_{m}.net.\1.\2")
          for kind in ("simi", "dissimi") for m in "tva"),
        (r"TVA_decoder\.MLP\.(\d)\.(weight|bias)", r"decoder.net.\1.\2"),
        (r"mono_decoder\.MLP\.(\d)\.(weight|bias)", r"mono_decoder.net.\1.\2"),
        (r"pretrain_([tva])\.MLP\.(\d)\.(weight|bias)", r"pretrain_heads.\1.net.\2.\3"),  # stage-1 heads
    ),
    outputs={"pred": "pred", "text": "features.t", "vision": "features.v", "audio": "features.a",
             **{f"{kind}_{m}": f"hook:proj.{kind}_{m}" for kind in ("simi", "dissimi") for m in "tva"}},
    losses={"pred": "task", "contrastive": "contrastive", "mono": "mono", "total": "total"},
    tamper="audio_encoder.encoder.transformer_encoder.layers.1.linear2.bias",
    prepare=_confede_partners,
)


# -- MISA -----------------------------------------------------------------------------------
MISA = RefMap(
    weights=(
        *prefixed((("bertmodel.model", "text.bert"),), ((r"(embeddings|encoder|pooler)\.(.+)", r"\1.\2"),)),
        *((rf"{m}rnn(\d)\.(\w+)", rf"seq.{m}.rnn\1.\2") for m in "va"),
        *((rf"{m}layer_norm\.(weight|bias)", rf"seq.{m}.norm.\1") for m in "va"),
        (r"tlayer_norm\.(weight|bias)", r"unused_tlayer_norm.\1"),  # built, never used (MMSA)
        *((rf"project_{m}\.project_{m}\.(weight|bias)", rf"project.{m}.0.\1") for m in "tva"),
        *((rf"project_{m}\.project_{m}_layer_norm\.(weight|bias)", rf"project.{m}.2.\1") for m in "tva"),
        *((rf"private_{m}\.private_{m}_\d\.(weight|bias)", rf"private.{m}.0.\1") for m in "tva"),
        (r"shared\.shared_1\.(weight|bias)", r"shared.0.\1"),
        *((rf"recon_{m}\.recon_{m}_1\.(weight|bias)", rf"recon.{m}.\1") for m in "tva"),
        (r"sp_discriminator\.sp_discriminator_layer_1\.(weight|bias)", r"unused_sp_discriminator.\1"),
        (r"fusion\.fusion_layer_1\.(weight|bias)", r"fusion.0.\1"),
        (r"fusion\.fusion_layer_3\.(weight|bias)", r"fusion.3.\1"),
        (r"transformer_encoder\.(.+)", r"fusion_transformer.\1"),  # nn.TransformerEncoder on both sides
    ),
    outputs={"M": "pred", **{f"utt_{m}_orig": f"features.{m}" for m in "tva"},
             **{f"{kind}_{m}": f"features.{kind}_{m}" for kind in ("private", "shared", "recon") for m in "tva"},
             "transformer": "hook:fusion_transformer"},
    losses={"cls": "task", "diff": "diff", "cmd": "sim", "recon": "recon", "total": "total"},
    tamper="vrnn2.weight_hh_l0_reverse",
)


# -- MMIM -----------------------------------------------------------------------------------
_MMIM_PAIRS = ("tv", "ta")


def _mmim_memory(model: Any, golden: dict[str, dict[str, torch.Tensor]]) -> None:
    """train_others at its third batch: one previous batch's projections in the memory."""
    state = golden["state"]
    model.memory = {p: {side: [state[f"before.{p}.{side}"].clone()] for side in ("pos", "neg")} for p in _MMIM_PAIRS}
    model.batch_in_epoch = 2


def _mmim_after(model: Any) -> dict[str, torch.Tensor]:
    return {f"after.{p}.{side}": model.memory[p][side][0] for p in _MMIM_PAIRS for side in ("pos", "neg")}


def _mmim_phase_losses(parts: dict[str, torch.Tensor]) -> torch.Tensor:
    return -parts["lld"]  # what the "mmilb" phase's loss() returns as its total


MMIM = RefMap(
    weights=(
        *prefixed((("bertmodel.model", "text.bert"),), ((r"(embeddings|encoder|pooler)\.(.+)", r"\1.\2"),)),
        *prefixed((("acoustic_enc", "audio_enc"), ("visual_enc", "vision_enc")),
                  ((r"rnn\.(\w+)", r"rnn.\1"), (r"linear_1\.(weight|bias)", r"linear_1.\1"))),
        *((rf"mi_{p}\.(.+)", rf"mi.{p}.\1") for p in _MMIM_PAIRS),
        *((rf"cpc_z{m}\.net\.(weight|bias)", rf"cpc.{m}.net.\1") for m in "tva"),
        (r"fusion_prj\.(linear_\d)\.(weight|bias)", r"fusion.\1.\2"),
    ),
    outputs={"M": "pred", **{f"Feature_{m}": f"features.{m}" for m in "tavf"}, "lld": "extras.lld", "nce": "extras.nce"},
    losses={"L1": "task", "nce": "nce", "lld": "lld", "H": "H", "total": "total", "mmilb_total": _mmim_phase_losses},
    tamper="acoustic_enc.rnn.weight_ih_l0",
    prepare=_mmim_memory,
    after=_mmim_after,
)

# -- TFN, LMF, MTFN, MLMF (MMSA 2.2.1) ------------------------------------------------------
_TFN_SUBNETS = (
    *((rf"{ref}_subnet\.(norm|linear_[123])\.(\w+)", rf"subnet.{ours}.\1.\2") for ref, ours in (("audio", "a"), ("video", "v"))),
    (r"text_subnet\.(rnn|linear_1)\.(\w+)", r"subnet.t.\1.\2"),
)
_TFN_HEADS = tuple((rf"post_{ref}_layer_([123])\.(weight|bias)", rf"heads.{ours}.layer_\1.\2")
                   for ref, ours in (("text", "t"), ("audio", "a"), ("video", "v")))
_TFN_OUTPUTS = {"M": "pred", **{f"Feature_{m}": f"features.{m}" for m in "tavf"}}
TFN = RefMap(
    weights=(*_TFN_SUBNETS, (r"post_fusion_layer_([123])\.(weight|bias)", r"head.post_fusion.layer_\1.\2"),
             (r"(output_range|output_shift)", r"head.\1")),
    outputs=_TFN_OUTPUTS,
    losses={"total": "total"},
    tamper="text_subnet.linear_1.weight",
)

_LMF_FUSION = (*((rf"{ref}_factor", f"fusion.factor.{ours}") for ref, ours in (("audio", "a"), ("video", "v"), ("text", "t"))),
               (r"(fusion_weights|fusion_bias)", r"fusion.\1"))
LMF = RefMap(
    weights=(*_TFN_SUBNETS, *_LMF_FUSION),
    outputs=_TFN_OUTPUTS,
    losses={"total": "total"},
    tamper="text_factor",
)

_MULTITASK = {"outputs": {**_TFN_OUTPUTS, **{m.upper(): f"unimodal.{m}" for m in "tav"}},
              "losses": {"M": "task", "T": "t", "A": "a", "V": "v", "total": "total"}}
MTFN = RefMap(weights=(*TFN.weights, *_TFN_HEADS), tamper="post_audio_layer_2.weight", **_MULTITASK)  # type: ignore[arg-type]
MLMF = RefMap(weights=(*_TFN_SUBNETS, *_LMF_FUSION, *_TFN_HEADS), tamper="video_factor", **_MULTITASK)  # type: ignore[arg-type]


# -- end of MSAmba, MCL-MCF, ConFEDE ------------------------------------------------------------

# -- EF-LSTM, LF-DNN, MLF-DNN, MFN, Graph-MFN (MMSA parity, wave 1) ----------------------------
_SAME_NAMES = ((r"(.+)", r"\1"),)  # msabench keeps MMSA's module names
EF_LSTM = RefMap(weights=_SAME_NAMES, outputs={"M": "pred", "norm": "hook:norm", "lstm": "hook:lstm"},
                 losses={"L1": "task", "total": "total"}, tamper="lstm.bias_ih_l3")
LF_DNN = RefMap(weights=_SAME_NAMES, outputs={"M": "pred", **{f"Feature_{m}": f"features.{m}" for m in "tavf"}},
                losses={"L1": "task", "total": "total"}, tamper="text_subnet.rnn.weight_ih_l0")
_IN_NET = ((r"(.+)", r"net.\1"),)  # MMSA's network names under the model's `net` (models/layers/memory_fusion.py)
MFN = RefMap(weights=_IN_NET, outputs={"M": "pred", "L": "features.f"}, losses={"L1": "task", "total": "total"},
             tamper="att2_fc1.bias")


def _reference_counts() -> list[tuple[str, str, int]]:
    """(model, dataset, MMSA's parameter count) from the goldens that record them (built by their scripts)."""
    metas = {p.stem: json.loads(p.read_text()) for p in sorted(GOLDEN_DIR.glob("*.json"))}
    return [(name, dataset, count) for name, meta in metas.items()
            for dataset, count in meta.get("reference_parameters", {}).items()]


@pytest.mark.parametrize("name,dataset,count", _reference_counts())
def test_parameter_count_as_the_reference(name, dataset, count):
    """The `mmsa` preset builds exactly as many parameters as MMSA 2.2.1 in that dataset's configuration."""
    model = create_model(name, dataset, "mmsa")
    assert sum(p.numel() for p in model.parameters()) == count, f"{name} on {dataset}"
MLF_DNN = RefMap(weights=_SAME_NAMES,
                 outputs={"M": "pred", **{m.upper(): f"unimodal.{m}" for m in "tav"},
                          **{f"Feature_{m}": f"features.{m}" for m in "tavf"}},
                 losses={"M": "task", "T": "t", "A": "a", "V": "v", "total": "total"}, tamper="text_subnet.linear_1.bias")


def _graph_mfn_efficacies(model: Any, batch: Batch) -> dict[str, torch.Tensor]:
    """The DFG efficacies of every step, (B, T, 19)."""
    steps: list[torch.Tensor] = []
    handle = model.net.graph_mfn.efficacy_model.register_forward_hook(lambda _m, _i, out: steps.append(out))
    model(batch)
    handle.remove()
    return {"efficacies": torch.stack(steps, dim=1)}


GRAPH_MFN = RefMap(weights=_IN_NET, outputs={"M": "pred"}, losses={"L1": "task", "total": "total"},
                   tamper="l_transform.bias", extra_outputs=_graph_mfn_efficacies)
# -- end of MMSA parity, wave 1 ------------------------------------------------------------------


# -- MFM (MMSA 2.2.1) ---------------------------------------------------------------------------
_LSTM_CELL = r"(weight_ih|weight_hh|bias_ih|bias_hh)"
MFM = RefMap(
    weights=(
        *((rf"encoder_{r}\.lstm\.{_LSTM_CELL}", rf"encoders.{m}.lstm.\1_l0") for r, m in _MMSA_MOD),  # LSTMCell -> nn.LSTM
        *((rf"(en|de)coder_{r}\.fc1\.(weight|bias)", rf"\1coders.{m}.fc1.\2") for r, m in _MMSA_MOD),
        *((rf"decoder_{r}\.lstm\.{_LSTM_CELL}", rf"decoders.{m}.lstm.\1") for r, m in _MMSA_MOD),
        (r"mfn_encoder\.(.+)", r"mfn.\1"),  # MMSA's MFN names (its out_* head: built, never called by MFM)
        (r"last_to_zy_fc1\.(weight|bias)", r"to_zy.\1"),
        *((rf"z{r}_to_f{r}_(fc1|fc2)\.(weight|bias)", rf"factor.{m}.\1.\2") for r, m in (*_MMSA_MOD, ("y", "y"))),
        (r"fy_to_y_(fc1|fc2)\.(weight|bias)", r"head.\1.\2"),
    ),
    outputs={"pred": "pred", "zl": "features.t", "za": "features.a", "zv": "features.v", "zy": "features.y",
             "fy": "features.f", "mfn": "hook:mfn"},
    losses={"L1": "task", "gen": "gen", "mmd": "mmd", "total": "total"},
    tamper="mfn_encoder.gamma1_fc2.bias",
)


# -- MCTN (MMSA 2.2.1) --------------------------------------------------------------------------
MCTN = RefMap(
    weights=(
        (r"seq2seq[12]\..+", None),  # MMSA's Seq2Seq wrappers hold encoder1/decoder1, encoder2/decoder2: aliases
        (r"decoder[12]\.attention\..+", None),  # aliases of attn1 / attn2
        (r"attn([12])\.(attn|v)\.weight", r"decoder\1.attention.\2.weight"),
        (r"(encoder[12]|decoder[12]|regression)\.(.+)", r"\1.\2"),
    ),
    outputs={"pred": "pred", "join1": "hook:encoder1#0", "s1": "hook:encoder1#1", "join2": "hook:encoder2#0"},
    losses={"total": "total", "L1": "task", "translation": "translation"},
    tamper="encoder1.rnn.weight_ih_l0",  # on the prediction path (text -> encoder1 -> encoder2 -> regression)
)


ALMT = RefMap(
    weights=(
        (r"bertmodel\.model\.(.+)", r"text.bert.\1"),
        *((rf"embedding_{ref}\.(.+)", rf"embedding.{ours}.\1") for ref, ours in _MMSA_MOD),
        (r"h_hyper_layer\.layers\.(\d+)\.0\.(.+)", r"h_hyper_layer.\1.\2"),
        (r"fusion_layer\.CrossTransformerEncoder\.(.+)", r"fusion_layer.\1"),
        (r"(l_encoder\..+|h_hyper|fusion_layer\.\w+|regression_head\.\w+)", r"\1"),
    ),
    outputs={"M": "pred", "fusion": "hook:fusion_layer",
             **{f"h_{ref}": f"hook:embedding.{ours}#-1" for ref, ours in _MMSA_MOD},
             **{f"ahl_{i}": f"hook:h_hyper_layer.{i}" for i in range(3)},
             **{f"l_encoder_{i}": f"hook:l_encoder#{i}" for i in range(3)}},
    losses={"MSE": "task"},
    tamper="h_hyper_layer.layers.1.0.fn.to_k_tv.weight",
)

CENET = RefMap(
    weights=(
        (r"bert\.embeddings\.(senti|pos_tag|polarity)_embeddings\.weight", r"unused_tag_embeddings.\1.weight"),  # never read
        (r"bert\.encoder\.CE\.(.+)", r"ce.\1"),
        (r"bert\.(embeddings|encoder|pooler)\.(.+)", r"text.bert.\1.\2"),
        (r"classifier\.(dense|out_proj)\.(weight|bias)", r"classifier.\1.\2"),
    ),
    outputs={"M": "pred", "layer_0": "hook:text.bert.encoder.layer.0", "CE_v": "hook:ce.hv", "CE_a": "hook:ce.ha",
             "CE": "hook:ce", "encoder": "hook:text.bert.encoder"},
    losses={"L1": "task"},
    tamper="bert.encoder.CE.ha.Wk.weight",
)

_TETFN_CROSS = (("trans_l_with_a", "cross.ta"), ("trans_l_with_v", "cross.tv"), ("trans_a_with_l", "cross.at"),
                ("trans_v_with_l", "cross.vt"))
_TETFN_ENHANCED = (("trans_a_with_v", "enhanced.av"), ("trans_v_with_a", "enhanced.va"))
TETFN = RefMap(
    weights=(
        (r"text_model\.model\.(.+)", r"text.bert.\1"),
        (r"audio_model\.(.+)", r"audio_net.\1"),
        (r"video_model\.(.+)", r"video_net.\1"),
        (r"proj_l\.weight", "proj_t.weight"),
        *prefixed(_TETFN_CROSS + tuple((f"trans_{r}_mem", f"memory_net.{m}") for r, m in _MMSA_MOD)
                  + tuple((f"{ref}.{part}_mha", f"{ours}.{part}") for ref, ours in _TETFN_ENHANCED
                          for part in ("lower", "upper")), _MULT_BLOCK),
        (r"trans_[\w.]+\.(version|embed_positions\._float_tensor)", None),  # fairseq constants, not weights
        *((rf"post_{ref}_layer_(\d)\.(weight|bias)", rf"heads.{ours}.layer_\1.\2")
          for ref, ours in (("fusion", "f"), ("text", "t"), ("audio", "a"), ("video", "v"))),
    ),
    outputs={"M": "pred", **{m.upper(): f"unimodal.{m}" for m in "tav"},
             **{f"Feature_{m}": f"features.{m}" for m in "tavf"},
             "proj_l": "hook:proj_t", "audio_model": "hook:audio_net", "video_model": "hook:video_net",
             **{ref: f"hook:{ours}" for ref, ours in _TETFN_CROSS + _TETFN_ENHANCED},
             **{f"{ref}.lower_mha": f"hook:{ours}.lower" for ref, ours in _TETFN_ENHANCED}},
    losses={"M": "task", "T": "t", "A": "a", "V": "v"},
    tamper="trans_a_with_v.lower_mha.layers.0.fc2.bias",
    prepare=_self_mm_memory,  # the same ULGM memory (models/layers/ulgm.py), at epoch 3
    after=_self_mm_after,
)


# -- TFR-Net (MMSA 2.2.1) -------------------------------------------------------------------------
def _tfr_net_reconstruction(model: Any, batch: Batch) -> dict[str, torch.Tensor]:
    """CM_ATTN's six outputs and the generators' reconstructions (eval mode, as MMSA's forward computes them)."""
    _, h = model.encoded(batch)
    states = model.temporal_states(h)
    return {**{f"h_{m}": h[m] for m in "tav"}, **{f"h_{m}_n": states[m] for m in "tav"},
            **{f"gen_{m}": model.generator[m](states[m]) for m in "tav"}}


_TFR_ALIGN = tuple((f"align_subnet.Model.trans_{r}_{kind}", f"{ours}.{m}")
                   for kind, ours in (("mem", "memory"), ("final", "temporal")) for r, m in _MMSA_MOD)
_TFR_GATES = (("text", "t"), ("audio", "a"), ("vision", "v"))
TFR_NET = RefMap(
    weights=(
        (r"text_model\.model\.(.+)", r"text.bert.\1"),
        *((rf"align_subnet\.Model\.proj_{r}\.weight", f"proj.{m}.weight") for r, m in _MMSA_MOD),
        *prefixed(tuple((f"align_subnet.Model.{ref}", ours) for ref, ours in _MULT_CROSS) + _TFR_ALIGN, _MULT_BLOCK),
        (r"align_subnet\.Model\.trans_\w+\.(version|embed_positions\._float_tensor)", None),  # fairseq constants
        *((rf"generator_{m}\.Model\.linear\.(weight|bias)", rf"generator.{m}.\1") for m in "tav"),
        *((rf"fusion_subnet\.Model\.{ref}_encoder\.gru\.gru\.(\w+)", rf"fusion.{m}.gru.\1") for ref, m in _TFR_GATES),
        *((rf"fusion_subnet\.Model\.{ref}_encoder\.(cnn|fc)\.(weight|bias)", rf"fusion.{m}.\1.\2") for ref, m in _TFR_GATES),
        *((rf"fusion_subnet\.Model\.classifier\.linear_trans_{ref}\.(\w+)", rf"classifier.{i}.\1")
          for ref, i in (("norm", 0), ("hidden", 1), ("final", 4))),
    ),
    outputs={"M": "pred", **{f"fusion_{ref}": f"features.{m}" for ref, m in _TFR_GATES}},
    losses={"L1": "task", "gen": "rec", "total": "total", **{f"rec_{m}": f"rec_{m}" for m in "tav"}},
    tamper="align_subnet.Model.trans_a_final.layers.0.fc1.weight",
    extra_outputs=_tfr_net_reconstruction,
)

MAPS: dict[str, RefMap] = {"mult": MULT, "mag_bert": MAG_BERT, "self_mm": SELF_MM, "glomo": GLOMO, "euar": EUAR,
                           "clgsi": CLGSI, "mfon": MFON,
                           "kebr": KEBR, "semi_iin": SEMI_IIN,
                           "msamba": MSAMBA, "mcl_mcf": MCL_MCF, "confede": CONFEDE,
                           "ef_lstm": EF_LSTM, "lf_dnn": LF_DNN, "mfn": MFN, "mlf_dnn": MLF_DNN, "graph_mfn": GRAPH_MFN,
                           "misa": MISA, "mmim": MMIM,
                           "tfn": TFN, "lmf": LMF, "mtfn": MTFN, "mlmf": MLMF,
                           "mfm": MFM, "mctn": MCTN,
                           "almt": ALMT, "cenet": CENET, "tetfn": TETFN, "tfr_net": TFR_NET}


# -- the machinery -------------------------------------------------------------------------
def load_golden(name: str) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """(metadata, {section: {key: tensor}}) of a committed golden."""
    from safetensors.torch import load_file

    meta = json.loads((GOLDEN_DIR / f"{name}.json").read_text())
    sections: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in load_file(str(GOLDEN_DIR / f"{name}.safetensors")).items():
        section, _, rest = key.partition("/")
        sections.setdefault(section, {})[rest] = value
    return meta, sections


def map_name(ref_name: str, rules: tuple[tuple[str, str | None], ...]) -> tuple[bool, str | None]:
    """(matched, msabench name or None for a dropped tensor) under the first rule that fully matches."""
    for pattern, template in rules:
        m = re.fullmatch(pattern, ref_name)
        if m:
            return True, (m.expand(template) if template is not None else None)
    return False, None


def map_tensors(ref: dict[str, torch.Tensor], rules: tuple[tuple[str, str | None], ...],
                expected: set[str]) -> dict[str, torch.Tensor]:
    """Rename every reference tensor; fail on any reference name without a rule, two names
    mapped to one, or an msabench name no reference tensor fills."""
    out: dict[str, torch.Tensor] = {}
    unmapped, clashes = [], []
    for name, tensor in ref.items():
        matched, ours = map_name(name, rules)
        if not matched:
            unmapped.append(name)
        elif ours is not None:
            if ours in out:
                clashes.append(f"{name} -> {ours}")
            out[ours] = tensor
    missing, extra = sorted(expected - out.keys()), sorted(out.keys() - expected)
    problems = [f"{label}: {items}" for label, items in (("reference tensors without a rule", unmapped),
                ("mapped twice", clashes), ("msabench tensors no reference tensor fills", missing),
                ("mapped to names msabench does not have", extra)) if items]
    if problems:
        raise AssertionError("name map incomplete: " + "; ".join(problems))
    return out


def build_model(meta: dict[str, Any], tmp_path: Path) -> MSAModel:
    """msabench's model in the golden's configuration (a tiny BERT checkpoint folder when needed),
    in the golden's training stage if it names one."""
    cfg = meta["msabench"]
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["overrides"].items()}
    if "bert_config" in meta:
        from transformers import BertConfig, BertModel

        BertModel(BertConfig(**meta["bert_config"])).save_pretrained(tmp_path / "bert")
        overrides["text_encoder"] = str(tmp_path / "bert")
    model = create_model(cfg["name"], cfg["dataset"], cfg["preset"], **overrides)
    if cfg.get("stage"):  # as the trainer runs a stage: model.stage set, the rest frozen
        stage = {s.name: s for s in model.stages()}[cfg["stage"]]
        trainable = {id(p) for p in stage.trainable()} if stage.trainable else None
        model.stage = stage.name
        for p in model.parameters():
            p.requires_grad_(trainable is None or id(p) in trainable)
    return model


def output_at(out: ModelOutput, path: str, hooked: dict[str, torch.Tensor]) -> torch.Tensor:
    if path.startswith("hook:"):
        return hooked[path[5:]]
    head, _, key = path.partition(".")
    value = getattr(out, head)
    return value[key] if key else value


@contextlib.contextmanager
def replayed_draws(state: dict[str, torch.Tensor]) -> Iterator[None]:
    """Replay the reference's recorded `torch.randn_like` draws (MoE gating noise), in order;
    fails if msabench draws a different number or shape."""
    draws = [state[k] for k in sorted((k for k in state if k.startswith("randn_like.")), key=lambda k: int(k[11:]))]
    if not draws:
        yield
        return
    queue, original = list(draws), torch.randn_like

    def replay(t: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        assert queue, "msabench drew more torch.randn_like samples than the reference"
        value = queue.pop(0)
        assert value.shape == t.shape, f"randn_like draw of shape {tuple(t.shape)}, reference drew {tuple(value.shape)}"
        return value.to(t.dtype)

    torch.randn_like = replay  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.randn_like = original  # type: ignore[assignment]
    assert not queue, f"msabench drew {len(draws) - len(queue)} torch.randn_like samples, the reference {len(draws)}"


def differences(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor], what: str,
                report: dict[str, float]) -> list[str]:
    """Mismatches beyond atol/rtol (shape, NaN pattern or values); the max |difference| per
    section goes into `report`."""
    problems = []
    for key, want in expected.items():
        got = actual[key].detach().reshape(want.shape) if actual[key].numel() == want.numel() else actual[key]
        if got.shape != want.shape:
            problems.append(f"{what} {key}: shape {tuple(got.shape)} != reference {tuple(want.shape)}")
            continue
        diff = (got.double() - want.double()).abs().nan_to_num(0.0)
        report[what] = max(report.get(what, 0.0), float(diff.max()) if diff.numel() else 0.0)
        if not torch.equal(got.isnan(), want.isnan()):
            problems.append(f"{what} {key}: NaN pattern differs from the reference")
        elif not torch.allclose(got.double(), want.double(), atol=ATOL, rtol=RTOL, equal_nan=True):
            problems.append(f"{what} {key}: max |difference| {float(diff.max()):.3g} > atol {ATOL} + rtol {RTOL}")
    return problems


def hook_outputs(model: nn.Module, ref_map: RefMap) -> dict[str, torch.Tensor]:
    """Register the map's "hook:path[#i]" captures; returns the dict they fill while the model runs."""
    hooked: dict[str, torch.Tensor] = {}
    for where in {p[5:] for p in ref_map.outputs.values() if p.startswith("hook:")}:
        path, _, index = where.partition("#")
        model.get_submodule(path).register_forward_hook(
            lambda _m, _i, out, w=where, i=index: hooked.__setitem__(
                w, out[int(i)] if i else (out if torch.is_tensor(out) else out[0])))
    return hooked


def eval_outputs(model: nn.Module, batch: Batch, ref_map: RefMap) -> dict[str, torch.Tensor]:
    """The eval-mode values the golden's `eval/` section holds, from msabench."""
    hooked = hook_outputs(model, ref_map)
    model.eval()
    with torch.no_grad():
        out = model(batch)
        evals = {k: output_at(out, p, hooked) for k, p in ref_map.outputs.items()}
        if ref_map.extra_outputs is not None:
            evals.update(ref_map.extra_outputs(model, batch))
    return evals


def gradient_problems(model: nn.Module, golden: dict[str, dict[str, torch.Tensor]], ref_map: RefMap,
                      report: dict[str, float]) -> list[str]:
    """Which parameters receive a gradient, and the gradients (or their fingerprints)."""
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    section = "grad" if "grad" in golden else "gradfp"  # gradfp: compact goldens store fingerprints
    names = {ref: str(map_name(ref, ref_map.weights)[1]) for ref in golden[section]}
    problems = []
    if set(names.values()) != grads.keys():
        problems.append(f"parameters receiving a gradient differ: reference only {sorted(set(names.values()) - grads.keys())}, "
                        f"msabench only {sorted(grads.keys() - set(names.values()))}")
    ours = {ref: grads.get(name, torch.zeros(0)) for ref, name in names.items()}
    if section == "gradfp":
        return problems + fingerprint_problems(golden[section], ours, report)
    return problems + differences(golden[section], ours, section, report)


FINGERPRINT_SIGMAS = 4.0


def fingerprint_problems(expected: dict[str, torch.Tensor], grads: dict[str, torch.Tensor],
                         report: dict[str, float]) -> list[str]:
    """Compact goldens store each gradient g as 8 projections r_k . g on Gaussian directions.
    A gradient inside the elementwise tolerance (|d_i| <= atol + rtol |g_i|) moves a projection
    by r_k . d ~ N(0, |d|^2), |d| <= T = |atol + rtol |g|| (the L2 norm of the elementwise
    tolerance): the projections must agree to 4 T (a false alarm about once in 16,000 tensors).
    An elementwise test on the projections themselves would be far stricter than on the
    gradient (each projection sums n rounding errors) and fails on other CPU kernels."""
    problems = []
    for key, want in expected.items():
        g = grads[key]
        if g.numel() == 0:
            continue  # a missing gradient is reported by the caller
        got = grad_fingerprint(key, g)
        diff = (got - want.double()).abs()
        report["gradfp"] = max(report.get("gradfp", 0.0), float(diff.max()))
        tol = FINGERPRINT_SIGMAS * float((ATOL + RTOL * g.detach().double().abs()).norm())
        if torch.isnan(diff).any() or float(diff.max()) > tol:
            problems.append(f"gradfp {key}: max |difference| {float(diff.max()):.3g} > {tol:.3g} "
                            f"(4 x the L2 norm of the elementwise tolerance atol {ATOL} + rtol {RTOL} |g|)")
    return problems


def compare(name: str, golden: dict[str, dict[str, torch.Tensor]], meta: dict[str, Any], tmp_path: Path,
            report: dict[str, float] | None = None) -> list[str]:
    """Build, load, run eval then train mode; the list of every mismatch with the golden."""
    ref_map, report = MAPS[name], report if report is not None else {}
    if meta.get("dtype") == "float64":  # a golden written in float64 (see its script) is compared in float64
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            return _compare(name, golden, meta, tmp_path, report, ref_map)
        finally:
            torch.set_default_dtype(previous)
    return _compare(name, golden, meta, tmp_path, report, ref_map)


def _compare(name: str, golden: dict[str, dict[str, torch.Tensor]], meta: dict[str, Any], tmp_path: Path,
             report: dict[str, float], ref_map: RefMap) -> list[str]:
    model = build_model(meta, tmp_path)
    if meta.get("dtype") == "float64":
        model.double()
    model.load_state_dict(map_tensors(golden["weights"], ref_map.weights, set(model.state_dict())), strict=True)
    batch = Batch.from_tensors(golden["batch"])  # "complete.*" / "missing.*": a batch under a missing-data condition
    problems = differences(golden["eval"], eval_outputs(model, batch, ref_map), "eval", report)
    model.train()
    hook_state = ref_map.prepare(model, golden) if ref_map.prepare is not None else None
    batch = model.training_batch(batch, hook_state)  # as the trainer does before each training forward
    with replayed_draws(golden.get("state", {})):
        out = model(batch)
    parts = model.loss(out, batch)
    ours = {k: parts[v] if isinstance(v, str) else v(parts) for k, v in ref_map.losses.items()}
    problems += differences(golden["loss"], ours, "loss", report)
    if ref_map.after is not None:
        after = {k: v for k, v in golden["state"].items() if k.startswith("after.")}
        problems += differences(after, ref_map.after(model), "state", report)
    parts["total"].backward()
    return problems + gradient_problems(model, golden, ref_map, report)


def grad_fingerprint(name: str, grad: torch.Tensor) -> torch.Tensor:
    """tools/reference/_golden.py's fingerprint: projections on 8 Gaussian directions seeded by crc32(name)."""
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    return torch.randn(8, grad.numel(), generator=gen, dtype=torch.float64) @ grad.detach().reshape(-1).double()


GOLDENS = sorted(p.stem for p in GOLDEN_DIR.glob("*.json"))


def test_every_golden_has_a_map():
    assert GOLDENS, f"no goldens under {GOLDEN_DIR}"
    assert set(GOLDENS) <= MAPS.keys(), f"goldens without a name map: {sorted(set(GOLDENS) - MAPS.keys())}"


@pytest.mark.parametrize("name", GOLDENS)
def test_equal_to_reference(name, tmp_path):
    meta, golden = load_golden(name)
    report: dict[str, float] = {}
    problems = compare(name, golden, meta, tmp_path, report)
    print(f"{name}: max |difference| " + ", ".join(f"{k} {v:.2e}" for k, v in report.items()))
    assert not problems, f"{name} differs from {meta['reference']}:\n" + "\n".join(problems)
    assert_readme_states(name, report)


def readme_proof_row(name: str) -> list[str]:
    """The README proof table's cells (eval, loss, gradients) for `name`'s card."""
    readme = (GOLDEN_DIR.parents[1] / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| [") and f"(docs/models/{name}.md)" in line]
    assert len(rows) == 1, f"README: no proof-table row linking docs/models/{name}.md"
    return [c.strip() for c in rows[0].strip().strip("|").split("|")][3:6]


def assert_readme_states(name: str, report: dict[str, float]) -> None:
    """The README's figures are upper bounds ("≤ 2e-6") on the differences measured here."""
    measured = [max(report.get("eval", 0.0), report.get("state", 0.0)), report.get("loss", 0.0),
                report.get("grad", report.get("gradfp", 0.0))]
    cells = readme_proof_row(name)
    for what, m, cell in zip(("eval", "loss", "gradients"), measured, cells, strict=True):
        assert cell.startswith("≤ "), f"README: {name}'s {what} cell {cell!r} is not a bound '≤ x'"
        bound = float(cell.split()[1])
        assert m <= bound, f"README states {what} difference ≤ {bound:.0e} for {name}; measured {m:.2e}"
    assert ("projections" in cells[2]) == ("gradfp" in report), f"README: say whether {name}'s gradients are projections"


@pytest.mark.parametrize("name", GOLDENS)
def test_tampered_weight_is_caught(name, tmp_path):
    meta, golden = load_golden(name)
    target = MAPS[name].tamper
    assert target in golden["weights"], f"tamper target {target} is not a weight of golden {name}"
    tampered = golden["weights"][target].clone()
    tampered.view(-1)[0] += TAMPER  # one scalar: a shift of a whole bias can be invisible (LayerNorm removes it)
    golden["weights"][target] = tampered
    assert compare(name, golden, meta, tmp_path), f"{name}: shifting {target}[0] by {TAMPER} went unnoticed"


def test_unmapped_tensor_fails():
    rules = ((r"a\.(\w+)", r"x.\1"),)
    with pytest.raises(AssertionError, match="without a rule.*'b.w'"):
        map_tensors({"a.w": torch.zeros(1), "b.w": torch.zeros(1)}, rules, {"x.w"})
    with pytest.raises(AssertionError, match="no reference tensor fills.*'x.v'"):
        map_tensors({"a.w": torch.zeros(1)}, rules, {"x.w", "x.v"})


@pytest.mark.parametrize("name", [g for g in GOLDENS if "bert_config" in load_golden(g)[0]])
def test_bert_attention_and_dropout_as_the_reference(name, tmp_path):
    """SDPA and eager BERT attention differ by ~1e-6, and SDPA reads its dropout from the
    config's float (not from an nn.Dropout module): msabench's BERT must use the reference's
    attention implementation, and the train-mode pass must have every BERT dropout at 0."""
    from transformers import PreTrainedModel

    meta, _ = load_golden(name)
    model = build_model(meta, tmp_path)
    berts = [m for m in model.modules() if isinstance(m, PreTrainedModel)]
    assert berts, f"{name}: no transformers model inside msabench's model"
    assert sorted({b.config._attn_implementation for b in berts}) == meta["bert_attention"]
    for b in berts:
        assert b.config.attention_probs_dropout_prob == 0.0 and b.config.hidden_dropout_prob == 0.0
