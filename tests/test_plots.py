"""Tests for spider_jax.plots: sampled-task centres, tau_w in the scatter, PNGs written."""

import matplotlib.image as mpimg
import numpy as np
import pytest
import scipy.stats

from spider_jax import bank as bank_lib
from spider_jax import plots
from spider_jax import synthetic
from tests.ranker_fixtures import make_ranker


@pytest.fixture(scope="module")
def bank_and_ranker(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bank"))
    synthetic.make_bank(root, num_models=4, num_datasets=4, num_downstream=2,
                        classes_per_dataset=(3, 4), examples_per_class=6, psi_dim=10,
                        dims=(5, 6, 4, 7), seed=0)
    bank = bank_lib.open_bank(root)
    ranker = make_ranker(dims=(5, 6, 4, 7), names=bank.models, psi_dim=10, max_classes=6)
    return bank, ranker


def _check_png(path):
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert float(img[..., :3].std()) > 0.01          # not a blank canvas


def test_sample_dataset_tasks_first_is_whole_dataset():
    rng = np.random.default_rng(0)
    psi = rng.normal(size=(30, 4))
    labels = np.repeat([2, 5, 9], 10)
    centres, mask = plots.sample_dataset_tasks(psi, labels, num_tasks=3, max_classes=5,
                                               examples_per_class=4, rng=rng)
    assert centres.shape == (3, 5, 4) and mask.shape == (3, 5)
    np.testing.assert_array_equal(mask[0], [True, True, True, False, False])
    for j, c in enumerate([2, 5, 9]):
        np.testing.assert_allclose(centres[0, j], psi[labels == c].mean(0), rtol=1e-5)
    assert (mask[1:].sum(1) >= 2).all()


@pytest.mark.parametrize("protocol,label", [
    ("linear-probe transfer accuracy (not fine-tuning): ridge CV",
     "linear-probe transfer accuracy"),
    ("fine-tuned accuracy, 30 epochs", "fine-tuned transfer accuracy"),
    ("synthetic: mean class separability", "ground-truth transfer score (synthetic bank)"),
])
def test_truth_axis_label(tmp_path, protocol, label):
    bank_lib.write_groundtruth(str(tmp_path), {}, protocol=protocol)

    class _Bank:
        root = str(tmp_path)

    assert plots.truth_axis_label(_Bank()) == label


def test_scatter_points_and_png(bank_and_ranker, tmp_path):
    bank, ranker = bank_and_ranker
    points = plots.scatter_points(ranker, bank, bank.pool("downstream"), k=0)
    assert [p["dataset"] for p in points] == bank.pool("downstream")
    for p in points:
        gt = bank.groundtruth(p["dataset"])
        np.testing.assert_allclose(p["truth"], gt["mean"])
        want = scipy.stats.weightedtau(p["truth"], p["pred"], rank=None).correlation
        assert p["tau_w"] == pytest.approx(want, abs=1e-9)
    label = plots.truth_axis_label(bank)
    assert "synthetic" in label
    path = plots.draw_scatter(points, str(tmp_path / "scatter.png"), xlabel=label)
    _check_png(path)


def test_spider_charts_png(bank_and_ranker, tmp_path):
    bank, ranker = bank_and_ranker
    clusters = {"a": bank.datasets[:2], "b": bank.datasets[2:3], "c": bank.datasets[3:]}
    values = plots.cluster_similarity(ranker, bank, clusters, tasks_per_dataset=3)
    assert values.shape == (len(bank.models), 3) and np.all(np.isfinite(values))
    # The whole-dataset task alone (tasks_per_dataset=1) is the ranker's own k=0 score.
    one = plots.cluster_similarity(ranker, bank, {"b": bank.datasets[2:3]}, tasks_per_dataset=1)
    res = ranker.rank_bank_dataset(bank, bank.datasets[2])
    np.testing.assert_allclose(one[:, 0], res.scores, rtol=1e-4, atol=1e-5)
    path = plots.draw_spider_charts(bank.models, list(clusters), values,
                                    str(tmp_path / "spider.png"))
    _check_png(path)
    with pytest.raises(ValueError, match="values shape"):
        plots.draw_spider_charts(bank.models, ["a"], values, str(tmp_path / "x.png"))


def test_bank_zoo_must_match_checkpoint(bank_and_ranker):
    bank, _ = bank_and_ranker
    other = make_ranker(dims=(5, 6, 4, 7), names=("a", "b", "c", "d"), psi_dim=10, max_classes=6)
    with pytest.raises(ValueError, match="zoo differs from the checkpoint"):
        other.rank_bank_dataset(bank, bank.datasets[0])
    wrong_dims = make_ranker(dims=(5, 6, 4, 8), names=bank.models, psi_dim=10, max_classes=6)
    with pytest.raises(ValueError, match="feature dims differ"):
        wrong_dims.rank_bank_dataset(bank, bank.datasets[0])
