"""One inference path for a trained scorer: class centres, Algorithm 2, ranks.

* :func:`class_centres`: the masked segment mean of Eq. 5 (psi and PTM-specific centres).
* :func:`k0_scores`: the coarse ranking (k = 0), by :mod:`spider_jax.fastpath` when the
  folded parameters are given, else ``model.apply``.
* :func:`topk_mask` and :func:`rerank_scores`: paper Algorithm 2, batched and on device:
  the top ``k`` PTMs of the k = 0 scores (ties by zoo order) are rescored with their
  PTM-specific class centres, the rest keep their k = 0 score.  Training evaluation, the
  Ranker, batch scoring and the benchmark all go through these.
* :func:`hybrid_merge` (issue 11 item 5, beyond the paper): at a budget k > 0 the top-k
  PTMs run forward anyway, so their own features can be scored by a forward-based metric
  (LogME by default).  Merge rule ("block"): the k = 0 ranking decides *which* PTMs form
  the top-k block and everything below it; the metric decides the order *inside* the
  block: the block's k = 0 scores, sorted descending, are reassigned to its PTMs in the
  metric's descending order (metric ties keep the k = 0 order; NaN sorts last), so the
  block stays above the rest, the rest keep their k = 0 scores and the score scale is
  unchanged.  At k = 1 it equals k = 0; at k = M it is the metric's ranking.
  :func:`rerank_scores` with ``metric=`` runs it instead of the PTM-specific tokens.
* :func:`order_from_scores` / :func:`ranks_from_scores`: ranks from scores (1 = best,
  ties by zoo order), the one rule every report uses.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from spider_jax.fastpath import fast_scores

__all__ = ["class_centres", "centres_from_examples", "k0_scores", "specific_scores",
           "topk_mask", "hybrid_merge", "rerank_scores", "rescore", "rerank_tasks", "bucket", "order_from_scores", "ranks_from_scores"]


@functools.partial(jax.jit, static_argnames=("num_classes",))
def class_centres(features: jax.Array, labels: jax.Array, example_mask: jax.Array, *,
                  num_classes: int) -> tuple[jax.Array, jax.Array]:
    """Fixed-shape masked segment mean: the class centres of Eq. 5.

    ``centre_c = sum_i [y_i = c] m_i f_i / max(1, sum_i [y_i = c] m_i)``.

    Args:
      features: [N, D] features (any float dtype; computed in float32).
      labels: [N] int class indices in ``[0, num_classes)``.
      example_mask: [N] bool/float, 1 for real examples (padding rows are ignored).
      num_classes: C, the padded class count (static).

    Returns:
      (centres [C, D] float32 (zeros for empty classes), class_mask [C] bool: class has an
      example).
    """
    onehot = (labels[:, None] == jnp.arange(num_classes, dtype=labels.dtype)[None, :]) \
        & (example_mask[:, None] > 0)                                       # [N, C]
    onehot = onehot.astype(jnp.float32)
    counts = onehot.sum(axis=0)                                             # [C]
    sums = jnp.einsum("nc,nd->cd", onehot, features.astype(jnp.float32),
                      precision=jax.lax.Precision.HIGHEST)
    return sums / jnp.maximum(counts, 1.0)[:, None], counts > 0


def bucket(n: int, minimum: int = 16) -> int:
    """Next power of two >= n (>= minimum): one compile serves every N in a bucket."""
    return max(minimum, 1 << max(0, int(n) - 1).bit_length())


def centres_from_examples(features: np.ndarray, labels: np.ndarray, num_classes: int):
    n = features.shape[0]
    nb = bucket(n)
    feats = np.zeros((nb, features.shape[1]), np.float32)
    feats[:n] = features
    labs = np.zeros((nb,), np.int32)
    labs[:n] = labels
    mask = np.zeros((nb,), bool)
    mask[:n] = True
    centres, cmask = class_centres(feats, labs, mask, num_classes=num_classes)
    return np.asarray(centres), np.asarray(cmask)


def k0_scores(model: Any, variables: Mapping[str, Any], psi_centres: jax.Array,
              class_mask: jax.Array, fast: Mapping[str, Any] | None = None) -> jax.Array:
    """[B, M] k = 0 scores (pure): the fast path when ``fast`` is given, else ``model.apply``."""
    if fast is not None:
        return fast_scores(fast, psi_centres, class_mask)
    return model.apply(variables, psi_centres, class_mask, deterministic=True)


def specific_scores(model: Any, variables: Mapping[str, Any], psi_centres: jax.Array,
                    class_mask: jax.Array, specific_centres: jax.Array,
                    specific_mask: jax.Array) -> jax.Array:
    """[B, M] scores with PTM-specific tokens for the PTMs ``specific_mask`` marks (pure)."""
    return model.apply(variables, psi_centres, class_mask,
                       specific_centres.astype(jnp.float32), specific_mask, deterministic=True)


def topk_mask(scores: jax.Array, k: int) -> jax.Array:
    """[B, M] bool: the ``k`` best PTMs per task (ties: the earlier PTM of the zoo wins)."""
    _, top = jax.lax.top_k(scores, k)          # equal scores: lower index first
    m = scores.shape[-1]
    return jnp.any(top[..., None] == jnp.arange(m).reshape((1,) * top.ndim + (m,)), axis=-2)


def _descending_stable(x: jax.Array) -> jax.Array:
    """Indices by descending value (ties: lower index first; NaN last)."""
    return jnp.argsort(jnp.where(jnp.isnan(x), jnp.inf, -x), axis=-1, stable=True)


@jax.jit
def hybrid_merge(coarse: jax.Array, metric: jax.Array, chosen: jax.Array) -> jax.Array:
    """The block merge rule (module docstring), batched and pure: [B, M] merged scores.

    Args:
      coarse: [B, M] k = 0 scores.
      metric: [B, M] forward-based metric scores; only the ``chosen`` entries are read
        (others may be NaN: PTMs that did not run).
      chosen: [B, M] bool, the top-k block of ``coarse`` (:func:`topk_mask`).
    """
    rows = jnp.arange(coarse.shape[0])[:, None]
    inf = jnp.asarray(jnp.inf, coarse.dtype)
    block_first = _descending_stable(jnp.where(chosen, coarse, -inf))    # block, k=0 order
    by_metric = _descending_stable(jnp.where(chosen, metric, -inf)[rows, block_first])
    new_order = block_first[rows, by_metric]               # block by metric (ties: k=0 order)
    values = -jnp.sort(-jnp.where(chosen, coarse, -inf), axis=-1)   # block scores, descending
    in_block = jnp.arange(coarse.shape[-1])[None, :] < jnp.sum(chosen, -1, keepdims=True)
    keep = coarse[rows, new_order]
    return coarse.at[rows, new_order].set(jnp.where(in_block, values, keep))


@functools.partial(jax.jit, static_argnames=("model", "k"))
def rerank_scores(model: Any, variables: Mapping[str, Any], psi_centres: jax.Array,
                  class_mask: jax.Array, specific_centres: jax.Array | None = None, *,
                  k: int, fast: Mapping[str, Any] | None = None,
                  metric: jax.Array | None = None) -> jax.Array:
    """Algorithm 2 for a batch of tasks, on device: [B, M] final scores.

    Args:
      model, variables: the scorer and ``{"params": ...}``.
      psi_centres: [B, C, D_psi]; class_mask: [B, C].
      specific_centres: [B, M, C, D_max] PTM-specific class centres (only the top-k rows
        are read); unused when ``k == 0`` or with ``metric``.
      k: re-ranking budget (static).
      fast: :func:`spider_jax.fastpath.prepare_fast` output for the coarse pass (optional).
      metric: [B, M] forward-based metric scores (only the top-k are read): the hybrid
        re-ranking (:func:`hybrid_merge`) instead of the PTM-specific tokens.
    """
    coarse = k0_scores(model, variables, psi_centres, class_mask, fast)
    if k <= 0:
        return coarse
    chosen = topk_mask(coarse, k)
    if metric is not None:
        return hybrid_merge(coarse, metric, chosen)
    return _rescore(model, variables, psi_centres, class_mask, specific_centres, chosen, coarse)


def _rescore(model, variables, psi_centres, class_mask, specific_centres, chosen, coarse):
    return jnp.where(chosen, specific_scores(model, variables, psi_centres, class_mask,
                                             specific_centres, chosen), coarse)


rescore = jax.jit(_rescore, static_argnames=("model",))
rescore.__doc__ = """Algorithm 2's second stage, on device: ``chosen`` [B, M] PTMs (the top k of
``coarse``, chosen by :func:`topk_mask` or by the caller after running their forward
passes) rescored with ``specific_centres``; the others keep ``coarse``."""


def rerank_tasks(model: Any, params: Any, tasks: Mapping[str, Any], k: int,
                 metric: np.ndarray | None = None) -> np.ndarray:
    """:func:`rerank_scores` of a dict of task arrays (``psi_centres``, ``class_mask``,
    ``specific_centres`` when k > 0), brought to the host: [T, M] float32.  ``metric``:
    [T, M] metric scores for the hybrid re-ranking."""
    return np.asarray(jax.device_get(rerank_scores(
        model, {"params": params}, tasks["psi_centres"], tasks["class_mask"],
        tasks.get("specific_centres") if k > 0 and metric is None else None, k=int(k),
        metric=None if metric is None else jax.device_put(np.asarray(metric, np.float32)))))


def order_from_scores(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score; ties broken by zoo order (deterministic)."""
    return np.argsort(-np.asarray(scores, np.float64), axis=-1, kind="stable")


def ranks_from_scores(scores: np.ndarray) -> np.ndarray:
    """[..., M] scores -> [..., M] ranks (1 = best; ties by zoo order)."""
    order = order_from_scores(scores)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(1, order.shape[-1] + 1), order.shape),
                      axis=-1)
    return ranks
