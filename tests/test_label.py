"""Label pipeline: batched metrics == one call per (task, PTM), Copeland rule, cache/resume."""

import os

import ml_collections
import numpy as np
import pytest

from spider_jax import bank as bank_lib
from spider_jax import label, methods, metrics, synthetic
from configs import smoke
from tests.reference_metrics import copeland_ref


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = synthetic.make_bank(str(tmp_path_factory.mktemp("b") / "bank"), num_models=4,
                               num_datasets=7, num_downstream=2, classes_per_dataset=(3, 5, 4),
                               examples_per_class=12, dims=(6, 9, 6, 9), psi_dim=5,
                               source_head_every=2, seed=3)
    config = smoke.get_config()
    config.data.num_train_tasks = 10
    config.data.max_classes = 6
    config.data.examples_per_class = 4
    config.label.chunk_size = 4
    return bank_lib.open_bank(root), config


def test_label_batch_matches_single_calls(setup):
    bank, config = setup
    sub, zoo = label.zoo_for(bank, "image")
    sampler = label.make_sampler(sub, zoo, config)
    batch = sampler.materialize([sampler.spec(i) for i in range(4)])   # = chunk_size
    c = sampler.max_classes
    scores, agg = label.label_batch(batch, zoo, num_classes=c, hscore="regularized")
    for t in range(3):
        y, mk = batch["labels"][t], batch["example_mask"][t].astype(np.float32)
        for m in range(zoo.num_models):
            f = batch["features"][m][t]
            np.testing.assert_allclose(scores[t, methods.RANKAGG_METHODS.index("logme"), m],
                                       metrics.logme(f, y, num_classes=c, mask=mk), rtol=1e-4)
            np.testing.assert_allclose(scores[t, methods.RANKAGG_METHODS.index("hscore"), m],
                                       metrics.regularized_hscore(f, y, num_classes=c, mask=mk),
                                       rtol=1e-4, atol=1e-5)
            if zoo.has_source_head[m]:
                p = batch["source_probs"][m][t]
                np.testing.assert_allclose(scores[t, methods.RANKAGG_METHODS.index("leep"), m],
                                           metrics.leep(p, y, num_classes=c, mask=mk), rtol=1e-4)
            else:
                assert np.isnan(scores[t, methods.RANKAGG_METHODS.index("leep"), m])
        # Only two of four PTMs have a source head: Copeland over hscore and logme only.
        used = [methods.RANKAGG_METHODS.index("hscore"), methods.RANKAGG_METHODS.index("logme")]
        np.testing.assert_allclose(agg[t], copeland_ref(scores[t, used]))


def test_rules():
    assert methods.hscore_variant("auto", 100, 1280) == "regularized"
    assert methods.hscore_variant("auto", 20000, 1280) == "plain"
    assert methods.hscore_variant("plain", 10, 1280) == "plain"
    with pytest.raises(ValueError):
        methods.hscore_variant("shrunk", 10, 10)


def test_cache_resume_and_fingerprint(setup, tmp_path):
    bank, config = setup
    cache = str(tmp_path / "labels")
    first = label.label_tasks(bank, config, modality="image", cache_dir=cache, progress=False)
    assert first["rank_labels"].shape == (10, 4)
    assert first["specific_centres"].shape[:2] == (10, 4)
    chunks = sorted(f for f in os.listdir(cache) if f.startswith("chunk_"))
    assert chunks == ["chunk_0000000.npz", "chunk_0000004.npz", "chunk_0000008.npz"]
    os.remove(os.path.join(cache, chunks[1]))                       # "interrupted" run
    again = label.label_tasks(bank, config, modality="image", cache_dir=cache, progress=False)
    for k in ("metric_scores", "rank_labels", "psi_centres"):
        np.testing.assert_array_equal(np.nan_to_num(first[k]), np.nan_to_num(again[k]))
    other = ml_collections.ConfigDict(config.to_dict())
    other.data.seed = 99
    with pytest.raises(ValueError, match="other settings"):
        label.label_tasks(bank, other, modality="image", cache_dir=cache, progress=False)


def test_fused_logme_hscore_n_le_d_matches_references():
    """N <= D: LogME and shrinkage H-Score from one shared Gram == float64 references.

    Padded tasks (ReLU features with an offset, N_real < N <= D), a class absent from
    one task; the fused jit runs three times on fresh data (it must not deadlock).
    """
    from tests import reference_metrics as ref
    from spider_jax.sampler import Zoo

    rng = np.random.default_rng(0)
    t, m, n, d, c = 3, 2, 30, 40, 5
    zoo = Zoo(models=("a", "b"), dims=(d, d), has_source_head=(False, False),
              num_source_classes=(0, 0), psi_dim=4, modality="image")
    for _ in range(3):
        labels = rng.integers(0, c, size=(t, n)).astype(np.int32)
        labels[:, :c] = np.arange(c)
        labels[1][labels[1] == 3] = 2                      # class 3 absent from task 1
        mask = np.ones((t, n), bool)
        mask[0, 25:] = False
        mask[2, 28:] = False
        feats = [(np.maximum(rng.normal(size=(t, n, d)), 0.0) + 2.0 * j).astype(np.float32)
                 for j in range(m)]
        batch = dict(features=feats, labels=labels, example_mask=mask)
        scores, _ = label.label_batch(batch, zoo, num_classes=c, hscore="regularized",
                                      methods=("hscore", "logme"))
        for i in range(t):
            keep = mask[i]
            y = labels[i][keep]
            for j in range(m):
                f = feats[j][i][keep].astype(np.float64)
                np.testing.assert_allclose(scores[i, methods.RANKAGG_METHODS.index("logme"), j],
                                           ref.logme_ref(f, y, c), rtol=1e-4)
                np.testing.assert_allclose(scores[i, methods.RANKAGG_METHODS.index("hscore"), j],
                                           ref.regularized_hscore_ref(f, y, c), rtol=1e-4,
                                           atol=1e-5)
