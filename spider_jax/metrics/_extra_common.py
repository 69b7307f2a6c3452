"""Shared pieces of the additional metrics (extra.py): dtype, weights, masked PCA.

Everything here is pure jnp and works on one task; callers vmap over tasks.
Padding convention (as in the whole package): ``w`` [N] is 1 for real examples
and 0 for padding; every statistic is a weighted sum, so padded rows never
contribute, and the number of examples is ``n = sum(w)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["as_arrays", "as_float", "weights", "onehot", "masked_pca"]


def as_arrays(x, labels, mask):
    """Lists / NumPy inputs as arrays (tracers pass through) so jit sees arrays, not pytrees."""
    return jnp.asarray(x), jnp.asarray(labels), (None if mask is None else jnp.asarray(mask))


def as_float(x):
    """``x`` as a floating array: float32 by default (float16 / ints upcast), float64 kept."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating) or jnp.finfo(x.dtype).bits < 32:
        x = x.astype(jnp.float32)
    return x


def weights(mask, n, dtype):
    """[N] example weights: ones if ``mask`` is None, else the 0/1 mask as ``dtype``."""
    return jnp.ones((n,), dtype) if mask is None else jnp.asarray(mask).astype(dtype)


def onehot(labels, num_classes, w):
    """[N, C] one-hot labels times the example weights (padded rows are zero)."""
    return jax.nn.one_hot(labels, num_classes, dtype=w.dtype) * w[:, None]


def _sign_fix(scores):
    """Flip each column so its entry of largest magnitude is positive (deterministic PCA)."""
    idx = jnp.argmax(jnp.abs(scores), axis=0)
    sign = jnp.sign(jnp.take_along_axis(scores, idx[None, :], axis=0))
    return scores * jnp.where(sign == 0, 1.0, sign).astype(scores.dtype)


def masked_pca(x, w, num_components):
    """PCA of the real rows of ``x`` by a symmetric eigendecomposition.

    The eigenproblem is solved on whichever of the covariance ``Xc^T Xc`` [D, D]
    or the Gram matrix ``Xc Xc^T`` [N, N] is smaller (a static choice), where
    ``Xc`` is ``x`` centred on the weighted mean with padded rows zeroed. Both
    give the same scores ``Xc V`` up to column signs, which are then fixed so
    the largest-magnitude score of each component is positive.

    Args:
      x: [N, D] features.
      w: [N] 0/1 example weights.
      num_components: static number of leading components P (<= min(N, D)).

    Returns:
      scores: [N, P] principal-component scores (padded rows are 0).
      variances: [P] eigenvalues of the scatter ``Xc^T Xc`` (descending, >= 0);
        divide by n for the sample variance.
      total: scalar ``trace(Xc^T Xc)`` (the sum of all eigenvalues).
    """
    n_rows, dim = x.shape
    n = jnp.sum(w)
    mean = (w @ x) / n
    xc = (x - mean[None, :]) * w[:, None]
    total = jnp.sum(xc * xc)
    if dim <= n_rows:
        evals, evecs = jnp.linalg.eigh(xc.T @ xc)
        evals = evals[::-1][:num_components]
        scores = xc @ evecs[:, ::-1][:, :num_components]
    else:
        evals, evecs = jnp.linalg.eigh(xc @ xc.T)
        evals = evals[::-1][:num_components]
        u = evecs[:, ::-1][:, :num_components]
        scores = u * jnp.sqrt(jnp.maximum(evals, 0.0))[None, :] * w[:, None]
    # Eigenvalues at rounding level belong to the null space (rank deficiency or
    # padded rows); their float32 "scores" would be noise of size sqrt(eps * max).
    tol = max(n_rows, dim) * jnp.finfo(x.dtype).eps * evals[0]
    keep = evals > tol
    evals = jnp.where(keep, evals, 0.0)
    scores = jnp.where(keep[None, :], scores, 0.0)
    return _sign_fix(scores), evals, total
