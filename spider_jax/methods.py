"""Registry of transferability methods: how to score every PTM of a zoo for one task.

Each entry of :data:`METHODS` names a metric of :mod:`spider_jax.metrics` and the input it
reads from a feature bank:

* ``"features"``: the PTM's penultimate features ``[N, D_m]`` (every PTM has them);
* ``"source_probs"``: its source-head softmax ``[N, C_src]`` (only PTMs with a head);
* ``"source_labels"``: the argmax of that softmax (NCE), also head-only.

A method whose input a PTM lacks scores NaN for that PTM (skipped, never invented).

The batched layer, the one way metrics run on many inputs:

* :func:`batched_fn` / :func:`score_zoo`: one task, many PTMs sharing its labels (a
  ``vmap`` over PTMs of the same input width; one compilation per
  ``(method, N, width, C)``);
* :func:`over_tasks`: one PTM, many tasks each with its own labels and mask (a ``vmap``
  over tasks; the label pipeline's chunks);
* :func:`logme_hscore_over_tasks`: the fused route, LogME and the shrinkage H-Score of
  tasks with N <= D from one shared Gram (one eigh + one Cholesky per task);
* :func:`rankagg_scores`: RankAgg's inputs (:data:`RANKAGG_METHODS`) for a batch of
  tasks and every PTM, and their Copeland aggregate (Eq. 8), left on device.

Library use::

    from spider_jax import methods
    scores = methods.score_zoo("logme", inputs, labels, num_classes=C)   # [M]
    fn = methods.batched_fn("logme", num_classes=C)   # (x[G,N,D], labels[N], mask[N]) -> [G]
    fn = methods.over_tasks("logme", num_classes=C)   # (x[T,N,D], labels[T,N], mask[T,N]) -> [T]
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from spider_jax import metrics, rankagg
from spider_jax.metrics.hscore import centre, regularized_hscore_from_gram
from spider_jax.metrics.logme import logme_from_gram

__all__ = ["Method", "METHODS", "INPUTS", "RANKAGG_METHODS", "names", "needs_source_head",
           "input_of", "model_inputs", "batched_fn", "score_zoo", "available_for",
           "over_tasks", "logme_hscore_over_tasks", "hscore_variant", "rankagg_available",
           "rankagg_scores"]

INPUTS = ("features", "source_probs", "source_labels")

# The methods RankAgg aggregates (Copeland, Eq. 8), in the column order of every
# [T, len(RANKAGG_METHODS), M] score array (label cache, downstream labels, reports).
# "hscore" is plain or shrinkage H-Score by :func:`hscore_variant`.
RANKAGG_METHODS = ("hscore", "nce", "leep", "logme")


@dataclasses.dataclass(frozen=True)
class Method:
    """One transferability method.

    Attributes:
      name: registry key (also the ``spider_jax.metrics`` function for most).
      input: one of :data:`INPUTS`.
      fn: ``fn(x [N, W], labels [N], mask [N], *, num_classes, num_source_classes)`` ->
        scalar, higher = more transferable; pure and vmap-able.
      description: one line for reports.
    """

    name: str
    input: str
    fn: Callable
    description: str = ""


def _features(metric):
    def fn(x, labels, mask, *, num_classes, num_source_classes):
        del num_source_classes
        return metric(x, labels, num_classes=num_classes, mask=mask)
    return fn


def _nce(x, labels, mask, *, num_classes, num_source_classes):
    src = jnp.argmax(x, axis=-1).astype(jnp.int32)
    return metrics.nce(src, labels, num_source_classes=num_source_classes,
                       num_classes=num_classes, mask=mask)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("logme", "features", _features(metrics.logme), "LogME evidence (You et al. 2021)"),
    Method("hscore", "features", _features(metrics.hscore), "H-Score, pinv covariance"),
    Method("regularized_hscore", "features", _features(metrics.regularized_hscore),
           "H-Score with Ledoit-Wolf shrinkage"),
    Method("leep", "source_probs", _features(metrics.leep), "LEEP (Nguyen et al. 2020)"),
    Method("nce", "source_labels", _nce, "NCE on argmax source labels (Tran et al. 2019)"),
    Method("nleep", "features", _features(metrics.nleep), "N-LEEP: PCA 80% + GMM + LEEP"),
    Method("transrate", "features", _features(metrics.transrate), "TransRate coding rate"),
    Method("gbc", "features", _features(metrics.gbc), "GBC: PCA-64 Bhattacharyya"),
    Method("lfc", "features", _features(metrics.lfc), "LFC: Gram / label agreement"),
    Method("pactran_dirichlet", "source_probs", _features(metrics.pactran_dirichlet),
           "PACTran-Dirichlet ELBO on source probs"),
    Method("sfda", "features", _features(metrics.sfda), "SFDA (Shao et al. 2022)"),
)}


def names() -> tuple[str, ...]:
    """Every registered method, in registry order."""
    return tuple(METHODS)


def _get(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {names()}")
    return METHODS[name]


def input_of(name: str) -> str:
    """Which bank input the method reads (one of :data:`INPUTS`)."""
    return _get(name).input


def needs_source_head(name: str) -> bool:
    """True for methods reading source-head outputs (LEEP, NCE, PACTran)."""
    return _get(name).input in ("source_probs", "source_labels")


def available_for(name: str, model_info: Mapping) -> bool:
    """Whether a PTM (a bank ``model_info`` dict) has the input ``name`` needs."""
    return (not needs_source_head(name)) or bool(model_info.get("has_source_head", False))


def model_inputs(bank, dataset: str, models: Sequence[str], kind: str, rows=None,
                 split: str = "train") -> list[np.ndarray | None]:
    """Per PTM the float32 array a method of input ``kind`` reads (None when absent).

    Args:
      bank: an opened :class:`spider_jax.bank.Bank`.
      dataset, split: which bank array.
      models: PTM names (the M axis).
      kind: "features" or "source_probs" ("source_labels" reads "source_probs").
      rows: optional example indices (few-shot subsets); default all.
    """
    out = []
    for m in models:
        if kind == "features":
            a = bank.features(m, dataset, split)
        elif bank.model_info(m).get("has_source_head"):
            a = bank.source_probs(m, dataset, split)
        else:
            out.append(None)
            continue
        a = np.asarray(a if rows is None else a[rows], np.float32)
        out.append(a)
    return out


@functools.lru_cache(maxsize=None)
def batched_fn(name: str, *, num_classes: int, num_source_classes: int = 0) -> Callable:
    """The jitted ``(x [G, N, W], labels [N], mask [N]) -> [G]`` scorer of one method."""
    method = _get(name)
    one = functools.partial(method.fn, num_classes=int(num_classes),
                            num_source_classes=int(num_source_classes))
    return jax.jit(jax.vmap(one, in_axes=(0, None, None)))


def width_groups(inputs: Sequence[np.ndarray | None]) -> dict[int, list[int]]:
    """PTM indices grouped by input width (absent inputs left out), sorted by width."""
    groups: dict[int, list[int]] = {}
    for i, a in enumerate(inputs):
        if a is not None:
            groups.setdefault(int(a.shape[1]), []).append(i)
    return dict(sorted(groups.items()))


def _check(name: str, inputs, labels, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be [N], got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range "
                         f"[{labels.min()}, {labels.max()}]")
    for i, a in enumerate(inputs):
        if a is None:
            continue
        if a.ndim != 2 or a.shape[0] != labels.shape[0]:
            raise ValueError(f"{name}: input of PTM {i} has shape {a.shape}, expected "
                             f"[N={labels.shape[0]}, W]")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: input of PTM {i} contains NaN/Inf")
    return labels.astype(np.int32)


@functools.lru_cache(maxsize=512)
def _compiled(name: str, num_classes: int, num_source_classes: int, g: int, n: int, w: int):
    """AOT-compiled batched scorer for one shape (cached), plus its compile time."""
    import time

    fn = batched_fn(name, num_classes=num_classes, num_source_classes=num_source_classes)
    t0 = time.perf_counter()
    compiled = fn.lower(jax.ShapeDtypeStruct((g, n, w), jnp.float32),
                        jax.ShapeDtypeStruct((n,), jnp.int32),
                        jax.ShapeDtypeStruct((n,), jnp.float32)).compile()
    return compiled, time.perf_counter() - t0


def _memory_bytes(compiled) -> int:
    """Arguments + outputs + temporaries of a compiled executable (0 if unknown)."""
    try:
        m = compiled.memory_analysis()
        return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes)
    except Exception:  # noqa: BLE001 - some backends do not report it
        return 0


def score_zoo(name: str, inputs: Sequence[np.ndarray | None], labels, *, num_classes: int,
              mask=None, stats: dict | None = None) -> np.ndarray:
    """Scores every PTM of one task with one method.

    Args:
      name: a key of :data:`METHODS`.
      inputs: per PTM the array of the method's input kind (``model_inputs``), or None
        where the PTM lacks it (e.g. no source head): that PTM scores NaN.
      labels: [N] int class indices in [0, num_classes).
      num_classes: C (static).
      mask: optional [N] (1 = real example).
      stats: optional dict, filled with "compile_s" (new compilations only), "run_s"
        (execution wall time, compilation excluded) and "bytes" (largest compiled
        executable: arguments + outputs + temporaries, XLA's memory analysis).

    Returns:
      np.float64 [M] scores, higher = more transferable, NaN where skipped.
    """
    import time

    method = _get(name)
    labels = _check(name, inputs, labels, num_classes)
    n = labels.shape[0]
    mask = np.ones(n, np.float32) if mask is None else np.asarray(mask, np.float32)
    out = np.full(len(inputs), np.nan)
    compile_s = run_s = 0.0
    peak = 0
    for width, idx in width_groups(inputs).items():
        src = width if method.input != "features" else 0
        hits = _compiled.cache_info().hits
        compiled, c_s = _compiled(name, int(num_classes), src, len(idx), n, width)
        if _compiled.cache_info().hits == hits:
            compile_s += c_s
        x = jnp.asarray(np.stack([inputs[i] for i in idx]))
        y, m = jnp.asarray(labels), jnp.asarray(mask)
        t0 = time.perf_counter()
        res = np.asarray(jax.block_until_ready(compiled(x, y, m)), np.float64)
        run_s += time.perf_counter() - t0
        out[idx] = res
        peak = max(peak, _memory_bytes(compiled))
    if stats is not None:
        stats.update(compile_s=compile_s, run_s=run_s, bytes=peak)
    return out


# ----------------------------------------------------------------------------- over tasks
@functools.lru_cache(maxsize=None)
def over_tasks(name: str, *, num_classes: int, num_source_classes: int = 0) -> Callable:
    """The jitted ``(x [T, N, W], labels [T, N], mask [T, N]) -> [T]`` scorer of one
    method: one PTM, T tasks each with its own labels."""
    method = _get(name)
    one = functools.partial(method.fn, num_classes=int(num_classes),
                            num_source_classes=int(num_source_classes))
    return jax.jit(jax.vmap(one))


def _logme_regularized_hscore(f, y, m, *, num_classes):
    """(LogME, regularised H-Score) of one (task, PTM) with N <= D from one centred Gram.

    ``Gc = X X^T`` of the centred, masked features gives the shrinkage H-Score by a
    Cholesky solve (``metrics.hscore.regularized_hscore_from_gram``); LogME's uncentred Gram of
    the masked features ``F_m = X + w mu^T`` is ``Gc + v w^T + w v^T + |mu|^2 w w^T``
    with ``v = X mu`` (one N x N x D product instead of two), then one eigh.
    """
    x, w, n_real, mean = centre(f, m)
    onehot = jax.nn.one_hot(y, num_classes, dtype=x.dtype) * w[:, None]
    gc = x @ x.T
    v = x @ mean
    g = (gc + v[:, None] * w[None, :] + w[:, None] * v[None, :]
         + jnp.dot(mean, mean) * (w[:, None] * w[None, :]))
    present = (jnp.sum(onehot, axis=0) > 0).astype(x.dtype)
    dim = f.shape[1]
    return (logme_from_gram(g, onehot, n_real, present, dim),
            regularized_hscore_from_gram(gc, onehot, n_real, dim))


@functools.partial(jax.jit, static_argnames=("num_classes",))
def logme_hscore_over_tasks(features, labels, mask, *, num_classes):
    """LogME and regularised H-Score, features [T, N, D] (N <= D) -> 2 x [T].

    One jit holding both (they share the Gram): one eigh (LogME) and one Cholesky
    (H-Score). Other metrics run in their own jits.
    """
    return jax.vmap(functools.partial(_logme_regularized_hscore, num_classes=num_classes))(
        features, labels, mask)


# ----------------------------------------------------------------------------- RankAgg
def hscore_variant(rule: str, num_examples: int, max_dim: int) -> str:
    """Which H-Score RankAgg uses: "plain" or "regularized".

    Plain H-Score is degenerate when N is not much larger than D (pinv of a rank-deficient
    covariance gives C-1 for every PTM): ``rule="auto"`` takes the shrinkage H-Score
    unless ``N >= 10 * D``; "plain" / "regularized" force one.
    """
    if rule not in ("auto", "plain", "regularized"):
        raise ValueError(f"label.hscore must be auto|plain|regularized, got {rule!r}")
    if rule != "auto":
        return rule
    return "plain" if num_examples >= 10 * max_dim else "regularized"


def rankagg_available(zoo, methods) -> tuple[str, ...]:
    """Methods of ``methods`` computable for every PTM of the zoo (the Copeland inputs)."""
    out = []
    for name in methods:
        if name not in RANKAGG_METHODS:
            raise ValueError(f"unknown method {name!r}; choose from {RANKAGG_METHODS}")
        if name in ("nce", "leep") and not all(zoo.has_source_head):
            continue
        out.append(name)
    if not out:
        raise ValueError(f"no method in {tuple(methods)} is available for every PTM")
    return tuple(out)


@functools.partial(jax.jit, static_argnames=("used",))
def _copeland(scores, *, used: tuple[int, ...]):
    """[T, A, M] -> [T, M] Copeland points over the methods ``used`` (indices of A)."""
    return jax.vmap(rankagg.copeland)(scores[:, list(used)])


def rankagg_scores(batch: Mapping, zoo, *, num_classes: int, hscore: str,
                   methods=RANKAGG_METHODS, put: Callable = jax.device_put
                   ) -> tuple[jax.Array, jax.Array]:
    """RankAgg's metrics and Copeland points for T tasks and every PTM, on device.

    Args:
      batch: ``TaskSampler.materialize`` output (``features`` and ``source_probs`` per PTM
        [T, N, W], ``labels`` and ``example_mask`` [T, N]).
      zoo: the zoo (M PTMs; which have a source head, their source class counts).
      num_classes: padded class count C (static).
      hscore: "plain" | "regularized" (:func:`hscore_variant`).
      methods: the subset of :data:`RANKAGG_METHODS` to compute.
      put: places a host array for the computation (``jax.device_put``, or a sharding
        placement such as ``parallel.host_to_global``).

    Returns:
      (metric_scores [T, len(RANKAGG_METHODS), M] float32, NaN where not computed,
       rank_labels [T, M] Copeland points over :func:`rankagg_available`), on device.
    """
    labels = put(np.asarray(batch["labels"]))
    mask = put(np.asarray(batch["example_mask"], np.float32))
    m = zoo.num_models
    wanted = set(methods)
    cols: dict[str, list] = {name: [None] * m for name in RANKAGG_METHODS}
    hs_name = "regularized_hscore" if hscore == "regularized" else "hscore"
    # One PTM at a time (vmap over tasks): no [T, M, N, D] stack to copy, and PTMs of the
    # same feature shape share one compiled executable.
    for i in range(m):
        feats = put(np.asarray(batch["features"][i]))                  # [T, N, D]
        n, dim = feats.shape[1], feats.shape[2]
        if {"logme", "hscore"} <= wanted and hscore == "regularized" and n <= dim:
            cols["logme"][i], cols["hscore"][i] = logme_hscore_over_tasks(
                feats, labels, mask, num_classes=num_classes)
        else:
            if "logme" in wanted:
                cols["logme"][i] = over_tasks("logme", num_classes=num_classes)(
                    feats, labels, mask)
            if "hscore" in wanted:
                cols["hscore"][i] = over_tasks(hs_name, num_classes=num_classes)(
                    feats, labels, mask)
        del feats
        if {"leep", "nce"} & wanted and zoo.has_source_head[i]:
            probs = put(np.asarray(batch["source_probs"][i]))          # [T, N, S]
            if "leep" in wanted:
                cols["leep"][i] = over_tasks("leep", num_classes=num_classes)(
                    probs, labels, mask)
            if "nce" in wanted:
                cols["nce"][i] = over_tasks(
                    "nce", num_classes=num_classes,
                    num_source_classes=zoo.num_source_classes[i])(probs, labels, mask)
    # explicit transfer; ``put`` takes this host's rows (multi-process: a slice of the T)
    nan = put(np.full((len(batch["labels"]),), np.nan, np.float32))
    scores = jnp.stack([jnp.stack([nan if c is None else c.astype(jnp.float32)
                                   for c in cols[name]], axis=-1)
                        for name in RANKAGG_METHODS], axis=1)             # [T, A, M]
    return scores, rankagg_labels(scores, zoo, methods)


def rankagg_labels(scores, zoo, methods=RANKAGG_METHODS) -> jax.Array:
    """[T, A, M] metric scores (columns in zoo order) -> [T, M] Copeland points over
    :func:`rankagg_available` (e.g. cached metrics of a zoo grown by one PTM)."""
    used = tuple(RANKAGG_METHODS.index(a) for a in rankagg_available(zoo, methods))
    return _copeland(jnp.asarray(scores), used=used).astype(jnp.float32)

