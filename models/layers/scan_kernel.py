"""The selective scan as one compiled C kernel per pass (forward, backward), built on first use.

The PyTorch scan in models/msamba.py runs each time step as a few whole-tensor ops over the
(batch, d, n) state, so every step streams that state through memory several times. This kernel
takes a block of DV channels of one batch row (DV = 16 with AVX-512, else 8), copies its inputs
into small time-major tiles, and keeps that block's state (DV x n) in registers for the whole
sequence. Forward: the decays exp(dt A) (as 2^(dt A log2 e): a polynomial in C, lane-parallel),
the states, y = C h + D u and the gate silu(z). Backward: the states and decays again (into a
per-block buffer), the gate's gradient, then the reverse scan G_t = C_t g_t + a_{t+1} G_{t+1} and
the chain rule of `_state_grads` in one pass, giving the gradients of u, dt, z, B, C, A and D.
softplus(delta + bias) and its derivative stay in PyTorch. Same recurrence as the PyTorch scan,
summed in a different order: equal to it up to float rounding (tests/test_msamba.py: the output
and every gradient against a literal step-by-step loop, and the whole model against the
sequential scan).

Built with the machine's C compiler (`$CC`, else cc, gcc or clang), `-O3 -march=native`, in
well under a second, into the cache folder (`$MSABENCH_CACHE`, else `$XDG_CACHE_HOME/msabench`,
else ~/.cache/msabench), keyed by the source, the compiler and the CPU; written to a temporary
name and renamed, so a run that dies leaves nothing half-written and concurrent jobs share it.
It is loaded with ctypes (no Python headers, no torch headers) and runs on torch's own OpenMP
threads (`GOMP_parallel` of the runtime torch loaded, passed to the kernel as a function
pointer), each on its own batch rows; where no OpenMP runtime is found, on Python threads
(ctypes releases the GIL). Torch's OpenMP threads wait busily for a while after each parallel
op, so Python threads beside them would share the cores with them. Each row is computed by one
thread in a fixed order, so results do not depend on the thread count or on which threads ran
it. Without a compiler, or with MSABENCH_SCAN_KERNEL=off, `available()` is False and `reason()`
says why; MSAmba's default (`scan_impl="auto"`) then runs the PyTorch scan.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import re
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import torch

SOURCE = r"""
#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__)
#define DV 16  /* lanes of d per pass: one 512-bit register */
#else
#define DV 8
#endif
#define NMAX 32
typedef int64_t I;
typedef float vf __attribute__((vector_size(DV * 4)));
typedef int32_t vi __attribute__((vector_size(DV * 4)));
#define LOG2E 1.44269504088896341f
/* 2^x, lane-wise: x = k + f (k rounded to nearest, f in [-0.5, 0.5]), e^(f ln 2) by its degree-7 Taylor
   polynomial, times 2^k made in the exponent bits; x is clamped to [-127, 126] (2^-127 is made as 0) */
static inline vf exp2v(vf x) {
    const vf lo = (vf){0} - 127.0f, hi = (vf){0} + 126.0f;
    const vi below = x < lo, above = x > hi;  /* lanes of -1 where true */
    x = (vf)(((vi)x & ~below) | ((vi)lo & below));
    x = (vf)(((vi)x & ~above) | ((vi)hi & above));
    const vf k = (x + 12582912.0f) - 12582912.0f;
    const vf f = (x - k) * 0.69314718055994531f;
    const vf p = 1.0f + f * (1.0f + f * (0.5f + f * (1.6666667e-1f + f * (4.1666668e-2f + f * (8.3333333e-3f
              + f * (1.3888889e-3f + f * 1.9841270e-4f))))));
    const vi bits = (__builtin_convertvector(k, vi) + 127) << 23;
    vf s;
    memcpy(&s, &bits, sizeof s);
    return p * s;
}
static inline vf sigmoidv(vf z) { return 1.0f / (1.0f + exp2v(z * -LOG2E)); }
static inline vf loadv(const float *src) { vf v; memcpy(&v, src, sizeof v); return v; }
static inline void storev(float *dst, vf v) { memcpy(dst, &v, sizeof v); }
/* rows d0 .. d0+nl-1 of a (., L) array -> a time-major tile (L, DV), lanes past nl zero */
static void tile_in(vf *dst, const float *src, I L, int nl) {
    float *f = (float *)dst;  /* scalar stores: setting one lane of a vector in memory is far slower */
    if (nl < DV) memset(dst, 0, sizeof(vf) * L);
    for (int l = 0; l < nl; l++)
        for (I t = 0; t < L; t++) f[t * DV + l] = src[l * L + t];
}
static void tile_out(float *dst, const vf *src, I L, int nl) {
    const float *f = (const float *)src;
    for (int l = 0; l < nl; l++)
        for (I t = 0; t < L; t++) dst[l * L + t] = f[t * DV + l];
}
/* batch row b's B and C (N, L) -> time-major (L, N) */
static void row_bc(float *Bb, float *Cb, const float *Bm, const float *Cm, I b, I L, I N) {
    for (int n = 0; n < N; n++)
        for (I t = 0; t < L; t++) { Bb[t * N + n] = Bm[(b * N + n) * L + t]; Cb[t * N + n] = Cm[(b * N + n) * L + t]; }
}
/* a block's u, dt and (where given) z as tiles */
static void block_in(vf *tu, vf *tdt, vf *tz, const float *u, const float *dt, const float *z, I L, int nl) {
    tile_in(tu, u, L, nl);
    tile_in(tdt, dt, L, nl);
    if (z) tile_in(tz, z, L, nl);
}
/* Forward, batch rows [b0, b1). u, dt, z, out (Bs, D, L); Bm, Cm (Bs, N, L); A2 (N, Dp) = A^T log2(e) and
   Dsk (Dp), zero-padded to Dp = D rounded up to DV; Dsk, z may be NULL. out = (C h + Dsk u) silu(z).
   work: 4 L DV + 2 L N floats. */
void scan_fwd(I b0, I b1, I D, I Dp, I L, I N, const float *u, const float *dt, const float *A2, const float *Bm,
              const float *Cm, const float *Dsk, const float *z, float *out, float *work) {
    vf h[NMAX];
    vf *tu = (vf *)work, *tdt = tu + L, *tz = tdt + L, *ty = tz + L;
    float *Bb = (float *)(ty + L), *Cb = Bb + L * N;  /* the row's B and C, time-major (L, N) */
    for (I b = b0; b < b1; b++) {
        row_bc(Bb, Cb, Bm, Cm, b, L, N);
        for (I d0 = 0; d0 < D; d0 += DV) {
            const int nl = (int)(D - d0 < DV ? D - d0 : DV);
            const I row = (b * D + d0) * L;
            const vf Dv = Dsk ? loadv(Dsk + d0) : (vf){0};
            block_in(tu, tdt, tz, u + row, dt + row, z ? z + row : NULL, L, nl);
            for (int n = 0; n < N; n++) h[n] = (vf){0};
            for (I t = 0; t < L; t++) {
                const vf dtv = tdt[t], duv = dtv * tu[t];
                vf yv = {0};
                for (int n = 0; n < N; n++) {
                    h[n] = exp2v(dtv * loadv(A2 + n * Dp + d0)) * h[n] + duv * Bb[t * N + n];
                    yv += Cb[t * N + n] * h[n];
                }
                yv += Dv * tu[t];
                ty[t] = z ? yv * (tz[t] * sigmoidv(tz[t])) : yv;
            }
            tile_out(out + row, ty, L, nl);
        }
    }
}
/* Backward, batch rows [b0, b1): gout (Bs, D, L) the gradient at out. Writes, for these rows, gu, gdt, gz
   (Bs, D, L; gz only with z), gB, gC (Bs, N, L), gA (Bs, N, Dp) and gD (Bs, Dp). A (N, Dp) unscaled.
   work: 4 L N DV + 7 L DV + 2 L N floats. */
void scan_bwd(I b0, I b1, I D, I Dp, I L, I N, const float *u, const float *dt, const float *A, const float *A2,
              const float *Bm, const float *Cm, const float *Dsk, const float *z, const float *gout, float *gu,
              float *gdt, float *gz, float *gB, float *gC, float *gA, float *gD, float *work) {
    vf *hs = (vf *)work, *as = hs + L * N, *wB = as + L * N, *wC = wB + L * N;
    vf *tu = wC + L * N, *tdt = tu + L, *tz = tdt + L, *tg = tz + L, *tgu = tg + L, *tgdt = tgu + L, *tgz = tgdt + L;
    float *Bb = (float *)(tgz + L), *Cb = Bb + L * N;  /* the row's B and C, time-major (L, N) */
    vf P[NMAX], gAl[NMAX];
    for (I b = b0; b < b1; b++) {
        row_bc(Bb, Cb, Bm, Cm, b, L, N);
        float *gAb = gA + b * N * Dp, *gDb = gD + b * Dp;
        memset(wB, 0, sizeof(vf) * 2 * L * N);
        memset(gAb, 0, sizeof(float) * N * Dp);
        memset(gDb, 0, sizeof(float) * Dp);
        for (I d0 = 0; d0 < D; d0 += DV) {
            const int nl = (int)(D - d0 < DV ? D - d0 : DV);
            const I row = (b * D + d0) * L;
            const vf Dv = Dsk ? loadv(Dsk + d0) : (vf){0};
            block_in(tu, tdt, tz, u + row, dt + row, z ? z + row : NULL, L, nl);
            tile_in(tg, gout + row, L, nl);
            for (I t = 0; t < L; t++) {  /* the decays and states again; with z, the gradient through the gate */
                const vf dtv = tdt[t], duv = dtv * tu[t];
                vf yv = {0};
                for (int n = 0; n < N; n++) {
                    const vf a = exp2v(dtv * loadv(A2 + n * Dp + d0));
                    const vf h = (t ? a * hs[(t - 1) * N + n] : (vf){0}) + duv * Bb[t * N + n];
                    as[t * N + n] = a;
                    hs[t * N + n] = h;
                    yv += Cb[t * N + n] * h;
                }
                if (z) {
                    yv += Dv * tu[t];
                    const vf zv = tz[t], sig = sigmoidv(zv);
                    tgz[t] = tg[t] * yv * sig * (1.0f + zv * (1.0f - sig));
                    tg[t] = tg[t] * zv * sig;
                }
            }
            for (int n = 0; n < N; n++) P[n] = gAl[n] = (vf){0};
            vf gDv = {0};
            for (I t = L - 1; t >= 0; t--) {  /* G_t = C_t g_t + P_{t+1}, P_t = G_t a_t, X_t = P_t h_{t-1} */
                const vf dtv = tdt[t], uv = tu[t], duv = dtv * uv, gv = tg[t];
                vf sdu = {0}, sdt = {0};
                for (int n = 0; n < N; n++) {
                    const float Bn = Bb[t * N + n], Cn = Cb[t * N + n];
                    const vf G = Cn * gv + P[n];
                    sdu += Bn * G;
                    wB[t * N + n] += duv * G;
                    wC[t * N + n] += gv * hs[t * N + n];
                    P[n] = G * as[t * N + n];
                    if (t) {
                        const vf X = P[n] * hs[(t - 1) * N + n];
                        sdt += loadv(A + n * Dp + d0) * X;
                        gAl[n] += dtv * X;
                    }
                }
                tgu[t] = sdu * dtv + gv * Dv;
                tgdt[t] = sdt + sdu * uv;
                gDv += gv * uv;
            }
            storev(gDb + d0, gDv);
            for (int n = 0; n < N; n++) storev(gAb + n * Dp + d0, gAl[n]);
            tile_out(gu + row, tgu, L, nl);
            tile_out(gdt + row, tgdt, L, nl);
            if (z) tile_out(gz + row, tgz, L, nl);
        }
        for (int n = 0; n < N; n++)
            for (I t = 0; t < L; t++) {
                float sb = 0.0f, sc = 0.0f;
                for (int l = 0; l < DV; l++) { sb += wB[t * N + n][l]; sc += wC[t * N + n][l]; }
                gB[(b * N + n) * L + t] = sb;
                gC[(b * N + n) * L + t] = sc;
            }
    }
}
int scan_lanes(void) { return DV; }
int scan_max_state(void) { return NMAX; }
/* Running on the caller's OpenMP team (the library torch loaded, passed in as function pointers: nothing
   here links an OpenMP runtime): part p of `parts` takes batch rows [p step, (p + 1) step), each part on one
   thread of the team, so the split, and the result, depend on `parts` only. */
typedef void (*gomp_parallel_t)(void (*)(void *), void *, unsigned, unsigned);
typedef int (*omp_int_t)(void);
struct job {
    int backward, parts;
    omp_int_t thread_num, num_threads;
    I Bs, D, Dp, L, N, work_stride;
    const float *u, *dt, *A, *A2, *Bm, *Cm, *Dsk, *z, *gout;
    float *out, *gu, *gdt, *gz, *gB, *gC, *gA, *gD, *work;
};
static void run_parts(void *arg) {
    const struct job *j = arg;
    const I step = (j->Bs + j->parts - 1) / j->parts;
    for (int p = j->thread_num(); p < j->parts; p += j->num_threads()) {
        const I b0 = p * step, b1 = b0 + step < j->Bs ? b0 + step : j->Bs;
        float *work = j->work + p * j->work_stride;
        if (b0 >= b1) continue;
        if (j->backward)
            scan_bwd(b0, b1, j->D, j->Dp, j->L, j->N, j->u, j->dt, j->A, j->A2, j->Bm, j->Cm, j->Dsk, j->z, j->gout,
                     j->gu, j->gdt, j->gz, j->gB, j->gC, j->gA, j->gD, work);
        else
            scan_fwd(b0, b1, j->D, j->Dp, j->L, j->N, j->u, j->dt, j->A2, j->Bm, j->Cm, j->Dsk, j->z, j->out, work);
    }
}
void scan_fwd_team(gomp_parallel_t par, omp_int_t thread_num, omp_int_t num_threads, int parts, I Bs, I D, I Dp,
                   I L, I N, const float *u, const float *dt, const float *A2, const float *Bm, const float *Cm,
                   const float *Dsk, const float *z, float *out, float *work, I work_stride) {
    struct job j = {0, parts, thread_num, num_threads, Bs, D, Dp, L, N, work_stride, u, dt, NULL, A2, Bm, Cm, Dsk, z,
                    NULL, out, NULL, NULL, NULL, NULL, NULL, NULL, NULL, work};
    par(run_parts, &j, (unsigned)parts, 0);
}
void scan_bwd_team(gomp_parallel_t par, omp_int_t thread_num, omp_int_t num_threads, int parts, I Bs, I D, I Dp,
                   I L, I N, const float *u, const float *dt, const float *A, const float *A2, const float *Bm,
                   const float *Cm, const float *Dsk, const float *z, const float *gout, float *gu, float *gdt,
                   float *gz, float *gB, float *gC, float *gA, float *gD, float *work, I work_stride) {
    struct job j = {1, parts, thread_num, num_threads, Bs, D, Dp, L, N, work_stride, u, dt, A, A2, Bm, Cm, Dsk, z,
                    gout, NULL, gu, gdt, gz, gB, gC, gA, gD, work};
    par(run_parts, &j, (unsigned)parts, 0);
}
"""

FLAGS = ("-O3", "-march=native", "-fPIC", "-shared")
KERNEL_ENV = "MSABENCH_SCAN_KERNEL"  # "off": never build or run the kernel (the PyTorch scan everywhere)
_lock = threading.Lock()
_state: dict[str, object] = {}
_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}  # (process, threads): a forked child makes its own


def cache_dir() -> Path:
    """Where built kernels are kept: $MSABENCH_CACHE, else $XDG_CACHE_HOME/msabench, else ~/.cache/msabench."""
    if os.environ.get("MSABENCH_CACHE"):
        return Path(os.environ["MSABENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "msabench"


def switched_off() -> bool:
    """Whether $MSABENCH_SCAN_KERNEL turns the kernel off ("on", the default, or "off"; anything else is an error)."""
    value = os.environ.get(KERNEL_ENV, "on")
    if value not in ("on", "off"):
        raise ValueError(f"{KERNEL_ENV}={value!r}: expected 'on' or 'off'")
    return value == "off"


def _compiler() -> Optional[str]:
    """The first of $CC, cc, gcc, clang on PATH, as a full path."""
    found = (shutil.which(name) for name in (os.environ.get("CC"), "cc", "gcc", "clang") if name)
    return next((path for path in found if path), None)


def _cpu() -> str:
    """What -march=native compiles for: the CPU's model and feature flags where Linux lists them."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "|".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags", "Features"))}))
    except OSError:
        return f"{platform.machine()}|{platform.processor()}"


def _build(cc: str) -> Path:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    key = hashlib.sha256("\0".join((SOURCE, " ".join(FLAGS), version, _cpu())).encode()).hexdigest()[:16]
    out = cache_dir() / "kernels" / f"selective_scan_{key}.so"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        src, lib = Path(tmp) / "scan.c", Path(tmp) / "scan.so"
        src.write_text(SOURCE)
        for flags in (FLAGS, tuple(f for f in FLAGS if f != "-march=native")):  # some compilers lack -march=native
            done = subprocess.run([cc, *flags, "-o", str(lib), str(src)], capture_output=True, text=True, timeout=300)
            if done.returncode == 0:
                break
        else:
            raise RuntimeError(f"{cc} failed: {done.stderr.strip()[:500]}")
        os.replace(lib, out)
    return out


def _load() -> Optional[ctypes.CDLL]:
    with _lock:
        if "lib" not in _state:
            lib, why = None, ""
            if switched_off():
                why = f"turned off ({KERNEL_ENV}=off)"
            elif (cc := _compiler()) is None:
                why = "no C compiler found ($CC, cc, gcc, clang)"
            else:
                try:
                    lib = ctypes.CDLL(str(_build(cc)))
                    i, p = ctypes.c_int64, ctypes.c_void_p
                    lib.scan_fwd.argtypes = [i] * 6 + [p] * 9
                    lib.scan_bwd.argtypes = [i] * 6 + [p] * 17
                    lib.scan_fwd_team.argtypes = [p] * 3 + [ctypes.c_int] + [i] * 5 + [p] * 9 + [i]
                    lib.scan_bwd_team.argtypes = [p] * 3 + [ctypes.c_int] + [i] * 5 + [p] * 17 + [i]
                    for fn in (lib.scan_fwd, lib.scan_bwd, lib.scan_fwd_team, lib.scan_bwd_team):
                        fn.restype = None
                    why = f"compiled with {cc}"
                except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                    lib, why = None, f"building the kernel failed: {e}"
            _state["lib"], _state["why"] = lib, why
    return _state["lib"]  # type: ignore[return-value]


def available() -> bool:
    """Whether the kernel is built (building it now if need be)."""
    return _load() is not None


def reason() -> str:
    """How the kernel was got ("compiled with /usr/bin/cc") or why it is not available."""
    _load()
    return str(_state["why"])


def supports(*tensors: torch.Tensor) -> bool:
    """The kernel's domain: float32 CPU tensors, d_state at most its maximum, and the kernel built."""
    lib = _load()
    return (lib is not None and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
            and tensors[2].shape[1] <= lib.scan_max_state())


def _openmp() -> Optional[tuple[int, int, int]]:
    """The addresses of GOMP_parallel, omp_get_thread_num and omp_get_num_threads in the OpenMP runtime
    this process has loaded (torch's, found in /proc/self/maps; libgomp, or libomp/libiomp5, which
    provide the same entry points), or None: then the kernel runs on Python threads."""
    if "omp" not in _state:
        found = None
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            maps = ""
        libs = sorted({ln.split()[-1] for ln in maps.splitlines() if re.search(r"/lib[gi]?omp[^/]*\.so", ln)})
        libs.sort(key=lambda path: not path.startswith(str(Path(torch.__file__).parent)))  # torch's own first
        for path in libs:
            try:
                rt = ctypes.CDLL(path)  # already loaded: the same runtime, the same thread team
                found = tuple(ctypes.cast(getattr(rt, name), ctypes.c_void_p).value
                              for name in ("GOMP_parallel", "omp_get_thread_num", "omp_get_num_threads"))
                break
            except (OSError, AttributeError):
                continue
        _state["omp"] = found
    return _state["omp"]  # type: ignore[return-value]


def _threads(batch: int) -> int:
    return max(1, min(torch.get_num_threads(), batch))


def _launch(team, fn, batch: int, args, work: torch.Tensor, stride: int) -> None:
    """The kernel on `torch.get_num_threads()` threads, part i on its own batch rows with its own slice of
    `work` (`stride` floats): on torch's OpenMP team where there is one (its threads, already awake,
    do the work instead of spinning beside it), else on Python threads."""
    parts = _threads(batch)
    if work.data_ptr() % 64:  # the kernel addresses its work slices as vectors
        raise ValueError("scan kernel: work buffer not 64-byte aligned")
    omp = _openmp()
    if omp is not None:
        team(*omp, parts, batch, *args, _ptr(work), stride)
    else:
        _run(fn, batch, lambda i: (*args, work.data_ptr() + 4 * i * stride))


def _run(fn, batch: int, args) -> None:
    """fn(b0, b1, *args(i)) on `torch.get_num_threads()` Python threads, part i on its own batch rows."""
    step = -(-batch // _threads(batch))
    parts = [(s, min(s + step, batch)) for s in range(0, batch, step)]
    if len(parts) == 1:
        fn(0, batch, *args(0))
        return
    key = (os.getpid(), len(parts))
    pool = _pools.get(key) or _pools.setdefault(key, ThreadPoolExecutor(len(parts), thread_name_prefix="scan"))
    for f in [pool.submit(fn, b0, b1, *args(i)) for i, (b0, b1) in enumerate(parts)]:
        f.result()


def _padded_t(A: torch.Tensor, lanes: int) -> torch.Tensor:
    """A (d, n) -> A^T (n, Dp), Dp = d rounded up to `lanes`, zero-padded, contiguous."""
    d, n = A.shape
    out = A.new_zeros(n, -(-d // lanes) * lanes)
    out[:, :d] = A.t()
    return out


def _aligned(floats: int) -> int:
    """`floats` rounded up to a multiple of 16 (64 bytes: each part's work slice starts aligned)."""
    return -(-floats // 16) * 16


def _ptr(t: Optional[torch.Tensor]) -> Optional[int]:
    """A contiguous tensor's address (any alignment: the kernel reads and writes them with memcpy)."""
    if t is None:
        return None
    if not t.is_contiguous():
        raise ValueError(f"scan kernel: a non-contiguous {tuple(t.shape)} tensor")
    return t.data_ptr()


def _prepare(u, dt, A, B, C, D, z):
    lib = _load()
    assert lib is not None
    lanes = lib.scan_lanes()
    A1 = _padded_t(A, lanes)
    D1 = _padded_t(D[:, None], lanes)[0] if D is not None else None
    u, dt, B, C = (x.contiguous() for x in (u, dt, B, C))
    return lib, lanes, A1, D1, u, dt, B, C, z.contiguous() if z is not None else None


def scan_forward(u: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                 D: Optional[torch.Tensor], z: Optional[torch.Tensor]) -> torch.Tensor:
    """out = (y + D u) silu(z) (no D: no skip term; no z: no gate), y_t = C_t h_t, h_t = exp(dt_t A) h_{t-1}
    + dt_t u_t B_t (h_{-1} = 0): u, dt, z (batch, d, L), dt after softplus; A (d, n); B, C (batch, n, L); D (d,)."""
    lib, lanes, A1, D1, u, dt, B, C, z = _prepare(u, dt, A, B, C, D, z)
    b, d, L = u.shape
    A2 = A1 * math.log2(math.e)
    out = torch.empty_like(u)
    stride = _aligned(4 * L * lanes + 2 * L * A.shape[1])
    work = u.new_empty(_threads(b) * stride)
    _launch(lib.scan_fwd_team, lib.scan_fwd, b, (d, A1.shape[1], L, A.shape[1], _ptr(u), _ptr(dt), _ptr(A2), _ptr(B),
                                                 _ptr(C), _ptr(D1), _ptr(z), _ptr(out)), work, stride)
    return out


def scan_backward(u: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                  D: Optional[torch.Tensor], z: Optional[torch.Tensor], g: torch.Tensor):
    """The gradients of sum(g * out) for `scan_forward`'s out: (g_u, g_dt, g_z, g_B, g_C, g_A, g_D), in the
    inputs' shapes (g_z None without z, g_D None without D); g_dt is the gradient at dt (after softplus)."""
    lib, lanes, A1, D1, u, dt, B, C, z = _prepare(u, dt, A, B, C, D, z)
    b, d, L = u.shape
    n, dp = A.shape[1], A1.shape[1]
    A2 = A1 * math.log2(math.e)
    g = g.contiguous()
    g_u, g_dt, g_B, g_C = torch.empty_like(u), torch.empty_like(u), torch.empty_like(B), torch.empty_like(C)
    g_z = torch.empty_like(u) if z is not None else None
    g_A, g_D = u.new_empty(b, n, dp), u.new_empty(b, dp)  # per batch row, summed below in a fixed order
    stride = _aligned(4 * L * n * lanes + 7 * L * lanes + 2 * L * n)
    work = u.new_empty(_threads(b) * stride)
    _launch(lib.scan_bwd_team, lib.scan_bwd, b, (d, dp, L, n, _ptr(u), _ptr(dt), _ptr(A1), _ptr(A2), _ptr(B), _ptr(C),
                                                 _ptr(D1), _ptr(z), _ptr(g), _ptr(g_u), _ptr(g_dt), _ptr(g_z), _ptr(g_B),
                                                 _ptr(g_C), _ptr(g_A), _ptr(g_D)), work, stride)
    return g_u, g_dt, g_z, g_B, g_C, g_A.sum(0)[:, :d].t(), g_D.sum(0)[:d] if D is not None else None
