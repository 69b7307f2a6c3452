"""H-Score and its Ledoit-Wolf regularised variant.

* H-Score (Bao et al., "An Information-theoretic Approach to Transferability in
  Task Transfer Learning", ICIP 2019)::

      H(f) = tr( cov(f)^+ cov(E[f | y]) )

  With centred features ``X`` (N x D) and class sums ``b_c = X^T 1_c = n_c (mu_c - mu)``
  this is ``sum_c b_c^T (X^T X)^+ b_c / n_c`` (the 1/(N-1) factors cancel).
  **Degenerate when D >= N**: ``(X^T X)^+`` then projects onto the whole centred
  sample space and H = (number of classes present) - 1 for *every* model, so
  plain H-Score cannot rank models on small tasks; use :func:`regularized_hscore`.

* Regularised H-Score (Ibrahim et al., "Newer is not always better: Rethinking
  transferability metrics, their peculiarities, stability and performance",
  ECML-PKDD 2022)::

      H_a(f) = tr( cov_a(f)^{-1} (1 - a) cov(E[f | y]) ),
      cov_a  = (1 - a) S + a (tr S / D) I,

  with S = X^T X / N (maximum-likelihood covariance, also used for cov(E[f|y]))
  and the Ledoit-Wolf (2004) shrinkage ``a = min(b2, d2) / d2``,
  ``d2 = ||S - (tr S / D) I||_F^2 / D``,
  ``b2 = (sum_i ||x_i||^4 / N - ||S||_F^2) / (N D)``.

Implementation: H-Score uses one eigendecomposition, of ``X X^T`` (N x N) when
N <= D or of ``X^T X`` (D x D) otherwise, and is a sum over its spectrum.  The
regularised score with N <= D needs no eigendecomposition: by the Woodbury identity
it is ``sum_c 1_c^T G (G + k I)^{-1} 1_c / n_c`` with ``G = X X^T`` and
``k = a mu N / (1 - a)`` (one N x N Cholesky solve, :func:`regularized_hscore_from_gram`);
with N > D it uses the D x D spectrum. In the
pseudo-inverse, eigenvalues below ``eps * max eigenvalue`` count as zero in the
N x N path (noise directions carry no weight there) and below
``sqrt(max(N, D)) * eps * max eigenvalue`` in the D x D path. Padding: masked rows
are zeroed after centring on the real mean and N is the number of real examples.
Classes absent from the task contribute zero.

Scale: both scores are invariant to ``f -> c f`` in exact arithmetic; in float32 the
fourth powers of the Ledoit-Wolf ``b2`` over/underflow at c = 1e10 / 1e-10 (the
shrinkage then silently became 0, i.e. plain H-Score).  :func:`centre`, the entry of
every path, first divides the features by the RMS of their real entries
(``_scale.unit_rms``, the same scalar as LogME's), so the scores are the same for any
c in 1e-10..1e10.  Constant features (every real row equal) score 0 (no between-class
covariance) and warn.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jax.scipy.linalg

from spider_jax.metrics import _scale, _validate

__all__ = ["hscore", "regularized_hscore"]


def _spectral_terms(features, labels, mask, num_classes):
    """Returns (l, t, bq, n_real, row_norm4) for centred, masked features.

    l: [K] eigenvalues of X^T X (zeros clamped), kept: [K] bool (pseudo-inverse
    support), t: [K] sum_c (u_k^T 1_c)^2 / n_c on kept directions,
    bq: [K] sum_c (v_k^T b_c)^2 / n_c (= l_k t_k without dividing by l_k).
    """
    x, w, n_real, _ = centre(features, mask)
    n, d = x.shape
    onehot = jax.nn.one_hot(labels, num_classes, dtype=x.dtype) * w[:, None]    # [N, C]
    counts = jnp.sum(onehot, axis=0)
    inv_counts = jnp.where(counts > 0, 1.0 / jnp.where(counts > 0, counts, 1.0), 0.0)
    eps = jnp.finfo(x.dtype).eps
    if n <= d:
        l, u = jnp.linalg.eigh(x @ x.T)
        l = jnp.maximum(l, 0.0)
        kept = l > jnp.max(l) * eps
        # Centred indicators are orthogonal to the null direction 1_real that centring
        # creates (and zero on padding), so noise eigenvalues kept by the small
        # threshold above contribute ~0; the column space of X is unchanged.
        centred = onehot - w[:, None] * (counts / n_real)[None, :]
        proj2 = (u.T @ centred) ** 2                                              # [K, C]
        e = proj2 @ inv_counts                                                    # [K]
        t = jnp.where(kept, e, 0.0)
        bq = l * e
    else:
        l, v = jnp.linalg.eigh(x.T @ x)
        l = jnp.maximum(l, 0.0)
        kept = l > jnp.max(l) * eps * max(n, d) ** 0.5
        b = v.T @ (x.T @ onehot)                                                  # [K, C]
        bq = (b * b) @ inv_counts
        t = jnp.where(kept, bq / jnp.where(kept, l, 1.0), 0.0)
    row_norm4 = jnp.sum(jnp.sum(x * x, axis=1) ** 2)
    return l, t, bq, n_real, row_norm4


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _hscore_jit(features, labels, mask, *, num_classes):
    _, t, _, _, _ = _spectral_terms(features, labels, mask, num_classes)
    return jnp.sum(t)


def ledoit_wolf_shrinkage(l, n_real, row_norm4, dim):
    """Ledoit-Wolf shrinkage a in [0, 1] from the spectrum l of X^T X (X centred)."""
    s_eig = l / n_real
    mu = jnp.sum(s_eig) / dim
    # ||S - mu I||_F^2 over the K given and the dim - K zero eigenvalues: a sum of
    # squares, no cancellation (unlike ||S||_F^2 - dim mu^2).
    dev2 = jnp.sum((s_eig - mu) ** 2) + (dim - l.shape[0]) * mu * mu
    return _shrinkage(mu, jnp.sum(s_eig * s_eig), dev2, n_real, row_norm4, dim)


def _shrinkage(mu, s_fro2, dev2, n_real, row_norm4, dim):
    """(a, mu) from mu = tr S / D, ||S||_F^2 and ||S - mu I||_F^2 (S = X^T X / N)."""
    d2 = dev2 / dim
    b2 = (row_norm4 / n_real - s_fro2) / (n_real * dim)
    b2 = jnp.clip(b2, 0.0, None)
    ok = d2 > 0
    return jnp.where(ok, jnp.minimum(b2, d2) / jnp.where(ok, d2, 1.0), 0.0), mu


def centre(features, mask):
    """Scale-normalised, centred, masked features and the real count.

    Args:
      features: [N, D]; mask: [N] 0/1 or None.

    Returns:
      (x [N, D] = (F / s - mean) * mask, w [N] float mask, n_real scalar, mean [D] of the
      real rows of F / s), with s the RMS of the real entries of F (``_scale.unit_rms``).
    """
    x = _validate.as_float(features)
    w = jnp.ones((x.shape[0],), x.dtype) if mask is None else jnp.asarray(mask).astype(x.dtype)
    x = _scale.unit_rms(x, w)
    n_real = jnp.sum(w)
    mean = jnp.sum(x * w[:, None], axis=0) / n_real
    return (x - mean[None, :]) * w[:, None], w, n_real, mean


def regularized_hscore_from_gram(gram, onehot, n_real, dim):
    """Shrinkage H-Score from the centred Gram ``G = X X^T`` (N x N dual, no eigh).

    With ``S = X^T X / N`` and ``cov_a = (1 - a) S + a mu I`` (Ledoit-Wolf ``a``, ``mu``
    from ``tr G``, ``||G||_F^2``, ``||G / N - mu I||_F^2`` and ``diag G``), the Woodbury identity gives, with
    ``k = a mu N / (1 - a)`` and class sums ``b_c = X^T 1_c``::

        (1 - a) b_c^T cov_a^{-1} b_c / (N n_c) = 1_c^T G (G + k I)^{-1} 1_c / n_c,

    the spectral sum ``sum_i l_i e_i / (l_i + k)`` of the D x D form, evaluated with one
    N x N Cholesky solve.  ``G + k I`` is positive definite for ``a > 0``; ``k`` is
    floored at ``eps * tr G`` (``a = 0``: identical-outer-product or isotropic data,
    where this tends to the pseudo-inverse H-Score).  ``a = 1`` gives 0.

    Args:
      gram: [N, N] centred, masked Gram X X^T. onehot: [N, C] class indicators (zero on
        padding). n_real: scalar real N. dim: static feature dimension D.

    Returns:
      scalar H_a.
    """
    dtype = gram.dtype
    n = gram.shape[0]
    diag = jnp.diagonal(gram)
    trace = jnp.sum(diag)
    mu = trace / n_real / dim
    eye = jnp.eye(n, dtype=dtype)
    # ||S - mu I_D||_F^2 = ||G / N - mu I_N||_F^2 + (D - n) mu^2 (S and G / N share their
    # non-zero spectrum): sums of squares, no cancellation.
    dev2 = jnp.sum((gram / n_real - mu * eye) ** 2) + (dim - n) * mu * mu
    a, mu = _shrinkage(mu, jnp.sum(gram * gram) / (n_real * n_real), dev2, n_real,
                       jnp.sum(diag * diag), dim)
    k = a * mu * n_real / jnp.maximum(1.0 - a, jnp.finfo(dtype).tiny)
    k = jnp.maximum(k, jnp.finfo(dtype).eps * trace)
    signal = trace > 0               # constant features: G = 0, score 0 (not chol(0) = NaN)
    k = jnp.where(signal, k, 1.0)
    counts = jnp.sum(onehot, axis=0)
    inv_counts = jnp.where(counts > 0, 1.0 / jnp.where(counts > 0, counts, 1.0), 0.0)
    chol = jnp.linalg.cholesky(gram + k * eye)
    z = jax.scipy.linalg.cho_solve((chol, True), onehot)                          # [N, C]
    h = jnp.sum(jnp.sum((gram @ onehot) * z, axis=0) * inv_counts)
    return jnp.where((a < 1.0) & signal, h, 0.0)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _regularized_hscore_jit(features, labels, mask, *, num_classes):
    n, dim = jnp.shape(features)
    if n <= dim:        # N x N dual: one Gram and one Cholesky (no eigendecomposition)
        x, w, n_real, _ = centre(features, mask)
        onehot = jax.nn.one_hot(labels, num_classes, dtype=x.dtype) * w[:, None]
        return regularized_hscore_from_gram(x @ x.T, onehot, n_real, dim)
    l, _, bq, n_real, row_norm4 = _spectral_terms(features, labels, mask, num_classes)
    a, mu = ledoit_wolf_shrinkage(l, n_real, row_norm4, dim)
    den = (1.0 - a) * l / n_real + a * mu
    ok = den > 0
    terms = jnp.where(ok, (1.0 - a) * (bq / n_real) / jnp.where(ok, den, 1.0), 0.0)
    return jnp.sum(terms)


def hscore(features, labels, *, num_classes, mask=None):
    """H-Score ``tr(cov(f)^+ cov(E[f|y]))`` (Bao et al., ICIP 2019).

    Degenerate when the real N <= D: it then equals (classes present) - 1 for
    every model (see module docstring); RankAgg on small tasks should use
    :func:`regularized_hscore`.

    Args:
      features: [N, D] features.
      labels: [N] int labels in ``[0, num_classes)``.
      num_classes: static number of classes C (absent classes contribute zero).
      mask: optional [N] 0/1, 1 = real example.

    Returns:
      scalar float (higher = more transferable).

    Raises:
      ValueError: NaN/Inf features, labels out of range, mismatched lengths,
        fewer than 2 real examples or fewer than 2 classes present.
    """
    _validate.validate_classification(features, labels, num_classes=num_classes, mask=mask)
    _validate.warn_if_constant(features, mask, "hscore")
    return _hscore_jit(features, labels, mask, num_classes=num_classes)


def regularized_hscore(features, labels, *, num_classes, mask=None):
    """Shrinkage H-Score ``tr(cov_a(f)^{-1} (1-a) cov(E[f|y]))`` (Ibrahim et al. 2022).

    ``cov_a`` is the Ledoit-Wolf shrinkage of the (1/N) covariance; formulas in
    the module docstring. Well defined for any N, D (no pseudo-inverse).

    Args:
      features: [N, D] features.
      labels: [N] int labels in ``[0, num_classes)``.
      num_classes: static number of classes C (absent classes contribute zero).
      mask: optional [N] 0/1, 1 = real example.

    Returns:
      scalar float (higher = more transferable).

    Raises:
      ValueError: as :func:`hscore`.
    """
    _validate.validate_classification(features, labels, num_classes=num_classes, mask=mask)
    _validate.warn_if_constant(features, mask, "regularized_hscore")
    return _regularized_hscore_jit(features, labels, mask, num_classes=num_classes)
