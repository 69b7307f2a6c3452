"""How well a predicted PTM ranking matches the ground truth (fine-tuned accuracy).

The paper's criterion is Vigna's weighted Kendall tau (Vigna, "A weighted
correlation index for rankings with ties", WWW 2015) exactly as
``scipy.stats.weightedtau(truth, pred, rank=None).correlation``: hyperbolic
weigher ``w(r) = 1 / (r + 1)``, additive pair weights ``w(r_i) + w(r_j)`` and the
rank r of each element given by decreasing lexicographic order of
``(truth, pred)``, so errors among the truly best models weigh most::

    tau_w = sum_{i<j} w_ij sgn(t_i - t_j) sgn(p_i - p_j)
            / sqrt( sum_{i<j} w_ij [t_i != t_j] * sum_{i<j} w_ij [p_i != p_j] )

(ties in either list contribute 0 to the numerator; with ``w = 1`` this is
Kendall's tau-b). ``weighted_tau`` computes this O(M^2) sum in float64 on the
host; ``weighted_tau_batched`` is the same formula in jnp for ``[..., M]`` batches
under jit (float32 unless jax_enable_x64).

Also: Kendall tau-b, Pearson correlation, top-1 regret and top-k hit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["weighted_tau", "weighted_tau_batched", "kendall_tau", "pearson", "top1_regret",
           "topk_hit"]


def _pair(truth, pred):
    t = np.asarray(truth, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError(f"truth and pred must be 1-D, got shapes {t.shape} and {p.shape}")
    if t.shape != p.shape:
        raise ValueError(f"truth and pred must have the same length, got {t.size} and {p.size}")
    if t.size < 2:
        raise ValueError(f"need at least 2 models, got {t.size}")
    for name, a in (("truth", t), ("pred", p)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN/Inf")
    return t, p


def _tau_from_weights(t, p, w):
    st = np.sign(t[:, None] - t[None, :])
    sp = np.sign(p[:, None] - p[None, :])
    iu = np.triu_indices(t.size, 1)
    w, st, sp = w[iu], st[iu], sp[iu]
    den = np.sqrt(np.sum(w * np.abs(st))) * np.sqrt(np.sum(w * np.abs(sp)))
    return float(np.sum(w * st * sp) / den) if den > 0 else float("nan")


def _lexi_rank(t, p):
    """rank[i] = position of i in decreasing lexicographic order of (t, p)."""
    order = np.lexsort((p, t))[::-1]
    rank = np.empty(t.size, dtype=np.int64)
    rank[order] = np.arange(t.size)
    return rank


def weighted_tau(truth, pred) -> float:
    """Weighted Kendall tau == ``scipy.stats.weightedtau(truth, pred, rank=None)``.

    Args:
      truth: [M] ground-truth scores (e.g. fine-tuned accuracy), higher = better.
      pred: [M] predicted scores, higher = better.

    Returns:
      float in [-1, 1]; NaN if either list is constant (as scipy).

    Raises:
      ValueError: shapes differ / not 1-D, fewer than 2 models, NaN/Inf values.
    """
    t, p = _pair(truth, pred)
    wr = 1.0 / (_lexi_rank(t, p) + 1.0)
    return _tau_from_weights(t, p, wr[:, None] + wr[None, :])


@jax.jit
def weighted_tau_batched(truth, pred):
    """jnp weighted tau over the last axis, [..., M] x [..., M] -> [...].

    Same definition as :func:`weighted_tau` (validation is the caller's job;
    NaN if a list is constant).
    """
    t = jnp.asarray(truth)
    p = jnp.asarray(pred).astype(t.dtype) if jnp.issubdtype(t.dtype, jnp.floating) \
        else jnp.asarray(pred)
    m = t.shape[-1]

    def one(t1, p1):
        order = jnp.lexsort((p1, t1))[::-1]
        rank = jnp.zeros((m,), jnp.int32).at[order].set(jnp.arange(m, dtype=jnp.int32))
        wr = 1.0 / (rank.astype(jnp.result_type(float)) + 1.0)
        w = wr[:, None] + wr[None, :]
        st = jnp.sign(t1[:, None] - t1[None, :])
        sp = jnp.sign(p1[:, None] - p1[None, :])
        # Each unordered pair appears twice in the full matrix; the factor cancels.
        num = jnp.sum(w * st * sp)
        den = jnp.sqrt(jnp.sum(w * jnp.abs(st))) * jnp.sqrt(jnp.sum(w * jnp.abs(sp)))
        return num / den

    batch = t.shape[:-1]
    out = jax.vmap(one)(t.reshape(-1, m), p.reshape(-1, m))
    return out.reshape(batch)


def kendall_tau(truth, pred) -> float:
    """Kendall tau-b (== ``scipy.stats.kendalltau(truth, pred).statistic``)."""
    t, p = _pair(truth, pred)
    return _tau_from_weights(t, p, np.ones((t.size, t.size)))


def pearson(truth, pred) -> float:
    """Pearson correlation of the two score lists (NaN if one is constant)."""
    t, p = _pair(truth, pred)
    tc, pc = t - t.mean(), p - p.mean()
    den = np.sqrt(np.sum(tc * tc) * np.sum(pc * pc))
    return float(np.sum(tc * pc) / den) if den > 0 else float("nan")


def top1_regret(truth_acc, pred) -> float:
    """Best true accuracy minus the true accuracy of the top-predicted model.

    Ties in ``pred`` for the top spot are broken towards the lowest index.

    Args:
      truth_acc: [M] fine-tuned accuracies. pred: [M] predicted scores.

    Returns:
      float >= 0 (0 = the selected model is a best model).
    """
    t, p = _pair(truth_acc, pred)
    return float(t.max() - t[int(np.argmax(p))])


def topk_hit(truth, pred, k: int) -> bool:
    """Whether a truly best model is among the k top-predicted models.

    Ties in ``pred`` at the k-th place are broken towards the lowest index.

    Args:
      truth: [M] ground-truth scores. pred: [M] predicted scores. k: 1 <= k <= M.

    Returns:
      bool.
    """
    t, p = _pair(truth, pred)
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= t.size:
        raise ValueError(f"k must be an int in [1, {t.size}], got {k!r}")
    top = np.argsort(-p, kind="stable")[:k]
    return bool(np.any(t[top] == t.max()))
