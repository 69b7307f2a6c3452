"""Throughput of batched jitted metrics vs straightforward per-task NumPy.

Compares, single-threaded and in one process on the same float32 inputs:

* JAX: ``jax.jit(jax.vmap(partial(metrics.<m>, num_classes=C)))`` over a batch of
  tasks (logme, hscore, leep, nce), and one large task.
* NumPy: the same algorithms written plainly and called once per task (LogME as in
  the published code: thin SVD of F, then a Python loop over classes running the
  fixed point; H-Score with np.cov and pinv; LEEP / NCE with per-class loops).

NumPy is timed on a subset of the batch (per-task cost does not depend on the batch)
and throughputs (tasks/s) are compared. Times are process CPU seconds on the one pinned
core (robust to other load on a shared machine; equal to wall time on an idle one). Achieved GFLOP/s uses nominal counts
(matmuls exact, symmetric eigendecomposition with vectors counted as 4 n^3, thin SVD
as 6 m n^2 + 20 n^3 ... see ``_flops``) against a single-thread jnp matmul measured
in the same run.

Run (default ~3 min on one core; --quick for a smoke run)::

    python benchmarks/metrics_speed.py [--quick]
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_cpu_multi_thread_eigen=false").strip()
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
# XLA's CPU runtime keeps its own thread pool; pinning the process to one core makes
# "single-threaded" hold for every library (NumPy/OpenBLAS, XLA, LAPACK) alike.
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import argparse  # noqa: E402
import functools  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from spider_jax import metrics  # noqa: E402


# ----------------------------------------------------------------------------- NumPy baselines


def np_logme(f, y, num_classes):
    """Published-style LogME: thin SVD once, Python loop over classes (fixed point)."""
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s * s
    k = sigma.size
    evs = []
    for c in range(num_classes):
        yc = (y == c).astype(f.dtype)
        if not yc.any():
            continue
        x2 = (u.T @ yc) ** 2
        res_x2 = max(float(yc @ yc - x2.sum()), 0.0)
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = float((sigma / (sigma + t)).sum())
            m2 = float((sigma * x2 / (t + sigma) ** 2).sum())
            res2 = float((x2 / (1 + sigma / t) ** 2).sum()) + res_x2
            alpha, beta = gamma / m2, (n - gamma) / res2
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        logdet = float(np.log(alpha + beta * sigma).sum()) + (d - k) * np.log(alpha)
        ev = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * logdet - beta / 2 * res2
              - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
        evs.append(ev / n)
    return float(np.mean(evs))


def np_hscore(f, y, num_classes):
    cov_f = np.cov(f, rowvar=False)
    g = np.zeros_like(f)
    for c in range(num_classes):
        sel = y == c
        if sel.any():
            g[sel] = f[sel].mean(0)
    cov_g = np.cov(g, rowvar=False)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-15) @ cov_g))


def np_leep(p, y, num_classes):
    n = len(y)
    joint = np.zeros((num_classes, p.shape[1]), p.dtype)
    for c in range(num_classes):
        joint[c] = p[y == c].sum(0) / n
    cond = joint / joint.sum(0, keepdims=True)
    eep = np.einsum("nz,nz->n", p, cond[y])
    return float(np.mean(np.log(eep)))


def np_nce(z, y, num_source, num_classes):
    n = len(y)
    joint = np.zeros((num_classes, num_source))
    np.add.at(joint, (y, z), 1.0 / n)
    pz = joint.sum(0, keepdims=True)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log((joint / np.where(pz > 0, pz, 1))[nz])))


# ----------------------------------------------------------------------------- helpers


def _tasks(b, n, d, c, z, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, size=(b, n)).astype(np.int32)
    centres = rng.normal(size=(b, c, d)).astype(np.float32)
    feats = np.maximum(centres[np.arange(b)[:, None], labels]
                       + rng.normal(size=(b, n, d)).astype(np.float32), 0.0)   # ReLU-like
    logits = rng.normal(size=(b, n, z)).astype(np.float32) * 2
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return feats, labels, probs


def _clock():
    """Process CPU seconds: the process is pinned to one core, so this is its time on that
    core, the same for JAX and NumPy however much other load the shared machine carries
    (wall-clock ratios drifted by tens of percent under load)."""
    return time.process_time()


def _time(fn, repeats=1):
    best = float("inf")
    for _ in range(repeats):
        t0 = _clock()
        jax.block_until_ready(fn())
        best = min(best, _clock() - t0)
    return best


def _eig_flops(k):
    return 4.0 * k ** 3


def _flops(name, n, d, c, z):
    """Nominal FLOPs of the JAX algorithm for one task."""
    if name == "logme":
        if n <= d:
            return 2.0 * n * n * d + _eig_flops(n) + 2.0 * n * n * c
        return 2.0 * n * d * d + _eig_flops(d) + 4.0 * n * d * c + 4.0 * d * d * c
    if name == "hscore":
        if n <= d:
            return 2.0 * n * n * d + _eig_flops(n) + 2.0 * n * n * c
        return 2.0 * n * d * d + _eig_flops(d) + 2.0 * n * d * c + 2.0 * d * d * c
    return 4.0 * n * c * z          # leep: two one-hot matmuls


def matmul_peak(size=1536, repeats=3):
    a = jnp.asarray(np.random.default_rng(0).normal(size=(size, size)).astype(np.float32))
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    return 2.0 * size ** 3 / _time(lambda: f(a), repeats) / 1e9


def logme_limits(n, d):
    """ms per task of LogME's unavoidable pieces on one core: the Gram, eigh with vectors
    (what LogME runs), and the tridiagonal reduction / eigenvalues alone (the floor of any
    eigenvector-free exact method, which still needs them)."""
    f = jnp.asarray(np.random.default_rng(0).normal(size=(n, d)).astype(np.float32))
    gram_fn = jax.jit(lambda a: a @ a.T)
    g = gram_fn(f)
    arr, _, _, taus = jax.jit(jax.lax.linalg.tridiagonal)(g)
    out = {}
    for key, fn, args in (
            ("gram_ms", gram_fn, (f,)), ("eigh_ms", jax.jit(jnp.linalg.eigh), (g,)),
            ("tridiagonal_ms", jax.jit(jax.lax.linalg.tridiagonal), (g,)),
            ("eigvalsh_ms", jax.jit(jnp.linalg.eigvalsh), (g,)),
            ("householder_product_ms", jax.jit(lambda a, t: jax.lax.linalg.householder_product(
                a[1:, :-1], t)), (arr, taus))):
        jax.block_until_ready(fn(*args))
        out[key] = 1e3 * _time(lambda: fn(*args), repeats=3)
    return out


def bench(label, b, n, d, c, z, np_tasks, peak):
    feats, labels, probs = _tasks(b, n, d, c, z)
    src = probs.argmax(-1).astype(np.int32)
    print(f"\n== {label}: {b} task(s), N={n}, D={d}, C={c}, source classes={z}; "
          f"NumPy timed on {np_tasks} task(s)")
    jax_fns = {
        "logme": (jax.jit(jax.vmap(functools.partial(metrics.logme, num_classes=c))),
                  (feats, labels)),
        "hscore": (jax.jit(jax.vmap(functools.partial(metrics.hscore, num_classes=c))),
                   (feats, labels)),
        "leep": (jax.jit(jax.vmap(functools.partial(metrics.leep, num_classes=c))),
                 (probs, labels)),
        "nce": (jax.jit(jax.vmap(functools.partial(metrics.nce, num_source_classes=z,
                                                   num_classes=c))), (src, labels)),
    }
    np_fns = {
        "logme": lambda i: np_logme(feats[i], labels[i], c),
        "hscore": lambda i: np_hscore(feats[i], labels[i], c),
        "leep": lambda i: np_leep(probs[i], labels[i], c),
        "nce": lambda i: np_nce(src[i], labels[i], z, c),
    }
    summary = {}
    print(f"{'metric':8s} {'jax tasks/s':>12s} {'numpy tasks/s':>14s} {'speed-up':>9s} "
          f"{'jax GFLOP/s':>12s} {'% peak':>7s} {'max rel diff':>13s}")
    for name, (fn, args) in jax_fns.items():
        args = tuple(jnp.asarray(a) for a in args)
        out = np.asarray(fn(*args))                      # compile + warm up
        t_jax = _time(lambda: fn(*args), repeats=2 if b * n * d < 2e8 else 1)
        t0 = _clock()
        ref = np.array([np_fns[name](i) for i in range(np_tasks)])
        t_np = (_clock() - t0) / np_tasks
        jax_tps, np_tps = b / t_jax, 1.0 / t_np
        rel = np.max(np.abs(out[:np_tasks] - ref) / np.maximum(np.abs(ref), 1e-12))
        if name in ("logme", "hscore", "leep"):
            gflops = _flops(name, n, d, c, z) * b / t_jax / 1e9
            rate = f"{gflops:12.1f} {100 * gflops / peak:6.1f}%"
        else:   # NCE is a histogram (memory/scatter bound): no meaningful FLOP rate
            rate = f"{'-':>12s} {'-':>7s}"
        print(f"{name:8s} {jax_tps:12.2f} {np_tps:14.2f} {jax_tps / np_tps:8.1f}x "
              f"{rate} {rel:13.2e}")
        summary[name] = {"jax_tasks_per_s": jax_tps, "numpy_tasks_per_s": np_tps,
                         "ratio": jax_tps / np_tps, "max_rel_diff": float(rel)}
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (seconds)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"jax {jax.__version__}, devices {jax.devices()}, pinned to core(s) {cores}, "
          f"OPENBLAS/OMP/MKL_NUM_THREADS=1, float32")
    peak = matmul_peak(512 if args.quick else 1536)
    print(f"single-thread jnp float32 matmul peak: {peak:.1f} GFLOP/s")
    out = {"peak_gflops": peak}
    if args.quick:
        out["batch"] = bench("label-generation batch (quick)", 16, 300, 256, 10, 100, 4, peak)
        out["large"] = bench("large task (quick)", 1, 1500, 512, 50, 1000, 1, peak)
    else:
        out["batch"] = bench("label-generation batch", 16, 1000, 1024, 20, 1000, 6, peak)
        out["large"] = bench("large task", 1, 5000, 2048, 100, 1000, 1, peak)
    if not args.quick:
        out["logme_limits"] = logme_limits(1000, 1024)
        lim = out["logme_limits"]
        print(f"\nLogME limits at N=1000, D=1024 (ms per task, one core): Gram {lim['gram_ms']:.1f}, "
              f"eigh with vectors {lim['eigh_ms']:.1f}, Householder tridiagonalisation alone "
              f"{lim['tridiagonal_ms']:.1f}, forming its Q {lim['householder_product_ms']:.1f}, "
              f"jnp.linalg.eigvalsh {lim['eigvalsh_ms']:.1f}")
    out["batch_shape"] = "16 tasks, N=1000, D=1024, C=20" if not args.quick else "16 tasks, N=300, D=256, C=10"
    if args.json:
        import json
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
