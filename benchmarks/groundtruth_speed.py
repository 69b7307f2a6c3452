"""Ground-truth linear probe throughput: (task, PTM) pairs per second at N=500, D=1280.

Same process, same inputs (synthetic ReLU-like features of C=10 overlapping classes; the
cost does not depend on the values), the CLI's protocol (5 stratified folds, seeds 0 and
1, six ridge alphas):

* baseline: the jitted probe (``groundtruth.linear_probe(backend="jax")``: vmapped over a
  chunk of 6 pairs, one eigendecomposition per fold), timed after its compilation;
* the CPU path (``backend="numpy"``: ``spider_jax.ridge_cv``, one pair per worker process,
  one Cholesky per alpha), timed end to end including the worker start-up, with every
  usable core and with one worker.

It also checks that both give the same accuracies on the pairs they share, and reports the
CPU seconds the workers used: on a shared machine the wall-clock rate of 2 workers is only
as good as the cores they actually got ("cores busy").
Target (issues 10 and 15): >= 20 pairs/s on 2 cores.

    python benchmarks/groundtruth_speed.py [--quick] [--json=PATH]
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from spider_jax import groundtruth, ridge_cv  # noqa: E402

TARGET = 20.0


def make_pairs(num, n=500, d=1280, c=10, seed=0):
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(num):
        y = rng.permutation(np.arange(n) % c)
        x = np.maximum(rng.normal(size=(c, d))[y] * 0.08 + rng.normal(size=(n, d)), 0.0)
        pairs.append((x.astype(np.float32), y, c))
    return pairs


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run(quick: bool = False) -> dict:
    pairs = make_pairs(16 if quick else 64)
    base_pairs = pairs[:6]
    groundtruth.linear_probe(base_pairs, backend="jax", chunk=6)  # compile
    t = time.perf_counter()
    base = groundtruth.linear_probe(base_pairs, backend="jax", chunk=6)
    base_rate = len(base_pairs) / (time.perf_counter() - t)
    workers = ridge_cv.default_workers()
    load = os.getloadavg()[0]
    t, c = time.perf_counter(), _cpu_seconds()
    fast = groundtruth.linear_probe(pairs, backend="numpy", workers=workers)
    wall, cpu = time.perf_counter() - t, _cpu_seconds() - c
    t, c = time.perf_counter(), _cpu_seconds()
    groundtruth.linear_probe(pairs[:8], backend="numpy", workers=1)
    one_wall, one_cpu = time.perf_counter() - t, _cpu_seconds() - c
    diff = np.abs(fast[:len(base_pairs)] - base)
    rate = len(pairs) / wall
    return {"pairs": len(pairs), "workers": workers, "baseline_pairs_per_s": base_rate,
            "pairs_per_s": rate, "busy_cores": cpu / wall, "cpu_ms_per_pair": 1e3 * cpu / len(pairs),
            "one_worker_pairs_per_s": 8 / one_wall, "one_worker_cpu_ms_per_pair": 1e3 * one_cpu / 8,
            "load_average_before": load, "ratio": rate / base_rate,
            "max_abs_diff_vs_baseline": float(diff.max()), "target": TARGET, "met": bool(rate >= TARGET)}


def report(r: dict) -> str:
    return "\n".join([
        f"ground truth, N=500 D=1280 C=10, 5 folds x 2 seeds x 6 alphas, {r['pairs']} pairs:",
        f"  baseline jitted probe (eigh per fold):   {r['baseline_pairs_per_s']:7.2f} pairs/s",
        f"  numpy/LAPACK, {r['workers']} worker processes:   {r['pairs_per_s']:7.2f} pairs/s"
        f"  = {r['ratio']:.1f}x baseline",
        f"  numpy/LAPACK, 1 worker:                 {r['one_worker_pairs_per_s']:7.2f} pairs/s",
        f"  CPU per pair: {r['cpu_ms_per_pair']:.0f} ms with {r['workers']} workers "
        f"({r['busy_cores']:.2f} cores busy on average; 1-minute load before: "
        f"{r['load_average_before']:.1f}), {r['one_worker_cpu_ms_per_pair']:.0f} ms with 1",
        f"  max |accuracy difference| vs baseline: {r['max_abs_diff_vs_baseline']:.2g}",
        f"  target >= {r['target']:.0f} pairs/s: {'met' if r['met'] else 'NOT met'}"])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="16 pairs instead of 64")
    p.add_argument("--json", default=None, help="also write the figures here")
    a = p.parse_args()
    r = run(a.quick)
    print(report(r))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)


if __name__ == "__main__":
    main()
