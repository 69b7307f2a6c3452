"""Grow a trained zoo by one PTM without retraining (paper appendix C.4, incremental zoo).

``python -m spider_jax.add_model --workdir=W --bank=B --model=NAME [--out=W2]``

The scorer gives PTM ``m`` a score that depends only on its own token ``theta_m`` (and
its projection ``P_m`` when re-ranking) and on the task: the model tokens never attend
to each other (:mod:`spider_jax.model`).  So a new PTM needs only its token and its
projection; every other parameter, and every old PTM's score, stays exactly as trained.

1. Supervision for the new PTM alone: its LogME / H-Score (/ LEEP / NCE) on the stored
   training tasks (the same tasks, rebuilt from the sampler seeds: their psi centres are
   checked against the label cache), appended to the cached metrics of the old PTMs and
   re-aggregated by Copeland over all M + 1 (RankAgg needs every PTM's metric per task).
2. The old PTMs' scores on those tasks are computed once (k = 0 and with specific
   tokens); each step runs the scorer for the new PTM only, on the same batches and
   ``k ~ U{0..K}`` specific-token draws as training (``train.make_batch``), and the same
   ranking loss over all M + 1 PTMs.  Only the new PTM's leaves (``model_tokens``,
   ``specific_proj``, ``specific_bias`` of a one-PTM scorer) are updated:
   ``optax.multi_transform`` with ``optax.set_to_zero`` on every shared leaf.
3. The new leaves are inserted at the PTM's position in the bank's model order and the
   result is written as a complete single-modality run (config, zoo.json with the
   extraction spec, label cache for the M + 1 zoo, orbax checkpoint) into ``--out``,
   built in a temporary directory and renamed into place: the original workdir is only
   read, and an interrupted call leaves no half-written run.

Defaults: ``--steps_fraction=0.25`` of the original run's steps and a learning rate 10x
the run's (a handful of new parameters start from the mean token); set a priori, not
tuned on any held-out score.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import app, flags, logging
from tqdm import tqdm

from spider_jax import bank as bank_lib
from spider_jax import inference, label, losses, methods, owndata, train
from spider_jax import workdir as workdir_lib
from spider_jax.model import make_scorer
from spider_jax.sampler import Zoo

__all__ = ["add_model", "NEW_LEAVES"]

# The per-PTM leaves of the scorer: the only ones a new PTM brings.
NEW_LEAVES = ("model_tokens", "specific_proj", "specific_bias")


def _new_ptm_metrics(bank, zoo1: Zoo, config, old: dict, hscore: str, progress: bool):
    """Metrics [T, A] and specific centres [T, C, D] of the one new PTM on the stored tasks."""
    sampler = label.make_sampler(bank, zoo1, config)
    t, c_max = old["class_mask"].shape
    if sampler.max_classes != c_max:
        raise ValueError(f"the bank's training pool gives tasks of up to {sampler.max_classes} "
                         f"classes, the scorer was trained with {c_max}: another bank?")
    size = int(config.label.chunk_size)
    scores = np.zeros((t, len(methods.RANKAGG_METHODS)), np.float32)
    centres = np.zeros((t, c_max, zoo1.dims[0]), np.float16)
    for lo in tqdm(range(0, t, size), desc=f"label {zoo1.models[0]}", disable=not progress):
        hi = min(lo + size, t)
        specs = [sampler.spec(i) for i in range(lo, hi)]
        specs += [specs[0]] * (size - len(specs))           # fixed shapes: one compile
        batch = sampler.materialize(specs, num_classes=c_max,
                                    num_examples=sampler.num_examples_max)
        if not np.allclose(batch["psi_centres"][:hi - lo], old["psi_centres"][lo:hi],
                           rtol=1e-4, atol=1e-4):
            raise ValueError(f"training tasks {lo}..{hi - 1} rebuilt from the bank differ from "
                             f"the ones the scorer was trained on (another bank or data seed?)")
        s, _ = label.label_batch(batch, zoo1, num_classes=c_max, hscore=hscore,
                                 methods=tuple(config.label.methods))
        scores[lo:hi] = s[:hi - lo, :, 0]
        centres[lo:hi] = batch["specific_centres"][:hi - lo, 0, :, :zoo1.dims[0]]
    return scores, centres


def _old_scores(model, params, old: dict, chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Every old PTM's score on every stored task at k = 0 and with its specific tokens."""
    score = jax.jit(inference.specific_scores, static_argnums=0)
    variables = {"params": params}
    t, m = old["rank_labels"].shape
    chunk = min(chunk, t)
    base, spec = np.zeros((t, m), np.float32), np.zeros((t, m), np.float32)
    for lo in range(0, t, chunk):
        rows = np.minimum(np.arange(lo, lo + chunk), t - 1)    # fixed shape: one compile
        n = min(chunk, t - lo)
        psi, cm = old["psi_centres"][rows], old["class_mask"][rows]
        centres = old["specific_centres"][rows].astype(np.float32)
        # one executable for both: an all-False specific mask is the k = 0 score exactly
        base[lo:lo + n] = np.asarray(score(model, variables, psi, cm, centres,
                                           np.zeros((chunk, m), bool)))[:n]
        spec[lo:lo + n] = np.asarray(score(model, variables, psi, cm, centres,
                                           np.ones((chunk, m), bool)))[:n]
    return base, spec


def _insert(old: np.ndarray, new: np.ndarray, j: int, width: int | None = None) -> np.ndarray:
    """Rows of ``old`` [M, ...] with ``new`` [...] inserted at ``j``; axis 1 zero-padded to
    ``width`` (heterogeneous feature dims of ``specific_proj``)."""
    old, new = np.asarray(old), np.asarray(new)[None]
    if width is not None:
        old = np.pad(old, [(0, 0), (0, width - old.shape[1])] + [(0, 0)] * (old.ndim - 2))
        new = np.pad(new, [(0, 0), (0, width - new.shape[1])] + [(0, 0)] * (new.ndim - 2))
    return np.concatenate([old[:j], new, old[j:]], axis=0)


def _fit(config, model1, params1: dict, data: dict, j: int, num_models: int, steps: int,
         progress: bool) -> tuple[dict, list[float]]:
    """Adam on the new PTM's leaves only; returns (params, loss per step)."""
    opt, _ = train.make_optimizer(config, steps)
    labels = {k: jax.tree.map(lambda _, k=k: "new" if k in NEW_LEAVES else "frozen", v)
              for k, v in params1.items()}
    tx = optax.multi_transform({"new": opt, "frozen": optax.set_to_zero()}, labels)
    loss_name = config.train.loss

    def loss_fn(p, batch, rng):
        smask = batch["specific_mask"]                                       # [B, M+1]
        s_new = model1.apply({"params": p}, batch["psi_centres"], batch["class_mask"],
                             batch["specific_centres"], smask[:, j:j + 1],
                             deterministic=False, rngs={"dropout": rng})     # [B, 1]
        old_mask = jnp.concatenate([smask[:, :j], smask[:, j + 1:]], axis=1)
        s_old = jnp.where(old_mask, batch["old_spec"], batch["old_base"])    # [B, M]
        scores = jnp.concatenate([s_old[:, :j], s_new, s_old[:, j:]], axis=1)
        return losses.ranking_loss(loss_name, scores, batch["targets"], batch["model_mask"])

    @jax.jit
    def step_fn(p, opt_state, batch, rng):
        loss, grads = jax.value_and_grad(loss_fn)(p, batch, rng)
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, loss

    p = jax.tree.map(jnp.asarray, params1)
    opt_state = jax.jit(tx.init)(p)
    base_rng = jax.random.PRNGKey(config.seed + 3)
    history = []
    for step in tqdm(range(steps), desc="add_model fit", disable=not progress):
        batch = train.make_batch(data, step, config, num_models,
                                 extra_keys=("old_base", "old_spec"))
        p, opt_state, loss = step_fn(p, opt_state, batch, jax.random.fold_in(base_rng, step))
        history.append(float(loss))
        if not np.isfinite(history[-1]):
            raise FloatingPointError(f"add_model loss became {history[-1]} at step {step}; "
                                     f"lower --lr")
    return jax.tree.map(np.asarray, p), history


def _write_run(out: str, config, zoo: Zoo, params: dict, step: int, label_meta: dict,
               arrays: dict, **meta) -> None:
    """A complete run directory at ``out``, built beside it and renamed into place."""
    if os.path.exists(out):
        raise ValueError(f"--out {out} exists; choose a new directory (the original is kept)")
    tmp = f"{out.rstrip(os.sep)}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        label.write_cache(os.path.join(tmp, "labels"), label_meta, arrays,
                          int(config.label.chunk_size))
        workdir_lib.write_run(tmp, config, zoo, int(arrays["class_mask"].shape[1]), label_meta,
                              **meta)
        tx, _ = train.make_optimizer(config, 10)      # the state layout training resumes
        state = {"step": jnp.asarray(step, jnp.int32), "params": params,
                 "opt_state": jax.jit(tx.init)(params)}
        mngr = workdir_lib.checkpoint_manager(tmp, int(config.train.max_to_keep))
        mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                config=ocp.args.JsonSave(config.to_dict())))
        mngr.wait_until_finished()
        mngr.close()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def add_model(workdir: str, bank_dir: str, model_name: str, *, out: str | None = None,
              modality: str | None = None, steps_fraction: float = 0.25,
              num_steps: int | None = None, lr: float | None = None,
              progress: bool = True) -> dict:
    """Extends the scorer of ``workdir`` with ``model_name`` (see the module docstring).

    Args:
      workdir: a trained workdir (or one modality's run of it).
      bank_dir: a bank holding the scorer's zoo, its training datasets and the new
        model's features (e.g. the same bank after ``extract --models=NAME``).
      model_name: the new PTM (a model of the bank, not yet in the zoo).
      out: where the extended run goes (default ``{workdir}-plus-{model_name}``).
      modality: which scorer of a multi-modality workdir (default: the new model's).
      steps_fraction: optimisation steps as a fraction of the original run's steps.
      num_steps: explicit step count (overrides ``steps_fraction``).
      lr: peak learning rate (default 10x the run's ``optim.lr``).
      progress: tqdm bars.

    Returns:
      {"out", "model", "index", "steps", "seconds": {"labels", "old_scores", "fit",
      "total"}, "loss": [per step], "zoo": the new Zoo}.
    """
    t0 = time.perf_counter()
    bank = bank_lib.open_bank(bank_dir, validate=False)
    info = bank.model_info(model_name)
    modality = modality or info["modality"]
    info_run = workdir_lib.read_run(workdir_lib.find_run(workdir, modality))
    run, config, zoo = info_run.run_dir, info_run.config, info_run.zoo
    model = make_scorer(config, zoo.dims)
    params = jax.tree.map(np.asarray, workdir_lib.restore_params(info_run, model))
    if info["modality"] != zoo.modality:
        raise ValueError(f"{model_name} is a {info['modality']} model; the scorer in {run} ranks "
                         f"{zoo.modality} models")
    if model_name in zoo.models:
        raise ValueError(f"{model_name} is already in the zoo of {run}")
    missing = [m for m in zoo.models if m not in bank.models]
    if missing:
        raise ValueError(f"the bank {bank_dir} lacks models of the scorer's zoo: {missing[:8]}")
    sub = bank.subset(modality)
    new_zoo = Zoo.from_bank(sub.select_models(list(zoo.models) + [model_name]), modality)
    if [m for m in new_zoo.models if m != model_name] != list(zoo.models):
        raise ValueError("the bank lists the zoo's models in another order than the scorer")
    if new_zoo.psi_dim != zoo.psi_dim:
        raise ValueError(f"the bank's psi width {new_zoo.psi_dim} != the scorer's {zoo.psi_dim}")
    j = new_zoo.models.index(model_name)
    zoo1 = Zoo.from_bank(sub.select_models([model_name]), modality)

    # 1. the stored tasks (label cache of the run) + the new PTM's metrics on them
    root = os.path.dirname(run) if config.modality in ("", "all") else run
    old = label.label_tasks(sub.select_models(zoo.models), config, modality=modality,
                            cache_dir=workdir_lib.cache_dir_for(config, root, modality),
                            progress=progress)
    hscore = old["meta"]["hscore"]
    scores1, centres1 = _new_ptm_metrics(sub.select_models([model_name]), zoo1, config, old,
                                         hscore, progress)
    metric = np.concatenate([old["metric_scores"][:, :, :j], scores1[:, :, None],
                             old["metric_scores"][:, :, j:]], axis=2)
    rank_labels = np.asarray(methods.rankagg_labels(metric, new_zoo,
                                                    tuple(config.label.methods)))
    t_labels = time.perf_counter()

    # 2. old scores once, then fit the new PTM's leaves
    base, spec = _old_scores(model, params, old)
    t_old = time.perf_counter()
    total = config.train.num_steps or config.train.num_epochs * train.steps_per_epoch(
        old["rank_labels"].shape[0], config.train.batch_size)
    steps = int(num_steps or max(1, round(steps_fraction * total)))
    fit_config = config.copy_and_resolve_references()
    fit_config.optim.lr = float(lr or 10 * config.optim.lr)
    fit_config.optim.end_lr = fit_config.optim.lr * config.optim.end_lr / config.optim.lr
    model1 = make_scorer(config, zoo1.dims)
    # Start from an average PTM; the projection as the scorer initialises it (LeCun normal:
    # variance 1 / D_new), drawn with NumPy (no XLA compile for a one-off init).
    rng = np.random.default_rng([config.seed, 7])
    d_new, d = zoo1.dims[0], params["model_tokens"].shape[1]
    params1 = {k: v for k, v in params.items() if k not in NEW_LEAVES}
    params1["model_tokens"] = params["model_tokens"].mean(0, keepdims=True)
    params1["specific_proj"] = (rng.standard_normal((1, d_new, d)) / np.sqrt(d_new)
                                ).astype(np.float32)
    params1["specific_bias"] = np.zeros((1, d), np.float32)
    want = jax.eval_shape(model1.init, jax.random.PRNGKey(0), old["psi_centres"][:1],
                          old["class_mask"][:1], centres1[:1, None].astype(np.float32),
                          np.ones((1, 1), bool))["params"]
    if jax.tree.structure(want) != jax.tree.structure(params1) or any(
            a.shape != np.shape(b) for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(params1))):
        raise ValueError("the checkpoint's parameters do not match the scorer its config builds")
    data = {"psi_centres": old["psi_centres"], "class_mask": old["class_mask"],
            "specific_centres": centres1[:, None], "rank_labels": rank_labels,
            "old_base": base, "old_spec": spec}
    fitted, history = _fit(fit_config, model1, params1, data, j, new_zoo.num_models, steps,
                           progress)
    t_fit = time.perf_counter()

    # 3. the extended scorer's parameters and run directory
    full = dict(params)
    full["model_tokens"] = _insert(params["model_tokens"], fitted["model_tokens"][0], j)
    full["specific_proj"] = _insert(params["specific_proj"], fitted["specific_proj"][0], j,
                                    width=new_zoo.max_dim)
    full["specific_bias"] = _insert(params["specific_bias"], fitted["specific_bias"][0], j)
    out = out or f"{workdir.rstrip(os.sep)}-plus-{model_name}"
    out_config = config.copy_and_resolve_references()
    out_config.modality = modality
    out_config.bank_dir = bank_dir
    out_config.label.cache_dir = ""
    t, m, c, d_old = old["specific_centres"].shape
    specific = np.zeros((t, m + 1, c, new_zoo.max_dim), np.float16)
    specific[:, [i for i in range(m + 1) if i != j], :, :d_old] = old["specific_centres"]
    specific[:, j, :, :zoo1.dims[0]] = centres1
    arrays = {"psi_centres": old["psi_centres"], "class_mask": old["class_mask"],
              "specific_centres": specific,
              "num_classes": old["num_classes"], "metric_scores": metric,
              "rank_labels": rank_labels}
    sampler = label.make_sampler(sub.select_models(new_zoo.models), new_zoo, out_config)
    label_meta = label.fingerprint(new_zoo, out_config, sampler, hscore)
    spec_json = owndata.extraction_spec(sub.select_models(new_zoo.models), modality)
    mngr = workdir_lib.checkpoint_manager(run, 1)
    old_step = mngr.latest_step() or 0
    mngr.close()
    _write_run(out, out_config, new_zoo, full, int(old_step) + steps, label_meta, arrays,
               extraction=spec_json,
               extended_from={"workdir": workdir, "model": model_name, "steps": steps,
                              "lr": fit_config.optim.lr, "step": int(old_step)})
    t_end = time.perf_counter()
    return {"out": out, "model": model_name, "index": j, "steps": steps, "zoo": new_zoo,
            "loss": history, "params": full,
            "seconds": {"labels": t_labels - t0, "old_scores": t_old - t_labels,
                        "fit": t_fit - t_old, "total": t_end - t0}}


# ----------------------------------------------------------------------------- CLI
def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    fl = flags.FLAGS
    if not fl["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    try:
        res = add_model(fl.workdir, fl.bank, fl.model, out=fl.out, modality=fl.modality,
                        steps_fraction=fl.steps_fraction, num_steps=fl.num_steps, lr=fl.lr)
    except (FileNotFoundError, FloatingPointError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    s = res["seconds"]
    print(f"added {res['model']} as PTM {res['index']} of {res['zoo'].num_models} "
          f"({res['steps']} steps, loss {res['loss'][0]:.4f} -> {res['loss'][-1]:.4f}); "
          f"{s['total']:.1f} s (labels {s['labels']:.1f}, old scores {s['old_scores']:.1f}, "
          f"fit {s['fit']:.1f}); run written to {res['out']}")


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "trained workdir (read only)")
    flags.DEFINE_string("bank", None, "bank holding the zoo, its training datasets and the "
                        "new model's features")
    flags.DEFINE_string("model", None, "the new PTM (a model of --bank)")
    flags.DEFINE_string("out", None, "the extended run's directory (default "
                        "WORKDIR-plus-MODEL); must not exist")
    flags.DEFINE_string("modality", None, "scorer of a multi-modality workdir (default: the "
                        "new model's modality)")
    flags.DEFINE_float("steps_fraction", 0.25, "steps as a fraction of the original run's")
    flags.DEFINE_integer("num_steps", None, "explicit number of steps")
    flags.DEFINE_float("lr", None, "peak learning rate (default 10x the run's optim.lr)")
    flags.mark_flags_as_required(["workdir", "bank", "model"])
    app.run(main)
