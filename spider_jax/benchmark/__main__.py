"""The paper's Table 2 / Table 8 benchmark on a feature bank (e.g. the real wheel zoo).

    python -m spider_jax.benchmark --config=configs/wheelzoo.py --workdir=DIR --out=RESULTS \
        --config.bank_dir=banks/wheel [--results_md=docs/RESULTS.md] \
        [--ablation=supervision,loss] [--fewshot_trials=30]

On the synthetic bank of the smoke config (trains WORKDIR first when it has no checkpoint)::

    python -m spider_jax.benchmark --config=configs/smoke.py --workdir=DIR --out=RESULTS

What it scores: :mod:`spider_jax.benchmark.scoring`; what it writes:
:mod:`spider_jax.benchmark.report`; the driver: :mod:`spider_jax.benchmark.run`.

Outputs in OUT: ``results.csv`` (one row per method x task x protocol), ``results.md``
(paper layout, best in bold), ``figure3_<modality>_k<k>.png`` (plots.py scatter),
``forward_costs.json``, ``summary.json``; ``--results_md`` also writes the Markdown there.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

from spider_jax import config_check, forward_cost, parallel
from spider_jax import workdir as workdir_lib
from spider_jax.benchmark.report import _fmt, report
from spider_jax.benchmark.run import ABLATIONS, run_benchmark
from spider_jax.benchmark.scoring import PROTOCOLS


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
    parallel.guard_lapack_pool(log=print)   # every metric (TransRate: two batched eigvalsh)
    command = "python -m spider_jax.benchmark " + " ".join(sys.argv[1:])
    t0 = time.time()
    try:
        config_check.check_config(f.config)
        if f.measure_forward_only:
            bank = workdir_lib.open_bank_for(f.config, f.workdir)
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
            bank = workdir_lib.open_bank_for(f.config, f.workdir)
            res = report(f.config, f.workdir, f.out, rows=saved["rows"],
                         ablation_rows=saved["ablation_rows"], task_meta=saved["task_meta"],
                         costs=_load_json(f.forward_costs) if f.forward_costs else saved["costs"],
                         bank=bank,
                         mods=workdir_lib.modalities_for(f.config, bank), anchors_dir=f.anchors_dir,
                         results_md=f.results_md, command=saved.get("command", command),
                         ablations=ABLATIONS,
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
    app.run(main, flags_parser=config_check.parse_flags)
