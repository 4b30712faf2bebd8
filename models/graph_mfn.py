"""Graph-MFN: Graph Memory Fusion Network (Zadeh et al., ACL 2018, the CMU-MOSEI paper).

Source: thuiar/MMSA 2.2.1 `models/singleTask/Graph_MFN.py`, `trains/singleTask/Graph_MFN.py` and
`config/config_regression.json` ("mmsa" preset, the default). MFN's LSTMCells and gated memory
(models/layers/memory_fusion.py); the attention is replaced by the Dynamic Fusion Graph: each
modality's singleton = ReLU(linear(previous h, new h)); efficacies (19 for three modalities)
weight every vertex feeding the pair nodes, the triple node and the top node T, whose output is
the attended vector. Every DFG network is Linear(in, 100) -> Linear(100, inner_node_dim), no
activation, as MMSA builds them.

MMSA keeps the four pair/triple node networks in a plain dict: they are not registered
submodules, so they are never trained, not counted and not saved; they stay at their random
initialisation. msabench keeps them as buffers (same function, same parameter count, saved with
the model); `--set train_dfg_nodes=true` makes them trainable parameters instead.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import chain, combinations

import torch
import torch.nn.functional as F
from torch import nn

from models.layers.memory_fusion import MemoryFusion, MemoryFusionConfig, MemoryFusionNet, State
from models.registry import choice, register_model

DFG_HIDDEN = 100  # MMSA: nn.Linear(100, inner_node_dim) is the pattern / efficacy core, in_features 100


@dataclass(kw_only=True)
class GraphMFNConfig(MemoryFusionConfig):
    inner_node_dim: int = 64  # DFG vertex width (MMSA mosi)
    train_dfg_nodes: bool = False  # False: MMSA's untrained pair/triple node networks (buffers)


class FixedLinear(nn.Module):
    """A linear layer whose weight and bias are buffers: initialised as nn.Linear, never trained."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        init = nn.Linear(d_in, d_out)
        self.register_buffer("weight", init.weight.detach().clone())
        self.register_buffer("bias", init.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


def _pattern(d_in: int, d_out: int, fixed: bool = False) -> nn.Sequential:
    """MMSA's Sequential(Linear(d_in, 100), Sequential(Linear(100, d_out)))."""
    linear = FixedLinear if fixed else nn.Linear
    return nn.Sequential(linear(d_in, DFG_HIDDEN), nn.Sequential(linear(DFG_HIDDEN, d_out)))


def _subsets(items: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Non-empty subsets in MMSA's order (by size, then lexicographic)."""
    return list(chain.from_iterable(combinations(items, r) for r in range(1, len(items) + 1)))


class DynamicFusionGraph(nn.Module):
    """MMSA's DynamicFusionGraph for three modalities; `networks` keys are the node's modalities joined by '_'."""

    def __init__(self, in_dims: tuple[int, int, int], out_dim: int, fixed_nodes: bool):
        super().__init__()
        self.nodes = [k for k in _subsets((0, 1, 2)) if len(k) > 1]  # (0,1), (0,2), (1,2), (0,1,2)
        self.networks = nn.ModuleDict()
        for key in self.nodes:
            inputs = _subsets(key)[:-1]  # every proper subset feeds the node
            width = sum(in_dims[k[0]] if len(k) == 1 else out_dim for k in inputs)
            self.networks["_".join(map(str, key))] = _pattern(width, out_dim, fixed=fixed_nodes)
        self.n_efficacies = sum(len(_subsets(k)) - 1 for k in self.nodes) + len(_subsets((0, 1, 2)))
        self.t_network = _pattern(sum(in_dims) + 4 * out_dim, out_dim)
        self.efficacy_model = nn.Sequential(nn.Linear(sum(in_dims), DFG_HIDDEN),
                                            nn.Sequential(nn.Linear(DFG_HIDDEN, out_dim)),
                                            nn.Linear(out_dim, self.n_efficacies))

    def forward(self, singletons: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(T's output, the efficacies (B, 19))."""
        outputs: dict[tuple[int, ...], torch.Tensor] = {(i,): x for i, x in enumerate(singletons)}
        efficacies = self.efficacy_model(torch.cat(singletons, dim=1))
        index = 0
        for key in self.nodes:
            inputs = _subsets(key)[:-1]
            weighted = [outputs[k] * efficacies[:, index + j].view(-1, 1) for j, k in enumerate(inputs)]
            outputs[key] = self.networks["_".join(map(str, key))](torch.cat(weighted, dim=1))
            index += len(inputs)
        top = [outputs[k] * efficacies[:, index + j].view(-1, 1) for j, k in enumerate(_subsets((0, 1, 2)))]
        return self.t_network(torch.cat(top, dim=1)), efficacies


class GraphFusion(MemoryFusion):
    """The MFN recurrence with the Dynamic Fusion Graph as its attention (MMSA's Graph_MFN network)."""

    def __init__(self, cfg: GraphMFNConfig):
        blocks = {k: cfg.block(k) for k in ("att2", "gamma1", "gamma2", "out")}
        super().__init__(cfg.dims, cfg.hidden_dims, cfg.memsize, cfg.inner_node_dim, blocks, cfg.n_out)
        dh_l, dh_a, dh_v = cfg.hidden_dims
        # singleton sizes = the hidden sizes (MMSA: singleton_*_size from hidden_dims)
        self.l_transform, self.a_transform = nn.Linear(2 * dh_l, dh_l), nn.Linear(2 * dh_a, dh_a)
        self.v_transform = nn.Linear(2 * dh_v, dh_v)
        self.graph_mfn = DynamicFusionGraph(cfg.hidden_dims, cfg.inner_node_dim, fixed_nodes=not cfg.train_dfg_nodes)

    def attend(self, prev: State, new: State) -> torch.Tensor:
        singletons = [F.relu(getattr(self, f"{letter}_transform")(torch.cat([prev[m][0], new[m][0]], dim=1)))
                      for m, letter in zip("tav", "lav", strict=True)]
        return self.graph_mfn(singletons)[0]


class GraphMFN(MemoryFusionNet):
    cfg: GraphMFNConfig

    def __init__(self, cfg: GraphMFNConfig):
        super().__init__(cfg, GraphFusion(cfg))


# -- presets ------------------------------------------------
_MMSA_MOSI = GraphMFNConfig(
    dims=(768, 5, 20), setting="aligned",  # MMSA mosi aligned_50 (need_data_aligned), `text` features
    hidden_dims=(256, 32, 256), memsize=300, inner_node_dim=64,  # MMSA config_regression.json graph_mfn mosi
    att2_hidden=32, att2_dropout=0.0,  # NNConfig
    gamma1_hidden=128, gamma1_dropout=0.5, gamma2_hidden=64, gamma2_dropout=0.5,  # gamma1Config, gamma2Config
    out_hidden=256, out_dropout=0.0,  # outConfig
    time_mean_av=False,  # need_normalized false
    optimizer="adam", lr=2e-3, weight_decay=5e-3,  # torch Adam(weight_decay) (trains/singleTask/Graph_MFN.py:20)
    batch_size=32,
    max_epochs=200, early_stop_patience=8,  # early_stop 8; the 200-epoch cap is a harness decision
)
_MMSA_MOSEI = replace(
    _MMSA_MOSI, dims=(768, 74, 35),  # MMSA mosei aligned_50
    hidden_dims=(64, 16, 64), memsize=300, inner_node_dim=128, att2_hidden=32, att2_dropout=0.5,
    gamma1_hidden=64, gamma1_dropout=0.0, gamma2_hidden=256, gamma2_dropout=0.7, out_hidden=128, out_dropout=0.7,
    batch_size=64, lr=2e-3, weight_decay=1e-3,
)
_MMSA_SIMS = replace(
    _MMSA_MOSI, dims=(768, 33, 709), setting="unaligned",  # SIMS unaligned_39 only: AMIO pools to the text length
    hidden_dims=(256, 32, 256), memsize=64, inner_node_dim=128, att2_hidden=256, att2_dropout=0.5,
    gamma1_hidden=32, gamma1_dropout=0.2, gamma2_hidden=32, gamma2_dropout=0.7, out_hidden=256, out_dropout=0.2,
    batch_size=64, lr=5e-4, weight_decay=1e-3,
)
# CH-SIMS v2 (harness decision: MMSA 2.2.1 has no simsv2 entry): the SIMS preset, ch-simsv2s.pkl's widths
_SIMSV2 = replace(_MMSA_SIMS, dims=(768, 25, 177))
# IEMOCAP (harness decision: MMSA 2.2.1 has no IEMOCAP entry): the MOSEI preset on MulT's aligned pickle, GloVe text,
# the MulT protocol's 4 binary emotion heads (8 logits, cross-entropy)
_IEMOCAP = replace(_MMSA_MOSEI, task="iemocap", n_out=8, dims=(300, 74, 35))
# synthetic "demo" (harness decision): MMSA's MOSEI widths, so a CPU epoch over 50 steps takes seconds
_DEMO = replace(_MMSA_MOSEI, dims=(768, 5, 20), inner_node_dim=32, memsize=64, max_epochs=5, early_stop_patience=2)

PRESETS = {
    ("mosi", "mmsa"): _MMSA_MOSI,
    ("mosei", "mmsa"): _MMSA_MOSEI,
    ("sims", "mmsa"): _MMSA_SIMS,
    ("simsv2", "mmsa"): _SIMSV2,
    ("iemocap", "mmsa"): _IEMOCAP,
    ("synthetic", "demo"): _DEMO,
}
_TUNE = "MMSA 2.2.1 config_tune.json graph_mfn"
_BLOCKS = (("att2", "NN"), ("gamma1", "gamma1"), ("gamma2", "gamma2"), ("out", "out"))
SEARCH_SPACE = {
    "hidden_dims": choice((128, 16, 128), (64, 16, 64), (128, 32, 128), (256, 32, 256), (64, 32, 64), source=_TUNE),
    "memsize": choice(64, 128, 256, 300, 400, source=_TUNE),
    "inner_node_dim": choice(20, 32, 64, 128, source=_TUNE),
    **{f"{ours}_dropout": choice(0.0, 0.2, 0.5, 0.7, source=f"{_TUNE} [{ref}Config drop]") for ours, ref in _BLOCKS},
    **{f"{ours}_hidden": choice(32, 64, 128, 256, source=f"{_TUNE} [{ref}Config shapes]") for ours, ref in _BLOCKS},
    "batch_size": choice(32, 64, source=_TUNE),
    "lr": choice(5e-4, 1e-3, 2e-3, 5e-3, source=f"{_TUNE} [learning_rate]"),
    "weight_decay": choice(0.0, 1e-3, 5e-3, 1e-2, source=_TUNE),
}


@register_model("graph_mfn", config=GraphMFNConfig, presets=PRESETS, default_preset="mmsa", search_space=SEARCH_SPACE,
                display_name="Graph-MFN", paper="Zadeh et al., ACL 2018",
                reference="https://github.com/A2Zadeh/CMU-MultimodalSDK; MMSA==2.2.1", family="memory fusion", order=29)
def graph_mfn(cfg: GraphMFNConfig) -> GraphMFN:
    """Graph-MFN: MFN with the Dynamic Fusion Graph in place of the delta-memory attention."""
    return GraphMFN(cfg)
