"""A tiny extraction zoo for the rank --data / add_model tests (no heavy wheel).

``get_zoo()`` returns ``(models, psi, sources)`` like ``--zoo=tests.owndata_zoo:get_zoo``:
NumPy "encoders" of images (pixels, histogram, a two-tap network) and texts (hashed
words, simple counts), psi encoders for both modalities, and datasets made from
scikit-learn's bundled digits and from templated sentences. ``CALLS`` counts forward
passes per network (extraction runs inline in the tests), so tests can tell which
networks ran.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import zlib

import numpy as np

from spider_jax.extract import adapters as A
from spider_jax.extract import sources as S

CALLS: collections.Counter = collections.Counter()

TOPICS = {
    "sport": "goal match team score player league coach stadium ball win".split(),
    "food": "pizza bread soup cheese salad spicy sweet dinner taste cook".split(),
    "weather": "rain sunny cloud storm wind cold warm snow forecast humid".split(),
    "tech": "laptop phone code software chip network battery screen app cloud".split(),
}
FILLER = "the a is was very really today so and then".split()


def gray(batch, size: int) -> np.ndarray:
    """Images resized to ``size`` x ``size``, grey levels in [0, 1]: [B, size, size]."""
    return A.resize_images(batch, size).mean(axis=3)


def image_psi(batch) -> np.ndarray:
    return gray(batch, 8).reshape(len(batch), -1)


def _pix4(batch) -> np.ndarray:
    return gray(batch, 4).reshape(len(batch), -1)


def _hist(batch) -> np.ndarray:
    g = gray(batch, 8).reshape(len(batch), -1)
    return np.stack([np.histogram(x, bins=8, range=(0.0, 1.0))[0] / x.size for x in g])


def _hashed(text: str, dim: int, grams: str) -> np.ndarray:
    v = np.zeros(dim, np.float32)
    toks = text.lower().split() if grams == "words" else \
        [text.lower()[i:i + 3] for i in range(max(1, len(text) - 2))]
    for t in toks:
        v[zlib.crc32(t.encode()) % dim] += 1.0
    return v / max(1.0, float(np.linalg.norm(v)))


def text_psi(batch) -> np.ndarray:
    return np.stack([_hashed(t, 24, "chars") for t in batch])


def _words(batch) -> np.ndarray:
    return np.stack([_hashed(t, 12, "words") for t in batch])


def _counts(batch) -> np.ndarray:
    return np.asarray([[len(t) / 50, len(t.split()) / 10, sum(c in "aeiou" for c in t) / 20,
                        t.count(" the ") + 0.5] for t in batch], np.float32)


def _counted(name, fn):
    def run(batch):
        CALLS[name] += 1
        return fn(batch)
    return run


def function_adapter(name, modality, dim, fn) -> A.FunctionAdapter:
    return A.FunctionAdapter(name=name, modality=modality, dim=dim, batch_size=512,
                             factory=functools.partial(_counted, name, fn),
                             description=f"test encoder {name}", licence="CC0")


@dataclasses.dataclass
class TwoTap(A.MultiTapAdapter):
    """One 'forward pass' giving row means and column means of an 8 x 8 grey image."""

    def _load(self):
        pass

    def _encode_taps(self, batch):
        CALLS[self.name] += 1
        g = gray(batch, 8)
        return {"rows": g.mean(axis=2), "cols": g.mean(axis=1)}


def get_zoo():
    models = {
        "pix4": function_adapter("pix4", "image", 16, _pix4),
        "hist": function_adapter("hist", "image", 8, _hist),
        "twotap": TwoTap(name="twotap", modality="image", batch_size=512, outputs=(
            A.Tap("twotap@rows", "rows", 8), A.Tap("twotap@cols", "cols", 8))),
        "words": function_adapter("words", "text", 12, _words),
        "counts": function_adapter("counts", "text", 4, _counts),
    }
    psi = {"image": function_adapter("image_psi", "image", 64, image_psi),
           "text": function_adapter("text_psi", "text", 24, text_psi)}
    return models, psi, image_sources() + text_sources()


def digits_images():
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.round(d.images * (255.0 / 16.0)).astype(np.uint8), d.target


def image_sources():
    images, target = digits_images()
    tasks = []
    for name, classes, pool in (("digits_low", range(0, 5), "train"),
                                ("digits_high", range(5, 10), "train"),
                                ("digits_mid", range(2, 8), "train"),
                                ("digits_odd", (1, 3, 5, 7, 9), "downstream")):
        idx = np.concatenate([np.flatnonzero(target == c)[:12] for c in classes])
        remap = {c: i for i, c in enumerate(classes)}
        tasks.append(S.Task(name, idx, [remap[int(target[i])] for i in idx],
                            [str(c) for c in classes], pool))
    return [S.Source("digits", "image", images, tasks, "scikit-learn load_digits",
                     "CC BY 4.0")]


def sentences(topic: str, n: int, seed: int) -> list[str]:
    rng = np.random.default_rng([seed, zlib.crc32(topic.encode())])
    return [" ".join(rng.choice(TOPICS[topic] * 2 + FILLER, 7)) for _ in range(n)]


def text_sources():
    items, raw = [], []
    for t in TOPICS:
        items += sentences(t, 30, 0)
        raw += [t] * 30
    raw = np.asarray(raw)
    tasks = []
    for name, topics, pool in (("topics_abc", ("sport", "food", "weather"), "train"),
                               ("topics_bcd", ("food", "weather", "tech"), "train"),
                               ("topics_ad", ("sport", "tech"), "train"),
                               ("topics_all", tuple(TOPICS), "downstream")):
        idx = np.flatnonzero(np.isin(raw, topics))
        tasks.append(S.Task(name, idx, [topics.index(raw[i]) for i in idx], list(topics), pool))
    return [S.Source("topics", "text", items, tasks, "templated sentences (tests)", "CC0")]
