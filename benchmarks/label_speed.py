"""Label generation speed: batched JAX (4 metrics + Copeland) vs one call at a time in NumPy.

Workload (SPEC): 1,000 tasks x 10 PTMs, N = 500 examples, D = 1280, C = 10 classes,
1000 source classes (LEEP, NCE).  Both sides compute regularized (Ledoit-Wolf) H-Score,
NCE, LEEP and LogME, then Copeland aggregation per task, on the same float32 inputs,
single-threaded, in this one process.

* JAX: ``spider_jax.label.label_batch`` on chunks of ``--chunk`` tasks (vmap over tasks,
  one PTM at a time; LogME and the shrinkage H-Score share one Gram per (task, PTM) and
  the H-Score is an N x N Cholesky solve, no eigh; compiled once, the warm-up chunk is
  not timed).
* NumPy: the same algorithms called once per (task, PTM): LogME as published (thin SVD,
  Python loop over classes; ``benchmarks/metrics_speed.np_logme``), Ledoit-Wolf H-Score
  (np.cov-style covariance, the vectorised Ledoit-Wolf shrinkage, np.linalg.inv), LEEP
  and NCE with per-class loops (``metrics_speed.np_leep`` / ``np_nce``), Copeland with
  a double loop.

Task data is generated outside the timed regions.  Both sides are timed on subsets
(``--jax_tasks`` tasks, ``--np_pairs`` (task, PTM) pairs) and extrapolated linearly to
the full 1,000 x 10 workload (every task has the same shape, so cost per task is flat);
the printout says so.

Run::

    python benchmarks/label_speed.py [--quick]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Importing metrics_speed pins this process to one core and single-threaded BLAS/XLA.
from benchmarks.metrics_speed import np_leep, np_logme, np_nce  # noqa: E402

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from spider_jax import label  # noqa: E402
from spider_jax.sampler import Zoo  # noqa: E402


def np_regularized_hscore(f, y, num_classes):
    """H-Score with the Ledoit-Wolf shrunk feature covariance (straightforward NumPy)."""
    x = f - f.mean(0)
    n, p = x.shape
    s = x.T @ x / n
    mu = np.trace(s) / p
    d2 = (np.sum(s * s) - 2 * mu * np.trace(s) + mu * mu * p) / p
    b2 = (np.sum(np.sum(x * x, 1) ** 2) / n - np.sum(s * s)) / n / p
    a = 0.0 if d2 == 0 else min(b2, d2) / d2
    cov = (1 - a) * s + a * mu * np.eye(p, dtype=s.dtype)
    g = np.zeros_like(x)
    for c in range(num_classes):
        sel = y == c
        if sel.any():
            g[sel] = x[sel].mean(0)
    cov_g = g.T @ g / n
    return float(np.trace(np.linalg.inv(cov) @ ((1 - a) * cov_g)))


def np_copeland(scores):
    a, m = scores.shape
    out = np.zeros(m)
    for i in range(m):
        for j in range(m):
            if i != j:
                w = np.sum(scores[:, i] > scores[:, j]) - np.sum(scores[:, i] < scores[:, j])
                out[i] += 1.0 if w > 0 else 0.5 if w == 0 else 0.0
    return out


def make_chunk(rng, t, m, n, d, c, s):
    """t tasks x m PTMs of class-structured features and source-head probabilities."""
    labels = np.tile(np.repeat(np.arange(c), n // c), (t, 1)).astype(np.int32)
    feats, probs = [], []
    for j in range(m):
        centres = rng.normal(size=(t, c, d)).astype(np.float32) * (0.3 + 0.1 * j)
        f = centres[np.arange(t)[:, None], labels] + rng.normal(size=(t, n, d)).astype(np.float32)
        feats.append(np.maximum(f, 0.0))
        logits = rng.normal(size=(t, n, s)).astype(np.float32) * 2
        logits[np.arange(t)[:, None], np.arange(n)[None, :], labels * 7 + j] += 3.0
        p = np.exp(logits - logits.max(-1, keepdims=True))
        probs.append(p / p.sum(-1, keepdims=True))
    return {"features": feats, "source_probs": probs, "labels": labels,
            "example_mask": np.ones((t, n), bool)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--d", type=int, default=1280)
    ap.add_argument("--c", type=int, default=10)
    ap.add_argument("--s", type=int, default=1000)
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--jax_tasks", type=int, default=48, help="tasks timed on the JAX side")
    ap.add_argument("--np_pairs", type=int, default=12, help="(task, PTM) pairs timed in NumPy")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    if args.quick:
        args.jax_tasks, args.np_pairs, args.d, args.n = 16, 4, 256, 200
    m, n, d, c, s = args.models, args.n, args.d, args.c, args.s
    zoo = Zoo(models=tuple(f"m{i}" for i in range(m)), dims=(d,) * m,
              has_source_head=(True,) * m, num_source_classes=(s,) * m, psi_dim=8,
              modality="image")
    rng = np.random.default_rng(0)

    # JAX: warm-up (compile) on one chunk, then time whole chunks.
    chunk = make_chunk(rng, args.chunk, m, n, d, c, s)
    t0 = time.perf_counter()
    label.label_batch(chunk, zoo, num_classes=c, hscore="regularized")
    compile_s = time.perf_counter() - t0
    jax_s, jax_done, jax_scores = 0.0, 0, None
    while jax_done < args.jax_tasks:
        chunk = make_chunk(rng, args.chunk, m, n, d, c, s)
        t0 = time.perf_counter()
        jax_scores, jax_agg = label.label_batch(chunk, zoo, num_classes=c, hscore="regularized")
        jax_s += time.perf_counter() - t0
        jax_done += args.chunk
    jax_total = jax_s / jax_done * args.tasks

    # NumPy: one (task, PTM) at a time, on the last JAX chunk (also a cross-check).
    np_s, pairs, worst = 0.0, 0, 0.0
    np_scores = np.full((args.chunk, 4, m), np.nan)
    for pair in range(args.np_pairs):
        t, j = divmod(pair, m)
        t %= args.chunk
        f, p = chunk["features"][j][t], chunk["source_probs"][j][t]
        y = chunk["labels"][t]
        t0 = time.perf_counter()
        row = [np_regularized_hscore(f, y, c), np_nce(p.argmax(-1), y, s, c),
               np_leep(p, y, c), np_logme(f, y, c)]
        np_s += time.perf_counter() - t0
        pairs += 1
        np_scores[t, :, j] = row
        ok = ~np.isnan(np_scores[t, :, j])
        rel = np.abs(np_scores[t, ok, j] - jax_scores[t, ok, j]) / np.maximum(
            np.abs(np_scores[t, ok, j]), 1e-6)
        worst = max(worst, float(rel.max()))
    t0 = time.perf_counter()
    for _ in range(args.chunk):
        np_copeland(jax_scores[0])
    cop_s = (time.perf_counter() - t0) / args.chunk
    np_total = np_s / pairs * args.tasks * m + cop_s * args.tasks

    print(f"label speed: {args.tasks} tasks x {m} PTMs, N={n}, D={d}, C={c}, S={s} "
          f"(4 metrics: regularized H-Score, NCE, LEEP, LogME + Copeland), 1 thread")
    print(f"  JAX   : {jax_s:.2f}s for {jax_done} tasks (compile {compile_s:.1f}s, not counted)"
          f" -> {jax_total:.1f}s for {args.tasks} tasks (extrapolated)")
    print(f"  NumPy : {np_s:.2f}s for {pairs} (task, PTM) pairs + Copeland {cop_s * 1e3:.2f} ms/task"
          f" -> {np_total:.1f}s for {args.tasks * m} pairs (extrapolated)")
    print(f"  speed-up: {np_total / jax_total:.1f}x   (max relative metric difference "
          f"JAX vs NumPy on the checked pairs: {worst:.2e})")
    if args.json:
        import json
        with open(args.json, "w") as fh:
            json.dump({"jax_seconds": jax_total, "numpy_seconds": np_total, "ratio": np_total / jax_total,
                       "max_rel_diff": worst, "tasks": args.tasks, "models": m,
                       "shape": f"N={n}, D={d}, C={c}, S={s}"}, fh, indent=1)


if __name__ == "__main__":
    main()
