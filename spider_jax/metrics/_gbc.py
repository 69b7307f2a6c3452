"""GBC: Gaussian Bhattacharyya Coefficient (Pandy et al., "Transferability
Estimation using Bhattacharyya Class Separability", CVPR 2022).

1. Deterministic PCA of the features to ``pca_dim`` (default 64) dimensions
   (eigendecomposition of the centred scatter, columns sign-fixed; see
   ``_extra_common.masked_pca``), as the Model Spider release does.
2. Per class c: mean ``mu_c`` and *diagonal* variance ``s_c`` (unbiased,
   ``n_c - 1`` in the denominator, floored at ``var_floor`` = 1e-4 as in the
   authors' diagonal-GBC code; a one-example class gets the floor).
3. Bhattacharyya distance between the diagonal Gaussians of classes i, j,
   with ``s = (s_i + s_j) / 2``::

       D_B(i, j) = 1/8 sum_d (mu_i - mu_j)_d^2 / s_d
                   + 1/2 sum_d [ log s_d - 1/2 log s_{i,d} - 1/2 log s_{j,d} ]

4. ``GBC = - sum_{i != j} exp(-D_B(i, j))`` over ordered pairs of classes
   present in the task (each unordered pair counted twice, as in the paper).

GBC <= 0; higher (less class overlap) = more transferable. The Model Spider
release uses full covariances; the diagonal variant is the one the GBC paper
recommends and is what we implement.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from spider_jax.metrics import _validate
from spider_jax.metrics._extra_common import as_arrays, as_float, masked_pca, onehot, weights

__all__ = ["gbc"]


@functools.partial(jax.jit, static_argnames=("num_classes", "pca_dim"))
def _gbc_jit(features, labels, mask, var_floor, *, num_classes, pca_dim):
    x = as_float(features)
    n_rows, dim = x.shape
    w = weights(mask, n_rows, x.dtype)
    p = min(pca_dim, n_rows, dim)
    z, _, _ = masked_pca(x, w, p)                                   # [N, P]
    o = onehot(labels, num_classes, w)                              # [N, C]
    counts = jnp.sum(o, axis=0)                                     # [C]
    present = counts > 0
    means = (o.T @ z) / jnp.maximum(counts, 1.0)[:, None]           # [C, P]
    dev = (z - means[jnp.clip(labels, 0, num_classes - 1)]) * w[:, None]
    var = (o.T @ (dev * dev)) / jnp.maximum(counts - 1.0, 1.0)[:, None]
    var = jnp.maximum(var, jnp.asarray(var_floor, x.dtype))         # [C, P]
    log_var = jnp.log(var)
    avg = 0.5 * (var[:, None, :] + var[None, :, :])                 # [C, C, P]
    diff = means[:, None, :] - means[None, :, :]
    dist = (0.125 * jnp.sum(diff * diff / avg, axis=-1)
            + 0.5 * jnp.sum(jnp.log(avg) - 0.5 * log_var[:, None, :]
                            - 0.5 * log_var[None, :, :], axis=-1))   # [C, C]
    pair = present[:, None] & present[None, :] & ~jnp.eye(num_classes, dtype=bool)
    return -jnp.sum(jnp.where(pair, jnp.exp(-dist), 0.0))


def gbc(features, labels, *, num_classes, mask=None, pca_dim=64, var_floor=1e-4):
    """Gaussian Bhattacharyya coefficient (Pandy et al. 2022); see the module docstring.

    Args:
      features: [N, D] penultimate-layer features.
      labels: [N] int target labels in ``[0, num_classes)``.
      num_classes: static number of target classes C.
      mask: optional [N] 0/1, 1 = real example.
      pca_dim: static PCA dimension (capped at min(N, D)); 64 as in the release.
      var_floor: lower bound on per-class per-dimension variances.

    Returns:
      scalar <= 0 (higher = more transferable).
    """
    _validate.validate_classification(features, labels, num_classes=num_classes, mask=mask)
    pca_dim = _validate.check_static_int(pca_dim, "pca_dim", 1)
    features, labels, mask = as_arrays(features, labels, mask)
    return _gbc_jit(features, labels, mask, var_floor, num_classes=num_classes, pca_dim=pca_dim)
