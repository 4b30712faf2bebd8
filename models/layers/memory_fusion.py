"""The MFN recurrence (Zadeh et al., AAAI 2018) as MMSA 2.2.1 runs it (`models/singleTask/MFN.py`,
`Graph_MFN.py`): one LSTMCell per modality stepped over every time step (padding included),
a gated multi-view memory updated each step from an "attended" vector (MFN: the delta-memory
attention over the previous and new cell states; Graph-MFN: the dynamic fusion graph), and
MMSA's output head on the last hidden states and memory. Module names are MMSA's, so its
weights load by name. MFN and Graph-MFN run it as their network; MFM as its `mfn_encoder`.

Inputs as MMSA feeds MFN and Graph-MFN: with `time_mean_av` (MMSA `need_normalized`: MFN yes,
Graph-MFN no) audio and vision are averaged over every padded step first; AMIO then
average-pools every modality to the text length when the lengths differ (a time-averaged
modality is repeated).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel
from models.layers.mmsa_align import align_to_text, time_mean

_LETTERS = {"t": "l", "a": "a", "v": "v"}  # msabench modality -> MMSA's attribute letter
Block = tuple[int, float]  # a two-layer network's (hidden width, dropout)
State = dict[str, tuple[torch.Tensor, torch.Tensor]]  # modality -> LSTMCell (h, c)


@dataclass(kw_only=True)
class MemoryFusionConfig(ModelConfig):
    hidden_dims: tuple[int, int, int] = (256, 32, 256)  # LSTMCell widths t/a/v (MMSA mosi)
    memsize: int = 400  # multi-view gated memory width
    att2_hidden: int = 64  # cHat network hidden width (MFN NN2Config, Graph-MFN NNConfig shapes)
    att2_dropout: float = 0.0
    gamma1_hidden: int = 256  # retain gate (gamma1Config)
    gamma1_dropout: float = 0.7
    gamma2_hidden: int = 32  # update gate (gamma2Config)
    gamma2_dropout: float = 0.5
    out_hidden: int = 128  # outConfig
    out_dropout: float = 0.0
    time_mean_av: bool = True  # MMSA need_normalized: audio/vision averaged over time before the LSTMs

    def block(self, name: str) -> Block:
        """(`<name>_hidden`, `<name>_dropout`)."""
        return getattr(self, f"{name}_hidden"), getattr(self, f"{name}_dropout")


def _mlp(fc1: nn.Linear, drop: nn.Dropout, fc2: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return fc2(drop(F.relu(fc1(x))))


def _add_block(module: nn.Module, name: str, d_in: int, block: Block, d_out: int) -> None:
    """MMSA's `<name>_fc1` / `<name>_dropout` / `<name>_fc2` triple."""
    setattr(module, f"{name}_fc1", nn.Linear(d_in, block[0]))
    setattr(module, f"{name}_fc2", nn.Linear(block[0], d_out))
    setattr(module, f"{name}_dropout", nn.Dropout(block[1]))


def _run_block(module: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    return _mlp(getattr(module, f"{name}_fc1"), getattr(module, f"{name}_dropout"), getattr(module, f"{name}_fc2"), x)


class MemoryFusion(nn.Module):
    """LSTMCells + gated memory + output head; subclasses build what `attend` needs and implement it.
    Sequences are batch-first with one length (MMSA steps over the text's length)."""

    def __init__(self, dims: tuple[int, int, int], hidden_dims: tuple[int, int, int], memsize: int,
                 attended_dim: int, blocks: dict[str, Block], n_out: int,
                 extra_shapes: dict[str, tuple[int, int]] | None = None):
        """blocks: (hidden, dropout) of "att2" (cHat), "gamma1", "gamma2" (gates), "out" (head) and the
        subclass's blocks (their (in, out) widths in extra_shapes), built in the dict's order (the
        seeded initial weights follow it)."""
        super().__init__()
        self.hidden_dims, self.memsize = hidden_dims, memsize
        for m, d, h in zip("tav", dims, hidden_dims, strict=True):
            setattr(self, f"lstm_{_LETTERS[m]}", nn.LSTMCell(d, h))
        both = attended_dim + memsize  # the gates read [attended, memory]
        shapes = {"att2": (attended_dim, memsize), "gamma1": (both, memsize), "gamma2": (both, memsize),
                  "out": (self.out_dim, n_out), **(extra_shapes or {})}
        for name, block in blocks.items():
            _add_block(self, name, shapes[name][0], block, shapes[name][1])

    @property
    def out_dim(self) -> int:
        """Width of MMSA's `L`: the last hidden states and the memory."""
        return sum(self.hidden_dims) + self.memsize

    def cell(self, m: str) -> nn.LSTMCell:
        """Modality m's ("t", "a", "v") LSTMCell."""
        return getattr(self, f"lstm_{_LETTERS[m]}")

    def attend(self, prev: State, new: State) -> torch.Tensor:
        """The step's attended vector from each modality's previous and new (h, c)."""
        raise NotImplementedError

    def _memory_update(self, attended: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        c_hat = torch.tanh(_run_block(self, "att2", attended))
        both = torch.cat([attended, mem], dim=1)
        gamma1, gamma2 = torch.sigmoid(_run_block(self, "gamma1", both)), torch.sigmoid(_run_block(self, "gamma2", both))
        return gamma1 * mem + gamma2 * c_hat

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """x: {"t","a","v"} -> (B, T, d_m); returns MMSA's `L` (B, out_dim): last h's t/a/v, memory."""
        n = x["t"].size(0)
        state = {m: (x[m].new_zeros(n, dh), x[m].new_zeros(n, dh)) for m, dh in zip("tav", self.hidden_dims, strict=True)}
        mem = x["t"].new_zeros(n, self.memsize)
        for i in range(x["t"].size(1)):
            new = {m: self.cell(m)(x[m][:, i], state[m]) for m in "tav"}
            mem = self._memory_update(self.attend(state, new), mem)
            state = new
        return torch.cat([state[m][0] for m in "tav"] + [mem], dim=1)

    def head(self, last_hs: torch.Tensor) -> torch.Tensor:
        """MMSA's output network on `L`."""
        return _run_block(self, "out", last_hs)


class DeltaMemoryFusion(MemoryFusion):
    """MFN's attention: softmax weights over the previous and new cell states (MMSA windowsize 2)."""

    def __init__(self, dims: tuple[int, int, int], hidden_dims: tuple[int, int, int], memsize: int,
                 blocks: dict[str, Block], n_out: int):
        """blocks as MemoryFusion's, with "att1" (NN1: the attention network)."""
        att_in = 2 * sum(hidden_dims)
        super().__init__(dims, hidden_dims, memsize, att_in, blocks, n_out, extra_shapes={"att1": (att_in, att_in)})

    def attend(self, prev: State, new: State) -> torch.Tensor:
        c_star = torch.cat([prev[m][1] for m in "tav"] + [new[m][1] for m in "tav"], dim=1)
        return F.softmax(_run_block(self, "att1", c_star), dim=1) * c_star


class MemoryFusionNet(MSAModel):
    """MFN / Graph-MFN: MMSA's inputs through a MemoryFusion network (`self.net`)."""

    cfg: MemoryFusionConfig

    def __init__(self, cfg: MemoryFusionConfig, net: MemoryFusion):
        super().__init__(cfg)
        self.net = net

    def inputs(self, batch) -> dict[str, torch.Tensor]:
        text, audio, vision = batch.text_feats, batch.audio, batch.vision
        if self.cfg.time_mean_av:
            audio, vision = time_mean(audio), time_mean(vision)
        return dict(zip("tav", align_to_text(text, audio, vision), strict=True))

    def forward(self, batch) -> ModelOutput:
        last_hs = self.net(self.inputs(batch))
        parts = dict(zip(("t", "a", "v", "mem"), last_hs.split([*self.cfg.hidden_dims, self.cfg.memsize], dim=1), strict=True))
        return ModelOutput(pred=self.net.head(last_hs), features={**parts, "f": last_hs})

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        return {m: list(self.net.cell(m).parameters()) for m in "tav"}
