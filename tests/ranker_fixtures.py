"""Shared helpers for the ranker/score/plots tests: a tiny random-init scorer as a Ranker."""

from __future__ import annotations

import jax
import numpy as np

from spider_jax import model as model_lib
from spider_jax import ranker as ranker_lib

DIMS = (5, 7, 3, 9, 4)
NAMES = ("ptm00", "ptm01", "ptm02", "ptm03", "ptm04")
PSI_DIM = 12
MAX_CLASSES = 8


def random_variables(model, psi_dim: int, seed: int = 0, scale: float = 0.3):
    """Random init, perturbed so every parameter (incl. LayerNorm, biases) matters."""
    m = len(model.model_dims)
    args = (np.zeros((1, 2, psi_dim), np.float32), np.ones((1, 2), bool),
            np.zeros((1, m, 2, max(model.model_dims)), np.float32), np.zeros((1, m), bool))
    variables = model.init(jax.random.PRNGKey(seed), *args)
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    leaves = [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    return jax.tree.unflatten(tree, leaves)


def make_ranker(dims=DIMS, names=NAMES, psi_dim=PSI_DIM, max_classes=MAX_CLASSES, d=16,
                num_heads=1, mlp_dim=0, seed=0, use_type_embeddings=True, members=1,
                **extra):
    """A Ranker of a random scorer; ``members > 1`` an ensemble; ``extra``: more scorer
    fields (e.g. prior_residual=True, gate_refs=R)."""
    kwargs = dict(model_dims=tuple(dims), d=d, num_heads=num_heads, mlp_dim=mlp_dim,
                  dropout=0.0, attn_dropout=0.0, use_type_embeddings=use_type_embeddings,
                  **extra)
    model = (model_lib.SpiderEnsemble(members=members, **kwargs) if members > 1
             else model_lib.SpiderScorer(**kwargs))
    variables = random_variables(model, psi_dim, seed)
    return ranker_lib.Ranker(model, variables, list(names), max_classes=max_classes)
