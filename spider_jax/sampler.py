"""Training-task sampling (paper appendix A.2 / B.1) into fixed-shape padded arrays.

A training task mixes the classes of ``min_datasets..max_datasets`` datasets drawn from
the bank's ``train`` pool, keeps at most ``max_classes`` of their classes and at most
``examples_per_class`` examples of each (few-shot mode: e.g. 10).  Task ``i`` is a pure
function of ``(seed, i)`` (``numpy.random.default_rng([seed, i])``), so any task can be
rebuilt at any time (resumable labelling, exact training resumption).

Every task is padded to the same shapes so one compiled function serves all tasks:

  psi_centres       [C_max, D_psi]       float32   generic class centres (Eq. 5)
  class_mask        [C_max]              bool
  specific_centres  [M, C_max, D_max]    float32   each PTM's class centres, dims padded
  labels            [N_max]              int32     0..C-1 (0 on padding)
  example_mask      [N_max]              bool
  features[m]       [N_max, D_m]         float32   per-PTM features (metrics only)
  source_probs[m]   [N_max, S_m]         float32   PTMs with a source head (metrics only)

``N_max = C_max * examples_per_class``.  A "downstream" task is a whole held-out dataset
(optionally capped per class) built the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = ["TaskSpec", "Zoo", "TaskSampler", "class_centres"]


@dataclasses.dataclass(frozen=True)
class Zoo:
    """The PTMs one scorer ranks (the M axis), in bank manifest order."""

    models: tuple[str, ...]
    dims: tuple[int, ...]
    has_source_head: tuple[bool, ...]
    num_source_classes: tuple[int, ...]
    psi_dim: int
    modality: str

    @property
    def num_models(self) -> int:
        return len(self.models)

    @property
    def max_dim(self) -> int:
        return max(self.dims)

    @classmethod
    def from_bank(cls, bank, modality: str) -> "Zoo":
        infos = [bank.model_info(m) for m in bank.models]
        psi = bank.psi_info(modality)
        if psi is None:
            raise ValueError(f"the bank has no psi encoder for modality {modality!r}")
        psi_dim = int(psi["dim"])
        return cls(models=tuple(bank.models), dims=tuple(int(i["dim"]) for i in infos),
                   has_source_head=tuple(bool(i.get("has_source_head", False)) for i in infos),
                   num_source_classes=tuple(int(i.get("num_source_classes", 0)) for i in infos),
                   psi_dim=psi_dim, modality=modality)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Zoo":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Which examples make a task: per task class, its dataset and example rows."""

    datasets: tuple[str, ...]
    class_dataset: tuple[str, ...]          # [C] dataset of each task class
    class_rows: tuple[np.ndarray, ...]      # [C] row indices into that dataset's split

    @property
    def num_classes(self) -> int:
        return len(self.class_rows)

    @property
    def num_examples(self) -> int:
        return int(sum(len(r) for r in self.class_rows))


def class_centres(features: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                  num_classes: int) -> np.ndarray:
    """Masked per-class means: ``[N, D] -> [num_classes, D]`` (zeros for empty classes)."""
    onehot = (labels[None, :] == np.arange(num_classes)[:, None]) & mask[None, :].astype(bool)
    counts = np.maximum(onehot.sum(axis=1, keepdims=True), 1)
    return (onehot.astype(np.float32) @ np.asarray(features, np.float32)) / counts


class TaskSampler:
    """Samples and materialises padded tasks from a (single-modality) bank.

    Args:
      bank: an opened ``spider_jax.bank.Bank`` restricted to one modality.
      zoo: the :class:`Zoo` (M axis) of that bank.
      seed: base seed; task ``i`` uses ``default_rng([seed, i])``.
      min_datasets, max_datasets: how many train-pool datasets one task mixes.
      max_classes: C_max, the most classes a task keeps.
      examples_per_class: the most examples per class (N_max = C_max * this).
      split: which split of the bank to sample from.
      min_classes: > 0 varies the class count: each task keeps ``U{min_classes..C}``
        classes (C = min(max_classes, classes of its datasets)); 0 keeps as many as
        ``max_classes`` allows (the paper's sampler).
      min_examples_per_class: > 0 varies the shots: each task draws its per-class cap
        from ``U{min_examples_per_class..examples_per_class}``; 0: always the maximum.
      datasets: the datasets tasks are sampled from (default: the bank's ``train`` pool;
        leave-one-group-out passes every dataset of the modality).
    """

    def __init__(self, bank, zoo: Zoo, *, seed: int, min_datasets: int = 2,
                 max_datasets: int = 4, max_classes: int = 100, examples_per_class: int = 50,
                 split: str = "train", min_classes: int = 0, min_examples_per_class: int = 0,
                 datasets: Sequence[str] | None = None):
        if min_datasets < 1 or max_datasets < min_datasets:
            raise ValueError(f"need 1 <= min_datasets <= max_datasets, got "
                             f"{min_datasets}, {max_datasets}")
        if max_classes < 2 or examples_per_class < 1:
            raise ValueError(f"max_classes={max_classes} must be >= 2 and "
                             f"examples_per_class={examples_per_class} >= 1")
        if min_classes and not 2 <= min_classes <= max_classes:
            raise ValueError(f"min_classes={min_classes} must lie in [2, max_classes="
                             f"{max_classes}] (0 = off)")
        if min_examples_per_class and not 1 <= min_examples_per_class <= examples_per_class:
            raise ValueError(f"min_examples_per_class={min_examples_per_class} must lie in "
                             f"[1, examples_per_class={examples_per_class}] (0 = off)")
        self.bank, self.zoo, self.seed, self.split = bank, zoo, int(seed), split
        self.pool = list(bank.pool("train")) if datasets is None else list(datasets)
        if not self.pool:
            raise ValueError("no dataset to sample tasks from (empty 'train' pool)")
        unknown = [d for d in self.pool if d not in bank.datasets]
        if unknown:
            raise ValueError(f"datasets {unknown} are not in the bank")
        self.min_classes = int(min_classes)
        self.min_examples_per_class = int(min_examples_per_class)
        self.min_datasets = min(min_datasets, len(self.pool))
        self.max_datasets = min(max_datasets, len(self.pool))
        self.examples_per_class = int(examples_per_class)
        self._rows: dict[str, list[np.ndarray]] = {}
        for ds in self.pool:
            self._class_rows(ds)
        biggest = sorted((len(self._rows[d]) for d in self.pool), reverse=True)
        self.max_classes = int(min(max_classes, sum(biggest[:self.max_datasets])))

    def _class_rows(self, ds: str) -> list[np.ndarray]:
        if ds not in self._rows:
            labels = np.asarray(self.bank.labels(ds, self.split))
            num_c = int(self.bank.dataset_info(ds)["num_classes"])
            order = np.argsort(labels, kind="stable")
            bounds = np.searchsorted(labels[order], np.arange(num_c + 1))
            self._rows[ds] = [order[bounds[c]:bounds[c + 1]] for c in range(num_c)]
        return self._rows[ds]

    @property
    def num_examples_max(self) -> int:
        return self.max_classes * self.examples_per_class

    def spec(self, task_index: int) -> TaskSpec:
        """The classes and example rows of training task ``task_index`` (deterministic)."""
        rng = np.random.default_rng([self.seed, int(task_index)])
        n_ds = int(rng.integers(self.min_datasets, self.max_datasets + 1))
        chosen = [self.pool[i] for i in sorted(rng.choice(len(self.pool), n_ds, replace=False))]
        cands = [(ds, c) for ds in chosen for c, rows in enumerate(self._rows[ds]) if len(rows)]
        num_c = min(len(cands), self.max_classes)
        if self.min_classes:          # varied class count (drawn only when switched on)
            num_c = int(rng.integers(min(self.min_classes, num_c), num_c + 1))
        shots = self.examples_per_class
        if self.min_examples_per_class:
            shots = int(rng.integers(self.min_examples_per_class, shots + 1))
        keep = sorted(rng.choice(len(cands), num_c, replace=False))
        class_ds, class_rows = [], []
        for k in keep:
            ds, c = cands[k]
            rows = self._rows[ds][c]
            take = min(len(rows), shots)
            class_ds.append(ds)
            class_rows.append(np.sort(rng.choice(rows, take, replace=False)))
        return TaskSpec(tuple(chosen), tuple(class_ds), tuple(class_rows))

    def downstream_spec(self, dataset: str, *, max_examples_per_class: int | None = None,
                        seed: int = 0) -> TaskSpec:
        """A held-out dataset as one task: all its classes, rows capped per class."""
        rows = self._class_rows(dataset)
        rng = np.random.default_rng([self.seed, 1 << 30, seed])
        out = []
        for r in rows:
            if max_examples_per_class is not None and len(r) > max_examples_per_class:
                r = np.sort(rng.choice(r, max_examples_per_class, replace=False))
            out.append(r)
        keep = [i for i, r in enumerate(out) if len(r)]
        return TaskSpec((dataset,), tuple(dataset for _ in keep), tuple(out[i] for i in keep))

    def materialize(self, specs: Sequence[TaskSpec], *, num_classes: int | None = None,
                    num_examples: int | None = None, with_metric_inputs: bool = True) -> dict:
        """Stacks tasks into padded arrays (see the module docstring for shapes).

        Args:
          specs: T task specs.
          num_classes: C_max to pad to (default ``self.max_classes``).
          num_examples: N_max to pad to (default ``num_classes * examples_per_class``).
          with_metric_inputs: also return per-PTM ``features``/``source_probs`` lists.

        Returns:
          dict of numpy arrays with a leading task axis T; ``features`` and
          ``source_probs`` are lists over PTMs (None for PTMs without a head).
        """
        zoo = self.zoo
        c_max = int(num_classes or self.max_classes)
        n_max = int(num_examples or c_max * self.examples_per_class)
        t = len(specs)
        out = dict(
            psi_centres=np.zeros((t, c_max, zoo.psi_dim), np.float32),
            class_mask=np.zeros((t, c_max), bool),
            specific_centres=np.zeros((t, zoo.num_models, c_max, zoo.max_dim), np.float32),
            labels=np.zeros((t, n_max), np.int32),
            example_mask=np.zeros((t, n_max), bool),
            num_classes=np.zeros((t,), np.int32),
        )
        if with_metric_inputs:
            out["features"] = [np.zeros((t, n_max, d), np.float32) for d in zoo.dims]
            out["source_probs"] = [np.zeros((t, n_max, s), np.float32) if h else None
                                   for h, s in zip(zoo.has_source_head, zoo.num_source_classes)]
        for i, spec in enumerate(specs):
            if spec.num_classes > c_max or spec.num_examples > n_max:
                raise ValueError(f"task {i} has {spec.num_classes} classes / {spec.num_examples}"
                                 f" examples, more than the padding {c_max} / {n_max}")
            labels = np.concatenate([np.full(len(r), c, np.int32)
                                     for c, r in enumerate(spec.class_rows)])
            n = len(labels)
            mask = np.ones(n, bool)
            out["labels"][i, :n] = labels
            out["example_mask"][i, :n] = True
            out["class_mask"][i, :spec.num_classes] = True
            out["num_classes"][i] = spec.num_classes
            out["psi_centres"][i] = class_centres(self._gather(spec, self.bank.psi),
                                                  labels, mask, c_max)
            for m, name in enumerate(zoo.models):
                feats = self._gather(spec, lambda ds, split, _n=name:
                                     self.bank.features(_n, ds, split))
                out["specific_centres"][i, m, :, :feats.shape[1]] = class_centres(
                    feats, labels, mask, c_max)
                if with_metric_inputs:
                    out["features"][m][i, :n] = feats
                    if zoo.has_source_head[m]:
                        out["source_probs"][m][i, :n] = self._gather(
                            spec, lambda ds, split, _n=name: self.bank.source_probs(_n, ds, split))
        return out

    def _gather(self, spec: TaskSpec, getter) -> np.ndarray:
        """Rows of every task class, concatenated in class order (float32)."""
        parts = []
        by_ds: dict[str, np.ndarray] = {}
        for ds, rows in zip(spec.class_dataset, spec.class_rows):
            if ds not in by_ds:
                by_ds[ds] = getter(ds, self.split)
            parts.append(np.asarray(by_ds[ds][rows], np.float32))
        return np.concatenate(parts, axis=0)
