"""PACTran-Dirichlet (Ding et al., "PACTran: PAC-Bayesian Metrics for Estimating
the Transferability of Pretrained Models to Classification Tasks", ECCV 2022).

Model. Each example has a latent source class z (prior: the PTM's source-head
probabilities ``s_i(z)``); each source class z has a distribution ``theta_z``
over the C target labels with prior ``Dir(a0)``, ``a0_y = lam * n_y / n``
(``lam`` = 1 in the release). Mean-field variational inference with
``q(z_i) = q_i`` and ``q(theta_z) = Dir(aw_z)``, started at ``q_i = s_i`` and
run for a fixed ``num_steps`` (10, as in the release) of::

    aw_{y z} = a0_y + sum_i 1[y_i = y] q_i(z)
    q_i(z)  ∝ s_i(z) exp( psi(aw_{y_i z}) - psi(sum_y aw_{y z}) )

after which ``aw`` is recomputed from the final ``q`` (the release evaluates the
bound with ``aw`` one step stale; after 10 steps the two differ negligibly).
The score is the evidence lower bound per label entry::

    ELBO = sum_z [ log B(aw_z) - log B(a0) ] - sum_i KL(q_i || s_i),
    log B(a) = sum_y log Gamma(a_y) - log Gamma(sum_y a_y)
    PACTran-Dir = ELBO / (n C)

which is exactly minus the release's ``pac_dir`` (a PAC-Bayes risk bound, lower
is better there); here higher = more transferable. Target classes absent from
the task are left out of every sum (the release's 1e-10 pseudo-counts for them
cancel exactly). ``log s`` uses ``log(s + 1e-10)`` as the release does, so
exact zeros in float16 source probabilities stay finite.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma, gammaln

from spider_jax.metrics import _validate
from spider_jax.metrics._extra_common import as_arrays, as_float, onehot, weights

__all__ = ["pactran_dirichlet"]


@functools.partial(jax.jit, static_argnames=("num_classes", "num_steps"))
def _pactran_jit(source_probs, labels, mask, lam, *, num_classes, num_steps):
    s = as_float(source_probs)
    n_rows, _ = s.shape
    w = weights(mask, n_rows, s.dtype)
    n = jnp.sum(w)
    o = onehot(labels, num_classes, w)                           # [N, C]
    counts = jnp.sum(o, axis=0)                                  # [C]
    present = (counts > 0)[:, None]                              # [C, 1]
    a0 = (jnp.asarray(lam, s.dtype) * counts / n)[:, None]       # [C, 1]
    log_s = jnp.log(s + 1e-10)

    def concentration(q):
        return jnp.where(present, a0 + o.T @ q, 1.0)             # [C, Z]; 1.0 = unused

    def step(_, q):
        aw = concentration(q)
        col = jnp.sum(jnp.where(present, aw, 0.0), axis=0)       # [Z]
        logits = log_s + o @ digamma(aw) - digamma(col)[None, :]
        return jax.nn.softmax(logits, axis=-1)

    row = jnp.sum(s, axis=-1, keepdims=True)
    q0 = jnp.where(row > 0, s / jnp.where(row > 0, row, 1.0), 1.0 / s.shape[1])
    q = jax.lax.fori_loop(0, num_steps, step, q0)
    aw = concentration(q)
    a0_full = jnp.where(present, a0, 1.0)
    log_b = jnp.sum(jnp.where(present, gammaln(aw) - gammaln(a0_full), 0.0), axis=0) \
        - (gammaln(jnp.sum(jnp.where(present, aw, 0.0), axis=0))
           - gammaln(jnp.sum(jnp.where(present, a0, 0.0))))       # [Z]
    log_q = jnp.log(jnp.maximum(q, jnp.finfo(s.dtype).tiny))
    kl = jnp.sum(jnp.where(q > 0, q * (log_q - log_s), 0.0), axis=-1)   # [N]
    elbo = jnp.sum(log_b) - jnp.sum(w * kl)
    return elbo / (n * num_classes)


def pactran_dirichlet(source_probs, labels, *, num_classes, mask=None, lam=1.0, num_steps=10):
    """PACTran with a Dirichlet prior (Ding et al. 2022); objective in the module docstring.

    Args:
      source_probs: [N, Z] source-head softmax probabilities (renormalised per row
        to start the iteration).
      labels: [N] int target labels in ``[0, num_classes)``.
      num_classes: static number of target classes C (also the normaliser n C).
      mask: optional [N] 0/1, 1 = real example.
      lam: total prior concentration of Dir(a0) (the release's ``alpha``; 1.0).
      num_steps: static number of mean-field updates (10 as in the release).

    Returns:
      scalar ELBO / (n C) <= 0 (higher = more transferable).
    """
    _validate.validate_classification(source_probs, labels, num_classes=num_classes, mask=mask,
                                      x_name="source_probs", probs=True)
    num_steps = _validate.check_static_int(num_steps, "num_steps", 1)
    if not _validate.is_traced(lam) and not float(lam) > 0:
        raise ValueError(f"lam must be > 0, got {lam}")
    source_probs, labels, mask = as_arrays(source_probs, labels, mask)
    return _pactran_jit(source_probs, labels, mask, lam, num_classes=num_classes,
                        num_steps=num_steps)
