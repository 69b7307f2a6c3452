"""Probe labels (issue 11 item 3): the NumPy worker-process kernel against the jitted path,
on real pool tasks of a bank, in one process (the ratio is what counts, not the seconds).

    python benchmarks/probe_backends.py --config=configs/logo.py \
        --config.bank_dir=banks/wheel --modality=image --tasks=16

Materialises the first ``--tasks`` pool tasks of the LOGO config (as ``spider_jax.logo``
samples them), starts XLA:CPU with the one-thread intra-op pool the LOGO command uses
(``--one_thread``), warms both paths on the same batch (compiles, worker start-up is paid
on every call and so is counted), then times ``--repeats`` calls of each and prints the
median seconds, the ratio and the largest absolute difference of the accuracies.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # configs/

from spider_jax import bank as bank_lib
from spider_jax import label, logo, probe

config_flags.DEFINE_config_file("config", "configs/logo.py", "the LOGO config")
flags.DEFINE_string("modality", "image", "which sub-zoo")
flags.DEFINE_integer("tasks", 16, "pool tasks per call")
flags.DEFINE_integer("repeats", 3, "timed calls per backend")
flags.DEFINE_bool("one_thread", True, "XLA:CPU intra-op pool of one thread, as the LOGO CLI")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if FLAGS.one_thread:
        logo.one_thread_lapack_pool()
    config = logo.pool_config(FLAGS.config)
    bank = bank_lib.open_bank(config.bank_dir, validate=False)
    sub, zoo = label.zoo_for(bank, FLAGS.modality)
    sampler = label.make_sampler(sub, zoo, config)
    batch = sampler.materialize([sampler.spec(i) for i in range(FLAGS.tasks)])
    kw = dict(num_classes=sampler.max_classes, **probe.probe_settings(config))
    times, outs = {}, {}
    for backend in ("jax", "numpy"):
        outs[backend] = probe.probe_batch(batch, zoo, backend=backend, **kw)       # warm-up
        runs = []
        for _ in range(FLAGS.repeats):
            t0 = time.perf_counter()
            probe.probe_batch(batch, zoo, backend=backend, **kw)
            runs.append(time.perf_counter() - t0)
        times[backend] = float(np.median(runs))
    pairs = FLAGS.tasks * zoo.num_models
    print(f"{FLAGS.modality}: {FLAGS.tasks} tasks x {zoo.num_models} PTMs = {pairs} pairs; "
          f"median of {FLAGS.repeats}: jax {times['jax']:.2f} s, numpy {times['numpy']:.2f} s; "
          f"speed-up numpy/jax {times['jax'] / times['numpy']:.2f}x; "
          f"max |accuracy difference| {np.abs(outs['jax'] - outs['numpy']).max():.2e} "
          f"(mean {np.abs(outs['jax'] - outs['numpy']).mean():.2e})")


if __name__ == "__main__":
    app.run(main)
