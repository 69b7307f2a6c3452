"""Scale normalisation at the entry of LogME and the H-Scores (jit-safe).

LogME, H-Score and the regularised H-Score do not depend on the overall scale of the
features in exact arithmetic:

* H-Score ``tr(cov(f)^+ cov(E[f|y]))``: ``f -> c f`` scales both covariances by c^2.
* Regularised H-Score: the Ledoit-Wolf shrinkage ``a = min(b2, d2) / d2`` is a ratio of
  two quantities that both scale by c^4, and ``cov_a^{-1} cov(E[f|y])`` is a ratio again.
* LogME: the marginal likelihood of ``y`` under ``w ~ N(0, 1/alpha)`` and features
  ``c F`` at ``(alpha, beta)`` equals the one under ``F`` at ``(alpha / c^2, beta)``,
  so the *maximum* evidence over (alpha, beta) is invariant.  The fixed-point
  iteration that approximates it is not: it starts at alpha = beta = 1 and stops
  after at most 11 steps, so its answer (and, in float32, whether it overflows:
  NaN at scales >= 1e10) depends on the scale.  Dividing F by a per-task scalar
  first makes the computed score a function of the feature *direction* only.

Not invariant (and not made so): per-column rescaling, adding a constant (LogME has no
bias term), or rescaling regression targets.

:func:`unit_rms` divides the features by ``s`` = the root mean square of their real
entries (uncentred), computed in two steps (max-abs first) so that neither the squares
nor their sum can overflow or underflow in float32 for any finite input.  All-zero
features are returned unchanged.  Padding rows (mask 0) do not enter ``s``.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["unit_rms"]


def unit_rms(features, mask):
    """``features / s`` with s the RMS of the real entries (see module docstring).

    Args:
      features: [N, D] float. mask: [N] float (1 = real example) or None.

    Returns:
      [N, D] features of the same dtype with RMS 1 over the real rows (unchanged
      when every real entry is zero).
    """
    x = jnp.asarray(features)
    w = jnp.ones((x.shape[0],), x.dtype) if mask is None else jnp.asarray(mask).astype(x.dtype)
    real = (w > 0)[:, None]
    big = jnp.max(jnp.where(real, jnp.abs(x), 0.0))
    big = jnp.where(big > 0, big, 1.0)
    y = x / big
    n_entries = jnp.maximum(jnp.sum(w), 1.0) * x.shape[1]
    rms = jnp.sqrt(jnp.sum(jnp.where(real, y * y, 0.0)) / n_entries)
    return y / jnp.where(rms > 0, rms, 1.0)

