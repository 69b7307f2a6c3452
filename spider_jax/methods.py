"""Registry of transferability methods: how to score every PTM of a zoo for one task.

Each entry of :data:`METHODS` names a metric of :mod:`spider_jax.metrics` and the input it
reads from a feature bank:

* ``"features"``: the PTM's penultimate features ``[N, D_m]`` (every PTM has them);
* ``"source_probs"``: its source-head softmax ``[N, C_src]`` (only PTMs with a head);
* ``"source_labels"``: the argmax of that softmax (NCE), also head-only.

A method whose input a PTM lacks scores NaN for that PTM (skipped, never invented).
:func:`score_zoo` scores all PTMs of one task, batched: PTMs whose input has the same
width are stacked and scored by one jitted ``vmap`` (one compilation per
``(method, N, width, C)``), PTMs of another width get their own call. Metrics are never
fused into one jit with another metric (see ``spider_jax.label``: XLA:CPU deadlocked on
a fused LogME + H-Score executable).

Library use (label.py can reuse the same table)::

    from spider_jax import methods
    scores = methods.score_zoo("logme", inputs, labels, num_classes=C)   # [M]
    fn = methods.batched_fn("logme", num_classes=C)   # (x[G,N,D], labels[N], mask[N]) -> [G]
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from spider_jax import metrics

__all__ = ["Method", "METHODS", "INPUTS", "names", "needs_source_head", "input_of",
           "model_inputs", "batched_fn", "score_zoo", "available_for"]

INPUTS = ("features", "source_probs", "source_labels")


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
