"""Issue 12, items 1 and 4: no silent wrong metric value.

Item 1: LogME / H-Scores scale-invariant in float32 over 1e-10..1e10 (against float64
NumPy references written from the formulas), constant features warn and score finite
no-information values, and the label step reports degenerate (task, PTM, method)
values, which rank last (a dead PTM never wins the RankAgg label).
Item 4: source probabilities must be distributions (metrics and bank validation).
"""

import logging
import os
import warnings

import numpy as np
import pytest
from scipy import optimize

from spider_jax import bank as bank_lib
from spider_jax import label, methods, metrics, synthetic
from spider_jax.methods import RANKAGG_METHODS
from tests import reference_metrics as ref

C = 4
SCALES = (1e-10, 1e-6, 1e-3, 1.0, 1e3, 1e6, 1e10)


def _task(seed, n, d, c=C):
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.arange(c), rng.integers(0, c, n - c)]).astype(np.int32)
    feats = 1.5 * rng.normal(size=(c, d))[labels] + rng.normal(size=(n, d)) + 0.5
    return feats, labels


def max_evidence_ref(f, y):
    """max over (alpha, beta) of log N(y; 0, I / beta + F F^T / alpha) / N (float64, by
    numerical optimisation: no fixed point, no normalisation)."""
    f = np.asarray(f, np.float64)
    n = f.shape[0]
    g = f @ f.T

    def nll(theta):
        la, lb = theta
        cov = np.exp(-lb) * np.eye(n) + np.exp(-la) * g
        sign, logdet = np.linalg.slogdet(cov)
        return 0.5 * (logdet + y @ np.linalg.solve(cov, y) + n * np.log(2 * np.pi))

    best = min((optimize.minimize(nll, x0, method="Nelder-Mead",
                                  options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
                for x0 in ([0.0, 0.0], [np.log(np.mean(g)), 0.0])), key=lambda r: r.fun)
    return -best.fun / n


# --------------------------------------------------------------------------- item 1
@pytest.mark.parametrize("n,d", [(60, 8), (12, 30)])        # D x D and N x N paths
@pytest.mark.parametrize("name,fn,rf", [
    ("logme", metrics.logme, ref.logme_ref),
    ("hscore", metrics.hscore, ref.hscore_ref),
    ("regularized_hscore", metrics.regularized_hscore, ref.regularized_hscore_ref),
])
def test_scale_invariant_in_float32(name, fn, rf, n, d):
    f, y = _task(1, n, d)
    want = rf(f, y, C)                      # float64 reference at scale 1
    for c in SCALES:
        got = float(fn((f * c).astype(np.float32), y, num_classes=C))
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-5,
                                   err_msg=f"{name} at scale {c:g}")


def test_logme_equals_maximum_evidence_at_every_scale():
    # What is invariant: LogME's *maximum* evidence (alpha absorbs c^2). The normalised
    # fixed point reaches it at every scale (float32), where the published iteration
    # from alpha = beta = 1 drifts and overflows.
    f, y = _task(2, 40, 6)
    targets = [(y == k).astype(np.float64) for k in range(C)]
    want = np.mean([max_evidence_ref(f, t) for t in targets])
    for c in SCALES:
        got = float(metrics.logme((f * c).astype(np.float32), y, num_classes=C))
        np.testing.assert_allclose(got, want, rtol=1e-3, err_msg=f"scale {c:g}")
    # The published (un-normalised) iteration at scale 1 agrees with it too.
    raw = ref.logme_ref(f, y, C, normalise=False)
    np.testing.assert_allclose(raw, want, rtol=1e-3)


@pytest.mark.parametrize("n,d", [(20, 1280), (12, 640)])
def test_logme_finite_when_the_features_interpolate_the_labels(n, d):
    # N <= rank F with well-separated classes (few examples of a wide PTM, common in
    # sampled tasks): every one-hot target is fitted exactly and the evidence has no
    # finite maximum; float32 beta overflowed to NaN, which ranked the PTM *last* in
    # Copeland (seen on the wheel zoo's 1280-wide heads). It must stay finite at every
    # feature scale, batched too, and tighter classes must not score lower.
    rng = np.random.default_rng(0)
    y = np.arange(n) % C
    centres, noise = rng.normal(size=(C, d)), rng.normal(size=(n, d))
    scores = {}
    for spread in (0.3, 0.1, 0.03):
        f = (centres[y] + spread * noise).astype(np.float32)
        vals = [float(metrics.logme(f * c, y, num_classes=C)) for c in (1e-3, 1.0, 1e3)]
        assert np.all(np.isfinite(vals)), (spread, vals)
        np.testing.assert_allclose(vals, vals[1], rtol=1e-3)
        batched = methods.over_tasks("logme", num_classes=C)(
            f[None], y[None], np.ones((1, n), np.float32))
        np.testing.assert_allclose(np.asarray(batched)[0], vals[1], rtol=1e-4)
        scores[spread] = vals[1]
    assert scores[0.03] >= scores[0.1] >= scores[0.3], scores

def test_logme_regression_scale_invariant():
    rng = np.random.default_rng(3)
    f = rng.normal(size=(50, 7))
    t = f @ rng.normal(size=(7, 2)) + 0.3 * rng.normal(size=(50, 2))
    want = ref.logme_regression_ref(f, t)
    for c in SCALES:
        np.testing.assert_allclose(float(metrics.logme_regression((f * c).astype(np.float32), t)),
                                   want, rtol=2e-4, err_msg=f"scale {c:g}")


def test_ranking_of_ptms_independent_of_their_scales():
    # Three PTMs of increasing quality at wildly different scales: the order is the
    # order of the float64 references at scale 1.
    rng = np.random.default_rng(4)
    y = np.concatenate([np.arange(C), rng.integers(0, C, 56)]).astype(np.int32)
    means = rng.normal(size=(C, 10))
    feats = [sep * means[y] + rng.normal(size=(60, 10)) for sep in (0.3, 1.0, 3.0)]
    for fn, rf in ((metrics.logme, ref.logme_ref),
                   (metrics.regularized_hscore, ref.regularized_hscore_ref)):
        want = np.argsort([rf(f, y, C) for f in feats])
        got = np.argsort([float(fn((f * c).astype(np.float32), y, num_classes=C))
                          for f, c in zip(feats, (1e10, 1e-10, 1.0))])
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("value", [0.0, 3.0])
def test_constant_features_warn_and_score_finite(value):
    y = (np.arange(40) % 4).astype(np.int32)
    f = np.full((40, 8), value, np.float32)
    with pytest.warns(RuntimeWarning, match="constant"):
        lm = float(metrics.logme(f, y, num_classes=4))
    assert np.isfinite(lm)
    if value == 0.0:    # the noise-only evidence, the lowest any features can reach
        want = np.mean([ref.null_evidence_ref((y == k).astype(np.float64)) for k in range(4)])
        np.testing.assert_allclose(lm, want, rtol=1e-5)
    for fn in (metrics.hscore, metrics.regularized_hscore):
        with pytest.warns(RuntimeWarning, match="constant"):
            assert float(fn(f, y, num_classes=4)) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # ordinary features: no warning
        metrics.logme(np.random.default_rng(0).normal(size=(40, 8)), y, num_classes=4)


def test_degenerate_scores_lists_triples():
    class Zoo:
        models = ["a", "b"]
        has_source_head = [True, False]
    s = np.zeros((3, len(RANKAGG_METHODS), 2), np.float32)
    s[:, RANKAGG_METHODS.index("leep"), 1] = np.nan          # no head: NaN by design
    s[:, RANKAGG_METHODS.index("nce"), 1] = np.nan
    s[1, RANKAGG_METHODS.index("logme"), 0] = np.nan
    s[2, RANKAGG_METHODS.index("hscore"), 1] = np.inf
    got = label.degenerate_scores(s, Zoo, RANKAGG_METHODS, task_ids=[10, 11, 12])
    assert got == [(11, "a", "logme"), (12, "b", "hscore")]


def test_dead_ptm_never_wins_the_label_and_is_reported(tmp_path, caplog):
    # Issue 12 item 1: all-zero features of one PTM made LogME NaN, NaN tied with
    # everything in Copeland and the dead PTM became the rank-1 label.
    from configs import smoke
    root = synthetic.make_bank(str(tmp_path / "bank"), num_models=3, num_datasets=5,
                               num_downstream=1, classes_per_dataset=(3, 4),
                               examples_per_class=10, dims=(6, 6, 6), psi_dim=5,
                               source_head_every=0, seed=5)
    bank = bank_lib.open_bank(root)
    dead = bank.models[1]
    for ds in bank.datasets:
        path = os.path.join(root, bank_lib.features_path(dead, ds, "train"))
        np.save(path, np.zeros_like(np.load(path)))
    bank = bank_lib.open_bank(root)
    config = smoke.get_config()
    config.data.num_train_tasks = 6
    config.data.max_classes = 8
    config.data.examples_per_class = 4
    config.label.chunk_size = 3
    with caplog.at_level(logging.WARNING):
        out = label.label_tasks(bank, config, modality="image", progress=False,
                                cache_dir=str(tmp_path / "labels"))
    scores = out["metric_scores"][:, [RANKAGG_METHODS.index(m) for m in ("logme", "hscore")]]
    assert np.all(np.isfinite(scores))
    assert np.all(out["rank_labels"][:, 1] == 0.0)        # loses every contest
    assert out["degenerate"] == []
    assert f"PTM {dead} has constant features" in caplog.text


# --------------------------------------------------------------------------- item 4
def _probs(seed=0, n=30, z=6):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(z), size=n).astype(np.float32)
    return p, (np.arange(n) % 3).astype(np.int32)


@pytest.mark.parametrize("fn", [metrics.leep, metrics.pactran_dirichlet])
def test_probabilities_must_be_distributions(fn):
    p, y = _probs()
    assert float(metrics.leep(p, y, num_classes=3)) <= 0.0
    with pytest.raises(ValueError, match="sum to 1"):
        fn(p * 10, y, num_classes=3)                      # was LEEP = +0.946
    zero = p.copy()
    zero[[4, 7]] = 0.0
    with pytest.raises(ValueError, match=r"rows \[4, 7\]"):
        fn(zero, y, num_classes=3)                        # was LEEP = -inf
    neg = p.copy()
    neg[2, 0] = -0.1
    neg[2, 1] += 0.1
    with pytest.raises(ValueError, match=r"non-negative.*rows \[2\]"):
        fn(neg, y, num_classes=3)
    # float16 storage rounding is fine; padding rows (mask 0) are not checked.
    fn(p.astype(np.float16), y, num_classes=3)
    mask = np.ones(30, np.float32)
    mask[[4, 7]] = 0
    fn(zero, y, num_classes=3, mask=mask)


def test_bank_rejects_probabilities_that_are_not_distributions(tmp_path):
    root = synthetic.make_bank(str(tmp_path / "bank"), num_models=2, num_datasets=3,
                               num_downstream=1, classes_per_dataset=(3,),
                               examples_per_class=5, dims=(4, 4), psi_dim=3,
                               num_source_classes=5, seed=1)
    bank = bank_lib.open_bank(root)
    model, ds = bank.models[0], bank.datasets[0]
    rel = bank_lib.source_probs_path(model, ds, "train")
    p = np.load(os.path.join(root, rel))
    bad = p.copy()
    bad[3] = -bad[3]
    np.save(os.path.join(root, rel), bad)
    with pytest.raises(ValueError, match=rf"{rel}.*row"):
        bank_lib.open_bank(root)
    w = bank_lib.BankWriter(root)
    with pytest.raises(ValueError, match="sum to 1"):
        w.write_source_probs(model, ds, "train", p * 2)
