"""Seconds-long leave-one-group-out run on a synthetic bank with 4 groups (tests, CI).

  python -m spider_jax.logo --config=configs/logo_smoke.py --workdir=runs/logo_smoke
"""

from configs import logo, smoke


def get_config():
    config = logo.get_config()
    base = smoke.get_config()
    config.bank_dir = ""
    config.synthetic = dict(enabled=True, num_models=5, num_datasets=8, num_downstream=1,
                            num_groups=4, classes_per_dataset=(6, 8, 5),
                            examples_per_class=20, psi_dim=16, seed=0)
    config.model = base.model
    config.data.max_classes = 6
    config.data.examples_per_class = 8
    config.label.chunk_size = 16
    config.logo.update(full_max_examples=80, num_subsets=3, subset_max_classes=4,
                       subset_per_class=8, eval_chunk=8, min_train_tasks=32, max_pool=160,
                       train_steps=20, select_every=10, num_boot=200)
    return config
