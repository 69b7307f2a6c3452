"""Probe: LogME without eigenvectors (tridiagonal reduction + tridiagonal solves).

Not library code: measures whether avoiding the eigenvector part of ``eigh`` can lift
batched LogME (N = 1000, D = 1024, C = 20) towards 5x the NumPy SVD baseline.  Path:
``F F^T = Q T Q^T`` (``lax.linalg.tridiagonal``), ``z = Q^T Y`` (``householder_product``),
spectrum of T by ``jax.scipy.linalg.eigh_tridiagonal(eigvals_only=True)``; in the fixed
point ``w = (alpha I + beta T)^{-1} z`` (``lax.linalg.tridiagonal_solve``),
``||F m - y||^2 = alpha^2 ||w||^2`` and ``||m||^2 = beta^2 w^T T w``.  Caveat before
adopting it: ``w^T T w`` is a mixed-sign sum (``||F^T Q w||^2`` would be the
cancellation-free form, at ~80 MFLOP per iteration and task).

Prints the agreement with ``metrics.logme`` and with float64 NumPy LogME, and ms/task of
both paths on one core.  Run::

    python benchmarks/logme_tridiagonal_probe.py
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.metrics_speed import np_logme  # noqa: E402  (pins to one core)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.scipy.linalg as jsl  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from spider_jax import metrics  # noqa: E402


def tri_logme(f, labels, C):
    n, d = f.shape
    Y = jax.nn.one_hot(labels, C, dtype=f.dtype)
    G = f @ f.T
    arr, dd, ee, taus = lax.linalg.tridiagonal(G)
    Qp = lax.linalg.householder_product(arr[1:, :-1], taus)
    z = jnp.concatenate([Y[:1], Qp.T @ Y[1:]], 0)            # [N, C] = Q^T Y
    s = jsl.eigh_tridiagonal(dd, ee, eigvals_only=True)
    eps = jnp.finfo(f.dtype).eps
    s = jnp.where(s > jnp.max(s) * eps, s, 0.0)
    nonzero = s > 0
    n_free = jnp.maximum(n - jnp.sum(nonzero), 0.0)
    tiny = jnp.finfo(f.dtype).tiny
    def stats(alpha, beta):
        den = alpha[None] + beta[None] * s[:, None]
        gamma = jnp.sum(beta[None] * s[:, None] / den, 0)
        nmg = n_free + jnp.sum(jnp.where(nonzero[:, None], alpha[None] / den, 0.0), 0)
        # w = (a I + b T)^-1 z per class
        dl = jnp.concatenate([jnp.zeros((1,)), ee])[None] * beta[:, None]
        du = jnp.concatenate([ee, jnp.zeros((1,))])[None] * beta[:, None]
        dg = alpha[:, None] + beta[:, None] * dd[None]
        w = lax.linalg.tridiagonal_solve(dl, dg, du, z.T[:, :, None])[..., 0]   # [C, N]
        tw = dd[None] * w + jnp.concatenate([ee[None] * w[:, 1:], jnp.zeros((C, 1))], 1) \
             + jnp.concatenate([jnp.zeros((C, 1)), ee[None] * w[:, :-1]], 1)
        m2 = beta ** 2 * jnp.sum(w * tw, 1)
        res = alpha ** 2 * jnp.sum(w * w, 1)
        return gamma, nmg, m2, res
    def body(_, st):
        alpha, beta, m2, res, active = st
        gamma, nmg, m2n, resn = stats(alpha, beta)
        an = gamma / jnp.maximum(m2n, tiny); bn = nmg / jnp.maximum(resn, tiny)
        done = jnp.abs(an / bn - alpha / beta) / (alpha / beta) <= 1e-3
        u = lambda a, b: jnp.where(active, a, b)
        return u(an, alpha), u(bn, beta), u(m2n, m2), u(resn, res), active & ~done
    one = jnp.ones((C,))
    alpha, beta, m2, res, _ = lax.fori_loop(0, 11, body, (one, one, 0 * one, 0 * one, one > 0))
    logdet = jnp.sum(jnp.log(alpha[None] + beta[None] * s[:, None]), 0) + (d - n) * jnp.log(alpha)
    ev = d / 2 * jnp.log(alpha) + n / 2 * jnp.log(beta) - 0.5 * logdet - beta / 2 * res - alpha / 2 * m2 - n / 2 * jnp.log(2 * jnp.pi)
    return jnp.mean(ev / n)

B, N, D, C = 8, 1000, 1024, 20
rng = np.random.default_rng(0)
lab = rng.integers(0, C, size=(B, N)).astype(np.int32)
cen = rng.normal(size=(B, C, D)).astype(np.float32)
F = np.maximum(cen[np.arange(B)[:, None], lab] + rng.normal(size=(B, N, D)).astype(np.float32), 0)
F, lab = jnp.asarray(F), jnp.asarray(lab)
tri = jax.jit(jax.vmap(lambda f, y: tri_logme(f, y, C)))
cur = jax.jit(jax.vmap(lambda f, y: metrics.logme(f, y, num_classes=C)))
a = np.asarray(tri(F, lab)); b = np.asarray(cur(F, lab))
ref = np.array([np_logme(np.asarray(F[i], np.float64), np.asarray(lab[i]), C) for i in range(2)])
print("tri vs cur max rel", np.max(np.abs(a - b) / np.abs(b)), "tri vs f64", np.abs(a[:2] - ref) / np.abs(ref), "cur vs f64", np.abs(b[:2] - ref) / np.abs(ref))
for name, fn in (("tridiagonal path", tri), ("current eigh path", cur)):
    best = 1e9
    for _ in range(3):
        t0 = time.perf_counter(); jax.block_until_ready(fn(F, lab)); best = min(best, time.perf_counter() - t0)
    print(f"{name}: {best / B * 1e3:.1f} ms/task")
