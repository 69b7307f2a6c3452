"""Hybrid re-ranking (issue 11 item 5): inference.hybrid_merge against a NumPy statement of
the rule, and through the one Algorithm 2 path."""

import numpy as np
import pytest

from spider_jax import inference


def _reference_order(coarse, metric, k):
    """Zoo indices best first: the k = 0 top-k block re-sorted by the metric, then the rest."""
    order = list(np.lexsort((np.arange(coarse.size), -coarse)))
    block = order[:k]
    block = sorted(block, key=lambda i: (np.isnan(metric[i]), -np.nan_to_num(metric[i]),
                                         block.index(i)))
    return block + order[k:]


@pytest.mark.parametrize("k", [0, 1, 2, 3, 5, 7])
def test_merge_matches_reference(k):
    rng = np.random.default_rng(k)
    coarse = rng.normal(size=(20, 7)).astype(np.float32)
    coarse[3, :] = coarse[3, 0]                       # all tied: zoo order decides the block
    metric = rng.normal(size=(20, 7)).astype(np.float32)
    metric[5, 2] = np.nan
    metric[6, :] = 1.0                                # metric tie: k = 0 order kept
    merged = np.asarray(inference.hybrid_merge(coarse, metric, inference.topk_mask(coarse, k)))
    for b in range(coarse.shape[0]):
        want = _reference_order(coarse[b], metric[b], k)
        if k <= 1 or b == 3:   # k <= 1 and an all-tied row: scores (and order) unchanged
            np.testing.assert_array_equal(merged[b], coarse[b])
            continue
        np.testing.assert_array_equal(inference.order_from_scores(merged[b]), want)
        rest = want[k:]
        np.testing.assert_array_equal(merged[b, rest], coarse[b, rest])      # rest untouched
        np.testing.assert_array_equal(np.sort(merged[b]), np.sort(coarse[b]))  # same values


def test_rerank_scores_hybrid_is_the_merge():
    """The one Algorithm 2 path runs the hybrid when given metric scores."""
    from tests.ranker_fixtures import make_ranker

    r = make_ranker()
    rng = np.random.default_rng(9)
    centres = rng.normal(size=(4, 3, 12)).astype(np.float32)
    mask = np.ones((4, 3), bool)
    metric = rng.normal(size=(4, 5)).astype(np.float32)
    coarse = np.asarray(inference.k0_scores(r.model, r.variables, centres, mask))
    got = np.asarray(inference.rerank_scores(r.model, r.variables, centres, mask, k=3,
                                             metric=metric))
    for b in range(4):
        assert list(inference.order_from_scores(got[b])) == _reference_order(coarse[b],
                                                                              metric[b], 3)
