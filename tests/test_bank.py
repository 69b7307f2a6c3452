"""Feature bank: round trip, resumable writer, and every validation error names its file."""
import json
import os

import numpy as np
import pytest

from spider_jax import bank


def _make(root, *, with_psi=True):
    rng = np.random.default_rng(0)
    psi = {"text": {"name": "psi_t", "dim": 4}, "image": {"name": "psi_i", "dim": 3}} if with_psi else None
    w = bank.BankWriter(root, psi=psi)
    w.add_model("img_a", dim=5, modality="image", has_source_head=True, num_source_classes=7,
                description="image model")
    w.add_model("txt_a", dim=6, modality="text")
    w.add_model("txt_b", dim=2, modality="text")
    w.add_dataset("imgs", modality="image", class_names=["a", "b", "c"], pool="train",
                  source="unit test", licence="CC0")
    w.add_dataset("texts", modality="text", class_names=["x", "y"], pool="downstream")
    data = {}
    for ds, n, c in (("imgs", 9, 3), ("texts", 8, 2)):
        labels = np.arange(n) % c
        w.write_labels(ds, "train", labels)
        data[ds, "labels"] = labels
    for model, ds, dim in (("img_a", "imgs", 5), ("txt_a", "texts", 6), ("txt_b", "texts", 2)):
        n = 9 if ds == "imgs" else 8
        f = rng.normal(size=(n, dim)).astype(np.float16)
        w.write_features(model, ds, "train", f)
        data[model, ds] = f
    probs = rng.dirichlet(np.ones(7), size=9).astype(np.float32)
    w.write_source_probs("img_a", "imgs", "train", probs)
    data["probs"] = probs
    if with_psi:
        for ds, n, dim in (("imgs", 9, 3), ("texts", 8, 4)):
            p = rng.normal(size=(n, dim)).astype(np.float32)
            w.write_psi(ds, "train", p)
            data["psi", ds] = p
    w.close()
    return data


def test_round_trip(tmp_path):
    data = _make(tmp_path)
    b = bank.open_bank(tmp_path)
    assert b.models == ["img_a", "txt_a", "txt_b"]
    assert b.datasets == ["imgs", "texts"]
    assert b.model_info("img_a")["num_source_classes"] == 7
    info = b.dataset_info("imgs")
    assert info["num_classes"] == 3 and info["splits"] == {"train": 9}
    assert info["source"] == "unit test" and info["licence"] == "CC0"
    lab = b.labels("imgs")
    assert lab.dtype == np.int32 and isinstance(lab, np.memmap)
    np.testing.assert_array_equal(lab, data["imgs", "labels"])
    np.testing.assert_array_equal(b.features("txt_a", "texts"), data["txt_a", "texts"])
    assert b.features("txt_a", "texts").dtype == np.float16
    np.testing.assert_array_equal(b.source_probs("img_a", "imgs"), data["probs"])
    np.testing.assert_array_equal(b.psi("texts"), data["psi", "texts"])
    with pytest.raises(ValueError, match="no source head"):
        b.source_probs("txt_a", "texts")
    t = b.subset("text")
    assert t.models == ["txt_a", "txt_b"] and t.datasets == ["texts"]
    assert list(t.manifest["psi"]) == ["text"]
    assert b.pool("train") == ["imgs"] and b.pool("downstream") == ["texts"]
    assert b.models_for("texts") == ["txt_a", "txt_b"]
    assert b.groundtruth("texts") is None
    with pytest.raises(ValueError, match="unknown model"):
        b.features("nope", "texts")
    with pytest.raises(ValueError, match="no split"):
        b.labels("texts", "test")


def test_manifest_layout_is_documented_json(tmp_path):
    _make(tmp_path)
    with open(tmp_path / "manifest.json") as f:
        m = json.load(f)
    assert m["format_version"] == 1
    assert m["models"]["txt_b"] == {"dim": 2, "modality": "text", "has_source_head": False,
                                    "num_source_classes": 0, "description": ""}
    assert m["datasets"]["texts"]["pool"] == "downstream"
    assert m["psi"]["text"] == {"name": "psi_t", "dim": 4}
    assert (tmp_path / "features" / "txt_a" / "texts__train.npy").exists()
    assert (tmp_path / "labels" / "imgs__train.npy").exists()
    assert (tmp_path / "source_probs" / "img_a" / "imgs__train.npy").exists()
    assert (tmp_path / "psi" / "imgs__train.npy").exists()


def test_groundtruth_round_trip(tmp_path):
    _make(tmp_path)
    bank.write_groundtruth(tmp_path, {"texts": {"models": ["txt_a", "txt_b"],
                                                "mean": np.array([0.5, 0.75]),
                                                "std": [0.1, 0.2], "headline": False}},
                           protocol="linear-probe transfer")
    gt = bank.open_bank(tmp_path).groundtruth("texts")
    assert gt["models"] == ["txt_a", "txt_b"] and gt["headline"] is False
    np.testing.assert_allclose(gt["mean"], [0.5, 0.75])
    np.testing.assert_allclose(gt["std"], [0.1, 0.2])
    with pytest.raises(ValueError, match="lengths differ"):
        bank.write_groundtruth(tmp_path, {"x": {"models": ["a"], "mean": [1, 2], "std": [1]}})


def test_writer_resumes_and_has_array(tmp_path):
    w = bank.BankWriter(tmp_path)
    w.add_model("m", dim=2, modality="text")
    w.add_dataset("d", modality="text", class_names=["a", "b"], pool="train")
    w.write_labels("d", "train", [0, 1, 1])
    rel = bank.features_path("m", "d", "train")
    assert not w.has_array(rel)
    del w  # interrupted: no close()
    w = bank.BankWriter(tmp_path)
    assert w.manifest["datasets"]["d"]["splits"] == {"train": 3}
    w.add_model("m", dim=2, modality="text")  # idempotent
    w.write_features("m", "d", "train", np.ones((3, 2)))
    assert w.has_array(rel)
    w.close()
    assert bank.open_bank(tmp_path).features("m", "d").dtype == np.float32
    with pytest.raises(ValueError, match="already declared"):
        bank.BankWriter(tmp_path).add_model("m", dim=3, modality="text")
    with pytest.raises(ValueError, match="psi"):
        bank.BankWriter(tmp_path, psi={"text": {"name": "a", "dim": 2}})
        bank.BankWriter(tmp_path, psi={"text": {"name": "b", "dim": 2}})


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    w = bank.BankWriter(tmp_path)
    w.add_model("m", dim=2, modality="text")
    w.add_dataset("d", modality="text", class_names=["a", "b"], pool="train")
    w.write_labels("d", "train", [0, 1])

    def boom(f, arr, allow_pickle=False):
        f.write(b"\x93NUMPY partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        w.write_features("m", "d", "train", np.ones((2, 2)))
    monkeypatch.undo()
    assert not w.has_array(bank.features_path("m", "d", "train"))
    leftovers = [f for _, _, fs in os.walk(tmp_path) for f in fs if f.startswith(".tmp-")]
    assert leftovers == []


@pytest.mark.parametrize("call, match", [
    (lambda w: w.write_labels("texts", "train", [0, 2]), "out of range"),
    (lambda w: w.write_labels("texts", "train", [0.0, 1.0]), "integer"),
    (lambda w: w.write_features("txt_a", "texts", "train", np.zeros((8, 5))), "shape"),
    (lambda w: w.write_features("txt_a", "texts", "train", np.full((8, 6), np.nan)), "NaN"),
    (lambda w: w.write_features("txt_a", "texts", "test", np.zeros((8, 6))), "write_labels"),
    (lambda w: w.write_features("img_a", "texts", "train", np.zeros((8, 5))), "image"),
    (lambda w: w.write_features("zzz", "texts", "train", np.zeros((8, 5))), "not declared"),
    (lambda w: w.write_source_probs("txt_a", "texts", "train", np.zeros((8, 5))), "source head"),
    (lambda w: w.add_model("bad__name", dim=2, modality="text"), "must not contain"),
    (lambda w: w.add_model("ok", dim=2, modality="audio"), "modality"),
    (lambda w: w.add_dataset("ok", modality="text", class_names=["a"], pool="train"), "2 classes"),
    (lambda w: w.add_dataset("ok", modality="text", class_names=["a", "b"], pool="x"), "pool"),
])
def test_writer_rejects_bad_input(tmp_path, call, match):
    _make(tmp_path)
    with pytest.raises(ValueError, match=match):
        call(bank.BankWriter(tmp_path))


def _overwrite(path, array):
    with open(path, "wb") as f:
        np.save(f, array)


@pytest.mark.parametrize("corrupt, match", [
    (lambda r: os.remove(r / "features/txt_b/texts__train.npy"), "missing array file"),
    (lambda r: os.remove(r / "labels/imgs__train.npy"), "missing array file"),
    (lambda r: os.remove(r / "psi/texts__train.npy"), "missing array file"),
    (lambda r: os.remove(r / "source_probs/img_a/imgs__train.npy"), "missing array file"),
    (lambda r: os.truncate(r / "features/txt_a/texts__train.npy", 140), "truncated"),
    (lambda r: os.truncate(r / "features/txt_a/texts__train.npy", 20), "truncated"),
    (lambda r: _overwrite(r / "features/txt_a/texts__train.npy", np.zeros((8, 5), np.float16)), "shape"),
    (lambda r: _overwrite(r / "features/txt_a/texts__train.npy", np.zeros((7, 6), np.float16)), "shape"),
    (lambda r: _overwrite(r / "features/txt_a/texts__train.npy", np.zeros((8, 6), np.float64)), "dtype"),
    (lambda r: _overwrite(r / "features/txt_a/texts__train.npy",
                          np.full((8, 6), np.inf, np.float16)), "NaN or Inf"),
    (lambda r: _overwrite(r / "psi/imgs__train.npy", np.full((9, 3), np.nan, np.float32)), "NaN or Inf"),
    (lambda r: _overwrite(r / "labels/imgs__train.npy", np.arange(9, dtype=np.int32)), "out of range"),
    (lambda r: _overwrite(r / "labels/imgs__train.npy", -np.ones(9, dtype=np.int32)), "out of range"),
    (lambda r: _overwrite(r / "labels/imgs__train.npy", np.zeros(9, dtype=np.int64)), "dtype"),
    (lambda r: _overwrite(r / "labels/imgs__train.npy", np.array([{}] * 9, dtype=object)), "imgs__train"),
    (lambda r: os.remove(r / "manifest.json"), "missing manifest.json"),
    (lambda r: (r / "manifest.json").write_text("{not json"), "cannot parse manifest"),
    (lambda r: (r / "groundtruth.json").write_text("[1"), "groundtruth.json"),
])
def test_open_names_the_bad_file(tmp_path, corrupt, match):
    _make(tmp_path)
    corrupt(tmp_path)
    with pytest.raises(ValueError, match=match) as err:
        bank.open_bank(tmp_path)
    if "manifest" not in match and "groundtruth" not in match:
        assert "__train.npy" in str(err.value)


def test_open_without_validation_is_lazy(tmp_path):
    _make(tmp_path)
    os.remove(tmp_path / "features/txt_b/texts__train.npy")
    b = bank.open_bank(tmp_path, validate=False)
    with pytest.raises(ValueError, match="features/txt_b/texts__train.npy"):
        b.features("txt_b", "texts")


def test_bank_without_psi_is_complete(tmp_path):
    _make(tmp_path, with_psi=False)
    b = bank.open_bank(tmp_path)
    with pytest.raises(ValueError, match="no psi encoder"):
        b.psi("texts")
