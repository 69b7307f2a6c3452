"""Dataset sources: items (images or texts) plus one or more labelled tasks over them.

A :class:`Source` holds the raw items of one source dataset in a deterministic order
and the tasks defined on them; each :class:`Task` becomes one bank dataset (e.g. the
kaomoji source gives separate category, emotion, intent and subject tasks). Features
are computed once per item and shared by all tasks of the source.

Generic readers: scikit-learn's bundled digits, an image folder (``root/class/*.png``),
a CSV or JSONL table of texts and labels, and TensorFlow Datasets (``tfds`` with a local
``data_dir``; imported lazily and untested here, where TensorFlow is not installed).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from typing import Any, Sequence

import numpy as np


@dataclasses.dataclass
class Task:
    """One labelled task over a subset of a source's items (one bank dataset).

    Attributes:
      name: bank dataset name.
      indices: int64 [N] sorted positions into ``Source.items``.
      labels: int32 [N] class index per example.
      class_names: C names.
      pool: "train" (historical tasks) or "downstream" (evaluation).
    """

    name: str
    indices: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    pool: str = "train"

    def __post_init__(self):
        self.indices = np.asarray(self.indices, np.int64)
        self.labels = np.asarray(self.labels, np.int32)
        if self.indices.shape != self.labels.shape:
            raise ValueError(f"task {self.name}: {self.indices.shape} indices vs {self.labels.shape} labels")
        order = np.argsort(self.indices, kind="stable")
        self.indices, self.labels = self.indices[order], self.labels[order]


@dataclasses.dataclass
class Source:
    """Items of one source dataset and the tasks over them.

    Attributes:
      name: source name.
      modality: "image" (uint8 arrays [H, W] or [H, W, 3]) or "text" (str).
      items: the items, in a fixed order.
      tasks: tasks over the items.
      source: where the data comes from (package==version, URL, ...).
      licence: the data licence.
      group: leave-one-group-out tag: sources that share files or are near-duplicate
        tasks share a group (stored per dataset in the bank manifest).
    """

    name: str
    modality: str
    items: Sequence[Any]
    tasks: list[Task]
    source: str = ""
    licence: str = ""
    group: str = ""

    def needed(self, task_names: Sequence[str] | None = None) -> np.ndarray:
        """Sorted union of item positions used by the named tasks (all by default)."""
        tasks = [t for t in self.tasks if task_names is None or t.name in task_names]
        if not tasks:
            return np.zeros(0, np.int64)
        return np.unique(np.concatenate([t.indices for t in tasks]))


def stratified_cap(labels: np.ndarray, cap: int | None, seed: int = 0,
                   priority: np.ndarray | None = None, min_per_class: int = 5) -> np.ndarray:
    """Positions of at most `cap` examples keeping class proportions (deterministic).

    Args:
      labels: [N] class labels.
      cap: maximum number kept (None: keep all).
      seed: seeds the random order within each class.
      priority: optional [N] ranks; within a class the lowest ranks are kept instead of a
        random draw (tasks sharing one source use one priority so their picks overlap).
      min_per_class: every class keeps at least this many (or all it has), so 5-fold
        cross-validation stays possible.
    Returns:
      Sorted positions.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    if cap is None or n <= cap:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(np.minimum(counts, min_per_class), np.floor(counts * cap / n).astype(int))
    # hand out what rounding left, to the classes with the largest remainders
    rest = cap - quota.sum()
    if rest > 0:
        order = np.argsort(-(counts * cap / n - quota), kind="stable")
        quota[order[:rest]] += 1
    keep = []
    for c, q in zip(classes, quota):
        pos = np.flatnonzero(labels == c)
        pos = pos[np.argsort(priority[pos], kind="stable")] if priority is not None else rng.permutation(pos)
        keep.append(np.sort(pos[:min(q, pos.size)]))
    return np.sort(np.concatenate(keep))


def encode_labels(raw: Sequence[Any], class_names: Sequence[str] | None = None):
    """Maps raw labels to int32 indices; returns (labels, class_names sorted by name)."""
    raw = [str(r) for r in raw]
    names = sorted(set(raw)) if class_names is None else [str(c) for c in class_names]
    lookup = {c: i for i, c in enumerate(names)}
    missing = sorted(set(raw) - set(lookup))
    if missing:
        raise ValueError(f"labels not in class_names: {missing[:5]}")
    return np.asarray([lookup[r] for r in raw], np.int32), names


def single_task_source(name, modality, items, raw_labels, *, pool="train", cap=None, seed=0,
                       source="", licence="", class_names=None, task_name=None) -> Source:
    """A source with one task over (a stratified subsample of) its items."""
    labels, names = encode_labels(raw_labels, class_names)
    keep = stratified_cap(labels, cap, seed)
    return Source(name, modality, items, [Task(task_name or name, keep, labels[keep], names, pool)],
                  source, licence)


# ----------------------------------------------------------------------------- readers
def sklearn_digits(*, cap=None, pool="train", seed=0) -> Source:
    """scikit-learn's bundled digits (1,797 8x8 images, 10 classes), as uint8 images."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    return single_task_source("digits", "image", images, d.target, pool=pool, cap=cap, seed=seed,
                              class_names=[str(i) for i in range(10)],
                              source="scikit-learn load_digits (UCI optical recognition of digits)",
                              licence="CC BY 4.0 (UCI ML repository)")


def image_folder(root: str, *, name: str | None = None, cap=None, pool="train", seed=0,
                 extensions=(".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"),
                 source="", licence="") -> Source:
    """Images under ``root/<class>/*``; classes and files in sorted order.

    Files without an image extension and hidden files are ignored. Raises ValueError for
    fewer than two classes holding images, and naming every image file that cannot be
    decoded (all of them, not just the first).
    """
    from PIL import Image

    if not os.path.isdir(root):
        raise ValueError(f"{root}: not a directory (expected {root}/<class>/<image files>)")
    paths, raw = [], []
    for c in sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))):
        for f in sorted(os.listdir(os.path.join(root, c))):
            if not f.startswith(".") and f.lower().endswith(tuple(extensions)):
                paths.append(os.path.join(root, c, f))
                raw.append(c)
    classes = sorted(set(raw))
    if len(classes) < 2:
        raise ValueError(f"{root}: needs at least two class folders holding images "
                         f"({root}/<class>/*.png ...); found {classes or 'none'}")
    labels, names = encode_labels(raw, classes)
    keep = stratified_cap(labels, cap, seed)
    items, bad = [None] * len(paths), []
    for i in keep:
        try:
            with Image.open(paths[i]) as im:
                items[i] = np.asarray(im.convert("RGB"), np.uint8)
        except (OSError, ValueError, SyntaxError) as e:   # PIL's errors for broken files
            bad.append(f"{paths[i]} ({type(e).__name__}: {e})")
    if bad:
        raise ValueError(f"{len(bad)} unreadable image file(s) under {root}:\n  "
                         + "\n  ".join(bad[:20]) + ("\n  ..." if len(bad) > 20 else ""))
    name = name or os.path.basename(os.path.normpath(root))
    return Source(name, "image", items, [Task(name, keep, labels[keep], names, pool)],
                  source or f"image folder {root}", licence)


def text_table(path: str, *, text_field="text", label_field="label", name=None, cap=None,
               pool="train", seed=0, encoding="utf-8", source="", licence="") -> Source:
    """Texts and labels from a CSV (header row) or JSONL file (one object per line)."""
    rows = []
    try:
        with open(path, "r", encoding=encoding, newline="") as f:
            if path.endswith((".jsonl", ".json")):
                for i, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as e:
                            raise ValueError(f"{path}: line {i} is not JSON ({e})") from None
            else:
                rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or text_field not in r or label_field not in r:
            have = sorted(r) if isinstance(r, dict) else type(r).__name__
            raise ValueError(f"{path}: row {i} lacks {text_field!r} or {label_field!r} "
                             f"(fields: {have}); name them with the text/label field flags")
    name = name or os.path.splitext(os.path.basename(path))[0]
    return single_task_source(name, "text", [str(r[text_field]) for r in rows],
                              [r[label_field] for r in rows], pool=pool, cap=cap, seed=seed,
                              source=source or f"table {path}", licence=licence)


def tfds_source(dataset: str, *, data_dir: str, split="train", image_key="image", label_key="label",
                text_key=None, name=None, cap=None, pool="train", seed=0, licence="") -> Source:
    """A TensorFlow Datasets split already prepared under `data_dir` (no download).

    Untested here (TensorFlow is not installed on the build machine).
    """
    import tensorflow_datasets as tfds  # lazy: optional dependency

    builder = tfds.builder(dataset, data_dir=data_dir)
    ds = tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False,
                                          read_config=tfds.ReadConfig(shuffle_seed=seed)))
    items, raw = [], []
    for ex in ds:
        if text_key:
            v = ex[text_key]
            items.append(v.decode("utf-8") if isinstance(v, bytes) else str(v))
        else:
            items.append(np.asarray(ex[image_key], np.uint8))
        raw.append(int(ex[label_key]))
    feature = builder.info.features[label_key]
    names = list(getattr(feature, "names", [])) or [str(i) for i in range(max(raw) + 1)]
    labels = np.asarray(raw, np.int32)
    keep = stratified_cap(labels, cap, seed)
    name = name or dataset.replace("/", "_")
    return Source(name, "text" if text_key else "image", items,
                  [Task(name, keep, labels[keep], names, pool)],
                  f"tensorflow_datasets {dataset} ({split})", licence)
