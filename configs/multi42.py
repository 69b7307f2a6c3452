"""The paper's multi-source 42-PTM zoo (section 5.2, appendix B.2): 4352 training tasks.

  python -m spider_jax.train --config=configs/multi42.py --workdir=runs/multi42 \
      --config.bank_dir=/data/bank_multi42
"""

from configs import default


def get_config():
    config = default.get_config()
    config.modality = "image"
    config.data.num_train_tasks = 4352
    config.train.max_specific = 10
    return config
