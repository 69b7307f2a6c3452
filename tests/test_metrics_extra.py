"""Tests of spider_jax.metrics.extra (N-LEEP, TransRate, GBC, LFC, PACTran-Dirichlet, SFDA)
against the independent float64 references in tests/reference_metrics_extra.py."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from tests import reference_metrics_extra as ref
from spider_jax import metrics
from spider_jax.metrics import _gbc, _lfc, _nleep, _pactran, _sfda, _transrate

NUM_SOURCE = 7
# (N, D, C): N > D, and N < D (Gram-matrix paths, rank-deficient scatter).
CASES = [(60, 6, 3), (24, 40, 3)]


def _task(n, d, c, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    rng.shuffle(y)
    centres = rng.normal(size=(c, d))
    # anisotropic, well-separated spectrum so PCA components are well defined
    x = rng.normal(size=(n, d)) * np.linspace(1.5, 0.5, d)[None, :] + centres[y]
    probs = rng.dirichlet(np.full(NUM_SOURCE, 0.5), size=n)
    # SFDA's shrinkage exp(-5 lambda_max) is only non-trivial at this feature scale
    return dict(x=x, p=probs, y=y.astype(np.int32), c=c)


# name -> (call(inputs, y, **kw) using x or p, reference(inputs as float64, y, c), jitted core)
METRICS = {
    "nleep": (metrics.nleep, lambda t: ref.nleep(t["x"], t["y"], t["c"]), "x", _nleep._nleep_jit),
    "transrate": (metrics.transrate, lambda t: ref.transrate(t["x"], t["y"]), "x",
                  _transrate._transrate_jit),
    "transrate_release": (functools.partial(metrics.transrate, variant="release"),
                          lambda t: ref.transrate(t["x"], t["y"], release=True), "x",
                          _transrate._transrate_jit),
    "gbc": (metrics.gbc, lambda t: ref.gbc(t["x"], t["y"]), "x", _gbc._gbc_jit),
    "lfc": (metrics.lfc, lambda t: ref.lfc(t["x"], t["y"]), "x", _lfc._lfc_jit),
    "pactran_dirichlet": (metrics.pactran_dirichlet,
                          lambda t: ref.pactran_dirichlet(t["p"], t["y"], t["c"]), "p",
                          _pactran._pactran_jit),
    "sfda": (metrics.sfda, lambda t: ref.sfda(0.3 * t["x"], t["y"]), "x03", _sfda._sfda_jit),
    "sfda_prob": (functools.partial(metrics.sfda, log_likelihood=False),
                  lambda t: ref.sfda(0.3 * t["x"], t["y"], log_likelihood=False), "x03",
                  _sfda._sfda_jit),
}


# sfda_prob / transrate_release differ from sfda / transrate only by a static flag:
# they are checked against the reference only
INVARIANCE = [name for name in METRICS if name not in ("sfda_prob", "transrate_release")]


def _inputs(task, kind, dtype):
    arr = {"x": task["x"], "p": task["p"], "x03": 0.3 * task["x"]}[kind]
    return np.asarray(arr, dtype)


def _score(name, task, dtype=np.float32, **kw):
    fn, _, kind, _ = METRICS[name]
    return float(fn(_inputs(task, kind, dtype), task["y"], num_classes=task["c"], **kw))


def _reference(name, task):
    # the reference sees the same (float32-rounded) inputs as the float32 run
    t = dict(task, x=task["x"].astype(np.float32).astype(np.float64),
             p=task["p"].astype(np.float32).astype(np.float64))
    return METRICS[name][1](t)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "N%d_D%d" % c[:2])
@pytest.mark.parametrize("name", list(METRICS))
def test_matches_float64_reference(name, case):
    task = _task(*case)
    got = _score(name, task)
    want = _reference(name, task)
    assert np.isfinite(got)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", list(METRICS))
def test_x64_is_exact(name):
    task = _task(60, 6, 3, seed=1)
    task = dict(task, x=task["x"].astype(np.float32).astype(np.float64),
                p=task["p"].astype(np.float32).astype(np.float64))
    with jax.enable_x64(True):
        got = _score(name, task, dtype=np.float64)
    np.testing.assert_allclose(got, METRICS[name][1](task), rtol=1e-8, atol=1e-12)


def _padded(task, n_pad, seed=5):
    """Append n_pad junk rows (random finite values, arbitrary labels) with mask 0."""
    rng = np.random.default_rng(seed)
    n, d = task["x"].shape
    x = np.concatenate([task["x"], 10 * rng.normal(size=(n_pad, d))])
    p = np.concatenate([task["p"], rng.dirichlet(np.ones(NUM_SOURCE), size=n_pad)])
    y = np.concatenate([task["y"], rng.integers(-1, task["c"] + 3, size=n_pad)]).astype(np.int32)
    mask = np.concatenate([np.ones(n), np.zeros(n_pad)]).astype(np.float32)
    return dict(task, x=x, p=p, y=y), mask


@pytest.mark.parametrize("name", INVARIANCE)
def test_padding_does_not_change_score(name):
    # real N = 24 < D = 30, padded N = 40 > D: the static eigen-path switches too
    task = _task(24, 30, 3, seed=2)
    padded, mask = _padded(task, 16)
    plain = _score(name, task)
    got = _score(name, padded, mask=mask)
    np.testing.assert_allclose(got, plain, rtol=1e-4, atol=1e-6)
    # the padded score still matches the reference on the real rows
    np.testing.assert_allclose(got, _reference(name, task), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", INVARIANCE)
def test_permutation_invariance(name):
    task = _task(60, 6, 3, seed=3)
    perm = np.random.default_rng(0).permutation(60)
    shuffled = dict(task, x=task["x"][perm], p=task["p"][perm], y=task["y"][perm])
    np.testing.assert_allclose(_score(name, shuffled), _score(name, task), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", INVARIANCE)
def test_vmap_equals_loop_and_compiles_once(name):
    fn, _, kind, core = METRICS[name]
    tasks = [_task(48, 6, 3, seed=10 + b) for b in range(3)]
    real = [48, 40, 33]
    xs = np.stack([_inputs(t, kind, np.float32) for t in tasks])
    ys = np.stack([t["y"] for t in tasks])
    masks = np.stack([(np.arange(48) < r).astype(np.float32) for r in real])
    batched = jax.vmap(functools.partial(fn, num_classes=3))(xs, ys, mask=masks)
    # the loop runs the same padded shape one task at a time (padding invariance
    # itself is tested separately); one compilation must serve all three tasks
    fn(xs[0], ys[0], num_classes=3, mask=masks[0])
    size = core._cache_size()
    loop = [float(fn(xs[b], ys[b], num_classes=3, mask=masks[b])) for b in range(3)]
    fn(np.ascontiguousarray(xs[2][::-1]), ys[2], num_classes=3, mask=masks[2])  # new values
    assert core._cache_size() == size
    np.testing.assert_allclose(np.asarray(batched), loop, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", INVARIANCE)
def test_absent_class_is_finite(name):
    task = _task(60, 6, 3, seed=4)
    fn, _, kind, _ = METRICS[name]
    x = _inputs(task, kind, np.float32)
    score5 = float(fn(x, task["y"], num_classes=5))       # classes 3 and 4 absent
    assert np.isfinite(score5)
    if name in ("transrate", "gbc", "lfc", "sfda", "sfda_prob"):
        # these do not depend on C beyond the classes present
        np.testing.assert_allclose(score5, _score(name, task), rtol=1e-5)
    # a class in the middle absent: labels {0, 2, 4} of 5
    y = (task["y"] * 2).astype(np.int32)
    assert np.isfinite(float(fn(x, y, num_classes=5)))


BAD = [
    ("nan", lambda x, y, m: (np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x), y, m),
     "NaN"),
    ("label_range", lambda x, y, m: (x, np.where(np.arange(len(y)) == 0, 7, y).astype(np.int32), m),
     "labels"),
    ("length", lambda x, y, m: (x, y[:-1], m), "length"),
    ("one_class", lambda x, y, m: (x, np.zeros_like(y), m), "classes"),
    ("mask_shape", lambda x, y, m: (x, y, np.ones(len(y) + 1)), "mask"),
    ("too_few", lambda x, y, m: (x, y, (np.arange(len(y)) == 0).astype(np.float32)), "at least 2"),
]


@pytest.mark.parametrize("bad", BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("name", INVARIANCE)
def test_bad_input_raises_before_compiling(name, bad):
    fn, _, kind, core = METRICS[name]
    task = _task(20, 4, 3, seed=6)
    x, y, m = bad[1](_inputs(task, kind, np.float32), task["y"], None)
    size = core._cache_size()
    with pytest.raises(ValueError, match=bad[2]):
        fn(x, y, num_classes=3, mask=m)
    assert core._cache_size() == size


def test_bad_hyper_parameters():
    task = _task(20, 4, 3)
    x, p, y = task["x"], task["p"], task["y"]
    with pytest.raises(ValueError, match="eps"):
        metrics.transrate(x, y, num_classes=3, eps=0.0)
    with pytest.raises(ValueError, match="variant"):
        metrics.transrate(x, y, num_classes=3, variant="code")
    with pytest.raises(ValueError, match="lam"):
        metrics.pactran_dirichlet(p, y, num_classes=3, lam=-1.0)
    with pytest.raises(ValueError, match="non-negative"):
        metrics.pactran_dirichlet(-p, y, num_classes=3)
    with pytest.raises(ValueError, match="variance_kept"):
        metrics.nleep(x, y, num_classes=3, variance_kept=1.5)
    with pytest.raises(ValueError, match="pca_dim"):
        metrics.gbc(x, y, num_classes=3, pca_dim=0)
    with pytest.raises(ValueError, match="num_components"):
        metrics.nleep(x, y, num_classes=3, num_components=0)


def test_higher_is_more_transferable():
    """Features that separate the classes better score higher on every feature metric."""
    rng = np.random.default_rng(7)
    y = (np.arange(60) % 3).astype(np.int32)
    centres = rng.normal(size=(3, 6))
    noise = rng.normal(size=(60, 6))
    good = (0.3 * (noise + 3.0 * centres[y])).astype(np.float32)
    bad = (0.3 * (noise + 0.3 * centres[y])).astype(np.float32)
    for name in ("nleep", "transrate", "gbc", "lfc", "sfda"):
        fn = METRICS[name][0]
        assert float(fn(good, y, num_classes=3)) > float(fn(bad, y, num_classes=3)), name


@pytest.mark.parametrize("name", INVARIANCE)
def test_singleton_class_matches_reference(name):
    """A class with one example: GBC/SFDA variances are 0 (floored / shrunk), no NaN."""
    task = _task(40, 5, 3, seed=8)
    y = task["y"].copy()
    y[y == 2] = 0
    y[7] = 2
    task = dict(task, y=y)
    got = _score(name, task)
    assert np.isfinite(got)
    np.testing.assert_allclose(got, _reference(name, task), rtol=1e-4, atol=1e-7)


def test_list_inputs_and_float16():
    """Python lists work like arrays; float16 banks are computed in float32."""
    task = _task(60, 6, 3, seed=9)
    for name in INVARIANCE:
        fn, _, kind, _ = METRICS[name]
        x = _inputs(task, kind, np.float32)
        a = float(fn(x, task["y"], num_classes=3))
        b = float(fn(x.tolist(), task["y"].tolist(), num_classes=3))
        np.testing.assert_allclose(a, b, rtol=1e-6, err_msg=name)
    x16 = task["x"].astype(np.float16)
    a = float(metrics.lfc(x16, task["y"], num_classes=3))
    np.testing.assert_allclose(a, ref.lfc(x16.astype(np.float64), task["y"]), rtol=1e-4)
