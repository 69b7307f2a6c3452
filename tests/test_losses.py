"""Ranking losses against float64 NumPy references written from the formulas (Eq. 4)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spider_jax import losses


def listmle_reference(scores, targets, mask=None):
    """Eq. 4: sum_m [log sum_{l>=m} exp(s_dsc(l)) - s_dsc(m)], ties -> lower index first."""
    scores = np.asarray(scores, np.float64)
    targets = np.asarray(targets, np.float64)
    idx = [i for i in range(len(scores)) if mask is None or mask[i]]
    # dsc: descending target; equal targets keep index order (lower index first).
    order = sorted(idx, key=lambda i: (-targets[i], i))
    total = 0.0
    for pos, i in enumerate(order):
        rest = order[pos:]
        total += np.log(np.sum(np.exp(scores[rest]))) - scores[i]
    return total


def test_listmle_matches_eq4():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(5, 7)).astype(np.float32)
    t = rng.normal(size=(5, 7)).astype(np.float32)
    got = np.asarray(losses.listmle(jnp.asarray(s), jnp.asarray(t)))
    want = [listmle_reference(s[i], t[i]) for i in range(5)]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def breslow_reference(scores, targets):
    """Breslow ties: sum_m [log sum_{l: t_l <= t_m} exp(s_l) - s_m], written as loops."""
    s = np.asarray(scores, np.float64)
    t = np.asarray(targets, np.float64)
    return sum(np.log(sum(np.exp(s[l]) for l in range(len(s)) if t[l] <= t[m])) - s[m]
               for m in range(len(s)))


def test_listmle_breslow_ties_are_symmetric_and_match_reference():
    s = np.array([0.3, -1.0, 2.0, 0.5], np.float32)
    t = np.array([1.0, 1.0, 0.0, 1.0], np.float32)       # Copeland-like ties
    got = float(losses.listmle(jnp.asarray(s), jnp.asarray(t)))
    np.testing.assert_allclose(got, breslow_reference(s, t), rtol=1e-6)
    # Permuting scores within the tied group {0, 1, 3} leaves the loss unchanged
    # (no preference among tied PTMs), unlike index tie-breaking.
    s2 = s[[3, 0, 2, 1]]
    np.testing.assert_allclose(float(losses.listmle(jnp.asarray(s2), jnp.asarray(t))), got,
                               rtol=1e-6)
    assert not np.isclose(float(losses.listmle(jnp.asarray(s2), jnp.asarray(t), ties="index")),
                          float(losses.listmle(jnp.asarray(s), jnp.asarray(t), ties="index")))
    # Without ties both rules are exactly Eq. 4.
    u = np.array([3.0, 1.0, 0.0, 2.0], np.float32)
    np.testing.assert_allclose(float(losses.listmle(jnp.asarray(s), jnp.asarray(u))),
                               listmle_reference(s, u), rtol=1e-6)
    with pytest.raises(ValueError, match="ties"):
        losses.listmle(jnp.asarray(s), jnp.asarray(t), ties="random")


def test_listmle_ties_broken_by_model_index():
    s = np.array([0.3, -1.0, 2.0, 0.5], np.float32)
    t = np.array([1.0, 1.0, 0.0, 1.0], np.float32)       # Copeland-like ties
    got = float(losses.listmle(jnp.asarray(s), jnp.asarray(t), ties="index"))
    np.testing.assert_allclose(got, listmle_reference(s, t), rtol=1e-6)
    # Same as the explicit order 0, 1, 3, 2.
    perm = [0, 1, 3, 2]
    manual = sum(np.log(np.exp(s[perm[k:]].astype(np.float64)).sum()) - s[perm[k]]
                 for k in range(4))
    np.testing.assert_allclose(got, manual, rtol=1e-6)


def test_listmle_is_plackett_luce_nll():
    """exp(-loss) over all orders sums to 1 (a proper distribution over permutations)."""
    s = np.array([0.2, -0.4, 1.1, 0.0])
    total = 0.0
    for perm in itertools.permutations(range(4)):
        t = np.empty(4)
        t[list(perm)] = np.arange(4, 0, -1)
        total += np.exp(-float(losses.listmle(jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32))))
    np.testing.assert_allclose(total, 1.0, rtol=1e-5)


def test_listmle_mask_and_all_masked():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(3, 6)).astype(np.float32)
    t = rng.normal(size=(3, 6)).astype(np.float32)
    mask = np.array([[1, 1, 0, 1, 0, 1], [1] * 6, [0] * 6], bool)
    got = np.asarray(losses.listmle(jnp.asarray(s), jnp.asarray(t), jnp.asarray(mask)))
    np.testing.assert_allclose(got[:2], [listmle_reference(s[i], t[i], mask[i]) for i in range(2)],
                               rtol=1e-5)
    assert got[2] == 0.0
    g = jax.jit(jax.grad(lambda x: losses.ranking_loss("listmle", x, jnp.asarray(t),
                                                        jnp.asarray(mask))))(jnp.asarray(s))
    assert np.isfinite(np.asarray(g)).all()
    assert np.all(np.asarray(g)[~mask] == 0.0)
    # Changing masked scores changes nothing.
    s2 = np.where(mask, s, 123.0).astype(np.float32)
    np.testing.assert_array_equal(
        np.asarray(losses.listmle(jnp.asarray(s2), jnp.asarray(t), jnp.asarray(mask))), got)


def test_listnet_and_mse_references():
    rng = np.random.default_rng(2)
    s = rng.normal(size=(4, 5))
    t = rng.normal(size=(4, 5))
    p = np.exp(t) / np.exp(t).sum(-1, keepdims=True)
    logq = s - np.log(np.exp(s).sum(-1, keepdims=True))
    np.testing.assert_allclose(losses.listnet(jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32)),
                               -(p * logq).sum(-1), rtol=1e-5)
    z = (t - t.mean(-1, keepdims=True)) / t.std(-1, keepdims=True)
    np.testing.assert_allclose(losses.mse(jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32)),
                               ((s - z) ** 2).mean(-1), rtol=1e-4)


def test_unknown_loss_name():
    with pytest.raises(ValueError, match="unknown loss"):
        losses.ranking_loss("hinge", jnp.zeros((1, 3)), jnp.zeros((1, 3)))
