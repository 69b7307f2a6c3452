"""The paper's single-source 10-PTM zoo (section 5.1, appendix B.1): 832 training tasks.

Needs a user bank holding the 10 ImageNet PTMs and the train pool (EuroSAT, OfficeHome,
PACS, SmallNORB, STL10, VLCS) plus the 8 downstream datasets:

  python -m spider_jax.train --config=configs/single10.py --workdir=runs/single10 \
      --config.bank_dir=/data/bank_single10
"""

from configs import default


def get_config():
    config = default.get_config()
    config.modality = "image"
    config.data.num_train_tasks = 832
    config.train.max_specific = 10
    return config
