"""The benchmark driver: trains when needed, scores every modality, runs ablations,
and writes the report (``python -m spider_jax.benchmark`` is its CLI)."""

from __future__ import annotations

import copy
import os
import time

from spider_jax import atomic, forward_cost, methods
from spider_jax import workdir as workdir_lib
from spider_jax.benchmark.report import report
from spider_jax.benchmark.scoring import PROTOCOLS, run_modality, training_prior
from spider_jax.ranker import Ranker

__all__ = ["ABLATIONS", "ensure_trained", "run_benchmark"]

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



def ensure_trained(config, workdir: str, modalities, log=print) -> bool:
    """Trains the scorers into ``workdir`` when a modality has no checkpoint; True if trained."""
    if workdir_lib.has_checkpoint(workdir, modalities):
        return False
    from spider_jax import train

    log(f"no checkpoint in {workdir}: training ({', '.join(modalities)})")
    t0 = time.time()
    train.train_and_evaluate(config, workdir)
    log(f"trained in {time.time() - t0:.0f} s")
    return True


def run_benchmark(config, workdir: str, out_dir: str, *, protocols=PROTOCOLS, shots: int = 10,
                  trials: int = 30, method_names=None, ablation=(), anchors_dir: str = "",
                  forward_costs_path: str | None = None, measure_forward: bool = True,
                  results_md: str = "", command: str = "", seed: int = 0, log=print) -> dict:
    """Runs the whole benchmark and writes OUT; returns {"rows", "summary", "paths", ...}."""
    os.makedirs(out_dir, exist_ok=True)
    method_names = list(method_names or methods.names())
    bank = workdir_lib.open_bank_for(config, workdir)
    mods = workdir_lib.modalities_for(config, bank)
    costs = None
    # Forward costs are measured (in fresh spawned processes) before this process runs any
    # XLA computation: spawning them after XLA:CPU work can hang the next metric call
    # (jax 0.10.2); measuring first, or reusing a saved forward_costs.json, does not.
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
    atomic.write_json(os.path.join(out_dir, "rows.json"),     # checkpoint before ablations
                      {"rows": rows, "ablation_rows": [], "task_meta": task_meta,
                       "costs": costs, "command": command}, default=float)
    ablation_rows = []
    for group in ablation:
        for name, overrides in ABLATIONS[group].items():
            cfg = copy.deepcopy(config)
            cfg.update_from_flattened_dict(overrides)
            adir = os.path.join(workdir, "ablation", name)
            if group == "loss" and not config.label.cache_dir:
                # same supervision as the main run: reuse its label cache
                cache = os.path.join(workdir, "ablation", "_main_labels")
                os.makedirs(cache, exist_ok=True)
                for mod in mods:
                    link = os.path.join(cache, mod)
                    if not os.path.exists(link):
                        os.symlink(os.path.abspath(workdir_lib.cache_dir_for(config, workdir, mod)), link)
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
    atomic.write_json(os.path.join(out_dir, "rows.json"),
                      {"rows": rows, "ablation_rows": ablation_rows, "task_meta": task_meta,
                       "costs": costs, "command": command}, default=float)
    return report(config, workdir, out_dir, rows=rows, ablation_rows=ablation_rows,
                  task_meta=task_meta, costs=costs, bank=bank, mods=mods, anchors_dir=anchors_dir,
                  results_md=results_md, command=command, trials=trials, shots=shots,
                  ablations=ABLATIONS, log=log)
