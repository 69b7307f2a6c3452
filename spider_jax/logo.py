"""Leave-one-group-out (LOGO) benchmark: rank a zoo on dataset groups the scorer never saw.

Every bank dataset carries a ``group`` tag (``bank.dataset_info(ds)["group"]``; sources
that share files or near-duplicate tasks share a group; a dataset without one is its own
group). For every modality and every held-out group ``g``:

* **Evaluation tasks** (labelled once per modality, :func:`label_eval`): each dataset's
  full task (every class with enough examples, at most ``logo.full_max_examples`` rows,
  balanced) plus ``logo.num_subsets`` seeded class-subset tasks (2..``subset_max_classes``
  classes, at most ``subset_per_class`` rows each). Each task has its *own* ground truth:
  the closed-form ridge linear probe of :mod:`spider_jax.groundtruth` on exactly its rows
  (two CV seeds: their tau_w is the task's noise ceiling), and every metric of
  :mod:`spider_jax.methods` scored on the same rows (fold-independent, computed once).
* **Training pool** (labelled once per modality, :func:`label_pool`): tasks sampled from
  *every* dataset of the modality (``data.sample_from = "all"``, 1..``max_datasets``
  datasets, 2..``max_classes`` classes, varying shots) and labelled by
  :func:`spider_jax.label.label_tasks`; each task records the groups it touches. A fold
  uses only the tasks that touch neither its held-out group nor its validation group.
* **No leakage** (nested LOGO, :data:`RULE`): the validation group ``v`` of fold ``g`` is
  the next training group in sorted order; the scorer is trained on tasks touching
  neither ``g`` nor ``v``, its checkpoint (training step) is chosen by the mean k=0
  tau_w on ``v``'s evaluation tasks, and that scorer is the one evaluated on ``g``.
  Nothing is chosen by a held-out score.
* **Baselines that never look at the task**: the zoo prior (each PTM's mean ground-truth
  accuracy over the fold's training groups) and "largest first" (feature width).

Everything is resumable (evaluation chunks, label chunks, one file per fold, written
atomically); ``--deadline_s`` stops after the unit of work that crosses it with exit
code 75 so a long run continues in the next lock turn::

    while :; do python -m spider_jax.logo --config=configs/logo.py \\
        --workdir=runs/logo --results_md=docs/RESULTS.md --deadline_s=540; \\
        [ $? -eq 75 ] || break; done
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import json
import os
import sys
import time
import zlib

import numpy as np

from spider_jax import atomic, groundtruth, label, methods, rankagg
from spider_jax import workdir as workdir_lib
from spider_jax.benchmark.scoring import _tau
from spider_jax.parallel import one_thread_lapack_pool  # noqa: F401  (logo's XLA guard)
from spider_jax.prior import anchored  # noqa: F401  (the anchored score; logo.anchored)
from spider_jax.sampler import TaskSampler, TaskSpec

__all__ = ["RULE", "dataset_groups", "EvalTask", "eval_tasks", "label_eval", "pool_groups",
           "label_pool", "fold_plan", "train_fold", "run_logo", "hierarchical_bootstrap",
           "task_rows", "summarize_rows", "LOGO_ABLATIONS", "MoreWork"]

RULE = ("No leakage (nested leave-one-group-out): for held-out group g the scorer never sees "
        "a task that touches g; a validation group v (the next training group in sorted "
        "order) is carved out of the training groups; the scorer is trained on pool tasks "
        "touching neither g nor v. Two choices are made on v's evaluation tasks, by the best "
        "mean k=0 tau_w: the training step (every {every} steps up to {steps}) of the "
        "transformer alone (`spider_raw_*`), and the (step, weight w) of the prior-anchored "
        "score z(zoo prior) + w z(transformer), w in {weights} (inf: the transformer "
        "alone), with the zoo prior of the groups other than g and v (`spider_k*`, "
        "`hybrid_k*`). {refit}The zoo prior of the held-out evaluation uses only the ground "
        "truth of the training groups (every group but g). No choice reads a held-out score.")

def rule_text(config) -> str:
    """:data:`RULE` for this config (printed in the report)."""
    lcfg = config.logo
    refit = ("The fold's scorer is then retrained with the same schedule on every pool task "
             "that touches no dataset of g (v included) and stopped at the chosen steps; "
             "those scorers are evaluated on g. " if lcfg.refit else
             "That scorer is evaluated on g. ")
    weights = ", ".join(f"{float(w):g}" for w in lcfg.get("anchor_weights", ())) or "none"
    return RULE.format(every=lcfg.select_every, steps=lcfg.train_steps, refit=refit,
                       weights="{" + weights + ", inf}")


# Ablations of the LOGO benchmark: name -> config overrides (dotted keys), each a full
# fold loop (Model Spider rows only) in WORKDIR/ablation/<name>, reusing the evaluation
# labels and every pool label cache whose settings it shares.
LOGO_ABLATIONS: dict[str, dict] = {
    "sup_logme": {"label.methods": ("logme",)},
    "loss_listnet": {"train.loss": "listnet"},
    "fixed_shots_classes": {"data.min_classes": 0, "data.min_examples_per_class": 0},
    # issue 11 item 4: a learned per-PTM prior plus the transformer's task-dependent
    # residual (docs/SWITCHES.md), without the distance gate (its calibration lives in
    # train.train_one, not in the fold loop)
    "prior_residual": {"model.prior_residual": True, "model.gate_refs": 0},
    # issue 11 item 3: linear-probe labels of every pool task (the ground truth's protocol)
    "sup_probe": {"label.supervision": "probe"},
    "sup_both": {"label.supervision": "both"},
    # issue 11 item 4: three seeds trained at once; members alone are reported too
    "ensemble3": {"ensemble.members": 3},
    # issue 11 item 2 off: a pool of >= 200 training tasks per fold instead of >= 2000 (the
    # first rows of the same labelled pool, so no new labels; the same training schedule)
    "pool_small": {"logo.min_train_tasks": 200},
}
ISSUE11_ABLATIONS = ("pool_small", "sup_probe", "sup_both", "prior_residual", "ensemble3")

EXIT_MORE_WORK = 75


class MoreWork(Exception):
    """Raised when ``deadline`` passed with work left (the CLI exits with 75)."""


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.time() > deadline


def _hash(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _save_json(path: str, obj) -> None:
    atomic.write_json(path, obj, indent=1, default=float)


def _save_npz(path: str, arrays: dict) -> None:
    atomic.write_npz(path, arrays)


def _load_npz(path: str) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# ----------------------------------------------------------------------------- groups
def dataset_groups(bank) -> dict[str, str]:
    """{dataset: group} of a (single-modality) bank; an untagged dataset is its own group."""
    return {ds: str(bank.dataset_info(ds).get("group") or ds) for ds in bank.datasets}


def group_members(groups: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ds, g in groups.items():
        out.setdefault(g, []).append(ds)
    return dict(sorted(out.items()))


def validation_group(held_out: str, all_groups) -> str | None:
    """The fold's validation group: the next group after ``held_out`` in sorted order."""
    gs = sorted(all_groups)
    if len(gs) < 3:
        return None
    return gs[(gs.index(held_out) + 1) % len(gs)]


# ----------------------------------------------------------------------------- eval tasks
@dataclasses.dataclass(frozen=True)
class EvalTask:
    """One evaluation task: a class subset (or all classes) of one dataset."""

    name: str
    dataset: str
    group: str
    kind: str           # "full" | "subset"
    spec: TaskSpec


def _class_rows(bank, ds: str) -> list[np.ndarray]:
    labels = np.asarray(bank.labels(ds))
    return [np.flatnonzero(labels == c) for c in range(int(bank.dataset_info(ds)["num_classes"]))]


def eval_tasks(bank, lcfg) -> tuple[list[EvalTask], list[str]]:
    """The evaluation tasks of a single-modality bank (deterministic in ``lcfg.seed``).

    Returns (tasks, notes): notes name datasets left out (fewer than 2 classes with
    ``lcfg.num_folds`` examples, the linear probe's minimum).
    """
    groups = dataset_groups(bank)
    tasks, notes = [], []
    k = int(lcfg.num_folds)
    for ds in bank.datasets:
        rows = _class_rows(bank, ds)
        ok = [c for c, r in enumerate(rows) if len(r) >= k]
        if len(ok) < 2:
            notes.append(f"{ds}: fewer than 2 classes with >= {k} examples, left out")
            continue
        rng = np.random.default_rng([int(lcfg.seed), zlib.crc32(ds.encode())])
        per = max(k, int(lcfg.full_max_examples) // len(ok))
        full = tuple(np.sort(rng.choice(rows[c], min(per, len(rows[c])), replace=False))
                     for c in ok)
        tasks.append(EvalTask(f"{ds}/full", ds, groups[ds], "full",
                              TaskSpec((ds,), (ds,) * len(ok), full)))
        hi = min(int(lcfg.subset_max_classes), len(ok))
        for i in range(int(lcfg.num_subsets)):
            c = int(rng.integers(2, hi + 1))
            classes = sorted(rng.choice(ok, c, replace=False).tolist())
            sel = tuple(np.sort(rng.choice(rows[j], min(int(lcfg.subset_per_class),
                                                        len(rows[j])), replace=False))
                        for j in classes)
            tasks.append(EvalTask(f"{ds}/s{i:02d}", ds, groups[ds], "subset",
                                  TaskSpec((ds,), (ds,) * c, sel)))
    return tasks, notes


def _buckets(tasks, lcfg) -> tuple[dict, dict]:
    """Fixed padded shapes: subsets share one (C, N), full tasks another."""
    sub_c, sub_n = int(lcfg.subset_max_classes), int(lcfg.subset_max_classes) * int(
        lcfg.subset_per_class)
    full = [t for t in tasks if t.kind == "full"]
    full_c = max([t.spec.num_classes for t in full] + [2])
    full_n = max([t.spec.num_examples for t in full] + [1])
    return {"subset": sub_c, "full": full_c}, {"subset": sub_n, "full": full_n}


def _hscore_name(rule: str, n: int, max_dim: int) -> str:
    return "regularized_hscore" if methods.hscore_variant(rule, n, max_dim) == "regularized" \
        else "hscore"


def _label_eval_chunk(sampler, tasks, zoo, lcfg, cbuck, nbuck, method_names):
    """Centres, metric scores and probe ground truth of a few evaluation tasks."""
    c_pad = max(cbuck.values())
    out = {"psi_centres": [], "class_mask": [], "specific_centres": [], "num_classes": [],
           "num_examples": [], "metric_scores": [], "truth": [], "truth_seed2": [],
           "truth_std": []}
    pairs = []
    for t in tasks:
        b = sampler.materialize([t.spec], num_classes=c_pad,
                                num_examples=t.spec.num_examples)
        out["psi_centres"].append(b["psi_centres"][0])
        out["class_mask"].append(b["class_mask"][0])
        out["specific_centres"].append(b["specific_centres"][0].astype(np.float16))
        out["num_classes"].append(t.spec.num_classes)
        out["num_examples"].append(t.spec.num_examples)
        n, c = nbuck[t.kind], cbuck[t.kind]
        y = b["labels"][0]
        labels = np.zeros(n, np.int32)
        labels[:y.size] = y
        mask = np.zeros(n, np.float32)
        mask[:y.size] = 1.0

        def pad(a):
            if a is None:
                return None
            p = np.zeros((n, a.shape[2]), np.float32)
            p[:a.shape[1]] = a[0]
            return p

        scores = np.full((len(method_names), zoo.num_models), np.nan)
        for j, name in enumerate(method_names):
            key = "features" if methods.input_of(name) == "features" else "source_probs"
            inputs = [pad(a) for a in b[key]]
            if all(a is None for a in inputs):
                continue
            scores[j] = methods.score_zoo(name, inputs, labels, num_classes=c, mask=mask)
        out["metric_scores"].append(scores)
        pairs += [(b["features"][m][0], y, t.spec.num_classes) for m in range(zoo.num_models)]
    acc = groundtruth.linear_probe(pairs, num_folds=int(lcfg.num_folds), seeds=(0, 1),
                                   chunk=int(lcfg.probe_chunk))
    for i in range(len(tasks)):
        stats = [groundtruth.summarize(a) for a in acc[i * zoo.num_models:(i + 1) * zoo.num_models]]
        out["truth"].append([s[0][0] for s in stats])
        out["truth_seed2"].append([s[0][1] for s in stats])
        out["truth_std"].append([s[1][0] for s in stats])
    return {k: np.asarray(v) for k, v in out.items()}


def label_eval(bank, modality: str, config, cache_root: str, *, deadline=None,
               progress=True, log=print) -> dict:
    """Evaluation tasks of one modality with centres, metric scores and ground truth.

    Cached in ``cache_root/<hash>/chunk_*.npz`` (resumable). Returns arrays with a
    leading task axis plus "tasks" (:class:`EvalTask` list), "methods" (metric names),
    "notes".
    """
    from tqdm import tqdm

    lcfg = config.logo
    sub, zoo = label.zoo_for(bank, modality)
    tasks, notes = eval_tasks(sub, lcfg)
    if not tasks:
        raise ValueError(f"no {modality} dataset has 2 classes with >= {lcfg.num_folds} "
                         "examples: nothing to evaluate")
    sampler = TaskSampler(sub, zoo, seed=0, min_datasets=1, max_datasets=1,
                          datasets=list(sub.datasets))
    method_names = list(lcfg.methods or methods.names())
    cbuck, nbuck = _buckets(tasks, lcfg)
    key = _hash({"zoo": zoo.to_json(), "tasks": [(t.name, t.spec.num_examples) for t in tasks],
                 "lcfg": {k: lcfg[k] for k in ("seed", "num_folds", "full_max_examples",
                                               "num_subsets", "subset_max_classes",
                                               "subset_per_class")},
                 "methods": method_names, "probe": groundtruth.DEFAULT_ALPHAS})
    cdir = os.path.join(cache_root, key)
    os.makedirs(cdir, exist_ok=True)
    size = int(lcfg.eval_chunk)
    starts = list(range(0, len(tasks), size))
    path = lambda s: os.path.join(cdir, f"chunk_{s:05d}.npz")  # noqa: E731
    todo = [s for s in starts if not os.path.exists(path(s))]
    for s in tqdm(todo, desc=f"eval tasks {modality}", disable=not progress or not todo):
        if _past(deadline):
            raise MoreWork(f"evaluation labels of {modality}: {len(todo)} chunks left")
        _save_npz(path(s), _label_eval_chunk(sampler, tasks[s:s + size], zoo, lcfg, cbuck,
                                             nbuck, method_names))
    parts = [_load_npz(path(s)) for s in starts]
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out.update(tasks=tasks, methods=method_names, notes=notes, models=list(zoo.models),
               dims=list(zoo.dims),
               has_head=[bool(sub.model_info(m).get("has_source_head")) for m in zoo.models])
    # RankAgg (Copeland over H-Score, NCE, LEEP, LogME where every PTM has the input).
    max_dim = max(zoo.dims)
    agg = np.full(out["truth"].shape, np.nan)
    comps_all = []
    for i in range(len(tasks)):
        comps = []
        for name in ("hscore", "nce", "leep", "logme"):
            if name == "hscore":
                name = _hscore_name(config.label.hscore, int(out["num_examples"][i]), max_dim)
            if name in method_names and np.all(np.isfinite(
                    out["metric_scores"][i, method_names.index(name)])):
                comps.append(name)
        if comps:
            agg[i] = rankagg.aggregate({c: out["metric_scores"][i, method_names.index(c)]
                                        for c in comps})
        comps_all.append("+".join(comps))
    out["rankagg"], out["rankagg_components"] = agg, comps_all
    return out


# ----------------------------------------------------------------------------- pool
def pool_config(config):
    """The pool's sampling config: every dataset of the modality."""
    cfg = copy.deepcopy(config)
    cfg.data.sample_from = "all"
    return cfg


def pool_groups(bank, modality: str, config, num_tasks: int) -> list[frozenset]:
    """The groups each pool task touches (tasks are pure functions of (seed, index))."""
    sub, zoo = label.zoo_for(bank, modality)
    sampler = label.make_sampler(sub, zoo, pool_config(config))
    groups = dataset_groups(sub)
    return [frozenset(groups[d] for d in sampler.spec(i).datasets) for i in range(num_tasks)]


def fold_plan(all_groups, touched: list[frozenset]) -> list[dict]:
    """Per held-out group: its validation group and the pool rows each stage may use."""
    plan = []
    for g in sorted(all_groups):
        v = validation_group(g, all_groups)
        outer = [i for i, t in enumerate(touched) if g not in t]
        inner = [i for i in outer if v is None or v not in touched[i]]
        plan.append({"held_out": g, "validation": v, "outer": outer, "train": inner})
    return plan


def pool_size(bank, modality: str, config) -> tuple[int, list[frozenset]]:
    """Smallest pool (a multiple of the label chunk) giving every fold
    ``logo.min_train_tasks`` tasks that touch no held-out dataset (with ``logo.refit``
    the fold's final scorer trains on them; else on those also avoiding the validation
    group), at most ``logo.max_pool``."""
    lcfg, chunk = config.logo, label.chunk_size(config)
    cap = int(lcfg.max_pool)
    touched = pool_groups(bank, modality, config, cap)
    gs = sorted(set(dataset_groups(bank.subset(modality)).values()))
    need = int(lcfg.min_train_tasks)
    counts = {g: 0 for g in gs}
    vals = {g: validation_group(g, gs) for g in gs}
    for i, t in enumerate(touched):
        for g in gs:
            if g not in t and (lcfg.refit or vals[g] is None or vals[g] not in t):
                counts[g] += 1
        if (i + 1) % chunk == 0 and min(counts.values()) >= need:
            return i + 1, touched[:i + 1]
    return cap, touched


def label_pool(bank, modality: str, config, cache_root: str, *, deadline=None,
               progress=True) -> tuple[dict, list[frozenset]]:
    """Labels the modality's pool once (``label.label_tasks``, resumable), in chunks that
    stop at ``deadline``. Returns (label arrays, groups touched per task)."""
    n, touched = pool_size(bank, modality, config)
    cfg = pool_config(config)
    sub, zoo = label.zoo_for(bank, modality)
    sampler = label.make_sampler(sub, zoo, cfg)
    hs = methods.hscore_variant(cfg.label.hscore, sampler.num_examples_max, zoo.max_dim)
    key = label.fingerprint(zoo, cfg, sampler, hs)["hash"]
    cache = os.path.join(cache_root, key)
    step = label.chunk_size(cfg) * int(config.logo.label_chunks_per_call)
    done = 0
    while done < n:
        done = min(n, done + step)
        first = not os.path.exists(os.path.join(
            cache, f"chunk_{(done - 1) // label.chunk_size(cfg) * label.chunk_size(cfg):07d}.npz"))
        if first and _past(deadline):
            raise MoreWork(f"pool labels of {modality}: {done}/{n} tasks")
        out = label.label_tasks(bank, cfg, modality=modality, cache_dir=cache, num_tasks=done,
                                progress=progress)
    return out, touched


# ----------------------------------------------------------------------------- training
def _subset(labels: dict, rows) -> dict:
    rows = np.asarray(rows)
    return {k: (v[rows] if isinstance(v, np.ndarray) and v.ndim and v.shape[0] == len(
        labels["rank_labels"]) else v) for k, v in labels.items()}


def _eval_batch(ev: dict, idx) -> dict:
    idx = np.asarray(idx)
    return {"psi_centres": ev["psi_centres"][idx], "class_mask": ev["class_mask"][idx],
            "specific_centres": ev["specific_centres"][idx].astype(np.float32)}


def _taus(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return np.asarray([_tau(t, p) for t, p in zip(truth, pred)])


def fold_prior(ev: dict, exclude) -> np.ndarray:
    """Each PTM's mean ground-truth accuracy over the evaluation tasks whose group is not
    in ``exclude`` (the zoo prior of a fold's training groups)."""
    idx = [i for i, t in enumerate(ev["tasks"]) if t.group not in set(exclude)]
    return ev["truth"][idx].mean(axis=0) if idx else np.zeros(ev["truth"].shape[1])


def fold_labels(config, pool: dict, rows) -> dict:
    """The pool labels of ``rows`` with the training ``targets`` of
    ``config.label.supervision`` (RankAgg, probe or both; :func:`probe.supervision_targets`)."""
    from spider_jax import probe

    labels = _subset(pool, rows)
    labels["targets"] = probe.supervision_targets(labels, config)
    return labels


def train_fold(config, pool: dict, rows, zoo, ev: dict, val_idx, *, prior=None, keep=(),
               log=print) -> dict:
    """Trains one scorer on pool ``rows`` and chooses on the validation tasks ``val_idx``.

    Every ``logo.select_every`` steps (schedule of ``logo.train_steps``) the k=0 scores of
    the validation tasks give two choices: the step with the best mean tau_w of the
    transformer alone ("raw"), and the (step, weight) with the best mean tau_w of
    :func:`anchored` (``prior``: the zoo prior of the training groups; weights
    ``logo.anchor_weights``, inf = the transformer alone).
    ``keep`` (a refit at steps chosen before): train up to ``max(keep)`` and return
    {"params_at": {step: params}} without choosing.
    Returns {"raw": {"step", "val", "params"}, "anchor": {"step", "weight", "val",
    "params"}, "curve" [(step, raw val tau_w, loss, anchored val tau_w, its weight)],
    "model"}.
    """
    import jax

    from spider_jax import inference, parallel, train
    from spider_jax.model import make_scorer

    labels = fold_labels(config, pool, rows)
    model = make_scorer(config, zoo.dims)
    b = int(config.train.batch_size)
    total = int(config.logo.train_steps)
    every = int(config.logo.select_every)
    weights = [float(w) for w in config.logo.get("anchor_weights", ())] + [float("inf")]
    tx, _ = train.make_optimizer(config, total)
    mesh = parallel.make_mesh(devices=jax.devices()[:1])
    state, sh = train.create_state(model, tx, zoo, labels["class_mask"].shape[1],
                                   int(config.seed), mesh)
    step_fn = train.make_train_step(model, tx, config.train.loss, mesh, sh)
    rng = jax.random.PRNGKey(int(config.seed) + 1)
    val_truth = ev["truth"][np.asarray(val_idx)] if len(val_idx) else None
    val_batch = _eval_batch(ev, val_idx) if len(val_idx) else None
    keep = sorted({int(s) for s in keep})
    raw = anchor = None
    curve, params_at = [], {}
    if len(labels["rank_labels"]) < b:
        raise ValueError(f"only {len(labels['rank_labels'])} training tasks for this fold")
    for step in range(keep[-1] if keep else total):
        batch = train.make_batch(labels, step, config, zoo.num_models)
        state, m = step_fn(state, parallel.host_to_global(batch, mesh), rng)
        done = step + 1
        if not (done in keep or (not keep and (done % every == 0 or done == total))):
            continue
        loss = float(m["loss"])
        if not np.isfinite(loss):
            raise FloatingPointError(f"loss {loss} at step {done}")
        params = jax.tree.map(np.asarray, state["params"])
        if keep:
            params_at[done] = params
            continue
        if val_batch is None:         # no validation group: the last step, no anchoring
            score, best_w, best_a = -float(done), float("inf"), -float(done)
        else:
            s = inference.rerank_tasks(model, params, val_batch, 0)
            score = float(np.nanmean(_taus(val_truth, s)))
            by_w = [float(np.nanmean(_taus(val_truth, anchored(prior, s, w)))) for w in weights]
            best_a = max(by_w)
            best_w = weights[by_w.index(best_a)]      # ties: the smaller weight
        curve.append((done, score, loss, best_a, best_w))
        if raw is None or score > raw["val"]:
            raw = {"step": done, "val": score, "params": params}
        if anchor is None or best_a > anchor["val"]:
            anchor = {"step": done, "weight": best_w, "val": best_a, "params": params}
    if keep:
        return {"params_at": params_at, "model": model}
    return {"raw": raw, "anchor": anchor, "curve": curve, "model": model}


def fold_scores(config, model, raw_params, anchor_params, weight: float, prior, ev: dict,
                test_idx) -> dict:
    """Model Spider's scores of a fold's held-out tasks, {name: [T, M] list}:

    * ``spider_raw_k{k}``: the transformer alone (paper), k = 0 and Algorithm 2's
      re-ranking of the top k with PTM-specific tokens, k in ``logo.rerank_k``;
      ensembles add ``spider_raw_k0_member{i}`` (each member alone);
    * ``spider_k{k}``: the same, anchored on the zoo prior (:func:`anchored`, with the
      weight chosen on the validation group);
    * ``hybrid_k{k}``: the anchored k = 0 ranking whose top k are reordered by
      ``logo.hybrid_metric`` on their own features (:func:`inference.hybrid_merge`).
    """
    from spider_jax import inference
    from spider_jax.model import split_members

    batch = _eval_batch(ev, test_idx)
    m = len(ev["models"])
    ks = [0] + sorted({min(int(k), m) for k in config.logo.get("rerank_k", (3,)) if int(k) > 0})
    out = {}
    for k in ks:
        out[f"spider_raw_k{k}"] = inference.rerank_tasks(model, raw_params, batch, k)
        out[f"spider_k{k}"] = anchored(prior, inference.rerank_tasks(model, anchor_params,
                                                                     batch, k), weight)
    single, members = split_members(model, raw_params)
    if len(members) > 1:
        for i, p in enumerate(members):
            out[f"spider_raw_k0_member{i}"] = inference.rerank_tasks(single, p, batch, 0)
    name = config.logo.get("hybrid_metric", "")
    if name and name in ev["methods"]:
        metric = ev["metric_scores"][np.asarray(test_idx), ev["methods"].index(name)]
        coarse = np.asarray(out["spider_k0"], np.float32)
        for k in ks[1:]:
            chosen = inference.topk_mask(coarse, k)
            out[f"hybrid_k{k}"] = inference.hybrid_merge(coarse, np.asarray(metric, np.float32),
                                                         chosen)
    return {n: np.asarray(s, np.float64).tolist() for n, s in out.items()}


def _fold_paths(fold_dir: str, group: str) -> tuple[str, str]:
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in group)
    return os.path.join(fold_dir, f"fold_{safe}.json"), os.path.join(fold_dir, f"fold_{safe}.msgpack")


def run_folds(config, bank, modality: str, ev: dict, pool: dict, touched, fold_dir: str, *,
              deadline=None, only=None, log=print) -> list[dict]:
    """Every fold of one modality (resumable: one JSON + params file per finished fold);
    ``only``: just these held-out groups."""
    import flax.serialization

    from spider_jax import inference

    _, zoo = label.zoo_for(bank, modality)
    gs = sorted({t.group for t in ev["tasks"]})
    plan = [f for f in fold_plan(gs, touched) if only is None or f["held_out"] in only]
    os.makedirs(fold_dir, exist_ok=True)
    records = []
    for fold in plan:
        jpath, ppath = _fold_paths(fold_dir, fold["held_out"])
        if os.path.exists(jpath):
            with open(jpath) as fh:
                records.append(json.load(fh))
            continue
        if _past(deadline):
            raise MoreWork(f"{modality} folds: {len(plan) - len(records)} left")
        t0 = time.time()
        g, v = fold["held_out"], fold["validation"]
        test_idx = [i for i, t in enumerate(ev["tasks"]) if t.group == g]
        val_idx = [i for i, t in enumerate(ev["tasks"]) if t.group == v]
        inner_prior = fold_prior(ev, (g, v))
        res = train_fold(config, pool, fold["train"], zoo, ev, val_idx, prior=inner_prior,
                         log=log)
        raw, anc = res["raw"], res["anchor"]
        curve = res["curve"]
        refit = bool(config.logo.refit and v is not None)
        if refit:
            # the chosen steps, retrained on every task that touches no held-out dataset
            kept = train_fold(config, pool, fold["outer"], zoo, ev, [],
                              keep=(raw["step"], anc["step"]), log=log)
            raw = dict(raw, params=kept["params_at"][raw["step"]])
            anc = dict(anc, params=kept["params_at"][anc["step"]])
        rec = {"held_out": g, "validation": v, "step": anc["step"], "weight": anc["weight"],
               "raw_step": raw["step"], "curve": curve, "refit": refit,
               "num_train_tasks": len(fold["outer"] if config.logo.refit else fold["train"]),
               "num_inner_tasks": len(fold["train"]), "num_outer_tasks": len(fold["outer"]),
               "test_tasks": [ev["tasks"][i].name for i in test_idx],
               "scores": fold_scores(config, res["model"], raw["params"], anc["params"],
                                     anc["weight"], fold_prior(ev, (g,)), ev, test_idx),
               "seconds": time.time() - t0}
        data = flax.serialization.to_bytes({"raw": raw["params"], "anchor": anc["params"]})
        atomic.write_bytes(ppath, data)
        _save_json(jpath, rec)
        log(f"[{modality}] fold {g} (val {v}): {rec['num_train_tasks']} training tasks; chosen "
            f"on {v}: step {anc['step']} weight {anc['weight']} (transformer alone: step "
            f"{raw['step']}); {len(test_idx)} held-out tasks, {rec['seconds']:.0f} s")
        records.append(rec)
    return records


# ----------------------------------------------------------------------------- statistics
def hierarchical_bootstrap(values: np.ndarray, datasets, *, num_boot: int = 2000,
                           seed: int = 0) -> np.ndarray:
    """Bootstrap means resampling datasets, then tasks within each drawn dataset.

    Args:
      values: [K, T] per-task values of K methods (NaN: left out of that method's mean).
      datasets: [T] dataset of each task.
    Returns:
      [K, num_boot] bootstrap means (the same draws for every method: paired).
    """
    values = np.asarray(values, np.float64)
    names = list(dict.fromkeys(datasets))
    idx = [np.flatnonzero(np.asarray(datasets) == d) for d in names]
    n_max = max(len(i) for i in idx)
    d = len(names)
    table = np.full((values.shape[0], d, n_max), np.nan)
    sizes = np.asarray([len(i) for i in idx])
    for j, i in enumerate(idx):
        table[:, j, :len(i)] = values[:, i]
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, d, size=(num_boot, d))                          # [B, D]
    u = rng.random((num_boot, d, n_max))
    n_of = sizes[pick]                                                     # [B, D]
    task = np.floor(u * n_of[..., None]).astype(np.int64)                  # [B, D, n_max]
    live = np.arange(n_max)[None, None, :] < n_of[..., None]
    got = table[:, pick[..., None], task]                                  # [K, B, D, n_max]
    got = np.where(live[None], got, np.nan)
    got = got.reshape(values.shape[0], num_boot, -1)
    count = np.isfinite(got).sum(axis=2)
    total = np.where(np.isfinite(got), got, 0.0).sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _ci(boot: np.ndarray) -> tuple[float, float]:
    lo, hi = np.nanpercentile(boot, [2.5, 97.5])
    return float(lo), float(hi)


def task_rows(ev: dict, folds: list[dict], modality: str, *, variant: str = "main") -> list[dict]:
    """One row per (method, held-out task): tau_w, top-1 regret (points), top-3 hit."""
    names = [t.name for t in ev["tasks"]]
    pos = {n: i for i, n in enumerate(names)}
    models = ev["models"]
    dims = np.asarray(ev["dims"], np.float64)
    rows = []
    for f in folds:
        test = [pos[n] for n in f["test_tasks"]]
        prior = fold_prior(ev, (f["held_out"],))
        for j, i in enumerate(test):
            t = ev["tasks"][i]
            preds = {k: np.asarray(v[j], np.float64) for k, v in f["scores"].items()}
            if variant == "main":
                for a, m in enumerate(ev["methods"]):
                    preds[m] = ev["metric_scores"][i, a]
                preds["rankagg"] = ev["rankagg"][i]
                preds["zoo_prior"] = prior
                preds["largest_first"] = dims
            truth = np.asarray(ev["truth"][i], np.float64)
            for method, p in preds.items():
                ok = np.isfinite(p)
                if ok.sum() < 2:
                    continue
                top = np.argsort(-np.where(ok, p, -np.inf), kind="stable")
                rows.append({
                    "variant": variant, "modality": modality, "method": method,
                    "task": t.name, "dataset": t.dataset, "group": t.group, "kind": t.kind,
                    "tau_w": _tau(truth, p),
                    "regret_pts": 100.0 * float(truth[ok].max() - truth[top[0]]),
                    "top3_hit": float(np.any(truth[top[:3]] >= truth[ok].max())),
                    "ptms_scored": int(ok.sum()), "num_ptms": len(models),
                    "truth_seed_tau_w": _tau(truth, np.asarray(ev["truth_seed2"][i])),
                    "fold_step": f["step"]})
    return rows


def summarize_rows(rows: list[dict], *, num_boot: int = 2000, seed: int = 0) -> dict:
    """{modality: {scope (group or "overall"): {method: stats}}}; stats = mean tau_w with
    95% hierarchical-bootstrap CI, regret (points), top-3 hit rate, task count."""
    out: dict = {}
    for mod in sorted({r["modality"] for r in rows}):
        sel = [r for r in rows if r["modality"] == mod]
        meths = list(dict.fromkeys(r["method"] for r in sel))
        tasks = list(dict.fromkeys(r["task"] for r in sel))
        tpos = {t: i for i, t in enumerate(tasks)}
        info = {r["task"]: (r["dataset"], r["group"], r["truth_seed_tau_w"]) for r in sel}
        arr = {k: np.full((len(meths), len(tasks)), np.nan) for k in ("tau_w", "regret_pts",
                                                                      "top3_hit")}
        for r in sel:
            for k in arr:
                arr[k][meths.index(r["method"]), tpos[r["task"]]] = r[k]
        ceiling = np.asarray([[info[t][2] for t in tasks]])
        scopes = {"overall": np.arange(len(tasks))}
        for g in sorted({info[t][1] for t in tasks}):
            scopes[g] = np.asarray([i for i, t in enumerate(tasks) if info[t][1] == g])
        out[mod] = {}
        for scope, idx in scopes.items():
            ds = [info[tasks[i]][0] for i in idx]
            vals = np.concatenate([arr["tau_w"][:, idx], ceiling[:, idx]])
            boot = hierarchical_bootstrap(vals, ds, num_boot=num_boot, seed=seed)
            stats = {}
            for j, m in enumerate(meths + ["noise_ceiling"]):
                v = vals[j]
                lo, hi = _ci(boot[j])
                s = {"tau_w": float(np.nanmean(v)), "lo": lo, "hi": hi,
                     "n": int(np.isfinite(v).sum())}
                if j < len(meths):
                    s["regret_pts"] = float(np.nanmean(arr["regret_pts"][j, idx]))
                    s["top3_hit"] = float(np.nanmean(arr["top3_hit"][j, idx]))
                    s["partial"] = any(r["ptms_scored"] < r["num_ptms"] for r in sel
                                       if r["method"] == m)
                stats[m] = s
            # paired differences against Model Spider k=0 (same bootstrap draws)
            if "spider_k0" in meths:
                k0 = meths.index("spider_k0")
                for j, m in enumerate(meths):
                    d = boot[k0] - boot[j]
                    stats[m]["k0_minus_lo"], stats[m]["k0_minus_hi"] = _ci(d)
            out[mod][scope] = {"methods": stats, "num_tasks": len(idx),
                               "num_datasets": len(set(ds))}
    return out


# ----------------------------------------------------------------------------- driver
def _set(config, dotted: str, value) -> None:
    node = config
    *path, leaf = dotted.split(".")
    for p in path:
        node = node[p]
    node[leaf] = value


class _Timer:
    """Wall seconds of real work per stage, accumulated across resumed calls until the
    stage finishes once; later calls (cache reloads of a finished stage) are not counted."""

    def __init__(self, path: str):
        self.path = path
        saved = json.load(open(path)) if os.path.exists(path) else {}
        self.finished = set(saved.pop("_finished", []))
        self.data = saved

    def add(self, key: str, seconds: float, finished: bool = False) -> None:
        if key in self.finished:
            return
        self.data[key] = self.data.get(key, 0.0) + seconds
        if finished:
            self.finished.add(key)
        _save_json(self.path, {**self.data, "_finished": sorted(self.finished)})

    @contextlib.contextmanager
    def stage(self, key: str):
        """Adds the block's wall seconds, also when it stops early (MoreWork)."""
        t0 = time.time()
        ok = False
        try:
            yield
            ok = True
        finally:
            self.add(key, time.time() - t0, finished=ok)


def run_logo(config, workdir: str, *, modalities=None, ablation=(), deadline=None,
             progress=True, log=print) -> dict:
    """Labels, trains every fold and returns {"rows", "ablation_rows", "evals", "folds"}.

    Raises :class:`MoreWork` when ``deadline`` (a ``time.time()`` value) passed first.
    """
    os.makedirs(workdir, exist_ok=True)
    bank = workdir_lib.open_bank_for(config, workdir)
    mods = list(modalities or workdir_lib.modalities_for(config, bank))
    timer = _Timer(os.path.join(workdir, "timings.json"))
    rows, ab_rows, evals, folds, pool_sizes = [], [], {}, {}, {}
    variants = [("main", config, None)]
    for spec in ablation:          # "name" (every modality) or "name:modality"
        name, _, only = spec.partition(":")
        if name not in LOGO_ABLATIONS:
            raise ValueError(f"unknown LOGO ablation {name!r}; choose from {sorted(LOGO_ABLATIONS)}")
        if only and only not in mods:
            raise ValueError(f"LOGO ablation {spec!r}: modality {only!r} is not run; "
                             f"choose from {mods}")
        cfg = copy.deepcopy(config)
        for k, v in LOGO_ABLATIONS[name].items():
            _set(cfg, k, v)
        variants.append((name, cfg, only or None))
    for mod in mods:
        with timer.stage(f"{mod}/eval_labels"):
            ev = label_eval(bank, mod, config, os.path.join(workdir, mod, "eval"),
                            deadline=deadline, progress=progress, log=log)
        evals[mod] = ev
        for vname, cfg, only in variants:
            if only is not None and only != mod:
                continue
            suffix = "" if vname == "main" else f"@{vname}"
            with timer.stage(f"{mod}/pool_labels{suffix}"):
                pool, touched = label_pool(bank, mod, cfg, os.path.join(workdir, mod, "pool"),
                                           deadline=deadline, progress=progress)
            fdir = os.path.join(workdir, mod, "folds" if vname == "main" else f"folds@{vname}")
            with timer.stage(f"{mod}/folds{suffix}"):
                recs = run_folds(cfg, bank, mod, ev, pool, touched, fdir, deadline=deadline,
                                 log=log)
            folds[(mod, vname)] = recs
            pool_sizes[(mod, vname)] = len(touched)
            if vname == "main":
                rows += task_rows(ev, recs, mod)
            else:
                for r in task_rows(ev, recs, mod, variant=vname):
                    r["method"] = f"{r['method']}@{vname}"
                    ab_rows.append(r)
    return {"rows": rows, "ablation_rows": ab_rows, "evals": evals, "folds": folds,
            "timings": timer.data, "bank": bank, "modalities": mods, "pool_sizes": pool_sizes,
            "all_modalities": list(workdir_lib.modalities_for(config, bank))}


# ----------------------------------------------------------------------------- report
HEAD_METHODS = ("spider_k0", "spider_k3", "hybrid_k3", "spider_raw_k0", "spider_raw_k3",
                "rankagg", "zoo_prior", "largest_first")
PLOT_METHODS = ("spider_k0", "hybrid_k3", "spider_raw_k0", "logme", "rankagg", "zoo_prior")
SPIDER_PREFIXES = ("spider_", "hybrid_")


def _f(x, nd=3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def _cell(s: dict) -> str:
    return f"{_f(s['tau_w'])} [{_f(s['lo'], 2)}, {_f(s['hi'], 2)}]"


def _order(methods_seen) -> list[str]:
    head = [m for m in HEAD_METHODS if m in methods_seen]
    return head + [m for m in methods_seen if m not in head and m != "noise_ceiling"
                   and "_member" not in m]


def draw_group_plot(summary_mod: dict, modality: str, path: str) -> str:
    """Per-group mean tau_w with 95% CI bars for the headline methods (matplotlib PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scopes = [s for s in summary_mod if s != "overall"] + ["overall"]
    meths = [m for m in PLOT_METHODS if m in summary_mod["overall"]["methods"]]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(scopes) + 2), 3.8))
    width = 0.8 / max(len(meths), 1)
    for j, m in enumerate(meths):
        xs = np.arange(len(scopes)) + (j - (len(meths) - 1) / 2) * width
        st = [summary_mod[s]["methods"][m] for s in scopes]
        mean = np.asarray([s["tau_w"] for s in st])
        err = np.asarray([[s["tau_w"] - s["lo"] for s in st], [s["hi"] - s["tau_w"] for s in st]])
        ax.errorbar(xs, mean, yerr=np.clip(err, 0, None), fmt="o", ms=4, capsize=2, label=m)
    ceil = [summary_mod[s]["methods"]["noise_ceiling"]["tau_w"] for s in scopes]
    ax.scatter(np.arange(len(scopes)), ceil, marker="_", s=400, color="grey",
               label="noise ceiling")
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xticks(np.arange(len(scopes)))
    ax.set_xticklabels([f"{s}\n({summary_mod[s]['num_tasks']})" for s in scopes], fontsize=8)
    ax.set_ylabel("mean tau_w (95% CI)")
    ax.set_title(f"{modality}: leave-one-group-out, held-out group (tasks)")
    ax.legend(fontsize=7, ncol=3, loc="lower left")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _targets(ov: dict) -> list[str]:
    """Issue 11's numbers for one modality, met or NOT met."""
    m = ov["methods"]
    out = []
    if "spider_k0" not in m:
        return out
    k0 = m["spider_k0"]

    def line(ok, text):
        out.append(f"- {'met' if ok else '**NOT met**'}: {text}")

    if "zoo_prior" in m:
        p = m["zoo_prior"]
        line(k0["tau_w"] >= p["tau_w"], f"k=0 {_f(k0['tau_w'])} >= zoo prior {_f(p['tau_w'])} "
             f"(paired difference k0 - prior, 95% CI [{_f(p['k0_minus_lo'], 3)}, "
             f"{_f(p['k0_minus_hi'], 3)}])")
    if "logme" in m:
        lm = m["logme"]
        line(k0["tau_w"] >= lm["tau_w"] - 0.03, f"k=0 {_f(k0['tau_w'])} >= LogME - 0.03 = "
             f"{_f(lm['tau_w'] - 0.03)} (k0 - LogME 95% CI [{_f(lm['k0_minus_lo'], 3)}, "
             f"{_f(lm['k0_minus_hi'], 3)}])")
        line(k0["regret_pts"] <= lm["regret_pts"], f"top-1 regret of k=0 "
             f"{_f(k0['regret_pts'], 2)} <= LogME's {_f(lm['regret_pts'], 2)} points")
        for name in ("spider_k3", "hybrid_k3"):
            if name in m:
                line(m[name]["tau_w"] >= lm["tau_w"], f"k=3 (`{name}`) {_f(m[name]['tau_w'])} "
                     f">= LogME {_f(lm['tau_w'])}")
    static = set(HEAD_METHODS) | {"noise_ceiling"}
    metric = {k: v for k, v in m.items() if k not in static
              and not k.startswith(SPIDER_PREFIXES) and not v.get("partial")}
    if metric:
        best = max(metric, key=lambda k: metric[k]["tau_w"])
        out.append(f"- for reference, the best single metric over all PTMs in this table is "
                   f"`{best}`: {_cell(metric[best])}, top-1 regret "
                   f"{_f(metric[best]['regret_pts'], 2)} points (named after the fact: no "
                   "choice uses it)")
    return out


def _scale_lines(summary: dict, evals: dict, folds: dict, config, total_s: float,
                 pool_sizes: dict, ablation_summary, all_modalities=()) -> list[str]:
    """What this run covers against the issues' scale targets (met / NOT met, plainly)."""
    lcfg = config.logo
    reported = list(lcfg.methods or methods.names())
    left = [m for m in methods.names() if m not in reported]
    out = ["## Scale of this run (against the issues' targets)", ""]

    def line(ok, text):
        out.append(f"- {'met' if ok else '**NOT met**'}: {text}")

    missing = [m for m in all_modalities if m not in summary]
    if missing:
        line(False, "every modality of the bank benchmarked: **not run here**: "
             + ", ".join(missing) + " (this report covers " + ", ".join(summary) + " only)")

    for mod in summary:
        recs = folds[(mod, "main")]
        n_train = [r["num_train_tasks"] for r in recs]
        size = pool_sizes.get((mod, "main"))
        line(min(n_train) >= 2000, f"{mod}: training pool per fold {min(n_train)}..{max(n_train)} "
             f"tasks (issue 11: >= 2000; pool of {size} labelled tasks sampled from every "
             f"dataset, each fold keeps those touching no held-out dataset; "
             f"`logo.min_train_tasks` = {lcfg.min_train_tasks})")
        n_ev = summary[mod]["overall"]["num_tasks"]
        line(n_ev >= 100, f"{mod}: {n_ev} evaluation tasks (issue 10: >= 100)")
        ms = summary[mod]["overall"]["methods"]
        if "spider_k0" in ms:
            hw = {m: (ms[m]["hi"] - ms[m]["lo"]) / 2 for m in ("spider_k0", "logme", "zoo_prior")
                  if m in ms}
            line(max(hw.values()) <= 0.05, f"{mod}: 95% CI half-width of the overall mean tau_w "
                 "<= 0.05 (issue 10): " + ", ".join(f"{m} {v:.3f}" for m, v in hw.items()))
    if missing:
        line(False, f"whole LOGO benchmark <= 60 min on 2 cores (issue 11): not measured "
             f"(only {', '.join(summary)} ran: {total_s / 60:.1f} min of work at this scale)")
    else:
        line(total_s <= 3600, f"whole LOGO benchmark <= 60 min on 2 cores (issue 11): "
             f"{total_s / 60:.1f} min of work at this scale")
    line(not left, "every metric reported (issue 10)" + (
        f": left out for time: {', '.join(left)}" if left else ""))
    out.append(f"- scorer schedule: {lcfg.train_steps} steps of batch {config.train.batch_size}, "
               f"checkpoint chosen every {lcfg.select_every} steps on the validation group")
    ran: dict = {}                    # ablation -> modalities it ran on
    for mod, per in (ablation_summary or {}).items():
        for m in per["overall"]["methods"]:
            if "@" in m:
                ran.setdefault(m.split("@", 1)[1], set()).add(mod)
    left_ab = [a for a in ISSUE11_ABLATIONS if set(ran.get(a, ())) != set(summary)]
    line(not left_ab, "issue 11 ablations run: " + (", ".join(
        f"{a} ({', '.join(sorted(ms))})" for a, ms in sorted(ran.items())) or "none")
         + (f"; **not run on every modality**: {', '.join(left_ab)} (`--ablation=NAME`)"
            if left_ab else ""))
    return out + [""]


def _member_spread(ms: dict, suffix: str = "") -> str:
    """'mean +- sd' over ensemble members of their overall mean tau_w (k=0, alone)."""
    vals = [v["tau_w"] for k, v in ms.items()
            if k.startswith("spider_raw_k0_member") and k.endswith(suffix)
            and (suffix or "@" not in k)]
    return f"{np.mean(vals):.3f} +- {np.std(vals, ddof=1):.3f} ({len(vals)})" \
        if len(vals) > 1 else "n/a"


def _ablation_table(summary: dict, ablation_summary: dict) -> list[str]:
    """Issue 11's ablation table: the main run and every variant, Model Spider rows."""
    md = ["## Ablations (issue 11; Model Spider rows, each variant a full fold loop with "
          "its overrides)", "",
          "Item 4's anchoring is on/off within every run (`spider_k0` vs `spider_raw_k0`), "
          "item 5's hybrid vs the paper's re-ranking in the budget tables above.", "",
          "| variant | overrides | modality | k=0 anchored | k=0 transformer alone | "
          "k=3 paper (anchored) | k=3 hybrid | ensemble members alone, k=0 (mean +- sd) |",
          "|---|---|---|---|---|---|---|---|"]
    for mod in summary:
        main = summary[mod]["overall"]["methods"]
        ms = ablation_summary.get(mod, {}).get("overall", {}).get("methods", {})
        rows = [("main", "(config)", main, "")]
        for v in sorted({m.split("@", 1)[1] for m in ms if "@" in m}):
            ov_ = ", ".join(f"{k}={val}" for k, val in LOGO_ABLATIONS.get(v, {}).items())
            rows.append((v, ov_, ms, f"@{v}"))
        for name, ov_, src, sfx in rows:
            cells = [_cell(src[f"{c}{sfx}"]) if f"{c}{sfx}" in src else "n/a"
                     for c in ("spider_k0", "spider_raw_k0", "spider_k3", "hybrid_k3")]
            md.append(f"| {name} | {ov_} | {mod} | " + " | ".join(cells)
                      + f" | {_member_spread(src, sfx)} |")
    return md + [""]


def format_markdown(summary: dict, rows: list[dict], evals: dict, folds: dict, *, command: str,
                    machine: dict, timings: dict, config, ablation_summary=None,
                    figures=(), pool_sizes=None, all_modalities=()) -> str:
    """docs/RESULTS.md: the LOGO tables, targets, folds, ground truth and runtime."""
    lcfg = config.logo
    md = ["# Model Spider: leave-one-group-out benchmark", "",
          "Generated by `spider_jax/logo.py`; do not edit by hand. Regenerate with:", "",
          "```", command, "```", "",
          f"Machine: {machine['cpu']}, {machine['cores']} cores ({machine['devices']}); jax "
          f"{machine['jax']}, Python {machine['python']}; {machine['date']}.", "",
          "## Protocol", "",
          "For every modality and every dataset group (`group` in the bank manifest) the "
          "group is held out: the scorer is trained only on pool tasks that touch none of "
          "its datasets and is evaluated on the group's tasks. Evaluation tasks: each "
          f"dataset's full task (its classes, at most {lcfg.full_max_examples} balanced "
          f"rows) plus {lcfg.num_subsets} seeded class-subset tasks (2..{lcfg.subset_max_classes} "
          f"classes, at most {lcfg.subset_per_class} rows per class). Each task has its own "
          "ground truth: linear-probe accuracy (closed-form ridge, stratified "
          f"{lcfg.num_folds}-fold CV, `spider_jax.groundtruth`) on exactly its rows; every "
          "metric is scored on the same rows. tau_w is Vigna's weighted Kendall tau against "
          "that ground truth; top-1 regret is the best accuracy minus the accuracy of the "
          "top-ranked PTM (points); top-3 hit: a best PTM is among the top 3. 95% CIs: "
          f"bootstrap ({lcfg.num_boot} resamples) over datasets, then tasks within them; "
          "differences use the same (paired) resamples.", "",
          "**Selection rule.** " + rule_text(config),
          "",
          "Static baselines that never look at the task: `zoo_prior` (each PTM's mean "
          "ground-truth accuracy over the evaluation tasks of the fold's training groups) and "
          "`largest_first` (feature width). `rankagg`: Copeland over H-Score (variant by the "
          "label rule), NCE, LEEP, LogME where every PTM has the input. † = the method needs a "
          "source head and ranked only the PTMs that have one (not comparable).", ""]
    timings = {k: v for k, v in timings.items() if k.split("/")[0] in summary}
    total = sum(v for k, v in timings.items() if "@" not in k)      # ablations aside
    extra = sum(v for k, v in timings.items() if "@" in k)
    md += ["## Runtime", "",
           f"Whole LOGO benchmark (every fold of {', '.join(summary)}; ablations aside): "
           f"**{total / 60:.1f} min** of work on this machine (sum of the stages below without "
           "an @ablation suffix, accumulated over resumed pieces; waiting for the shared lock "
           f"not counted)" + (f"; the ablations took {extra / 60:.1f} min more." if extra
                              else "."), "",
           "| stage | seconds |", "|---|---|"]
    md += [f"| {k} | {v:.0f} |" for k, v in timings.items()] + [""]
    md += _scale_lines(summary, evals, folds, config, total, pool_sizes or {}, ablation_summary,
                       all_modalities)
    for mod, per in summary.items():
        ev = evals[mod]
        ov = per["overall"]
        meths = _order(list(ov["methods"]))
        recs = folds[(mod, "main")]
        groups = group_members({t.dataset: t.group for t in ev["tasks"]})
        md += [f"## {mod}", "",
               f"{len(ev['models'])} PTMs, {len(groups)} groups, {sum(map(len, groups.values()))} "
               f"datasets, {ov['num_tasks']} evaluation tasks. Groups: "
               + "; ".join(f"`{g}`: {', '.join(d)}" for g, d in groups.items()) + ".", ""]
        md += [f"### Issue 11 targets ({mod}, mean tau_w over all held-out tasks)", ""]
        md += _targets(ov) + [""]
        md += ["### Overall (every held-out task)", "",
               "| method | mean tau_w [95% CI] | k0 - method [95% CI] | top-1 regret (pts) | "
               "top-3 hit | tasks |", "|---|---|---|---|---|---|"]
        for m in meths:
            s = ov["methods"][m]
            name = m + (" †" if s.get("partial") else "")
            diff = "" if m == "spider_k0" else \
                f"[{_f(s.get('k0_minus_lo'), 3)}, {_f(s.get('k0_minus_hi'), 3)}]"
            md.append(f"| {name} | {_cell(s)} | {diff} | {_f(s['regret_pts'], 2)} | "
                      f"{_f(s['top3_hit'], 2)} | {s['n']} |")
        nc = ov["methods"]["noise_ceiling"]
        md += [f"| ground-truth noise ceiling (tau_w between two CV seeds) | {_cell(nc)} | | | "
               f"| {nc['n']} |", ""]
        scopes = [s for s in per if s != "overall"]
        md += ["### Per held-out group: mean tau_w [95% CI]", "",
               "| method | " + " | ".join(f"{g} ({per[g]['num_tasks']})" for g in scopes) + " |",
               "|---|" + "---|" * len(scopes)]
        for m in meths + ["noise_ceiling"]:
            md.append(f"| {m} | " + " | ".join(_cell(per[g]["methods"][m]) for g in scopes) + " |")
        md += ["", "Top-1 regret (points) / top-3 hit rate per group:", "",
               "| method | " + " | ".join(scopes) + " |", "|---|" + "---|" * len(scopes)]
        for m in meths:
            md.append(f"| {m} | " + " | ".join(
                f"{_f(per[g]['methods'][m]['regret_pts'], 1)} / "
                f"{_f(per[g]['methods'][m]['top3_hit'], 2)}" for g in scopes) + " |")
        md.append("")
        for f in figures:
            if f"logo_{mod}" in os.path.basename(f):
                md += [f"![{os.path.basename(f)}](figures/{os.path.basename(f)})", ""]
        md += ["### Folds", "",
               "| held-out group | validation group | training tasks (inner: also without v) | "
               "chosen step, weight (val anchored k=0 tau_w) | transformer alone: step (val "
               "tau_w) | held-out tasks |", "|---|---|---|---|---|---|"]
        for r in recs:
            raw_best = max(r["curve"], key=lambda c: c[1])
            anc_best = max(r["curve"], key=lambda c: c[3]) if len(r["curve"][0]) > 3 else None
            md.append(f"| {r['held_out']} | {r['validation']} | {r['num_train_tasks']} "
                      f"({r['num_inner_tasks']}) | {r['step']}, {r.get('weight', 'n/a')} "
                      f"({_f(anc_best[3]) if anc_best else 'n/a'}) | "
                      f"{r.get('raw_step', r['step'])} ({_f(raw_best[1])}) | "
                      f"{len(r['test_tasks'])} |")
        md.append("")
        ks = sorted({int(k[len("hybrid_k"):]) for k in ov["methods"] if k.startswith("hybrid_k")})
        if ks:
            md += [f"### Budgeted re-ranking ({mod}, issue 11 item 5): mean tau_w [95% CI] / "
                   "top-1 regret (pts)", "",
                   "| k | paper, anchored (`spider_k`) | hybrid (`hybrid_k`) | paper, "
                   "transformer alone (`spider_raw_k`) |", "|---|---|---|---|"]
            for k in [0] + ks:
                cells = []
                for pre in ("spider_k", "hybrid_k", "spider_raw_k"):
                    st = ov["methods"].get(f"{pre}{k}")
                    cells.append(f"{_cell(st)} / {_f(st['regret_pts'], 2)}" if st else
                                 "(= anchored k=0)")
                md.append(f"| {k} | " + " | ".join(cells) + " |")
            md.append("")
        if ev["notes"]:
            md += ["Left out: " + "; ".join(ev["notes"]), ""]
    md += _ablation_table(summary, ablation_summary or {})
    return "\n".join(md) + "\n"


def report(res: dict, config, out_dir: str, *, command: str, results_md: str = "",
           log=print) -> dict:
    """Summaries, CSV, figures and the Markdown of a finished :func:`run_logo`."""
    import shutil

    from spider_jax.benchmark import machine_info

    os.makedirs(out_dir, exist_ok=True)
    nb = int(config.logo.num_boot)
    summary = summarize_rows(res["rows"], num_boot=nb)
    ab = summarize_rows(res["ablation_rows"], num_boot=nb) if res["ablation_rows"] else None
    figs = [draw_group_plot(per, mod, os.path.join(out_dir, f"logo_{mod}_tau.png"))
            for mod, per in summary.items()]
    md = format_markdown(summary, res["rows"], res["evals"], res["folds"], command=command,
                         machine=machine_info(), timings=res["timings"], config=config,
                         ablation_summary=ab, figures=figs,
                         pool_sizes=res.get("pool_sizes"),
                         all_modalities=res.get("all_modalities", ()))
    _save_json(os.path.join(out_dir, "summary.json"), {"summary": summary, "ablations": ab})
    _save_json(os.path.join(out_dir, "rows.json"), res["rows"] + res["ablation_rows"])
    targets = [os.path.join(out_dir, "results.md")] + ([results_md] if results_md else [])
    for p in targets:
        fig_dir = os.path.join(os.path.dirname(os.path.abspath(p)), "figures")
        os.makedirs(fig_dir, exist_ok=True)
        for f in figs:
            if os.path.abspath(os.path.dirname(f)) != fig_dir:
                shutil.copyfile(f, os.path.join(fig_dir, os.path.basename(f)))
        atomic.write_text(p, md)
    return {"summary": summary, "ablations": ab, "markdown": md, "figures": figs}


# ----------------------------------------------------------------------------- XLA:CPU
# ----------------------------------------------------------------------------- CLI
def _define_flags():
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", "configs/logo.py", "LOGO config (configs/logo.py)")
    flags.DEFINE_string("workdir", None, "run directory (labels, folds; resumed)")
    flags.DEFINE_string("out", "", "report directory (default WORKDIR/report)")
    flags.DEFINE_string("results_md", "", "also write the Markdown here (docs/RESULTS.md)")
    flags.DEFINE_list("modalities", [], "default: every modality of the bank")
    flags.DEFINE_list("ablation", [], f"LOGO ablations, NAME or NAME:MODALITY (that modality "
                      f"only); NAME in {sorted(LOGO_ABLATIONS)}")
    flags.DEFINE_float("deadline_s", 0, "stop after the unit of work crossing this many "
                       "seconds and exit 75 (more work left); 0 = run to the end")
    flags.mark_flags_as_required(["workdir"])


def main(argv):
    from absl import flags, logging

    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    f = flags.FLAGS
    command = "python -m spider_jax.logo " + " ".join(a for a in sys.argv[1:]
                                                       if not a.startswith("--deadline_s"))
    deadline = time.time() + f.deadline_s if f.deadline_s > 0 else None
    one_thread_lapack_pool(log=print)
    try:
        res = run_logo(f.config, f.workdir, modalities=f.modalities or None,
                       ablation=tuple(f.ablation), deadline=deadline)
        out = report(res, f.config, f.out or os.path.join(f.workdir, "report"),
                     command=command, results_md=f.results_md)
    except MoreWork as e:
        print(f"more work left ({e}); run the same command again to continue")
        sys.exit(EXIT_MORE_WORK)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    for mod, per in out["summary"].items():
        ov = per["overall"]["methods"]
        print(f"[{mod}] " + ", ".join(f"{m} {_cell(ov[m])}" for m in _order(list(ov))
                                      if m in HEAD_METHODS + ("logme",)))
    print(f"total work {sum(res['timings'].values()) / 60:.1f} min; wrote "
          + ", ".join([os.path.join(f.out or os.path.join(f.workdir, 'report'), 'results.md')]
                      + ([f.results_md] if f.results_md else [])))


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
