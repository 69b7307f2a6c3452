"""Probe supervision (issue 11 item 3): batched probe == float64 NumPy ridge CV per task and
PTM; the combination rules; the config switch."""

import os

import numpy as np
import pytest

from spider_jax import bank as bank_lib
from spider_jax import label, probe, synthetic
from spider_jax.methods import RANKAGG_METHODS
from configs import smoke
from tests.test_groundtruth import _ridge_cv_reference
from tests.reference_metrics import copeland_ref


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = synthetic.make_bank(str(tmp_path_factory.mktemp("b") / "bank"), num_models=3,
                               num_datasets=6, num_downstream=1, classes_per_dataset=(3, 4),
                               examples_per_class=12, dims=(6, 9, 6), psi_dim=5, seed=4)
    config = smoke.get_config()
    config.data.num_train_tasks = 8
    config.data.max_classes = 5
    config.data.examples_per_class = 7
    config.label.chunk_size = 4
    return bank_lib.open_bank(root), config


@pytest.mark.parametrize("backend", ["jax", "numpy"])
def test_probe_batch_matches_numpy_reference(setup, backend):
    bank, config = setup
    sub, zoo = label.zoo_for(bank, "image")
    sampler = label.make_sampler(sub, zoo, config)
    batch = sampler.materialize([sampler.spec(i) for i in range(4)])
    alphas = (1e-2, 1.0)
    got = probe.probe_batch(batch, zoo, num_classes=sampler.max_classes, folds=3, seeds=(0, 1),
                            alphas=alphas, backend=backend, workers=1)
    assert got.shape == (4, zoo.num_models)
    for t in range(4):
        n = int(batch["example_mask"][t].sum())
        y = batch["labels"][t, :n]
        c = int(batch["num_classes"][t])
        for m in range(zoo.num_models):
            x = batch["features"][m][t, :n]
            per_seed = [_ridge_cv_reference(x, y, c, probe.groundtruth.stratified_folds(y, 3, s),
                                            alphas) for s in (0, 1)]
            want = np.mean(per_seed, axis=(0, 1)).max()      # best alpha of the mean
            np.testing.assert_allclose(got[t, m], want, atol=1e-6)


def test_supervision_targets():
    rng = np.random.default_rng(0)
    t, m = 5, 4
    labels = {"rank_labels": rng.integers(0, 4, size=(t, m)).astype(np.float32),
              "probe_scores": rng.uniform(size=(t, m)).astype(np.float32),
              "metric_scores": rng.normal(size=(t, len(RANKAGG_METHODS), m)).astype(np.float32),
              "meta": {"copeland_methods": ["hscore", "logme"]}}
    config = smoke.get_config()
    np.testing.assert_array_equal(probe.supervision_targets(labels, config), labels["rank_labels"])
    config.label.supervision = "probe"
    np.testing.assert_array_equal(probe.supervision_targets(labels, config), labels["probe_scores"])
    config.label.supervision = "both"
    config.label.probe_weight = 0.25
    z = lambda a: (a - a.mean(1, keepdims=True)) / a.std(1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(probe.supervision_targets(labels, config),
                               0.75 * z(labels["rank_labels"]) + 0.25 * z(labels["probe_scores"]),
                               rtol=1e-5, atol=1e-6)
    config.label.combine = "copeland"
    cols = [RANKAGG_METHODS.index(a) for a in ("hscore", "logme")]
    want = [copeland_ref(np.concatenate([labels["metric_scores"][i, cols],
                                           labels["probe_scores"][i][None]]))
            for i in range(t)]
    np.testing.assert_allclose(probe.supervision_targets(labels, config), want)
    config.label.combine = "nope"
    with pytest.raises(ValueError, match="label.combine"):
        probe.supervision_targets(labels, config)
    config.label.supervision = "probes"
    with pytest.raises(ValueError, match="label.supervision"):
        probe.supervision_targets(labels, config)
    config.label.supervision = "probe"
    with pytest.raises(ValueError, match="probe labels"):
        probe.supervision_targets({"rank_labels": labels["rank_labels"]}, config)


def test_probe_cache_is_fingerprinted_and_resumable(setup, tmp_path):
    bank, config = setup
    config = config.copy_and_resolve_references()
    cache = str(tmp_path / "labels")
    plain = label.label_tasks(bank, config, modality="image", cache_dir=cache, progress=False)
    assert "probe_scores" not in plain
    config.label.supervision = "probe"
    config.label.probe_folds = 3
    first = label.label_tasks(bank, config, modality="image", cache_dir=cache, progress=False)
    np.testing.assert_array_equal(first["rank_labels"], plain["rank_labels"])  # chunks reused
    assert first["probe_scores"].shape == plain["rank_labels"].shape
    assert np.all((first["probe_scores"] >= 0) & (first["probe_scores"] <= 1))
    os.remove(os.path.join(cache, "probe_0000004.npz"))              # an interrupted run
    again = label.label_tasks(bank, config, modality="image", cache_dir=cache, progress=False)
    np.testing.assert_array_equal(again["probe_scores"], first["probe_scores"])
    config.label.probe_folds = 4
    with pytest.raises(ValueError, match="other settings"):
        label.label_tasks(bank, config, modality="image", cache_dir=cache, progress=False)


def test_probe_backend_switch_and_small_class_fallback(setup):
    """"auto" is the NumPy kernel on this CPU-only JAX; a class smaller than the fold count
    (which the NumPy kernel refuses) falls back to the jitted path, the same numbers."""
    bank, config = setup
    assert probe.probe_backend(config) == "numpy"
    config = config.copy_and_resolve_references()
    config.label.probe_backend = "jax"
    assert probe.probe_backend(config) == "jax"
    config.label.probe_backend = "gpu"
    with pytest.raises(ValueError, match="probe_backend"):
        probe.probe_backend(config)
    sub, zoo = label.zoo_for(bank, "image")
    sampler = label.make_sampler(sub, zoo, smoke.get_config())
    batch = sampler.materialize([sampler.spec(i) for i in range(2)])
    folds = int(np.bincount(batch["labels"][0][batch["example_mask"][0]]).min()) + 1
    kw = dict(num_classes=sampler.max_classes, folds=folds, seeds=(0,), alphas=(1.0,))
    np.testing.assert_array_equal(probe.probe_batch(batch, zoo, backend="numpy", **kw),
                                  probe.probe_batch(batch, zoo, backend="jax", **kw))
