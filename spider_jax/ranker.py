"""Rank a model zoo for one new task with a trained scorer (paper Algorithm 2, A.6, A.7).

Usage::

    r = Ranker.from_workdir("/path/to/workdir")          # checkpoint + config
    task = Task.from_features(psi_feats, labels)            # or Task.from_centres(centres)
    result = r.rank(task)                                   # k = 0: psi class centres only
    result = r.rank(task, k=3, forward=run_ptm)             # re-rank the top 3 (Algorithm 2)
    result = r.rank(task, anchor=0.5)                       # z(zoo prior) + 0.5 z(scores)
    print(result.to_table())

Algorithm 2: score every PTM with the generic task tokens ``mu(T)`` (psi class centres,
Eq. 5), take the top ``k`` of that ranking, run those ``k`` PTMs on the task (``forward``,
or read their features from a bank) to build their PTM-specific class centres
``mu_m(T)``, rescore only those ``k`` with ``sim(theta_m, P_m^T mu_m(T))`` and sort again.
The labels used are only the task's own labelled examples (they define its classes).

Anchoring (issue 11 item 4, not in the paper): ``anchor=w`` ranks by ``z(zoo prior) + w
z(scores)`` (:func:`spider_jax.prior.anchored`), where the zoo prior is each PTM's mean
ground-truth accuracy over the training pool (stored by training); w = 0 is the prior
alone, ``None`` (default) the scorer alone, as in the paper. It is the ``spider_k*`` /
``hybrid_k*`` score of the LOGO benchmark (docs/RESULTS.md), which chooses w on a
validation group; with re-ranking it mirrors that benchmark exactly: the paper's top k come
from the scorer's own k = 0 ranking and the re-ranked scores are anchored; the hybrid
reorders the top k of the anchored ranking.

The k = 0 scores come from :mod:`spider_jax.fastpath` (a one-layer scorer) or
``model.apply``; re-ranking and ranks from scores from :mod:`spider_jax.inference`.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from spider_jax import inference, methods, owndata
from spider_jax import prior as prior_lib
from spider_jax import workdir as workdir_lib
from spider_jax.fastpath import fast_flops_per_task, fast_scores, prepare_fast  # noqa: F401
from spider_jax.inference import class_centres, order_from_scores  # noqa: F401
from spider_jax.model import make_scorer

__all__ = ["Task", "Ranking", "Ranker", "check_zoo", "check_params"]


# ----------------------------------------------------------------------------- tasks
@dataclasses.dataclass(frozen=True)
class Task:
    """A downstream task as the ranker sees it.

    Attributes:
      psi_centres: [C, D_psi] psi class centres (Eq. 5), float32.
      class_mask: [C] bool, True for real classes.
      labels: [N] int32 class indices in [0, C) of the labelled examples (needed for
        re-ranking, k > 0: they build the PTM-specific class centres), or None.
      classes: the original label values, ``classes[c]`` is class c.
      name: a label for reports.
    """

    psi_centres: np.ndarray
    class_mask: np.ndarray
    labels: np.ndarray | None = None
    classes: tuple = ()
    name: str = "task"

    @property
    def num_classes(self) -> int:
        return int(np.sum(self.class_mask))

    @classmethod
    def from_features(cls, psi_features: np.ndarray, labels: np.ndarray,
                      name: str = "task") -> "Task":
        """Task from psi features [N, D_psi] and labels [N] (any integer class ids)."""
        feats = np.asarray(psi_features)
        labels = np.asarray(labels)
        if feats.ndim != 2:
            raise ValueError(f"psi features must be [N, D_psi], got shape {feats.shape}")
        if labels.ndim != 1 or labels.shape[0] != feats.shape[0]:
            raise ValueError(f"labels must be [N] with N = {feats.shape[0]} (the number of "
                             f"feature rows), got shape {labels.shape}")
        if feats.shape[0] < 1:
            raise ValueError("a task needs at least one labelled example")
        if not np.issubdtype(labels.dtype, np.integer):
            if np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels)) \
                    and np.all(labels == np.round(labels)):
                labels = labels.astype(np.int64)
            else:
                raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
        if not np.all(np.isfinite(feats)):
            raise ValueError(f"psi features contain NaN or Inf "
                             f"({int(np.sum(~np.isfinite(feats)))} values)")
        classes, index = np.unique(labels, return_inverse=True)
        centres, cmask = inference.centres_from_examples(feats.astype(np.float32), index.astype(np.int32),
                                           int(classes.shape[0]))
        return cls(centres, cmask, index.astype(np.int32), tuple(classes.tolist()), name)

    @classmethod
    def from_centres(cls, psi_centres: np.ndarray, class_mask: np.ndarray | None = None,
                     name: str = "task") -> "Task":
        """Task from precomputed psi class centres [C, D_psi] (+ optional [C] mask)."""
        centres = np.asarray(psi_centres, np.float32)
        if centres.ndim != 2:
            raise ValueError(f"psi class centres must be [C, D_psi], got shape {centres.shape}")
        mask = np.ones(centres.shape[0], bool) if class_mask is None \
            else np.asarray(class_mask).astype(bool)
        if mask.shape != (centres.shape[0],):
            raise ValueError(f"class_mask must be [C] = [{centres.shape[0]}], got {mask.shape}")
        if not np.all(np.isfinite(centres[mask])):
            raise ValueError("psi class centres contain NaN or Inf")
        if not mask.any():
            raise ValueError("class_mask marks no real class")
        return cls(np.where(mask[:, None], centres, 0.0).astype(np.float32), mask, None,
                   tuple(range(centres.shape[0])), name)

    @classmethod
    def from_bank(cls, bank: Any, dataset: str, split: str = "train") -> "Task":
        """The task of a bank dataset's split (psi features + labels)."""
        return cls.from_features(np.asarray(bank.psi(dataset, split), np.float32),
                                 np.asarray(bank.labels(dataset, split)), name=dataset)


# ----------------------------------------------------------------------------- results
@dataclasses.dataclass(frozen=True)
class Ranking:
    """Every PTM of the zoo with its score and rank for one task.

    Attributes:
      models: PTM names in zoo order.
      scores: [M] final scores (higher = more transferable).
      coarse_scores: [M] the k = 0 scores (generic task tokens only).
      reranked: [M] bool, PTMs rescored with their own class centres.
      k: the re-ranking budget used.
      task: the task's name.
    """

    models: tuple[str, ...]
    scores: np.ndarray
    coarse_scores: np.ndarray
    reranked: np.ndarray
    k: int = 0
    task: str = "task"

    @property
    def order(self) -> np.ndarray:
        """Zoo indices from best to worst (ties: zoo order)."""
        return order_from_scores(self.scores)

    @property
    def ranks(self) -> np.ndarray:
        """[M] rank of each PTM in zoo order, 1 = best."""
        return inference.ranks_from_scores(self.scores)

    @property
    def best(self) -> str:
        return self.models[int(self.order[0])]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per PTM, best first: rank, model, score, coarse_score, reranked."""
        return [{"rank": r + 1, "model": self.models[i], "score": float(self.scores[i]),
                 "coarse_score": float(self.coarse_scores[i]), "reranked": bool(self.reranked[i])}
                for r, i in enumerate(self.order)]

    def to_json(self) -> str:
        return json.dumps({"task": self.task, "k": self.k, "ranking": self.rows()}, indent=2)

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["rank", "model", "score", "coarse_score",
                                                 "reranked"], lineterminator="\n")
        writer.writeheader()
        for row in self.rows():
            writer.writerow({**row, "score": f"{row['score']:.6g}",
                             "coarse_score": f"{row['coarse_score']:.6g}"})
        return buf.getvalue()

    def to_table(self) -> str:
        width = max([5] + [len(m) for m in self.models])
        head = f"Model Spider ranking for {self.task!r} (k = {self.k})"
        lines = [head, f"{'rank':>4}  {'model':<{width}}  {'score':>10}"
                 + ("  k=0 score" if self.k else "")]
        for row in self.rows():
            line = f"{row['rank']:>4}  {row['model']:<{width}}  {row['score']:>10.4f}"
            if self.k:
                line += f"  {row['coarse_score']:>9.4f}" + ("  *" if row["reranked"] else "")
            lines.append(line)
        if self.k:
            lines.append("* rescored with its own class centres (PTM-specific features)")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- ranker
def check_zoo(checkpoint_models: Sequence[str], checkpoint_dims: Sequence[int],
              models: Sequence[str], dims: Sequence[int] | None = None) -> None:
    """ValueError unless a zoo (names, dims) matches the checkpoint's, in order."""
    ck, zo = list(checkpoint_models), list(models)
    if ck != zo:
        missing = [m for m in ck if m not in zo]
        extra = [m for m in zo if m not in ck]
        raise ValueError(
            f"the zoo differs from the checkpoint's: checkpoint has {len(ck)} models, zoo has "
            f"{len(zo)}; missing from zoo: {missing[:8]}; not in checkpoint: {extra[:8]}"
            + ("" if missing or extra else "; same models in a different order"))
    if dims is not None and list(map(int, dims)) != list(map(int, checkpoint_dims)):
        bad = [(n, a, b) for n, a, b in zip(ck, checkpoint_dims, dims) if int(a) != int(b)]
        raise ValueError(f"feature dims differ from the checkpoint's (model, checkpoint, zoo): "
                         f"{bad[:8]}")


class Ranker:
    """A trained scorer plus its zoo: ranks PTMs for new tasks (k = 0 and re-ranking).

    Args:
      model: the :class:`spider_jax.model.SpiderScorer`.
      variables: its variables ``{"params": ...}``.
      models: PTM names in the scorer's order (``len == len(model.model_dims)``).
      max_classes: the largest class count the model was built for (C_max); tasks are
        padded to it only when they exceed the smallest power-of-two bucket.
      config: the training config (kept for reference), optional.
      prior: [M] zoo prior (each PTM's mean accuracy over the training pool, in the order
        of ``models``) for ``rank(..., anchor=w)``; :meth:`from_workdir` reads the one
        training stored. Optional.
    """

    def __init__(self, model: Any, variables: Mapping[str, Any], models: Sequence[str], *,
                 max_classes: int, config: Any = None, prior: np.ndarray | None = None):
        self.model = model
        self.variables = variables if "params" in variables else {"params": variables}
        self.models = tuple(models)
        self.dims = tuple(int(x) for x in model.model_dims)
        self.max_classes = int(max_classes)
        self.config = config
        self.prior = None if prior is None else np.asarray(prior, np.float64)
        if self.prior is not None and (self.prior.shape != (len(self.models),)
                                       or not np.all(np.isfinite(self.prior))):
            raise ValueError(f"the zoo prior must be [M] = [{len(self.models)}] finite values, "
                             f"got shape {self.prior.shape}")
        p = self.variables["params"]
        p = jax.tree.map(lambda a: a[0], p["members"]) if "members" in p else p  # one member
        if len(self.models) != len(self.dims):
            raise ValueError(f"{len(self.models)} model names for a scorer of "
                             f"{len(self.dims)} PTMs")
        if tuple(p["model_tokens"].shape) != (len(self.dims), int(model.d)):
            raise ValueError(f"checkpoint model_tokens {tuple(p['model_tokens'].shape)} do not "
                             f"match the config's scorer ({len(self.dims)} PTMs, d={model.d}): "
                             f"a checkpoint from another config?")
        self.psi_dim = int(p["task_proj"]["kernel"].shape[0])
        check_params(model, self.variables, self.psi_dim)
        self._fast = prepare_fast(self.variables, model) if int(model.num_layers) == 1 else None
        self._score_jit = None
        self.extraction: dict | None = None   # the zoo's adapters (from_workdir), for rank_data

    @classmethod
    def from_workdir(cls, workdir: str, modality: str | None = None) -> "Ranker":
        """Restores the latest checkpoint and its config from a training workdir.

        Args:
          workdir: the training workdir; a run with ``config.modality = "all"`` keeps one
            scorer per modality in ``workdir/<modality>``.
          modality: which of those to load ("image" or "text"); optional when the workdir
            holds a single scorer.
        """
        run = workdir_lib.read_run(workdir_lib.find_run(workdir, modality))
        config, zoo = run.config, run.zoo
        model = make_scorer(config, zoo.dims)
        try:
            params = workdir_lib.restore_params(run, model)
        except ValueError as e:
            if "shape" not in str(e):
                raise
            raise ValueError(f"the checkpoint in {workdir} does not match the scorer its config "
                             f"builds (a checkpoint from another config?): {e}") from e
        names = list(zoo.models)
        check_zoo(names, model.model_dims, names, zoo.dims)
        ranker = cls(model, params, names, max_classes=run.max_classes, config=config,
                     prior=prior_lib.prior_vector(run.zoo_prior, names))
        ranker.extraction = owndata.load_spec(run, config, zoo.modality)
        if getattr(zoo, "psi_dim", ranker.psi_dim) != ranker.psi_dim:
            raise ValueError(f"the zoo's psi dim {zoo.psi_dim} != the checkpoint's "
                             f"{ranker.psi_dim}")
        return ranker

    # -- scoring functions -------------------------------------------------------------
    def batch_scorer(self) -> tuple[Callable[..., jax.Array], Any]:
        """The pure k = 0 batch scorer and its parameters.

        Returns:
          ``(fn, params)`` with ``fn(params, psi_centres [B,C,Dpsi], class_mask [B,C]) ->
          [B, M]`` (unjitted; jit and shard it as you like): :func:`fast_scores` over the
          folded parameters for a one-layer scorer, else ``model.apply``.
        """
        if self._fast is not None:
            return fast_scores, self._fast
        apply = functools.partial(self.model.apply, deterministic=True)
        return (lambda variables, centres, mask: apply(variables, centres, mask)), self.variables

    def scores_k0(self, psi_centres: np.ndarray, class_mask: np.ndarray) -> np.ndarray:
        """k = 0 scores [B, M] for a batch of padded tasks (validated)."""
        centres, mask = self.check_batch(psi_centres, class_mask)
        if self._score_jit is None:
            fn, params = self.batch_scorer()
            self._score_jit = (jax.jit(fn), params)
        fn, params = self._score_jit
        return np.asarray(fn(params, centres, mask))

    def check_batch(self, psi_centres, class_mask):
        """ValueErrors for a batch of tasks the scorer was not built for."""
        centres = np.asarray(psi_centres, np.float32)
        mask = np.asarray(class_mask).astype(bool)
        if centres.ndim != 3:
            raise ValueError(f"psi class centres must be [B, C, D_psi], got {centres.shape}")
        if centres.shape[2] != self.psi_dim:
            raise ValueError(f"psi feature width {centres.shape[2]} != the checkpoint's psi "
                             f"dim {self.psi_dim}")
        if mask.shape != centres.shape[:2]:
            raise ValueError(f"class mask shape {mask.shape} != centres' [B, C] "
                             f"{centres.shape[:2]}")
        real = mask.sum(axis=1)
        if real.size and real.max() > self.max_classes:
            raise ValueError(f"a task has {int(real.max())} classes, more than the "
                             f"{self.max_classes} the model was built for (max_classes)")
        if not np.all(np.isfinite(centres[mask])):
            raise ValueError("psi class centres contain NaN or Inf")
        return centres, mask

    def _padded(self, task: Task) -> tuple[np.ndarray, np.ndarray, int]:
        c = task.psi_centres.shape[0]
        if task.psi_centres.shape[1] != self.psi_dim:
            raise ValueError(f"psi feature width {task.psi_centres.shape[1]} != the "
                             f"checkpoint's psi dim {self.psi_dim}")
        if task.num_classes > self.max_classes:
            raise ValueError(f"task {task.name!r} has {task.num_classes} classes, more than "
                             f"the {self.max_classes} the model was built for (max_classes)")
        cp = min(self.max_classes, inference.bucket(c, 4))
        cp = max(cp, c)
        centres = np.zeros((1, cp, self.psi_dim), np.float32)
        centres[0, :c] = task.psi_centres
        mask = np.zeros((1, cp), bool)
        mask[0, :c] = task.class_mask
        return centres, mask, cp

    # -- ranking -----------------------------------------------------------------------
    def rank(self, task: Task, *, k: int = 0,
             forward: Callable[[str], np.ndarray] | None = None, rerank: str = "paper",
             metric: str = "logme", anchor: float | None = None) -> Ranking:
        """Ranks every PTM for ``task`` (Algorithm 2).

        Args:
          task: a :class:`Task` (psi class centres; labels needed when ``k > 0``).
          k: re-ranking budget: the top ``k`` PTMs of the k = 0 ranking are rescored with
            their PTM-specific class centres.
          forward: ``forward(model_name) -> features [N, D_m]`` of that PTM on the task's
            labelled examples (same order as the labels); called for the top-k PTMs only.
          rerank: "paper" (Algorithm 2: PTM-specific tokens) or "hybrid" (the top-k block
            reordered by ``metric`` of those PTMs' features, :func:`spider_jax.inference.hybrid_merge`).
          metric: the hybrid's forward-based metric (a feature-input method of
            :mod:`spider_jax.methods`).
          anchor: None (the scorer alone, the paper) or a weight w >= 0 (inf allowed):
            scores become ``z(zoo prior) + w z(scores)`` (see the module docstring); needs
            the ranker's ``prior``.

        Returns:
          A :class:`Ranking`.
        """
        if not 0 <= int(k) <= len(self.models):
            raise ValueError(f"k={k} must be in [0, {len(self.models)}] (the zoo size)")
        if rerank not in ("paper", "hybrid"):
            raise ValueError(f"rerank must be 'paper' or 'hybrid', got {rerank!r}")
        if rerank == "hybrid" and methods.input_of(metric) != "features":
            raise ValueError(f"the hybrid metric must read PTM features; {metric!r} reads "
                             f"{methods.input_of(metric)}")
        if anchor is not None:
            if self.prior is None:
                raise ValueError("anchor needs the zoo prior: this run stored none (trained "
                                 "without ground truth of its training pool?); build the "
                                 "Ranker with prior=")
            anchor = prior_lib.check_weight(anchor)    # before any forward pass
        centres, mask, cp = self._padded(task)
        coarse = self.scores_k0(centres, mask)[0]
        if anchor is not None and rerank == "hybrid":    # the hybrid reorders the anchored top k
            coarse = prior_lib.anchored(self.prior, coarse, anchor)
        scores = coarse.copy()
        reranked = np.zeros(len(self.models), bool)
        if k > 0:
            if forward is None:
                raise ValueError("k > 0 needs forward(model_name) -> features [N, D_m] "
                                 "(or rank_bank_dataset with a bank)")
            if task.labels is None:
                raise ValueError("k > 0 needs the task's labels (build it with "
                                 "Task.from_features), to form PTM-specific class centres")
            p = self.variables["params"]
            if rerank == "paper" and "specific_proj" not in p.get("members", p):
                raise ValueError("this checkpoint has no PTM-specific projections (trained "
                                 "without specific tokens): only k = 0 is available")
            top = order_from_scores(coarse)[:k]
            if rerank == "hybrid":
                feats = [np.asarray(forward(self.models[i]), np.float32)
                         if i in set(top.tolist()) else None for i in range(len(self.models))]
                for i in top:
                    self._check_features(self.models[i], feats[i], task)
                scored = methods.score_zoo(metric, feats, task.labels, num_classes=cp)
                reranked[top] = True
                scores = np.asarray(inference.hybrid_merge(
                    coarse[None].astype(np.float32), scored[None].astype(np.float32),
                    reranked[None]))[0]
                return Ranking(self.models, scores, coarse, reranked, int(k), task.name)
            specific = np.zeros((1, len(self.models), cp, max(self.dims)), np.float32)
            for i in top:
                specific[0, i, :, :self.dims[i]] = self._specific_centres(
                    self.models[i], forward(self.models[i]), task, cp)
            smask = np.zeros((1, len(self.models)), bool)
            smask[0, top] = True
            scores = np.asarray(inference.rescore(self.model, self.variables, centres, mask,
                                                  specific, smask, coarse[None]))[0]
            reranked[top] = True
        if anchor is not None and rerank == "paper":     # anchor the (re-ranked) scores
            scores = prior_lib.anchored(self.prior, scores, anchor)
            coarse = prior_lib.anchored(self.prior, coarse, anchor)
        return Ranking(self.models, scores, coarse, reranked, int(k), task.name)

    def rank_data(self, items: Sequence[Any], labels: Sequence[Any], *, k: int = 0,
                  name: str = "data", cache_dir: str | None = None,
                  progress: bool = True, **rank_kwargs) -> Ranking:
        """Ranks the zoo for raw labelled examples: runs the zoo's own psi encoder on them
        (and, for ``k > 0``, only the top-k PTMs' networks), as recorded in the workdir.

        Args:
          items: images (uint8 arrays [H, W] or [H, W, 3]) or texts (str).
          labels: one label per example (any values; at least two classes).
          k: re-ranking budget (Algorithm 2).
          name: the task's name in the result.
          cache_dir: where features are cached by content hash (default
            :func:`spider_jax.owndata.default_cache_dir`): a second call is instant.
          progress: tqdm bar while encoding.
          rank_kwargs: ``rerank`` / ``metric`` / ``anchor`` of :meth:`rank`.
        """
        from spider_jax import owndata
        return owndata.rank_data(self, items, labels, k=k, name=name, cache_dir=cache_dir,
                                 progress=progress, **rank_kwargs)

    def _specific_centres(self, name: str, feats: np.ndarray, task: Task, cp: int) -> np.ndarray:
        feats = self._check_features(name, feats, task)
        centres, _ = inference.centres_from_examples(feats.astype(np.float32), task.labels, cp)
        return centres

    def _check_features(self, name: str, feats: np.ndarray, task: Task) -> np.ndarray:
        """``forward(name)``'s output, validated (ValueError naming the PTM)."""
        feats = np.asarray(feats)
        i = self.models.index(name)
        n = task.labels.shape[0]
        if feats.ndim != 2 or feats.shape[0] != n:
            raise ValueError(f"forward({name!r}) returned shape {feats.shape}; expected "
                             f"[N, D_m] with N = {n} task examples")
        if feats.shape[1] != self.dims[i]:
            raise ValueError(f"forward({name!r}) returned width {feats.shape[1]}; the checkpoint "
                             f"expects D_m = {self.dims[i]} for {name!r}")
        if not np.all(np.isfinite(feats)):
            raise ValueError(f"forward({name!r}) returned NaN or Inf features")
        return feats

    def rank_bank_dataset(self, bank: Any, dataset: str, *, k: int = 0,
                          split: str = "train", **kwargs) -> Ranking:
        """Ranks the zoo for a bank dataset; re-ranking reads the top-k features from it.
        ``kwargs``: ``rerank`` / ``metric`` / ``anchor`` of :meth:`rank`."""
        models = bank.models_for(dataset)
        check_zoo(self.models, self.dims, models,
                  [bank.model_info(m)["dim"] for m in models])
        task = Task.from_bank(bank, dataset, split)
        return self.rank(task, k=k, **kwargs,
                         forward=lambda name: np.asarray(bank.features(name, dataset, split)))


def check_params(model: Any, variables: Mapping[str, Any], psi_dim: int) -> None:
    """ValueError naming every parameter whose shape differs from what ``model`` builds."""
    m = len(model.model_dims)
    args = (np.zeros((1, 2, psi_dim), np.float32), np.ones((1, 2), bool))
    p = variables["params"]
    if "specific_proj" in p.get("members", p):
        args += (np.zeros((1, m, 2, max(model.model_dims)), np.float32), np.zeros((1, m), bool))
    want = jax.eval_shape(functools.partial(model.init, deterministic=True),
                          jax.random.PRNGKey(0), *args)["params"]
    have = variables["params"]
    want_flat = {jax.tree_util.keystr(k): v.shape for k, v in
                 jax.tree_util.tree_flatten_with_path(want)[0]}
    have_flat = {jax.tree_util.keystr(k): tuple(np.shape(v)) for k, v in
                 jax.tree_util.tree_flatten_with_path(have)[0]}
    bad = [f"{k}: checkpoint {have_flat.get(k)} vs config {want_flat.get(k)}"
           for k in sorted(set(want_flat) | set(have_flat))
           if have_flat.get(k) != (tuple(want_flat[k]) if k in want_flat else None)]
    if bad:
        raise ValueError("the checkpoint does not match the scorer its config builds (a "
                         "checkpoint from another config?): " + "; ".join(bad[:6]))
