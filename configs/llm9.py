"""The paper's 9-LLM zoo (section 5.3, appendix B.3): few-shot text tasks of 10 answers.

Tasks come from one dataset each (10 instruction answers per task, at most 16 tasks per
training dataset); the bank holds last-layer features of the final generated token.

  python -m spider_jax.train --config=configs/llm9.py --workdir=runs/llm9 \
      --config.bank_dir=/data/bank_llm9
"""

from configs import default


def get_config():
    config = default.get_config()
    config.modality = "text"
    config.data.min_datasets = 1
    config.data.max_datasets = 1
    config.data.examples_per_class = 10
    config.data.num_train_tasks = 16 * 40      # <= 16 tasks per training dataset
    config.label.methods = ("hscore", "logme")  # LLMs expose no classification source head
    config.train.max_specific = 9
    return config
