"""N-LEEP (Li et al., "Ranking Neural Checkpoints", CVPR 2021): LEEP with the
source head replaced by a Gaussian mixture fitted to the target features.

Steps (static shapes; data-dependent sizes are masks over a static maximum):

1. PCA keeping 80% of the variance: ``k`` = the smallest number of leading
   components whose explained-variance ratio reaches ``variance_kept``
   (sklearn's rule for ``PCA(n_components=0.8)``: ``k = #{cumratio <= 0.8} + 1``),
   computed from the eigendecomposition of the masked scatter; components
   beyond ``k`` are masked out of the mixture (static maximum ``pca_max_dim``,
   default min(N, D)).
2. A Gaussian mixture with ``K = max(min(C, floor(0.2 n)), floor(0.1 n))``
   components (the release's formula; n = real examples, C = num_classes), over
   a static maximum ``num_components`` (default the formula at the padded N);
   inactive components have weight 0. **Diagonal covariances** (the release
   uses sklearn's full covariances). Fitted by EM for a fixed ``num_iters`` (100,
   sklearn's ``max_iter``) with no early stopping, variances regularised by
   ``reg_covar`` times the leading PCA variance (scale-free version of
   sklearn's absolute 1e-6).
   Deterministic initialisation instead of k-means with a random seed: the real
   examples are sorted by their first principal-component score and split into
   K equal-count strata, which give the initial hard responsibilities. This
   makes the score a function of the data alone, invariant to the order of the
   examples and exactly reproducible by a NumPy reference (hence no ``seed``
   argument: a seeded random init would break permutation invariance).
3. LEEP on the posteriors ``q_i(z) = p(z | x_i)``::

       P(y, z) = 1/n sum_i q_i(z) 1[y_i = y],   P(y | z) = P(y, z) / P(z)
       N-LEEP  = 1/n sum_i log sum_z q_i(z) P(y_i | z)

N-LEEP <= 0; higher = more transferable.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from spider_jax.metrics import _validate
from spider_jax.metrics._extra_common import as_arrays, as_float, masked_pca, onehot, weights

__all__ = ["nleep", "default_num_components"]


def default_num_components(n, num_classes):
    """The release's mixture size ``max(min(C, int(0.2 n)), int(0.1 n))`` (at least 1)."""
    return max(min(num_classes, int(0.2 * n)), int(0.1 * n), 1)


def _em_step(x, dim_mask, w, active, reg, resp):
    """One M-step from ``resp`` [N, K] then one E-step; returns new responsibilities."""
    dtype = x.dtype
    tiny = 10.0 * jnp.finfo(dtype).eps
    nk = jnp.sum(resp, axis=0) + tiny                              # [K]
    means = (resp.T @ x) / nk[:, None]                             # [K, P]
    var = (resp.T @ (x * x)) / nk[:, None] - means * means
    var = jnp.maximum(var, 0.0) + reg                              # [K, P]
    log_weight = jnp.where(active, jnp.log(nk / jnp.sum(w)), -jnp.inf)
    prec = dim_mask[None, :] / var                                 # [K, P]
    quad = ((x * x) @ prec.T - 2.0 * x @ (means * prec).T
            + jnp.sum(means * means * prec, axis=1)[None, :])      # [N, K]
    log_det = jnp.sum(dim_mask[None, :] * jnp.log(2.0 * jnp.pi * var), axis=1)   # [K]
    log_joint = log_weight[None, :] - 0.5 * (quad + log_det[None, :])
    return jax.nn.softmax(log_joint, axis=-1) * w[:, None]


@functools.partial(jax.jit, static_argnames=("num_classes", "num_components",
                                             "pca_max_dim", "num_iters"))
def _nleep_jit(features, labels, mask, variance_kept, reg_covar, *, num_classes,
               num_components, pca_max_dim, num_iters):
    x = as_float(features)
    n_rows, dim = x.shape
    w = weights(mask, n_rows, x.dtype)
    n = jnp.sum(w)
    p = min(pca_max_dim, n_rows, dim)
    z, evals, total = masked_pca(x, w, p)                          # [N, P]
    cum_ratio = jnp.cumsum(evals) / total
    k_dims = jnp.minimum(jnp.sum(cum_ratio <= variance_kept) + 1, p)
    dim_mask = (jnp.arange(p) < k_dims).astype(x.dtype)
    z = z * dim_mask[None, :]

    n_int = jnp.round(n).astype(jnp.int32)
    k_eff = jnp.maximum(jnp.minimum(num_classes, (2 * n_int) // 10), n_int // 10)
    k_eff = jnp.clip(k_eff, 1, num_components)
    active = jnp.arange(num_components, dtype=k_eff.dtype) < k_eff

    # Deterministic init: equal-count strata along the first principal component.
    key = jnp.where(w > 0, z[:, 0], jnp.inf)
    order = jnp.argsort(key, stable=True)
    rank = jnp.zeros((n_rows,), jnp.int32).at[order].set(jnp.arange(n_rows, dtype=jnp.int32))
    stratum = (rank * k_eff) // jnp.maximum(n_int, 1)
    resp = jax.nn.one_hot(stratum, num_components, dtype=x.dtype) * w[:, None]

    reg = reg_covar * evals[0] / n
    resp = jax.lax.fori_loop(
        0, num_iters, lambda _, r: _em_step(z, dim_mask, w, active, reg, r), resp)

    o = onehot(labels, num_classes, w)                             # [N, C]
    joint = o.T @ resp / n                                         # [C, K]
    marg = jnp.sum(joint, axis=0)                                  # [K]
    cond = joint / jnp.where(marg > 0, marg, 1.0)[None, :]        # P(y | z)
    eep = jnp.sum((resp @ cond.T) * o, axis=1)                     # [N]
    eep = jnp.where(w > 0, jnp.maximum(eep, jnp.finfo(x.dtype).tiny), 1.0)
    log_eep = jnp.where(w > 0, jnp.log(eep), 0.0)
    return jnp.sum(log_eep) / n


def nleep(features, labels, *, num_classes, mask=None, num_components=None, pca_max_dim=None,
          variance_kept=0.8, num_iters=100, reg_covar=1e-6):
    """N-LEEP (Li et al. 2021); the procedure is described in the module docstring.

    Args:
      features: [N, D] penultimate-layer features.
      labels: [N] int target labels in ``[0, num_classes)``.
      num_classes: static number of target classes C.
      mask: optional [N] 0/1, 1 = real example.
      num_components: static maximum mixture size (default: the release's
        formula at the padded N, which bounds the formula at any real n <= N).
      pca_max_dim: static maximum PCA dimension (default min(N, D)); the 80%
        rule picks the active dimensions below it.
      variance_kept: fraction of variance the PCA keeps (0.8).
      num_iters: static number of EM iterations (100).
      reg_covar: variance regulariser, relative to the leading PCA variance.

    Returns:
      scalar <= 0 (higher = more transferable).
    """
    _validate.validate_classification(features, labels, num_classes=num_classes, mask=mask)
    n_rows, dim = np.shape(features)
    if num_components is None:
        num_components = default_num_components(n_rows, num_classes)
    num_components = _validate.check_static_int(num_components, "num_components", 1)
    pca_max_dim = min(n_rows, dim) if pca_max_dim is None else pca_max_dim
    pca_max_dim = _validate.check_static_int(pca_max_dim, "pca_max_dim", 1)
    num_iters = _validate.check_static_int(num_iters, "num_iters", 1)
    if not _validate.is_traced(variance_kept) and not 0.0 < float(variance_kept) <= 1.0:
        raise ValueError(f"variance_kept must be in (0, 1], got {variance_kept}")
    features, labels, mask = as_arrays(features, labels, mask)
    return _nleep_jit(features, labels, mask, variance_kept, reg_covar, num_classes=num_classes,
                      num_components=num_components, pca_max_dim=pca_max_dim,
                      num_iters=num_iters)
