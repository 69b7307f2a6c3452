"""add_model vs retraining from scratch: tau_w and cost, measured in one process.

For each held-out member h of the zoo: train a scorer on the zoo without h, extend it
with h by ``spider_jax.add_model``, and compare with one scorer trained from scratch on
the whole zoo (same config, same training tasks): tau_w against the bank's ground truth
on every downstream dataset (k = 0 and k = 3), and the cost of add_model against the
from-scratch run (labels of all PTMs + training, and training alone).  Timings are wall
clock on warm kernels: the held-out scorers are trained first (untimed), which compiles
every labelling and scoring executable, then the from-scratch run and each add_model
are timed.  Single-threaded CPU (set before JAX starts).

    python benchmarks/add_model.py --config=configs/smoke.py --workdir=runs/add_model_smoke
    python benchmarks/add_model.py --config=configs/wheelzoo.py --config.bank_dir=banks/wheel \\
        --config.modality=image --workdir=runs/add_model_wheel --held_out=a,b,c

Prints one row per (held-out member, downstream dataset), then the mean difference
(extended - scratch) with a 95% bootstrap CI over those rows, beside the zoo prior, and
the cost ratios.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Importing metrics_speed pins this process to one core and single-threaded BLAS/XLA.
import benchmarks.metrics_speed  # noqa: E402,F401

import shutil  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402
from scipy import stats  # noqa: E402

from spider_jax import add_model, evaluation, inference, label, methods, train  # noqa: E402
from spider_jax import workdir as workdir_lib  # noqa: E402

config_flags.DEFINE_config_file("config", None, "training config", lock_config=True)
flags.DEFINE_string("workdir", None, "benchmark directory (runs are reused when present)")
flags.DEFINE_list("held_out", None, "members to hold out (default: every member)")
flags.mark_flags_as_required(["config", "workdir"])


def _tau(model, params, downstream, zoo) -> dict[int, np.ndarray]:
    """tau_w per downstream dataset at k = 0 and k = 3 against the ground truth."""
    truth = np.where(np.isnan(downstream["truth"]).any(1, keepdims=True),
                     downstream["rank_labels"], downstream["truth"])
    out = {}
    for k in (0, 3):
        pred = inference.rerank_tasks(model, params, downstream, min(k, zoo.num_models))
        out[k] = np.array([evaluation.weighted_tau(truth[i], pred[i])
                           for i in range(len(truth))])
    return out


def _derive_labels(full: dict, view, cfg, modality: str, h: int, cache_dir: str) -> None:
    """The label cache of the zoo without PTM ``h``, from the whole zoo's (when the
    H-Score variant is the same; otherwise label_tasks computes it)."""
    _, zoo_h = label.zoo_for(view, modality)
    sampler = label.make_sampler(view.subset(modality), zoo_h, cfg)
    hscore = methods.hscore_variant(cfg.label.hscore, sampler.num_examples_max, zoo_h.max_dim)
    if hscore != full["meta"]["hscore"] or os.path.exists(cache_dir):
        return
    keep = [i for i in range(full["rank_labels"].shape[1]) if i != h]
    metric = full["metric_scores"][:, :, keep]
    arrays = {"psi_centres": full["psi_centres"], "class_mask": full["class_mask"],
              "specific_centres": full["specific_centres"][:, keep, :, :zoo_h.max_dim],
              "num_classes": full["num_classes"], "metric_scores": metric,
              "rank_labels": np.asarray(methods.rankagg_labels(metric, zoo_h,
                                                               tuple(cfg.label.methods)))}
    label.write_cache(cache_dir, label.fingerprint(zoo_h, cfg, sampler, hscore), arrays,
                      int(cfg.label.chunk_size))


def _ci(x: np.ndarray) -> tuple[float, float]:
    if len(x) < 2 or np.allclose(x, x[0]):
        return float(x.mean()), float(x.mean())
    r = stats.bootstrap((x,), np.mean, confidence_level=0.95, n_resamples=2000,
                        random_state=0, method="percentile")
    return float(r.confidence_interval.low), float(r.confidence_interval.high)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    config = flags.FLAGS.config
    root = flags.FLAGS.workdir
    os.makedirs(root, exist_ok=True)
    bank = workdir_lib.open_bank_for(config, root)
    bank_dir = config.bank_dir or os.path.join(root, "bank")
    modality = config.modality if config.modality not in ("", "all") else \
        workdir_lib.modalities_for(config, bank)[0]
    cfg = config.copy_and_resolve_references()
    cfg.modality, cfg.bank_dir = modality, bank_dir
    sub = bank.subset(modality)
    members = list(flags.FLAGS.held_out or sub.models)

    # Untimed warm-up: label the whole zoo once (compiles every metric kernel), and train
    # the held-out scorers (compiles training and scoring). A held-out zoo's labels are
    # the whole zoo's metrics without that column, re-aggregated (metrics are per PTM).
    full = label.label_tasks(sub, cfg, modality=modality, progress=False,
                             cache_dir=os.path.join(root, "labels_warmup"))
    for h in members:
        run = os.path.join(root, f"without-{h}")
        if not os.path.exists(os.path.join(run, "zoo.json")):
            view = sub.select_models([m for m in sub.models if m != h])
            _derive_labels(full, view, cfg, modality, sub.models.index(h),
                           os.path.join(run, "labels"))
            train.train_one(cfg, run, view, modality, os.path.join(run, "labels"))

    scratch = os.path.join(root, "scratch")
    fresh = not os.path.exists(os.path.join(scratch, "zoo.json"))
    if fresh:
        t0 = time.perf_counter()
        label.label_tasks(sub, cfg, modality=modality, cache_dir=os.path.join(scratch, "labels"),
                          progress=False)
        t1 = time.perf_counter()
        train.train_one(cfg, scratch, sub, modality, os.path.join(scratch, "labels"))
        t2 = time.perf_counter()
        t_label_all, t_train = t1 - t0, t2 - t1
    _, model, params, zoo = train.load_trained(scratch)
    downstream = label.label_downstream(sub, cfg, modality=modality,
                                        cache_dir=os.path.join(scratch, "labels"))
    tau_scratch = _tau(model, params, downstream, zoo)
    labels_all = label.label_tasks(sub, cfg, modality=modality,
                                   cache_dir=os.path.join(scratch, "labels"), progress=False)
    prior = labels_all["rank_labels"].mean(axis=0)
    truth = np.where(np.isnan(downstream["truth"]).any(1, keepdims=True),
                     downstream["rank_labels"], downstream["truth"])
    tau_prior = np.array([evaluation.weighted_tau(truth[i], prior) for i in range(len(truth))])

    rows, costs = [], []
    print(f"{'held out':<24} {'dataset':<20} {'ext k0':>7} {'scr k0':>7} {'ext k3':>7} "
          f"{'scr k3':>7} {'prior':>7}")
    for h in members:
        out = os.path.join(root, f"extended-{h}")
        if os.path.exists(out):
            shutil.rmtree(out)
        res = add_model.add_model(os.path.join(root, f"without-{h}"), bank_dir, h, out=out,
                                  progress=False)
        costs.append(res["seconds"])
        _, m2, p2, z2 = train.load_trained(out)           # the written run, as users load it
        if z2.models != zoo.models:
            raise RuntimeError(f"extended zoo order {z2.models} != scratch {zoo.models}")
        tau_ext = _tau(m2, p2, downstream, z2)
        for i, ds in enumerate(downstream["datasets"]):
            rows.append((tau_ext[0][i], tau_scratch[0][i], tau_ext[3][i], tau_scratch[3][i],
                         tau_prior[i]))
            print(f"{h:<24} {ds:<20} {tau_ext[0][i]:>7.3f} {tau_scratch[0][i]:>7.3f} "
                  f"{tau_ext[3][i]:>7.3f} {tau_scratch[3][i]:>7.3f} {tau_prior[i]:>7.3f}")
    r = np.asarray(rows)
    print(f"\n{len(members)} held-out members x {len(downstream['datasets'])} downstream "
          f"datasets ({modality}, {zoo.num_models} PTMs)")
    for name, col_e, col_s in (("k=0", 0, 1), ("k=3", 2, 3)):
        d = r[:, col_e] - r[:, col_s]
        lo, hi = _ci(d)
        print(f"tau_w {name}: extended {r[:, col_e].mean():.3f}, scratch {r[:, col_s].mean():.3f},"
              f" zoo prior {r[:, 4].mean():.3f}; extended - scratch {d.mean():+.3f} "
              f"(95% bootstrap CI {lo:+.3f} .. {hi:+.3f})")
    add_total = np.mean([c["total"] for c in costs])
    add_fit = np.mean([c["fit"] + c["old_scores"] for c in costs])
    print(f"add_model: {add_total:.2f} s per member (labels of the new PTM "
          f"{np.mean([c['labels'] for c in costs]):.2f} s, old scores + fit {add_fit:.2f} s)")
    if fresh:
        print(f"from scratch: labels of all PTMs {t_label_all:.2f} s + training {t_train:.2f} s")
        print(f"ratio add_model / from scratch (labels + training): "
              f"{add_total / (t_label_all + t_train):.3f}; "
              f"fit / training alone: {add_fit / t_train:.3f}")
    else:
        print("(from-scratch run reused from an earlier call: delete WORKDIR/scratch to time it)")


if __name__ == "__main__":
    app.run(main)
