"""Where a model's training step goes: torch.profiler shares, not wall times (so a loaded
machine still gives the proportions).

    python tools/profile_step.py --model mult                      # MOSI shapes, batch 32, CPU
    python tools/profile_step.py --model mult --dataset-shapes mosei --steps 3 --top 20

The model is built and warmed up as `bench perf` builds it (bench.perf.Session: random inputs
of the dataset's real shapes, the trainer's optimizer), then `--steps` training steps run under
the profiler. Printed: (1) the forward time of each top-level submodule and of each
CrossModalTransformer-like child, as a share of the forward pass (record_function markers
from forward hooks); (2) the operators with the largest self time, as a share of the step.
"""

from __future__ import annotations

import argparse


def _mark_modules(model, depth: int) -> None:
    """A record_function range around the forward of every submodule down to `depth` levels."""
    import torch

    for name, module in model.named_modules():
        if name.count(".") >= depth:
            continue
        name = name or "forward"  # the model itself: the whole forward pass

        def pre(mod, args, _name=name):
            mod._profile_range = torch.autograd.profiler.record_function(f"module::{_name}")
            mod._profile_range.__enter__()

        def post(mod, args, out):
            mod._profile_range.__exit__(None, None, None)

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mult")
    p.add_argument("--dataset-shapes", default="mosi")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--depth", type=int, default=2, help="submodule levels to mark (default 2)")
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args()

    from torch.profiler import ProfilerActivity, profile

    from bench.perf import Session

    session = Session(args.model, args.dataset_shapes, args.batch, 5, 1, "cpu")
    _mark_modules(session.model, args.depth)
    session.train_step()  # warm the hooks
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            session.train_step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    modules = {e.key[len("module::"):]: e.cpu_time_total for e in events if e.key.startswith("module::")}
    forward = modules.pop("forward")
    print(f"{args.model}, {args.dataset_shapes} shapes, batch {args.batch}, {args.steps} profiled steps")
    print(f"\nforward by submodule (share of the forward pass; forward = {forward / total:.1%} of the step's "
          "self time; nested modules are inside their parents):")
    for k, v in sorted(modules.items(), key=lambda kv: -kv[1]):
        print(f"  {k:40s} {v / forward:6.1%}")
    print(f"\noperators by self time (share of the step, forward and backward; top {args.top}):")
    ops = sorted((e for e in events if not e.key.startswith("module::")), key=lambda e: -e.self_cpu_time_total)
    for e in ops[: args.top]:
        print(f"  {e.key:55s} {e.self_cpu_time_total / total:6.1%}  ({e.count} calls)")


if __name__ == "__main__":
    main()
