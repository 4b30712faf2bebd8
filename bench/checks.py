"""The model-protocol checks: what every model must honour for the benchmark's comparisons
to hold. `python -m bench check-model NAME` runs them on any registered model, and the
registry-parametrized tests call the same functions, so the two cannot drift.

Each check takes a `Subject` (a model name and a few samples of the embedded `synthetic`
data) and returns a `Result`: PASS, FAIL or SKIP, and why. Models are built from the demo
preset; the checks that read a training step (shapes, loss parts, gradients, NaN/inf,
state dict) share the subject's one step per task and stage (`Subject.steps`), which no
check changes, so checks do not depend on each other or on their order.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional

import torch

from models.base import INHERIT, MODALITIES, ModelConfig, ModelOutput, MSAModel, Stage
from models.registry import DEMO_PRESET, create_model, get_model_entry

if TYPE_CHECKING:  # pragma: no cover
    from models.protocol import Batch
    from bench.data.base import MSAData, Split

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
ATOL = 1e-6  # float32 round-off between two evaluations of the same computation
IEMOCAP_LABELS = 4  # 4 emotions, each present or absent (the MulT protocol)


@dataclass(frozen=True)
class Result:
    status: str  # PASS | FAIL | SKIP
    why: str

    @property
    def ok(self) -> bool:
        return self.status != FAIL


def passed(why: str) -> Result:
    return Result(PASS, why)


def failed(why: str) -> Result:
    return Result(FAIL, why)


def skipped(why: str) -> Result:
    return Result(SKIP, why)


def verdict(problems: list[str], ok: str) -> Result:
    """FAIL listing the problems (the first three), else PASS saying `ok`."""
    if not problems:
        return passed(ok)
    more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    return failed("; ".join(problems[:3]) + more)


@dataclass
class Subject:
    """The model under check and the samples the checks feed it."""

    name: str
    batch: "Batch"  # a few training samples
    split: "Split"  # a few validation samples (evaluation checks)
    seed: int = 0

    @classmethod
    def on(cls, name: str, data: "MSAData", n_batch: int = 8, n_split: int = 12) -> "Subject":
        return cls(name, data.train.take(torch.arange(n_batch)), data.valid.subset(torch.arange(n_split)))

    def build(self, seed: Optional[int] = None, **overrides: Any) -> MSAModel:
        """The model from its demo preset on synthetic, parameters drawn from `seed`."""
        torch.manual_seed(self.seed if seed is None else seed)
        return create_model(self.name, "synthetic", DEMO_PRESET, **overrides)

    @functools.cached_property
    def steps(self) -> list["Step"]:
        """One training step per task and stage, taken once and read by several checks."""
        return record_steps(self)


# -- helpers ---------------------------------------------------------------------------------
def declared_no_grad(model: MSAModel, name: str) -> bool:
    """A parameter the model declares to receive no gradient (`MSAModel.no_grad_params`)."""
    return any(fragment in name for fragment in model.no_grad_params)


def stage_runs(model: MSAModel) -> list[Optional[Stage]]:
    """The stages a training step can be in: each declared stage, or None for a model without."""
    return list(model.stages()) or [None]


def stage_trainable(model: MSAModel, stage: Optional[Stage]) -> list[tuple[str, torch.nn.Parameter]]:
    """(name, parameter) of what trains in `stage` (None: everything trainable as built)."""
    keep = None if stage is None or stage.trainable is None else {id(p) for p in stage.trainable()}
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad and (keep is None or id(p) in keep)]


def training_step(model: MSAModel, batch: "Batch", stage: Optional[Stage]) -> tuple[Any, dict[str, torch.Tensor]]:
    """One forward, loss and backward in `stage` (its loss, else the model's); grads start empty."""
    model.zero_grad(set_to_none=True)
    model.stage = stage.name if stage is not None else None
    model.train()
    out = model(batch)
    parts = (stage.loss if stage is not None and stage.loss is not None else model.loss)(out, batch)
    parts["total"].backward()
    return out, parts


def last_stage(model: MSAModel) -> MSAModel:
    """The model set to evaluate as the trainer leaves it: in its last stage, in eval mode."""
    stages = model.stages()
    model.stage = stages[-1].name if stages else None
    return model.eval()


@torch.no_grad()
def predictions(model: MSAModel, batch: "Batch") -> torch.Tensor:
    return last_stage(model)(batch).pred.float()


def where(stage: Optional[Stage]) -> str:
    return f"stage '{stage.name}': " if stage is not None else ""


def first_names(names: Iterable[str], n: int = 3) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (f" (+{len(names) - n} more)" if len(names) > n else "")


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


# -- the checks ------------------------------------------------------------------------------
def check_builds(s: Subject) -> Result:
    """The model builds from its demo preset on the embedded `synthetic` data."""
    entry = get_model_entry(s.name)
    if ("synthetic", DEMO_PRESET) not in entry.presets:
        return failed(f"no ('synthetic', '{DEMO_PRESET}') preset: register a CPU-sized one so the model runs on "
                      f"the embedded data (its presets: {', '.join(f'{d}/{p}' for d, p in sorted(entry.presets))})")
    model = s.build()
    if not isinstance(model, MSAModel):
        return failed(f"the builder returned a {type(model).__name__}, not a models.base.MSAModel")
    n = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return passed(f"demo preset on synthetic: {n:,} parameters, {trainable:,} trainable")


# what the synthetic data fixes, whatever the task (widths, alignment, sequence lengths)
DATA_FIELDS = ("dataset", "preset", "dims", "setting", "seq_len", "max_seq_len", "seq_lens")


def iemocap_overrides(name: str) -> Optional[dict[str, Any]]:
    """The IEMOCAP task on synthetic-shaped inputs: the demo preset with every field in which the
    model's iemocap preset differs from its regression preset of the same name (the input widths
    and alignment excepted). None: the model has no iemocap preset."""
    entry = get_model_entry(name)
    names = entry.preset_names("iemocap")
    if not names:
        return None
    iemocap = entry.presets[("iemocap", names[0])]
    regression: ModelConfig = next((c for (_, p), c in entry.presets.items() if p == names[0] and c.task == "regression"),
                                   entry.presets[("synthetic", DEMO_PRESET)])
    return {f.name: getattr(iemocap, f.name) for f in dataclasses.fields(iemocap)
            if f.name not in DATA_FIELDS and getattr(iemocap, f.name) != getattr(regression, f.name)}


def task_models(s: Subject) -> Iterator[tuple[str, MSAModel, "Batch"]]:
    """(task, model, batch) for regression, and for IEMOCAP (labels (B, 4) of 0/1) when the model has a preset;
    the batch under the config's `data_missing`, as the runner's data would be."""
    model = s.build()
    yield "regression", model, with_data_missing(s.batch, model.cfg)
    over = iemocap_overrides(s.name)
    if over is not None:
        labels = torch.randint(0, 2, (len(s.batch), IEMOCAP_LABELS), generator=torch.Generator().manual_seed(0))
        model = s.build(**over)
        yield "iemocap", model, with_data_missing(dataclasses.replace(s.batch, labels=labels), model.cfg)


def with_data_missing(batch: "Batch", cfg: ModelConfig) -> "Batch":
    """`batch` under the config's missing-data protocol (none: as it is), masks from seed 0."""
    if not cfg.data_missing:
        return batch
    from bench.data.conditions import Condition, apply_to_batch

    return apply_to_batch(batch, Condition.parse(cfg.data_missing), torch.Generator().manual_seed(0))


@dataclass
class Step:
    """What one training step of `model` (in `stage`, on `task`) showed."""

    task: str
    stage: Optional[Stage]
    model: MSAModel
    out: ModelOutput
    parts: dict[str, torch.Tensor]
    without_grad: list[str]  # trainable in `stage`, and no gradient arrived
    nonfinite_grads: list[str]


def record_steps(s: Subject) -> list[Step]:
    steps = []
    for task, model, batch in task_models(s):
        for stage in stage_runs(model):
            out, parts = training_step(model, batch, stage)
            without = [n for n, p in stage_trainable(model, stage) if p.grad is None]
            steps.append(Step(task, stage, model, out, parts, without,
                              nonfinite((n, p.grad) for n, p in model.named_parameters())))
    return steps


EXPECTED_OUT = {"regression": 1, "iemocap": 2 * IEMOCAP_LABELS}  # (B, 1) scores | (B, 8) logits


def check_output_shapes(s: Subject) -> Result:
    """`pred` is (B, 1) for regression and (B, 8) for IEMOCAP; unimodal predictions match it."""
    problems, seen = [], {}
    for st in s.steps:
        want = (len(s.batch), EXPECTED_OUT[st.task])
        shapes = {"pred": st.out.pred.shape, **{f"unimodal['{m}']": p.shape for m, p in (st.out.unimodal or {}).items()}}
        problems += [f"{st.task}: {where(st.stage)}{k} is {tuple(v)}, expected {want}"
                     for k, v in shapes.items() if tuple(v) != want]
        seen[st.task] = want
    return verdict(problems, ", ".join(f"{task} {want}" for task, want in seen.items()))


def check_loss_parts(s: Subject) -> Result:
    """`loss(output, batch)` returns scalar `total` (it backpropagates) and at least one named part."""
    problems, parts_seen = [], set()
    for st in s.steps:
        if set(st.parts) == {"total"}:
            problems.append(f"{st.task}: {where(st.stage)}only 'total': name the parts too (e.g. 'task')")
        shaped = [k for k, v in st.parts.items() if not (torch.is_tensor(v) and v.ndim == 0)]
        if shaped:
            problems.append(f"{st.task}: {where(st.stage)}not a scalar tensor: {', '.join(shaped)}")
        parts_seen |= set(st.parts) - {"total"}
    return verdict(problems, f"total + {', '.join(sorted(parts_seen))}")


def check_gradients(s: Subject) -> Result:
    """Every trainable parameter receives a gradient (in each stage that trains it), unless it is
    frozen (`requires_grad=False`) or named in the model's `no_grad_params`."""
    declared: set[str] = set()
    missing: dict[str, dict[str, None]] = {}  # per stage, the names in order (any task)
    for st in s.steps:
        declared |= {n for n in st.without_grad if declared_no_grad(st.model, n)}
        names = missing.setdefault(where(st.stage), {})
        names.update(dict.fromkeys(n for n in st.without_grad if not declared_no_grad(st.model, n)))
    problems = [f"{at}{len(names)} trainable parameter(s) receive no gradient: {first_names(names)} "
                f"(freeze them, or name them in `no_grad_params`)" for at, names in missing.items() if names]
    model = s.steps[0].model
    n = sum(1 for p in model.parameters() if p.requires_grad)
    without = f"; {len(declared)} declared not to ({', '.join(model.no_grad_params)})" if declared else ""
    return verdict(problems, f"{n - len(declared)} of {n} trainable tensors receive one{without}")


def nonfinite(named: Iterable[tuple[str, Optional[torch.Tensor]]]) -> list[str]:
    return [n for n, t in named if t is not None and not bool(torch.isfinite(t.detach().float()).all())]


def check_finite(s: Subject) -> Result:
    """No NaN or inf in the predictions, the loss parts or the gradients of a training step."""
    problems = []
    for st in s.steps:
        bad = nonfinite([("pred", st.out.pred), *((f"unimodal['{m}']", p) for m, p in (st.out.unimodal or {}).items()),
                         *((f"loss '{k}'", v) for k, v in st.parts.items())])
        bad += [f"grad of {n}" for n in st.nonfinite_grads]
        if bad:
            problems.append(f"{st.task}: {where(st.stage)}NaN/inf in {first_names(bad)}")
    return verdict(problems, "predictions, loss parts and gradients")


def coverage(model: MSAModel, groups: list[dict[str, Any]], trainable: list[tuple[str, torch.nn.Parameter]]) -> list[str]:
    """What is wrong with optimizer `groups` as a cover of `trainable`: each exactly once."""
    names = {id(p): n for n, p in model.named_parameters()}
    count: dict[int, int] = {}
    strangers = 0
    for g in groups:
        for p in g["params"]:
            strangers += id(p) not in names
            count[id(p)] = count.get(id(p), 0) + 1
    missing = [n for n, p in trainable if id(p) not in count]
    twice = [n for n, p in trainable if count.get(id(p), 0) > 1]
    problems = [f"{len(missing)} trainable parameter(s) in no group: {first_names(missing)}"] if missing else []
    problems += [f"{len(twice)} parameter(s) in more than one group: {first_names(twice)}"] if twice else []
    return problems + ([f"{strangers} tensor(s) that are not parameters of the model"] if strangers else [])


def check_param_groups(s: Subject) -> Result:
    """`param_groups()` covers each trainable parameter exactly once (and holds only the model's)."""
    model = s.build()
    groups = model.param_groups()
    problems = coverage(model, groups, stage_trainable(model, None))
    return verdict(problems, f"{len(groups)} group(s): {', '.join(str(g.get('name', i)) for i, g in enumerate(groups))}")


@torch.no_grad()
def check_separable(s: Subject) -> Result:
    """A model that implements encode/fuse: `fuse(encode(b)) == forward(b)`, and each modality's
    encoding is a function of its own input only (masking the others leaves it unchanged)."""
    model = last_stage(s.build())
    if not model.separable:
        return skipped("not separable (no encode/fuse): coalitions run one masked forward each")
    b = s.batch
    reps = model.encode(b)
    if set(reps) != set(MODALITIES):
        return failed(f"encode() returns keys {sorted(reps)}, expected {sorted(MODALITIES)}")
    problems = []
    if not torch.allclose(model(b).pred, model.fuse(reps), atol=ATOL):
        problems.append(f"fuse(encode(b)) differs from forward(b).pred by {max_diff(model(b).pred, model.fuse(reps)):.2g}")
    for m in MODALITIES:
        others = set(MODALITIES) - {m}
        alone = model.encode(b.without(others))[m]
        if not torch.allclose(alone, reps[m], atol=ATOL):
            problems.append(f"the '{m}' encoding changes by {max_diff(alone, reps[m]):.2g} when "
                            f"{'/'.join(sorted(others))} are masked: it reads another modality's input")
    return verdict(problems, "fuse(encode(b)) == forward(b); each encoding reads its own modality only")


@torch.no_grad()
def check_masking(s: Subject) -> Result:
    """Masking (`Batch.without`) a modality the model reads changes the output, one it does not
    read leaves it unchanged; for a separable model the change is exactly that modality's encoding's."""
    model = last_stage(s.build())
    full = model(s.batch).pred
    problems = []
    for m in MODALITIES:
        masked_batch = s.batch.without({m})
        masked = model(masked_batch).pred
        if nonfinite([("pred", masked)]):
            problems.append(f"masking '{m}' gives NaN/inf")
        elif m in model.modalities and torch.allclose(full, masked):
            problems.append(f"masking '{m}' does not change the output (the model claims to read it: `modalities`)")
        elif m not in model.modalities and not torch.equal(full, masked):
            problems.append(f"masking '{m}' changes the output, but '{m}' is not in the model's `modalities`")
        elif model.separable:
            through_m = model.fuse({**model.encode(s.batch), m: model.encode(masked_batch)[m]})
            if not torch.allclose(masked, through_m, atol=ATOL):
                problems.append(f"masking '{m}' also moves the output through another modality's encoding "
                                f"(by {max_diff(masked, through_m):.2g})")
    return verdict(problems, f"reads {'/'.join(model.modalities)}; masking changes the output only through the masked one")


@torch.no_grad()
def check_batch_composition(s: Subject) -> Result:
    """In evaluation a sample's prediction does not depend on the other samples in its batch,
    unless the model declares it: `summary()["batch_dependent_eval"]`, recorded in each result file."""
    model = s.build()
    if model.summary().get("batch_dependent_eval"):
        return passed("declared batch-dependent (summary()['batch_dependent_eval'], recorded in the result file)")
    n = len(s.split)
    whole = predictions(model, s.split.take(torch.arange(n)))
    order, k = torch.arange(n).flip(0), n // 2 - 1
    parts = torch.cat([predictions(model, s.split.take(order[:k])), predictions(model, s.split.take(order[k:]))])
    mixed = parts[torch.argsort(order)]
    if not torch.allclose(whole, mixed, atol=1e-5):
        return failed(f"the same samples' predictions differ by {max_diff(whole, mixed):.2g} between one batch of {n} "
                      f"and batches of {k} and {n - k} in reverse order (if by design, return "
                      f"'batch_dependent_eval': True from summary())")
    return passed(f"one batch of {n} == batches of {k} and {n - k} in another order")


def seeded_run(s: Subject) -> tuple[torch.Tensor, torch.Tensor]:
    """(training-mode predictions of one step, evaluation predictions after it), all from `s.seed`."""
    from bench.train import process_state_restored, seed_everything

    with process_state_restored():
        seed_everything(s.seed)
        model = s.build()
        out, _ = training_step(model, s.batch, stage_runs(model)[-1])
        return out.pred.detach(), predictions(model, s.batch)


def check_seed(s: Subject) -> Result:
    """Two builds and training steps from the same seed give identical predictions."""
    (train_a, eval_a), (train_b, eval_b) = seeded_run(s), seeded_run(s)
    problems = [f"{what} predictions differ by {max_diff(a, b):.2g} between two runs with seed {s.seed}"
                for what, a, b in (("training-mode", train_a, train_b), ("evaluation", eval_a, eval_b))
                if not torch.equal(a, b)]
    return verdict(problems, f"seed {s.seed}: identical training-mode and evaluation predictions")


def check_bf16_autocast(s: Subject) -> Result:
    """A training step and an evaluation under `torch.autocast("cpu", bfloat16)` (the dtype
    behaviour of the trainer's CUDA bf16 path): finite, and the loss the optimizer sees is not bf16."""
    from bench.train import build_optimizer

    model = s.build()
    opt = build_optimizer(model)
    last_stage(model).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        parts = model.loss(model(s.batch), s.batch)
    problems = [f"NaN/inf in {first_names(bad)}"] if (bad := nonfinite((f"loss '{k}'", v) for k, v in parts.items())) else []
    if parts["total"].dtype not in (torch.float32, torch.float64):
        problems.append(f"the total loss is {parts['total'].dtype}: compute losses in float32 at least")
    parts["total"].backward()
    opt.step()
    problems += [f"NaN/inf in parameters after a step: {first_names(bad)}"] if (
        bad := nonfinite(model.named_parameters())) else []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        if nonfinite([("pred", last_stage(model)(s.batch).pred)]):
            problems.append("NaN/inf in evaluation predictions")
    return verdict(problems, "a training step and an evaluation, finite; loss in float32")


def through_safetensors(state: dict[str, Any]) -> dict[str, Any]:
    """`state` written to safetensors bytes and read back (tensors copied: no shared storage)."""
    from safetensors.torch import load, save

    return load(save({k: v.detach().clone().contiguous() for k, v in state.items()}))


def check_state_dict(s: Subject) -> Result:
    """After a training step, loading the state dict (as is, and through safetensors) into a
    model built from another seed reproduces the predictions."""
    model = [st.model for st in s.steps if st.task == "regression"][-1]  # after its training step(s)
    want, state = predictions(model, s.batch), model.state_dict()
    odd = [k for k, v in state.items() if not torch.is_tensor(v)]
    if odd:
        return failed(f"state_dict entries that are not tensors: {first_names(odd)}")
    problems = []
    for how, loaded in (("state_dict", state), ("safetensors", through_safetensors(state))):
        fresh = s.build(seed=s.seed + 1)
        fresh.load_state_dict(loaded)
        got = predictions(fresh, s.batch)
        if not torch.allclose(got, want, atol=ATOL):
            problems.append(f"{how} round trip: predictions differ by {max_diff(got, want):.2g} (state kept outside "
                            f"parameters and buffers?)")
    return verdict(problems, f"{len(state)} tensors; state_dict and safetensors round trips reproduce the predictions")


def stage_field_problems(stage: Stage) -> list[str]:
    """The declared values of a stage's settings that the trainer would refuse or misread."""
    from models.constants import METRICS
    from bench.optim import OPTIMIZERS

    def int_at_least(lo: int, none_ok: bool = False) -> Callable[[Any], bool]:
        return lambda v: (v is None and none_ok) or (isinstance(v, int) and not isinstance(v, bool) and v >= lo)

    rules: dict[str, Callable[[Any], bool]] = {
        "max_epochs": int_at_least(0), "early_stop_patience": int_at_least(0, none_ok=True),
        "batch_size": int_at_least(1), "selection_metric": lambda v: v in METRICS,
        "optimizer": lambda v: v in OPTIMIZERS, "warmup_ratio": lambda v: isinstance(v, (int, float)) and 0 <= v < 1,
    }
    bad = [f"{k}={getattr(stage, k)!r}" for k, ok in rules.items() if getattr(stage, k) is not INHERIT and not ok(getattr(stage, k))]
    if stage.loss is not None and not callable(stage.loss):
        bad.append("loss is not callable")
    return [f"stage '{stage.name}': {', '.join(bad)}"] if bad else []


def check_stages(s: Subject) -> Result:
    """Declared stages: unique names; each trains a non-empty set of the model's parameters,
    with optimizer groups covering them exactly once and settings the trainer accepts."""
    model = s.build()
    stages = model.stages()
    if not stages:
        return skipped("no stages declared: the model trains as one stage")
    names = [st.name for st in stages]
    problems = [f"stage names must be unique non-empty strings: {names}"] if (
        len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names)) else []
    own = {id(p) for p in model.parameters()}
    for st in stages:
        trainable = stage_trainable(model, st)
        listed = list(st.trainable()) if st.trainable is not None else []
        if st.trainable is not None and any(id(p) not in own for p in listed):
            problems.append(f"stage '{st.name}': trainable() returns tensors that are not parameters of the model")
        if not trainable:
            problems.append(f"stage '{st.name}': trains no parameter")
        groups = st.param_groups() if st.param_groups is not None else model.param_groups()
        problems += [f"stage '{st.name}': param_groups: {p}" for p in coverage(model, groups, trainable)]
        problems += stage_field_problems(st)
    return verdict(problems, f"{len(stages)} stages: {' -> '.join(names)}")


CHECKS: dict[str, Callable[[Subject], Result]] = {
    "builds": check_builds,
    "output-shapes": check_output_shapes,
    "loss-parts": check_loss_parts,
    "gradients": check_gradients,
    "finite": check_finite,
    "param-groups": check_param_groups,
    "separable": check_separable,
    "masking": check_masking,
    "batch-composition": check_batch_composition,
    "seed": check_seed,
    "bf16-autocast": check_bf16_autocast,
    "state-dict": check_state_dict,
    "stages": check_stages,
}


def raised(err: Exception) -> Result:
    """FAIL naming the exception and the innermost line it came from."""
    import traceback

    frame = traceback.extract_tb(err.__traceback__)[-1]
    message = (str(err).splitlines() or [""])[0]
    return failed(f"raised {type(err).__name__}: {message} ({frame.filename}:{frame.lineno})")


def run_checks(s: Subject) -> Iterator[tuple[str, Result]]:
    """(check name, result) for every check in order; an exception is that check's FAIL. An
    unknown model name raises (models.registry.UnknownNameError) before any check runs."""
    get_model_entry(s.name)
    for name, check in CHECKS.items():
        try:
            result = check(s)
        except Exception as err:  # noqa: BLE001 - a crash in the model's code is that check's failure
            result = raised(err)
        yield name, result
        if name == "builds" and not result.ok:
            yield from ((n, skipped("the model does not build")) for n in list(CHECKS)[1:])
            return
