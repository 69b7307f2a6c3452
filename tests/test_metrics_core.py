"""Core metrics (LogME, LEEP, NCE, H-Score, shrinkage H-Score) vs float64 NumPy references."""

import functools
import importlib

import jax
import numpy as np
import pytest

from spider_jax import metrics
from tests import reference_metrics as ref

C = 4


def _task(seed, n, d, c=C, sep=1.5, dtype=np.float32):
    """Well-conditioned classification task: class means + isotropic noise."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.arange(c), rng.integers(0, c, n - c)])   # every class present
    rng.shuffle(labels)
    feats = sep * rng.normal(size=(c, d))[labels] + rng.normal(size=(n, d))
    return feats.astype(dtype), labels.astype(np.int32)


def _probs_task(seed, n, z=7, c=C):
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.arange(c), rng.integers(0, c, n - c)]).astype(np.int32)
    logits = 2.0 * rng.normal(size=(c, z))[labels] + rng.normal(size=(n, z))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    return (probs / probs.sum(1, keepdims=True)).astype(np.float32), labels


FEATURE_METRICS = {
    "logme": (metrics.logme, ref.logme_ref),
    "hscore": (metrics.hscore, ref.hscore_ref),
    "regularized_hscore": (metrics.regularized_hscore, ref.regularized_hscore_ref),
}


def _call(name, *args, **kw):
    fn, _ = FEATURE_METRICS[name]
    return float(fn(*args, **kw))


# --------------------------------------------------------------------------- agreement


@pytest.mark.parametrize("name", sorted(FEATURE_METRICS))
@pytest.mark.parametrize("n,d", [(120, 12), (64, 24)])
def test_feature_metrics_match_reference_float32(name, n, d):
    f, y = _task(0, n, d)
    fn, rf = FEATURE_METRICS[name]
    np.testing.assert_allclose(float(fn(f, y, num_classes=C)), rf(f, y, C), rtol=1e-4)


@pytest.mark.parametrize("name", ["logme", "regularized_hscore"])
def test_feature_metrics_n_less_than_d(name):
    f, y = _task(1, 20, 40)
    fn, rf = FEATURE_METRICS[name]
    np.testing.assert_allclose(float(fn(f, y, num_classes=C)), rf(f, y, C), rtol=1e-4)


@pytest.mark.parametrize("n,d,offset", [(400, 48, 20.0), (56, 64, 10.0)])
def test_uncentred_relu_features_float32(n, d, offset):
    # Non-negative features with a large common mean: the top eigenvalue of F^T F
    # dwarfs the bulk, and a loose zero-eigenvalue threshold (max(N, D) * eps * max)
    # dropped real eigenvalues: LogME was off by 4e-2 / 3.5e-3 here (2.6% at
    # N=5000, D=2048 in benchmarks/metrics_speed.py).
    f, y = _task(40, n, d)
    f = np.maximum(f + offset, 0.0).astype(np.float32)
    for name, (fn, rf) in FEATURE_METRICS.items():
        np.testing.assert_allclose(float(fn(f, y, num_classes=C)), rf(f, y, C), rtol=1e-4,
                                   err_msg=name)


def test_logme_n_less_than_d_counts_missing_zero_eigenvalues():
    # thuml/LogME issue #23: dropping the D - N zero eigenvalues of F^T F changes the score.
    f, y = _task(2, 12, 30)
    got = float(metrics.logme(f, y, num_classes=C))
    np.testing.assert_allclose(got, ref.logme_ref(f, y, C), rtol=1e-4)
    buggy = np.mean([ref.logme_evidence_ref(f.astype(np.float64), (y == c).astype(np.float64),
                                            count_null_space=False) for c in range(C)])
    assert abs(got - buggy) > 1e-2 * abs(got)


def test_hscore_degenerate_when_d_ge_n():
    # Plain H-Score = (#classes present) - 1 for every model when D >= N (documented).
    f, y = _task(3, 16, 32)
    got = float(metrics.hscore(f, y, num_classes=C))
    np.testing.assert_allclose(got, ref.hscore_ref(f, y, C), rtol=1e-4)
    np.testing.assert_allclose(got, C - 1, rtol=1e-4)


def test_ledoit_wolf_shrinkage_matches_sklearn():
    sk = pytest.importorskip("sklearn.covariance")
    hs = importlib.import_module("spider_jax.metrics.hscore")
    f, _ = _task(4, 40, 10)
    x = f.astype(np.float64) - f.mean(0)
    l = np.linalg.eigvalsh(x.T @ x)
    a, _ = hs.ledoit_wolf_shrinkage(l, 40.0, np.sum(np.sum(x * x, 1) ** 2), 10)
    np.testing.assert_allclose(float(a), sk.ledoit_wolf_shrinkage(x, assume_centered=True),
                               rtol=1e-5)
    np.testing.assert_allclose(ref.ledoit_wolf_ref(x)[1],
                               sk.ledoit_wolf_shrinkage(x, assume_centered=True), rtol=1e-10)


def test_leep_nce_match_reference():
    p, y = _probs_task(5, 150)
    np.testing.assert_allclose(float(metrics.leep(p, y, num_classes=C)),
                               ref.leep_ref(p, y, C), rtol=1e-4)
    z = p.argmax(1)
    np.testing.assert_allclose(
        float(metrics.nce(z, y, num_source_classes=7, num_classes=C)),
        ref.nce_ref(z, y, 7, C), rtol=1e-4)


@pytest.mark.parametrize("targets_dim", [None, 3])
def test_logme_regression_matches_reference(targets_dim):
    rng = np.random.default_rng(6)
    f = rng.normal(size=(80, 10)).astype(np.float32)
    w = rng.normal(size=(10, targets_dim or 1))
    t = f @ w + 0.5 * rng.normal(size=(80, targets_dim or 1))
    t = t[:, 0] if targets_dim is None else t
    np.testing.assert_allclose(float(metrics.logme_regression(f, t)),
                               ref.logme_regression_ref(f, t), rtol=1e-4)


def test_float64_agreement_under_x64():
    f, y = _task(7, 60, 12, dtype=np.float64)
    fs, ys = _task(8, 15, 30, dtype=np.float64)        # N < D
    p, py = _probs_task(9, 60)
    p = p.astype(np.float64)
    p /= p.sum(1, keepdims=True)
    with jax.enable_x64(True):
        for name, (fn, rf) in FEATURE_METRICS.items():
            for ff, yy in ((f, y), (fs, ys)):
                if name == "hscore" and ff is fs:
                    continue   # degenerate (exactly C - 1); checked in float32 above
                out = fn(ff, yy, num_classes=C)
                assert out.dtype == np.float64
                np.testing.assert_allclose(float(out), rf(ff, yy, C), rtol=1e-8, err_msg=name)
        np.testing.assert_allclose(float(metrics.leep(p, py, num_classes=C)),
                                   ref.leep_ref(p, py, C), rtol=1e-8)
        z = p.argmax(1)
        np.testing.assert_allclose(float(metrics.nce(z, py, num_source_classes=7, num_classes=C)),
                                   ref.nce_ref(z, py, 7, C), rtol=1e-8)
        t = f[:, :2] @ np.ones((2, 2)) + np.sin(f[:, 2:4])
        np.testing.assert_allclose(float(metrics.logme_regression(f, t)),
                                   ref.logme_regression_ref(f, t), rtol=1e-8)


# --------------------------------------------------------------------------- edge cases


def test_float16_inputs_computed_in_float32():
    f, y = _task(41, 60, 8)
    f16 = f.astype(np.float16)
    for name, (fn, rf) in FEATURE_METRICS.items():
        out = fn(f16, y, num_classes=C)
        assert out.dtype == np.float32, name
        np.testing.assert_allclose(float(out), rf(f16.astype(np.float64), y, C), rtol=1e-4,
                                   err_msg=name)
    p, py = _probs_task(42, 60)
    out = metrics.leep(p.astype(np.float16), py, num_classes=C)
    assert out.dtype == np.float32
    np.testing.assert_allclose(float(out), ref.leep_ref(p.astype(np.float16), py, C), rtol=1e-4)


@pytest.mark.parametrize("name", sorted(FEATURE_METRICS))
def test_one_example_in_a_class(name):
    f, y = _task(10, 50, 8)
    y = np.where(y == 3, 0, y)
    y[7] = 3                                             # class 3 has exactly one example
    _, rf = FEATURE_METRICS[name]
    np.testing.assert_allclose(_call(name, f, y, num_classes=C), rf(f, y, C), rtol=1e-4)


@pytest.mark.parametrize("name", sorted(FEATURE_METRICS) + ["leep", "nce"])
def test_absent_class_is_skipped(name):
    # Labels {0, 2} with num_classes=3 == labels {0, 1} with num_classes=2, never NaN.
    if name in FEATURE_METRICS:
        x, y = _task(11, 40, 6, c=2)
        fn = FEATURE_METRICS[name][0]
        call = lambda labels, c: float(fn(x, labels, num_classes=c))  # noqa: E731
    elif name == "leep":
        x, y = _probs_task(11, 40, c=2)
        call = lambda labels, c: float(metrics.leep(x, labels, num_classes=c))  # noqa: E731
    else:
        x, y = _probs_task(11, 40, c=2)
        z = x.argmax(1)
        call = lambda labels, c: float(metrics.nce(  # noqa: E731
            z, labels, num_source_classes=7, num_classes=c))
    with_gap = call(np.where(y == 1, 2, 0).astype(np.int32), 3)
    assert np.isfinite(with_gap)
    np.testing.assert_allclose(with_gap, call(y, 2), rtol=1e-5)


@pytest.mark.parametrize("name", sorted(FEATURE_METRICS))
def test_class_present_only_in_padding(name):
    f, y = _task(12, 40, 6, c=3)
    mask = np.ones(40, np.float32)
    mask[y == 2] = 0                                     # class 2 fully masked
    _, rf = FEATURE_METRICS[name]
    got = _call(name, f, y, num_classes=3, mask=mask)
    assert np.isfinite(got)
    keep = mask > 0
    np.testing.assert_allclose(got, rf(f[keep], y[keep], 3), rtol=1e-4)


@pytest.mark.parametrize("name", sorted(FEATURE_METRICS))
def test_permutation_invariance(name):
    f, y = _task(13, 60, 10)
    perm = np.random.default_rng(0).permutation(60)
    np.testing.assert_allclose(_call(name, f[perm], y[perm], num_classes=C),
                               _call(name, f, y, num_classes=C), rtol=1e-4)


@pytest.mark.parametrize("name", sorted(FEATURE_METRICS))
@pytest.mark.parametrize("n_real,n_pad,d", [(20, 48, 32), (40, 64, 16), (10, 24, 32)])
def test_padding_invariance_including_crossing_n_eq_d(name, n_real, n_pad, d):
    f, y = _task(14, n_real, d)
    rng = np.random.default_rng(1)
    fp = np.concatenate([f, 3.0 * rng.normal(size=(n_pad - n_real, d)).astype(np.float32)])
    yp = np.concatenate([y, np.full(n_pad - n_real, -1, np.int32)])   # padding labels ignored
    mask = np.r_[np.ones(n_real), np.zeros(n_pad - n_real)].astype(np.float32)
    _, rf = FEATURE_METRICS[name]
    padded = _call(name, fp, yp, num_classes=C, mask=mask)
    np.testing.assert_allclose(padded, _call(name, f, y, num_classes=C), rtol=1e-4)
    np.testing.assert_allclose(padded, rf(f, y, C), rtol=1e-4)


def test_leep_nce_padding_invariance():
    p, y = _probs_task(15, 30)
    rng = np.random.default_rng(2)
    extra = rng.dirichlet(np.ones(7), size=10).astype(np.float32)
    pp = np.concatenate([p, extra])
    yp = np.concatenate([y, np.full(10, -1, np.int32)])
    mask = np.r_[np.ones(30), np.zeros(10)]
    np.testing.assert_allclose(float(metrics.leep(pp, yp, num_classes=C, mask=mask)),
                               ref.leep_ref(p, y, C), rtol=1e-4)
    np.testing.assert_allclose(
        float(metrics.nce(pp.argmax(1), yp, num_source_classes=7, num_classes=C, mask=mask)),
        ref.nce_ref(p.argmax(1), y, 7, C), rtol=1e-4)


def test_vmap_equals_loop_and_compiles_once():
    b, n, d = 3, 36, 12
    tasks = [_task(20 + i, n, d) for i in range(b)]
    feats = np.stack([t[0] for t in tasks])
    labels = np.stack([t[1] for t in tasks])
    mask = np.ones((b, n), np.float32)
    mask[1, 25:] = 0                                    # task 1 has 25 real examples
    for name, (fn, _) in FEATURE_METRICS.items():
        batched = jax.jit(jax.vmap(functools.partial(fn, num_classes=C)))(feats, labels, mask=mask)
        loop = [float(fn(feats[i], labels[i], num_classes=C, mask=mask[i])) for i in range(b)]
        np.testing.assert_allclose(np.asarray(batched), loop, rtol=1e-4, err_msg=name)
    # One compile serves every task of the same shape.
    mod = importlib.import_module("spider_jax.metrics.logme")
    before = mod._logme_jit._cache_size()
    for i in range(b):
        metrics.logme(feats[i] + 1.0, labels[i], num_classes=C, mask=mask[i])
    assert mod._logme_jit._cache_size() - before <= 1


# --------------------------------------------------------------------------- bad input


def _bad_cases():
    f, y = _task(30, 20, 5)
    nan_f = f.copy()
    nan_f[3, 2] = np.nan
    inf_f = f.copy()
    inf_f[0, 0] = np.inf
    one = np.zeros(20, np.float32)
    one[0] = 1
    return [
        ("NaN", (nan_f, y), {}),
        ("NaN", (inf_f, y), {}),
        ("must lie in", (f, np.where(y == 0, C, y)), {}),
        ("must lie in", (f, np.where(y == 0, -1, y)), {}),
        ("length", (f, y[:-1]), {}),
        ("at least 2 real", (f[:1], y[:1]), {}),
        ("at least 2 real", (f, y), {"mask": one}),
        ("distinct classes", (f, np.zeros(20, np.int32)), {}),
        ("0 or 1", (f, y), {"mask": np.full(20, 0.5)}),
        ("shape", (f, y), {"mask": np.ones(19)}),
        ("integer", (f, y.astype(np.float32)), {}),
        ("2-D", (f[:, 0], y), {}),
    ]


@pytest.mark.parametrize("name", sorted(FEATURE_METRICS))
@pytest.mark.parametrize("case", range(12))
def test_bad_input_raises(name, case):
    match, args, kw = _bad_cases()[case]
    fn, _ = FEATURE_METRICS[name]
    with pytest.raises(ValueError, match=match):
        fn(*args, num_classes=C, **kw)


def test_bad_input_leep_nce_regression():
    p, y = _probs_task(31, 20)
    with pytest.raises(ValueError, match="non-negative"):
        metrics.leep(p - 0.5, y, num_classes=C)
    with pytest.raises(ValueError, match="must lie in"):
        metrics.leep(p, y + 1, num_classes=C)
    with pytest.raises(ValueError, match="distinct classes"):
        metrics.leep(p, np.zeros_like(y), num_classes=C)
    with pytest.raises(ValueError, match="source_labels must lie in"):
        metrics.nce(np.full(20, 7), y, num_source_classes=7, num_classes=C)
    with pytest.raises(ValueError, match="length"):
        metrics.nce(p.argmax(1)[:-1], y, num_source_classes=7, num_classes=C)
    with pytest.raises(ValueError, match="num_classes must be a static Python int"):
        metrics.nce(p.argmax(1), y, num_source_classes=7, num_classes=4.0)
    with pytest.raises(ValueError, match="NaN"):
        metrics.logme_regression(np.ones((5, 2)), np.array([1.0, 2.0, np.nan, 0.0, 1.0]))
    with pytest.raises(ValueError, match="length"):
        metrics.logme_regression(np.ones((5, 2)), np.ones(4))
    with pytest.raises(ValueError, match="at least 2 real"):
        metrics.logme_regression(np.ones((1, 2)), np.ones(1))
