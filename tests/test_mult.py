"""MulT: exact MMSA parameter counts, attention semantics, presets."""

import math

import pytest
import torch
import torch.nn.functional as F

from models import create_model
from models.base import count_parameters
from models.layers.transformer import MultiheadAttention, future_mask


@pytest.mark.parametrize("dataset,preset,expected", [
    ("mosi", "mmsa", 2_571_551),   # MMSA 2.2.1, MOSI 768/5/20
    ("mosei", "mmsa", 982_951),    # MMSA 2.2.1, MOSEI 768/74/35
    ("mosi", "paper", 1_557_961),  # derived from layer shapes (the paper's widths)
    ("mosei", "paper", 1_568_041),
    ("iemocap", "paper", 1_580_928),
])
def test_parameter_counts(dataset, preset, expected):
    with torch.device("meta"):
        model = create_model("mult", dataset, preset)
    assert count_parameters(model)["total"] == expected


def test_mmsa_mosi_breakdown():
    with torch.device("meta"):
        m = create_model("mult", "mosi", "mmsa")
    n = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert sum(n(m.proj[k]) for k in "tav") == 198_250
    assert all(n(c) == 122_700 for c in m.cross.values()) and len(m.cross) == 6
    assert all(n(c) == 485_400 for c in m.memory.values())
    assert n(m.head_fc1) + n(m.head_fc2) + n(m.out) == 180_901


def test_future_mask_offset():
    # query i sees keys j < i + 1 + |Tk - Tq|  (MulT buffered_future_mask)
    m = future_mask(3, 5, torch.device("cpu"))
    assert m.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert future_mask(2, 2, torch.device("cpu")).tolist() == [[1, 0], [1, 1]]


def test_fused_attention_equals_explicit_softmax_attention():
    torch.manual_seed(0)
    attn = MultiheadAttention(20, 4).eval()
    x, kv = torch.randn(3, 7, 20), torch.randn(3, 9, 20)
    mask = future_mask(7, 9, x.device)
    out = attn(x, kv, causal=True)
    w, b = attn.in_proj_weight, attn.in_proj_bias
    q, k, v = F.linear(x, w[:20], b[:20]), F.linear(kv, w[20:40], b[20:40]), F.linear(kv, w[40:], b[40:])
    split = lambda z: z.view(3, -1, 4, 5).transpose(1, 2)  # noqa: E731
    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(5)
    scores = scores.masked_fill(~mask, float("-inf"))
    ref = (scores.softmax(-1) @ split(v)).transpose(1, 2).reshape(3, 7, 20)
    assert torch.allclose(out, attn.out_proj(ref), atol=1e-5)


def test_mmsa_preset_values():
    cfg = create_model("mult", "mosi", "mmsa").cfg
    assert (cfg.d, cfg.heads, cfg.conv_kernels, cfg.positions) == (50, 10, (5, 5, 5), False)
    assert (cfg.batch_size, cfg.grad_accum_steps, cfg.lr, cfg.weight_decay) == (16, 8, 2e-3, 0.0)
    assert cfg.clip_grad_value == 0.6 and cfg.clip_grad_norm is None and cfg.early_stop_patience == 8
    paper = create_model("mult", "iemocap").cfg
    assert paper.task == "iemocap" and paper.n_out == 8 and paper.positions and paper.dims == (300, 74, 35)


def test_sequences_shorten_by_kernel_minus_one(synthetic):
    model = create_model("mult", "synthetic", "mmsa").eval()
    feats = {}
    model.cross["ta"].register_forward_hook(lambda mod, i, o: feats.update(t=o.shape))
    with torch.no_grad():
        model(synthetic.train.take(torch.arange(2)))
    assert feats["t"] == (2, 46, 50)  # 50 - 5 + 1 steps, d wide


def test_last_step_only_equals_full_computation():
    """MulT reads only h[-1] of each memory transformer; computing the last layer for the last
    step alone gives the same values."""
    from models.layers.transformer import CrossModalTransformer

    torch.manual_seed(0)
    for source_len in (None, 5, 13):
        stack = CrossModalTransformer(20, 4, 3, 0.3, 0.1, 0.1, 0.2, causal=True, positions=True).eval()
        x = torch.randn(3, 9, 20)
        src = torch.randn(3, source_len, 20) if source_len else None
        with torch.no_grad():
            full = stack(x, src)[:, -1:]
            last = stack(x, src, last_only=True)
        assert last.shape == (3, 1, 20) and torch.allclose(full, last, atol=1e-6)


def test_cpu_attention_dropout_path():
    """Explicit attention with fast dropout masks: drop rate p, reproducible under the torch
    seed, and unbiased (the mean over many draws approaches the eval output)."""
    from models.layers.transformer import dropout_keep

    keep = dropout_keep((400, 500), 0.3, torch.device("cpu"))
    assert keep.dtype == torch.float32 and torch.allclose(keep.unique(), torch.tensor([0.0, 1 / 0.7]))
    assert abs((keep == 0).float().mean().item() - 0.3) < 0.005
    torch.manual_seed(7)
    a = dropout_keep((50, 50), 0.2, torch.device("cpu"))
    torch.manual_seed(7)
    assert torch.equal(a, dropout_keep((50, 50), 0.2, torch.device("cpu")))
    torch.manual_seed(0)
    attn = MultiheadAttention(16, 4, attn_dropout=0.5)
    x, kv = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    with torch.no_grad():
        ref = attn.eval()(x, kv, causal=True)
        attn.train()
        draws = torch.stack([attn(x, kv, causal=True) for _ in range(3000)])
    assert not torch.allclose(draws[0], ref, atol=1e-3)  # dropout is active in training
    assert torch.allclose(draws.mean(0), ref, atol=0.05)


@pytest.mark.parametrize("sizes", [(6, 10, 4), (7, 3, 5, 1, 9), ((5, 3), (2, 7), 1, (3, 3))])
def test_uint16_draws_equal_numpy_integers(sizes):
    """The fast 16-bit draws are numpy's `integers(0, 2**16, dtype=uint16)`, call after call
    (odd counts included: numpy drops half a 32-bit output, PCG64 keeps half a 64-bit one)."""
    import numpy as np

    from models.layers.transformer import uint16_draws

    fast, ref = (np.random.Generator(np.random.PCG64(5)) for _ in range(2))
    for size in sizes:
        shape = size if isinstance(size, tuple) else (size,)
        a, b = uint16_draws(fast, shape), ref.integers(0, 1 << 16, size=shape, dtype=np.uint16)
        assert a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)
    assert fast.integers(0, 1 << 16, 11, dtype=np.uint16).tolist() == ref.integers(0, 1 << 16, 11, dtype=np.uint16).tolist()


@pytest.mark.parametrize("sizes,workers", [((7, 1, 10, 3), 1), ((7, 1, 10, 3), 3), ((4001, 16, 2), 4)])
def test_drawn_keep_flags_are_numpys_draws_call_after_call(monkeypatch, sizes, workers):
    """`draw_keeps` (each block cut into pieces drawn by jumping the generator ahead, on several
    threads) gives the flags of numpy's own successive `integers` calls, odd sizes included."""
    import numpy as np

    import models.layers.transformer as tr

    monkeypatch.setattr(tr.torch, "get_num_threads", lambda: workers)
    keeps = tr.draw_keeps(np.random.PCG64(9).state, list(sizes), 0.3)
    ref = np.random.Generator(np.random.PCG64(9))
    for n, keep in zip(sizes, keeps, strict=True):
        expected = ref.integers(0, 1 << 16, size=n, dtype=np.uint16) >= round(0.3 * (1 << 16))
        assert keep.dtype == torch.uint8 and keep.tolist() == expected.astype(np.uint8).tolist()


@pytest.mark.parametrize("t_q,t_k,causal,threads", [(90, 90, True, 1), (70, 45, True, 2), (40, 75, True, 3),
                                                     (33, 50, False, 2), (300, 170, True, 2), (150, 260, True, 1)])
def test_blocked_attention_equals_dense_attention_seeded(monkeypatch, t_q, t_k, causal, threads):
    """Blocked attention (forward and its recomputing backward) equals dense masked attention
    with dropout, the dense masks drawn from the same torch seed by numpy's own `integers`, in
    the draw blocks' order (rows `ROW_BLOCK` at a time, batch chunks of `CHUNK_ELEMENTS`), however
    many threads draw them."""
    import numpy as np

    import models.layers.transformer as tr

    for name, value in (("ROW_BLOCK", 32), ("CHUNK_ELEMENTS", 9_000), ("SUB_ROWS", 8), ("SUB_ELEMENTS", 2_000)):
        monkeypatch.setattr(tr, name, value)  # several draw blocks and computed blocks per draw block
    b, h, dh, p = 3, 2, 4, 0.25
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(b, h, t, dh, generator=gen, requires_grad=True) for t in (t_q, t_k, t_k))
    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # the masks are drawn in one piece per thread
    try:
        out = tr.blocked_attention_with_dropout(q, k, v, p, causal)
    finally:
        torch.set_num_threads(before)
    torch.manual_seed(0)
    rng = np.random.Generator(np.random.PCG64(int(torch.randint(0, 2**62, (1,)).item())))
    keep = torch.ones(b, h, t_q, t_k)
    for r0, r1, lim, i0, i1 in tr._draw_chunks(b, h, t_q, t_k, causal):
        draws = rng.integers(0, 1 << 16, size=((i1 - i0) * h, r1 - r0, lim), dtype=np.uint16)
        keep[i0:i1, :, r0:r1, :lim] = torch.from_numpy((draws >= round(p * (1 << 16))).astype(np.float32)).view(
            i1 - i0, h, r1 - r0, lim) / (1 - p)
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh)
    if causal:
        scores = scores.masked_fill(~future_mask(t_q, t_k, q.device), float("-inf"))
    ref = (scores.softmax(-1) * keep) @ v
    assert (keep == 0).float().mean().item() > 0.1 and torch.allclose(out, ref, atol=1e-5)  # dropout is on
    weights = torch.randn(out.shape, generator=gen)
    g_out = torch.autograd.grad((out * weights).sum(), (q, k, v))
    g_ref = torch.autograd.grad((ref * weights).sum(), (q, k, v))
    assert all(torch.allclose(a, r, atol=1e-5) for a, r in zip(g_out, g_ref, strict=True))
