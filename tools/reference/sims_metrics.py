"""Golden for the CH-SIMS metrics against MMSA 2.2.1 (--code: the unpacked `mmsa==2.2.1` wheel).

    python tools/reference/sims_metrics.py --code /path/to/unpacked/mmsa

Runs MMSA's own `MetricsTop('regression').getMetics('SIMS')` (utils/metricsTop.py
`__eval_sims_regression`; CLGSI's SIMSV2 metric calls the same function) on seeded random
float32 predictions and labels: values beyond [-1, 1] (the clipping), values exactly at MMSA's
bin edges (0, ±0.1, ±0.7, ±1) and the 0.2 label grid. MMSA rounds every metric to 4 decimals;
the golden keeps MMSA's rounded output and, with the module's `round` replaced by the identity
(recorded as a patch), its full-precision output. Writes tests/golden/metrics_sims.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from _golden import import_reference

OUT = Path(__file__).resolve().parents[2] / "tests" / "golden" / "metrics_sims.json"
EDGES = np.array([-1.0, -0.7, -0.1, 0.0, 0.1, 0.7, 1.0], dtype=np.float32)
CASES = 6
N = 97


def inputs(rng: np.random.Generator, case: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels on the 0.2 grid of [-1, 1], the first ones at each bin edge; predictions = labels
    scaled beyond [-1, 1] plus noise that grows with `case`, a fifth of them exactly at an edge."""
    y = np.round(rng.uniform(-1, 1, N) * 5) / 5
    y[: len(EDGES)] = EDGES
    p = 1.3 * y + rng.normal(0, 0.1 + 0.2 * case, N)
    at_edge = rng.random(N) < 0.2
    p[at_edge] = rng.choice(EDGES, int(at_edge.sum()))
    return p.astype(np.float32), y.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", type=Path, required=True, help="folder holding the MMSA package (unpacked wheel)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    # MMSA/__init__ and utils/__init__ import the whole framework (easydict, ...): stubbed
    metrics_top = import_reference(args.code, "MMSA.utils.metricsTop", stub_packages=("MMSA", "MMSA.utils"))
    sims = metrics_top.MetricsTop("regression").getMetics("SIMS")
    rng = np.random.default_rng(1111)
    cases = []
    for case in range(CASES):
        p, y = inputs(rng, case)
        rounded = sims(torch.from_numpy(p), torch.from_numpy(y))
        metrics_top.round = lambda x, ndigits=None: x  # full precision: MMSA's own arithmetic, unrounded
        try:
            full = sims(torch.from_numpy(p), torch.from_numpy(y))
        finally:
            del metrics_top.round
        cases.append({"preds": p.tolist(), "labels": y.tolist(), "mmsa": {k: float(v) for k, v in rounded.items()},
                      "mmsa_unrounded": {k: float(v) for k, v in full.items()}})
    golden = {"meta": {"reference": "MMSA 2.2.1 utils/metricsTop.py MetricsTop.__eval_sims_regression",
                       "seed": 1111, "n": N, "patches": ["MMSA, MMSA.utils: empty __init__ (stub packages)",
                                   "mmsa_unrounded: metricsTop.round = identity"],
                       "tool": "tools/reference/sims_metrics.py"}, "cases": cases}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {CASES} cases)")


if __name__ == "__main__":
    main()
