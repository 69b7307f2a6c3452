"""Ranking losses over PTM lists ``[..., M]`` with a validity mask (optax ranking style).

* :func:`listmle` — the paper's Eq. 4 (Plackett-Luce negative log-likelihood of the
  supervising order):
  ``l(s, t) = sum_{m=1}^{M} [ log sum_{l>=m} exp(s_dsc(l)) - s_dsc(m) ]``
  where ``dsc`` sorts the targets ``t`` in descending order; masked PTMs are left out of
  both the order and every denominator. Ties (frequent: Copeland points over a few
  methods) are handled deterministically in one of two ways:

  - ``ties="breslow"`` (default): every PTM's denominator runs over all PTMs whose target
    is lower *or equal*, ``sum_m [log sum_{l: t_l <= t_m} exp(s_l) - s_m]`` (Breslow's
    tie rule for Plackett-Luce / Cox partial likelihoods). It equals Eq. 4 exactly when
    there are no ties and is symmetric within a tied group, so it teaches no preference
    the supervision does not hold.
  - ``ties="index"``: ties broken by model index (lower index first). Simple, but on
    tie-heavy supervision it systematically pushes low-index PTMs up.
* :func:`listnet` — cross-entropy between softmax(t / temperature) and softmax(s).
* :func:`mse` — squared error against per-list standardised targets.

All return a per-list loss ``[...]`` (0 for a fully masked list, never NaN);
:func:`ranking_loss` picks one by name and averages over the lists.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["listmle", "listnet", "mse", "ranking_loss", "LOSSES"]

_BIG = 1e9


def _mask(scores, mask):
    return jnp.ones(scores.shape, bool) if mask is None else jnp.asarray(mask, bool)


def listmle(scores, targets, mask=None, *, average_positions: bool = False,
            ties: str = "breslow"):
    """Eq. 4 per list.

    Args:
      scores: [..., M] predicted scores.
      targets: [..., M] supervision (higher = better, e.g. Copeland points).
      mask: [..., M] bool, True for PTMs that take part (default all).
      average_positions: divide by the number of valid PTMs (the release's variant;
        Adam is invariant to this constant rescaling up to epsilon).
      ties: "breslow" (symmetric, default) or "index" (lower model index first); see the
        module docstring.

    Returns:
      [...] loss per list.
    """
    if ties not in ("breslow", "index"):
        raise ValueError(f"ties must be 'breslow' or 'index', got {ties!r}")
    valid = _mask(scores, mask)
    if ties == "breslow":
        return _listmle_breslow(scores, targets, valid, average_positions)
    # Stable argsort on (-target) with masked entries pushed to the end.
    key = jnp.where(valid, -targets.astype(jnp.float32), jnp.inf)
    order = jnp.argsort(key, axis=-1, stable=True)
    s = jnp.take_along_axis(scores.astype(jnp.float32), order, axis=-1)
    v = jnp.take_along_axis(valid, order, axis=-1)
    s = jnp.where(v, s, -_BIG)
    # Reverse cumulative log-sum-exp: log sum_{l >= m} exp(s_l).
    tail = jax.lax.cumlogsumexp(s, axis=s.ndim - 1, reverse=True)
    per_pos = jnp.where(v, tail - s, 0.0)
    loss = per_pos.sum(-1)
    if average_positions:
        loss = loss / jnp.maximum(v.sum(-1), 1)
    return loss


def _listmle_breslow(scores, targets, valid, average_positions):
    """sum_m [log sum_{l valid, t_l <= t_m} exp(s_l) - s_m] over valid m; O(M^2) per list."""
    s = jnp.where(valid, scores.astype(jnp.float32), -_BIG)
    t = targets.astype(jnp.float32)
    # at_or_below[..., m, l]: PTM l is in PTM m's denominator.
    at_or_below = (t[..., None, :] <= t[..., :, None]) & valid[..., None, :]
    logits = jnp.where(at_or_below, s[..., None, :], -_BIG)
    denom = jax.nn.logsumexp(logits, axis=-1)
    loss = jnp.where(valid, denom - s, 0.0).sum(-1)
    if average_positions:
        loss = loss / jnp.maximum(valid.sum(-1), 1)
    return loss


def listnet(scores, targets, mask=None, *, temperature: float = 1.0):
    """ListNet top-one cross-entropy per list: ``-sum softmax(t/T) log softmax(s)``."""
    valid = _mask(scores, mask)
    t = jnp.where(valid, targets.astype(jnp.float32) / temperature, -_BIG)
    s = jnp.where(valid, scores.astype(jnp.float32), -_BIG)
    p = jax.nn.softmax(t, axis=-1)
    logq = jax.nn.log_softmax(s, axis=-1)
    return jnp.where(valid.any(-1), -jnp.sum(jnp.where(valid, p * logq, 0.0), -1), 0.0)


def mse(scores, targets, mask=None):
    """Mean squared error against targets standardised within each list."""
    valid = _mask(scores, mask)
    n = jnp.maximum(valid.sum(-1, keepdims=True), 1).astype(jnp.float32)
    t = targets.astype(jnp.float32)
    mean = jnp.where(valid, t, 0.0).sum(-1, keepdims=True) / n
    var = jnp.where(valid, (t - mean) ** 2, 0.0).sum(-1, keepdims=True) / n
    z = (t - mean) / jnp.sqrt(var + 1e-12)
    err = jnp.where(valid, (scores.astype(jnp.float32) - z) ** 2, 0.0)
    return err.sum(-1) / n[..., 0]


LOSSES = {"listmle": listmle, "listnet": listnet, "mse": mse}


def ranking_loss(name: str, scores, targets, mask=None):
    """Mean over lists of the named loss (``listmle`` | ``listnet`` | ``mse``)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    per_list = LOSSES[name](scores, targets, mask)
    if mask is None:
        return per_list.mean()
    live = jnp.asarray(mask, bool).any(-1)
    return jnp.where(live, per_list, 0.0).sum() / jnp.maximum(live.sum(), 1).astype(per_list.dtype)
