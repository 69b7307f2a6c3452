"""Seconds-long run on a tiny synthetic bank created in WORKDIR/bank (tests, CI).

  python -m spider_jax.train --config=configs/smoke.py --workdir=runs/spider_smoke
"""

from configs import default


def get_config():
    config = default.get_config()
    config.modality = "all"
    config.synthetic = dict(enabled=True, num_models=6, num_datasets=20, num_downstream=4,
                            classes_per_dataset=(6, 8, 5), examples_per_class=30,
                            psi_dim=32, seed=0)
    config.data.num_train_tasks = 128
    config.data.max_classes = 12
    config.data.examples_per_class = 10
    config.label.chunk_size = 16
    config.model.d = 64
    config.model.dropout = 0.0
    config.model.attn_dropout = 0.0
    config.optim.lr = 1e-3
    config.optim.end_lr = 1e-4
    config.train.batch_size = 8
    config.train.num_epochs = 25
    config.train.max_specific = 3
    config.train.log_every = 20
    config.train.eval_every = 100
    config.train.checkpoint_every = 100
    config.eval.max_examples_per_class = 30
    return config
