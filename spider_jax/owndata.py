"""Rank a trained zoo for your own labelled data: psi and the top-k PTMs run on it.

A trained workdir records where its zoo came from (``zoo.json["extraction"]``, written
by :mod:`spider_jax.train`; a workdir without it falls back to its config's bank)::

    {"zoo": "wheel" | "package.module:function" | null,   # the extraction --zoo
     "subset": "full", "modality": "text",
     "psi": {"name": "all_minilm_l6", "dim": 384},
     "members": {"glove_50d": "glove_50d", "mobilenet_v2@features.14": "mobilenet_v2", ...}}

``rank_data(ranker, items, labels, k)`` resolves those names to the zoo's adapters
(:mod:`spider_jax.extract`: ``wheelzoo.adapters(subset)`` for the wheel zoo, the zoo
function for a user's ``module:function``), runs the psi encoder on the examples, ranks
with the k = 0 scorer, and for ``k > 0`` runs only the networks of the top-k members
(Algorithm 2).  A member ``network@tap`` of a multi-tap network comes from that
network's ``encode_taps`` (one forward pass serves all its taps).

Features are computed by :func:`spider_jax.extract.pipeline.build_bank` into a small
feature bank under ``cache_dir/<content hash>`` (hash of the examples, labels and the
zoo spec), so a second call on the same data reads them back instead of encoding again,
and an interrupted one resumes (atomic writes, tqdm progress).

Command line: ``python -m spider_jax.rank --workdir=W --data=PATH [--k=3]`` with PATH an
image folder (``PATH/<class>/*.png``) or a CSV / JSONL file of texts and labels.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["extraction_spec", "load_spec", "zoo_adapters", "load_data", "prepare_data",
           "content_hash", "default_cache_dir", "DataFeatures", "rank_data"]

_DATASET = "data"            # the one dataset of a cache bank


# ----------------------------------------------------------------------------- the spec
def extraction_spec(bank, modality: str) -> dict:
    """What built ``bank``'s ``modality`` zoo: extraction zoo, psi, member -> network.

    Args:
      bank: an opened :class:`spider_jax.bank.Bank` (any view of it).
      modality: "image" or "text".
    """
    info = {}
    path = os.path.join(bank.root, "build_info.json")
    if os.path.exists(path):
        with open(path) as fh:
            info = json.load(fh)
    members = {m: bank.model_info(m).get("network") or m for m in bank.models
               if bank.model_info(m)["modality"] == modality}
    return {"zoo": info.get("zoo"), "subset": info.get("subset", "full"),
            "modality": modality, "psi": bank.psi_info(modality), "members": members}


def load_spec(run: Any, config: Any, modality: str) -> dict | None:
    """The run's extraction spec (``workdir.RunInfo.extraction``, from ``zoo.json``), else
    derived from ``config.bank_dir`` (runs trained before it was recorded)."""
    if getattr(run, "extraction", None):
        return run.extraction
    bank_dir = config.get("bank_dir", "") if hasattr(config, "get") else ""
    if bank_dir and os.path.exists(os.path.join(bank_dir, "manifest.json")):
        from spider_jax import bank as bank_lib
        return extraction_spec(bank_lib.open_bank(bank_dir, validate=False), modality)
    return None


def _zoo_module(spec: dict):
    """(module, (models, psi)) of the spec's extraction zoo; ValueError when it has none."""
    zoo = spec.get("zoo") if spec else None
    if not zoo:
        raise ValueError(
            "this workdir's zoo was not built by an extraction zoo (e.g. a synthetic bank or "
            "arrays written by hand), so rank cannot compute features for new data: pass "
            "psi features instead (--features=F.npy --labels=L.npy)")
    if zoo == "wheel":
        module = importlib.import_module("spider_jax.extract.wheelzoo")
        return module, module.adapters(spec.get("subset") or "full")
    name, _, fn = zoo.partition(":")
    try:
        module = importlib.import_module(name)
    except ImportError as e:
        raise ValueError(f"the workdir's zoo {zoo!r} cannot be imported ({e}); install the "
                         f"package that provides it") from None
    models, psi, _sources = getattr(module, fn or "get_zoo")()
    return module, (models, psi)


def zoo_adapters(spec: dict) -> tuple[Any, dict]:
    """Resolves every bank name of the spec's zoo to the adapter that produces it.

    Returns:
      (zoo module, {bank name: (adapter, as_psi)}), where a name is a ranked member
      (``network`` or ``network@tap``) or the psi encoder's name; ``as_psi`` tells
      :func:`spider_jax.extract.pipeline.build_bank` to pass the adapter as a psi one.
    """
    from spider_jax.extract import pipeline

    module, (models, psi) = _zoo_module(spec)
    index = {}
    for adapter, as_psi in pipeline.networks(models, psi):
        for tap, kind in pipeline._routes(adapter, as_psi):
            index[tap.name] = (adapter, as_psi)
    return module, index


# ----------------------------------------------------------------------------- the data
def load_data(path: str, *, text_field: str = "text", label_field: str = "label"
              ) -> tuple[list, list[str], str, str]:
    """Reads an image folder (``PATH/<class>/*``) or a CSV / JSONL table of texts.

    Returns:
      (items, labels (class names), task name, modality).
    Raises:
      ValueError naming the path, the unreadable files or the missing field.
    """
    from spider_jax.extract import sources

    if os.path.isdir(path):
        src = sources.image_folder(path)
    elif os.path.isfile(path):
        if not path.lower().endswith((".csv", ".jsonl", ".json")):
            raise ValueError(f"{path}: expected an image folder (PATH/<class>/*), a .csv or a "
                             f".jsonl file")
        src = sources.text_table(path, text_field=text_field, label_field=label_field)
    else:
        raise ValueError(f"--data {path!r} does not exist")
    task = src.tasks[0]
    items = [src.items[int(i)] for i in task.indices]
    return items, [task.class_names[int(y)] for y in task.labels], task.name, src.modality


def prepare_data(items: Sequence[Any], labels: Sequence[Any], modality: str
                 ) -> tuple[list, np.ndarray, list[str]]:
    """Checks examples and labels; returns (items, int32 labels, class names).

    Images are uint8 arrays ``[H, W]`` or ``[H, W, 3|4]``; texts are ``str``; labels are
    any values (compared as strings, classes sorted by name).
    """
    from spider_jax.extract import sources

    items = list(items)
    if len(items) != len(labels):
        raise ValueError(f"{len(items)} examples but {len(labels)} labels")
    if not items:
        raise ValueError("no examples to rank the zoo for")
    for i, x in enumerate(items):
        if modality == "text":
            if not isinstance(x, str):
                raise ValueError(f"example {i} is a {type(x).__name__}; this scorer ranks a "
                                 f"text zoo and needs str examples")
        else:
            a = np.asarray(x)
            if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
                raise ValueError(f"example {i}: an image must be a uint8 array [H, W] or "
                                 f"[H, W, 3], got {a.dtype} {list(a.shape)}")
            items[i] = a
    y, names = sources.encode_labels([str(v) for v in labels])
    if len(names) < 2:
        raise ValueError(f"the data has a single class ({names[0]!r}); ranking models for a "
                         f"task needs at least two classes")
    return items, y, names


def content_hash(items: Sequence[Any], labels: np.ndarray, spec: dict) -> str:
    """Hex digest of the examples, their labels and the zoo spec (the cache key)."""
    h = hashlib.sha256(json.dumps({k: spec.get(k) for k in ("zoo", "subset", "modality", "psi")},
                                  sort_keys=True).encode())
    for x in items:
        if isinstance(x, str):
            b = x.encode("utf-8")
            h.update(b"s" + len(b).to_bytes(8, "little") + b)
        else:
            a = np.ascontiguousarray(x)
            h.update(f"a{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
    h.update(np.asarray(labels, np.int32).tobytes())
    return h.hexdigest()[:24]


def default_cache_dir() -> str:
    """``$SPIDER_JAX_CACHE``, else ``$XDG_CACHE_HOME/spider_jax/features`` (~/.cache)."""
    if os.environ.get("SPIDER_JAX_CACHE"):
        return os.environ["SPIDER_JAX_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "spider_jax", "features")


class DataFeatures:
    """Features of one labelled dataset under a zoo's adapters, computed on demand.

    Args:
      spec: the workdir's extraction spec.
      items, labels, class_names: the checked data (:func:`prepare_data`).
      cache_dir: root of the feature caches (one bank per content hash).
      progress: tqdm bar while encoding.
    """

    def __init__(self, spec: dict, items: Sequence[Any], labels: np.ndarray,
                 class_names: Sequence[str], *, cache_dir: str | None = None,
                 progress: bool = True):
        from spider_jax.extract import sources

        self.spec = spec
        self.module, self.index = zoo_adapters(spec)
        self.modality = spec["modality"]
        self.progress = progress
        self.root = os.path.join(cache_dir or default_cache_dir(),
                                 content_hash(items, labels, spec))
        self.source = sources.Source(
            _DATASET, self.modality, list(items),
            [sources.Task(_DATASET, np.arange(len(items)), labels, list(class_names),
                          "downstream")], source="spider_jax.rank --data")

    def _bank(self):
        from spider_jax import bank as bank_lib
        return bank_lib.open_bank(self.root, validate=False)

    def _have(self, name: str, as_psi: bool) -> bool:
        from spider_jax import bank as bank_lib
        rel = (bank_lib.psi_path(_DATASET, "train") if as_psi
               else bank_lib.features_path(name, _DATASET, "train"))
        return os.path.exists(os.path.join(self.root, rel))

    def _run(self, name: str, psi: bool) -> None:
        """Runs the network producing ``name`` (all its taps, one forward pass)."""
        from spider_jax.extract import pipeline

        if name not in self.index:
            raise ValueError(f"no adapter of the zoo {self.spec.get('zoo')!r} produces "
                             f"{name!r} (the zoo module changed since the scorer was trained?)")
        adapter, as_psi = self.index[name]
        if self._have(name, psi):
            return
        pins = getattr(self.module, "MODEL_WHEELS", {}).get(adapter.name)
        if pins and hasattr(self.module, "check_wheels"):
            try:
                self.module.check_wheels(pins)
            except RuntimeError as e:
                raise ValueError(f"{adapter.name} (needed for {name}) cannot run: {e}") from None
        models = {} if as_psi else {adapter.name: adapter}
        psi_arg = {self.modality: adapter} if as_psi else {}
        try:
            pipeline.build_bank(self.root, models, psi_arg, [self.source], workers=1,
                                progress=self.progress, validate=False,
                                info={"zoo": self.spec.get("zoo"), "data": "rank --data"})
        except (ImportError, OSError, RuntimeError) as e:
            hint = getattr(self.module, "INSTALL_LINE", "")
            raise ValueError(f"running {adapter.name} (for {name}) failed: "
                             f"{type(e).__name__}: {e}" + (f"\ninstall the zoo's wheels with:\n  "
                                                           f"{hint}" if hint else "")) from None

    def psi(self) -> np.ndarray:
        """[N, D_psi] psi features of the data."""
        name = self.spec["psi"]["name"]
        self._run(name, psi=True)
        return np.asarray(self._bank().psi(_DATASET), np.float32)

    def features(self, member: str) -> np.ndarray:
        """[N, D_m] features of one ranked member (runs its network on first use)."""
        self._run(member, psi=False)
        return np.asarray(self._bank().features(member, _DATASET), np.float32)


def rank_data(ranker, items: Sequence[Any], labels: Sequence[Any], *, k: int = 0,
              name: str = "data", cache_dir: str | None = None, progress: bool = True,
              **rank_kwargs):
    """Ranks the ranker's zoo for labelled examples (see :meth:`Ranker.rank_data`);
    ``rank_kwargs``: ``rerank`` / ``metric`` / ``anchor`` of :meth:`Ranker.rank`."""
    from spider_jax import ranker as ranker_lib

    spec = ranker.extraction
    if not spec:
        _zoo_module(spec)           # raises the explanation
    if not 0 <= int(k) <= len(ranker.models):
        raise ValueError(f"k={k} must be in [0, {len(ranker.models)}] (the zoo size)")
    items, y, names = prepare_data(items, labels, spec["modality"])
    feats = DataFeatures(spec, items, y, names, cache_dir=cache_dir, progress=progress)
    psi = feats.psi()
    if psi.shape[1] != ranker.psi_dim:
        raise ValueError(f"the zoo's psi {spec['psi']} gives width {psi.shape[1]}, the scorer "
                         f"expects {ranker.psi_dim}")
    task = ranker_lib.Task.from_features(psi, y, name=name)
    return ranker.rank(task, k=int(k), forward=feats.features, **rank_kwargs)
