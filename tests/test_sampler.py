"""Task sampler: fixed shapes, masks, class centres, determinism (synthetic bank)."""

import numpy as np
import pytest

from spider_jax import bank as bank_lib
from spider_jax import synthetic
from spider_jax.sampler import TaskSampler, Zoo


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    root = synthetic.make_bank(str(tmp_path_factory.mktemp("b") / "bank"), num_models=4,
                               num_datasets=7, num_downstream=2, classes_per_dataset=(3, 5, 4),
                               examples_per_class=12, dims=(6, 9, 4, 9), psi_dim=5,
                               source_head_every=2, seed=3)
    return bank_lib.open_bank(root)


def _sampler(bank, **kw):
    zoo = Zoo.from_bank(bank.subset("image"), "image")
    args = dict(seed=7, min_datasets=2, max_datasets=4, max_classes=9, examples_per_class=5)
    args.update(kw)
    return TaskSampler(bank.subset("image"), zoo, **args), zoo


def test_zoo(bank):
    _, zoo = _sampler(bank)
    assert zoo.dims == (6, 9, 4, 9) and zoo.max_dim == 9
    assert zoo.has_source_head == (True, False, True, False)
    assert Zoo.from_json(zoo.to_json()) == zoo


def test_spec_mixes_2_to_4_train_datasets_and_is_deterministic(bank):
    s, _ = _sampler(bank)
    pool = set(bank.pool("train"))
    for i in range(20):
        spec = s.spec(i)
        assert 2 <= len(spec.datasets) <= 4 and set(spec.datasets) <= pool
        assert set(spec.class_dataset) <= set(spec.datasets)
        assert spec.num_classes <= 9
        assert all(1 <= len(r) <= 5 for r in spec.class_rows)
        again = s.spec(i)
        assert again.class_dataset == spec.class_dataset
        assert all(np.array_equal(a, b) for a, b in zip(again.class_rows, spec.class_rows))
    s2, _ = _sampler(bank, seed=8)
    assert any(s2.spec(i).class_dataset != s.spec(i).class_dataset for i in range(5))


def test_materialize_shapes_masks_and_centres(bank):
    s, zoo = _sampler(bank)
    specs = [s.spec(i) for i in range(3)]
    out = s.materialize(specs)
    c, n = s.max_classes, s.max_classes * 5
    assert out["psi_centres"].shape == (3, c, 5)
    assert out["specific_centres"].shape == (3, 4, c, 9)
    assert out["labels"].shape == (3, n) and out["example_mask"].shape == (3, n)
    assert [f.shape for f in out["features"]] == [(3, n, d) for d in zoo.dims]
    assert out["source_probs"][1] is None and out["source_probs"][0].shape[:2] == (3, n)
    for i, spec in enumerate(specs):
        assert out["class_mask"][i].sum() == spec.num_classes == out["num_classes"][i]
        assert out["example_mask"][i].sum() == spec.num_examples
        assert not out["example_mask"][i, spec.num_examples:].any()
        assert np.all(out["psi_centres"][i, spec.num_classes:] == 0)
        # Class centres are the class means of the bank rows, independently recomputed.
        for c_idx, (ds, rows) in enumerate(zip(spec.class_dataset, spec.class_rows)):
            np.testing.assert_allclose(out["psi_centres"][i, c_idx],
                                       np.asarray(bank.psi(ds), np.float64)[rows].mean(0), rtol=1e-5)
            np.testing.assert_allclose(out["specific_centres"][i, 2, c_idx, :4],
                                       np.asarray(bank.features("ptm02", ds), np.float64)[rows].mean(0),
                                       rtol=1e-5, atol=1e-6)
            assert np.all(out["specific_centres"][i, 2, c_idx, 4:] == 0)
            assert np.all(np.asarray(bank.labels(ds))[rows] == np.asarray(bank.labels(ds))[rows[0]])
        labels = out["labels"][i, :spec.num_examples]
        assert labels.min() == 0 and labels.max() == spec.num_classes - 1


def test_few_shot_and_downstream(bank):
    s, _ = _sampler(bank, examples_per_class=2, max_classes=100)
    spec = s.spec(0)
    assert all(len(r) == 2 for r in spec.class_rows)
    ds = bank.pool("downstream")[0]
    d = s.downstream_spec(ds, max_examples_per_class=4)
    assert d.num_classes == bank.dataset_info(ds)["num_classes"]
    assert all(len(r) == 4 for r in d.class_rows)


def test_bad_arguments(bank):
    with pytest.raises(ValueError):
        _sampler(bank, min_datasets=3, max_datasets=2)
    with pytest.raises(ValueError):
        _sampler(bank, max_classes=1)
    s, _ = _sampler(bank)
    with pytest.raises(ValueError, match="padding"):
        s.materialize([s.spec(0)], num_classes=1)


def test_varied_classes_and_shots_and_dataset_pool(bank):
    s, _ = _sampler(bank, min_classes=2, max_classes=6, examples_per_class=5,
                    min_examples_per_class=2, datasets=list(bank.subset("image").datasets),
                    min_datasets=1, max_datasets=2)
    counts, shots, seen = set(), set(), set()
    for i in range(60):
        spec = s.spec(i)
        counts.add(spec.num_classes)
        shots.add(max(len(r) for r in spec.class_rows))
        seen |= set(spec.datasets)
        assert 2 <= spec.num_classes <= 6 and 1 <= len(spec.datasets) <= 2
        assert all(1 <= len(r) <= 5 for r in spec.class_rows)
    assert len(counts) >= 3 and len(shots) >= 3
    assert seen & set(bank.pool("downstream"))          # every dataset, downstream too
    with pytest.raises(ValueError, match="min_classes"):
        _sampler(bank, min_classes=20, max_classes=9)
    with pytest.raises(ValueError, match="not in the bank"):
        _sampler(bank, datasets=["nope"])
