"""Does a trained scorer rank *unseen tasks of its training pool* better than a fixed prior?

Model Spider can only help on a downstream task if it learned task-dependent rankings at
all. This diagnostic separates the two failure modes seen on the wheel zoo:

* in distribution: fresh tasks sampled from the training pool (task indices after the ones
  used for training, i.e. unseen mixes of seen datasets), scored against their own RankAgg
  labels (the supervision the scorer imitates);
* out of distribution: the downstream datasets, scored against the bank's ground truth.

Each is compared with the zoo prior (every PTM's mean RankAgg label over the training
tasks; no task information) and with LogME on the task's own features.

  python benchmarks/generalisation.py --workdir=runs/wheel --modality=text \
      --bank=banks/wheel --num_tasks=64
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from spider_jax import bank as bank_lib  # noqa: E402
from spider_jax import evaluation, inference, label, methods, train  # noqa: E402
from spider_jax import workdir as workdir_lib  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "Trained workdir.", required=True)
_MODALITY = flags.DEFINE_string("modality", None, "image or text.", required=True)
_BANK = flags.DEFINE_string("bank", None, "Feature bank root.", required=True)
_NUM_TASKS = flags.DEFINE_integer("num_tasks", 64, "Unseen training-pool tasks to label.")
_K = flags.DEFINE_integer("k", 3, "Re-ranking budget reported beside k = 0 (Algorithm 2).")


def mean_tau(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean tau_w over tasks (rows); rows whose truth is constant are skipped."""
    taus = [evaluation.weighted_tau(t, p) for t, p in zip(truth, pred) if np.ptp(t) > 0]
    return float(np.mean(taus)) if taus else float("nan")


def main(argv):
    del argv
    workdir = os.path.join(_WORKDIR.value, _MODALITY.value)
    config, model, params, zoo = train.load_trained(workdir)
    bank = bank_lib.open_bank(_BANK.value)
    seen = int(config.data.num_train_tasks)
    cache = workdir_lib.cache_dir_for(config, _WORKDIR.value, _MODALITY.value)
    labelled = label.label_tasks(bank, config, modality=_MODALITY.value, cache_dir=cache,
                                 num_tasks=seen + _NUM_TASKS.value)
    prior = labelled["rank_labels"][:seen].mean(0)
    fresh = slice(seen, seen + _NUM_TASKS.value)
    truth = labelled["rank_labels"][fresh]
    tasks = {k: labelled[k][fresh] for k in ("psi_centres", "class_mask", "specific_centres")}
    spider = inference.rerank_tasks(model, params, tasks, 0)
    spider3 = inference.rerank_tasks(model, params, tasks, _K.value)
    logme = labelled["metric_scores"][fresh, methods.RANKAGG_METHODS.index("logme")]
    print(f"{_MODALITY.value}: {_NUM_TASKS.value} unseen training-pool tasks, tau_w against "
          f"their RankAgg labels")
    print(f"  Model Spider k=0 {mean_tau(truth, spider):.3f}   k={_K.value} "
          f"{mean_tau(truth, spider3):.3f}   zoo prior "
          f"{mean_tau(truth, np.broadcast_to(prior, truth.shape)):.3f}   LogME "
          f"{mean_tau(truth, logme):.3f}")

    down = label.label_downstream(bank, config, modality=_MODALITY.value, cache_dir=cache)
    names, gt = down["datasets"], down["truth"]
    spider_d = inference.rerank_tasks(model, params, down, 0)
    spider_d3 = inference.rerank_tasks(model, params, down, _K.value)
    print(f"{_MODALITY.value}: downstream datasets {list(names)}, tau_w against ground truth")
    print(f"  Model Spider k=0 {mean_tau(gt, spider_d):.3f}   k={_K.value} "
          f"{mean_tau(gt, spider_d3):.3f}   zoo prior "
          f"{mean_tau(gt, np.broadcast_to(prior, gt.shape)):.3f}")
    spread = np.std(spider_d, axis=0).mean() / (np.std(spider_d, axis=1).mean() + 1e-12)
    print(f"  between-task / within-task spread of Model Spider's scores on them: {spread:.3f}")


if __name__ == "__main__":
    app.run(main)
