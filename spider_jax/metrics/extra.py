"""Additional transferability metrics (issue 2), re-exported from one module each.

* ``nleep``  -- N-LEEP (Li et al., CVPR 2021): PCA 80% + diagonal GMM by EM + LEEP.
* ``transrate`` -- TransRate (Huang et al., ICML 2022): coding-rate R(Z) - R(Z|Y).
* ``gbc``    -- GBC (Pandy et al., CVPR 2022): PCA-64, -sum of Bhattacharyya coefficients.
* ``lfc``    -- LFC (Deshpande et al., 2021): correlation of feature Gram and label agreement.
* ``pactran_dirichlet`` -- PACTran-Dirichlet (Ding et al., ECCV 2022): variational ELBO.
* ``sfda``   -- SFDA (Shao et al., ECCV 2022): regularised FDA + ConfMix + log-likelihood.

All follow the package convention: ``metric(x, labels, *, num_classes, mask=None, ...)``,
higher = more transferable, static shape arguments, padding via ``mask``, jit-able
and vmap-able over a leading task axis, ValueError on bad concrete input before
compilation. Each module's docstring gives the formula and what differs from the
authors' code.
"""

from __future__ import annotations

from spider_jax.metrics._gbc import gbc
from spider_jax.metrics._lfc import lfc
from spider_jax.metrics._nleep import nleep
from spider_jax.metrics._pactran import pactran_dirichlet
from spider_jax.metrics._sfda import sfda
from spider_jax.metrics._transrate import transrate

__all__ = ["nleep", "transrate", "gbc", "lfc", "pactran_dirichlet", "sfda"]
