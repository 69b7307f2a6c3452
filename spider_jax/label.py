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

The metrics themselves, their batching (vmap over tasks, the fused LogME + H-Score
route) and the Copeland step live in :mod:`spider_jax.methods` (``rankagg_scores``);
this module cuts the work into chunks, caches them and shards them over devices, and
brings results to the host once per chunk.

Rules (recorded in the cache's ``meta.json``):

* H-Score: ``methods.hscore_variant`` (plain unless N is small against D, then
  Ledoit-Wolf shrinkage), decided on ``N_max`` and ``D_max``.
* Degenerate values: a NaN/inf metric score ranks last in Copeland
  (:func:`rankagg.copeland`); :func:`degenerate_scores` lists the (task, PTM, method)
  triples that had one and :func:`label_tasks` logs them (also on resume, from the
  cache), and a PTM whose features are constant on a task is reported when labelled.
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

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags
from tqdm import tqdm

from spider_jax import atomic, config_check, parallel, probe
from spider_jax import workdir as workdir_lib
from spider_jax.methods import RANKAGG_METHODS, hscore_variant, rankagg_available, rankagg_scores
from spider_jax.sampler import TaskSampler, Zoo

__all__ = ["label_tasks", "label_downstream", "label_batch", "zoo_for", "make_sampler",
           "fingerprint", "write_cache", "degenerate_scores", "constant_feature_tasks"]

_ARRAYS = ("psi_centres", "class_mask", "specific_centres", "num_classes", "metric_scores",
           "rank_labels")


def zoo_for(bank, modality: str):
    """(single-modality bank view, its Zoo)."""
    sub = bank.subset(modality)
    if not sub.models:
        raise ValueError(f"the bank {bank.root} has no {modality!r} model")
    return sub, Zoo.from_bank(sub, modality)


def make_sampler(sub_bank, zoo: Zoo, config) -> TaskSampler:
    """The training-task sampler of ``config.data``.

    ``data.sample_from``: "train" (default; the bank's train pool) or "all" (every dataset
    of the modality, for leave-one-group-out pools); ``data.min_classes`` /
    ``data.min_examples_per_class`` > 0 vary the class count and the shots per task.
    """
    d = config.data
    source = d.get("sample_from", "train")
    if source not in ("train", "all"):
        raise ValueError(f"data.sample_from must be 'train' or 'all', got {source!r}")
    return TaskSampler(sub_bank, zoo, seed=d.seed, min_datasets=d.min_datasets,
                       max_datasets=d.max_datasets, max_classes=d.max_classes,
                       examples_per_class=d.examples_per_class,
                       min_classes=int(d.get("min_classes", 0)),
                       min_examples_per_class=int(d.get("min_examples_per_class", 0)),
                       datasets=list(sub_bank.datasets) if source == "all" else None)


def label_batch(batch: dict, zoo: Zoo, *, num_classes: int, hscore: str,
                methods=RANKAGG_METHODS, mesh: jax.sharding.Mesh | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """``methods.rankagg_scores`` of a materialised batch of T tasks, brought to the host.

    Args:
      batch: ``TaskSampler.materialize`` output; with ``mesh``, this host's slice of the
        global batch (the tasks axis of every host's slices concatenated in process order).
      zoo, num_classes, hscore, methods: as ``methods.rankagg_scores``.
      mesh: run sharded over the tasks axis on this mesh's ``data`` axis (the global T
        must be a multiple of its size); None: on the default device.

    Returns:
      (metric_scores [T, len(RANKAGG_METHODS), M] float32, NaN where not computed,
       rank_labels [T, M] float32), numpy, for the global T on every host.
    """
    if mesh is None:
        put, get = jax.device_put, jax.device_get
    else:
        put = functools.partial(parallel.host_to_global, mesh=mesh)
        get = parallel.global_to_host
    scores, agg = get(rankagg_scores(batch, zoo, num_classes=num_classes, hscore=hscore,
                                     methods=methods, put=put))
    return np.asarray(scores, np.float32), np.asarray(agg, np.float32)


def degenerate_scores(metric_scores: np.ndarray, zoo: Zoo, methods,
                      task_ids=None) -> list[tuple]:
    """(task, PTM, method) triples whose metric score is NaN/inf although it was computed.

    Args:
      metric_scores: [T, len(RANKAGG_METHODS), M] as returned by :func:`label_batch`.
      zoo: the zoo (PTM names, source heads).
      methods: the methods that were computed (others are NaN by design, as are
        LEEP/NCE for PTMs without a source head).
      task_ids: [T] task indices or names to report (default 0..T-1).
    """
    s = np.asarray(metric_scores)
    ids = list(range(s.shape[0])) if task_ids is None else list(task_ids)
    out = []
    for name in methods:
        a = RANKAGG_METHODS.index(name)
        for i, model in enumerate(zoo.models):
            if name in ("leep", "nce") and not zoo.has_source_head[i]:
                continue
            out += [(ids[t], model, name) for t in np.flatnonzero(~np.isfinite(s[:, a, i]))]
    return sorted(out, key=lambda x: (str(x[0]) if isinstance(x[0], str) else f"{x[0]:012d}",
                                      x[1], x[2]))


def constant_feature_tasks(features: np.ndarray, example_mask: np.ndarray) -> np.ndarray:
    """[T] bool: the PTM's features [T, N, D] are the same vector on every real row."""
    f = np.asarray(features, np.float32)
    real = np.asarray(example_mask, bool)[:, :, None]
    col_hi = np.max(np.where(real, f, -np.inf), axis=1)           # [T, D] over real rows
    col_lo = np.min(np.where(real, f, np.inf), axis=1)
    return np.all(col_hi == col_lo, axis=1)


def _warn_degenerate(triples, what: str) -> None:
    if triples:
        logging.warning("%s: %d degenerate (task, PTM, method) scores (NaN/inf; they rank "
                        "last in Copeland), e.g. %s", what, len(triples), triples[:10])


def _warn_constant(batch, zoo: Zoo, task_ids) -> None:
    """Logs each PTM whose features are constant on some of the batch's tasks."""
    for i, model in enumerate(zoo.models):
        const = constant_feature_tasks(batch["features"][i], batch["example_mask"])
        if const.any():
            tasks = list(dict.fromkeys(np.asarray(task_ids)[const].tolist()))
            logging.warning("PTM %s has constant features (no information) on tasks %s: its "
                            "metric scores are the no-information values", model, tasks[:10])


def chunk_size(config) -> int:
    """Tasks per label chunk: ``config.label.chunk_size``, or 0 for the platform default
    (``parallel.default_batch("label")``: 8 on CPU, 32 on GPU/TPU)."""
    return int(config.label.chunk_size) or parallel.default_batch("label")


def fingerprint(zoo: Zoo, config, sampler: TaskSampler, hscore: str) -> dict:
    d = config.data
    meta = dict(zoo=zoo.to_json(), seed=d.seed, min_datasets=d.min_datasets,
                max_datasets=d.max_datasets, max_classes=sampler.max_classes,
                examples_per_class=d.examples_per_class, pool=sampler.pool,
                chunk_size=chunk_size(config), methods=list(config.label.methods),
                hscore=hscore, copeland_methods=list(rankagg_available(zoo, config.label.methods)))
    for key in ("min_classes", "min_examples_per_class"):   # only when switched on (old
        if int(d.get(key, 0)):                               # caches keep their hash)
            meta[key] = int(d[key])
    meta["hash"] = hashlib.sha1(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    return meta


def _load_npz(path: str) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _chunk_path(cache_dir: str, start: int) -> str:
    return os.path.join(cache_dir, f"chunk_{start:07d}.npz")


def write_cache(cache_dir: str, meta: dict, arrays: dict, chunk_size: int) -> None:
    """Writes a complete label cache (``meta.json`` + chunks) as :func:`label_tasks` would,
    e.g. for a zoo grown by ``spider_jax.add_model`` (``meta`` from :func:`fingerprint`)."""
    _open_cache(cache_dir, meta)
    for lo in range(0, arrays["rank_labels"].shape[0], chunk_size):
        atomic.write_npz(_chunk_path(cache_dir, lo),
                         {k: arrays[k][lo:lo + chunk_size] for k in _ARRAYS})


def _open_cache(cache_dir: str, meta: dict, name: str = "meta.json") -> None:
    os.makedirs(cache_dir, exist_ok=True)
    atomic.remove_stale_temporaries(cache_dir)       # chunks of a killed run
    path = os.path.join(cache_dir, name)
    if os.path.exists(path):
        with open(path) as fh:
            old = json.load(fh)
        if old.get("hash") != meta["hash"]:
            raise ValueError(f"label cache {cache_dir} was made with other settings "
                             f"(hash {old.get('hash')} != {meta['hash']}); use another "
                             f"--config.label.cache_dir or delete it")
        return
    atomic.write_json(path, meta, indent=1)


def _label_step(sampler, specs, zoo, config, *, step_tasks, num_classes, num_examples, hscore,
                mesh, rankagg=True, probe_scores=False, task_ids=None):
    """Labels ``specs`` (<= step_tasks) padded to ``step_tasks``; every host gets all rows.

    Each host materialises only its slice of the tasks; metric scores come from the
    sharded computation and the task arrays (centres, masks) are all-gathered.
    ``rankagg``: the task arrays + RankAgg labels; ``probe_scores``: the probe labels
    (:mod:`spider_jax.probe`).  ``task_ids`` (the specs' task indices) name tasks in
    warnings.
    """
    padded = list(specs) + [specs[0]] * (step_tasks - len(specs))   # fixed shapes: one compile
    ids = list(task_ids if task_ids is not None else range(len(specs)))
    ids = np.asarray(ids + [ids[0]] * (step_tasks - len(ids)))
    mine = padded if mesh is None else padded[parallel.host_slice(step_tasks)]
    batch = sampler.materialize(mine, num_classes=num_classes, num_examples=num_examples)
    if rankagg:
        _warn_constant(batch, zoo, ids if mesh is None else ids[parallel.host_slice(step_tasks)])
    n = len(specs)
    out = {}
    if probe_scores:
        put, get, put_rep = (jax.device_put, jax.device_get, jax.device_put) if mesh is None else (
            functools.partial(parallel.host_to_global, mesh=mesh), parallel.global_to_host,
            functools.partial(jax.device_put, device=parallel.replicated(mesh)))
        out["probe_scores"] = probe.probe_batch(
            batch, zoo, num_classes=num_classes, put=put, get=get, put_replicated=put_rep,
            backend=probe.probe_backend(config), **probe.probe_settings(config))[:n]
    if not rankagg:
        return out
    scores, agg = label_batch(batch, zoo, num_classes=num_classes, hscore=hscore,
                              methods=tuple(config.label.methods), mesh=mesh)
    if jax.process_count() > 1 and mesh is not None:     # every host gets every row
        keys = ("psi_centres", "class_mask", "specific_centres", "num_classes")
        batch = parallel.global_to_host(parallel.host_to_global(
            {k: np.asarray(batch[k]) for k in keys}, mesh))
    return dict(out, psi_centres=batch["psi_centres"][:n], class_mask=batch["class_mask"][:n],
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
      (float16), num_classes [T], metric_scores [T,A,M] (A = RANKAGG_METHODS order),
      rank_labels [T,M], plus "meta" (the fingerprint dict); with probe supervision
      (``config.label.supervision`` "probe" / "both") also probe_scores [T,M] and
      "probe_meta", cached beside the chunks in ``probe_XXXXXXX.npz`` under their own
      fingerprint ``probe_meta.json`` (so the RankAgg chunks are shared by both).
    """
    sub, zoo = zoo_for(bank, modality)
    sampler = make_sampler(sub, zoo, config)
    num_tasks = int(num_tasks or config.data.num_train_tasks)
    hscore = hscore_variant(config.label.hscore, sampler.num_examples_max, zoo.max_dim)
    meta = fingerprint(zoo, config, sampler, hscore)
    with_probe = probe.needs_probe(config)
    probe_meta = probe.probe_fingerprint(meta, config) if with_probe else None
    main = parallel.is_main_process()
    if main:
        _open_cache(cache_dir, meta)
        if with_probe:
            _open_cache(cache_dir, probe_meta, "probe_meta.json")
    size = chunk_size(config)
    starts = list(range(0, num_tasks, size))

    def path(s, prefix="chunk"):
        return os.path.join(cache_dir, f"{prefix}_{s:07d}.npz")

    # A chunk counts as done when every host sees it, so all hosts run the same steps.
    have = parallel.all_processes([os.path.exists(path(s)) for s in starts])
    have_probe = parallel.all_processes([os.path.exists(path(s, "probe")) for s in starts]) \
        if with_probe else [True] * len(starts)
    done = [a and b for a, b in zip(have, have_probe)]
    missing = {s for s, a in zip(starts, have) if not a}
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
        ids = [i for lo, hi in ranges for i in range(lo, hi)]
        specs = [sampler.spec(i) for i in ids]
        arrays = _label_step(sampler, specs, zoo, config, step_tasks=step_tasks,
                             num_classes=sampler.max_classes,
                             num_examples=sampler.num_examples_max, hscore=hscore, mesh=mesh,
                             rankagg=bool(missing & set(group)), probe_scores=with_probe,
                             task_ids=ids)
        offset = 0
        for lo, hi in ranges:
            fresh[lo] = {k: v[offset:offset + hi - lo] for k, v in arrays.items()}
            offset += hi - lo
            if main:
                if lo in missing:
                    atomic.write_npz(path(lo), {k: fresh[lo][k] for k in _ARRAYS})
                if with_probe:
                    atomic.write_npz(path(lo, "probe"), {"probe_scores": fresh[lo]["probe_scores"]})
    keys = _ARRAYS + (("probe_scores",) if with_probe else ())
    parts = []
    for s in starts:
        part = dict(fresh.get(s, {}))
        if any(k not in part for k in _ARRAYS):
            part.update(_load_npz(path(s)))
        if with_probe and "probe_scores" not in part:
            part.update(_load_npz(path(s, "probe")))
        parts.append(part)
    out = {k: np.concatenate([p[k] for p in parts])[:num_tasks] for k in keys}
    out["meta"] = meta
    if with_probe:
        out["probe_meta"] = probe_meta
    out["degenerate"] = degenerate_scores(out["metric_scores"], zoo, config.label.methods)
    if main:
        _warn_degenerate(out["degenerate"], f"{modality} training tasks")
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
        _warn_constant(batch, zoo, names)
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
            atomic.write_npz(path, out)
    out["datasets"] = list(names)
    out["hscore"] = hscore
    out["degenerate"] = degenerate_scores(out["metric_scores"], zoo, config.label.methods,
                                          task_ids=names)
    if parallel.is_main_process():
        _warn_degenerate(out["degenerate"], f"{modality} downstream datasets")
    return out


# ----------------------------------------------------------------------------- CLI
def main(argv):
    del argv
    parallel.maybe_initialize_distributed()
    parallel.guard_lapack_pool(log=print)   # batched LAPACK metrics: no 2-thread deadlock
    config = flags.FLAGS.config
    try:
        config_check.check_config(config)
        workdir_lib.check_workdir(flags.FLAGS.workdir)
        bank = workdir_lib.open_bank_for(config, flags.FLAGS.workdir)
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    mesh = parallel.make_mesh()
    for modality in workdir_lib.modalities_for(config, bank):
        out = label_tasks(bank, config, modality=modality, mesh=mesh,
                          progress=parallel.is_main_process(),
                          cache_dir=workdir_lib.cache_dir_for(config, flags.FLAGS.workdir, modality))
        if parallel.is_main_process():
            print(f"{modality}: {out['rank_labels'].shape[0]} tasks labelled "
                  f"(H-Score variant {out['meta']['hscore']}, Copeland over "
                  f"{out['meta']['copeland_methods']}; {len(out['degenerate'])} degenerate "
                  f"(task, PTM, method) scores)")


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
    flags.DEFINE_string("workdir", None, "Run directory (labels go to WORKDIR/labels unless "
                        "--config.label.cache_dir is set).")
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, flags_parser=config_check.parse_flags)
