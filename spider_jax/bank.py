"""Feature bank: write, open and validate the on-disk contract between extraction and JAX.

A feature bank is a directory of plain ``.npy`` arrays plus one ``manifest.json``.
Nothing in it is ever unpickled: every array is read with
``np.load(path, mmap_mode='r', allow_pickle=False)``, so opening a bank costs only
the headers and the arrays are paged in when used. Users with their own zoo
(torch, timm, HF, anything) write exactly this layout, with :class:`BankWriter` or by hand.

Layout under ``ROOT``::

    manifest.json
    labels/{dataset}__{split}.npy                int32 [N]             class index in [0, C)
    features/{model}/{dataset}__{split}.npy      float16|float32 [N, D_m]
    source_probs/{model}/{dataset}__{split}.npy  float16|float32 [N, C_src]  (has_source_head only;
                                                 rows >= 0 summing to 1 +- PROB_SUM_TOL)
    psi/{dataset}__{split}.npy                   float16|float32 [N, D_psi]  (psi of its modality)
    groundtruth.json                             written by ``spider_jax.groundtruth``

``manifest.json``::

    {"format_version": 1,
     "models":   {name: {"dim": int, "modality": "image"|"text", "has_source_head": bool,
                         "num_source_classes": int, "description": str,
                         "licence": str, "network": str}},   # licence, network: optional
     "datasets": {name: {"modality": ..., "class_names": [...], "pool": "train"|"downstream",
                         "splits": {"train": N, ...}, "source": str, "licence": str,
                         "group": str}},   # group (leave-one-group-out tag): optional
     "psi": {"image": {"name": str, "dim": int}, "text": {...}}}

A bank is complete when, for every dataset and each of its splits, the labels exist,
every model of the dataset's modality has its features (and source-head probabilities
when ``has_source_head``), and psi features exist when the manifest names a psi
encoder for that modality. Model and dataset names may use letters, digits and
``. _ - @`` only (``network@tap`` names one tap of a network) (they become file names; ``__`` is reserved as the split separator).

``groundtruth.json`` (linear-probe transfer accuracy, never fine-tuning)::

    {"format_version": 1, "protocol": str,
     "datasets": {name: {"models": [...], "mean": [...], "std": [...], ...extra fields}}}

Writes are atomic (a temporary file in the same directory, fsync, ``os.replace``), so
an interrupted extraction never leaves a half-written array and rerunning it can skip
whatever :meth:`BankWriter.has_array` reports. Example::

    w = BankWriter(root, psi={"text": {"name": "minilm", "dim": 384}})
    w.add_model("glove", dim=50, modality="text")
    w.add_dataset("kaomoji_category", modality="text", class_names=names, pool="train")
    w.write_labels("kaomoji_category", "train", labels)
    w.write_features("glove", "kaomoji_category", "train", feats)
    w.write_psi("kaomoji_category", "train", psi_feats)
    w.close()
    b = open_bank(root)            # ValueError naming the file on any problem
    b.features("glove", "kaomoji_category")   # memory-mapped [N, 50]
"""

from __future__ import annotations

import copy
import json
import os
import re
import time
from typing import Any, Iterable

import numpy as np

from spider_jax import atomic
from spider_jax.atomic import atomic_write  # noqa: F401  (re-exported: bank.atomic_write)

FORMAT_VERSION = 1
MODALITIES = ("image", "text")
POOLS = ("train", "downstream")
FEATURE_DTYPES = (np.dtype(np.float16), np.dtype(np.float32))
_NAME_RE = re.compile(r"^[A-Za-z0-9._@-]+$")
_CHUNK_ROWS = 65536
# Each row of source-head probabilities must sum to 1 within this (float16 storage rounds
# each entry by <= 2^-11 relative: a stored softmax row sums to 1 within ~5e-4).
PROB_SUM_TOL = 1e-2

__all__ = [
    "FORMAT_VERSION", "Bank", "BankWriter", "open_bank", "write_groundtruth",
    "read_groundtruth", "labels_path", "features_path", "source_probs_path", "psi_path",
    "atomic_write",
]


# --------------------------------------------------------------------------- paths
def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name) or "__" in name:
        raise ValueError(
            f"{kind} name {name!r} must be non-empty, use only letters, digits and '._-@', "
            "and must not contain '__'")


def labels_path(dataset: str, split: str) -> str:
    """Relative path of a dataset split's labels."""
    return os.path.join("labels", f"{dataset}__{split}.npy")


def features_path(model: str, dataset: str, split: str) -> str:
    """Relative path of a model's features on a dataset split."""
    return os.path.join("features", model, f"{dataset}__{split}.npy")


def source_probs_path(model: str, dataset: str, split: str) -> str:
    """Relative path of a model's source-head probabilities on a dataset split."""
    return os.path.join("source_probs", model, f"{dataset}__{split}.npy")


def psi_path(dataset: str, split: str) -> str:
    """Relative path of the task encoder (psi) features of a dataset split."""
    return os.path.join("psi", f"{dataset}__{split}.npy")


# --------------------------------------------------------------------------- atomic I/O
_atomic_save_npy = atomic.write_npy


def _atomic_save_json(path: str, obj: Any) -> None:
    atomic.write_json(path, obj, indent=1, sort_keys=False)


def _load_npy(path: str, root: str) -> np.ndarray:
    """Memory-maps one bank array; any unreadable file becomes a ValueError naming it."""
    rel = os.path.relpath(path, root)
    if not os.path.exists(path):
        raise ValueError(f"feature bank {root}: missing array file {rel}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # truncated file, bad header, object array, ...
        raise ValueError(f"feature bank {root}: cannot read {rel} (truncated or corrupt): {e}") from e


def _nonfinite_rows(array: np.ndarray) -> int:
    """Counts rows with NaN/Inf, reading a memory-mapped array in chunks."""
    bad = 0
    for start in range(0, array.shape[0], _CHUNK_ROWS):
        chunk = np.asarray(array[start:start + _CHUNK_ROWS])
        finite = np.isfinite(chunk)
        if finite.ndim > 1:
            finite = finite.reshape(finite.shape[0], -1).all(axis=1)
        bad += int((~finite).sum())
    return bad


def _check_float_array(array: np.ndarray, *, n: int | None, dim: int, what: str) -> None:
    """Checks dtype, shape [n, dim] and finiteness; raises ValueError mentioning `what`."""
    if array.dtype not in FEATURE_DTYPES:
        raise ValueError(f"{what}: dtype {array.dtype}, expected float16 or float32")
    if array.ndim != 2 or array.shape[1] != dim or (n is not None and array.shape[0] != n):
        expected = f"[{n if n is not None else 'N'}, {dim}]"
        raise ValueError(f"{what}: shape {list(array.shape)}, expected {expected}")
    bad = _nonfinite_rows(array)
    if bad:
        raise ValueError(f"{what}: {bad} rows contain NaN or Inf")


def _check_prob_rows(array: np.ndarray, *, what: str) -> None:
    """Every row a distribution: non-negative, summing to 1 within ``PROB_SUM_TOL``."""
    neg, off = [], []
    for start in range(0, array.shape[0], _CHUNK_ROWS):
        chunk = np.asarray(array[start:start + _CHUNK_ROWS], np.float64)
        neg += (start + np.flatnonzero((chunk < 0).any(axis=1))).tolist()
        off += (start + np.flatnonzero(np.abs(chunk.sum(axis=1) - 1.0) > PROB_SUM_TOL)).tolist()
    if neg:
        raise ValueError(f"{what}: {len(neg)} rows have negative probabilities "
                         f"(first rows {neg[:5]})")
    if off:
        raise ValueError(f"{what}: {len(off)} rows do not sum to 1 (+-{PROB_SUM_TOL}; first "
                         f"rows {off[:5]}): source_probs must be softmax probabilities")


def _check_labels(array: np.ndarray, *, n: int | None, num_classes: int, what: str) -> None:
    if array.dtype != np.dtype(np.int32):
        raise ValueError(f"{what}: dtype {array.dtype}, expected int32")
    if array.ndim != 1 or (n is not None and array.shape[0] != n):
        raise ValueError(f"{what}: shape {list(array.shape)}, expected [{n}]")
    if array.shape[0]:
        lo, hi = int(np.min(array)), int(np.max(array))
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"{what}: labels out of range [{lo}, {hi}], expected [0, {num_classes - 1}]")


def _as_float_array(array, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype not in FEATURE_DTYPES:
        if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{what}: dtype {array.dtype} is not numeric")
        array = array.astype(np.float32)
    return np.ascontiguousarray(array)


# --------------------------------------------------------------------------- groundtruth
def write_groundtruth(root: str, datasets: dict[str, dict], *, protocol: str = "") -> str:
    """Writes ``groundtruth.json`` atomically (linear-probe transfer accuracy).

    Args:
      root: bank directory.
      datasets: {dataset: {"models": [M names], "mean": [M], "std": [M], ...}}; numpy
        values are converted to lists; extra keys (e.g. "headline", "spread") are kept.
      protocol: a sentence describing how the numbers were computed.
    Returns:
      The path written.
    """
    def plain(v):
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, (np.floating, np.integer, np.bool_)):
            return v.item()
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    for name, entry in datasets.items():
        m = len(entry["models"])
        if len(entry["mean"]) != m or len(entry["std"]) != m:
            raise ValueError(f"groundtruth for {name}: models, mean and std lengths differ")
    path = os.path.join(root, "groundtruth.json")
    _atomic_save_json(path, {"format_version": FORMAT_VERSION, "protocol": protocol,
                             "datasets": plain(datasets)})
    return path


def read_groundtruth(root: str) -> dict | None:
    """Returns the parsed ``groundtruth.json`` of a bank, or None when absent."""
    path = os.path.join(root, "groundtruth.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"feature bank {root}: cannot parse groundtruth.json: {e}") from e
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION \
            or not isinstance(data.get("datasets"), dict):
        raise ValueError(f"feature bank {root}: groundtruth.json has an unknown format")
    for name, entry in data["datasets"].items():
        where = f"feature bank {root}: groundtruth.json: dataset {name}"
        if not isinstance(entry, dict) or not isinstance(entry.get("models"), list) \
                or not all(isinstance(m, str) for m in entry["models"]):
            raise ValueError(f"{where}: needs \"models\": a list of model names")
        m = len(entry["models"])
        for key in ("mean", "std"):
            v = entry.get(key)
            if not isinstance(v, list) or len(v) != m or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                got = f"{len(v)} values" if isinstance(v, list) else repr(v)
                raise ValueError(f"{where}: {key!r} must be a list of {m} numbers, one per "
                                 f"model, got {got}")
    return data


# --------------------------------------------------------------------------- manifest checks
def _validate_manifest(manifest: dict, root: str) -> None:
    where = f"feature bank {root}: manifest.json"
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{where}: format_version must be {FORMAT_VERSION}")
    for key in ("models", "datasets", "psi"):
        if not isinstance(manifest.get(key), dict):
            raise ValueError(f"{where}: missing or malformed {key!r}")
    for name, info in manifest["models"].items():
        _check_name("model", name)
        if not isinstance(info, dict):
            raise ValueError(f"{where}: model {name}: entry must be an object "
                             f"{{\"dim\": ..., \"modality\": ...}}, got {info!r}")
        if info.get("modality") not in MODALITIES:
            raise ValueError(f"{where}: model {name}: modality must be one of {MODALITIES}")
        if not isinstance(info.get("dim"), int) or info["dim"] <= 0:
            raise ValueError(f"{where}: model {name}: dim must be a positive int")
        if info.get("has_source_head") and int(info.get("num_source_classes", 0)) < 2:
            raise ValueError(f"{where}: model {name}: has_source_head needs num_source_classes >= 2")
    for name, info in manifest["datasets"].items():
        _check_name("dataset", name)
        if not isinstance(info, dict):
            raise ValueError(f"{where}: dataset {name}: entry must be an object, got {info!r}")
        if info.get("modality") not in MODALITIES:
            raise ValueError(f"{where}: dataset {name}: modality must be one of {MODALITIES}")
        if info.get("pool") not in POOLS:
            raise ValueError(f"{where}: dataset {name}: pool must be one of {POOLS}")
        if not isinstance(info.get("class_names"), list) or len(info["class_names"]) < 2:
            raise ValueError(f"{where}: dataset {name}: needs at least 2 class_names")
        if not isinstance(info.get("splits"), dict):
            raise ValueError(f"{where}: dataset {name}: missing splits")
        for split, size in info["splits"].items():
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ValueError(f"{where}: dataset {name}: split {split!r} size must be a "
                                 f"non-negative integer, got {size!r}")
    for modality, info in manifest["psi"].items():
        if modality not in MODALITIES or not isinstance(info, dict) \
                or not isinstance(info.get("dim"), int):
            raise ValueError(f"{where}: psi entry {modality!r} malformed")


# --------------------------------------------------------------------------- reading
class Bank:
    """A read-only view of a feature bank (arrays are memory-mapped on access).

    Attributes:
      root: the bank directory.
      manifest: the parsed manifest (restricted to this view's models and datasets).
      models: model names in manifest order.
      datasets: dataset names in manifest order.
    """

    def __init__(self, root: str, manifest: dict):
        self.root = os.path.abspath(root)
        self.manifest = manifest
        self.models = list(manifest["models"])
        self.datasets = list(manifest["datasets"])
        self._gt = None

    def __repr__(self) -> str:
        return f"Bank({self.root!r}, models={len(self.models)}, datasets={len(self.datasets)})"

    # -- info
    def model_info(self, name: str) -> dict:
        """Manifest entry of a model (a copy)."""
        if name not in self.manifest["models"]:
            raise ValueError(f"feature bank {self.root}: unknown model {name!r}")
        return dict(self.manifest["models"][name])

    def dataset_info(self, name: str) -> dict:
        """Manifest entry of a dataset plus "num_classes" (a copy)."""
        if name not in self.manifest["datasets"]:
            raise ValueError(f"feature bank {self.root}: unknown dataset {name!r}")
        info = copy.deepcopy(self.manifest["datasets"][name])
        info["num_classes"] = len(info["class_names"])
        return info

    def psi_info(self, modality: str) -> dict | None:
        """The psi encoder {"name", "dim"} of a modality, or None."""
        return self.manifest["psi"].get(modality)

    def models_for(self, dataset: str) -> list[str]:
        """Models of the dataset's modality, in manifest order."""
        modality = self.dataset_info(dataset)["modality"]
        return [m for m in self.models if self.manifest["models"][m]["modality"] == modality]

    # -- arrays
    def _split_n(self, dataset: str, split: str) -> int:
        splits = self.dataset_info(dataset)["splits"]
        if split not in splits:
            raise ValueError(f"feature bank {self.root}: dataset {dataset!r} has no split {split!r}")
        return int(splits[split])

    def labels(self, dataset: str, split: str = "train") -> np.ndarray:
        """int32 [N] class indices (memory-mapped)."""
        self._split_n(dataset, split)
        return _load_npy(os.path.join(self.root, labels_path(dataset, split)), self.root)

    def features(self, model: str, dataset: str, split: str = "train") -> np.ndarray:
        """float16|float32 [N, D_m] frozen features of `model` on `dataset` (memory-mapped)."""
        self.model_info(model)
        self._split_n(dataset, split)
        return _load_npy(os.path.join(self.root, features_path(model, dataset, split)), self.root)

    def source_probs(self, model: str, dataset: str, split: str = "train") -> np.ndarray:
        """float16|float32 [N, C_src] source-head probabilities; ValueError without a head."""
        if not self.model_info(model).get("has_source_head"):
            raise ValueError(f"feature bank {self.root}: model {model!r} has no source head")
        self._split_n(dataset, split)
        return _load_npy(os.path.join(self.root, source_probs_path(model, dataset, split)), self.root)

    def psi(self, dataset: str, split: str = "train") -> np.ndarray:
        """float16|float32 [N, D_psi] task-encoder features of the dataset's modality."""
        modality = self.dataset_info(dataset)["modality"]
        if self.psi_info(modality) is None:
            raise ValueError(f"feature bank {self.root}: no psi encoder for modality {modality!r}")
        self._split_n(dataset, split)
        return _load_npy(os.path.join(self.root, psi_path(dataset, split)), self.root)

    # -- views
    def subset(self, modality: str) -> "Bank":
        """A view holding only `modality`'s models, datasets and psi entry."""
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        m = self.manifest
        sub = {
            "format_version": m["format_version"],
            "models": {k: v for k, v in m["models"].items() if v["modality"] == modality},
            "datasets": {k: v for k, v in m["datasets"].items() if v["modality"] == modality},
            "psi": {k: v for k, v in m["psi"].items() if k == modality},
        }
        return Bank(self.root, sub)

    def select_models(self, models: Iterable[str]) -> "Bank":
        """A view holding only the named models (manifest order kept); datasets and psi
        unchanged. E.g. the zoo without one member, to train a scorer it has not seen."""
        keep = set(models)
        for name in keep:
            self.model_info(name)
        sub = dict(self.manifest)
        sub["models"] = {k: v for k, v in self.manifest["models"].items() if k in keep}
        return Bank(self.root, sub)

    def pool(self, name: str) -> list[str]:
        """Dataset names in pool "train" (historical tasks) or "downstream" (evaluation)."""
        if name not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {name!r}")
        return [d for d in self.datasets if self.manifest["datasets"][d]["pool"] == name]

    def groundtruth(self, dataset: str) -> dict | None:
        """Linear-probe transfer accuracy of `dataset` or None if not computed.

        Returns:
          {"models": [M], "mean": np.float64[M], "std": np.float64[M], ...} with any extra
          fields stored (e.g. "headline", "spread", "mean_seed2").
        """
        if self._gt is None:
            self._gt = read_groundtruth(self.root) or {"datasets": {}}
        entry = self._gt["datasets"].get(dataset)
        if entry is None:
            return None
        out = dict(entry)
        out["models"] = list(entry["models"])
        for key, value in entry.items():
            if key != "models" and isinstance(value, list) and len(value) == len(out["models"]) \
                    and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
                out[key] = np.asarray(value, dtype=np.float64)
        return out

    # -- validation
    def expected_arrays(self) -> Iterable[tuple[str, str, dict]]:
        """Yields (kind, relpath, info) for every array a complete bank holds."""
        for ds in self.datasets:
            info = self.dataset_info(ds)
            for split in info["splits"]:
                yield "labels", labels_path(ds, split), {"dataset": ds, "split": split}
                for model in self.models_for(ds):
                    yield "features", features_path(model, ds, split), {
                        "dataset": ds, "split": split, "model": model}
                    if self.manifest["models"][model].get("has_source_head"):
                        yield "source_probs", source_probs_path(model, ds, split), {
                            "dataset": ds, "split": split, "model": model}
                if self.psi_info(info["modality"]) is not None:
                    yield "psi", psi_path(ds, split), {"dataset": ds, "split": split}

    def validate(self, *, check_values: bool = True) -> None:
        """Checks every array exists, is readable, matches the manifest and is finite.

        Args:
          check_values: also read the data for NaN/Inf and label range (reads every byte).
        Raises:
          ValueError naming the offending file.
        """
        for kind, rel, ctx in self.expected_arrays():
            path = os.path.join(self.root, rel)
            array = _load_npy(path, self.root)
            what = f"feature bank {self.root}: {rel}"
            ds_info = self.dataset_info(ctx["dataset"])
            n = int(ds_info["splits"][ctx["split"]])
            if kind == "labels":
                if not check_values:
                    if array.dtype != np.int32 or array.shape != (n,):
                        raise ValueError(f"{what}: dtype/shape {array.dtype} {list(array.shape)},"
                                         f" expected int32 [{n}]")
                    continue
                _check_labels(array, n=n, num_classes=ds_info["num_classes"], what=what)
                continue
            if kind == "features":
                dim = self.manifest["models"][ctx["model"]]["dim"]
            elif kind == "source_probs":
                dim = int(self.manifest["models"][ctx["model"]]["num_source_classes"])
            else:
                dim = self.psi_info(ds_info["modality"])["dim"]
            if check_values:
                _check_float_array(array, n=n, dim=dim, what=what)
                if kind == "source_probs":
                    _check_prob_rows(array, what=what)
            elif array.dtype not in FEATURE_DTYPES or array.shape != (n, dim):
                raise ValueError(f"{what}: dtype/shape {array.dtype} {list(array.shape)},"
                                 f" expected float16|float32 [{n}, {dim}]")
        read_groundtruth(self.root)


def _read_manifest(root: str) -> dict:
    path = os.path.join(root, "manifest.json")
    if not os.path.exists(path):
        raise ValueError(f"feature bank {root}: missing manifest.json")
    try:
        with open(path, "r", encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"feature bank {root}: cannot parse manifest.json: {e}") from e
    _validate_manifest(manifest, root)
    return manifest


def open_bank(root: str, validate: bool = True) -> Bank:
    """Opens a feature bank.

    Args:
      root: the bank directory.
      validate: check every array (existence, readability, shape and dtype against the
        manifest, NaN/Inf, label range). Reads all data once; pass False to skip.
    Returns:
      A :class:`Bank`.
    Raises:
      ValueError naming the offending file.
    """
    root = os.path.abspath(root)
    bank = Bank(root, _read_manifest(root))
    if validate:
        bank.validate()
    return bank


# --------------------------------------------------------------------------- writing
class BankWriter:
    """Creates or resumes a feature bank; every array write is atomic.

    The manifest is rewritten (atomically) whenever models, datasets or splits change,
    so a writer reopened after an interruption knows everything already declared, and
    :meth:`has_array` tells which arrays are done. Several processes may write *arrays*
    to the same bank at once (distinct files), provided one process owns the manifest
    (declares models/datasets/labels) and the others only call ``write_features`` /
    ``write_source_probs`` / ``write_psi``.
    """

    def __init__(self, root: str, psi: dict | None = None):
        """Args:
          root: bank directory (created if absent; an existing manifest is reopened).
          psi: {modality: {"name": str, "dim": int}}; must agree with an existing bank.
        """
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self._manifest_path = os.path.join(self.root, "manifest.json")
        exists = os.path.exists(self._manifest_path)
        if exists:
            self.manifest = _read_manifest(self.root)
            atomic.remove_stale_temporaries(self.root, recursive=True)
        else:
            self.manifest = {"format_version": FORMAT_VERSION, "models": {}, "datasets": {}, "psi": {}}
        changed = not exists
        for modality, info in (psi or {}).items():
            if modality not in MODALITIES:
                raise ValueError(f"psi modality must be one of {MODALITIES}, got {modality!r}")
            entry = {"name": str(info["name"]), "dim": int(info["dim"])}
            old = self.manifest["psi"].get(modality)
            if old is not None and old != entry:
                raise ValueError(f"feature bank {self.root}: psi for {modality} is {old}, not {entry}")
            if old is None:
                self.manifest["psi"][modality] = entry
                changed = True
        if changed:  # a writer that only adds arrays never rewrites another's manifest
            self._save_manifest()

    def _save_manifest(self) -> None:
        _atomic_save_json(self._manifest_path, self.manifest)

    # -- declarations
    def add_model(self, name: str, *, dim: int, modality: str, has_source_head: bool = False,
                  num_source_classes: int = 0, description: str = "", **extra) -> None:
        """Declares a model (idempotent; a conflicting redeclaration raises ValueError)."""
        _check_name("model", name)
        if modality not in MODALITIES:
            raise ValueError(f"model {name}: modality must be one of {MODALITIES}, got {modality!r}")
        if int(dim) <= 0:
            raise ValueError(f"model {name}: dim must be positive, got {dim}")
        if has_source_head and int(num_source_classes) < 2:
            raise ValueError(f"model {name}: has_source_head needs num_source_classes >= 2")
        entry = {"dim": int(dim), "modality": modality, "has_source_head": bool(has_source_head),
                 "num_source_classes": int(num_source_classes) if has_source_head else 0,
                 "description": str(description), **extra}
        old = self.manifest["models"].get(name)
        if old is not None:
            if {k: old.get(k) for k in ("dim", "modality", "has_source_head", "num_source_classes")} \
                    != {k: entry[k] for k in ("dim", "modality", "has_source_head", "num_source_classes")}:
                raise ValueError(f"feature bank {self.root}: model {name} already declared as {old}")
            if old == entry:
                return
        self.manifest["models"][name] = entry
        self._save_manifest()

    def add_dataset(self, name: str, *, modality: str, class_names, pool: str,
                    source: str = "", licence: str = "", **extra) -> None:
        """Declares a dataset (one task). Extra JSON-able keyword fields are stored too."""
        _check_name("dataset", name)
        if modality not in MODALITIES:
            raise ValueError(f"dataset {name}: modality must be one of {MODALITIES}, got {modality!r}")
        if pool not in POOLS:
            raise ValueError(f"dataset {name}: pool must be one of {POOLS}, got {pool!r}")
        class_names = [str(c) for c in class_names]
        if len(class_names) < 2:
            raise ValueError(f"dataset {name}: needs at least 2 classes")
        old = self.manifest["datasets"].get(name)
        if old is not None and (old["modality"] != modality or old["class_names"] != class_names):
            raise ValueError(f"feature bank {self.root}: dataset {name} already declared differently")
        entry = {"modality": modality, "class_names": class_names, "pool": pool,
                 "splits": dict(old["splits"]) if old else {}, "source": str(source),
                 "licence": str(licence), **extra}
        if old == entry:
            return
        self.manifest["datasets"][name] = entry
        self._save_manifest()

    def set_pool(self, name: str, pool: str) -> None:
        """Moves a declared dataset to pool "train" or "downstream"."""
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self._dataset(name)["pool"] = pool
        self._save_manifest()

    def _dataset(self, name: str) -> dict:
        if name not in self.manifest["datasets"]:
            raise ValueError(f"feature bank {self.root}: dataset {name!r} not declared (add_dataset)")
        return self.manifest["datasets"][name]

    def _model(self, name: str) -> dict:
        if name not in self.manifest["models"]:
            raise ValueError(f"feature bank {self.root}: model {name!r} not declared (add_model)")
        return self.manifest["models"][name]

    def _split_n(self, dataset: str, split: str) -> int:
        splits = self._dataset(dataset)["splits"]
        if split not in splits:
            raise ValueError(f"feature bank {self.root}: write_labels({dataset!r}, {split!r}) first")
        return int(splits[split])

    # -- arrays
    def has_array(self, relpath: str) -> bool:
        """True when `relpath` (e.g. ``features_path(m, d, s)``) exists with a readable header."""
        path = os.path.join(self.root, relpath)
        if not os.path.exists(path):
            return False
        try:
            np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception:
            return False
        return True

    def _write(self, relpath: str, array: np.ndarray) -> None:
        _atomic_save_npy(os.path.join(self.root, relpath), array)

    def write_labels(self, dataset: str, split: str, labels) -> None:
        """Writes int32 [N] labels in [0, num_classes) and records the split size N."""
        _check_name("split", split)
        info = self._dataset(dataset)
        labels = np.asarray(labels)
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels of {dataset}/{split}: integer dtype expected, got {labels.dtype}")
        labels = labels.astype(np.int32)
        rel = labels_path(dataset, split)
        _check_labels(labels, n=None, num_classes=len(info["class_names"]), what=rel)
        old_n = info["splits"].get(split)
        if old_n is not None and old_n != labels.shape[0]:
            raise ValueError(f"{rel}: split already has {old_n} examples, got {labels.shape[0]}")
        self._write(rel, labels)
        if old_n is None:
            info["splits"][split] = int(labels.shape[0])
            self._save_manifest()

    def write_features(self, model: str, dataset: str, split: str, feats) -> None:
        """Writes float16|float32 [N, D_m] features (other float dtypes become float32)."""
        m, d = self._model(model), self._dataset(dataset)
        if m["modality"] != d["modality"]:
            raise ValueError(f"model {model} ({m['modality']}) vs dataset {dataset} ({d['modality']})")
        rel = features_path(model, dataset, split)
        feats = _as_float_array(feats, rel)
        _check_float_array(feats, n=self._split_n(dataset, split), dim=m["dim"], what=rel)
        self._write(rel, feats)

    def write_source_probs(self, model: str, dataset: str, split: str, probs) -> None:
        """Writes float16|float32 [N, C_src] source-head probabilities."""
        m = self._model(model)
        if not m["has_source_head"]:
            raise ValueError(f"model {model} was declared without a source head")
        rel = source_probs_path(model, dataset, split)
        probs = _as_float_array(probs, rel)
        _check_float_array(probs, n=self._split_n(dataset, split), dim=m["num_source_classes"],
                           what=rel)
        _check_prob_rows(probs, what=rel)
        self._write(rel, probs)

    def write_psi(self, dataset: str, split: str, feats) -> None:
        """Writes float16|float32 [N, D_psi] task-encoder features of the dataset's modality."""
        modality = self._dataset(dataset)["modality"]
        info = self.manifest["psi"].get(modality)
        if info is None:
            raise ValueError(f"feature bank {self.root}: no psi encoder declared for {modality}")
        rel = psi_path(dataset, split)
        feats = _as_float_array(feats, rel)
        _check_float_array(feats, n=self._split_n(dataset, split), dim=info["dim"], what=rel)
        self._write(rel, feats)

    def close(self) -> None:
        """Writes manifest.json atomically (safe to call more than once)."""
        self._save_manifest()

    def __enter__(self) -> "BankWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
