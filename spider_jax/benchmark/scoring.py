"""Scoring for the benchmark: every method ranks the zoo on evaluation tasks.

For every downstream dataset of the bank (pool "downstream", per modality) it ranks the
zoo with every method and compares with the bank's ground truth (``bank.groundtruth``;
on the wheel zoo that is linear-probe transfer accuracy, not fine-tuning):

* every transferability metric of :mod:`spider_jax.methods` whose input exists (methods
  reading a source head skip PTMs without one; their tau_w is then over the PTMs that have
  one and is marked, never compared with full-zoo rankings);
* RankAgg: Copeland (Eq. 8) over H-Score, NCE, LEEP and LogME, each only when every
  PTM has its input (H-Score in the variant the labels use, ``methods.hscore_variant``);
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

Reusable beyond the paper's protocols: :func:`score_tasks` takes any list of
:class:`EvalTask` (a dataset and the example rows of each instance), e.g. the folds of
a leave-one-group-out evaluation; :func:`protocol_tasks` builds the paper's two.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import numpy as np

from spider_jax import evaluation, label, methods, rankagg
from spider_jax import workdir as workdir_lib
from spider_jax.methods import RANKAGG_METHODS
from spider_jax.ranker import Ranker, Task

__all__ = ["PROTOCOLS", "EvalTask", "protocol_tasks", "score_tasks", "run_modality",
           "fewshot_rows", "training_prior", "apply_costs"]

PROTOCOLS = ("standard", "fewshot")


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
        # Hybrid re-ranking rows (hybrid_k{k}, issue 11 item 5): the training config's
        # eval.hybrid_metric ("" or absent: none).
        cfg = getattr(ranker, "config", None)
        self.hybrid_metric = str(cfg.get("eval", {}).get("hybrid_metric", "")) \
            if cfg is not None else ""
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
        hs = methods.hscore_variant(self.hscore_rule, n, max(i["dim"] for i in self.infos))
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

    def spider(self, ds: str, rows, k: int, rerank: str = "paper") -> tuple[np.ndarray, dict]:
        """Model Spider scores [M] and cost stats (psi centres + scorer, warm); ``rerank``
        "hybrid": the top-k block reordered by ``self.hybrid_metric`` (Ranker.rank)."""
        psi = np.asarray(self.bank.psi(ds), np.float32)
        labels = np.asarray(self.bank.labels(ds))
        if rows is not None:
            psi, labels = psi[rows], labels[rows]

        def forward(name):
            f = self.bank.features(name, ds)
            return np.asarray(f if rows is None else f[rows], np.float32)

        def run():
            task = Task.from_features(psi, labels, name=ds)
            extra = {"rerank": rerank, "metric": self.hybrid_metric} if rerank != "paper" else {}
            return self.ranker.rank(task, k=k, forward=forward if k else None, **extra)

        key = (ds, k, rerank, None if rows is None else len(rows))
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
            if self.hybrid_metric and k > 0:
                pred, stats = self.spider(ds, rows, k, rerank="hybrid")
                add(f"hybrid_k{k}", pred, stats, [self.psi_name] + stats["ptms"], "spider")
        return results


# ----------------------------------------------------------------------------- tasks
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
                               cache_dir=workdir_lib.cache_dir_for(config, workdir, modality))
    _, zoo = label.zoo_for(bank, modality)
    mean = np.asarray(labels["rank_labels"], np.float64).mean(axis=0)
    return {m: float(v) for m, v in zip(zoo.models, mean)}


@dataclasses.dataclass(frozen=True)
class EvalTask:
    """One evaluation task: a dataset of the bank and the example rows of each instance.

    Attributes:
      dataset: bank dataset name (its ground truth is the reference).
      protocol: a label for the rows it produces ("standard", "fewshot", a fold name...).
      instances: per instance the example indices it uses (None: every example); the
        rows of a task average over its instances.
    """

    dataset: str
    protocol: str
    instances: tuple


def protocol_tasks(bank, protocols=PROTOCOLS, *, shots: int = 10, trials: int = 30,
                   seed: int = 0) -> list[EvalTask]:
    """The paper's tasks: every downstream dataset under each protocol, in pool order.

    "standard": all examples; "fewshot": ``trials`` seeded draws of ``shots`` examples
    per class (seed ``[seed, trial, dataset index]``).
    """
    tasks = []
    for t_i, ds in enumerate(bank.pool("downstream")):
        for protocol in protocols:
            if protocol == "standard":
                tasks.append(EvalTask(ds, protocol, (None,)))
            else:
                labels = np.asarray(bank.labels(ds))
                c = int(bank.dataset_info(ds)["num_classes"])
                tasks.append(EvalTask(ds, protocol, tuple(
                    fewshot_rows(labels, c, shots, [seed, trial, t_i])
                    for trial in range(trials))))
    return tasks


def score_tasks(bank, modality: str, ranker, tasks, *, method_names, hscore_rule, costs,
                spider_ks=(0, 3), prefix="", prior=None, log=print) -> tuple[list, dict]:
    """Rows (one per method and task) for any list of :class:`EvalTask` of one modality.

    Returns:
      (rows, task_meta): rows averaged over each task's instances (few-shot tasks carry a
      95% t-interval), and per dataset its ground-truth quality (``_truth``).
    """
    runner = _TaskRunner(bank, modality, ranker, method_names=method_names,
                         hscore_rule=hscore_rule, costs=costs, prior=prior)
    rows, task_meta, truths = [], {}, {}
    for task in tasks:
        ds, protocol = task.dataset, task.protocol
        if ds not in truths:
            truths[ds], task_meta[ds] = _truth(bank, ds, runner.models)
        truth, meta = truths[ds], task_meta[ds]
        t0 = time.time()
        inst = [runner.evaluate(ds, rows_, truth, spider_ks) for rows_ in task.instances]
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
                "tau_w_ci95": _ci95(taus) if len(task.instances) > 1 else float("nan"),
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


def run_modality(bank, modality: str, ranker, *, method_names, hscore_rule, costs, protocols,
                 shots, trials, seed, spider_ks=(0, 3), prefix="", prior=None,
                 log=print) -> tuple[list, dict]:
    """Rows for every downstream dataset of one modality, both protocols."""
    tasks = protocol_tasks(bank, protocols, shots=shots, trials=trials, seed=seed)
    return score_tasks(bank, modality, ranker, tasks, method_names=method_names,
                       hscore_rule=hscore_rule, costs=costs, spider_ks=spider_ks,
                       prefix=prefix, prior=prior, log=log)


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
