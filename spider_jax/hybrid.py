"""Hybrid budgeted re-ranking (issue 11 item 5; beyond the paper's Algorithm 2).

At a budget k > 0 the top-k PTMs of the k = 0 ranking run forward on the task anyway.
Besides the paper's re-scoring with PTM-specific tokens, the hybrid scores those k PTMs'
own features with a forward-based metric (``config.eval.hybrid_metric``, LogME by
default; any feature-input method of :mod:`spider_jax.methods`) and merges:

    Merge rule ("block"): the k = 0 ranking decides *which* PTMs form the top-k block and
    everything below it; the metric decides the order *inside* the block.  Concretely the
    block's k = 0 scores, sorted descending, are reassigned to its PTMs in the metric's
    descending order, so the block stays above the rest, the rest keep their k = 0 scores,
    and score scales are unchanged.

At k = 1 the block is one PTM, so the hybrid equals k = 0 (no forward result can move a
PTM it cannot compare); at k = M it is the metric's ranking.  Ties: the k = 0 order
breaks ties by zoo index (as ``ranker.order_from_scores``), the metric's order as well; a
NaN metric score sorts last within the block.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

__all__ = ["hybrid_merge", "topk_mask"]


def _descending(x):
    """Indices by descending value, ties by index, NaN last (stable)."""
    key = jnp.where(jnp.isnan(x), jnp.inf, -x)
    return jnp.argsort(key, axis=-1, stable=True)


@functools.partial(jax.jit, static_argnames=("k",))
def topk_mask(coarse, *, k: int):
    """[B, M] bool: the top-k PTMs of each task's k = 0 scores (ties: lower index first)."""
    top = _descending(coarse)[..., :k]
    return jnp.zeros(coarse.shape, bool).at[
        jnp.arange(coarse.shape[0])[:, None], top].set(True)


@functools.partial(jax.jit, static_argnames=("k",))
def hybrid_merge(coarse, metric, *, k: int):
    """The block merge rule (module docstring), batched and pure.

    Args:
      coarse: [B, M] k = 0 scores.
      metric: [B, M] metric scores; only the top-k of ``coarse`` are read (others may
        be anything, e.g. NaN for PTMs that did not run).
      k: the budget (static), 0 <= k <= M.

    Returns:
      [B, M] merged scores.
    """
    if k <= 1:
        return coarse
    rows = jnp.arange(coarse.shape[0])[:, None]
    top = _descending(coarse)[..., :k]                     # [B, k] block, best first
    block_scores = coarse[rows, top]                       # descending
    by_metric = _descending(metric[rows, top])             # block positions, metric order
    return coarse.at[rows, top[rows, by_metric]].set(block_scores)
