"""Rank aggregation of several transferability scores into one PTM ranking.

Model Spider (Zhang et al., NeurIPS 2023, Sec. 4.3 and Appendix A.4, Eq. 8)
supervises its scorer with Copeland's aggregation of the rankings given by
H-Score, NCE, LEEP and LogME. For models m and m' let A_m be the number of
methods that score m strictly above m' and A_m' the number scoring m' strictly
above m. m beats m' when A_m > A_m' and they tie when A_m = A_m'::

    copeland_m = #{m' != m : A_m > A_m'} + 1/2 #{m' != m : A_m = A_m'}      (Eq. 8)

Higher = better; points of M models sum to M (M - 1) / 2. Only the order of
each method's scores matters (scales need not be comparable). Equal scores
within a method count for neither model.  A NaN or infinite score (a degenerate
metric value: constant features, overflow) ranks last within its method, tied with the
other non-finite ones: it can never win a contest (a NaN compared as a tie with
everything, so a dead PTM won Copeland).  :func:`aggregate` (host helper) refuses
non-finite scores instead, naming the method and the models.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["copeland", "borda", "aggregate"]


def _finite_or_last(scores):
    """NaN / +-inf -> -inf: non-finite scores rank last (tied among themselves)."""
    s = jnp.asarray(scores)
    return jnp.where(jnp.isfinite(s), s, -jnp.inf)


def _pairwise_wins(scores):
    """[..., A, M] -> [..., M, M] number of methods with s[m] > s[m']."""
    s = _finite_or_last(scores)
    return jnp.sum((s[..., :, :, None] > s[..., :, None, :]).astype(jnp.float32), axis=-3)


@jax.jit
def copeland(scores):
    """Copeland points (paper Eq. 8).

    Args:
      scores: [..., A, M] scores of A methods for M models (higher = better); NaN or
        infinite scores rank last within their method.

    Returns:
      [..., M] float32 points in [0, M - 1]: one per pairwise majority win,
      one half per majority tie.
    """
    wins = _pairwise_wins(scores)                        # [..., M, M]
    beats = wins > jnp.swapaxes(wins, -1, -2)
    ties = wins == jnp.swapaxes(wins, -1, -2)
    m = wins.shape[-1]
    off_diag = jnp.broadcast_to(~jnp.eye(m, dtype=bool), wins.shape)
    return (jnp.sum(beats & off_diag, axis=-1).astype(jnp.float32)
            + 0.5 * jnp.sum(ties & off_diag, axis=-1).astype(jnp.float32))


@jax.jit
def borda(scores):
    """Borda count: per method, the number of models scored strictly below plus
    half the number scored equal, summed over methods.

    Args:
      scores: [..., A, M]; NaN or infinite scores rank last within their method.

    Returns:
      [..., M] float32 points.
    """
    s = _finite_or_last(scores)
    below = jnp.sum((s[..., :, :, None] > s[..., :, None, :]).astype(jnp.float32), axis=-1)
    equal = jnp.sum((s[..., :, :, None] == s[..., :, None, :]).astype(jnp.float32), axis=-1) - 1.0
    return jnp.sum(below + 0.5 * jnp.maximum(equal, 0.0), axis=-2)


_METHODS = {"copeland": copeland, "borda": borda}


def aggregate(score_dict: Mapping[str, Sequence[float]], method: str = "copeland") -> np.ndarray:
    """Aggregate named per-model scores into one score per model (host helper).

    Args:
      score_dict: {method name: [M] scores, higher = better}; all of length M.
      method: "copeland" (paper Eq. 8) or "borda".

    Returns:
      np.ndarray [M] float32 aggregated points (higher = better).

    Raises:
      ValueError: empty dict, unknown method, NaN or infinite scores (naming the
        method and model indices), or arrays of different shapes / not 1-D.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")
    if not score_dict:
        raise ValueError("score_dict is empty")
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in score_dict.items()}
    shapes = {k: a.shape for k, a in arrays.items()}
    first = next(iter(shapes.values()))
    if len(first) != 1 or any(s != first for s in shapes.values()):
        raise ValueError(f"every score array must be 1-D with the same length, got {shapes}")
    for k, a in arrays.items():
        if not np.isfinite(a).all():
            raise ValueError(f"score_dict[{k!r}] has non-finite scores for models "
                             f"{np.flatnonzero(~np.isfinite(a)).tolist()}: a degenerate "
                             f"metric value cannot be ranked")
    stacked = np.stack(list(arrays.values()))
    # Only the order matters: replace each row by its dense ranks (exact ties kept)
    # so float64 scores that differ below float32 resolution still compare correctly.
    dense = np.stack([np.unique(row, return_inverse=True)[1].reshape(-1) for row in stacked])
    return np.asarray(_METHODS[method](dense.astype(np.float32)))
