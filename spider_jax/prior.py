"""The zoo prior and the two ways of falling back to it (issue 11 item 4).

* :func:`zoo_prior` is each PTM's mean ground-truth accuracy over the training pool's
  datasets: the static ranking that never looks at the task. Training stores it in the
  run's ``zoo.json`` (``zoo_prior``), so a :class:`spider_jax.ranker.Ranker` can anchor on it.
* :func:`anchored` is the prior-anchored score ``z(prior) + w z(scores)`` per task (w = 0:
  the prior alone; w = inf: the scorer alone), the k = 0 score the LOGO benchmark
  (:mod:`spider_jax.logo`) reports as ``spider_k0``, with w chosen on a validation group.

The rest are the training-side pieces of the prior + residual scorer (model.py has the head):

* :func:`gate_reference` calibrates the distance gate of
  :func:`spider_jax.model.residual_gate` from the training pool of a bank:

  - reference set: the psi class centres of every class of every ``train``-pool dataset
    (all its examples), ``R = gate_refs`` of them (a seeded random subset when there are
    more, cycled when there are fewer: repeats change no nearest-neighbour distance);
  - scale: the ``quantile`` of the *leave-own-dataset-out* nearest-reference distance of
    every training class centre, i.e. how far a class of a new dataset typically lies from
    the classes of the other training datasets (with a single training dataset: leave-own-
    class-out).  A task whose classes are on average no farther gets gate 1 (the full
    residual); ``2 x scale`` gives ``exp(-1)``, ``3 x scale`` ``exp(-2)``.

  It reads only the training pool, never a downstream or held-out dataset.
* :func:`with_gate` writes the reference and scale into fresh parameters (every ensemble
  member gets the same), :func:`param_labels` marks them frozen for the optimizer
  (``optax.multi_transform`` with ``optax.set_to_zero``).
"""

from __future__ import annotations

import jax
import numpy as np

from spider_jax import model as model_lib
from spider_jax.sampler import class_centres

__all__ = ["zoo_prior", "anchored", "check_weight", "prior_vector", "gate_reference", "with_gate",
           "param_labels", "uses_gate"]


def zoo_prior(bank, models, pool: str = "train") -> dict | None:
    """The zoo prior of a single-modality bank's ``pool`` datasets, or None without any.

    Returns ``{"models": [M], "accuracy": [M] mean linear-probe accuracy over the datasets,
    "datasets": [the datasets averaged]}``; a dataset whose ground truth is missing or lacks
    one of ``models`` is left out (it cannot rank every PTM).
    """
    models = list(models)
    rows, used = [], []
    for ds in bank.pool(pool):
        gt = bank.groundtruth(ds)
        if gt is None:
            continue
        where = {m: i for i, m in enumerate(gt["models"])}
        if not all(m in where for m in models):
            continue
        rows.append([float(gt["mean"][where[m]]) for m in models])
        used.append(ds)
    if not rows:
        return None
    return {"models": models, "accuracy": np.mean(np.asarray(rows, np.float64), axis=0).tolist(),
            "datasets": used}


def prior_vector(stored: dict | None, models) -> np.ndarray | None:
    """A stored :func:`zoo_prior` as an [M] array in the order of ``models`` (None when
    nothing is stored); ValueError when it does not cover every PTM."""
    if not stored:
        return None
    where = {m: i for i, m in enumerate(stored["models"])}
    missing = [m for m in models if m not in where]
    if missing:
        raise ValueError(f"the stored zoo prior has no accuracy for {missing[:5]} (a zoo "
                         f"extended after training?): pass the prior explicitly")
    acc = np.asarray(stored["accuracy"], np.float64)
    return np.asarray([acc[where[m]] for m in models])


def check_weight(weight) -> float:
    """The anchor weight as a float; ValueError unless it is >= 0 (inf allowed)."""
    weight = float(weight)
    if np.isnan(weight) or weight < 0:
        raise ValueError(f"the anchor weight must be >= 0 (inf: the scorer alone), got {weight}")
    return weight


def anchored(prior: np.ndarray, raw: np.ndarray, weight: float) -> np.ndarray:
    """The prior-anchored score ``z(prior) + weight * z(raw)`` per task, [..., M] float64.

    ``prior``: [M]; ``raw``: [M] or [T, M] scores (higher = better); ``z``: the z-score over
    the PTMs (a constant row gives zeros). ``weight`` = inf returns ``raw`` (the scorer
    alone), 0 the prior alone (broadcast to ``raw``'s shape).
    """
    weight = check_weight(weight)
    raw = np.asarray(raw, np.float64)
    prior = np.asarray(prior, np.float64)
    if prior.shape != raw.shape[-1:]:
        raise ValueError(f"zoo prior of shape {prior.shape} for scores of shape {raw.shape}")
    if np.isinf(weight):
        return raw
    from spider_jax.probe import standardise

    return standardise(prior, np.float64) + weight * standardise(raw, np.float64)


def uses_gate(config) -> bool:
    """Whether ``config`` builds a scorer with the distance gate."""
    mc = config.model
    return bool(mc.get("prior_residual", False)) and int(mc.get("gate_refs", 0)) > 0


def _pool_centres(bank, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """psi class centres [K, D_psi] of every train-pool dataset and their dataset ids [K]."""
    centres, ids = [], []
    for j, ds in enumerate(bank.pool("train")):
        labels = np.asarray(bank.labels(ds, split))
        num_c = int(bank.dataset_info(ds)["num_classes"])
        c = class_centres(np.asarray(bank.psi(ds, split), np.float32), labels,
                          np.ones(labels.shape[0], bool), num_c)
        present = np.bincount(labels, minlength=num_c) > 0
        centres.append(c[present])
        ids.append(np.full(int(present.sum()), j))
    if not centres:
        raise ValueError("the bank has no dataset in the 'train' pool (gate reference)")
    return np.concatenate(centres).astype(np.float32), np.concatenate(ids)


def _nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[A, B] Euclidean distances (float64)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


def gate_reference(bank, *, num_refs: int, quantile: float = 0.9, seed: int = 0
                   ) -> tuple[np.ndarray, float]:
    """(reference centres [num_refs, D_psi] float32, scale) of a single-modality bank.

    See the module docstring for the rule.  ``quantile`` in (0, 1].
    """
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"model.gate_quantile must be in (0, 1], got {quantile}")
    if num_refs < 1:
        raise ValueError(f"model.gate_refs must be >= 1, got {num_refs}")
    centres, ids = _pool_centres(bank)
    k = centres.shape[0]
    rng = np.random.default_rng([seed, 303])
    pick = np.sort(rng.choice(k, num_refs, replace=False)) if k > num_refs \
        else np.resize(np.arange(k), num_refs)
    ref, ref_ids = centres[pick], ids[pick]
    dist = _nearest(centres, ref)                                   # [K, R]
    if len(np.unique(ids)) > 1:
        dist[ids[:, None] == ref_ids[None, :]] = np.inf             # other datasets only
    else:
        dist[np.arange(k)[:, None] == pick[None, :]] = np.inf      # other classes only
    near = dist.min(axis=1)
    near = near[np.isfinite(near)]
    if near.size == 0:
        raise ValueError("the training pool has a single class: no gate scale to calibrate")
    scale = float(np.quantile(near, quantile))
    return ref.astype(np.float32), max(scale, 1e-6)


def with_gate(params, ref: np.ndarray, scale: float):
    """``params`` with the gate's frozen reference and scale set (ensembles: every member).

    Leaves keep their sharding (replicated train state).
    """
    def put(old, value):
        value = np.broadcast_to(np.asarray(value, np.float32), old.shape)
        sharding = getattr(old, "sharding", None)
        return jax.device_put(value, sharding) if sharding is not None else value

    def fill(p):
        if "gate_ref" not in p:
            raise ValueError("the scorer has no distance gate (model.gate_refs = 0)")
        return {**p, "gate_ref": put(p["gate_ref"], ref), "gate_scale": put(p["gate_scale"], scale)}

    if "members" in params:
        return {**params, "members": fill(params["members"])}
    return fill(params)


def param_labels(params):
    """"frozen" for the gate's reference/scale, "train" for every other parameter."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "frozen" if model_lib.is_frozen_param(path) else "train", params)
