"""MFN: Memory Fusion Network (Zadeh et al., AAAI 2018).

Source: thuiar/MMSA 2.2.1 `models/singleTask/MFN.py`, `trains/singleTask/MFN.py` and
`config/config_regression.json` ("mmsa" preset, the default). Per step: three LSTMCells; the
delta-memory attention (softmax over the previous and new cell states, `windowsize` 2) gives
the attended vector; a gated multi-view memory (models/layers/memory_fusion.py) is updated from
it; the output MLP reads the last hidden states and the memory. MMSA runs MFN on aligned data
with `need_normalized`: audio and vision are averaged over time and repeated at every text
step (`--set time_mean_av=false` feeds the aligned sequences, as the original MFN does).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from models.layers.memory_fusion import DeltaMemoryFusion, MemoryFusionConfig, MemoryFusionNet
from models.registry import choice, register_model


@dataclass(kw_only=True)
class MFNConfig(MemoryFusionConfig):
    att1_hidden: int = 32  # NN1Config shapes (MMSA mosi): the delta-memory attention
    att1_dropout: float = 0.2  # NN1Config drop


class MFN(MemoryFusionNet):
    cfg: MFNConfig

    def __init__(self, cfg: MFNConfig):
        blocks = {k: cfg.block(k) for k in ("att2", "gamma1", "gamma2", "out", "att1")}  # msabench's build order
        super().__init__(cfg, DeltaMemoryFusion(cfg.dims, cfg.hidden_dims, cfg.memsize, blocks, cfg.n_out))


# -- presets ------------------------------------------------
_MMSA_MOSI = MFNConfig(
    dims=(768, 5, 20), setting="aligned",  # MMSA mosi aligned_50 (need_data_aligned), `text` features
    hidden_dims=(256, 32, 256), memsize=400,  # MMSA config_regression.json mfn mosi (windowsize 2)
    att1_hidden=32, att1_dropout=0.2, att2_hidden=64, att2_dropout=0.0,  # NN1Config, NN2Config
    gamma1_hidden=256, gamma1_dropout=0.7, gamma2_hidden=32, gamma2_dropout=0.5,  # gamma1Config, gamma2Config
    out_hidden=128, out_dropout=0.0,  # outConfig
    time_mean_av=True,  # need_normalized true
    optimizer="adam", lr=2e-3, weight_decay=0.0,  # torch Adam(weight_decay) (trains/singleTask/MFN.py:20)
    batch_size=128,
    max_epochs=200, early_stop_patience=8,  # early_stop 8; the 200-epoch cap is a harness decision
)
_MMSA_MOSEI = replace(
    _MMSA_MOSI, dims=(768, 74, 35),  # MMSA mosei aligned_50
    hidden_dims=(128, 32, 128), memsize=128, att1_hidden=128, att1_dropout=0.2, att2_hidden=128, att2_dropout=0.5,
    gamma1_hidden=256, gamma1_dropout=0.7, gamma2_hidden=256, gamma2_dropout=0.0, out_hidden=128, out_dropout=0.5,
    batch_size=64, lr=5e-4, weight_decay=1e-4,
)
_MMSA_SIMS = replace(
    _MMSA_MOSI, dims=(768, 33, 709), setting="unaligned",  # SIMS unaligned_39 only: AMIO pools to the text length
    hidden_dims=(64, 16, 64), memsize=64, att1_hidden=128, att1_dropout=0.2, att2_hidden=128, att2_dropout=0.0,
    gamma1_hidden=64, gamma1_dropout=0.2, gamma2_hidden=64, gamma2_dropout=0.7, out_hidden=64, out_dropout=0.7,
    batch_size=32, lr=1e-3, weight_decay=0.0,
)
# CH-SIMS v2 (harness decision: MMSA 2.2.1 has no simsv2 entry): the SIMS preset, ch-simsv2s.pkl's widths
_SIMSV2 = replace(_MMSA_SIMS, dims=(768, 25, 177))
# IEMOCAP (harness decision: MMSA 2.2.1 has no IEMOCAP entry): the MOSEI preset on MulT's aligned pickle, GloVe text,
# the MulT protocol's 4 binary emotion heads (8 logits, cross-entropy)
_IEMOCAP = replace(_MMSA_MOSEI, task="iemocap", n_out=8, dims=(300, 74, 35))
# synthetic "demo" (harness decision): MMSA's SIMS widths, so a CPU epoch over 50 steps takes seconds
_DEMO = replace(_MMSA_MOSI, hidden_dims=(64, 16, 64), memsize=64, gamma1_hidden=64, gamma2_hidden=64, out_hidden=64,
                batch_size=32, max_epochs=5, early_stop_patience=2)

PRESETS = {
    ("mosi", "mmsa"): _MMSA_MOSI,
    ("mosei", "mmsa"): _MMSA_MOSEI,
    ("sims", "mmsa"): _MMSA_SIMS,
    ("simsv2", "mmsa"): _SIMSV2,
    ("iemocap", "mmsa"): _IEMOCAP,
    ("synthetic", "demo"): _DEMO,
}
_TUNE = "MMSA 2.2.1 config_tune.json mfn"
_DROPS = (0.0, 0.2, 0.5, 0.7)
_SHAPES = (32, 64, 128, 256)
SEARCH_SPACE = {
    "hidden_dims": choice((128, 16, 128), (64, 16, 64), (128, 32, 128), (256, 32, 256), (64, 32, 64), source=_TUNE),
    "memsize": choice(64, 128, 256, 300, 400, source=_TUNE),
    **{f"{ours}_dropout": choice(*_DROPS, source=f"{_TUNE} [{ref}Config drop]")
       for ours, ref in (("att1", "NN1"), ("att2", "NN2"), ("gamma1", "gamma1"), ("gamma2", "gamma2"), ("out", "out"))},
    **{f"{ours}_hidden": choice(*_SHAPES, source=f"{_TUNE} [{ref}Config shapes]")
       for ours, ref in (("att1", "NN1"), ("att2", "NN2"), ("gamma1", "gamma1"), ("gamma2", "gamma2"), ("out", "out"))},
    "batch_size": choice(32, 64, 128, source=_TUNE),
    "lr": choice(5e-4, 1e-3, 2e-3, 5e-3, source=f"{_TUNE} [learning_rate]"),
}


@register_model("mfn", config=MFNConfig, presets=PRESETS, default_preset="mmsa", search_space=SEARCH_SPACE,
                display_name="MFN", paper="Zadeh et al., AAAI 2018",
                reference="https://github.com/pliang279/MFN; MMSA==2.2.1", family="memory fusion", order=28)
def mfn(cfg: MFNConfig) -> MFN:
    """MFN: per-modality LSTMCells, delta-memory attention, gated multi-view memory."""
    return MFN(cfg)
