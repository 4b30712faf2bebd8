"""MSAmba (models/msamba.py) against its reference: parameter counts, the plain-PyTorch
selective scan against a literal step-by-step loop (values and gradients, both directions),
the copy's conv padding and schedule, the loss terms' gradient paths, and a demo training run."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from bench.schedule import Scheduler
from models import create_model
from models.base import count_parameters
from models.layers.text_encoder import BERT_BASE_PARAMS
from models.layers import scan_kernel
from models.msamba import (
    Mamba, MambaVisionMixer, selective_scan,
)
from models.registry import get_model_entry, resolve_config
from tests.conftest import train_demo


def _meta(dataset: str, **over):
    with torch.device("meta"):
        return create_model("msamba", dataset, "official", text_encoder="bert-base", **over)


# -- parameter counts (bert-base shapes, built on the meta device) ----------------------
@pytest.mark.parametrize("dataset,direction,total", [
    ("mosi", "uni", 111_808_383),  # the copy's default: upstream Mamba, depth 4
    ("mosei", "uni", 111_819_135),
    ("mosi", "bi", 112_026_495),  # this file's default: VideoMamba bimamba ISM
    ("mosei", "bi", 112_037_247),
])
def test_parameter_counts(dataset, direction, total):
    model = _meta(dataset, ism_direction=direction)
    assert count_parameters(model)["total"] == total
    assert sum(p.numel() for p in model.text.parameters()) == BERT_BASE_PARAMS  # pooler built, unused


def test_default_is_bidirectional_depth_4():
    from bench.cli.ls import parameter_count  # what `python -m bench ls` prints

    cfg = resolve_config("msamba", "mosi", "official")
    assert (cfg.ism_direction, cfg.ism_depth, cfg.fusion_depth) == ("bi", 4, 1)
    assert parameter_count("msamba", "mosi", "official") == 112_026_495
    assert parameter_count("msamba", "mosei", "official") == 112_037_247
    m = _meta("mosi", ism_depth=2, ism_direction="uni")  # the class default depth (as released)
    assert count_parameters(m)["total"] == 111_044_931
    entry = get_model_entry("msamba")  # the row says it is a reconstruction, the reference what from
    assert entry.display_name == "MSAmba (reconstructed)" and "third-party copy" in entry.reference


def test_component_sizes():
    n = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    m = _meta("mosi", ism_direction="uni")
    assert n(m.ism["t"][0].mixer) == 116_480  # mamba_ssm Mamba(128), v1 shapes
    assert n(m.ism["t"][0]) - n(m.ism["t"][0].mixer) == 10_762  # GLCE + 2 RMSNorms
    assert n(m.chm["t"][0].mixers[0]) == 75_008  # MambaVisionMixer(128)
    assert n(m.chm["t"][0]) == 225_408
    assert n(_meta("mosi").ism["t"][0].mixer) == 134_656  # bimamba


# -- selective scan vs a literal loop ------------------------------------------------------------
def loop_scan(u, delta, A, B, C, D, z, bias):
    """mamba-ssm selective_scan_ref, one time step at a time."""
    delta = F.softplus(delta + bias[:, None])
    x = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[-1]):
        x = torch.exp(delta[:, :, t, None] * A) * x + delta[:, :, t, None] * B[:, None, :, t] * u[:, :, t, None]
        ys.append((x * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, -1) + D[:, None] * u
    return y * F.silu(z) if z is not None else y


def _scan_inputs(seed=0, b=2, d=3, L=11, n=4):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return dict(u=r(b, d, L), delta=r(b, d, L), A=-torch.rand(d, n, generator=g, dtype=torch.float64) * 3,
                B=r(b, n, L), C=r(b, n, L), D=r(d), z=r(b, d, L), bias=r(d) * 0.5)


@pytest.mark.parametrize("impl,chunk", [("chunked", 1), ("chunked", 3), ("chunked", 4), ("chunked", 11), ("sequential", 8)])
@pytest.mark.parametrize("gated", [True, False])
def test_selective_scan_matches_loop(impl, chunk, gated):
    args = _scan_inputs()
    if not gated:
        args["z"] = None
    leaves = {k: v.clone().requires_grad_() for k, v in args.items() if v is not None}
    ref_in = {k: v.clone().requires_grad_() for k, v in args.items() if v is not None}
    out = selective_scan(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], leaves["D"],
                         leaves.get("z"), leaves["bias"], True, impl, chunk)
    ref = loop_scan(ref_in["u"], ref_in["delta"], ref_in["A"], ref_in["B"], ref_in["C"], ref_in["D"],
                    ref_in.get("z"), ref_in["bias"])
    assert out.dtype == torch.float64
    assert torch.allclose(out, ref, rtol=1e-10, atol=1e-10)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (out * w).sum().backward()
    (ref * w).sum().backward()
    for k in leaves:
        assert torch.allclose(leaves[k].grad, ref_in[k].grad, rtol=1e-9, atol=1e-9), k


def test_selective_scan_float32_and_long_decays():
    """fp32 within float tolerance; strong decays (delta A far below 0) stay finite."""
    args = _scan_inputs(seed=3, L=51)
    args["delta"] = args["delta"] * 4 + 3  # softplus(.) up to ~15, |A| up to 3: decay exp(-45) per step
    f32 = {k: v.float() for k, v in args.items()}
    out = selective_scan(f32["u"], f32["delta"], f32["A"], f32["B"], f32["C"], f32["D"], f32["z"], f32["bias"])
    ref = loop_scan(**args)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.allclose(out.double(), ref, rtol=1e-4, atol=1e-5)


def test_selective_scan_saves_only_the_chunk_start_states():
    """The backward makes each chunk's states again from its start: the scan keeps one state
    (batch, d, n) per chunk, not one per step."""
    args = {k: v.float().requires_grad_() for k, v in _scan_inputs(L=12).items()}
    out = selective_scan(*(args[k] for k in ("u", "delta", "A", "B", "C", "D")), None, args["bias"], True, "chunked", 4)
    node = out.grad_fn
    while "SelectiveScan" not in node.name():  # past the output's permute
        node = node.next_functions[0][0]
    (b, d, L), n = args["u"].shape, args["A"].shape[1]
    states = [t for t in node.saved_tensors if t is not None and t.dim() == 4]
    assert [t.shape for t in states] == [(len(range(0, L, 4)), b, d, n)]


# -- the compiled kernel (models/layers/scan_kernel.py) ---------------------------------------
needs_compiler = pytest.mark.skipif(scan_kernel._compiler() is None, reason="no C compiler on this machine")


def _fp32_vs_loop(impl, seed=0, **shape):
    """(output, grads) of `selective_scan` in fp32 with `impl`, and of the fp64 loop, same inputs."""
    args = _scan_inputs(seed=seed, **shape)
    f32 = {k: v.float().requires_grad_() for k, v in args.items()}
    f64 = {k: v.clone().requires_grad_() for k, v in args.items()}
    out = selective_scan(*(f32[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "bias")), True, impl)
    ref = loop_scan(**f64)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (out * w.float()).sum().backward()
    (ref * w).sum().backward()
    return (out, {k: v.grad for k, v in f32.items()}), (ref, {k: v.grad for k, v in f64.items()})


@needs_compiler
@pytest.mark.parametrize("shape", [dict(b=2, d=3, L=11, n=4), dict(b=5, d=37, L=13, n=16), dict(b=3, d=64, L=51, n=16)])
def test_compiled_scan_matches_loop(shape):
    """The kernel (d not a multiple of its lanes, n below and at MSAmba's 16) against the fp64 loop:
    the output and all eight gradients to 1e-5 of their largest value."""
    assert scan_kernel.available(), scan_kernel.reason()
    (out, grads), (ref, ref_grads) = _fp32_vs_loop("compiled", **shape)
    tol = lambda r: 1e-5 * float(r.abs().max())  # noqa: E731
    assert (out.double() - ref).abs().max() <= tol(ref)
    for k, r in ref_grads.items():
        assert (grads[k].double() - r).abs().max() <= tol(r), k


@needs_compiler
def test_compiled_scan_is_the_pytorch_scan_and_keeps_no_states():
    """Same recurrence as the chunked PyTorch scan (to float rounding), and nothing of the state saved."""
    (out, grads), _ = _fp32_vs_loop("compiled", seed=4, b=4, d=40, L=19, n=16)
    (same, same_grads), _ = _fp32_vs_loop("chunked", seed=4, b=4, d=40, L=19, n=16)
    assert torch.allclose(out, same, rtol=1e-5, atol=1e-6)
    for k in grads:
        assert torch.allclose(grads[k], same_grads[k], rtol=1e-4, atol=1e-5), k
    args = {k: v.float().requires_grad_() for k, v in _scan_inputs(L=12).items()}
    out = selective_scan(*(args[k] for k in ("u", "delta", "A", "B", "C", "D")), None, args["bias"], True, "compiled")
    node = out.grad_fn
    while "SelectiveScan" not in node.name():
        node = node.next_functions[0][0]
    assert not [t for t in node.saved_tensors if t is not None and t.dim() == 4]


@needs_compiler
def test_compiled_scan_takes_views_at_any_offset():
    """A batch of one (the last batch of an epoch can be) makes Mamba's z = xz[:, d:] a contiguous view
    at an odd offset: the kernel runs it, equal to the same values copied."""
    args = _scan_inputs(seed=5, b=1, d=13, L=9, n=16)
    f32 = {k: v.float() for k, v in args.items()}
    xz = torch.cat([f32["u"], f32["z"]], 1)[:, 1:]  # views one float past an aligned start
    u, z = xz[:, :12], xz[:, 12:24]
    assert z.is_contiguous() and z.data_ptr() % 64
    order = ("delta", "A", "B", "C", "D")
    out = selective_scan(u, f32["delta"][:, :12], *(f32[k][:12] if k in ("A", "D") else f32[k] for k in order[1:]),
                         z, f32["bias"][:12], True, "compiled")
    same = selective_scan(u.clone(), f32["delta"][:, :12], *(f32[k][:12] if k in ("A", "D") else f32[k] for k in order[1:]),
                          z.clone(), f32["bias"][:12], True, "chunked")
    assert torch.allclose(out, same, rtol=1e-5, atol=1e-6)


@needs_compiler
def test_compiled_scan_does_not_depend_on_the_thread_count(monkeypatch):
    """Each batch row is one thread's, in a fixed order: 1, 2 and 3 threads, on torch's OpenMP team or on
    Python threads (no OpenMP runtime found), give the same bits."""
    assert scan_kernel.available()
    omp = scan_kernel._openmp()
    before = torch.get_num_threads()
    results = []
    try:
        for threads, team in ((1, omp), (2, omp), (3, omp), (2, None), (3, None)):
            torch.set_num_threads(threads)
            monkeypatch.setitem(scan_kernel._state, "omp", team)
            (out, grads), _ = _fp32_vs_loop("compiled", seed=2, b=7, d=24, L=9, n=16)
            results.append((out, grads))
    finally:
        torch.set_num_threads(before)
    for out, grads in results[1:]:
        assert torch.equal(out, results[0][0])
        assert all(torch.equal(grads[k], results[0][1][k]) for k in grads)


def test_auto_falls_back_and_compiled_says_why(monkeypatch):
    """Without the kernel (no compiler, or MSABENCH_SCAN_KERNEL=off) "auto" runs the PyTorch scan (the
    chunked one, bit for bit); "compiled" is an error naming the reason; fp64 never runs the kernel."""
    (chunked, _), _ = _fp32_vs_loop("chunked")
    monkeypatch.setattr(scan_kernel, "_state", {"lib": None, "why": "no C compiler found ($CC, cc, gcc, clang)"})
    (auto, _), _ = _fp32_vs_loop("auto")
    assert torch.equal(auto, chunked)
    with pytest.raises(RuntimeError, match="compiled selective scan cannot run here: no C compiler"):
        _fp32_vs_loop("compiled")
    monkeypatch.setattr(scan_kernel, "_state", {})  # loaded afresh: MSABENCH_SCAN_KERNEL=off is read then
    monkeypatch.setenv("MSABENCH_SCAN_KERNEL", "off")
    assert not scan_kernel.available() and scan_kernel.reason() == "turned off (MSABENCH_SCAN_KERNEL=off)"
    (off, _), _ = _fp32_vs_loop("auto")
    assert torch.equal(off, chunked)
    monkeypatch.undo()
    args = _scan_inputs()
    with pytest.raises(RuntimeError, match="float32 CPU tensors") if scan_kernel.available() else pytest.raises(RuntimeError):
        selective_scan(*(args[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "bias")), True, "compiled")
    with pytest.raises(ValueError, match="unknown scan_impl 'fast'"):
        selective_scan(*(args[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "bias")), True, "fast")


def test_result_file_says_which_scan_ran():
    """model_summary (written into every result file) carries how the kernel was got, or why not."""
    assert _meta("mosi").summary()["scan_kernel"] == scan_kernel.reason()
    assert "scan_kernel" not in _meta("mosi", scan_impl="chunked").summary()


@needs_compiler
def test_kernel_is_built_once_into_the_cache(tmp_path, monkeypatch):
    """Built into $MSABENCH_CACHE under a name keyed by source, compiler and CPU; found there the next time
    (the compiler is not run again); a failing compiler is reported, not raised."""
    monkeypatch.setenv("MSABENCH_CACHE", str(tmp_path))
    cc = scan_kernel._compiler()
    first = scan_kernel._build(cc)
    assert first.parent == tmp_path / "kernels" and first.is_file() and list(first.parent.iterdir()) == [first]
    calls = []
    real_run = scan_kernel.subprocess.run
    monkeypatch.setattr(scan_kernel.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or real_run(cmd, **kw))
    assert scan_kernel._build(cc) == first
    assert all("--version" in c for c in calls)  # only the version asked, nothing compiled
    monkeypatch.setattr(scan_kernel, "SOURCE", "this is not C")
    with pytest.raises(RuntimeError, match="failed"):
        scan_kernel._build(cc)
    assert list(first.parent.iterdir()) == [first]  # nothing half-written


def _ref_branch(br, x, z, L):
    """Mamba's slow path: causal conv (padding d_conv - 1, cut to L), x_proj, dt_proj, loop scan."""
    d, k = x.shape[1], br.conv1d.kernel_size[0]
    x = F.silu(F.conv1d(x, br.conv1d.weight, br.conv1d.bias, padding=k - 1, groups=d)[..., :L])
    dt, B, C = (x.transpose(1, 2) @ br.x_proj.weight.t()).split([br.dt_rank, br.d_state, br.d_state], -1)
    delta = (dt @ br.dt_proj.weight.t()).transpose(1, 2)
    return loop_scan(x, delta, -torch.exp(br.A_log), B.transpose(1, 2), C.transpose(1, 2), br.D, z, br.dt_proj.bias)


def _ref_mamba(m: Mamba, h):
    L = h.shape[1]
    x, z = (h @ m.in_proj.weight.t()).transpose(1, 2).chunk(2, dim=1)
    y = _ref_branch(m.fwd, x, z, L)
    if m.bwd is not None:  # VideoMamba: the second branch on the flipped (x, z), flipped back, summed
        y = y + _ref_branch(m.bwd, x.flip(-1), z.flip(-1), L).flip(-1)
    return y.transpose(1, 2) @ m.out_proj.weight.t()


@pytest.mark.parametrize("bidirectional", [True, False])
def test_mamba_mixer_matches_loop_in_both_directions(bidirectional):
    torch.manual_seed(0)
    m = Mamba(8, 4, 4, 2, bidirectional, "zero_bias", ("chunked", 4)).double()
    h = torch.randn(2, 13, 8, dtype=torch.float64, requires_grad=True)
    out = m(h)
    ref = _ref_mamba(m, h)
    assert torch.allclose(out, ref, rtol=1e-10, atol=1e-10)
    grads = torch.autograd.grad(out.square().sum(), [h, *m.parameters()], retain_graph=True)
    ref_grads = torch.autograd.grad(ref.square().sum(), [h, *m.parameters()])
    for (name, _), g, r in zip([("h", None), *m.named_parameters()], grads, ref_grads):
        assert torch.allclose(g, r, rtol=1e-9, atol=1e-9), name
    # direction: the first output sees the last input only through the backward branch
    first_from_last = torch.autograd.grad(out[:, 0].sum(), h)[0][:, -1]
    assert (first_from_last.abs().max() > 0) == bidirectional


def test_vision_mixer_conv_is_torch_same_padding():
    torch.manual_seed(0)
    mix = MambaVisionMixer(8, 4, 4, 2, ("chunked", 4)).double()
    x = torch.randn(2, 8, 9, dtype=torch.float64)
    conv = mix.conv1d_z
    assert torch.allclose(mix.ssm.conv(x), F.silu(F.conv1d(x, mix.ssm.conv1d.weight, None, padding="same", groups=8)))
    k = conv.kernel_size[0]
    ours = F.conv1d(F.pad(x, ((k - 1) // 2, k - 1 - (k - 1) // 2)), conv.weight, groups=8)
    assert torch.allclose(ours, F.conv1d(x, conv.weight, None, padding="same", groups=8))


def test_schedule_is_the_copys():
    """core/scheduler.py warm-up (0.1 N, epoch 0 at lr 0) then cosine (T_max 0.9 N), per epoch."""
    sched = Scheduler(_meta("mosi").lr_schedule(), torch.optim.SGD([torch.zeros(1)]), 1, 100)
    f = [sched.factor(e, 0) for e in range(100)]
    assert f[:12] == pytest.approx([0, .1, .2, .3, .4, .5, .6, .7, .8, .9, 1, 1])
    assert f[12] == pytest.approx(0.99970, abs=1e-5) and f[56] == pytest.approx(0.5)
    assert f[99] == pytest.approx(0.00122, abs=1e-5)
    constant = Scheduler(_meta("mosi", lr_schedule="constant").lr_schedule(), torch.optim.SGD([torch.zeros(1)]), 1, 100)
    assert constant.factor(0, 0) == 1.0 and constant.start_epoch(0) == {"lr_factor": 1.0}


# -- the model on synthetic ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def batch(synthetic):
    return synthetic.train.take(torch.arange(6))


def _demo(**over):
    torch.manual_seed(0)
    return create_model("msamba", "synthetic", "demo", **over)


def test_loss_terms_send_gradients_where_they_should(batch):
    model = _demo().train()
    parts = model.loss(model(batch), batch)
    assert set(parts) == {"total", "task", *(f"{h}_{m}" for h in ("ism", "chm") for m in "tav")}
    expect_total = parts["task"] + 0.5 * sum(v for k, v in parts.items() if k not in ("total", "task"))
    assert torch.allclose(parts["total"], expect_total)
    for name in [k for k in parts if k != "total"]:
        model.zero_grad(set_to_none=True)
        parts[name].backward(retain_graph=True)
        got = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        has = lambda prefix: any(n.startswith(prefix) for n in got)  # noqa: E731
        if name == "task":
            assert has("fc.") and all(has(f"chm.{m}.") and has(f"ism.{m}.") for m in "tav") and has("text.bert.")
            assert not has("sub_head.") and not has("chm_head.")
        else:
            kind, m = name.split("_")
            others = [o for o in "tav" if o != m]
            assert not has("fc.") and has(f"proj.{m}.") and has(f"ism.{m}.")
            if kind == "ism":  # the ISM head reads its own modality only
                assert has(f"sub_head.{m}.") and not has("chm.") and not has("chm_head.")
                assert not any(has(f"ism.{o}.") or has(f"proj.{o}.") for o in others)
            else:
                assert has(f"chm_head.{m}.") and has(f"chm.{m}.") and not has("sub_head.")
    # without sub_loss only the main head trains (and the 6 heads are not built/used)
    plain = _demo(sub_loss=False)
    assert set(plain.loss(plain(batch), batch)) == {"total", "task"}


def test_switches_change_the_computation(batch):
    with torch.no_grad():
        base = _demo().eval()(batch).pred
        for over in ({"chm_a_text": "own"}, {"ism_direction": "uni"}, {"glce_local": "time_depthwise"},
                     {"mixer_dt_bias": "once"}):
            assert not torch.allclose(base, _demo(**over).eval()(batch).pred), over
        same = _demo(scan_impl="sequential").eval()(batch).pred
    assert torch.allclose(base, same, atol=1e-5)


@pytest.mark.parametrize("impl,chunk", [("chunked", 4), ("chunked", 8),
                                        pytest.param("compiled", 2, marks=needs_compiler)])
def test_chunked_model_matches_sequential_in_fp32(batch, impl, chunk):
    """The whole model in fp32 (training mode, every loss term): the chunked scan's (and the compiled
    kernel's) loss and every parameter's gradient equal the sequential scan's to 1e-5."""
    grads = {}
    for name in ("sequential", impl):
        model = _demo(scan_impl=name, scan_chunk=chunk).train()
        assert model.cfg.seq_len + 1 > chunk  # more than one block: the chunked path runs
        loss = model.loss(model(batch), batch)["total"]
        loss.backward()
        grads[name] = (loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    (ref_loss, ref), (loss, got) = grads["sequential"], grads[impl]
    assert torch.allclose(loss, ref_loss, rtol=1e-5, atol=1e-5)
    assert set(got) == set(ref) and any("mixer" in n for n in got)
    for n in ref:
        assert torch.allclose(got[n], ref[n], rtol=1e-5, atol=1e-5), n


def test_modality_params_cover_each_branch():
    model = _demo()
    groups = model.modality_params()
    names = {id(p): n for n, p in model.named_parameters()}
    for m in "tav":
        assert all(names[id(p)].startswith((f"proj.{m}", f"cls_token.{m}", f"pos_embed.{m}", f"ism.{m}.",
                                            f"sub_head.{m}", "text.")) for p in groups[m])
    assert not model.separable  # the CHM mixes the modalities before the head


@pytest.mark.slow
def test_demo_trains_and_loss_goes_down(synthetic):
    model = _demo(max_epochs=3, early_stop_patience=None)
    out = train_demo(model, synthetic, (128, 32, 32))
    assert out["params"]["with_grad"] == out["params"]["total"] - sum(p.numel() for p in model.text.bert.pooler.parameters())
    assert out["model_summary"]["ism_direction"] == "bi"
