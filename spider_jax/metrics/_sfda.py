"""SFDA: Self-challenging Fisher Discriminant Analysis (Shao et al., "Not All
Models Are Equal: Predicting Model Transferability in a Self-challenging Fisher
Space", ECCV 2022).

What is implemented (following the authors' release, with the changes named):

1. Regularised FDA classifier on the (centred) features. Class means ``mu_c``,
   priors ``pi_c = n_c / n``, within-class scatter
   ``S_w = 1/n sum_i (x_i - mu_{y_i})(x_i - mu_{y_i})^T`` and shrinkage
   ``lam = max(exp(-5 * lambda_max(S_w)), 1e-10)``;
   ``S = (1 - lam) S_w + lam * trace(S_w)/D * I``.
   The release projects onto *all* generalised eigenvectors V of (S_b, S)
   (``V^T S V = I``), so its linear classifier ``mu_c V V^T = mu_c S^{-1}``
   is the regularised LDA classifier; we compute it directly::

       logit_c(x) = x^T S^{-1} mu_c - 1/2 mu_c^T S^{-1} mu_c + log pi_c,
       p(c | x)   = softmax_c(logit_c(x))        (classes present only)

   ``lambda_max`` is exact (eigendecomposition) where the release runs three
   power-iteration steps; the same eigendecomposition gives ``S^{-1}`` (on the
   [D, D] scatter or, when N < D, through the [N, N] Gram matrix and Woodbury).
2. ConfMix (the self-challenging step, kept): the release "softens" the
   probabilities with a second softmax, ``r_i = softmax(p(. | x_i))_{y_i}``, and
   mixes each example towards the mean of the other classes' means::

       x_i' = r_i x_i + (1 - r_i) * mean_{c present, c != y_i} mu_c

3. A second regularised FDA classifier on ``x'`` with the same ``lam``; the score
   is the mean log-likelihood of the true labels (the paper's form)::

       SFDA = 1/n sum_i log p'(y_i | x_i')

   ``log_likelihood=False`` gives the release's ``1/n sum_i p'(y_i | x_i')``
   (it drops the log "in case of instability").

Higher = more transferable. With N < D and a large ``lambda_max`` (lam ~ 1e-10)
the scatter is nearly singular and the score is ill-conditioned in float32 (in
any precision it then measures training-set separability, ~0).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from spider_jax.metrics import _validate
from spider_jax.metrics._extra_common import as_arrays, as_float, onehot, weights

__all__ = ["sfda"]


def _fit_predict(x, labels, o, w, lam):
    """Regularised-LDA log-probabilities [N, C] on x; returns (log_probs, means, lam)."""
    n_rows, dim = x.shape
    n = jnp.sum(w)
    counts = jnp.sum(o, axis=0)                                   # [C]
    present = counts > 0
    means = (o.T @ x) / jnp.maximum(counts, 1.0)[:, None]         # [C, D]
    num_classes = o.shape[1]
    resid = (x - means[jnp.clip(labels, 0, num_classes - 1)]) * w[:, None]   # [N, D]
    if dim <= n_rows:
        evals, evecs = jnp.linalg.eigh(resid.T @ resid / n)       # S_w = V E V^T
    else:
        evals, evecs = jnp.linalg.eigh(resid @ resid.T / n)       # nonzero spectrum of S_w
    evals = jnp.maximum(evals, 0.0)
    if lam is None:
        lam = jnp.maximum(jnp.exp(-5.0 * evals[-1]), 1e-10).astype(x.dtype)
    ridge = lam * jnp.sum(evals) / dim                             # lam * trace(S_w) / D
    if dim <= n_rows:
        inv = 1.0 / ((1.0 - lam) * evals + ridge)                  # [D]
        solved = evecs @ (inv[:, None] * (evecs.T @ means.T))      # S^{-1} mu^T  [D, C]
    else:
        # S = ridge I + c R^T R with c = (1 - lam)/n:
        # S^{-1} M = (M - R^T U diag(c / (ridge + c n E)) U^T R M) / ridge  (E = evals of R R^T / n)
        c = (1.0 - lam) / n
        proj = evecs.T @ (resid @ means.T)                         # [N, C]
        shrink = c / (ridge + c * n * evals)
        solved = (means.T - resid.T @ (evecs @ (shrink[:, None] * proj))) / ridge
    logits = x @ solved - 0.5 * jnp.sum(means.T * solved, axis=0)[None, :] \
        + jnp.log(jnp.maximum(counts, 1.0) / n)[None, :]
    logits = jnp.where(present[None, :], logits, -jnp.inf)
    return jax.nn.log_softmax(logits, axis=-1), means, lam


@functools.partial(jax.jit, static_argnames=("num_classes", "log_likelihood"))
def _sfda_jit(features, labels, mask, *, num_classes, log_likelihood):
    x = as_float(features)
    n_rows, _ = x.shape
    w = weights(mask, n_rows, x.dtype)
    n = jnp.sum(w)
    x = (x - ((w @ x) / n)[None, :]) * w[:, None]
    o = onehot(labels, num_classes, w)
    present = jnp.sum(o, axis=0) > 0
    safe_labels = jnp.clip(labels, 0, num_classes - 1)

    log_p, means, lam = _fit_predict(x, labels, o, w, None)
    # release: "soften" by a softmax of the probabilities, then take the true class
    soft = jax.nn.softmax(jnp.where(present[None, :], jnp.exp(log_p), -jnp.inf), axis=-1)
    r = jnp.take_along_axis(soft, safe_labels[:, None], axis=1)       # [N, 1]
    num_present = jnp.sum(present)
    sum_means = jnp.sum(jnp.where(present[:, None], means, 0.0), axis=0)
    others = (sum_means[None, :] - means) / jnp.maximum(num_present - 1, 1).astype(means.dtype)
    x_mix = (r * x + (1.0 - r) * others[safe_labels]) * w[:, None]

    log_p2, _, _ = _fit_predict(x_mix, labels, o, w, lam)
    true = jnp.take_along_axis(log_p2, safe_labels[:, None], axis=1)[:, 0]
    true = jnp.where(w > 0, true, 0.0)
    per_example = true if log_likelihood else jnp.exp(true)
    return jnp.sum(w * per_example) / n


def sfda(features, labels, *, num_classes, mask=None, log_likelihood=True):
    """SFDA (Shao et al. 2022); what is implemented is listed in the module docstring.

    Args:
      features: [N, D] penultimate-layer features.
      labels: [N] int target labels in ``[0, num_classes)``.
      num_classes: static number of target classes C.
      mask: optional [N] 0/1, 1 = real example.
      log_likelihood: static; True (default) = mean log p(y|x) after ConfMix
        (paper), False = mean p(y|x) (release).

    Returns:
      scalar (<= 0 with the log-likelihood; in (0, 1] otherwise). Higher = more
      transferable.
    """
    _validate.validate_classification(features, labels, num_classes=num_classes, mask=mask)
    features, labels, mask = as_arrays(features, labels, mask)
    return _sfda_jit(features, labels, mask, num_classes=num_classes,
                     log_likelihood=bool(log_likelihood))
