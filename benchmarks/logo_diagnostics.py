"""Why does (or doesn't) the learned scorer carry over to held-out groups? Diagnostics of a
finished LOGO workdir (``python -m spider_jax.logo``), read from its caches and fold files.

    python benchmarks/logo_diagnostics.py --config=configs/logo.py \
        --config.bank_dir=banks/wheel --workdir=runs/logo_v3 [same --config.* as the run]

Per modality, mean tau_w over every held-out task (each fold's tasks, as in the report):

* ``zoo_prior``: each PTM's mean ground truth over the fold's training groups (the report's);
* ``rankagg_mean``: the mean per-task z-scored RankAgg ranking of the training groups'
  evaluation tasks, a static ranking: what a scorer that learns only the average of its
  RankAgg supervision can reach;
* ``psi_knn_t{t}``: a non-parametric task-aware baseline on the training groups' ground
  truth: the softmax(cosine / t)-weighted mean of the z-scored ground truth of the training
  tasks, by the cosine of the mean psi class centre (how much of the ranking psi predicts
  across groups, with the best possible labels); t is fixed, not chosen;
* ``transformer_self``: tau_w between the fold's transformer ranking (``spider_raw_k0``,
  the saved parameters) of each held-out task and its own mean ranking over the training
  groups' tasks: near 1 means the transformer ranks every task alike (a static ranking).
"""

from __future__ import annotations

import glob
import json
import os
import sys

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # configs/

from spider_jax import label, logo
from spider_jax.probe import standardise
from spider_jax import workdir as workdir_lib
from spider_jax.benchmark.scoring import _tau

config_flags.DEFINE_config_file("config", "configs/logo.py", "the LOGO run's config")
flags.DEFINE_string("workdir", None, "a finished LOGO workdir")
flags.DEFINE_list("temps", ["0.05", "0.1", "0.3"], "kNN softmax temperatures (all reported)")
FLAGS = flags.FLAGS


def task_embedding(psi_centres: np.ndarray, class_mask: np.ndarray) -> np.ndarray:
    """[T, D] unit mean of the unit psi class centres of each task (real classes only)."""
    pc = np.asarray(psi_centres, np.float64)
    pc = pc / np.maximum(np.linalg.norm(pc, axis=-1, keepdims=True), 1e-12)
    m = np.asarray(class_mask, np.float64)[..., None]
    e = (pc * m).sum(1) / np.maximum(m.sum(1), 1.0)
    return e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)


def knn_scores(emb_test, emb_train, z_train, temp: float) -> np.ndarray:
    """Softmax(cosine / temp)-weighted mean of the training tasks' z-scored ground truth."""
    sim = emb_test @ emb_train.T / temp
    w = np.exp(sim - sim.max(axis=1, keepdims=True))
    return (w / w.sum(axis=1, keepdims=True)) @ z_train


def diagnose(config, bank, workdir: str, modality: str, temps) -> dict:
    import flax.serialization

    from spider_jax import inference
    from spider_jax.model import make_scorer

    ev = logo.label_eval(bank, modality, config, os.path.join(workdir, modality, "eval"),
                         progress=False)
    _, zoo = label.zoo_for(bank, modality)
    model = make_scorer(config, zoo.dims)
    groups = np.asarray([t.group for t in ev["tasks"]])
    truth = ev["truth"]
    emb = task_embedding(ev["psi_centres"], ev["class_mask"])
    z_truth = standardise(truth, np.float64)
    z_agg = standardise(np.nan_to_num(ev["rankagg"], nan=np.nanmin(ev["rankagg"])), np.float64)
    out: dict = {}
    for path in sorted(glob.glob(os.path.join(workdir, modality, "folds", "fold_*.json"))):
        rec = json.load(open(path))
        g = rec["held_out"]
        te, tr = np.where(groups == g)[0], np.where(groups != g)[0]
        cols = {"zoo_prior": np.broadcast_to(logo.fold_prior(ev, (g,)), (len(te), truth.shape[1])),
                "rankagg_mean": np.broadcast_to(z_agg[tr].mean(0), (len(te), truth.shape[1]))}
        for t in temps:
            cols[f"psi_knn_t{t:g}"] = knn_scores(emb[te], emb[tr], z_truth[tr], t)
        for name, pred in cols.items():
            out.setdefault(name, []).extend(_tau(truth[i], pred[j]) for j, i in enumerate(te))
        saved = flax.serialization.msgpack_restore(open(path[:-5] + ".msgpack", "rb").read())
        params = saved.get("raw", saved)
        raw = standardise(inference.rerank_tasks(model, params, logo._eval_batch(
            ev, np.arange(len(groups))), 0), np.float64)
        own = raw[tr].mean(0)
        out.setdefault("transformer_self", []).extend(_tau(own, raw[i]) for i in te)
    return {k: (float(np.nanmean(v)), len(v)) for k, v in out.items()}


def main(argv):
    del argv
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    logo.one_thread_lapack_pool()
    temps = [float(t) for t in FLAGS.temps]
    bank = workdir_lib.open_bank_for(FLAGS.config, FLAGS.workdir)
    for mod in workdir_lib.modalities_for(FLAGS.config, bank):
        if not os.path.isdir(os.path.join(FLAGS.workdir, mod, "folds")):
            continue
        res = diagnose(FLAGS.config, bank, FLAGS.workdir, mod, temps)
        print(f"## {mod}\n\n| diagnostic | mean tau_w | held-out tasks |\n|---|---|---|")
        for k, (v, n) in res.items():
            print(f"| {k} | {v:.3f} | {n} |")
        print()


if __name__ == "__main__":
    app.run(main)
