"""The paper's Table 2 / Table 8 benchmark on a feature bank (e.g. the real wheel zoo).

    python -m spider_jax.benchmark --config=configs/wheelzoo.py --workdir=DIR --out=RESULTS \
        --config.bank_dir=/work/banks/wheel [--results_md=docs/RESULTS.md] \
        [--ablation=supervision,loss] [--fewshot_trials=30]

For every downstream dataset of the bank (pool "downstream", per modality) it ranks the
zoo with every method and compares with the bank's ground truth (``bank.groundtruth``;
on the wheel zoo that is linear-probe transfer accuracy, not fine-tuning):

* every transferability metric of :mod:`spider_jax.methods` whose input exists (methods
  reading a source head skip PTMs without one; their tau_w is then over the PTMs that have
  one and is marked, never compared with full-zoo rankings);
* RankAgg: Copeland (Eq. 8) over H-Score, NCE, LEEP and LogME, each only when every
  PTM has its input (H-Score in the variant the labels use, ``label.hscore_variant``);
* Model Spider at k = 0 and k = 3 (Algorithm 2), from the checkpoint in WORKDIR (trained
  there with ``train.train_and_evaluate`` when absent).

Two protocols, as the paper: "standard" (all examples of the dataset) and "fewshot"
(``shots`` examples per class, ``trials`` seeded trials; mean and 95% t-interval).
Criteria: weighted Kendall tau (``evaluation.weighted_tau``; a constant score ranks
nothing and counts as 0) and top-1 regret (best true accuracy minus that of the chosen
PTM).

Cost (Table 8), per method and task, for ranking the zoo: forward passes it needs
(measured seconds per example of each PTM / psi, :mod:`spider_jax.forward_cost`, times
the task's examples; "not measured" when the bank has no adapters) plus the fit
(wall time of the compiled metric or scorer, compilation excluded and reported apart),
and peak memory = max(forward peak of any PTM it runs, XLA's memory analysis of its
compiled computation). A metric pays M forwards + M fits; Model Spider k = 0 pays one
psi forward + the scorer; k = 3 adds the forwards of the 3 PTMs it re-ranks.

Outputs in OUT: ``results.csv`` (one row per method x task x protocol), ``results.md``
(paper layout, best in bold), ``figure3_<modality>_k<k>.png`` (plots.py scatter),
``forward_costs.json``, ``summary.json``; ``--results_md`` also writes the Markdown there.
"""

from __future__ import annotations

import copy
import csv
import datetime
import functools
import json
import math
import os
import platform
import shutil
import sys
import time

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from spider_jax import evaluation, forward_cost, label, methods, rankagg
from spider_jax.ranker import Ranker, Task

__all__ = ["run_benchmark", "ensure_trained", "fewshot_rows", "RANKAGG_METHODS",
           "ABLATIONS", "anchor_rows", "format_markdown", "machine_info"]

RANKAGG_METHODS = ("hscore", "nce", "leep", "logme")
PROTOCOLS = ("standard", "fewshot")

# Tables 4 and 5 of the paper: supervision source and loss. Each entry: config overrides.
ABLATIONS = {
    "supervision": {
        "sup_logme": {"label.methods": ("logme",)},
        "sup_hscore": {"label.methods": ("hscore",)},
    },
    "loss": {
        "loss_mse": {"train.loss": "mse"},
        "loss_listnet": {"train.loss": "listnet"},
    },
}


# ----------------------------------------------------------------------------- helpers
def machine_info() -> dict:
    """CPU model, core count, platform, library versions, date."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "jax": jax.__version__,
            "devices": f"{jax.device_count()} x {jax.devices()[0].platform}",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _tau(truth, pred) -> float:
    """tau_w over the PTMs with a finite score; a constant score ranks nothing: 0."""
    ok = np.isfinite(pred)
    if ok.sum() < 2:
        return float("nan")
    t, p = truth[ok], pred[ok]
    if np.ptp(p) == 0:
        return 0.0
    return float(evaluation.weighted_tau(t, p))


def _regret(truth, pred) -> float:
    ok = np.isfinite(pred)
    if ok.sum() < 1:
        return float("nan")
    return float(evaluation.top1_regret(truth[ok], pred[ok])) if ok.sum() >= 2 else float("nan")


def _ci95(values) -> float:
    v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
    if v.size < 2:
        return float("nan")
    from scipy import stats

    return float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))


def _set(config, dotted: str, value) -> None:
    node = config
    *path, leaf = dotted.split(".")
    for p in path:
        node = node[p]
    node[leaf] = value


def has_checkpoint(workdir: str, modalities) -> bool:
    return all(os.path.exists(os.path.join(workdir, m, "zoo.json"))
               and os.path.isdir(os.path.join(workdir, m, "checkpoints")) for m in modalities)


def ensure_trained(config, workdir: str, modalities, log=print) -> bool:
    """Trains the scorers into ``workdir`` when a modality has no checkpoint; True if trained."""
    if has_checkpoint(workdir, modalities):
        return False
    from spider_jax import train

    log(f"no checkpoint in {workdir}: training ({', '.join(modalities)})")
    t0 = time.time()
    train.train_and_evaluate(config, workdir)
    log(f"trained in {time.time() - t0:.0f} s")
    return True


def fewshot_rows(labels: np.ndarray, num_classes: int, shots: int, seed) -> np.ndarray:
    """Sorted row indices: ``shots`` examples per class (all when a class has fewer)."""
    rng = np.random.default_rng(seed)
    rows = [rng.choice(np.flatnonzero(labels == c), min(shots, int(np.sum(labels == c))),
                       replace=False) for c in range(num_classes)]
    return np.sort(np.concatenate(rows))


# ----------------------------------------------------------------------------- one task
class _TaskRunner:
    """Scores one (modality) zoo on tasks; holds compiled state and per-PTM costs."""

    def __init__(self, bank, modality: str, ranker: Ranker | None, *, method_names,
                 hscore_rule: str, costs: dict | None, ks=(0, 3), prior=None):
        self.bank, self.modality, self.ranker = bank, modality, ranker
        self.prior = prior
        self.models = list(ranker.models) if ranker is not None else list(bank.models)
        if set(self.models) != set(bank.models):
            raise ValueError(f"the checkpoint ranks {self.models}, the bank's {modality} zoo "
                             f"is {bank.models}")
        self.infos = [bank.model_info(m) for m in self.models]
        self.method_names = list(method_names)
        self.hscore_rule = hscore_rule
        self.costs = costs
        self.psi_name = bank.psi_info(modality)["name"]
        self.ks = tuple(ks)
        self._scorer_bytes: dict = {}
        self._warm: set = set()

    # -- costs
    def _spe(self, name: str) -> float:
        if self.costs is None or name not in self.costs:
            return float("nan")
        return float(self.costs[name]["seconds_per_example"])

    def _fwd_mb(self, name: str) -> float:
        if self.costs is None or name not in self.costs:
            return float("nan")
        return float(self.costs[name].get("model_peak_mb", self.costs[name]["peak_rss_mb"]))

    def _forward(self, names, n: int) -> tuple[float, float]:
        """(seconds, peak MB) of running ``names`` over n examples, one after another."""
        if not names:
            return 0.0, 0.0
        return (float(sum(self._spe(m) for m in names) * n),
                float(max(self._fwd_mb(m) for m in names)))

    # -- scoring
    def _hscore_name(self, n: int) -> str:
        hs = label.hscore_variant(self.hscore_rule, n, max(i["dim"] for i in self.infos))
        return "regularized_hscore" if hs == "regularized" else "hscore"

    def metric_scores(self, ds: str, rows, labels, num_classes: int) -> dict:
        """{method: (scores [M], stats)} for the methods asked for plus RankAgg's inputs."""
        out = {}
        cache = {}
        needed = [self._hscore_name(int(labels.shape[0])) if m == "hscore" else m
                  for m in RANKAGG_METHODS]
        for name in dict.fromkeys(self.method_names + needed):
            kind = methods.input_of(name)
            key = "features" if kind == "features" else "source_probs"
            if key not in cache:
                cache[key] = methods.model_inputs(self.bank, ds, self.models, key, rows=rows)
            inputs = cache[key]
            if all(a is None for a in inputs):
                continue
            stats: dict = {}
            scores = methods.score_zoo(name, inputs, labels, num_classes=num_classes,
                                       stats=stats)
            stats["ptms"] = [m for m, a in zip(self.models, inputs) if a is not None]
            out[name] = (scores, stats)
        return out

    def rankagg(self, scores: dict, n: int) -> tuple[np.ndarray, dict] | None:
        """Copeland over RankAgg's methods available for every PTM (H-Score variant by rule)."""
        comps = []
        for name in RANKAGG_METHODS:
            name = self._hscore_name(n) if name == "hscore" else name
            if name in scores and np.all(np.isfinite(scores[name][0])):
                comps.append(name)
        if not comps:
            return None
        t0 = time.perf_counter()
        agg = rankagg.aggregate({c: scores[c][0] for c in comps})
        agg_s = time.perf_counter() - t0
        stats = {"run_s": agg_s + sum(scores[c][1]["run_s"] for c in comps),
                 "compile_s": sum(scores[c][1]["compile_s"] for c in comps),
                 "bytes": max(scores[c][1]["bytes"] for c in comps),
                 "ptms": list(self.models), "components": comps}
        return np.asarray(agg, np.float64), stats

    def _scorer_mb(self, cp: int) -> float:
        if cp not in self._scorer_bytes:
            fn, params = self.ranker.batch_scorer()
            compiled = jax.jit(fn).lower(
                params, jax.ShapeDtypeStruct((1, cp, self.ranker.psi_dim), np.float32),
                jax.ShapeDtypeStruct((1, cp), bool)).compile()
            self._scorer_bytes[cp] = methods._memory_bytes(compiled)
        return self._scorer_bytes[cp] / 2 ** 20

    def spider(self, ds: str, rows, k: int) -> tuple[np.ndarray, dict]:
        """Model Spider scores [M] and cost stats (psi centres + scorer, warm)."""
        psi = np.asarray(self.bank.psi(ds), np.float32)
        labels = np.asarray(self.bank.labels(ds))
        if rows is not None:
            psi, labels = psi[rows], labels[rows]

        def forward(name):
            f = self.bank.features(name, ds)
            return np.asarray(f if rows is None else f[rows], np.float32)

        def run():
            task = Task.from_features(psi, labels, name=ds)
            return self.ranker.rank(task, k=k, forward=forward if k else None)

        key = (ds, k, None if rows is None else len(rows))
        if key not in self._warm:
            t0 = time.perf_counter()
            run()
            compile_s = time.perf_counter() - t0
            self._warm.add(key)
        else:
            compile_s = 0.0
        t0 = time.perf_counter()
        ranking = run()
        run_s = time.perf_counter() - t0
        order = np.asarray(self.models)
        idx = {m: i for i, m in enumerate(ranking.models)}
        scores = np.asarray([ranking.scores[idx[m]] for m in order], np.float64)
        reranked = [m for m, r in zip(ranking.models, ranking.reranked) if r]
        cp = self.ranker._padded(Task.from_features(psi, labels))[2]   # class bucket
        return scores, {"run_s": run_s, "compile_s": compile_s,
                        "bytes": self._scorer_mb(cp) * 2 ** 20, "ptms": reranked}

    # -- one (task, trial)
    def evaluate(self, ds: str, rows, truth: np.ndarray, spiders: dict) -> list[dict]:
        """Rows (method, tau_w, regret, cost) of one task instance."""
        all_labels = np.asarray(self.bank.labels(ds))
        labels = all_labels if rows is None else all_labels[rows]
        c = int(self.bank.dataset_info(ds)["num_classes"])
        n = int(labels.shape[0])
        scores = self.metric_scores(ds, rows, labels, c)
        ra = self.rankagg(scores, n)
        results = []

        def add(method, pred, stats, fwd_names, kind):
            fwd_s, fwd_mb = self._forward(fwd_names, n)
            fit_mb = stats["bytes"] / 2 ** 20
            results.append({
                "forward_ptms": list(fwd_names), "fit_mb": fit_mb,
                "method": method, "kind": kind, "tau_w": _tau(truth, pred),
                "regret": _regret(truth, pred), "num_examples": n,
                "ptms_scored": int(np.isfinite(pred).sum()), "num_ptms": len(self.models),
                "forward_s": fwd_s, "fit_s": stats["run_s"], "compile_s": stats["compile_s"],
                "total_s": (fwd_s if np.isfinite(fwd_s) else 0.0) + stats["run_s"],
                "peak_mb": max(fwd_mb, fit_mb) if np.isfinite(fwd_mb) else fit_mb,
                "forward_measured": bool(np.isfinite(fwd_s)),
                "notes": "+".join(stats.get("components", []))})

        for name, (pred, stats) in scores.items():
            if name in self.method_names:
                add(name, pred, stats, stats["ptms"], "metric")
        if ra is not None:
            add("rankagg", ra[0], ra[1], ra[1]["ptms"], "rankagg")
        if self.prior is not None:
            add("zoo_prior", np.asarray([self.prior[m] for m in self.models], np.float64),
                {"run_s": 0.0, "compile_s": 0.0, "bytes": 0}, [], "prior")
        for k in spiders:
            pred, stats = self.spider(ds, rows, k)
            add(f"spider_k{k}", pred, stats, [self.psi_name] + stats["ptms"], "spider")
        return results


# ----------------------------------------------------------------------------- protocols
def _truth(bank, ds: str, models) -> tuple[np.ndarray, dict]:
    gt = bank.groundtruth(ds)
    if gt is None:
        raise ValueError(f"no ground truth for {ds}: run python -m spider_jax.groundtruth")
    idx = {m: i for i, m in enumerate(gt["models"])}
    missing = [m for m in models if m not in idx]
    if missing:
        raise ValueError(f"ground truth of {ds} lacks {missing}")
    truth = np.asarray([gt["mean"][idx[m]] for m in models], np.float64)
    seed2 = gt.get("mean_seed2")
    ceiling = float(gt["seed_tau_w"]) if "seed_tau_w" in gt else float("nan")
    meta = {"headline": bool(gt.get("headline", True)), "seed_tau_w": ceiling,
            "spread": float(gt.get("spread", float("nan"))),
            "best": models[int(np.argmax(truth))],
            "has_seed2": seed2 is not None}
    return truth, meta


def training_prior(bank, config, workdir: str, modality: str) -> dict[str, float]:
    """Each PTM's mean RankAgg label over the training tasks (from the label cache).

    A task-independent ranking: what a scorer that ignores the task would predict. Model
    Spider is only useful where it beats this.
    """
    labels = label.label_tasks(bank, config, modality=modality,
                               cache_dir=label.cache_dir_for(config, workdir, modality))
    _, zoo = label.zoo_for(bank, modality)
    mean = np.asarray(labels["rank_labels"], np.float64).mean(axis=0)
    return {m: float(v) for m, v in zip(zoo.models, mean)}


def run_modality(bank, modality: str, ranker, *, method_names, hscore_rule, costs, protocols,
                 shots, trials, seed, spider_ks=(0, 3), prefix="", prior=None,
                 log=print) -> tuple[list, dict]:
    """Rows for every downstream dataset of one modality, both protocols."""
    runner = _TaskRunner(bank, modality, ranker, method_names=method_names,
                         hscore_rule=hscore_rule, costs=costs, prior=prior)
    rows, task_meta = [], {}
    for t_i, ds in enumerate(bank.pool("downstream")):
        truth, meta = _truth(bank, ds, runner.models)
        task_meta[ds] = meta
        for protocol in protocols:
            t0 = time.time()
            if protocol == "standard":
                inst = [runner.evaluate(ds, None, truth, spider_ks)]
            else:
                labels = np.asarray(bank.labels(ds))
                c = int(bank.dataset_info(ds)["num_classes"])
                inst = [runner.evaluate(ds, fewshot_rows(labels, c, shots, [seed, trial, t_i]),
                                        truth, spider_ks) for trial in range(trials)]
            by_method: dict[str, list] = {}
            for res in inst:
                for r in res:
                    by_method.setdefault(r["method"], []).append(r)
            for method, rs in by_method.items():
                taus = [r["tau_w"] for r in rs]
                row = {k: rs[0][k] for k in ("kind", "num_ptms", "notes")}
                row.update({
                    "method": prefix + method, "modality": modality, "task": ds,
                    "protocol": protocol, "trials": len(rs),
                    "tau_w": float(np.nanmean(taus)) if np.isfinite(taus).any() else float("nan"),
                    "tau_w_ci95": _ci95(taus) if protocol == "fewshot" else float("nan"),
                    "regret": float(np.nanmean([r["regret"] for r in rs])),
                    "ptms_scored": min(r["ptms_scored"] for r in rs),
                    "headline": meta["headline"], "truth_seed_tau_w": meta["seed_tau_w"]})
                for key in ("num_examples", "forward_s", "fit_s", "compile_s", "total_s",
                            "peak_mb"):
                    row[key] = float(np.mean([r[key] for r in rs]))
                row["forward_measured"] = all(r["forward_measured"] for r in rs)
                row["forward_ptms"] = ["+".join(r["forward_ptms"]) for r in rs]
                row["fit_mb"] = float(np.max([r["fit_mb"] for r in rs]))
                rows.append(row)
            log(f"[{modality}] {ds} {protocol}: {len(inst)} instance(s) in {time.time() - t0:.1f} s")
    return rows, task_meta


def apply_costs(rows, costs: dict | None) -> None:
    """Recomputes forward_s / total_s / peak_mb of rows from per-PTM forward costs.

    Each row keeps the PTMs it ran per trial (``forward_ptms``) and its fit cost, so a
    re-measured ``forward_costs.json`` re-prices the forward passes without re-scoring.
    """
    if costs is None:
        return
    for r in rows:
        if "forward_ptms" not in r:
            continue
        secs, mbs = [], []
        for names in r["forward_ptms"]:
            names = [x for x in names.split("+") if x]
            if any(x not in costs for x in names):
                secs, mbs = [float("nan")], [float("nan")]
                break
            secs.append(sum(costs[x]["seconds_per_example"] for x in names) * r["num_examples"])
            mbs.append(max([costs[x].get("model_peak_mb", costs[x]["peak_rss_mb"])
                            for x in names] or [0.0]))
        r["forward_s"] = float(np.mean(secs))
        r["forward_measured"] = bool(np.isfinite(r["forward_s"]))
        r["total_s"] = (r["forward_s"] if r["forward_measured"] else 0.0) + r["fit_s"]
        fwd_mb = float(np.max(mbs))
        r["peak_mb"] = max(fwd_mb, r["fit_mb"]) if np.isfinite(fwd_mb) else r["fit_mb"]


# ----------------------------------------------------------------------------- anchors
def anchor_rows(data_dir: str) -> dict | None:
    """Table 2 baselines and RankAgg from the authors' released scores (tests/data)."""
    acc_path = os.path.join(data_dir, "finetune_acc_10zoo.csv")
    sc_path = os.path.join(data_dir, "model_spider_baseline_scores.csv")
    if not (os.path.exists(acc_path) and os.path.exists(sc_path)):
        return None
    with open(acc_path) as fh:
        acc = {r["model"]: r for r in csv.DictReader(fh)}
    with open(sc_path) as fh:
        rows = list(csv.DictReader(fh))
    datasets = ["Aircraft", "Caltech101", "Cars", "CIFAR10", "CIFAR100", "DTD", "Pet", "SUN397"]
    cols = [c for c in rows[0] if c not in ("Dataset", "Model")]
    table = {c: [] for c in cols + ["RankAgg (Copeland: H-Score, NCE, LEEP, LogME)"]}
    for ds in datasets:
        rr = [r for r in rows if r["Dataset"] == ds]
        truth = [float(acc[r["Model"]][ds]) for r in rr]
        for c in cols:
            table[c].append(evaluation.weighted_tau(truth, [float(r[c]) for r in rr]))
        agg = rankagg.aggregate({k: [float(r[k]) for r in rr]
                                 for k in ("H-Score", "NCE", "LEEP", "LogME")})
        table["RankAgg (Copeland: H-Score, NCE, LEEP, LogME)"].append(
            evaluation.weighted_tau(truth, agg))
    return {"datasets": datasets, "table": table}


# ----------------------------------------------------------------------------- reporting
def _headline_mean(rows, method, modality, protocol) -> float:
    v = [r["tau_w"] for r in rows if r["method"] == method and r["modality"] == modality
         and r["protocol"] == protocol and r["headline"] and np.isfinite(r["tau_w"])]
    return float(np.mean(v)) if v else float("nan")


def _fmt(x, nd=3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def _full(rows, method, modality) -> bool:
    return all(r["ptms_scored"] == r["num_ptms"] for r in rows
               if r["method"] == method and r["modality"] == modality)


def summarize(rows) -> dict:
    """Per modality and protocol: headline means, best full-zoo metric, cost ratios."""
    out = {}
    for mod in sorted({r["modality"] for r in rows}):
        out[mod] = {}
        for protocol in sorted({r["protocol"] for r in rows}):
            sel = [r for r in rows if r["modality"] == mod and r["protocol"] == protocol]
            if not sel:
                continue
            meths = list(dict.fromkeys(r["method"] for r in sel))
            means = {m: _headline_mean(rows, m, mod, protocol) for m in meths}
            metrics_full = [m for m in meths if m in methods.METHODS and _full(rows, m, mod)
                            and np.isfinite(means[m])]
            best = max(metrics_full, key=lambda m: means[m]) if metrics_full else None
            cost = {m: {k: float(np.mean([r[k] for r in sel if r["method"] == m]))
                        for k in ("forward_s", "fit_s", "total_s", "peak_mb", "compile_s")}
                    for m in meths}
            info = {"means": means, "best_single": best,
                    "best_single_mean": means.get(best, float("nan")) if best else float("nan"),
                    "cost": cost}
            k0 = cost.get("spider_k0")
            if k0 and k0["total_s"] > 0:
                info["total_over_k0"] = {m: c["total_s"] / k0["total_s"] for m, c in cost.items()}
                info["forward_measured"] = bool(np.isfinite(k0["forward_s"]))
            if k0 and np.isfinite(k0["forward_s"]) and k0["forward_s"] > 0:
                info["k0_total_over_psi_forward"] = k0["total_s"] / k0["forward_s"]
            out[mod][protocol] = info
    return out


def _table(rows, mod, protocol, methods_order, tasks, fewshot: bool) -> list[str]:
    sel = {(r["method"], r["task"]): r for r in rows if r["modality"] == mod
           and r["protocol"] == protocol}
    head = ["method"] + tasks + ["mean (headline)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    cols = {}
    for m in methods_order:
        vals = [sel[(m, t)]["tau_w"] if (m, t) in sel else float("nan") for t in tasks]
        vals.append(_headline_mean(rows, m, mod, protocol))
        cols[m] = vals
    full = [m for m in methods_order if _full(rows, m, mod)]
    best = []
    for j in range(len(tasks) + 1):
        cand = [cols[m][j] for m in full if np.isfinite(cols[m][j])]
        best.append(max(cand) if cand else None)
    for m in methods_order:
        n_ptm = [r for r in rows if r["method"] == m and r["modality"] == mod][0]
        name = m if _full(rows, m, mod) else \
            f"{m} † ({n_ptm['ptms_scored']}/{n_ptm['num_ptms']} PTMs)"
        cells = []
        for j, v in enumerate(cols[m]):
            s = _fmt(v)
            if fewshot and j < len(tasks) and (m, tasks[j]) in sel:
                s += " ± " + _fmt(sel[(m, tasks[j])]["tau_w_ci95"], 2)
            if m in full and best[j] is not None and np.isfinite(v) and abs(v - best[j]) < 5e-4:
                s = f"**{s}**"
            cells.append(s)
        lines.append("| " + " | ".join([name] + cells) + " |")
    return lines


def format_markdown(rows, task_meta, summary, *, command, machine, anchors=None,
                    costs=None, ablation_rows=(), trials=30, shots=10, notes=()) -> str:
    """The RESULTS.md text: tables in the paper's layout, costs, reading, anchors."""
    md = ["# Model Spider benchmark results", "",
          "Generated by `spider_jax/benchmark.py`; do not edit by hand.", "",
          "```", command, "```", "",
          f"Machine: {machine['cpu']}, {machine['cores']} cores ({machine['devices']}); "
          f"jax {machine['jax']}, Python {machine['python']}; {machine['date']}.", ""]
    md += list(notes)
    for protocol in [p for p in PROTOCOLS if any(r["protocol"] == p for r in rows)]:
        title = ("Standard protocol (all examples of each downstream dataset)"
                 if protocol == "standard" else
                 f"Few-shot protocol ({shots} examples per class, {trials} seeded trials, "
                 f"mean ± 95% t-interval)")
        md += [f"## tau_w, {title}", ""]
        for mod in sorted({r["modality"] for r in rows}):
            tasks = list(dict.fromkeys(r["task"] for r in rows if r["modality"] == mod))
            order = list(dict.fromkeys(r["method"] for r in rows if r["modality"] == mod))
            order = [m for m in order if m in methods.METHODS] + \
                [m for m in order if m not in methods.METHODS]
            md += [f"### {mod}", ""]
            md += _table(rows, mod, protocol, order, tasks, protocol == "fewshot")
            left = [t for t in tasks if not task_meta[mod][t]["headline"]]
            md += ["", "Bold: best among methods that rank the whole zoo. † = needs a source "
                   "head: ranked only the PTMs that have one, not comparable."
                   + (f" Left out of the headline mean (poor ground truth): {', '.join(left)}."
                      if left else ""), ""]
    # regret
    md += ["## Top-1 regret (best true accuracy - that of the top-ranked PTM; mean over tasks)", ""]
    md += ["| modality | protocol | " + " | ".join(["spider_k0", "spider_k3", "rankagg", "logme",
                                                     "hscore", "regularized_hscore"]) + " |",
           "|---|---|" + "---|" * 6]
    for mod in sorted({r["modality"] for r in rows}):
        for protocol in PROTOCOLS:
            vals = []
            for m in ["spider_k0", "spider_k3", "rankagg", "logme", "hscore", "regularized_hscore"]:
                v = [r["regret"] for r in rows if r["method"] == m and r["modality"] == mod
                     and r["protocol"] == protocol]
                vals.append(_fmt(float(np.mean(v)) if v else float("nan"), 4))
            if any(v != "n/a" for v in vals):
                md.append(f"| {mod} | {protocol} | " + " | ".join(vals) + " |")
    md.append("")
    # costs
    md += ["## Cost to rank the zoo for one task (Table 8 columns), standard protocol", "",
           "forward = measured seconds per example of each PTM the method runs x the task's "
           "examples; fit = wall time of the compiled metric / scorer (compilation excluded, "
           "shown apart); peak = max(forward peak RSS of a PTM, XLA memory of the fit). "
           "Mean over the modality's downstream tasks.", ""]
    for mod, per in summary.items():
        info = per.get("standard")
        if not info:
            continue
        md += [f"### {mod}", "",
               "| method | forward (s) | fit (s) | total (s) | peak (MB) | total / Spider k=0 | "
               "compile (s, once) |", "|---|---|---|---|---|---|---|"]
        for m, c in info["cost"].items():
            ratio = info.get("total_over_k0", {}).get(m, float("nan"))
            measured = np.isfinite(c["forward_s"])
            fwd = _fmt(c["forward_s"], 3) if measured else "not measured"
            total = _fmt(c["total_s"], 3) + ("" if measured else " (fit only)")
            md.append(f"| {m} | {fwd} | {c['fit_s']:.4f} | {total} | "
                      f"{c['peak_mb']:.1f} | {_fmt(ratio, 1)} | {c['compile_s']:.2f} |")
        if "k0_total_over_psi_forward" in info:
            md += ["", f"Spider k=0 total / its single psi forward pass: "
                   f"**{info['k0_total_over_psi_forward']:.3f}x** (target <= 1.2x)."]
        md.append("")
    if costs:
        md += ["Forward cost per example (measured, 1 thread, warm; `forward_costs.json`):", "",
               "| model | ms / example | model peak (MB) | load (s) |", "|---|---|---|---|"]
        for name, c in costs.items():
            md.append(f"| {name} ({c.get('modality', '')}) | {1e3 * c['seconds_per_example']:.3f}"
                      f" | {c.get('model_peak_mb', c['peak_rss_mb']):.0f} | "
                      f"{c['load_seconds']:.2f} |")
        md.append("")
    else:
        md += ["Forward cost not measured (the bank has no extraction adapters here): costs "
               "are fit-only.", ""]
    # ground-truth quality
    md += ["## Ground truth quality per task", "",
           "| modality | task | seed agreement tau_w (noise ceiling) | spread / std | headline | "
           "best PTM |", "|---|---|---|---|---|---|"]
    for mod, tm in task_meta.items():
        for t, m in tm.items():
            md.append(f"| {mod} | {t} | {_fmt(m['seed_tau_w'])} | {_fmt(m['spread'], 2)} | "
                      f"{'yes' if m['headline'] else 'no'} | {m['best']} |")
    md.append("")
    if ablation_rows:
        md += ["## Ablations (paper Tables 4 and 5): mean tau_w over headline tasks", "",
               "| variant | modality | k=0 standard | k=3 standard | k=0 few-shot | "
               "k=3 few-shot |", "|---|---|---|---|---|---|"]
        variants = list(dict.fromkeys(r["method"].split("@")[1] if "@" in r["method"] else "main"
                                      for r in list(ablation_rows) + list(rows)
                                      if r["kind"] == "spider"))
        allr = list(rows) + list(ablation_rows)
        for v in variants:
            for mod in sorted({r["modality"] for r in allr}):
                cells = []
                for proto in PROTOCOLS:
                    for k in (0, 3):
                        name = f"spider_k{k}" if v == "main" else f"spider_k{k}@{v}"
                        cells.append(_fmt(_headline_mean(allr, name, mod, proto)))
                md.append(f"| {v} | {mod} | " + " | ".join([cells[0], cells[1], cells[2],
                                                              cells[3]]) + " |")
        md.append("")
    md += ["## Commands", "",
           "Full benchmark (trains WORKDIR when it has no checkpoint; ablations train into "
           "WORKDIR/ablation/<variant>; run under `flock /tmp/heavy.lock` on a shared machine):",
           "", "```",
           "python -m spider_jax.benchmark --config=configs/wheelzoo.py "
           "--config.bank_dir=/work/banks/wheel --workdir=DIR --out=RESULTS "
           "--results_md=docs/RESULTS.md --ablation=supervision,loss",
           "# re-price forward passes after re-measuring them, without re-scoring:",
           "python -m spider_jax.benchmark --config=... --workdir=DIR --out=RESULTS "
           "--measure_forward_only",
           "python -m spider_jax.benchmark --config=... --workdir=DIR --out=RESULTS "
           "--report_only --forward_costs=RESULTS/forward_costs.json --results_md=docs/RESULTS.md",
           "```", "",
           "Ablation variants (config overrides of the main run): "
           + "; ".join(f"`{n}`: " + ", ".join(f"{k}={v}" for k, v in o.items())
                       for g in ABLATIONS.values() for n, o in g.items())
           + ". The main run is RankAgg supervision with the Eq. 4 (ListMLE) loss.", ""]
    if anchors:
        md += ["## Published anchors (authors' released scores, tests/data)", "",
               "tau_w = `weighted_tau(fine-tuned accuracy, score)` on the paper's 10-model zoo; "
               "tests/test_evaluation.py checks these against Table 2, tests/test_rankagg.py "
               "the RankAgg mean 0.716.", "",
               "| method | " + " | ".join(anchors["datasets"]) + " | mean |",
               "|" + "---|" * (len(anchors["datasets"]) + 2)]
        for m, v in anchors["table"].items():
            md.append(f"| {m} | " + " | ".join(f"{x:.3f}" for x in v) + f" | {np.mean(v):.3f} |")
        md.append("")
    return "\n".join(md) + "\n"


def write_csv(path: str, rows) -> None:
    keys = ["method", "kind", "modality", "task", "protocol", "tau_w", "tau_w_ci95", "regret",
            "trials", "num_examples", "ptms_scored", "num_ptms", "forward_s", "fit_s",
            "compile_s", "total_s", "peak_mb", "forward_measured", "headline",
            "truth_seed_tau_w", "notes"]
    with open(path + ".tmp", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    os.replace(path + ".tmp", path)


def draw_figure3(workdir: str, bank, modality: str, out_dir: str, ks=(0, 3)) -> list[str]:
    """Figure 3 scatter per modality and k (plots.py)."""
    from spider_jax import plots

    sub = bank.subset(modality)
    ranker = Ranker.from_workdir(workdir, modality=modality)
    paths = []
    for k in ks:
        pts = plots.scatter_points(ranker, sub, sub.pool("downstream"),
                                   k=min(k, len(ranker.models)))
        if pts:
            paths.append(plots.draw_scatter(pts, os.path.join(out_dir, f"figure3_{modality}_k{k}.png"),
                                            xlabel=plots.truth_axis_label(bank)))
    return paths


# ----------------------------------------------------------------------------- driver
def run_benchmark(config, workdir: str, out_dir: str, *, protocols=PROTOCOLS, shots: int = 10,
                  trials: int = 30, method_names=None, ablation=(), anchors_dir: str = "",
                  forward_costs_path: str | None = None, measure_forward: bool = True,
                  results_md: str = "", command: str = "", seed: int = 0, log=print) -> dict:
    """Runs the whole benchmark and writes OUT; returns {"rows", "summary", "paths", ...}."""
    os.makedirs(out_dir, exist_ok=True)
    method_names = list(method_names or methods.names())
    bank = label.open_bank_for(config, workdir)
    mods = label.modalities_for(config, bank)
    costs = None
    # Measure forward costs (fresh spawned processes) before this process runs any XLA
    # computation: spawning them after training was followed, twice, by an XLA:CPU hang in
    # the next metric call (all threads in futex waits; jax 0.10.2). Measuring first, or
    # reusing a saved forward_costs.json, never hung.
    if measure_forward:
        costs = forward_cost.load_or_measure(
            forward_costs_path or os.path.join(out_dir, "forward_costs.json"), bank, progress=log)
    ensure_trained(config, workdir, mods, log=log)
    if costs is None:
        log("forward cost not measured (no extraction adapters for this bank)")
    rows, task_meta = [], {}
    for mod in mods:
        sub = bank.subset(mod)
        ranker = Ranker.from_workdir(workdir, modality=mod)
        prior = training_prior(bank, config, workdir, mod)
        r, tm = run_modality(sub, mod, ranker, method_names=method_names,
                             hscore_rule=config.label.hscore, costs=costs, protocols=protocols,
                             shots=shots, trials=trials, seed=seed, prior=prior, log=log)
        rows += r
        task_meta[mod] = tm
    with open(os.path.join(out_dir, "rows.json"), "w") as fh:   # checkpoint before ablations
        json.dump({"rows": rows, "ablation_rows": [], "task_meta": task_meta,
                   "costs": costs, "command": command}, fh, default=float)
    ablation_rows = []
    for group in ablation:
        for name, overrides in ABLATIONS[group].items():
            cfg = copy.deepcopy(config)
            for key, value in overrides.items():
                _set(cfg, key, value)
            adir = os.path.join(workdir, "ablation", name)
            if group == "loss" and not config.label.cache_dir:
                # same supervision as the main run: reuse its label cache
                cache = os.path.join(workdir, "ablation", "_main_labels")
                os.makedirs(cache, exist_ok=True)
                for mod in mods:
                    link = os.path.join(cache, mod)
                    if not os.path.exists(link):
                        os.symlink(os.path.abspath(label.cache_dir_for(config, workdir, mod)), link)
                cfg.label.cache_dir = cache
            ensure_trained(cfg, adir, mods, log=log)
            for mod in mods:
                ranker = Ranker.from_workdir(adir, modality=mod)
                r, _ = run_modality(bank.subset(mod), mod, ranker, method_names=[],
                                    hscore_rule=config.label.hscore, costs=costs,
                                    protocols=protocols, shots=shots, trials=trials, seed=seed,
                                    prefix="", log=log)
                for row in r:
                    if row["kind"] == "spider":
                        row["method"] = f"{row['method']}@{name}"
                        ablation_rows.append(row)
    with open(os.path.join(out_dir, "rows.json"), "w") as fh:
        json.dump({"rows": rows, "ablation_rows": ablation_rows, "task_meta": task_meta,
                   "costs": costs, "command": command}, fh, default=float)
    return report(config, workdir, out_dir, rows=rows, ablation_rows=ablation_rows,
                  task_meta=task_meta, costs=costs, bank=bank, mods=mods, anchors_dir=anchors_dir,
                  results_md=results_md, command=command, trials=trials, shots=shots, log=log)


def report(config, workdir, out_dir, *, rows, ablation_rows, task_meta, costs, bank, mods,
           anchors_dir="", results_md="", command="", trials=30, shots=10, log=print) -> dict:
    """Writes results.csv / results.md / summary.json / figures from computed rows."""
    apply_costs(rows, costs)
    apply_costs(ablation_rows, costs)
    summary = summarize(rows)
    paths = {"csv": os.path.join(out_dir, "results.csv"),
             "md": os.path.join(out_dir, "results.md"),
             "summary": os.path.join(out_dir, "summary.json")}
    write_csv(paths["csv"], rows + ablation_rows)
    anchors = anchor_rows(anchors_dir) if anchors_dir else None
    notes = _reading(summary, rows, task_meta, bank, costs, ablation_rows)
    md = format_markdown(rows, task_meta, summary, command=command, machine=machine_info(),
                         anchors=anchors, costs=costs, ablation_rows=ablation_rows,
                         trials=trials, shots=shots, notes=notes)
    figs = []
    for mod in mods:
        figs += draw_figure3(workdir, bank, mod, out_dir)
    paths["figures"] = figs
    fig_md = ["## Figure 3: Model Spider score vs ground truth per downstream task", ""]
    fig_md += [f"![{os.path.basename(f)}](figures/{os.path.basename(f)})" for f in figs] + [""]
    for p in [paths["md"]] + ([results_md] if results_md else []):
        os.makedirs(os.path.dirname(os.path.abspath(p)), exist_ok=True)
        fig_dir = os.path.join(os.path.dirname(os.path.abspath(p)), "figures")
        os.makedirs(fig_dir, exist_ok=True)
        for f in figs:
            shutil.copyfile(f, os.path.join(fig_dir, os.path.basename(f)))
        with open(p, "w") as fh:
            fh.write(md + "\n".join(fig_md) + "\n")
    with open(paths["summary"], "w") as fh:
        json.dump({"summary": summary, "task_meta": task_meta}, fh, indent=1, default=float)
    if anchors:
        log("published anchors (tests/data): mean tau_w "
            + ", ".join(f"{k.split(' ')[0]} {np.mean(v):.3f}" for k, v in anchors["table"].items()))
    return {"rows": rows, "ablation_rows": ablation_rows, "summary": summary, "paths": paths,
            "task_meta": task_meta, "markdown": md}


def _reading(summary, rows, task_meta, bank, costs, ablation_rows=()) -> list[str]:
    """The data-driven reading: headline numbers, wins/losses per task, why, and costs."""
    from spider_jax import plots

    truth_label = plots.truth_axis_label(bank)
    out = ["## Headline", "",
           f"Ground truth: {truth_label} (`bank.groundtruth`); tau_w is measured against it"
           + (", so a method is rewarded for predicting linear-probe transfer, not fine-tuning"
              if "linear-probe" in truth_label else "")
           + ". Headline means leave out tasks marked `headline: false` (models within "
           "noise of each other). \"Best single metric\" is the best registered metric that "
           "ranks every PTM of the zoo.", "",
           "| modality | protocol | Spider k=0 | Spider k=3 | RankAgg (inputs) | best single metric |",
           "|---|---|---|---|---|---|"]
    for mod, per in summary.items():
        for protocol, info in per.items():
            m = info["means"]
            comps = sorted({r["notes"] for r in rows if r["method"] == "rankagg"
                            and r["modality"] == mod})
            out.append(f"| {mod} | {protocol} | {_fmt(m.get('spider_k0'))} | "
                       f"{_fmt(m.get('spider_k3'))} | {_fmt(m.get('rankagg'))} "
                       f"({'; '.join(comps)}) | {info['best_single']} "
                       f"{_fmt(info['best_single_mean'])} |")
    out += ["", "## Reading", ""]
    for mod, per in summary.items():
        sub = bank.subset(mod)
        heads = [x for x in sub.models if sub.model_info(x).get("has_source_head")]
        tm = task_meta[mod]
        ceil = [v["seed_tau_w"] for v in tm.values() if v["headline"]]
        out.append(f"**{mod}** ({len(sub.models)} PTMs, {len(heads)} with a source head; "
                   f"training pool {', '.join(sub.pool('train'))}; downstream "
                   f"{', '.join(sub.pool('downstream'))}).")
        for protocol, info in per.items():
            m = info["means"]
            best, bm = info["best_single"], info["best_single_mean"]
            for k in (0, 3):
                v = m.get(f"spider_k{k}", float("nan"))
                if not (np.isfinite(v) and np.isfinite(bm)):
                    continue
                verb = "beats" if v > bm else "falls short of"
                out.append(f"- {protocol}, k={k}: Model Spider {_fmt(v)} {verb} {best} "
                           f"{_fmt(bm)} by {abs(v - bm):.3f} and "
                           f"{'beats' if v > m.get('rankagg', np.nan) else 'trails'} RankAgg "
                           f"{_fmt(m.get('rankagg'))}.")
            sel = {(r["method"], r["task"]): r["tau_w"] for r in rows
                   if r["modality"] == mod and r["protocol"] == protocol}
            tasks = [t for t in tm if tm[t]["headline"]]
            if best:
                won = [t for t in tasks if sel.get(("spider_k0", t), -9) >= sel.get((best, t), 9)]
                out.append(f"- {protocol}: k=0 matches or beats {best} on "
                           f"{len(won)}/{len(tasks)} headline tasks"
                           + (f" ({', '.join(won)})" if won else "") + ".")
        for protocol, info in per.items():
            m = info["means"]
            if np.isfinite(m.get("zoo_prior", np.nan)):
                out.append(f"- {protocol}: a task-independent prior (each PTM's mean RankAgg "
                           f"label over the training tasks; no forward pass) scores "
                           f"{_fmt(m['zoo_prior'])} vs Model Spider k=0 {_fmt(m.get('spider_k0'))}"
                           + (": the scorer adds task-specific information over the prior."
                              if m.get("spider_k0", -9) > m["zoo_prior"] + 1e-9 else
                              ": the scorer adds no task-specific information; it does not even "
                              "reproduce the training-pool average ranking it was fitted to "
                              "(see the ablations: the MSE loss gets closer to it)."
                              if m.get("spider_k0", 9) < m["zoo_prior"] - 1e-9 else
                              ": the scorer reproduces the prior and adds nothing task-specific."))
        if ceil:
            out.append(f"- Ground-truth noise ceiling (tau_w between two CV seeds), mean over "
                       f"headline tasks: {np.mean(ceil):.3f}; no method can be trusted beyond it.")
        ra = [r["notes"] for r in rows if r["method"] == "rankagg" and r["modality"] == mod]
        if ra and len(heads) < len(sub.models):
            out.append(f"- RankAgg here aggregates only {sorted(set(ra))}: LEEP and NCE need a "
                       f"source head and only {len(heads)}/{len(sub.models)} PTMs have one, so "
                       "the supervision Model Spider imitates is a two-method Copeland vote.")
        out.append("")
    out += ["Why Model Spider can lose here: (1) it learns to imitate RankAgg's ranking on the "
            "training pool's tasks, so it inherits RankAgg's error on the downstream tasks "
            "(compare the RankAgg row) and adds its own generalisation error; (2) the training "
            "pools are a handful of datasets unlike the downstream ones, so the psi class "
            "centres of a downstream task lie outside what the scorer saw (Model Spider's "
            "premise is a diverse historical task pool); (3) with 5-7 PTMs, one swapped pair "
            "among the top models moves tau_w by 0.2-0.5; (4) LogME is a linear-model evidence "
            "and the ground truth is a linear probe on the same frozen features, which favours "
            "feature-based metrics that see the task's own features (Model Spider at k=0 sees "
            "only psi's features).", ""]
    for mod, per in summary.items():
        info = per.get("standard", {})
        if "k0_total_over_psi_forward" in info:
            r = info["total_over_k0"]
            others = ", ".join(f"{m} {r[m]:.1f}x" for m in r if m not in ("spider_k0",))
            out.append(f"Cost, {mod} (standard): Spider k=0 = "
                       f"{info['k0_total_over_psi_forward']:.3f}x its psi forward pass; "
                       f"relative to Spider k=0: {others}.")
        elif info:
            out.append(f"Cost, {mod}: forward passes not measured; fit-only ratios in the cost "
                       "table.")
    out.append("")
    return out


# ----------------------------------------------------------------------------- CLI
def _load_json(path: str):
    with open(path) as fh:
        return json.load(fh)


def _define_flags():
    config_flags.DEFINE_config_file("config", None, "training config (configs/*.py)")
    flags.DEFINE_string("workdir", None, "trained Model Spider workdir (trained there if empty)")
    flags.DEFINE_string("out", None, "output directory for results.csv / results.md / figures")
    flags.DEFINE_string("results_md", "", "also write the Markdown here (e.g. docs/RESULTS.md)")
    flags.DEFINE_list("protocols", list(PROTOCOLS), "standard and/or fewshot")
    flags.DEFINE_integer("shots", 10, "few-shot examples per class")
    flags.DEFINE_integer("fewshot_trials", 30, "few-shot seeded trials")
    flags.DEFINE_list("methods", [], "metric subset (default: every registered method)")
    flags.DEFINE_list("ablation", [], f"ablation groups to train and add: {sorted(ABLATIONS)}")
    flags.DEFINE_string("anchors_dir", "tests/data", "authors' released scores ('' = skip)")
    flags.DEFINE_string("forward_costs", "", "forward-cost JSON (default OUT/forward_costs.json)")
    flags.DEFINE_bool("measure_forward", True, "measure PTM forward costs with the adapters")
    flags.DEFINE_integer("seed", 0, "few-shot sampling seed")
    flags.DEFINE_bool("report_only", False, "re-render OUT/rows.json (no scoring); with "
                      "--forward_costs, re-price the forward passes from that file")
    flags.DEFINE_bool("measure_forward_only", False, "only (re)measure the forward costs")
    flags.mark_flags_as_required(["config", "workdir", "out"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    f = flags.FLAGS
    bad = [g for g in f.ablation if g not in ABLATIONS]
    if bad:
        raise app.UsageError(f"--ablation: unknown {bad}; choose from {sorted(ABLATIONS)}")
    bad = [p for p in f.protocols if p not in PROTOCOLS]
    if bad:
        raise app.UsageError(f"--protocols: unknown {bad}; choose from {PROTOCOLS}")
    command = "python -m spider_jax.benchmark " + " ".join(sys.argv[1:])
    t0 = time.time()
    try:
        if f.measure_forward_only:
            bank = label.open_bank_for(f.config, f.workdir)
            path = f.forward_costs or os.path.join(f.out, "forward_costs.json")
            if os.path.exists(path):
                os.remove(path)
            if forward_cost.load_or_measure(path, bank) is None:
                raise SystemExit("error: this bank has no extraction adapters to measure")
            print(f"wrote {path}")
            return
        if f.report_only:
            with open(os.path.join(f.out, "rows.json")) as fh:
                saved = json.load(fh)
            bank = label.open_bank_for(f.config, f.workdir)
            res = report(f.config, f.workdir, f.out, rows=saved["rows"],
                         ablation_rows=saved["ablation_rows"], task_meta=saved["task_meta"],
                         costs=_load_json(f.forward_costs) if f.forward_costs else saved["costs"],
                         bank=bank,
                         mods=label.modalities_for(f.config, bank), anchors_dir=f.anchors_dir,
                         results_md=f.results_md, command=saved.get("command", command),
                         trials=f.fewshot_trials,
                         shots=f.shots)
        else:
            res = run_benchmark(f.config, f.workdir, f.out, protocols=tuple(f.protocols),
                                shots=f.shots, trials=f.fewshot_trials,
                                method_names=f.methods or None, ablation=tuple(f.ablation),
                                anchors_dir=f.anchors_dir,
                                forward_costs_path=f.forward_costs or None,
                                measure_forward=f.measure_forward, results_md=f.results_md,
                                command=command, seed=f.seed)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    for mod, per in res["summary"].items():
        for protocol, info in per.items():
            m = info["means"]
            print(f"[{mod} {protocol}] headline mean tau_w: spider_k0 {_fmt(m.get('spider_k0'))}"
                  f" spider_k3 {_fmt(m.get('spider_k3'))} rankagg {_fmt(m.get('rankagg'))}"
                  f" best single {info['best_single']} {_fmt(info['best_single_mean'])}")
            if "k0_total_over_psi_forward" in info:
                print(f"[{mod} {protocol}] spider_k0 total / psi forward "
                      f"{info['k0_total_over_psi_forward']:.3f}x; logme / spider_k0 "
                      f"{info['total_over_k0'].get('logme', float('nan')):.1f}x")
    print(f"wrote {', '.join(str(p) for p in res['paths'].values())} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
