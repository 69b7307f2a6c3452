"""CPU kernel of the ground-truth linear probe: stratified K-fold CV of a closed-form ridge
classifier for many (task, model) pairs, in NumPy/LAPACK, one pair per worker process.

Same protocol and the same numbers as the jitted ``spider_jax.groundtruth.cv_accuracy`` (the
accelerator path): inside fold k the features are standardised with the training rows' mean
and standard deviation (columns with sd <= 1e-6 get sd 1), the one-hot targets are centred,

    W(alpha) = (Z^T Z + alpha n I)^{-1} Z^T (Y - ybar),   predict argmax_c (z W + ybar)_c.

Only the algebra differs, chosen for a CPU core:

* dual (kernel) form when n_train < D: one [N, N] Gram per fold serves the training block
  K and the test block; the test scores are K_te (K + alpha n I)^{-1} (Y - ybar);
* one float32 Cholesky solve per alpha (LAPACK sposv). At the default six
  alphas this costs less than one eigendecomposition (ssyevd of a 400 x 400 Gram takes as
  long as ~15 Cholesky solves here), so it is the faster exact way to serve the grid;
  if a shifted Gram is not positive definite in float32 (a near-singular Gram at a tiny
  alpha), that alpha falls back to a float64 eigendecomposition with the rounding-negative
  eigenvalues clipped to zero;
* each fold's training rows are centred on their own mean and standardised before any
  product (two passes, float64 accumulation). An earlier version took the moments from
  per-fold sums (``E[x^2] - mu^2``) and centred with a rank-1 correction of the Gram: both
  cancel catastrophically on a column that is nearly constant in the training rows but
  far off in a test row (dead ReLU units of classifier-head taps with one spike), which
  changed the accuracy of about 2% of small real pool tasks by up to 0.25 against the
  float64 reference (tests/test_groundtruth.py::test_ridge_cv_near_constant_columns).

Why not the jitted path on a CPU: its per-fold eigendecomposition costs ~15 Cholesky
solves, and on the 2-core machine this was tuned on one OpenBLAS thread per process beats
any threading inside one process (two single-threaded processes each kept ~175 GFLOP/s of
sgemm; two threads of one process reached 187 together; XLA's multi-threaded dot 82).
So pairs are spread over worker processes (spawned; they import NumPy/SciPy only)
with one BLAS thread each. This module never imports JAX. As with any spawned
``multiprocessing`` pool, a script that calls it with ``workers > 1`` needs the
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os

import numpy as np
from scipy.linalg import lapack

_LIMITER = None  # keeps the worker's BLAS thread limit alive


def stratified_folds(labels: np.ndarray, num_folds: int, seed: int) -> np.ndarray:
    """Fold id in [0, num_folds) per example, each class spread evenly over the folds.

    Examples are shuffled within each class (numpy Generator(seed)), classes are laid
    end to end, and the i-th example of that order goes to fold i mod K.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)])
    folds = np.empty(labels.shape[0], np.int32)
    folds[order] = np.arange(order.size) % num_folds
    return folds


def validate_pair(i, x, y, num_classes, num_folds):
    """Raises ValueError naming pair ``i`` for labels out of range, too-small classes or
    non-finite features."""
    y = np.asarray(y)
    if y.ndim != 1 or np.ndim(x) != 2 or np.shape(x)[0] != y.shape[0]:
        raise ValueError(f"pair {i}: features {np.shape(x)} and labels {y.shape} must be [N, D] and [N]")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"pair {i}: labels outside [0, {num_classes})")
    if np.bincount(y, minlength=num_classes).min() < num_folds:
        raise ValueError(f"pair {i}: every class needs >= {num_folds} examples for {num_folds}-fold CV")
    if not np.all(np.isfinite(np.asarray(x, np.float32))):
        raise ValueError(f"pair {i}: features contain NaN or Inf")


def _solve_clipped(k, rhs, shift):
    """(K + shift I)^{-1} rhs in float64 with K's negative (rounding) eigenvalues clipped."""
    lam, vecs = np.linalg.eigh(k.astype(np.float64))
    return (vecs @ ((vecs.T @ rhs) / (np.maximum(lam, 0.0) + shift)[:, None])).astype(np.float32)


def ridge_cv_pair(x, y, num_classes, fold_ids, alphas):
    """Test accuracy of every seed, fold and alpha for one (task, model) pair.

    Args:
      x: [N, D] features (real rows only).
      y: [N] int labels in [0, num_classes).
      num_classes: C.
      fold_ids: [S, N] fold of each example for each of S seeds (values 0..K-1).
      alphas: [A] ridge strengths relative to the number of training rows.
    Returns:
      [S, K, A] float64 accuracies.
    """
    xc = np.array(x, np.float32)
    fold_ids = np.asarray(fold_ids)
    n_all, dim = xc.shape
    num_folds = int(fold_ids.max()) + 1
    xc -= xc.mean(0, dtype=np.float64).astype(np.float32)  # fold means are then small
    onehot = np.eye(num_classes, dtype=np.float32)[np.asarray(y)]
    out = np.zeros((fold_ids.shape[0], num_folds, len(alphas)))
    z = np.empty((n_all, dim), np.float32)  # this fold's rows, training rows first
    for s, folds in enumerate(fold_ids):
        counts = np.bincount(folds, minlength=num_folds)
        order = np.argsort(folds, kind="stable")  # rows grouped by fold
        xs, ys, hot = xc[order], np.asarray(y)[order], onehot[order]
        ends = np.cumsum(counts)
        for k in range(num_folds):
            lo, hi = ends[k] - counts[k], ends[k]
            n = n_all - counts[k]
            # the training rows' moments in two passes (centred on their own mean): a
            # column nearly constant in the training rows but with a far-off test row has
            # a tiny variance that E[x^2] - mu^2 would lose to cancellation
            z[:lo], z[lo:n], z[n:] = xs[:lo], xs[hi:], xs[lo:hi]
            z -= z[:n].mean(0, dtype=np.float64).astype(np.float32)  # centred before any
            sd = np.sqrt(np.einsum("ij,ij->j", z[:n], z[:n], dtype=np.float64) / n)  # product
            z *= (1.0 / np.where(sd > 1e-6, sd, 1.0)).astype(np.float32)  # constant cols -> 0
            y_train = np.concatenate([hot[:lo], hot[hi:]])
            ybar = y_train.mean(0)
            y_train = np.asfortranarray(y_train - ybar)
            if n < dim:  # dual form: [N, N] Gram (numpy runs z @ z.T as one syrk), training block first
                gram = z @ z.T
                k_train, k_test, rhs = gram[:n, :n], gram[n:, :n], y_train
            else:  # primal form
                z_train = z[:n]
                k_train, k_test, rhs = z_train.T @ z_train, z[n:], z_train.T @ y_train
            shifted = np.empty_like(k_train)
            diag = k_train.diagonal().copy()
            y_test = ys[lo:hi]
            for a, alpha in enumerate(alphas):
                np.copyto(shifted, k_train)
                np.fill_diagonal(shifted, diag + np.float32(alpha * n))
                # K is symmetric: the C-order buffer's transpose is the Fortran array LAPACK wants
                _, coef, info = lapack.sposv(shifted.T, rhs, lower=1, overwrite_a=1)
                if info != 0:
                    coef = _solve_clipped(k_train, rhs, alpha * n)
                pred = (k_test @ coef + ybar).argmax(1)
                out[s, k, a] = np.count_nonzero(pred == y_test) / (hi - lo)
    return out


def _pair_job(args):
    x, y, num_classes, num_folds, seeds, alphas = args
    folds = np.stack([stratified_folds(y, num_folds, s) for s in seeds])
    return ridge_cv_pair(x, y, num_classes, folds, alphas)


def _init_worker():
    global _LIMITER
    import threadpoolctl

    _LIMITER = threadpoolctl.threadpool_limits(1)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cv_accuracy_pairs(pairs, *, num_folds=5, seeds=(0, 1), alphas=(1.0,), workers=None, progress=None):
    """CV accuracies [P, S, K, A] of many (features [N_i, D_i], labels [N_i], C_i) pairs.

    Pairs run one per worker process (``workers`` processes, default: the usable cores,
    or this process alone when the whole job is under ~2 s), each with one BLAS thread. ``progress(n)`` is called as pairs
    finish. Raises ValueError (naming the pair) on bad input before any work starts.
    """
    import threadpoolctl

    pairs = list(pairs)
    for i, (x, y, c) in enumerate(pairs):
        validate_pair(i, x, y, c, num_folds)
    out = np.zeros((len(pairs), len(seeds), num_folds, len(alphas)))
    jobs = [(np.asarray(x, np.float32), np.asarray(y, np.int64), int(c), num_folds, tuple(seeds),
             tuple(float(a) for a in alphas)) for x, y, c in pairs]
    if workers is None:
        # Starting processes costs ~1 s: small jobs (under ~2 s of one core) stay here.
        work = sum(len(seeds) * num_folds * x.shape[0] ** 2 * min(x.shape) * 2.0 for x, *_ in jobs)
        workers = default_workers() if work > 2e11 else 1
    workers = min(workers, max(len(jobs), 1))
    if workers <= 1:
        with threadpoolctl.threadpool_limits(1):
            for i, job in enumerate(jobs):
                out[i] = _pair_job(job)
                if progress is not None:
                    progress(1)
        return out
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as ex:
        futures = {ex.submit(_pair_job, job): i for i, job in enumerate(jobs)}
        for fut in concurrent.futures.as_completed(futures):
            out[futures[fut]] = fut.result()
            if progress is not None:
                progress(1)
    return out
