"""Transferability metrics: higher = more transferable, jit- and vmap-able.

Every metric takes ``(features or source_probs, labels, *, num_classes, mask=None)``
(static shape arguments, ``mask`` [N] with 1 = real example, so padded tasks of a
common N can be vmapped), validates concrete inputs with NumPy before compiling
(ValueError naming the problem) and returns a scalar.

Core (this package): ``logme``, ``logme_regression``, ``leep``, ``nce``, ``hscore``,
``regularized_hscore``. Further metrics (``extra.py``): ``nleep``, ``transrate``,
``gbc``, ``lfc``, ``pactran_dirichlet``, ``sfda``.

Batched use::

    batched = jax.vmap(functools.partial(metrics.logme, num_classes=C))
    scores = batched(features[B, N, D], labels[B, N], mask=mask[B, N])
"""

from spider_jax.metrics.extra import gbc, lfc, nleep, pactran_dirichlet, sfda, transrate
from spider_jax.metrics.hscore import hscore, regularized_hscore
from spider_jax.metrics.leep import leep, nce
from spider_jax.metrics.logme import logme, logme_regression

__all__ = [
    "logme",
    "logme_regression",
    "leep",
    "nce",
    "hscore",
    "regularized_hscore",
    "nleep",
    "transrate",
    "gbc",
    "lfc",
    "pactran_dirichlet",
    "sfda",
]
