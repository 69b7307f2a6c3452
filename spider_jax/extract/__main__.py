"""Build a feature bank: ``python -m spider_jax.extract --zoo=wheel --out=BANK``.

Examples::

    # every model on every dataset of the wheel zoo (about 20 min on 2 cores)
    python -m spider_jax.extract --zoo=wheel --out=banks/wheel
    # 2 image models + 4 text networks, <= 300 examples per dataset (a few minutes)
    python -m spider_jax.extract --zoo=wheel --subset=mini --out=banks/mini
    # your own zoo: a function returning (models, psi, sources), see spider_jax.extract
    python -m spider_jax.extract --zoo=my_package.my_zoo:get_zoo --out=BANK

Rerunning the same command resumes: finished (model, dataset) arrays are skipped.
"""

from __future__ import annotations

import importlib

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("zoo", "wheel", "'wheel' or 'module.path:function' returning (models, psi, sources).")
flags.DEFINE_string("out", None, "Bank directory (created or resumed).")
flags.DEFINE_enum("subset", "full", ["full", "mini"], "Wheel zoo size.")
flags.DEFINE_integer("cap", None, "Max examples per dataset (default: 1500 full, 300 mini).")
flags.DEFINE_integer("workers", 2, "Single-threaded worker processes (one per core).")
flags.DEFINE_list("models", None, "Only these networks or members (network@tap); a network runs "
                  "with all its taps (default: the whole zoo).")
flags.DEFINE_enum("modality", None, ["image", "text"], "Only this modality's networks, psi and "
                  "datasets (a bank can be built one modality at a time; the other is kept).")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.mark_flag_as_required("out")


def main(argv):
    del argv
    from spider_jax.extract import pipeline

    if FLAGS.zoo == "wheel":
        from spider_jax.extract import wheelzoo

        try:
            models, psi, sources = wheelzoo.zoo(FLAGS.subset, FLAGS.cap)
        except RuntimeError as e:
            raise app.UsageError(str(e)) from None
        info = {"zoo": "wheel", "subset": FLAGS.subset, "cap": FLAGS.cap or wheelzoo.default_cap(FLAGS.subset)}
    else:
        module, _, fn = FLAGS.zoo.partition(":")
        models, psi, sources = getattr(importlib.import_module(module), fn or "get_zoo")()
        info = {"zoo": FLAGS.zoo}
    if FLAGS.modality:
        models = {k: a for k, a in models.items() if a.modality == FLAGS.modality}
        psi = {k: a for k, a in psi.items() if k == FLAGS.modality}
        sources = [s for s in sources if s.modality == FLAGS.modality]
    if FLAGS.models:
        names = {k: {k} | {t.name for t in a.taps()} for k, a in models.items()}
        unknown = sorted(set(FLAGS.models) - set().union(*names.values()))
        if unknown:
            raise app.UsageError(f"unknown models {unknown}; choose from {sorted(set().union(*names.values()))}")
        models = {k: v for k, v in models.items() if names[k] & set(FLAGS.models)}
    summary = pipeline.build_bank(FLAGS.out, models, psi, sources, workers=FLAGS.workers,
                                  progress=FLAGS.progress, info=info,
                                  validate=not (FLAGS.models or FLAGS.modality))
    for u in sorted(summary["units"], key=lambda u: -u["seconds"]):
        logging.info("%-22s %-8s %6d items %7.1f s %s", u["model"], u["kind"], u["items"], u["seconds"],
                     u["notes"] or "")
    print(f"bank {FLAGS.out}: {summary['bytes'] / 2**20:.1f} MiB, this run {summary['seconds']:.0f} s")


if __name__ == "__main__":
    app.run(main)
