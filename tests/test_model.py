"""The scorer: shapes, permutation equivariance over PTMs, padding invariance."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spider_jax.model import SpiderScorer

DIMS = (5, 8, 3, 8)
B, C, DPSI = 3, 4, 6


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    psi = rng.normal(size=(B, C, DPSI)).astype(np.float32)
    cmask = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], bool)
    spec = rng.normal(size=(B, len(DIMS), C, max(DIMS))).astype(np.float32)
    for m, d in enumerate(DIMS):
        spec[:, m, :, d:] = 0.0
    smask = np.array([[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]], bool)
    return psi, cmask, spec, smask


@pytest.fixture(scope="module", params=[dict(num_layers=1, num_heads=1, mlp_dim=0),
                                        dict(num_layers=2, num_heads=2, mlp_dim=16)])
def scorer(request):
    model = SpiderScorer(model_dims=DIMS, d=16, dropout=0.0, attn_dropout=0.0, **request.param)
    psi, cmask, spec, smask = _inputs()
    params = jax.jit(model.init)(jax.random.PRNGKey(0), psi, cmask, spec, smask)["params"]
    # Random (non-zero) type embeddings and biases so every path is exercised.
    rng = np.random.default_rng(1)
    params = jax.tree_util.tree_map(
        lambda x: x + 0.1 * rng.normal(size=x.shape).astype(np.float32), params)
    return model, params


def _apply(model, params, *args):
    return np.asarray(jax.jit(lambda p, *a: model.apply({"params": p}, *a))(params, *args))


def test_shapes_and_k0_path(scorer):
    model, params = scorer
    psi, cmask, spec, smask = _inputs()
    out = _apply(model, params, psi, cmask, spec, smask)
    assert out.shape == (B, len(DIMS)) and np.isfinite(np.asarray(out)).all()
    k0 = _apply(model, params, psi, cmask)
    none = _apply(model, params, psi, cmask, spec, np.zeros_like(smask))
    np.testing.assert_allclose(np.asarray(k0), np.asarray(none), rtol=1e-6, atol=1e-6)


def test_permutation_equivariant_over_ptms(scorer):
    model, params = scorer
    psi, cmask, spec, smask = _inputs()
    out = _apply(model, params, psi, cmask, spec, smask)
    perm = np.array([2, 0, 3, 1])
    pmodel = SpiderScorer(model_dims=tuple(DIMS[i] for i in perm), d=model.d,
                          num_layers=model.num_layers, num_heads=model.num_heads,
                          mlp_dim=model.mlp_dim, dropout=0.0, attn_dropout=0.0)
    pparams = dict(params)
    pparams["model_tokens"] = params["model_tokens"][perm]
    pparams["specific_proj"] = params["specific_proj"][perm]
    pparams["specific_bias"] = params["specific_bias"][perm]
    pout = _apply(pmodel, pparams, psi, cmask, spec[:, perm], smask[:, perm])
    np.testing.assert_allclose(pout, out[:, perm], rtol=1e-5, atol=1e-6)


def test_padding_is_ignored(scorer):
    model, params = scorer
    psi, cmask, spec, smask = _inputs()
    out = _apply(model, params, psi, cmask, spec, smask)
    rng = np.random.default_rng(9)
    psi2, spec2 = psi.copy(), spec.copy()
    psi2[~cmask] = rng.normal(size=psi2[~cmask].shape) * 50           # padded classes
    spec2[np.broadcast_to(~cmask[:, None, :], spec.shape[:3])] = 7.0   # their specific tokens
    spec2[~smask] = rng.normal(size=spec2[~smask].shape)               # PTMs without specific
    for m, d in enumerate(DIMS):
        spec2[:, m, :, d:] = -3.0                                      # dims beyond D_m
    out2 = _apply(model, params, psi2, cmask, spec2, smask)
    np.testing.assert_array_equal(out, out2)


def test_task_tokens_matter_and_no_loop_over_models(scorer):
    model, params = scorer
    psi, cmask, spec, smask = _inputs()
    out = _apply(model, params, psi, cmask)
    out2 = _apply(model, params, psi + 1.0, cmask)
    assert not np.allclose(out, out2)
    # One jitted call for all M PTMs; a second task batch reuses the compilation.
    chex.clear_trace_counter()     # chex keys traces by source: the parametrisations share it
    f = jax.jit(chex.assert_max_traces(lambda p, x, c: model.apply({"params": p}, x, c), n=1))
    f(params, psi, cmask)
    f(params, psi * 2, cmask)            # a retrace would raise


def test_bad_specific_shape():
    model = SpiderScorer(model_dims=DIMS, d=8)
    psi, cmask, spec, smask = _inputs()
    with pytest.raises(ValueError, match="specific_centres shape"):
        jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), psi, cmask, spec[:, :, :, :5], smask))
