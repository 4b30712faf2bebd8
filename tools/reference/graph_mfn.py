"""Golden for Graph-MFN against MMSA 2.2.1 (--code: the unpacked `mmsa==2.2.1` wheel, the folder holding `MMSA/`).

    python tools/reference/graph_mfn.py --code /path/to/unpacked/mmsa

MMSA's Graph_MFN in its MOSI configuration (aligned features, no need_normalized) at narrow
widths, T = 8, dropout 0. The DFG's pair/triple node networks live in a plain dict in MMSA (not
parameters, not in its state_dict): they are perturbed like every parameter and stored under
`graph_mfn.networks.<i_j>.*`. Intermediates: the efficacies of every step.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from _golden import PERTURB_STD, parse_args
from _mmsa_classic import ALIGNED, feature_batch, import_mmsa, l1, perturb_, reference_parameters, write

DIMS = (32, 5, 20)
WIDTHS = {"hidden_dims": (12, 6, 10), "memsize": 14, "inner_node_dim": 8}  # MMSA mosi 256/32/256, 300, 64
BLOCKS = {"NNConfig": 9, "gamma1Config": 13, "gamma2Config": 7, "outConfig": 10}  # hidden widths
OURS = {"att2": "NNConfig", "gamma1": "gamma1Config", "gamma2": "gamma2Config", "out": "outConfig"}


def node_networks(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The dict-held DFG node networks, by msabench's names."""
    return {f"graph_mfn.networks.{'_'.join(map(str, key))}.{n}": p.detach()
            for key, net in model.graph_mfn.networks.items() for n, p in net.named_parameters()}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    module = import_mmsa(args.code, "MMSA.models.singleTask.Graph_MFN")
    gen = torch.Generator().manual_seed(args.seed)
    model = module.Graph_MFN(SimpleNamespace(feature_dims=DIMS, train_mode="regression", num_classes=1, device="cpu",
                                             **WIDTHS, **{k: {"shapes": v, "drop": 0.0} for k, v in BLOCKS.items()}))
    perturb_(model, gen)
    with torch.no_grad():
        for p in node_networks(model).values():
            p.add_(torch.randn(p.shape, generator=gen) * PERTURB_STD)
    batch = feature_batch(gen, DIMS, {m: ALIGNED for m in "tav"})
    efficacies = []
    model.graph_mfn.efficacy_model.register_forward_hook(lambda _m, _i, out: efficacies.append(out.detach()))

    def forward() -> dict[str, torch.Tensor]:
        efficacies.clear()
        out = model(batch["text_feats"], batch["audio"], batch["vision"])
        return {**out, "efficacies": torch.stack(efficacies, dim=1)}

    write(args, "graph_mfn", model, batch, forward, ("M", "efficacies"), {},
          lambda out: {"L1": l1(out["M"], batch["labels"]), "total": l1(out["M"], batch["labels"])}, {
              "reference": "MMSA 2.2.1 (PyPI wheel) MMSA/models/singleTask/Graph_MFN.py, trains/singleTask/Graph_MFN.py",
              "reference_parameters": reference_parameters(args.code, "graph_mfn", module.Graph_MFN),
              "msabench": {"name": "graph_mfn", "dataset": "mosi", "preset": "mmsa", "overrides": {
                  "dims": DIMS, **WIDTHS, **{f"{o}_hidden": BLOCKS[r] for o, r in OURS.items()},
                  **{f"{o}_dropout": 0.0 for o in OURS}}},
          }, extra_weights=lambda: node_networks(model))


if __name__ == "__main__":
    main()
