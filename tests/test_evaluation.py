"""Ranking-quality measures vs SciPy, and the paper's Table 2 on the released scores."""

import csv
import pathlib

import jax
import numpy as np
import pytest
import scipy.stats

from spider_jax import evaluation

DATA = pathlib.Path(__file__).parent / "data"
DATASETS = ["Aircraft", "Caltech101", "Cars", "CIFAR10", "CIFAR100", "DTD", "Pet", "SUN397"]

# Paper Table 2, standard evaluation (Aircraft .. SUN397 in DATASETS order).
TABLE2 = {
    "H-Score": [0.328, 0.738, 0.616, 0.797, 0.784, 0.395, 0.610, 0.918],
    "NCE": [0.501, 0.752, 0.771, 0.694, 0.617, 0.403, 0.696, 0.892],
    "LEEP": [0.244, 0.014, 0.704, 0.601, 0.620, -0.111, 0.680, 0.509],
    "NLEEP": [-0.725, 0.599, 0.622, 0.768, 0.776, 0.074, 0.787, 0.730],
    "LogME": [0.540, 0.666, 0.677, 0.802, 0.798, 0.429, 0.628, 0.870],
    "PACTranDirichlet": [0.031, 0.200, 0.665, 0.717, 0.620, -0.236, 0.616, 0.565],
    "OTCE": [-0.241, -0.011, -0.157, 0.569, 0.573, -0.165, 0.402, 0.218],
    "LFC": [0.279, -0.165, 0.243, 0.346, 0.418, -0.722, 0.215, -0.344],
    "GBC": [-0.744, -0.055, -0.265, 0.758, 0.544, -0.102, 0.163, 0.457],
}
# The released scores give different Aircraft values for these three cells than the
# paper prints (0.244, -0.725, 0.540): we test the values the released data give.
AIRCRAFT_FROM_RELEASED_DATA = {"LEEP": 0.221, "NLEEP": -0.766, "LogME": 0.552}


def _released():
    acc = {r["model"]: r for r in csv.DictReader(open(DATA / "finetune_acc_10zoo.csv"))}
    rows = list(csv.DictReader(open(DATA / "model_spider_baseline_scores.csv")))
    out = {}
    for ds in DATASETS:
        rr = [r for r in rows if r["Dataset"] == ds]
        truth = np.array([float(acc[r["Model"]][ds]) for r in rr])
        out[ds] = (truth, {m: np.array([float(r[m]) for r in rr]) for m in TABLE2})
    return out


@pytest.mark.parametrize("method", sorted(TABLE2))
def test_weighted_tau_reproduces_table2(method):
    data = _released()
    for j, ds in enumerate(DATASETS):
        truth, scores = data[ds]
        expected = TABLE2[method][j]
        if ds == "Aircraft" and method in AIRCRAFT_FROM_RELEASED_DATA:
            assert expected != AIRCRAFT_FROM_RELEASED_DATA[method]
            expected = AIRCRAFT_FROM_RELEASED_DATA[method]
        got = evaluation.weighted_tau(truth, scores[method])
        assert round(got, 3) == expected, (method, ds, got)


def _random_pairs():
    rng = np.random.default_rng(0)
    for i in range(60):
        m = int(rng.integers(2, 12))
        if i % 3 == 0:
            yield rng.normal(size=m), rng.normal(size=m)
        else:   # heavy ties in one or both lists
            yield rng.integers(0, 4, m).astype(float), rng.integers(0, 3, m).astype(float)


def test_weighted_tau_equals_scipy_with_ties():
    for t, p in _random_pairs():
        expected = scipy.stats.weightedtau(t, p, rank=None).correlation
        got = evaluation.weighted_tau(t, p)
        if np.isnan(expected):
            assert np.isnan(got)
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_weighted_tau_batched_jit_matches_scipy():
    pairs = [(t, p) for t, p in _random_pairs() if t.size == 8]
    pairs += [(np.arange(8.0), np.arange(8.0)[::-1]), (np.arange(8.0), np.arange(8.0))]
    truth = np.stack([t for t, _ in pairs])
    pred = np.stack([p for _, p in pairs])
    with jax.enable_x64(True):
        got = np.asarray(evaluation.weighted_tau_batched(truth, pred))
    expected = [scipy.stats.weightedtau(t, p, rank=None).correlation for t, p in pairs]
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    got32 = np.asarray(evaluation.weighted_tau_batched(truth.astype(np.float32),
                                                       pred.astype(np.float32)))
    np.testing.assert_allclose(got32, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[-2:], [-1.0, 1.0], rtol=1e-12)


def test_kendall_and_pearson_equal_scipy():
    for t, p in _random_pairs():
        kt = scipy.stats.kendalltau(t, p).statistic
        if np.isnan(kt):
            assert np.isnan(evaluation.kendall_tau(t, p))
        else:
            np.testing.assert_allclose(evaluation.kendall_tau(t, p), kt, rtol=1e-12, atol=1e-12)
        if np.std(t) > 0 and np.std(p) > 0:
            np.testing.assert_allclose(evaluation.pearson(t, p),
                                       scipy.stats.pearsonr(t, p).statistic, rtol=1e-10, atol=1e-12)


def test_top1_regret_and_topk_hit():
    acc = np.array([80.0, 90.0, 85.0, 70.0])
    assert evaluation.top1_regret(acc, [0.1, 0.9, 0.3, 0.0]) == 0.0
    assert evaluation.top1_regret(acc, [0.1, 0.2, 0.3, 0.0]) == 5.0
    assert evaluation.top1_regret(acc, [1.0, 1.0, 0.0, 0.0]) == 10.0   # tie -> lowest index
    assert not evaluation.topk_hit(acc, [0.1, 0.2, 0.3, 0.0], 1)
    assert evaluation.topk_hit(acc, [0.1, 0.2, 0.3, 0.0], 2)
    assert evaluation.topk_hit(acc, [0.0, 0.0, 0.0, 0.0], 2)           # ties -> indices 0, 1
    with pytest.raises(ValueError, match="k must be"):
        evaluation.topk_hit(acc, acc, 0)


@pytest.mark.parametrize("fn", [evaluation.weighted_tau, evaluation.kendall_tau,
                                evaluation.pearson, evaluation.top1_regret])
def test_bad_input(fn):
    with pytest.raises(ValueError, match="same length"):
        fn([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        fn([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2"):
        fn([1.0], [1.0])
    with pytest.raises(ValueError, match="1-D"):
        fn(np.ones((2, 2)), np.ones((2, 2)))
