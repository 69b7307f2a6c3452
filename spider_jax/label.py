"""RankAgg supervision for sampled training tasks (paper section 4.3, appendix A.4).

For every sampled task and every PTM we compute the transferability metrics whose
inputs exist (LogME and H-Score from features; LEEP and NCE from source-head
probabilities, NCE on their argmax), then Copeland-aggregate them (Eq. 8) into one
supervising score per (task, PTM).  Everything is batched: ``vmap`` over the tasks of
a chunk, one PTM at a time (no [T, M, N, D] stack is copied), and PTMs with the same
feature / source-head shape share one compiled executable (metrics on zero-padded
feature dims are not invariant, e.g. Ledoit-Wolf shrinkage depends on D, so each PTM
keeps its true D); tasks come in fixed-size chunks so every chunk reuses the compiled
code.  With N <= D, LogME and the shrinkage H-Score share one Gram per (task, PTM).

Rules (recorded in the cache's ``meta.json``):

* H-Score: plain H-Score is degenerate when a task's N is not much larger than D
  (pinv of a rank-deficient covariance gives C-1 for every PTM).  ``hscore="auto"``
  uses ``metrics.regularized_hscore`` (Ledoit-Wolf shrinkage) unless
  ``N_max >= 10 * D_max``; ``"plain"`` / ``"regularized"`` force one.
* Missing methods: Copeland runs over the methods available for *every* PTM of the
  zoo (LEEP/NCE only when every PTM has a source head); the per-method scores of all
  methods are still cached (NaN where unavailable) for baselines.

Cache: ``cache_dir/meta.json`` (fingerprint of the sampler settings and zoo) and
``cache_dir/chunk_XXXXXXX.npz`` (tasks [start, start + chunk)), written atomically, so
an interrupted run resumes by skipping finished chunks.

Scale-out (:mod:`spider_jax.parallel`): with a ``mesh``, each step covers enough whole
chunks to fill the mesh's ``data`` axis (tasks padded to a multiple of it); each host
materialises only its slice of the step's tasks (``parallel.host_slice``), the vmapped
metrics run sharded over tasks, and the results are gathered to every host.  A chunk is
skipped when every host sees it in the cache (agreed, so every host runs the same steps);
process 0 alone writes the cache, so a resumed multi-host run reuses its chunks when the
cache is on a filesystem every host sees (otherwise the missing ones are relabelled).

Library use: ``label_tasks(bank, config, cache_dir=...) -> dict of arrays``.
CLI: ``python -m spider_jax.label --config=configs/wheelzoo.py --workdir=DIR``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags
from tqdm import tqdm

from spider_jax import bank as bank_lib
from spider_jax import metrics, parallel, rankagg, synthetic
from spider_jax.metrics.hscore import centre, regularized_hscore_from_gram
from spider_jax.metrics.logme import logme_from_gram
from spider_jax.sampler import TaskSampler, Zoo

__all__ = ["METHODS", "label_tasks", "label_downstream", "label_batch", "hscore_variant",
           "zoo_for", "make_sampler"]

METHODS = ("hscore", "nce", "leep", "logme")
_ARRAYS = ("psi_centres", "class_mask", "specific_centres", "num_classes", "metric_scores",
           "rank_labels")


def zoo_for(bank, modality: str):
    """(single-modality bank view, its Zoo)."""
    sub = bank.subset(modality)
    if not sub.models:
        raise ValueError(f"the bank {bank.root} has no {modality!r} model")
    return sub, Zoo.from_bank(sub, modality)


def make_sampler(sub_bank, zoo: Zoo, config) -> TaskSampler:
    d = config.data
    return TaskSampler(sub_bank, zoo, seed=d.seed, min_datasets=d.min_datasets,
                       max_datasets=d.max_datasets, max_classes=d.max_classes,
                       examples_per_class=d.examples_per_class)


def hscore_variant(rule: str, num_examples: int, max_dim: int) -> str:
    """Which H-Score the labels use: "plain" or "regularized" (see module docstring)."""
    if rule not in ("auto", "plain", "regularized"):
        raise ValueError(f"label.hscore must be auto|plain|regularized, got {rule!r}")
    if rule != "auto":
        return rule
    return "plain" if num_examples >= 10 * max_dim else "regularized"


def available_methods(zoo: Zoo, methods) -> tuple[str, ...]:
    """Methods computable for every PTM of the zoo (the Copeland inputs)."""
    out = []
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; choose from {METHODS}")
        if name in ("nce", "leep") and not all(zoo.has_source_head):
            continue
        out.append(name)
    if not out:
        raise ValueError(f"no method in {tuple(methods)} is available for every PTM")
    return tuple(out)


def _per_task_model(fn):
    """vmap a per-(task, PTM) metric over tasks (axis 0 of every input), one PTM."""
    return jax.vmap(fn)


# One jit per metric, except LogME + shrinkage H-Score with N <= D (``_fused_batched``,
# one eigh + one Cholesky). An earlier XLA:CPU build deadlocked on the second execution of
# one executable holding both LogME and H-Score (two eighs); not reproduced with jax
# 0.10.2 (repeated runs of logme+hscore and of the fused pair), but the eigh-path
# metrics stay in separate jits.
@functools.partial(jax.jit, static_argnames=("num_classes",))
def _logme_batched(features, labels, mask, *, num_classes):
    """features [T, N, D], labels/mask [T, N] -> [T]."""
    return _per_task_model(lambda f, y, m: metrics.logme(f, y, num_classes=num_classes, mask=m))(
        features, labels, mask)


@functools.partial(jax.jit, static_argnames=("num_classes", "regularized"))
def _hscore_batched(features, labels, mask, *, num_classes, regularized):
    hs = metrics.regularized_hscore if regularized else metrics.hscore
    return _per_task_model(lambda f, y, m: hs(f, y, num_classes=num_classes, mask=m))(
        features, labels, mask)


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
def _fused_batched(features, labels, mask, *, num_classes):
    """LogME and regularised H-Score, features [T, N, D] (N <= D) -> 2 x [T].

    One jit holding both (they share the Gram): one eigh (LogME) and one Cholesky
    (H-Score), never two eighs (see the deadlock note above); tests run it repeatedly.
    """
    return _per_task_model(functools.partial(_logme_regularized_hscore,
                                             num_classes=num_classes))(features, labels, mask)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _leep_batched(probs, labels, mask, *, num_classes):
    """probs [T, N, S], labels/mask [T, N] -> [T]."""
    return _per_task_model(lambda p, y, m: metrics.leep(p, y, num_classes=num_classes, mask=m))(
        probs, labels, mask)


@functools.partial(jax.jit, static_argnames=("num_classes", "num_source_classes"))
def _nce_batched(probs, labels, mask, *, num_classes, num_source_classes):
    """NCE on the argmax source label of each example."""
    def one(p, y, m):
        src = jnp.argmax(p, axis=-1).astype(jnp.int32)
        return metrics.nce(src, y, num_source_classes=num_source_classes,
                           num_classes=num_classes, mask=m)
    return _per_task_model(one)(probs, labels, mask)


@jax.jit
def _copeland(scores):
    """[T, A, M] -> [T, M] Copeland points."""
    return jax.vmap(rankagg.copeland)(scores)


def label_batch(batch: dict, zoo: Zoo, *, num_classes: int, hscore: str,
                methods=METHODS, mesh: jax.sharding.Mesh | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Metrics and Copeland labels for a materialised batch of T tasks.

    Args:
      batch: ``TaskSampler.materialize`` output (needs ``features``, ``source_probs``,
        ``labels``, ``example_mask``); with ``mesh``, this host's slice of the global
        batch (the tasks axis of every host's slices concatenated in process order).
      zoo: the zoo (M PTMs).
      num_classes: padded class count C_max (static).
      hscore: "plain" | "regularized".
      methods: methods to compute (subset of METHODS).
      mesh: run sharded over the tasks axis on this mesh's ``data`` axis (the global T
        must be a multiple of its size); None: on the default device.

    Returns:
      (metric_scores [T, len(METHODS), M] float32, NaN where not computed,
       rank_labels [T, M] float32 Copeland points over ``available_methods``), for the
      global T on every host.
    """
    if mesh is None:
        put, get = jax.device_put, np.asarray
    else:
        put = functools.partial(parallel.host_to_global, mesh=mesh)
        get = parallel.global_to_host
    labels = put(np.asarray(batch["labels"]))
    mask = put(np.asarray(batch["example_mask"], np.float32))
    t, m = labels.shape[0], zoo.num_models
    out = np.full((t, len(METHODS), m), np.nan, np.float32)
    col = {name: METHODS.index(name) for name in METHODS}
    # One PTM at a time (vmap over tasks): no [T, M, N, D] stack to copy, and PTMs of the
    # same feature shape share one compiled executable.
    for i in range(m):
        feats = put(np.asarray(batch["features"][i]))                  # [T, N, D]
        n, dim = feats.shape[1], feats.shape[2]
        if {"logme", "hscore"} <= set(methods) and hscore == "regularized" and n <= dim:
            lm, hs = _fused_batched(feats, labels, mask, num_classes=num_classes)
            out[:, col["logme"], i], out[:, col["hscore"], i] = get(lm), get(hs)
        else:
            if "logme" in methods:
                out[:, col["logme"], i] = get(
                    _logme_batched(feats, labels, mask, num_classes=num_classes))
            if "hscore" in methods:
                out[:, col["hscore"], i] = get(_hscore_batched(
                    feats, labels, mask, num_classes=num_classes,
                    regularized=hscore == "regularized"))
        del feats
        if {"leep", "nce"} & set(methods) and zoo.has_source_head[i]:
            probs = put(np.asarray(batch["source_probs"][i]))          # [T, N, S]
            if "leep" in methods:
                out[:, col["leep"], i] = get(
                    _leep_batched(probs, labels, mask, num_classes=num_classes))
            if "nce" in methods:
                out[:, col["nce"], i] = get(_nce_batched(
                    probs, labels, mask, num_classes=num_classes,
                    num_source_classes=zoo.num_source_classes[i]))
    used = [METHODS.index(a) for a in available_methods(zoo, methods)]
    agg = np.asarray(_copeland(jnp.asarray(out[:, used])), np.float32)
    return out, agg


def _fingerprint(zoo: Zoo, config, sampler: TaskSampler, hscore: str) -> dict:
    d = config.data
    meta = dict(zoo=zoo.to_json(), seed=d.seed, min_datasets=d.min_datasets,
                max_datasets=d.max_datasets, max_classes=sampler.max_classes,
                examples_per_class=d.examples_per_class, pool=sampler.pool,
                chunk_size=config.label.chunk_size, methods=list(config.label.methods),
                hscore=hscore, copeland_methods=list(available_methods(zoo, config.label.methods)))
    meta["hash"] = hashlib.sha1(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    return meta


def _save_npz(path: str, arrays: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp.npz")
    with os.fdopen(fd, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)


def _load_npz(path: str) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _open_cache(cache_dir: str, meta: dict) -> None:
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, "meta.json")
    if os.path.exists(path):
        with open(path) as fh:
            old = json.load(fh)
        if old.get("hash") != meta["hash"]:
            raise ValueError(f"label cache {cache_dir} was made with other settings "
                             f"(hash {old.get('hash')} != {meta['hash']}); use another "
                             f"--config.label.cache_dir or delete it")
        return
    with open(path + ".tmp", "w") as fh:
        json.dump(meta, fh, indent=1)
    os.replace(path + ".tmp", path)


def _label_step(sampler, specs, zoo, config, *, step_tasks, num_classes, num_examples, hscore,
                mesh):
    """Labels ``specs`` (<= step_tasks) padded to ``step_tasks``; every host gets all rows.

    Each host materialises only its slice of the tasks; metric scores come from the
    sharded computation and the task arrays (centres, masks) are all-gathered.
    """
    padded = list(specs) + [specs[0]] * (step_tasks - len(specs))   # fixed shapes: one compile
    mine = padded if mesh is None else padded[parallel.host_slice(step_tasks)]
    batch = sampler.materialize(mine, num_classes=num_classes, num_examples=num_examples)
    scores, agg = label_batch(batch, zoo, num_classes=num_classes, hscore=hscore,
                              methods=tuple(config.label.methods), mesh=mesh)
    n = len(specs)
    if jax.process_count() > 1 and mesh is not None:     # every host gets every row
        keys = ("psi_centres", "class_mask", "specific_centres", "num_classes")
        batch = parallel.global_to_host(parallel.host_to_global(
            {k: np.asarray(batch[k]) for k in keys}, mesh))
    return dict(psi_centres=batch["psi_centres"][:n], class_mask=batch["class_mask"][:n],
                specific_centres=batch["specific_centres"][:n].astype(np.float16),
                num_classes=batch["num_classes"][:n], metric_scores=scores[:n],
                rank_labels=agg[:n])


def label_tasks(bank, config, *, modality: str, cache_dir: str, num_tasks: int | None = None,
                progress: bool = True, mesh: jax.sharding.Mesh | None = None) -> dict:
    """Labels training tasks ``0..num_tasks-1`` of ``modality``, cached and resumable.

    Args:
      bank: an opened bank (any modalities).
      config: the training config (uses ``config.data`` and ``config.label``).
      modality: which sub-zoo.
      cache_dir: chunk directory (created; finished chunks are reused).
      num_tasks: default ``config.data.num_train_tasks``.
      progress: show a tqdm bar.
      mesh: shard the metrics over this mesh's ``data`` axis (see module docstring);
        None: one device, one chunk per step (all hosts compute everything).

    Returns:
      dict with psi_centres [T,C,Dpsi], class_mask [T,C], specific_centres [T,M,C,Dmax]
      (float16), num_classes [T], metric_scores [T,A,M] (A = METHODS order),
      rank_labels [T,M], plus "meta" (the fingerprint dict).
    """
    sub, zoo = zoo_for(bank, modality)
    sampler = make_sampler(sub, zoo, config)
    num_tasks = int(num_tasks or config.data.num_train_tasks)
    hscore = hscore_variant(config.label.hscore, sampler.num_examples_max, zoo.max_dim)
    meta = _fingerprint(zoo, config, sampler, hscore)
    main = parallel.is_main_process()
    if main:
        _open_cache(cache_dir, meta)
    size = int(config.label.chunk_size)
    starts = list(range(0, num_tasks, size))

    def path(s):
        return os.path.join(cache_dir, f"chunk_{s:07d}.npz")

    # A chunk counts as done when every host sees it, so all hosts run the same steps.
    done = parallel.all_processes([os.path.exists(path(s)) for s in starts])
    if mesh is None:
        per_step, step_tasks = 1, size
    else:
        shards = parallel.data_size(mesh)
        per_step = max(1, shards // size)          # whole chunks per step to fill the mesh
        step_tasks = parallel.round_up(per_step * size, shards)
    todo = [s for s, d in zip(starts, done) if not d]
    if todo:
        logging.info("labelling %d tasks of %s (%d chunks to do; H-Score: %s; Copeland over %s)",
                     num_tasks, modality, len(todo), hscore, meta["copeland_methods"])
    fresh = {}
    groups = [todo[i:i + per_step] for i in range(0, len(todo), per_step)]
    for group in tqdm(groups, desc=f"label {modality}", disable=not progress or not todo):
        ranges = [(s, min(s + size, num_tasks)) for s in group]
        specs = [sampler.spec(i) for lo, hi in ranges for i in range(lo, hi)]
        arrays = _label_step(sampler, specs, zoo, config, step_tasks=step_tasks,
                             num_classes=sampler.max_classes,
                             num_examples=sampler.num_examples_max, hscore=hscore, mesh=mesh)
        offset = 0
        for lo, hi in ranges:
            fresh[lo] = {k: v[offset:offset + hi - lo] for k, v in arrays.items()}
            offset += hi - lo
            if main:
                _save_npz(path(lo), fresh[lo])
    parts = [fresh[s] if s in fresh else _load_npz(path(s)) for s in starts]
    out = {k: np.concatenate([p[k] for p in parts])[:num_tasks] for k in _ARRAYS}
    out["meta"] = meta
    return out


def label_downstream(bank, config, *, modality: str, cache_dir: str) -> dict:
    """Every downstream-pool dataset of ``modality`` as one task (cached in one file).

    Each dataset keeps at most ``config.eval.max_examples_per_class`` examples per class
    (its metric baselines use exactly these examples).  Returns the same arrays as
    :func:`label_tasks` plus "datasets" (names) and "truth" [T, M] (the bank's
    groundtruth mean, NaN rows where absent).
    """
    sub, zoo = zoo_for(bank, modality)
    sampler = make_sampler(sub, zoo, config)
    names = sub.pool("downstream")
    if not names:
        return {}
    cap = int(config.eval.max_examples_per_class)
    specs = [sampler.downstream_spec(ds, max_examples_per_class=cap) for ds in names]
    c_max = max(s.num_classes for s in specs)
    n_max = max(s.num_examples for s in specs)
    hscore = hscore_variant(config.label.hscore, min(s.num_examples for s in specs), zoo.max_dim)
    key = hashlib.sha1(json.dumps([zoo.to_json(), names, cap, hscore, config.data.seed,
                                   list(config.label.methods)]).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, f"downstream_{key}.npz")
    if os.path.exists(path):
        out = _load_npz(path)
    else:       # small: computed by every host on its own device, written by process 0
        os.makedirs(cache_dir, exist_ok=True)
        batch = sampler.materialize(specs, num_classes=c_max, num_examples=n_max)
        scores, agg = label_batch(batch, zoo, num_classes=c_max, hscore=hscore,
                                  methods=tuple(config.label.methods))
        truth = np.full((len(names), zoo.num_models), np.nan, np.float32)
        for i, ds in enumerate(names):
            gt = sub.groundtruth(ds)
            if gt is not None:
                idx = {m: j for j, m in enumerate(gt["models"])}
                if all(m in idx for m in zoo.models):
                    truth[i] = [gt["mean"][idx[m]] for m in zoo.models]
        out = dict(psi_centres=batch["psi_centres"], class_mask=batch["class_mask"],
                   specific_centres=batch["specific_centres"].astype(np.float16),
                   num_classes=batch["num_classes"], metric_scores=scores, rank_labels=agg,
                   truth=truth)
        if parallel.is_main_process():
            _save_npz(path, out)
    out["datasets"] = list(names)
    out["hscore"] = hscore
    return out


# ----------------------------------------------------------------------------- CLI
def run_dir_for(config, workdir: str, modality: str) -> str:
    """The run directory of one modality: WORKDIR/<modality> when config.modality is "all"."""
    return os.path.join(workdir, modality) if config.modality in ("", "all") else workdir


def cache_dir_for(config, workdir: str, modality: str) -> str:
    """Where the labels of one modality are cached (shared by label and train)."""
    if config.label.cache_dir:
        return os.path.join(config.label.cache_dir, modality)
    return os.path.join(run_dir_for(config, workdir, modality), "labels")


def modalities_for(config, bank) -> list[str]:
    """``config.modality`` ("" or "all": every modality with models in the bank)."""
    if config.modality in ("", "all"):
        return [m for m in bank_lib.MODALITIES if bank.subset(m).models]
    return [config.modality]


def open_bank_for(config, workdir: str):
    """``config.bank_dir``, or the synthetic bank of ``config.synthetic`` in WORKDIR/bank."""
    if config.bank_dir:
        if not os.path.exists(os.path.join(config.bank_dir, "manifest.json")):
            raise FileNotFoundError(
                f"no feature bank at {config.bank_dir}. Build the wheel-zoo bank with\n"
                f"  python -m spider_jax.extract --zoo=wheel --out={config.bank_dir} && "
                f"python -m spider_jax.groundtruth --bank={config.bank_dir}")
        return bank_lib.open_bank(config.bank_dir)
    if config.synthetic.get("enabled", False):
        kwargs = {k: v for k, v in config.synthetic.items() if k != "enabled"}
        root = os.path.join(workdir, "bank")
        if parallel.is_main_process():      # one writer; the others wait, then open it
            synthetic.make_bank(root, **kwargs)
        parallel.sync("spider_jax.synthetic_bank")
        return bank_lib.open_bank(root)
    raise ValueError("set --config.bank_dir (or enable config.synthetic)")


def main(argv):
    del argv
    parallel.maybe_initialize_distributed()
    config = flags.FLAGS.config
    bank = open_bank_for(config, flags.FLAGS.workdir)
    mesh = parallel.make_mesh()
    for modality in modalities_for(config, bank):
        out = label_tasks(bank, config, modality=modality, mesh=mesh,
                          progress=parallel.is_main_process(),
                          cache_dir=cache_dir_for(config, flags.FLAGS.workdir, modality))
        if parallel.is_main_process():
                print(f"{modality}: {out['rank_labels'].shape[0]} tasks labelled "
                  f"(H-Score variant {out['meta']['hscore']}, Copeland over "
                  f"{out['meta']['copeland_methods']})")


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
    flags.DEFINE_string("workdir", None, "Run directory (labels go to WORKDIR/labels unless "
                        "--config.label.cache_dir is set).")
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
