"""LFC: label-feature correlation (Deshpande et al., "A linearized framework and a
new benchmark for model selection for fine-tuning", arXiv:2102.00084, 2021).

With the feature Gram matrix ``K = F F^T`` [N, N] and the label agreement matrix
``Y_ij = +1 if y_i = y_j else -1``, LFC is the Pearson correlation of their
entries (both centred by their scalar mean, as in the Model Spider release)::

    LFC = <K - mean(K), Y - mean(Y)>_F / ( ||K - mean(K)||_F ||Y - mean(Y)||_F )

Computed without forming any N x N matrix. Writing ``m`` for the feature mean,
``Fc = F - 1 m^T`` (centred features), ``a = Fc m``, ``B = Fc^T O`` (class sums of
the centred features, O the one-hot labels), ``n_c`` the class counts and
``p = sum_c n_c^2 / n^2``::

    K - mean(K) = Fc Fc^T + a 1^T + 1 a^T                    (mean(K) = ||m||^2)
    numerator   = 2 ||B||_F^2 + 4 sum_c n_c (B^T m)_c
    ||K - mean(K)||_F^2 = ||Fc^T Fc||_F^2 + 2 n ||a||^2     (no cancellation)
    ||Y - mean(Y)||_F   = 2 n sqrt(p (1 - p))

``||Fc^T Fc||_F`` is taken on the smaller of the [D, D] and [N, N] Gram matrices.
Range [-1, 1]; higher = more transferable.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from spider_jax.metrics import _validate
from spider_jax.metrics._extra_common import as_arrays, as_float, onehot, weights

__all__ = ["lfc"]


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _lfc_jit(features, labels, mask, *, num_classes):
    x = as_float(features)
    n_rows, dim = x.shape
    w = weights(mask, n_rows, x.dtype)
    n = jnp.sum(w)
    o = onehot(labels, num_classes, w)                       # [N, C]
    mean = (w @ x) / n                                        # [D]
    xc = (x - mean[None, :]) * w[:, None]                     # [N, D]
    a = xc @ mean                                             # [N]
    b = xc.T @ o                                              # [D, C]
    counts = jnp.sum(o, axis=0)                               # [C]
    numer = 2.0 * jnp.sum(b * b) + 4.0 * jnp.sum(counts * (mean @ b))
    gram = xc.T @ xc if dim <= n_rows else xc @ xc.T
    k_norm = jnp.sqrt(jnp.sum(gram * gram) + 2.0 * n * jnp.sum(a * a))
    p = jnp.sum(counts * counts) / (n * n)
    y_norm = 2.0 * n * jnp.sqrt(jnp.maximum(p * (1.0 - p), 0.0))
    denom = k_norm * y_norm
    return jnp.where(denom > 0, numer / jnp.where(denom > 0, denom, 1.0), 0.0)


def lfc(features, labels, *, num_classes, mask=None):
    """Label-feature correlation (Deshpande et al. 2021); formula in the module docstring.

    Args:
      features: [N, D] penultimate-layer features of the target examples.
      labels: [N] int target labels in ``[0, num_classes)``.
      num_classes: static number of target classes C.
      mask: optional [N] 0/1, 1 = real example.

    Returns:
      scalar in [-1, 1] (higher = more transferable). A degenerate task (all
      features identical) gives 0 under tracing; concrete inputs with fewer
      than 2 classes or 2 examples raise ValueError.
    """
    _validate.validate_classification(features, labels, num_classes=num_classes, mask=mask)
    features, labels, mask = as_arrays(features, labels, mask)
    return _lfc_jit(features, labels, mask, num_classes=num_classes)
