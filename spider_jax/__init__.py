"""spider_jax: Model Spider (NeurIPS 2023) in JAX/Flax.

Learn to rank pre-trained models (PTMs) for a new task from model tokens and task
class centres, supervised by RankAgg (Copeland over H-Score, NCE, LEEP and LogME).
"""

__version__ = "0.1.0"
