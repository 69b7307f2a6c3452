"""TransRate (Huang et al., "Frustratingly Easy Transferability Estimation", ICML 2022).

Mutual information between features and labels estimated by the coding rate
(Ma et al. 2007; Yu et al. 2020) of the centred features ``Z`` [n, d]::

    R(Z)     = 1/2 logdet( I_d + d / (n eps^2) Z^T Z )
    R(Z | Y) = sum_c (n_c / n) R(Z_c),   R(Z_c) = 1/2 logdet( I_d + d / (n_c eps^2) Z_c^T Z_c )
    TransRate = R(Z) - R(Z | Y)

``Z_c`` are the rows of class c (centred with the *global* mean, as in the paper's
code), ``n_c`` their number, and the class weights ``n_c / n`` follow the
rate-reduction definition of R(Z|Y) (Yu et al. 2020). The authors' released code
instead uses ``1 / (n eps)`` in place of ``d / (n eps^2)`` and a uniform average
over the classes; ``variant="release"`` computes that form (the average is over
the classes present). With the paper form and eps = 1e-4 the scale ~1e8 d/n makes
the score count ranks (each nonzero eigenvalue adds ~ log(1e8 d/n) / 2) whenever
a class has fewer examples than dimensions; the release form is much milder.

Numerics: ``logdet(I + a G) = sum_j log1p(a mu_j)`` over the eigenvalues ``mu_j``
of the PSD matrix ``G`` (the [d, d] scatter or the [n, n] Gram, whichever is
smaller, a static choice). With the default eps = 1e-4, ``a`` is ~1e8 d/n, so
rounding-level eigenvalues of a rank-deficient scatter would add spurious
``log(a * 1e-7 * max)`` terms in float32; eigenvalues below
``size * eps_machine * mu_max`` are therefore treated as exact zeros (the same
rule as a numerical rank), which is what the float64 formula gives.
Higher = more transferable.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from spider_jax.metrics import _validate
from spider_jax.metrics._extra_common import as_arrays, as_float, onehot, weights

__all__ = ["transrate"]


def _half_logdet(mats, scale):
    """1/2 logdet(I + scale G) of one PSD matrix G = ``mats`` [M, M]; ``scale`` scalar."""
    evals = jnp.linalg.eigvalsh(mats)                                  # [M]
    tol = mats.shape[-1] * jnp.finfo(mats.dtype).eps * jnp.max(evals)
    evals = jnp.where(evals > tol, evals, 0.0)
    return 0.5 * jnp.sum(jnp.log1p(scale * evals))


@functools.partial(jax.jit, static_argnames=("num_classes", "variant"))
def _transrate_jit(features, labels, mask, eps, *, num_classes, variant):
    x = as_float(features)
    n_rows, dim = x.shape
    w = weights(mask, n_rows, x.dtype)
    n = jnp.sum(w)
    o = onehot(labels, num_classes, w)                             # [N, C]
    counts = jnp.sum(o, axis=0)                                    # [C]
    mean = (w @ x) / n
    z = (x - mean[None, :]) * w[:, None]
    eps = jnp.asarray(eps, x.dtype)
    if variant == "paper":
        def scale(count):                                          # d / (n eps^2)
            return dim / (count * eps * eps)
    else:
        def scale(count):                                          # 1 / (n eps), release code
            return 1.0 / (count * eps)
    if dim <= n_rows:
        total = z.T @ z                                            # [D, D]

        def class_scatter(o_c):                                    # o_c: [N] class indicator
            zc = z * o_c[:, None]
            return zc.T @ zc
    else:
        total = z @ z.T                                            # [N, N] Gram

        def class_scatter(o_c):
            return total * (o_c[:, None] * o_c[None, :])

    def class_rate(args):
        o_c, n_c = args
        return _half_logdet(class_scatter(o_c), scale(jnp.maximum(n_c, 1.0)))

    r_all = _half_logdet(total, scale(n))
    # lax.map in chunks bounds memory to a few min(N, D)^2 matrices for many classes
    r_cls = jax.lax.map(class_rate, (o.T, counts), batch_size=min(num_classes, 8))
    if variant == "paper":
        class_weight = counts / n
    else:
        present = (counts > 0).astype(counts.dtype)
        class_weight = present / jnp.sum(present)
    return r_all - jnp.sum(class_weight * r_cls)


def transrate(features, labels, *, num_classes, mask=None, eps=1e-4, variant="paper"):
    """TransRate (Huang et al. 2022); formula and numerics in the module docstring.

    Args:
      features: [N, D] penultimate-layer features.
      labels: [N] int target labels in ``[0, num_classes)``.
      num_classes: static number of target classes C.
      mask: optional [N] 0/1, 1 = real example.
      eps: distortion of the coding rate (not static; 1e-4 as in the paper).
      variant: static; "paper" (default): ``d / (n eps^2)`` and class weights
        ``n_c / n``; "release": the authors' code, ``1 / (n eps)`` and a uniform
        average over the classes present.

    Returns:
      scalar (higher = more transferable).

    Memory: up to 8 class matrices of size min(N, D)^2 at a time.
    """
    _validate.validate_classification(features, labels, num_classes=num_classes, mask=mask)
    if not _validate.is_traced(eps) and not float(eps) > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if variant not in ("paper", "release"):
        raise ValueError(f'variant must be "paper" or "release", got {variant!r}')
    features, labels, mask = as_arrays(features, labels, mask)
    return _transrate_jit(features, labels, mask, eps, num_classes=num_classes, variant=variant)
