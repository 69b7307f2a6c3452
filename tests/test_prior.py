"""Prior + residual (issue 11 item 4): gate calibration by hand, frozen parameters, config."""

import jax
import numpy as np
import optax
import pytest

from spider_jax import groundtruth, model as model_lib, prior
from configs import default


class _Bank:
    """Two training datasets of two classes, one example per class, in 2-D psi space."""

    def __init__(self, points):
        self.points = points            # {dataset: [C, 2]}

    def pool(self, name):
        return list(self.points) if name == "train" else []

    def labels(self, ds, split="train"):
        return np.arange(len(self.points[ds]))

    def dataset_info(self, ds):
        return {"num_classes": len(self.points[ds])}

    def psi(self, ds, split="train"):
        return np.asarray(self.points[ds], np.float32)


def test_gate_reference_and_gate_by_hand():
    bank = _Bank({"a": [[0, 0], [1, 0]], "b": [[10, 0], [12, 0]]})
    ref, scale = prior.gate_reference(bank, num_refs=6, quantile=0.5)
    # leave-own-dataset-out nearest distances: 10, 9, 9, 11 -> median 9.5
    assert scale == pytest.approx(9.5)
    assert ref.shape == (6, 2)
    assert {tuple(r) for r in ref} == {(0, 0), (1, 0), (10, 0), (12, 0)}
    tasks = np.array([[[0, 0], [1, 0]], [[50, 0], [0, 0]], [[50, 0], [50, 0]]], np.float32)
    mask = np.array([[True, True], [True, False], [True, True]])
    g = np.asarray(model_lib.residual_gate(tasks, mask, ref, scale))
    # distances 0, 38 (padding class ignored), 38 -> exp(-max(0, d / 9.5 - 1))
    np.testing.assert_allclose(g, [1.0, np.exp(-3.0), np.exp(-3.0)], rtol=1e-5)
    with pytest.raises(ValueError, match="gate_quantile"):
        prior.gate_reference(bank, num_refs=4, quantile=0.0)


def test_gate_params_are_frozen_by_the_optimizer():
    model = model_lib.SpiderEnsemble(model_dims=(3, 4), d=8, members=2, prior_residual=True,
                                     gate_refs=3)
    psi, cm = np.ones((2, 2, 5), np.float32), np.ones((2, 2), bool)
    params = model.init(jax.random.PRNGKey(0), psi, cm)["params"]
    ref = np.arange(15, dtype=np.float32).reshape(3, 5)
    params = prior.with_gate(params, ref, 2.5)
    np.testing.assert_array_equal(params["members"]["gate_ref"][1], ref)
    labels = prior.param_labels(params)
    assert labels["members"]["gate_ref"] == "frozen" and labels["members"]["prior"] == "train"
    tx = optax.multi_transform({"train": optax.adam(0.1), "frozen": optax.set_to_zero()},
                               prior.param_labels)
    loss = lambda p: model.apply({"params": p}, psi * 3.0, cm).sum() \
        + sum(jax.numpy.sum(x) for x in jax.tree.leaves(p))   # noqa: E731
    grads = jax.grad(loss)(params)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert float(np.abs(updates["members"]["gate_ref"]).max()) == 0.0
    assert float(np.abs(updates["members"]["gate_scale"]).max()) == 0.0
    assert float(np.abs(updates["members"]["prior"]).max()) > 0.0


def test_config_defaults_are_the_paper():
    config = default.get_config()
    assert config.label.supervision == "rankagg"
    assert not config.model.prior_residual and config.ensemble.members == 1
    assert tuple(config.label.probe_alphas) == groundtruth.DEFAULT_ALPHAS
    model = model_lib.make_scorer(config, (4, 5))
    assert type(model) is model_lib.SpiderScorer and not model.prior_residual


class _GtBank:
    """A bank whose pools hold ground truth in their own model order (one lacks a PTM)."""

    def __init__(self, gt, pools):
        self.gt, self.pools = gt, pools

    def pool(self, name):
        return [d for d, p in self.pools.items() if p == name]

    def groundtruth(self, ds):
        return self.gt.get(ds)


def test_zoo_prior_is_the_mean_training_accuracy_in_zoo_order():
    gt = {"a": {"models": ["m1", "m0", "m2"], "mean": np.array([0.5, 0.9, 0.1])},
          "b": {"models": ["m0", "m1", "m2"], "mean": np.array([0.7, 0.3, 0.2])},
          "c": {"models": ["m0", "m1"], "mean": np.array([0.0, 0.0])},       # lacks m2
          "d": {"models": ["m0", "m1", "m2"], "mean": np.array([1.0, 1.0, 1.0])}}
    bank = _GtBank(gt, {"a": "train", "b": "train", "c": "train", "d": "downstream",
                        "e": "train"})                                    # e: no ground truth
    out = prior.zoo_prior(bank, ["m0", "m1", "m2"])
    assert out["datasets"] == ["a", "b"]
    np.testing.assert_allclose(out["accuracy"], [(0.9 + 0.7) / 2, (0.5 + 0.3) / 2,
                                                 (0.1 + 0.2) / 2])
    np.testing.assert_allclose(prior.prior_vector(out, ["m2", "m0"]), [0.15, 0.8])
    with pytest.raises(ValueError, match="no accuracy"):
        prior.prior_vector(out, ["m0", "new"])
    assert prior.prior_vector(None, ["m0"]) is None
    assert prior.zoo_prior(_GtBank({}, {"a": "train"}), ["m0"]) is None


def test_anchored_rejects_bad_weights_and_shapes():
    with pytest.raises(ValueError, match=">= 0"):
        prior.anchored(np.zeros(3), np.zeros(3), -1.0)
    with pytest.raises(ValueError, match=">= 0"):
        prior.anchored(np.zeros(3), np.zeros(3), float("nan"))
    with pytest.raises(ValueError, match="shape"):
        prior.anchored(np.zeros(4), np.zeros((2, 3)), 1.0)
