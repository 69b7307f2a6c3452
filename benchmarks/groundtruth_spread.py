"""How task-dependent is a bank's ground truth? Per-dataset spread, top member, and the
Kendall tau between every two datasets' model rankings.

    python benchmarks/groundtruth_spread.py --bank=banks/wheel --modality=image

Reads ``groundtruth.json`` (``python -m spider_jax.groundtruth``). For each dataset of the
modality: the best and worst member's linear-probe accuracy, their difference (the
spread), and the top member. Then Kendall's tau-b (scipy) between the accuracy vectors of
every pair of datasets over the members they share: 1 means the same ranking on both
tasks, so off-diagonal values well below 1 mean the best model changes with the task.
"""

from __future__ import annotations

import itertools

import numpy as np
from absl import app, flags
from scipy import stats

from spider_jax import bank as bank_lib

flags.DEFINE_string("bank", "banks/wheel", "Feature bank directory.")
flags.DEFINE_enum("modality", "image", ["image", "text"], "Which modality's datasets.")
FLAGS = flags.FLAGS


def spread_table(gt: dict, datasets: list[str]) -> list[str]:
    lines = ["| dataset | N | members | worst | best | spread | top member |", "|---|---|---|---|---|---|---|"]
    for ds in datasets:
        e = gt[ds]
        mean = np.asarray(e["mean"])
        top = e["models"][int(mean.argmax())]
        lines.append(f"| {ds} | {e.get('num_examples', '?')} | {len(mean)} | {mean.min():.3f} | {mean.max():.3f}"
                     f" | {mean.max() - mean.min():.3f} | {top} |")
    return lines


def tau_matrix(gt: dict, datasets: list[str]) -> tuple[list[str], list[float]]:
    acc = {ds: dict(zip(gt[ds]["models"], gt[ds]["mean"])) for ds in datasets}
    tau = {}
    for a, b in itertools.combinations(datasets, 2):
        common = sorted(set(acc[a]) & set(acc[b]))
        tau[a, b] = tau[b, a] = stats.kendalltau([acc[a][m] for m in common], [acc[b][m] for m in common]).statistic
    lines = ["| | " + " | ".join(datasets) + " |", "|---" * (len(datasets) + 1) + "|"]
    for a in datasets:
        lines.append(f"| {a} | " + " | ".join("1.00" if a == b else f"{tau[a, b]:.2f}" for b in datasets) + " |")
    return lines, [tau[a, b] for a, b in itertools.combinations(datasets, 2)]


def main(argv):
    del argv
    b = bank_lib.open_bank(FLAGS.bank, validate=False)
    gt = bank_lib.read_groundtruth(FLAGS.bank)
    if gt is None:
        raise app.UsageError(f"{FLAGS.bank}: no groundtruth.json; run python -m spider_jax.groundtruth first")
    gt = gt["datasets"]
    datasets = [d for d in b.datasets if b.dataset_info(d)["modality"] == FLAGS.modality and d in gt]
    if len(datasets) < 2:
        raise app.UsageError(f"{FLAGS.bank}: fewer than two {FLAGS.modality} datasets have ground truth")
    print("\n".join(spread_table(gt, datasets)))
    lines, taus = tau_matrix(gt, datasets)
    print("\nKendall tau-b between datasets' member rankings:\n")
    print("\n".join(lines))
    print(f"\noff-diagonal tau: min {min(taus):.2f}, median {np.median(taus):.2f}, max {max(taus):.2f}"
          f" over {len(taus)} pairs")


if __name__ == "__main__":
    app.run(main)
