"""Training-step time of msabench's MulT beside MMSA 2.2.1's MulT, in one process.

    python tools/reference/perf_mult.py --code /path/to/unpacked/mmsa

`--code` is the folder holding `MMSA/` (`pip download --no-deps mmsa==2.2.1`, wheel unpacked); the
reference is imported from it at run time. Both models are built in msabench's `mmsa` MOSI
configuration (MMSA config_regression.json mult mosi: d 50, 10 heads, 4 levels, kernels 5/5/5,
MMSA's dropouts) and trained on one random batch of MOSI's unaligned shapes (bench/perf.py
SHAPES: text 50 x 768 features, audio 375 x 5, vision 500 x 20). A step is what `bench perf`
times: forward, L1 loss, backward, Adam step (no clipping on either side). After `--warmup`
steps of each, `--pairs` pairs of steps run alternately (the order inside a pair alternates
too), with `--threads` torch threads, so the load of a shared machine falls on both alike.

Reported: each model's median step, and the speed-up (MMSA's step over msabench's in each
pair): its median and the sign-test interval for it (bench.perf.median_interval,
distribution-free). The Markdown report (`--markdown`) starts with the command that
regenerates it, the date and the machine.
"""

from __future__ import annotations

import argparse
import datetime
import resource
import shlex
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _golden import import_reference  # noqa: E402

from bench.perf import SHAPES, machine, median_interval, random_batch, shape_for, step_fn  # noqa: E402
from bench.train import build_optimizer  # noqa: E402
from models.registry import get_model_entry, resolve_config  # noqa: E402


def mmsa_args(cfg: Any) -> SimpleNamespace:
    """MMSA MULT's `args` for msabench's MulT configuration `cfg` (text features, no BERT)."""
    k_t, k_a, k_v = cfg.conv_kernels
    return SimpleNamespace(
        use_bert=False, use_finetune=False, transformers="bert", pretrained="",
        dst_feature_dim_nheads=(cfg.d, cfg.heads), feature_dims=cfg.dims, nlevels=cfg.layers,
        attn_mask=cfg.causal_mask, train_mode="regression", num_classes=1,
        conv1d_kernel_size_l=k_t, conv1d_kernel_size_a=k_a, conv1d_kernel_size_v=k_v,
        attn_dropout=cfg.attn_dropout, attn_dropout_a=cfg.attn_dropout_a, attn_dropout_v=cfg.attn_dropout_v,
        relu_dropout=cfg.relu_dropout, embed_dropout=cfg.embed_dropout, res_dropout=cfg.res_dropout,
        output_dropout=cfg.out_dropout, text_dropout=cfg.text_dropout,
    )


def build_steps(code: Path, batch: int) -> tuple[dict[str, Callable[[], None]], dict[str, int]]:
    """{"MMSA 2.2.1": step, "msabench": step} on the same batch, and their parameter counts."""
    cfg = resolve_config("mult", "mosi", "mmsa")
    b = random_batch(shape_for(SHAPES["mosi"], cfg), batch, cfg.task)
    torch.manual_seed(0)
    ours = get_model_entry("mult").builder(cfg)
    mult_module = import_reference(code, "MMSA.models.singleTask.MULT",
                                   stub_packages=("MMSA", "MMSA.models", "MMSA.models.singleTask"))
    torch.manual_seed(0)
    ref = mult_module.MULT(mmsa_args(cfg))
    ref_opt = torch.optim.Adam(ref.parameters(), lr=cfg.lr)  # MMSA trains/singleTask/MULT.py: Adam, L1

    def ref_step() -> None:
        ref.train()
        loss = F.l1_loss(ref(b.text_feats, b.audio, b.vision)["M"], b.labels.view(-1, 1))
        loss.backward()
        ref_opt.step()
        ref_opt.zero_grad(set_to_none=True)

    steps = {"MMSA 2.2.1": ref_step, "msabench": step_fn(ours, None, b, build_optimizer(ours, None), torch.device("cpu"), False)}
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in (("MMSA 2.2.1", ref), ("msabench", ours))}
    return steps, params


def timed(fn: Callable[[], None]) -> tuple[float, tuple[float, float, int]]:
    """(wall ms, (user CPU s, kernel CPU s, minor page faults)) of one call, this process's threads."""
    before, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    fn()
    wall, after = (time.perf_counter() - t) * 1000, resource.getrusage(resource.RUSAGE_SELF)
    return wall, (after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, after.ru_minflt - before.ru_minflt)


def alternate(steps: dict[str, Callable[[], None]], warmup: int,
              pairs: int) -> tuple[dict[str, list[float]], dict[str, list[tuple[float, float, int]]]]:
    """`warmup` untimed steps of each, then `pairs` timed pairs, the order flipping every pair:
    each step's wall ms, and its CPU time and page faults."""
    names = list(steps)
    for _ in range(warmup):
        for name in names:
            steps[name]()
    ms: dict[str, list[float]] = {name: [] for name in names}
    usage: dict[str, list[tuple[float, float, int]]] = {name: [] for name in names}
    for i in range(pairs):
        for name in names if i % 2 == 0 else names[::-1]:
            wall, used = timed(steps[name])
            ms[name].append(wall)
            usage[name].append(used)
    return ms, usage


def report(ms: dict[str, list[float]], usage: dict[str, list[tuple[float, float, int]]], params: dict[str, int],
           command: str, warmup: int, batch: int) -> str:
    """The Markdown report: command, date, machine, method, one row per implementation, the speed-up."""
    info = machine()
    ratios = [r / o for r, o in zip(ms["MMSA 2.2.1"], ms["msabench"], strict=True)]
    low, high, coverage = median_interval(ratios)

    def cpu(name: str) -> str:  # median user / kernel CPU seconds and page faults per step
        user, kernel, faults = (statistics.median(u[i] for u in usage[name]) for i in range(3))
        return f"{user:.1f} / {kernel:.1f} | {faults:,.0f}"
    rows = "\n".join(f"| {name} | {statistics.median(v):,.0f} | {min(v):,.0f} / {max(v):,.0f} | {cpu(name)} | "
                     f"{params[name]:,} |" for name, v in ms.items())
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    raw = "\n".join(f"- {name}: {', '.join(f'{x:,.0f}' for x in v)}" for name, v in ms.items())
    return (
        f"# MulT training step: msabench beside MMSA 2.2.1\n\nRegenerate with:\n\n```\n{command}\n```\n\n"
        f"Date: {date}. Machine: {info['cpu']} ({info['cpus']} CPUs), {info['threads']} torch threads, "
        f"torch {info['torch']}.\n\n"
        "Both: MMSA's MOSI configuration of MulT (`mult`, preset `mmsa`), MOSI unaligned shapes, one random "
        f"batch of {batch}; a step is forward, L1 loss, backward "
        f"and Adam step. {warmup} warm-up step(s) each, then {len(ratios)} pairs of steps in one process, "
        "alternating (the order flips every pair). Speed-up: MMSA's step over msabench's in each pair; its "
        f"median and the sign-test interval for that median ({coverage:.2%} coverage, distribution-free). "
        "CPU s: the process's user and kernel CPU time in a step, all threads together (medians); page faults: "
        "the minor page faults in a step (median; `getrusage`): memory a step frees and maps afresh. What a "
        "fault costs (kernel time) varies between machines and runs, so a step that makes many varies with it."
        "\n\n"
        "| implementation | step ms median | min / max | CPU s user / kernel | page faults | params |\n"
        "|---|---|---|---|---|---|\n"
        f"{rows}\n\nSpeed-up (MMSA / msabench): **{statistics.median(ratios):.2f}×** "
        f"(interval {low:.2f}–{high:.2f}×).\n\nRaw step times (ms, in pair order):\n\n{raw}\n"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--code", type=Path, required=True, help="unpacked mmsa==2.2.1 wheel (the folder holding MMSA/)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps of each model first (default 1)")
    p.add_argument("--pairs", type=int, default=5, help="timed pairs of steps (default 5: a 93.75%% interval)")
    p.add_argument("--markdown", type=Path, default=ROOT / "reports" / "perf" / "mult_vs_mmsa.md")
    args = p.parse_args()
    if not (args.code / "MMSA" / "models" / "singleTask" / "MULT.py").is_file():
        p.error(f"--code {args.code}: no MMSA/models/singleTask/MULT.py under it (unpack mmsa==2.2.1's wheel there)")
    if args.pairs < 1 or args.batch < 1 or args.threads < 1:
        p.error("--pairs, --batch and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    steps, params = build_steps(args.code, args.batch)
    ms, usage = alternate(steps, args.warmup, args.pairs)
    argv = ["DIR" if prev == "--code" else "--code=DIR" if a.startswith("--code=") else a
            for prev, a in zip(["", *sys.argv[1:-1]], sys.argv[1:], strict=True)]  # the report names no local path
    command = "python tools/reference/perf_mult.py " + shlex.join(argv) + "   # DIR: the unpacked mmsa==2.2.1 wheel"
    text = report(ms, usage, params, command, args.warmup, args.batch)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
