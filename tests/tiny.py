"""Shared by tests: a seconds-long variant of the smoke config (3 PTMs, 5 datasets) and a
byte snapshot of a directory tree."""

import os

from configs import smoke


def tiny_config():
    config = smoke.get_config()
    config.synthetic.update(num_models=3, num_datasets=5, num_downstream=2,
                            classes_per_dataset=(3, 4), examples_per_class=12, psi_dim=8)
    config.data.num_train_tasks = 16
    config.data.max_classes = 8
    config.data.examples_per_class = 6
    config.label.chunk_size = 8
    config.model.d = 16
    config.train.batch_size = 8
    config.train.num_epochs = 2
    config.train.log_every = 100
    config.eval.max_examples_per_class = 12
    return config


def file_snapshot(root: str) -> dict[str, bytes]:
    """{path relative to root: bytes} of every file under ``root`` (to show nothing changed)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out
