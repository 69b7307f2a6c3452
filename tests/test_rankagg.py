"""Copeland / Borda aggregation vs loop implementations of the definitions, and the
paper's RankAgg number on the authors' released scores."""

import csv
import pathlib

import jax
import numpy as np
import pytest

from spider_jax import evaluation, rankagg
from tests.reference_metrics import copeland_ref

DATA = pathlib.Path(__file__).parent / "data"


def borda_loop(scores):
    s = np.asarray(scores, np.float64)
    out = np.zeros(s.shape[1])
    for row in s:
        for i in range(s.shape[1]):
            out[i] += np.sum(row[i] > row) + 0.5 * (np.sum(row[i] == row) - 1)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_copeland_and_borda_match_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(4, 7)).astype(np.float32)   # many ties, even A
    np.testing.assert_array_equal(np.asarray(rankagg.copeland(scores)), copeland_ref(scores))
    np.testing.assert_array_equal(np.asarray(rankagg.borda(scores)), borda_loop(scores))
    m = scores.shape[1]
    assert float(np.sum(rankagg.copeland(scores))) == m * (m - 1) / 2


def test_copeland_batched_and_jit_vmap():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 5, 6)).astype(np.float32)
    batched = np.asarray(rankagg.copeland(scores))
    vm = np.asarray(jax.jit(jax.vmap(rankagg.copeland))(scores))
    for b in range(3):
        np.testing.assert_array_equal(batched[b], copeland_ref(scores[b]))
        np.testing.assert_array_equal(vm[b], batched[b])


def test_copeland_nan_ranks_last_never_nan():
    # A NaN score ranks last within its method (issue 12, item 1).
    scores = np.array([[1.0, 2.0, np.nan], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]], np.float32)
    out = np.asarray(rankagg.copeland(scores))
    assert np.all(np.isfinite(out))
    # By hand, with method 0 ranking 1 > 0 > 2: 1 beats 0 (methods 0, 1 vs 2); 0 beats 2
    # (methods 0, 2 vs 1); 2 beats 1 (methods 1, 2 vs 0): a cycle, one point each.
    np.testing.assert_array_equal(out, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(out, copeland_ref(np.nan_to_num(scores, nan=-np.inf)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_dead_ptm_with_nonfinite_scores_never_wins(bad):
    # Issue 12, item 1: a PTM with all-zero features got NaN from LogME and, as NaN
    # counted as a tie with everything, won Copeland. Non-finite scores rank last.
    scores = np.array([[0.3, 0.2, 0.1, bad],        # logme: the dead PTM is degenerate
                       [0.1, 0.3, 0.2, 0.0],        # the other methods score it lowest
                       [0.2, 0.1, 0.3, 0.0]], np.float32)
    out = np.asarray(rankagg.copeland(scores))
    assert np.argmax(out) != 3
    assert out[3] == 0.0                            # loses every contest
    assert np.asarray(rankagg.borda(scores))[3] == 0.0
    with pytest.raises(ValueError, match="non-finite scores for models \\[3\\]"):
        rankagg.aggregate({"a": scores[0], "b": scores[1]})


def test_aggregate_dict_and_errors():
    d = {"a": [0.1, 0.3, 0.2], "b": [1.0, 3.0, 2.0], "c": [5.0, 4.0, 6.0]}
    np.testing.assert_array_equal(rankagg.aggregate(d), copeland_ref(np.array(list(d.values()))))
    np.testing.assert_array_equal(rankagg.aggregate(d, method="borda"),
                                  borda_loop(np.array(list(d.values()))))
    # float64 scores closer than float32 resolution keep their order.
    close = {"a": [1.0, 1.0 + 1e-12], "b": [1.0, 1.0 + 2e-12]}
    np.testing.assert_array_equal(rankagg.aggregate(close), [0.0, 1.0])
    with pytest.raises(ValueError, match="method"):
        rankagg.aggregate(d, method="kemeny")
    with pytest.raises(ValueError, match="empty"):
        rankagg.aggregate({})
    with pytest.raises(ValueError, match="same length"):
        rankagg.aggregate({"a": [1.0, 2.0], "b": [1.0]})
    with pytest.raises(ValueError, match="non-finite"):
        rankagg.aggregate({"a": [1.0, np.nan]})


def test_rankagg_on_released_scores_reproduces_paper():
    """Copeland over H-Score, NCE, LEEP, LogME: mean tau_w 0.716 over the 8 classification
    datasets (ORIGINAL_NOTES), above the best single method (LogME, 0.678 on these scores)."""
    acc = {r["model"]: r for r in csv.DictReader(open(DATA / "finetune_acc_10zoo.csv"))}
    rows = list(csv.DictReader(open(DATA / "model_spider_baseline_scores.csv")))
    datasets = ["Aircraft", "Caltech101", "Cars", "CIFAR10", "CIFAR100", "DTD", "Pet", "SUN397"]
    taus, logme_taus = [], []
    for ds in datasets:
        rr = [r for r in rows if r["Dataset"] == ds]
        truth = [float(acc[r["Model"]][ds]) for r in rr]
        agg = rankagg.aggregate({k: [float(r[k]) for r in rr]
                                 for k in ("H-Score", "NCE", "LEEP", "LogME")})
        taus.append(evaluation.weighted_tau(truth, agg))
        logme_taus.append(evaluation.weighted_tau(truth, [float(r["LogME"]) for r in rr]))
    assert round(float(np.mean(taus)), 3) == 0.716
    assert round(float(np.mean(logme_taus)), 3) == 0.678
