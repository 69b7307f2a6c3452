"""LogME: log maximum evidence of a Bayesian linear model on frozen features.

You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning" (ICML 2021) and "Ranking and Tuning Pre-trained Models" (JMLR 2022),
fixed-point version. For features ``F`` (``N x D``) and one target ``y`` (``N``),
with prior ``w ~ N(0, 1/alpha I)`` and noise ``y|F,w ~ N(Fw, 1/beta)``::

    L(alpha, beta) = D/2 log alpha + N/2 log beta - N/2 log 2pi
                     - beta/2 ||F m - y||^2 - alpha/2 ||m||^2 - 1/2 log|A|,
    A = alpha I + beta F^T F,  m = beta A^{-1} F^T y.

alpha and beta are found by the fixed-point iteration (start alpha = beta = 1,
at most 11 steps, stop when |lambda' - lambda| / lambda <= 1e-3, lambda = alpha/beta)::

    gamma = sum_i beta s_i / (alpha + beta s_i),   s = eigenvalues of F^T F
    alpha <- gamma / ||m||^2,   beta <- (N - gamma) / ||F m - y||^2

and the score is L / N at the final (alpha, beta) with the last m (as in the
published code). Classification uses one-vs-rest targets ``y_c = 1[label = c]``
and averages L / N over classes.

Implementation (all classes share one spectrum; no per-class decomposition, no SVD):

* Eigenvalues below ``eps * max(s)`` (Gram path) or ``sqrt(max(N, D)) * eps * max(s)``
  (covariance path, where the pseudo-inverse needs them dropped) are set to zero,
  and ``N - gamma`` is evaluated as ``(N - #nonzero) + sum alpha / (alpha + beta s_i)`` so it keeps
  its precision when gamma approaches N (N < D with separable classes).
* ``N <= D`` (Gram path): ``F F^T = U diag(s) U^T`` (N x N) and ``p = U^T y``.
  Then ``||F m - y||^2 = sum_i p_i^2 (alpha / (alpha + beta s_i))^2`` and
  ``||m||^2 = sum_i beta^2 s_i p_i^2 / (alpha + beta s_i)^2``: sums of
  non-negative terms, so nothing cancels even when F fits y exactly (N < D).
* ``N > D`` (covariance path): ``F^T F = V diag(s) V^T`` (D x D), ``z = V^T F^T y``,
  ``p_i^2 = z_i^2 / s_i`` on the numerically non-zero spectrum and the residual
  outside the column space ``r0 = y - F (F^T F)^+ F^T y`` is formed as a vector
  (not as ``||y||^2 - sum p_i^2``, which cancels in float32 when padding pushes
  the array size N above D while the real N is below it).
* ``log|A| = sum_{i<=K} log(alpha + beta s_i) + (D - K) log alpha``: the D - K
  eigenvalues of F^T F missing from an N x N spectrum are zero and still count
  (the bug of thuml/LogME issue #23 drops them).

Scale: the *maximum* evidence is invariant to ``F -> c F`` (alpha absorbs c^2), but the
fixed point above starts at alpha = beta = 1 and its float32 arithmetic overflows for
large c.  So :func:`logme` and :func:`logme_regression` first divide F by the RMS of its
real entries (``_scale.unit_rms``, a thin step at the jit entry): the score is then the
same for F and c F (float32, c in 1e-10..1e10) and is the fixed-point evidence of the
unit-RMS features.  Not invariant: per-column scales, shifts (no bias term) and the
scale of regression targets.  Features with an all-zero spectrum (all zero on the real
rows) score the evidence of the noise-only model (the alpha -> inf limit,
``1/2 log beta - 1/2 - 1/2 log 2pi`` with ``beta = N / ||y||^2``), never NaN; no
features can score below it.

Padding: masked rows of F and y are zeroed and N in the formula is the number of
real examples, so padding never changes the score. Classes absent from the real
examples are skipped (the mean runs over present classes only).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from spider_jax.metrics import _scale, _validate

__all__ = ["logme", "logme_regression", "logme_from_targets", "logme_from_gram"]

MAX_ITERS = 11
TOL = 1e-3


def _spectrum(features, targets):
    """Shared spectrum and target projections.

    Args:
      features: [N, D] float, masked rows already zero.
      targets: [N, T] float, masked rows already zero.

    Returns:
      s: [K] eigenvalues (>= 0; zeros for the null space) with K = min(N, D),
      q2: [K, T] squared projections p_i^2 of each target on the left singular
        directions, r0: [T] squared residual outside the column space of F.
    """
    n, d = features.shape
    dtype = features.dtype
    eps = jnp.finfo(dtype).eps
    if n <= d:
        return _gram_spectrum(features @ features.T, targets)
    cov = features.T @ features
    s, v = jnp.linalg.eigh(cov)
    # The pseudo-inverse needs the noise eigenvalues of a rank-deficient F^T F
    # (about eps * max(s)) dropped: z^2 / s is garbage there.
    keep = s > jnp.max(s) * eps * max(n, d) ** 0.5
    s = jnp.where(keep, s, 0.0)
    inv_s = jnp.where(keep, 1.0 / jnp.where(keep, s, 1.0), 0.0)
    z = v.T @ (features.T @ targets)                       # [D, T]
    z = jnp.where(keep[:, None], z, 0.0)
    w0 = v @ (z * inv_s[:, None])                          # least-squares weights
    resid = targets - features @ w0
    return s, z * z * inv_s[:, None], jnp.sum(resid * resid, axis=0)


def _gram_spectrum(gram, targets):
    """``_spectrum`` of the N x N path from the Gram ``F F^T`` (masked rows zero)."""
    s, u = jnp.linalg.eigh(gram)
    # Numerical zeros only (padding rows, rank deficiency): a small eigenvalue
    # wrongly kept is harmless here, a real one wrongly dropped is not.
    s = jnp.where(s > jnp.max(s) * jnp.finfo(gram.dtype).eps, s, 0.0)
    p = u.T @ targets
    return s, p * p, jnp.zeros((targets.shape[1],), gram.dtype)


def _fixed_point(s, q2, r0, n_real, dim):
    """Vectorised fixed-point evidence iteration for T targets.

    Args:
      s: [K] eigenvalues, q2: [K, T], r0: [T], n_real: scalar real N, dim: static D.

    Returns:
      [T] evidence per example L / N.
    """
    dtype = q2.dtype
    t = q2.shape[1]
    tiny = jnp.finfo(dtype).tiny
    big = jnp.finfo(dtype).max ** 0.25
    n_missing = dim - s.shape[0]                           # zero eigenvalues not in s
    s_ = s[:, None]

    nonzero = s_ > 0
    # N - gamma = (N - #nonzero) + sum_{s_i > 0} alpha / (alpha + beta s_i): an exact
    # integer plus positive terms, so it stays accurate when gamma -> N (N < D, F fits y).
    n_free = jnp.maximum(n_real - jnp.sum(nonzero).astype(s.dtype), 0.0)

    def stats(alpha, beta):
        a, b = alpha[None, :], beta[None, :]
        den = a + b * s_                                   # [K, T]
        gamma = jnp.sum(b * s_ / den, axis=0)
        n_minus_gamma = n_free + jnp.sum(jnp.where(nonzero, a / den, 0.0), axis=0)
        m2 = jnp.sum(b * b * s_ * q2 / (den * den), axis=0)
        res = r0 + jnp.sum(q2 * (a / den) ** 2, axis=0)
        return gamma, n_minus_gamma, m2, res

    def body(_, state):
        alpha, beta, m2, res, active = state
        gamma, n_minus_gamma, m2_new, res_new = stats(alpha, beta)
        alpha_new = gamma / jnp.maximum(m2_new, tiny)
        beta_new = n_minus_gamma / jnp.maximum(res_new, tiny)
        # A target the features interpolate (N <= rank F, e.g. 20 examples of a 1280-wide
        # PTM) has no finite optimum: beta grows without bound and overflows to NaN,
        # which would rank the PTM last. Stop at the last iterate that keeps beta below
        # max float ** (1/4) (beta is the targets' noise precision: one-hot or z-scored
        # targets, so this is a noise variance ~1e-9 in float32, and beta^2 s q2 cannot
        # overflow); the evidence there is large and finite, as it should be for a PTM
        # whose features fit the labels exactly.
        ok = (beta_new < big) & jnp.isfinite(alpha_new)
        lam, lam_new = alpha / beta, alpha_new / beta_new
        done = (jnp.abs(lam_new - lam) / lam <= TOL) | ~ok
        take = active & ok
        upd = lambda new, old: jnp.where(take, new, old)  # noqa: E731
        return (upd(alpha_new, alpha), upd(beta_new, beta), upd(m2_new, m2),
                upd(res_new, res), active & ~done)

    one = jnp.ones((t,), dtype)
    init = (one, one, jnp.zeros((t,), dtype), jnp.zeros((t,), dtype), jnp.ones((t,), bool))
    alpha, beta, m2, res, _ = jax.lax.fori_loop(0, MAX_ITERS, body, init)
    logdet = (jnp.sum(jnp.log(alpha[None, :] + beta[None, :] * s_), axis=0)
              + n_missing * jnp.log(alpha))
    evidence = (dim / 2.0 * jnp.log(alpha) + n_real / 2.0 * jnp.log(beta)
                - 0.5 * logdet - beta / 2.0 * res - alpha / 2.0 * m2
                - n_real / 2.0 * jnp.log(2.0 * jnp.pi))
    return evidence / n_real


def _with_null_fallback(ev, s, q2, r0, n_real):
    """``ev`` where the spectrum has a non-zero eigenvalue, else the noise-only evidence.

    With F = 0 on the real rows the fixed point divides 0 by 0; the limit alpha -> inf
    of the evidence is that of ``y ~ N(0, 1/beta)`` at ``beta = N / ||y||^2``.
    """
    y2 = jnp.maximum(r0 + jnp.sum(q2, axis=0), jnp.finfo(q2.dtype).tiny)      # ||y||^2
    null = 0.5 * jnp.log(n_real / y2) - 0.5 - 0.5 * jnp.log(2.0 * jnp.pi)
    return jnp.where(jnp.max(s) > 0, ev, null)


def _mask_or_ones(mask, n, dtype):
    if mask is None:
        return jnp.ones((n,), dtype)
    return jnp.asarray(mask).astype(dtype)


def logme_from_targets(features, targets, mask, weights):
    """Jittable core: weighted mean of per-target LogME evidence.

    Args:
      features: [N, D] float. targets: [N, T] float. mask: [N] float (1 = real).
      weights: [T] float, weight of each target in the mean (0 = skip).

    Returns:
      scalar ``sum_t w_t L_t / N / sum_t w_t``.
    """
    features = features * mask[:, None]
    targets = targets * mask[:, None]
    n_real = jnp.sum(mask)
    s, q2, r0 = _spectrum(features, targets)
    ev = _with_null_fallback(_fixed_point(s, q2, r0, n_real, features.shape[1]), s, q2, r0,
                             n_real)
    ev = jnp.where(weights > 0, ev, 0.0)
    return jnp.sum(weights * ev) / jnp.maximum(jnp.sum(weights), 1.0)


def logme_from_gram(gram, targets, n_real, weights, dim):
    """Jittable core on a precomputed Gram (N <= D): as :func:`logme_from_targets`.

    Args:
      gram: [N, N] ``F F^T`` of the masked features. targets: [N, T], zero on padding.
      n_real: scalar real N. weights: [T] (0 = skip). dim: static D (>= N).

    Returns:
      scalar weighted mean of L_t / N.
    """
    s, q2, r0 = _gram_spectrum(gram, targets)
    ev = _with_null_fallback(_fixed_point(s, q2, r0, n_real, dim), s, q2, r0, n_real)
    ev = jnp.where(weights > 0, ev, 0.0)
    return jnp.sum(weights * ev) / jnp.maximum(jnp.sum(weights), 1.0)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _logme_jit(features, labels, mask, *, num_classes):
    features = _validate.as_float(features)
    mask = _mask_or_ones(mask, features.shape[0], features.dtype)
    features = _scale.unit_rms(features, mask)
    targets = jax.nn.one_hot(labels, num_classes, dtype=features.dtype) * mask[:, None]
    present = (jnp.sum(targets, axis=0) > 0).astype(features.dtype)
    return logme_from_targets(features, targets, mask, present)


@jax.jit
def _logme_regression_jit(features, targets, mask):
    features = _validate.as_float(features)
    targets = jnp.asarray(targets).astype(features.dtype)
    if targets.ndim == 1:
        targets = targets[:, None]
    mask = _mask_or_ones(mask, features.shape[0], features.dtype)
    features = _scale.unit_rms(features, mask)
    weights = jnp.ones((targets.shape[1],), features.dtype)
    return logme_from_targets(features, targets, mask, weights)


def logme(features, labels, *, num_classes, mask=None):
    """LogME for classification (higher = more transferable).

    Mean over classes present among the real examples of the per-example log
    evidence ``L(alpha*, beta*) / N`` of one-vs-rest targets ``y_c = 1[label = c]``
    (formula and iteration in the module docstring; You et al., ICML 2021 / JMLR 2022).
    Classes in ``[0, num_classes)`` absent from the task (or only present at
    masked positions) are skipped, never NaN.  Invariant to the feature scale
    (``F -> c F``, see the module docstring); constant features warn
    (RuntimeWarning) and score the noise-only evidence.

    Args:
      features: [N, D] features of the target task (penultimate layer of the PTM).
      labels: [N] int labels in ``[0, num_classes)``.
      num_classes: static number of classes C.
      mask: optional [N] 0/1, 1 = real example; padded rows do not change the score.

    Returns:
      scalar float (dtype of the features; float32 for integer features).

    Raises:
      ValueError: NaN/Inf features, labels out of range, mismatched lengths,
        fewer than 2 real examples or fewer than 2 classes present.
    """
    _validate.validate_classification(features, labels, num_classes=num_classes, mask=mask)
    _validate.warn_if_constant(features, mask, "logme")
    return _logme_jit(features, labels, mask, num_classes=num_classes)


def logme_regression(features, targets, *, mask=None):
    """LogME for regression: mean over target columns of ``L(alpha*, beta*) / N``.

    Same evidence and fixed-point iteration as :func:`logme`, with real-valued
    targets instead of one-vs-rest indicators (targets are used as given, not
    standardised).

    Args:
      features: [N, D] features.
      targets: [N] or [N, R] real targets.
      mask: optional [N] 0/1, 1 = real example.

    Returns:
      scalar float.

    Raises:
      ValueError: NaN/Inf inputs, mismatched lengths, fewer than 2 real examples.
    """
    n = _validate.check_features(features, "features")
    _validate.check_targets(targets, n, "targets")
    _validate.check_num_real(_validate.check_mask(mask, n), 2)
    _validate.warn_if_constant(features, mask, "logme_regression")
    return _logme_regression_jit(features, targets, mask)
