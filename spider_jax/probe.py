"""Linear-probe supervision for sampled training tasks (issue 11 item 3; not in the paper).

``config.label.supervision`` chooses what the scorer is trained to rank:

* ``"rankagg"`` (default, the paper, section 4.3): Copeland points over the
  transferability metrics (:mod:`spider_jax.label`).
* ``"probe"``: each PTM's linear-probe accuracy on the sampled task, the same protocol as
  the ground truth (:mod:`spider_jax.groundtruth`: stratified K-fold CV of the closed-form
  ridge classifier on standardised frozen features, the alpha with the best mean fold
  accuracy), so training targets and evaluation truth measure the same thing.
* ``"both"``: a combination, ``config.label.combine``:

  - ``"zsum"`` (default): ``(1 - w) z(rankagg) + w z(probe)`` with ``w =
    config.label.probe_weight`` (default 0.5) and ``z`` the per-task standardisation over
    the M PTMs (mean 0, sd 1; a constant row gives zeros), so the two scales are
    comparable and a tie in one is broken by the other;
  - ``"copeland"``: Copeland points over the RankAgg methods *plus* the probe accuracy as
    one more ranking (the probe is one vote among the A + 1).

The probe has the ground truth's two backends (``config.label.probe_backend``, default
``"auto"``: ``"numpy"`` on a CPU-only single-process JAX, else ``"jax"``):

* ``"jax"``: ``groundtruth.cv_accuracy``, one compiled, vmapped call per PTM over the T
  tasks of a chunk (fixed shapes ``[T, N_max, D_m]`` with example and class masks; padded
  rows have no fold and no weight); sharded over a mesh on accelerators;
* ``"numpy"``: ``ridge_cv.cv_accuracy_pairs``, every (task, PTM) pair with its real rows in
  worker processes of one BLAS thread each (dual-form Cholesky solves), the ground truth's
  CPU kernel: same protocol and folds, several times faster on a CPU than the jitted path
  (whose per-fold eigendecompositions run on XLA's intra-op pool, one thread in the LOGO
  benchmark). A batch with a class smaller than the fold count (which the NumPy kernel
  refuses) takes the jitted path.  Its settings are
``config.label.probe_folds`` (K, default 5), ``probe_seeds`` (fold seeds, default (0,);
several are averaged) and ``probe_alphas`` (default ``groundtruth.DEFAULT_ALPHAS``).  A
sampled class with fewer examples than folds is simply absent from some training folds
(equally for every PTM).

The labels are cached beside the RankAgg chunks (``probe_XXXXXXX.npz`` and their own
fingerprint ``probe_meta.json``, see :mod:`spider_jax.label`), so switching supervision
reuses the metric labels and an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np

from spider_jax import groundtruth, rankagg
from spider_jax.methods import RANKAGG_METHODS

__all__ = ["SUPERVISIONS", "COMBINES", "PROBE_BACKENDS", "needs_probe", "probe_settings",
           "probe_backend", "probe_fingerprint", "probe_batch", "probe_accuracy",
           "supervision_targets", "standardise"]

SUPERVISIONS = ("rankagg", "probe", "both")
COMBINES = ("zsum", "copeland")


def _label_cfg(config, key, default):
    return config.label.get(key, default)


def supervision(config) -> str:
    s = str(_label_cfg(config, "supervision", "rankagg"))
    if s not in SUPERVISIONS:
        raise ValueError(f"label.supervision must be one of {SUPERVISIONS}, got {s!r}")
    return s


def needs_probe(config) -> bool:
    """Whether ``config`` trains on probe labels (``"probe"`` or ``"both"``)."""
    return supervision(config) != "rankagg"


def probe_settings(config) -> dict:
    """The probe protocol of ``config.label`` (validated)."""
    folds = int(_label_cfg(config, "probe_folds", 5))
    seeds = tuple(int(s) for s in _label_cfg(config, "probe_seeds", (0,)))
    alphas = tuple(float(a) for a in _label_cfg(config, "probe_alphas",
                                                  groundtruth.DEFAULT_ALPHAS))
    if folds < 2:
        raise ValueError(f"label.probe_folds must be >= 2, got {folds}")
    if not seeds or not alphas or min(alphas) <= 0:
        raise ValueError(f"label.probe_seeds and label.probe_alphas (> 0) must be non-empty, "
                         f"got {seeds} / {alphas}")
    return dict(folds=folds, seeds=list(seeds), alphas=list(alphas))


def probe_fingerprint(base_meta: dict, config) -> dict:
    """The probe cache's fingerprint: the task pool's (``base_meta``) plus the protocol."""
    meta = dict(tasks=base_meta["hash"], probe=probe_settings(config))
    meta["hash"] = hashlib.sha1(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    return meta


def _fold_ids(labels: np.ndarray, mask: np.ndarray, num_folds: int, seeds) -> np.ndarray:
    """[T, S, N] stratified fold of every real example (padding: fold -1, never used)."""
    t, n = labels.shape
    out = np.full((t, len(seeds), n), -1, np.int32)
    for i in range(t):
        real = np.flatnonzero(mask[i])
        for j, s in enumerate(seeds):
            out[i, j, real] = groundtruth.stratified_folds(labels[i, real], num_folds, s)
    return out


@jax.jit
def probe_accuracy(acc):
    """[..., S, K, A] fold accuracies -> [...]: the best alpha's mean over seeds and folds."""
    return jnp.max(jnp.mean(acc, axis=(-3, -2)), axis=-1)


PROBE_BACKENDS = ("auto", "numpy", "jax")


def probe_backend(config) -> str:
    """``config.label.probe_backend`` resolved: "numpy" or "jax" (see the module docstring)."""
    b = str(_label_cfg(config, "probe_backend", "auto"))
    if b not in PROBE_BACKENDS:
        raise ValueError(f"label.probe_backend must be one of {PROBE_BACKENDS}, got {b!r}")
    if b == "auto":     # the ground truth's rule, on a single process (whole batch here)
        return groundtruth.resolve_backend("auto") if jax.process_count() == 1 else "jax"
    return b


def _numpy_probe(batch: dict, zoo, *, folds: int, seeds, alphas, workers=None
                 ) -> np.ndarray | None:
    """:func:`probe_batch` by ``ridge_cv`` (None when a class has fewer examples than folds)."""
    from spider_jax import ridge_cv

    labels = np.asarray(batch["labels"])
    mask = np.asarray(batch["example_mask"], bool)
    ncls = np.asarray(batch["num_classes"]).astype(int)
    rows = [np.flatnonzero(mask[t]) for t in range(labels.shape[0])]
    for t, r in enumerate(rows):
        if np.bincount(labels[t, r], minlength=ncls[t])[:ncls[t]].min() < folds:
            return None
    pairs = [(np.asarray(batch["features"][m][t, r], np.float32), labels[t, r], int(ncls[t]))
             for t, r in enumerate(rows) for m in range(zoo.num_models)]
    acc = ridge_cv.cv_accuracy_pairs(pairs, num_folds=folds, seeds=tuple(seeds),
                                     alphas=tuple(alphas), workers=workers)
    best = np.asarray(probe_accuracy(acc.astype(np.float32)))    # [T * M]
    return best.reshape(len(rows), zoo.num_models)


def probe_batch(batch: dict, zoo, *, num_classes: int, folds: int, seeds, alphas,
                put=jax.device_put, get=jax.device_get, put_replicated=jax.device_put,
                backend: str = "jax", workers: int | None = None) -> np.ndarray:
    """Probe accuracy [T, M] float32 of a materialised batch of T tasks.

    Args:
      batch: ``TaskSampler.materialize`` output (``features``, ``labels``,
        ``example_mask``); with ``put``/``get`` for a mesh, this host's slice of it.
      zoo: the zoo (M PTMs); num_classes: padded C (the batch's class axis).
      folds, seeds, alphas: the CV protocol (:func:`probe_settings`).
      put, get: host -> device (e.g. sharded over the tasks axis) and back.
      put_replicated: host -> device for the alphas, on the devices ``put`` uses (for a mesh:
        replicated over it, so no device-to-device copy happens inside the computation).
      backend: "jax" or "numpy" (:func:`probe_backend`; "numpy" needs the whole batch on
        this host and ignores ``put``/``get``); workers: its worker processes (default:
        the usable cores).
    """
    if backend == "numpy":
        out = _numpy_probe(batch, zoo, folds=folds, seeds=seeds, alphas=alphas,
                           workers=workers)
        if out is not None:
            return out
    elif backend != "jax":
        raise ValueError(f"probe backend must be 'numpy' or 'jax', got {backend!r}")
    labels = np.asarray(batch["labels"], np.int32)
    mask = np.asarray(batch["example_mask"], bool)
    class_mask = np.arange(num_classes)[None, :] < np.asarray(batch["num_classes"])[:, None]
    fold_ids = _fold_ids(labels, mask, folds, seeds)
    args = [put(a) for a in (labels, fold_ids, mask, class_mask)]
    alphas = put_replicated(np.asarray(alphas, np.float32))
    out = []
    for i in range(zoo.num_models):       # one PTM at a time: PTMs of one width share a compile
        feats = put(np.asarray(batch["features"][i], np.float32))
        acc = groundtruth.cv_accuracy(feats, args[0], args[1], args[2], args[3], alphas,
                                      num_folds=folds)
        out.append(np.asarray(get(probe_accuracy(acc)), np.float32))
        del feats
    return np.stack(out, axis=1)


def standardise(x: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Per-row (task) z-scores over the last axis (computed in float64, returned as
    ``dtype``); a constant row gives zeros."""
    x = np.asarray(x, np.float64)
    sd = x.std(axis=-1, keepdims=True)
    return ((x - x.mean(axis=-1, keepdims=True)) / np.where(sd > 0, sd, 1.0)).astype(dtype)


def supervision_targets(labels: dict, config) -> np.ndarray:
    """The training targets [T, M] (higher = better) for ``config.label.supervision``.

    Args:
      labels: ``label.label_tasks`` output: ``rank_labels`` [T, M], ``metric_scores``
        [T, A, M] and, for "probe"/"both", ``probe_scores`` [T, M]; ``meta`` names the
        Copeland methods (``copeland_methods``) for ``combine="copeland"``.
      config: the run config.
    """
    sup = supervision(config)
    if sup == "rankagg":
        return np.asarray(labels["rank_labels"], np.float32)
    if "probe_scores" not in labels:
        raise ValueError(f"label.supervision={sup!r} needs probe labels (label_tasks computes "
                         f"them when the config asks for them)")
    probe = np.asarray(labels["probe_scores"], np.float32)
    if sup == "probe":
        return probe
    rule = str(_label_cfg(config, "combine", "zsum"))
    if rule == "zsum":
        w = float(_label_cfg(config, "probe_weight", 0.5))
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"label.probe_weight must be in [0, 1], got {w}")
        return (1.0 - w) * standardise(labels["rank_labels"]) + w * standardise(probe)
    if rule == "copeland":
        cols = [RANKAGG_METHODS.index(a) for a in labels["meta"]["copeland_methods"]]
        votes = np.concatenate([np.asarray(labels["metric_scores"])[:, cols], probe[:, None]],
                               axis=1)
        return np.asarray(jax.device_get(jax.vmap(rankagg.copeland)(jax.device_put(votes))),
                          np.float32)
    raise ValueError(f"label.combine must be one of {COMBINES}, got {rule!r}")
