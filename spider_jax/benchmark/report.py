"""Reporting for the benchmark: results.csv, results.md (the paper's layout), summary.json
and the Figure 3 scatters, from scored rows (:mod:`spider_jax.benchmark.scoring`)."""

from __future__ import annotations

import csv
import datetime
import io
import os
import platform
import shutil

import jax
import numpy as np

from spider_jax import atomic, evaluation, methods, rankagg
from spider_jax.benchmark.scoring import PROTOCOLS, apply_costs
from spider_jax.ranker import Ranker

__all__ = ["machine_info", "anchor_rows", "summarize", "format_markdown", "write_csv",
           "draw_figure3", "report"]


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
                    costs=None, ablation_rows=(), trials=30, shots=10, notes=(),
                    ablations=None) -> str:
    """The RESULTS.md text: tables in the paper's layout, costs, reading, anchors."""
    md = ["# Model Spider benchmark results", "",
          "Generated by `python -m spider_jax.benchmark`; do not edit by hand.", "",
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
           "WORKDIR/ablation/<variant>):",
           "", "```",
           "python -m spider_jax.benchmark --config=configs/wheelzoo.py "
           "--config.bank_dir=banks/wheel --workdir=DIR --out=RESULTS "
           "--results_md=docs/RESULTS.md --ablation=supervision,loss",
           "# re-price forward passes after re-measuring them, without re-scoring:",
           "python -m spider_jax.benchmark --config=... --workdir=DIR --out=RESULTS "
           "--measure_forward_only",
           "python -m spider_jax.benchmark --config=... --workdir=DIR --out=RESULTS "
           "--report_only --forward_costs=RESULTS/forward_costs.json --results_md=docs/RESULTS.md",
           "```", "",
           "Ablation variants (config overrides of the main run): "
           + "; ".join(f"`{n}`: " + ", ".join(f"{k}={v}" for k, v in o.items())
                       for g in (ablations or {}).values() for n, o in g.items())
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
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    atomic.write_text(path, buf.getvalue())


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


def report(config, workdir, out_dir, *, rows, ablation_rows, task_meta, costs, bank, mods,
           anchors_dir="", results_md="", command="", trials=30, shots=10, ablations=None,
           log=print) -> dict:
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
                         trials=trials, shots=shots, notes=notes, ablations=ablations or {})
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
        atomic.write_text(p, md + "\n".join(fig_md) + "\n")
    atomic.write_json(paths["summary"], {"summary": summary, "task_meta": task_meta}, indent=1,
                      default=float)
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
