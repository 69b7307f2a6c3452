"""Training the Model Spider scorer: ``python -m spider_jax.train --config=C --workdir=W``.

``train_and_evaluate(config, workdir)`` owns all I/O and returns its summaries:

1. opens the bank (or builds the synthetic one of ``config.synthetic`` in W/bank);
2. per modality (``config.modality``; "all" trains one scorer per modality in
   W/<modality>): labels the training tasks (``spider_jax.label``, cached, resumable)
   and the held-out downstream datasets;
3. trains with optax Adam(W) (warm-up + cosine decay), Eq. 4 loss, and per batch
   ``k ~ U{0..K}`` PTMs per task receiving PTM-specific tokens (appendix A.6);
4. checkpoints with orbax (state + config + zoo), resuming from W automatically; the
   data position is a pure function of the step (task order = permutation of epoch,
   k and PTM choice = rng of the step, dropout = rng folded with the step), so a killed
   and resumed run ends with exactly the same parameters;
5. logs loss, grad norm, lr and held-out tau_w to TensorBoard (W/tb) and stdout;
6. prints tau_w per downstream dataset: Model Spider (k = 0, k = 3), RankAgg and every
   single metric computed on the downstream task's own features.

Scale-out (:mod:`spider_jax.parallel`; the same code on 1 CPU, 8 GPUs or a TPU pod): a
``(data, model)`` mesh over every device; parameters and optimizer state replicated and
created already sharded (``jax.eval_shape`` -> shardings -> ``jit(init, out_shardings)``);
each global batch (``train.batch_size``, a multiple of the data axis) sharded on ``data``,
each host building only its rows (``parallel.host_slice``); ``train_step`` jitted with
explicit in/out shardings, donating the state.  Only process 0 logs and writes JSON; every
process calls the orbax save/restore (collective).  Multi-host: launch one process per host
(``launch/``); ``main`` joins them with ``parallel.maybe_initialize_distributed()``.

``load_trained(workdir, modality=None) -> (config, model, params, zoo)`` restores a run.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import app, flags, logging
from tqdm import tqdm

from spider_jax import config_check, evaluation, inference, label, losses, methods, owndata, parallel
from spider_jax import prior, probe
from spider_jax import workdir as workdir_lib
from spider_jax.model import SpiderEnsemble, SpiderScorer, init_params, make_scorer, split_members
from spider_jax.sampler import Zoo
from spider_jax.workdir import load_trained  # noqa: F401  (re-exported: train.load_trained)

__all__ = ["train_and_evaluate", "load_trained", "make_optimizer", "make_train_step"]


# ----------------------------------------------------------------------------- pure parts
def make_optimizer(config, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Adam(W) with linear warm-up then cosine decay from ``lr`` to ``end_lr``."""
    o = config.optim
    warmup = int(round(o.warmup_fraction * total_steps))
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=o.lr, warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1), end_value=o.end_lr)
    opt = (optax.adamw(schedule, weight_decay=o.weight_decay) if o.weight_decay > 0
           else optax.adam(schedule))
    if o.grad_clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(o.grad_clip), opt)
    if prior.uses_gate(config):      # the gate's calibrated reference is never trained
        opt = optax.multi_transform({"train": opt, "frozen": optax.set_to_zero()},
                                    prior.param_labels)
    return opt, schedule


def make_train_step(model: SpiderScorer, tx: optax.GradientTransformation, loss_name: str,
                    mesh: jax.sharding.Mesh | None = None, state_shardings=None,
                    residual_l2: float = 0.0):
    """A pure ``train_step(state, batch, base_rng) -> (state, metrics)`` (jitted, donating).

    With ``mesh`` (and the state's ``state_shardings``), the step is jitted with explicit
    shardings: state as given (replicated), every batch leaf split on ``data`` along its
    leading axis, rng and metrics replicated.  The loss is a mean over the global batch,
    so XLA inserts the gradient all-reduce over ``data``.  An ensemble's loss is the mean
    of its members' losses (each member's gradient is its own loss's, scaled by 1/K);
    ``residual_l2`` adds ``residual_l2 * mean(r^2)`` of a prior + residual scorer.
    """
    ensemble = isinstance(model, SpiderEnsemble)

    def loss_fn(params, batch, rng):
        kwargs = {"return_members": True} if ensemble else {}
        scores, inter = model.apply({"params": params}, batch["psi_centres"],
                                    batch["class_mask"], batch["specific_centres"],
                                    batch["specific_mask"], deterministic=False,
                                    rngs={"dropout": rng}, mutable=["intermediates"], **kwargs)
        targets, mask = batch["targets"], batch["model_mask"]
        if ensemble:
            targets = jnp.broadcast_to(targets[None], scores.shape)
            mask = jnp.broadcast_to(mask[None], scores.shape)
        loss = losses.ranking_loss(loss_name, scores, targets, mask)
        if residual_l2 > 0:
            res = jax.tree.leaves(inter)
            loss = loss + residual_l2 * sum(jnp.mean(jnp.square(r)) for r in res) / len(res)
        return loss

    def train_step(state, batch, base_rng):
        rng = jax.random.fold_in(base_rng, state["step"])
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], batch, rng)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new = {"step": state["step"] + 1, "params": params, "opt_state": opt_state}
        return new, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    if mesh is None:
        return jax.jit(train_step, donate_argnums=(0,))
    rep = parallel.replicated(mesh)
    batch_sh = {k: parallel.batch_sharding(mesh, n) for k, n in _BATCH_NDIM.items()}
    return jax.jit(train_step, donate_argnums=(0,),
                   in_shardings=(state_shardings, batch_sh, rep),
                   out_shardings=(state_shardings, {"loss": rep, "grad_norm": rep}))


# ----------------------------------------------------------------------------- data
def steps_per_epoch(num_tasks: int, batch_size: int) -> int:
    if num_tasks < batch_size:
        raise ValueError(f"{num_tasks} training tasks < batch size {batch_size}")
    return num_tasks // batch_size


_BATCH_NDIM = {"psi_centres": 3, "class_mask": 2, "specific_centres": 4, "specific_mask": 2,
               "targets": 2, "model_mask": 2}


def make_batch(labels: dict, step: int, config, num_models: int,
               rows: slice | None = None, extra_keys: tuple[str, ...] = ()) -> dict:
    """The batch of ``step``: a pure function of (config seeds, step).

    Args:
      labels: ``label.label_tasks`` output.
      step: global step.
      config: the run config (``seed``, ``train.batch_size``, ``train.max_specific``).
      num_models: M.
      rows: the rows of the global batch to build (this host's
        ``parallel.host_slice(batch_size)``); default all.
      extra_keys: further per-task arrays of ``labels`` to gather for the same tasks.
    """
    b, k_max = config.train.batch_size, config.train.max_specific
    t = labels["rank_labels"].shape[0]
    spe = steps_per_epoch(t, b)
    epoch, pos = divmod(int(step), spe)
    order = np.random.default_rng([config.seed, 101, epoch]).permutation(t)
    idx = np.sort(order[pos * b:(pos + 1) * b])
    rng = np.random.default_rng([config.seed, 202, int(step)])
    k = int(rng.integers(0, min(k_max, num_models) + 1))
    spec_mask = np.zeros((b, num_models), bool)
    for i in range(b):
        spec_mask[i, rng.choice(num_models, k, replace=False)] = True
    if rows is not None:        # this host's rows only (the rng above covers all of them)
        idx, spec_mask = idx[rows], spec_mask[rows]
    n = len(idx)
    return {"psi_centres": labels["psi_centres"][idx],
            "class_mask": labels["class_mask"][idx],
            "specific_centres": labels["specific_centres"][idx].astype(np.float32),
            "specific_mask": spec_mask,
            "targets": labels.get("targets", labels["rank_labels"])[idx].astype(np.float32),
            "model_mask": np.ones((n, num_models), bool),
            **{k: labels[k][idx] for k in extra_keys}}


# ----------------------------------------------------------------------------- evaluation
def downstream_on_device(downstream: dict, mesh: jax.sharding.Mesh | None = None) -> dict:
    """The scorer inputs of the downstream tasks, placed once (replicated on ``mesh``)."""
    where = None if mesh is None else parallel.replicated(mesh)
    return {k: jax.device_put(np.asarray(downstream[k]), where)
            for k in ("psi_centres", "class_mask", "specific_centres")}


def evaluate(model, params, downstream: dict, zoo: Zoo, ks=(0, 3), tasks: dict | None = None,
             hybrid_metric: str = "", members: bool = True) -> dict:
    """tau_w per downstream dataset for the scorer (each k), RankAgg and single metrics.

    The scorer runs on device (``params`` where they live, ``tasks`` from
    :func:`downstream_on_device`); only its [T, M] scores come back to the host.  The
    reference is the bank's groundtruth where present, else the RankAgg labels of that
    task (then the RankAgg column is 1 by construction).  ``hybrid_metric``: also a
    ``hybrid_k{k}`` column per k > 0 (``inference.hybrid_merge`` with that metric of the
    top-k PTMs, from the downstream labels' metric scores).  With ``members``, an
    ensemble also gets ``spider_k{k}_member{i}`` columns (each member alone) and
    ``"members"``: {``spider_k{k}``: (mean, sd) over members of their mean tau_w}.
    """
    names = downstream["datasets"]
    truth = np.where(np.isnan(downstream["truth"]).any(1, keepdims=True),
                     downstream["rank_labels"], downstream["truth"])
    tasks = downstream_on_device(downstream) if tasks is None else tasks
    ks = [min(int(k), zoo.num_models) for k in ks]
    metric = None
    if hybrid_metric and any(k > 0 for k in ks):
        metric = jax.device_put(downstream_metric(downstream, hybrid_metric).astype(np.float32),
                                tasks["psi_centres"].sharding)

    def run(m, p, **kw):
        return {k: inference.rerank_scores(m, {"params": p}, tasks["psi_centres"],
                                           tasks["class_mask"], tasks["specific_centres"],
                                           k=k, **kw) for k in ks}

    preds = {f"spider_k{k}": v for k, v in run(model, params).items()}
    if metric is not None:
        preds.update({f"hybrid_k{k}": v for k, v in run(model, params, metric=metric).items()
                      if k > 0})
    if members and isinstance(model, SpiderEnsemble):
        single, member_params = split_members(model, params)
        for i, p in enumerate(member_params):
            preds.update({f"spider_k{k}_member{i}": v for k, v in run(single, p).items()})
    preds = jax.device_get(preds)
    cols: dict[str, list[float]] = {}
    for name, pred in preds.items():
        cols[name] = [evaluation.weighted_tau(truth[i], pred[i]) for i in range(len(names))]
    cols["rankagg"] = [evaluation.weighted_tau(truth[i], downstream["rank_labels"][i])
                       for i in range(len(names))]
    for a, name in enumerate(methods.RANKAGG_METHODS):
        s = downstream["metric_scores"][:, a]
        if not np.isnan(s).any():
            cols[name] = [evaluation.weighted_tau(truth[i], s[i]) for i in range(len(names))]
    spread = {}
    for k in ks:     # seed mean +- sd of the members' mean tau_w
        per = [np.mean(v) for c, v in cols.items() if c.startswith(f"spider_k{k}_member")]
        if per:
            spread[f"spider_k{k}"] = (float(np.mean(per)), float(np.std(per, ddof=1)))
    return {"datasets": list(names), "columns": cols, "members": spread,
            "truth_source": ["groundtruth" if not np.isnan(downstream["truth"][i]).any()
                             else "rankagg" for i in range(len(names))]}


def downstream_metric(downstream: dict, name: str) -> np.ndarray:
    """[T, M] scores of one metric from the downstream labels (ValueError if absent)."""
    names = methods.RANKAGG_METHODS
    if name not in names or np.isnan(downstream["metric_scores"][:, names.index(name)]).any():
        raise ValueError(f"eval.hybrid_metric={name!r}: training evaluation has the downstream "
                         f"scores of {names} (where every PTM has the input); "
                         f"set eval.hybrid_metric to one of them or ''")
    return downstream["metric_scores"][:, names.index(name)]


def format_table(result: dict, title: str) -> str:
    """A plain-text tau_w table (rows: datasets + mean; columns: methods)."""
    cols = result["columns"]
    singles = [c for c in cols if c in methods.RANKAGG_METHODS]
    best = max(singles, key=lambda c: np.mean(cols[c])) if singles else None
    names = [c for c in cols if "_member" not in c]     # members: summarised below
    width = max([len(d) for d in result["datasets"]] + [8])
    head = f"{'dataset':<{width}} " + " ".join(f"{n + ('*' if n == best else ''):>10}" for n in names)
    lines = [title, head, "-" * len(head)]
    for i, ds in enumerate(result["datasets"]):
        lines.append(f"{ds:<{width}} " + " ".join(f"{cols[n][i]:>10.3f}" for n in names))
    lines.append(f"{'mean':<{width}} " + " ".join(f"{np.mean(cols[n]):>10.3f}" for n in names))
    if best:
        lines.append(f"* best single metric by mean tau_w: {best}; reference: "
                     + ", ".join(sorted(set(result["truth_source"]))))
    for c, (mu, sd) in result.get("members", {}).items():
        lines.append(f"{c}: ensemble members alone, mean tau_w {mu:.3f} +- {sd:.3f} (sd over "
                     f"members)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- checkpoints
def _init_state(model, tx, zoo: Zoo, c_max: int, seed: int) -> dict:
    """Fresh train state (pure; jit it with ``out_shardings`` to create it sharded)."""
    params = init_params(model, zoo, c_max, seed)
    return {"step": jnp.asarray(0, jnp.int32), "params": params, "opt_state": tx.init(params)}


@jax.jit
def _first_nonfinite(first: dict, loss: jax.Array, step: jax.Array) -> dict:
    """Carries the first step whose loss is not finite (-1: none) on device: no sync."""
    hit = (first["step"] < 0) & ~jnp.isfinite(loss)
    return {"step": jnp.where(hit, step - 1, first["step"]),
            "loss": jnp.where(hit, loss, first["loss"])}


def create_state(model, tx, zoo: Zoo, c_max: int, seed: int, mesh) -> tuple[dict, object]:
    """The train state created already sharded on ``mesh`` (replicated), and its shardings.

    ``jax.eval_shape`` gives the state's structure without computing it, the shardings
    follow from it, and ``jit(init, out_shardings=...)`` materialises every leaf directly
    in place on every device (no host copy, no transfer afterwards).
    """
    init = functools.partial(_init_state, model, tx, zoo, c_max, seed)
    shardings = parallel.replicate_like(jax.eval_shape(init), mesh)
    return jax.jit(init, out_shardings=shardings)(), shardings


# ----------------------------------------------------------------------------- main loop
def train_one(config, workdir: str, bank, modality: str, cache: str,
              mesh: jax.sharding.Mesh | None = None) -> dict:
    """Labels (into ``cache``), trains and evaluates the scorer of one modality in ``workdir``.

    Args:
      mesh: device mesh; default ``parallel.make_mesh()`` over every device of every host.
    """
    mesh = parallel.make_mesh() if mesh is None else mesh
    parallel.check_batch(config.train.batch_size, mesh)
    main = parallel.is_main_process()
    if main:
        os.makedirs(workdir, exist_ok=True)
    labels = label.label_tasks(bank, config, modality=modality, cache_dir=cache, mesh=mesh,
                               progress=main)
    labels["targets"] = probe.supervision_targets(labels, config)
    downstream = label.label_downstream(bank, config, modality=modality, cache_dir=cache)
    _, zoo = label.zoo_for(bank, modality)
    model = make_scorer(config, zoo.dims)
    t, b = labels["rank_labels"].shape[0], config.train.batch_size
    total = config.train.num_steps or config.train.num_epochs * steps_per_epoch(t, b)
    tx, schedule = make_optimizer(config, total)
    c_max = labels["class_mask"].shape[1]
    if main:
        workdir_lib.write_run(workdir, config, zoo, c_max, labels["meta"],
                              extraction=owndata.extraction_spec(bank, modality),
                              zoo_prior=prior.zoo_prior(label.zoo_for(bank, modality)[0],
                                                        zoo.models))
    state, state_sh = create_state(model, tx, zoo, c_max, config.seed, mesh)
    mngr = workdir_lib.checkpoint_manager(workdir, config.train.max_to_keep)
    # Every process restores (orbax is collective); an unreadable latest checkpoint is set
    # aside in W/checkpoints_unreadable and the previous one resumed.
    step, restored = workdir_lib.restore_latest_good(
        mngr, lambda s: mngr.restore(s, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(parallel.with_shardings(state, state_sh)))),
        set_aside=os.path.join(workdir, workdir_lib.UNREADABLE))
    if step is not None:
        state = restored["state"]
        logging.info("resumed %s from step %d", workdir, int(state["step"]))
    elif prior.uses_gate(config):        # fresh: calibrate the gate on the training pool
        ref, scale = prior.gate_reference(
            label.zoo_for(bank, modality)[0], num_refs=int(config.model.gate_refs),
            quantile=float(config.model.gate_quantile), seed=config.seed)
        state = {**state, "params": prior.with_gate(state["params"], ref, scale)}
    start = int(jax.device_get(state["step"]))
    train_step = make_train_step(model, tx, config.train.loss, mesh, state_sh,
                                 float(config.model.get("residual_l2", 0.0)))
    rows = parallel.host_slice(b)
    with jax.transfer_guard("allow"):         # one set-up transfer, before the loop
        base_rng = jax.device_put(jax.random.PRNGKey(config.seed + 1), parallel.replicated(mesh))
    writer = _summary_writer(workdir)
    history, evals = [], []
    ks = tuple(int(k) for k in config.eval.rerank_k)
    hybrid_metric = str(config.eval.get("hybrid_metric", ""))
    tasks = downstream_on_device(downstream, mesh) if downstream else None
    if downstream and start == 0:      # the untrained scorer, for reference
        res = evaluate(model, state["params"], downstream, zoo, ks, tasks, hybrid_metric,
                       members=False)
        evals.append({"step": 0, **{k: float(np.mean(v)) for k, v in res["columns"].items()}})
    # The loss stays on device: a non-finite one is carried (first step, value) and read
    # only when the host looks anyway (log, eval, checkpoint), before any checkpoint.
    first_bad = jax.device_put({"step": np.int32(-1), "loss": np.float32(0.0)},
                               parallel.replicated(mesh))
    try:
        bar = tqdm(range(start, total), initial=start, total=total, desc=f"train {modality}",
                   disable=not main)
        for step in bar:
            batch = make_batch(labels, step, config, zoo.num_models, rows)
            state, m = train_step(state, parallel.host_to_global(batch, mesh), base_rng)
            first_bad = _first_nonfinite(first_bad, m["loss"], state["step"])
            if config.train.sleep_per_step:
                time.sleep(config.train.sleep_per_step)
            done = step + 1
            log_now = done % config.train.log_every == 0 or done == total
            eval_now = bool(downstream) and (done % config.train.eval_every == 0 or done == total)
            save_now = done % config.train.checkpoint_every == 0 or done == total
            if not (log_now or eval_now or save_now):
                continue
            _raise_if_nonfinite(jax.device_get(first_bad), schedule, workdir)
            if log_now:
                vals = jax.device_get(m)
                row = {"step": done, "loss": float(vals["loss"]),
                       "grad_norm": float(vals["grad_norm"]), "lr": _lr(schedule, step)}
                history.append(row)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
                _log(writer, done, {f"train/{k}": v for k, v in row.items() if k != "step"})
            if eval_now:
                res = evaluate(model, state["params"], downstream, zoo, ks, tasks, hybrid_metric,
                               members=False)
                evals.append({"step": done, **{k: float(np.mean(v)) for k, v in res["columns"].items()}})
                _log(writer, done, {f"eval/tau_w_{k}": float(np.mean(v))
                                    for k, v in res["columns"].items()})
            if save_now:
                with jax.transfer_guard("allow"):      # orbax copies the state to host
                    mngr.save(done, args=ocp.args.Composite(
                        state=ocp.args.StandardSave(state),
                        config=ocp.args.JsonSave(config.to_dict())))
    finally:
        mngr.wait_until_finished()
        mngr.close()
        if writer is not None:
            writer.close()
    summary = {"modality": modality, "steps": total, "history": history, "evals": evals,
               "hscore": labels["meta"]["hscore"],
               "copeland_methods": labels["meta"]["copeland_methods"]}
    if downstream:
        res = evaluate(model, state["params"], downstream, zoo, ks, tasks, hybrid_metric)
        summary["final"] = res
        summary["table"] = format_table(
            res, f"tau_w per downstream dataset ({modality} zoo, {zoo.num_models} PTMs)")
    summary["params"] = state["params"]
    return summary


def _lr(schedule, step: int) -> float:
    """The learning rate of ``step``, computed on the host (logging only)."""
    with jax.default_device(jax.local_devices(backend="cpu")[0]), jax.transfer_guard("allow"):
        return float(schedule(step))


def _raise_if_nonfinite(first_bad: dict, schedule, workdir: str) -> None:
    step = int(first_bad["step"])
    if step >= 0:
        raise FloatingPointError(
            f"loss became {float(first_bad['loss'])} at step {step} (lr "
            f"{_lr(schedule, step):.3g}); no checkpoint was written for it. Lower "
            f"--config.optim.lr or set --config.optim.grad_clip and resume from {workdir}")


def _summary_writer(workdir: str):
    if jax.process_index() != 0:
        return None
    from tensorboardX import SummaryWriter
    return SummaryWriter(workdir_lib.tensorboard_dir(workdir))


def _log(writer, step: int, scalars: dict) -> None:
    if jax.process_index() == 0:
        tqdm.write(f"step {step}: " + ", ".join(f"{k}={v:.4g}" for k, v in scalars.items()))
    if writer is not None:
        for k, v in scalars.items():
            writer.add_scalar(k, v, step)
        writer.flush()


def train_and_evaluate(config, workdir: str, mesh: jax.sharding.Mesh | None = None) -> dict:
    """Trains one scorer per modality of ``config`` in ``workdir``; returns the summaries.

    Args:
      config: the run config.
      workdir: run directory (on a filesystem every host sees when multi-host).
      mesh: device mesh; default every device of every host.

    Returns:
      {modality: summary} with "history" (loss, grad_norm, lr per log step), "evals"
      (mean tau_w per eval step), "final" (per-dataset tau_w table data), "table"
      (printable), "params" (final parameters), "hscore" and "copeland_methods".
    """
    config_check.check_config(config)            # before anything is written or labelled
    workdir_lib.check_workdir(workdir)
    os.makedirs(workdir, exist_ok=True)
    bank = workdir_lib.open_bank_for(config, workdir)
    mods = workdir_lib.modalities_for(config, bank)
    for m in mods:                               # a finished run is never touched
        workdir_lib.check_resume(workdir_lib.run_dir_for(config, workdir, m), config,
                                 label.zoo_for(bank, m)[1])
    return {m: train_one(config, workdir_lib.run_dir_for(config, workdir, m), bank, m,
                         workdir_lib.cache_dir_for(config, workdir, m), mesh) for m in mods}


# ----------------------------------------------------------------------------- CLI
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    parallel.maybe_initialize_distributed()
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)    # orbax logs every save at INFO
    t0 = time.time()
    try:
        summaries = train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
    except (OSError, FloatingPointError, ValueError) as e:   # bad input: no traceback
        if flags.FLAGS.verbosity >= 1:                       # --verbosity=1: the traceback too
            raise
        raise SystemExit(f"error: {e}") from None
    if not parallel.is_main_process():
        return
    for mod, s in summaries.items():
        if "table" in s:
            print(s["table"])
        print(f"[{mod}] labels: H-Score variant {s['hscore']}, Copeland over "
              f"{s['copeland_methods']}; {s['steps']} steps")
    print(f"done in {time.time() - t0:.1f}s; workdir {flags.FLAGS.workdir}")


if __name__ == "__main__":
    from ml_collections import config_flags
    config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
    flags.DEFINE_string("workdir", None, "Run directory (checkpoints, labels, logs); resumed.")
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, flags_parser=config_check.parse_flags)
