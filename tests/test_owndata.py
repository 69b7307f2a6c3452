"""rank --data: an image folder / a CSV or JSONL of texts ranked by the zoo's own adapters.

A tiny extraction zoo (tests/owndata_zoo.py: NumPy encoders, a two-tap network) builds
a bank, a scorer is trained on it for a few steps, and the tests rank data the test
writes (PNGs rendered from scikit-learn digits, templated sentences). Expected scores
come from the scorer applied to psi features computed here by the encoder functions
themselves (not through the extraction pipeline).
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

from spider_jax import owndata, rank, train
from spider_jax.extract import pipeline
from spider_jax.ranker import Ranker, Task
from tests import owndata_zoo as Z
from tests.ranker_fixtures import make_ranker


def _config(bank_dir):
    from configs import smoke

    c = smoke.get_config()
    c.bank_dir = bank_dir
    c.synthetic = {"enabled": False}
    c.data.num_train_tasks = 16
    c.data.max_classes = 10
    c.data.examples_per_class = 5
    c.data.max_datasets = 2
    c.label.chunk_size = 8
    c.model.d = 16
    c.train.batch_size = 8
    c.train.num_steps = 4
    c.train.max_specific = 2
    c.eval.max_examples_per_class = 10
    return c


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("owndata")
    bank = str(root / "bank")
    models, psi, sources = Z.get_zoo()
    pipeline.build_bank(bank, models, psi, sources, workers=1, progress=False,
                        info={"zoo": "tests.owndata_zoo:get_zoo"})
    work = str(root / "work")
    train.train_and_evaluate(_config(bank), work)
    return work


def _png_folder(path, classes=(3, 7, 8), per_class=5):
    images, target = Z.digits_images()
    items, labels = [], []
    for c in classes:
        os.makedirs(path / f"digit{c}", exist_ok=True)
        for i in np.flatnonzero(target == c)[-per_class:]:
            Image.fromarray(images[i]).save(path / f"digit{c}" / f"{i}.png")
            items.append(images[i])
            labels.append(f"digit{c}")
    return items, labels


def _expected(ranker, psi_fn, items, labels):
    """The scorer on psi features computed directly (stored as float16 like a bank)."""
    psi = psi_fn(items).astype(np.float16).astype(np.float32)
    classes = sorted(set(labels))
    y = np.asarray([classes.index(v) for v in labels])
    return ranker.rank(Task.from_features(psi, y)).scores


def test_workdir_records_the_extraction_zoo(trained):
    with open(os.path.join(trained, "image", "zoo.json")) as fh:
        spec = json.load(fh)["extraction"]
    assert spec["zoo"] == "tests.owndata_zoo:get_zoo"
    assert spec["psi"] == {"name": "image_psi", "dim": 64}
    assert spec["members"] == {"pix4": "pix4", "hist": "hist", "twotap@rows": "twotap",
                               "twotap@cols": "twotap"}


def test_rank_image_folder_then_cached(trained, tmp_path):
    items, labels = _png_folder(tmp_path / "pets")
    cache = str(tmp_path / "cache")
    Z.CALLS.clear()
    first = rank.run(trained, data=str(tmp_path / "pets"), cache_dir=cache, progress=False)
    assert Z.CALLS == {"image_psi": 1}             # k = 0: psi only, no ranked network
    assert set(first.models) == {"pix4", "hist", "twotap@rows", "twotap@cols"}
    assert first.task == "pets"
    ranker = Ranker.from_workdir(trained, modality="image")
    np.testing.assert_allclose(first.scores, _expected(ranker, Z.image_psi, items, labels),
                               rtol=1e-5, atol=1e-5)
    second = rank.run(trained, data=str(tmp_path / "pets"), cache_dir=cache, progress=False)
    assert Z.CALLS == {"image_psi": 1}             # features read back, nothing re-encoded
    np.testing.assert_array_equal(first.scores, second.scores)


def test_rank_k_runs_only_the_top_networks(trained, tmp_path):
    items, labels = _png_folder(tmp_path / "imgs")
    ranker = Ranker.from_workdir(trained, modality="image")
    Z.CALLS.clear()
    res = ranker.rank_data(items, labels, k=1, cache_dir=str(tmp_path / "c"), progress=False)
    top = res.models[int(np.argmax(res.coarse_scores))]
    network = {"twotap@rows": "twotap", "twotap@cols": "twotap"}.get(top, top)
    assert Z.CALLS == {"image_psi": 1, network: 1}
    assert res.reranked.sum() == 1 and res.reranked[res.models.index(top)]
    # all four members: every network runs once, the two-tap network once for both taps
    Z.CALLS.clear()
    res = ranker.rank_data(items, labels, k=4, cache_dir=str(tmp_path / "c"), progress=False)
    assert Z.CALLS == {n: 1 for n in ("pix4", "hist", "twotap") if n != network}
    assert res.reranked.all()


def test_rank_csv_and_jsonl_texts(trained, tmp_path):
    texts, topics = [], []
    for t in ("sport", "weather", "tech"):
        texts += Z.sentences(t, 6, seed=5)
        topics += [t] * 6
    with open(tmp_path / "reviews.csv", "w", newline="") as fh:
        import csv
        w = csv.DictWriter(fh, ["sentence", "topic"])
        w.writeheader()
        w.writerows({"sentence": s, "topic": t} for s, t in zip(texts, topics))
    with open(tmp_path / "reviews.jsonl", "w") as fh:
        fh.writelines(json.dumps({"sentence": s, "topic": t}) + "\n" for s, t in zip(texts, topics))
    cache = str(tmp_path / "cache")
    a = rank.run(trained, data=str(tmp_path / "reviews.csv"), text_field="sentence",
                 label_field="topic", cache_dir=cache, progress=False)
    assert set(a.models) == {"words", "counts"}
    ranker = Ranker.from_workdir(trained, modality="text")
    np.testing.assert_allclose(a.scores, _expected(ranker, Z.text_psi, texts, topics),
                               rtol=1e-5, atol=1e-5)
    Z.CALLS.clear()
    b = rank.run(trained, data=str(tmp_path / "reviews.jsonl"), text_field="sentence",
                 label_field="topic", cache_dir=cache, k=2, progress=False)
    assert Z.CALLS == {"words": 1, "counts": 1}    # same content: psi came from the cache
    np.testing.assert_array_equal(a.coarse_scores, b.coarse_scores)
    with pytest.raises(ValueError, match="lacks 'text' or 'label'"):
        rank.run(trained, data=str(tmp_path / "reviews.csv"), cache_dir=cache, progress=False)


def test_bad_data_is_named(trained, tmp_path):
    _png_folder(tmp_path / "one", classes=(4,))
    with pytest.raises(ValueError, match="at least two class"):
        rank.run(trained, data=str(tmp_path / "one"), progress=False)
    _png_folder(tmp_path / "broken", classes=(1, 2), per_class=2)
    (tmp_path / "broken" / "digit1" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"(?s)unreadable.*digit1/bad\.png"):
        rank.run(trained, data=str(tmp_path / "broken"), progress=False)
    ranker = Ranker.from_workdir(trained, modality="text")
    with pytest.raises(ValueError, match="single class"):
        ranker.rank_data(["a b", "c d"], ["x", "x"], progress=False)
    with pytest.raises(ValueError, match="needs str examples"):
        ranker.rank_data([np.zeros((4, 4), np.uint8)] * 2, ["x", "y"], progress=False)


def test_workdir_without_extraction_zoo_explains():
    r = make_ranker()
    with pytest.raises(ValueError, match="not built by an extraction zoo"):
        r.rank_data(["a", "b"], [0, 1], progress=False)


def test_missing_wheel_names_the_pip_line(monkeypatch, tmp_path):
    from spider_jax.extract import wheelzoo

    monkeypatch.setitem(wheelzoo.PINS, "tokenlearn-static-model", "0.0.0")   # as if missing
    spec = {"zoo": "wheel", "subset": "full", "modality": "text",
            "psi": {"name": "all_minilm_l6", "dim": 384}, "members": {"tokenlearn": "tokenlearn"}}
    feats = owndata.DataFeatures(spec, ["a b", "c d"], np.array([0, 1]), ["x", "y"],
                                 cache_dir=str(tmp_path), progress=False)
    with pytest.raises(ValueError, match=r"(?s)tokenlearn.*pip install --no-deps"):
        feats.features("tokenlearn")
