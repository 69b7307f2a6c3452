"""Spider charts (paper 5.5, Figure 4b) and score-vs-truth scatters (Figure 3).

    python -m spider_jax.plots --workdir=DIR --bank=BANK --out_dir=PLOTS [--k=0] \
        [--clusters=clusters.json] [--tasks_per_dataset=8]

writes ``PLOTS/spider_charts.png`` and ``PLOTS/scatter.png`` (process 0 only).

* **Spider chart**: for every PTM, its mean k = 0 score (the learned model-task
  similarity) over tasks sampled from each cluster of bank datasets; one radar per PTM,
  one vertex per cluster.  Clusters default to one per dataset; ``--clusters`` takes a
  JSON ``{"cluster name": ["dataset", ...]}`` (the paper groups datasets into six).
* **Scatter**: per downstream dataset with ground truth (``bank.groundtruth``), the
  predicted score of every PTM against its ground-truth transfer accuracy, the
  least-squares line, and tau_w (``spider_jax.evaluation.weighted_tau``) in the title.
  The wheel bank's ground truth is linear-probe transfer accuracy, and the axis says so.

Matplotlib with the Agg backend (no display).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from spider_jax import evaluation  # noqa: E402
from spider_jax.ranker import Ranker  # noqa: E402

__all__ = ["sample_dataset_tasks", "cluster_similarity", "draw_spider_charts",
           "scatter_points", "draw_scatter", "truth_axis_label"]


# ----------------------------------------------------------------------------- data
def sample_dataset_tasks(psi: np.ndarray, labels: np.ndarray, *, num_tasks: int,
                         max_classes: int, examples_per_class: int = 50,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Tasks drawn from one dataset: the first is the whole dataset (its first
    ``max_classes`` classes if it has more), the others random class subsets.

    Returns:
      (psi centres [num_tasks, max_classes, D_psi] float32, class mask [num_tasks, max_classes]).
    """
    psi = np.asarray(psi, np.float32)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    c_all = len(classes)
    centres = np.zeros((num_tasks, max_classes, psi.shape[1]), np.float32)
    mask = np.zeros((num_tasks, max_classes), bool)
    rows = {c: np.flatnonzero(labels == c) for c in classes}
    for t in range(num_tasks):
        if t == 0:
            chosen = classes[:max_classes]
        else:
            size = int(rng.integers(min(2, c_all), min(c_all, max_classes) + 1))
            chosen = rng.choice(classes, size=size, replace=False)
        for j, c in enumerate(chosen):
            r = rows[c]
            if t > 0 and len(r) > examples_per_class:
                r = rng.choice(r, size=examples_per_class, replace=False)
            centres[t, j] = psi[r].mean(axis=0)
            mask[t, j] = True
    return centres, mask


def cluster_similarity(ranker: Ranker, bank, clusters: Mapping[str, Sequence[str]], *,
                       tasks_per_dataset: int = 8, split: str = "train", seed: int = 0,
                       batch: int = 256) -> np.ndarray:
    """Mean k = 0 score of every PTM on tasks sampled from each cluster's datasets.

    Args:
      ranker: trained scorer.
      bank: an opened feature bank holding the clusters' datasets.
      clusters: {cluster: [dataset, ...]}.
      tasks_per_dataset: tasks sampled per dataset (the first is the whole dataset).
      split: bank split to sample from.
      seed: sampling seed.
      batch: tasks per scoring call.

    Returns:
      [M, K] mean scores (zoo order x cluster order).
    """
    rng = np.random.default_rng(seed)
    out = np.zeros((len(ranker.models), len(clusters)))
    for j, (name, datasets) in enumerate(clusters.items()):
        if not datasets:
            raise ValueError(f"cluster {name!r} lists no dataset")
        all_scores = []
        for ds in datasets:
            centres, mask = sample_dataset_tasks(bank.psi(ds, split), bank.labels(ds, split),
                                                 num_tasks=tasks_per_dataset,
                                                 max_classes=ranker.max_classes, rng=rng)
            for s in range(0, centres.shape[0], batch):
                all_scores.append(ranker.scores_k0(centres[s:s + batch], mask[s:s + batch]))
        out[:, j] = np.concatenate(all_scores, axis=0).mean(axis=0)
    return out


def truth_axis_label(bank) -> str:
    """X-axis label for a bank's ground truth (linear-probe accuracy unless synthetic)."""
    from spider_jax import bank as bank_lib

    gt = bank_lib.read_groundtruth(bank.root) or {}
    protocol = str(gt.get("protocol", "")).lower()
    if "synthetic" in protocol:
        return "ground-truth transfer score (synthetic bank)"
    if "linear" in protocol or not protocol:
        return "linear-probe transfer accuracy"
    if "fine-tun" in protocol or "finetun" in protocol:
        return "fine-tuned transfer accuracy"
    return "ground-truth transfer accuracy"


def scatter_points(ranker: Ranker, bank, datasets: Sequence[str], *, k: int = 0,
                   split: str = "train") -> list[dict]:
    """Per dataset: model names, ground truth, predicted scores and tau_w.

    Datasets without ground truth are skipped; PTMs missing from the truth are dropped.
    """
    points = []
    for ds in datasets:
        gt = bank.groundtruth(ds)
        if gt is None:
            continue
        ranking = ranker.rank_bank_dataset(bank, ds, k=k, split=split)
        idx = {m: i for i, m in enumerate(ranking.models)}
        names = [m for m in gt["models"] if m in idx]
        truth = np.asarray([gt["mean"][gt["models"].index(m)] for m in names], np.float64)
        pred = np.asarray([ranking.scores[idx[m]] for m in names], np.float64)
        tau = evaluation.weighted_tau(truth, pred) if len(names) >= 2 else float("nan")
        points.append({"dataset": ds, "models": names, "truth": truth, "pred": pred,
                       "tau_w": float(tau), "k": k})
    return points


# ----------------------------------------------------------------------------- drawing
def _grid(n: int) -> tuple[int, int]:
    cols = min(n, max(1, math.ceil(math.sqrt(n))))
    return math.ceil(n / cols), cols


def draw_spider_charts(models: Sequence[str], clusters: Sequence[str], values: np.ndarray,
                       path: str, *, title: str = "Model Spider: PTM ability per task cluster"
                       ) -> str:
    """One radar chart per PTM (vertex = cluster, radius = mean similarity) -> PNG."""
    values = np.asarray(values, np.float64)
    if values.shape != (len(models), len(clusters)):
        raise ValueError(f"values shape {values.shape} != [M, K] = "
                         f"[{len(models)}, {len(clusters)}]")
    if not np.all(np.isfinite(values)):
        raise ValueError("spider-chart values contain NaN or Inf")
    k = len(clusters)
    angles = np.linspace(0.0, 2 * np.pi, k, endpoint=False)
    closed = np.concatenate([angles, angles[:1]])
    lo, hi = float(values.min()), float(values.max())
    pad = 0.1 * (hi - lo) if hi > lo else 1.0
    rows, cols = _grid(len(models))
    fig = plt.figure(figsize=(3.2 * cols, 3.2 * rows + 0.6))
    for i, name in enumerate(models):
        ax = fig.add_subplot(rows, cols, i + 1, projection="polar")
        ax.set_theta_offset(np.pi / 2)      # first cluster at the top, clockwise
        ax.set_theta_direction(-1)
        v = np.concatenate([values[i], values[i, :1]])
        ax.plot(closed, v, color="tab:red", linewidth=1.5)
        ax.fill(closed, v, color="tab:red", alpha=0.25)
        ax.set_xticks(angles)
        ax.set_xticklabels(list(clusters), fontsize=7)
        ax.set_ylim(lo - pad, hi + pad)
        ax.tick_params(axis="y", labelsize=6)
        ax.set_title(name, fontsize=9, pad=12)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def draw_scatter(points: Sequence[dict], path: str, *, xlabel: str) -> str:
    """Figure 3: predicted score vs ground truth per dataset, fitted line, tau_w -> PNG."""
    if not points:
        raise ValueError("no dataset with ground truth to plot")
    rows, cols = _grid(len(points))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.reshape(-1)[len(points):]:
        ax.axis("off")
    for ax, p in zip(axes.reshape(-1), points):
        x, y = p["truth"], p["pred"]
        ax.scatter(x, y, s=22, color="tab:blue", zorder=3)
        if len(x) >= 2 and np.ptp(x) > 0:
            slope, icpt = np.polyfit(x, y, 1)
            xs = np.linspace(x.min(), x.max(), 50)
            ax.plot(xs, slope * xs + icpt, color="black", linewidth=2)
        if len(x) <= 15:
            for name, xi, yi in zip(p["models"], x, y):
                ax.annotate(name, (xi, yi), fontsize=6, xytext=(2, 2),
                            textcoords="offset points")
        ax.set_title(f"{p['dataset']}: $\\tau_w$ = {p['tau_w']:.3f}", fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(f"Model Spider score (k = {p['k']})", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- main
def make_plots(workdir: str, bank_root: str, out_dir: str, *, k: int = 0,
               clusters_path: str | None = None, tasks_per_dataset: int = 8,
               modality: str | None = None, split: str = "train", seed: int = 0) -> list[str]:
    """Writes spider_charts.png and scatter.png (when ground truth exists); returns paths."""
    from spider_jax import bank as bank_lib
    from spider_jax import parallel

    bank = bank_lib.open_bank(bank_root, validate=False)
    if modality is None:
        modalities = sorted({bank.dataset_info(d)["modality"] for d in bank.datasets})
        if len(modalities) != 1:
            raise ValueError(f"the bank holds modalities {modalities}: choose one (--modality)")
        modality = modalities[0]
    bank = bank.subset(modality)
    ranker = Ranker.from_workdir(workdir, modality=modality)
    if clusters_path:
        with open(clusters_path, encoding="utf-8") as fh:
            clusters = json.load(fh)
        unknown = [d for ds in clusters.values() for d in ds if d not in bank.datasets]
        if unknown:
            raise ValueError(f"--clusters names datasets not in the bank: {unknown[:8]}")
    else:
        clusters = {d: [d] for d in bank.datasets}
    values = cluster_similarity(ranker, bank, clusters, tasks_per_dataset=tasks_per_dataset,
                                split=split, seed=seed)
    points = scatter_points(ranker, bank, bank.pool("downstream"), k=k, split=split)
    written = []
    if parallel.is_main_process():
        written.append(draw_spider_charts(ranker.models, list(clusters), values,
                                          os.path.join(out_dir, "spider_charts.png")))
        if points:
            written.append(draw_scatter(points, os.path.join(out_dir, "scatter.png"),
                                        xlabel=truth_axis_label(bank)))
    return written


def main(argv: Sequence[str]) -> None:
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    fl = flags.FLAGS
    try:
        written = make_plots(fl.workdir, fl.bank, fl.out_dir, k=fl.k, clusters_path=fl.clusters,
                             tasks_per_dataset=fl.tasks_per_dataset, modality=fl.modality,
                             split=fl.split, seed=fl.seed)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("workdir", None, "training workdir (checkpoint + config)")
    flags.DEFINE_string("bank", None, "feature bank root")
    flags.DEFINE_string("out_dir", None, "directory for the PNGs")
    flags.DEFINE_integer("k", 0, "re-ranking budget for the scatter")
    flags.DEFINE_string("clusters", None, "JSON {cluster: [datasets]} (default: one per dataset)")
    flags.DEFINE_integer("tasks_per_dataset", 8, "tasks sampled per dataset for spider charts")
    flags.DEFINE_string("modality", None, "image or text (default: the bank's only one)")
    flags.DEFINE_string("split", "train", "bank split")
    flags.DEFINE_integer("seed", 0, "task sampling seed")
    flags.mark_flags_as_required(["workdir", "bank", "out_dir"])
    app.run(main)
