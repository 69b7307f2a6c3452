"""Ground truth: frozen-feature linear-probe transfer accuracy of every (model, task).

``python -m spider_jax.groundtruth --bank=BANK`` writes ``BANK/groundtruth.json``.

Protocol (linear-probe transfer, never fine-tuning): for each model and bank dataset,
stratified K-fold cross-validation (K = 5) of a closed-form ridge classifier on the
frozen features. Inside each fold the features are standardised with the training
rows' mean and standard deviation, the one-hot targets are centred, and

    W(alpha) = (Z^T Z + alpha n I)^{-1} Z^T (Y - ybar),   predict argmax_c (z W + ybar)_c

for every alpha of a grid (relative to the n training rows) from one eigendecomposition
Z^T Z = V diag(lam) V^T: W = V diag(1 / (lam + alpha n)) V^T Z^T Y. The reported accuracy
is the mean over folds at the alpha with the best mean (std over folds beside it; picking
alpha on the same folds is slightly optimistic, equally for every model). A
second CV seed gives a second ranking; the weighted Kendall tau between the two seeds is
the noise ceiling of the ground truth. "spread" = (best - worst mean) / mean fold std:
tasks whose models all land within noise (spread < ``--min_spread``) get
``"headline": false`` so headline numbers leave them out.

Two backends compute the same numbers (``backend="auto"`` picks by JAX's default platform):

* ``"numpy"`` (CPU): ``spider_jax.ridge_cv``, one pair per worker process, one Gram per
  fold and one float32 Cholesky solve per alpha (LAPACK); benchmarks/groundtruth_speed.py
  times it against the jitted path;
* ``"jax"`` (GPU/TPU): pairs run batched through one compiled, vmapped function
  (``cv_accuracy``): pairs are sorted by size and taken ``chunk`` at a time, padded to
  the chunk's [N (multiple of 64), D, C] with example and class masks (padding changes no
  accuracy), so equal-sized tasks share a compilation; one eigendecomposition per fold
  serves every alpha. When the padded N < D the dual (kernel) form is used instead, with
  the same solution.

``probe_tasks`` takes a batch of tasks as padded arrays with masks ([T, N, D] features,
[T, N] labels and mask) and returns per-task mean/std accuracy; ``linear_probe`` takes a
list of ragged pairs.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from spider_jax import ridge_cv
from spider_jax.ridge_cv import stratified_folds  # noqa: F401  (part of this module's API)

DEFAULT_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
PROTOCOL = ("linear-probe transfer accuracy (not fine-tuning): frozen features, stratified {k}-fold CV"
            " of a closed-form ridge classifier on standardised features, alpha chosen from {alphas}"
            " x n_train by mean CV accuracy; mean and std over folds; seeds {seeds}")


def _fold_accuracy(feats, labels, fold_of, k, example_mask, class_mask, alphas):
    """Test accuracy [A] of fold k for every alpha. Pure; all shapes fixed."""
    num_classes = class_mask.shape[0]
    train = ((fold_of != k) & example_mask).astype(feats.dtype)
    test = ((fold_of == k) & example_mask).astype(feats.dtype)
    n = jnp.maximum(train.sum(), 1.0)
    mu = (train[:, None] * feats).sum(0, keepdims=True) / n  # [1, D]
    var = (train[:, None] * (feats - mu) ** 2).sum(0, keepdims=True) / n
    sd = jnp.sqrt(var)
    sd = jnp.where(sd > 1e-6, sd, 1.0)  # constant (and padded) columns become zeros
    z = (feats - mu) / sd
    z_train = z * train[:, None]
    y = jax.nn.one_hot(labels, num_classes, dtype=feats.dtype)
    ybar = (train[:, None] * y).sum(0, keepdims=True) / n  # [1, C]
    y_train = (y - ybar) * train[:, None]
    if feats.shape[0] < feats.shape[1]:
        # dual form, same solution: W = Z_tr^T (Z_tr Z_tr^T + alpha n I)^{-1} Y_tr, and the
        # masked rows of Z_tr are zero so their dual coefficients are zero too
        lam, vecs = jnp.linalg.eigh(z_train @ z_train.T)  # [N], [N, N]
        proj = vecs.T @ y_train  # [N, C]
        zv = (z @ z_train.T) @ vecs  # [N, N]
    else:
        lam, vecs = jnp.linalg.eigh(z_train.T @ z_train)  # [D], [D, D]
        proj = vecs.T @ (z_train.T @ y_train)  # [D, C]
        zv = z @ vecs  # [N, D]

    def acc_for(alpha):
        scores = zv @ (proj / (lam[:, None] + alpha * n)) + ybar
        scores = jnp.where(class_mask[None, :], scores, -jnp.inf)
        correct = (jnp.argmax(scores, axis=1) == labels).astype(feats.dtype) * test
        return correct.sum() / jnp.maximum(test.sum(), 1.0)

    return jax.vmap(acc_for)(alphas)


@functools.partial(jax.jit, static_argnames=("num_folds",))
def cv_accuracy(feats, labels, fold_ids, example_mask, class_mask, alphas, *, num_folds):
    """Cross-validated ridge accuracies of a batch of (model, task) pairs.

    Args:
      feats: [B, N, D] float32 features (padded rows/columns are zeros).
      labels: [B, N] int32 labels (padded rows: any valid class).
      fold_ids: [B, S, N] int32 fold of each example for each of S seeds.
      example_mask: [B, N] bool, True for real examples.
      class_mask: [B, C] bool, True for real classes.
      alphas: [A] ridge strengths relative to the number of training rows.
      num_folds: K (static).
    Returns:
      [B, S, K, A] test accuracy of every fold, seed and alpha.
    """
    ks = jnp.arange(num_folds)

    def one_pair(x, y, folds, em, cm):
        per_fold = lambda f, k: _fold_accuracy(x, y, f, k, em, cm, alphas)  # noqa: E731
        return jax.vmap(lambda f: jax.vmap(lambda k: per_fold(f, k))(ks))(folds)

    return jax.vmap(one_pair)(feats, labels, fold_ids, example_mask, class_mask)


def _pad(a, shape):
    out = np.zeros(shape, a.dtype)
    out[tuple(slice(0, s) for s in a.shape)] = a
    return out


def resolve_backend(backend: str) -> str:
    """"numpy" on a CPU-only JAX, "jax" on GPU/TPU, for ``backend="auto"``."""
    if backend == "auto":
        return "numpy" if jax.default_backend() == "cpu" else "jax"
    if backend not in ("numpy", "jax"):
        raise ValueError(f"backend must be 'auto', 'numpy' or 'jax', got {backend!r}")
    return backend


def linear_probe(pairs, *, num_folds=5, seeds=(0, 1), alphas=DEFAULT_ALPHAS, chunk=8, progress=None,
                 backend="auto", workers=None):
    """Linear-probe CV accuracy for many (features, labels, num_classes) pairs.

    Args:
      pairs: list of (features [N_i, D_i], labels [N_i] int, num_classes C_i).
      num_folds, seeds, alphas: CV protocol.
      chunk: pairs per compiled call of the "jax" backend (the last chunk is padded by
        repetition).
      progress: optional callable(n_done) for a progress bar.
      backend: "auto", "numpy" (CPU worker processes) or "jax" (jitted; GPU/TPU).
      workers: worker processes of the "numpy" backend (default: the usable cores).
    Returns:
      [P, S, K, A] float64 accuracies.
    Raises:
      ValueError: non-finite features, labels out of range, or a class with fewer
        examples than folds.
    """
    pairs = list(pairs)
    if not pairs:
        return np.zeros((0, len(seeds), num_folds, len(alphas)))
    if resolve_backend(backend) == "numpy":
        return ridge_cv.cv_accuracy_pairs(pairs, num_folds=num_folds, seeds=seeds, alphas=alphas,
                                          workers=workers, progress=progress)
    for i, (x, y, c) in enumerate(pairs):
        ridge_cv.validate_pair(i, x, y, c, num_folds)
    alphas = jnp.asarray(alphas, jnp.float32)
    # Pairs of similar size share a call (padding to the group's [N, D, C]); N is rounded
    # up to a multiple of 64 so equal-sized tasks reuse one compilation.
    order = sorted(range(len(pairs)), key=lambda i: (np.shape(pairs[i][0])[0], np.shape(pairs[i][0])[1]))
    out = [None] * len(pairs)
    for lo in range(0, len(order), chunk):
        idx = order[lo:lo + chunk]
        block = [pairs[i] for i in idx]
        block = block + [block[-1]] * (chunk - len(block))
        n = -(-max(np.shape(x)[0] for x, _, _ in block) // 64) * 64
        d = max(np.shape(x)[1] for x, _, _ in block)
        c = max(cc for _, _, cc in block)
        feats = np.stack([_pad(np.asarray(x, np.float32), (n, d)) for x, _, _ in block])
        labels = np.stack([_pad(np.asarray(y, np.int32), (n,)) for _, y, _ in block])
        folds = np.stack([np.stack([_pad(stratified_folds(y, num_folds, s), (n,)) for s in seeds])
                          for _, y, _ in block])
        emask = np.stack([np.arange(n) < len(y) for _, y, _ in block])
        cmask = np.stack([np.arange(c) < cc for _, _, cc in block])
        acc = np.asarray(cv_accuracy(feats, labels, folds, emask, cmask, alphas, num_folds=num_folds),
                         np.float64)
        for j, i in enumerate(idx):
            out[i] = acc[j]
        if progress is not None:
            progress(len(idx))
    return np.stack(out)


def probe_tasks(feats, labels, mask, num_classes=None, *, num_folds=5, seeds=(0, 1), alphas=DEFAULT_ALPHAS,
                backend="auto", workers=None, chunk=8, progress=None) -> dict:
    """Linear-probe ground truth of a batch of tasks given as padded arrays with masks.

    Args:
      feats: [T, N, D] features; rows where ``mask`` is False are ignored (padded feature
        columns must be constant, e.g. zeros: they standardise to zeros).
      labels: [T, N] int labels (values at masked rows are ignored).
      mask: [T, N] bool, True for the task's real examples.
      num_classes: [T] ints (default: 1 + the largest real label of each task).
      num_folds, seeds, alphas, backend, workers, chunk, progress: as ``linear_probe``.
    Returns:
      {"mean": [T, S], "std": [T, S] (over folds, at the alpha with the best mean),
       "alpha": [T, S] that alpha, "acc": [T, S, K, A] every fold's accuracy}.
    Raises:
      ValueError: shapes that disagree, or a task's bad input (named by its index).
    """
    feats, labels, mask = np.asarray(feats), np.asarray(labels), np.asarray(mask, bool)
    if feats.ndim != 3 or labels.shape != feats.shape[:2] or mask.shape != labels.shape:
        raise ValueError(f"feats [T, N, D], labels [T, N] and mask [T, N] disagree: {feats.shape}, "
                         f"{labels.shape}, {mask.shape}")
    if num_classes is None:
        num_classes = [int(y[m].max()) + 1 if m.any() else 0 for y, m in zip(labels, mask)]
    pairs = [(x[m], y[m], int(c)) for x, y, m, c in zip(feats, labels, mask, num_classes)]
    acc = linear_probe(pairs, num_folds=num_folds, seeds=seeds, alphas=alphas, chunk=chunk, progress=progress,
                       backend=backend, workers=workers)
    stats_ = [summarize(a) for a in acc]
    return {"mean": np.array([s[0] for s in stats_]).reshape(len(pairs), len(seeds)),
            "std": np.array([s[1] for s in stats_]).reshape(len(pairs), len(seeds)),
            "alpha": np.asarray(alphas, np.float64)[np.array([s[2] for s in stats_], int)].reshape(
                len(pairs), len(seeds)),
            "acc": acc}


def summarize(acc):
    """Per-seed mean/std over folds at the alpha with the best mean.

    Args:
      acc: [S, K, A] accuracies of one pair.
    Returns:
      (mean [S], std [S], best alpha index [S]).
    """
    per_alpha = acc.mean(axis=1)  # [S, A]
    best = per_alpha.argmax(axis=1)
    mean = per_alpha[np.arange(acc.shape[0]), best]
    std = acc[np.arange(acc.shape[0]), :, best].std(axis=1)
    return mean, std, best


def compute_groundtruth(b, *, num_folds=5, seeds=(0, 1), alphas=DEFAULT_ALPHAS, min_spread=3.0,
                        datasets=None, include_psi=True, chunk=6, progress=True, backend="auto",
                        workers=None) -> dict:
    """Ground truth of every dataset of an open bank (see the module docstring).

    Returns:
      {dataset: {"models", "mean", "std", "alpha", "mean_seed2", "std_seed2", "seed_tau_w",
                 "spread", "headline", "reference"}}; "mean"/"std" use the first seed.
    """
    from scipy import stats
    from tqdm import tqdm

    datasets = list(datasets or b.datasets)
    jobs = []  # (dataset, name, is_reference)
    for ds in datasets:
        jobs += [(ds, m, False) for m in b.models_for(ds)]
        psi = b.psi_info(b.dataset_info(ds)["modality"])
        if include_psi and psi is not None:
            jobs.append((ds, psi["name"], True))
    bar = tqdm(total=len(jobs), unit="pair", desc="groundtruth", disable=not progress)
    results = {}
    for modality in ("image", "text"):
        mjobs = [j for j in jobs if b.dataset_info(j[0])["modality"] == modality]
        pairs = []
        for ds, name, ref in mjobs:
            x = b.psi(ds) if ref else b.features(name, ds)
            info = b.dataset_info(ds)
            pairs.append((np.asarray(x, np.float32), np.asarray(b.labels(ds)), info["num_classes"]))
        acc = linear_probe(pairs, num_folds=num_folds, seeds=seeds, alphas=alphas, chunk=chunk,
                           progress=bar.update, backend=backend, workers=workers)
        for (ds, name, ref), a in zip(mjobs, acc):
            results[ds, name, ref] = summarize(a)
    bar.close()
    out = {}
    for ds in datasets:
        models = b.models_for(ds)
        stats_ = [results[ds, m, False] for m in models]
        mean = np.array([s[0][0] for s in stats_])
        std = np.array([s[1][0] for s in stats_])
        entry = {"models": models, "mean": mean, "std": std,
                 "alpha": [float(alphas[s[2][0]]) for s in stats_]}
        if len(seeds) > 1:
            mean2 = np.array([s[0][1] for s in stats_])
            entry["mean_seed2"] = mean2
            entry["std_seed2"] = np.array([s[1][1] for s in stats_])
            tau = stats.weightedtau(mean, mean2, rank=None).correlation if len(models) > 1 else 1.0
            entry["seed_tau_w"] = float(np.nan_to_num(tau, nan=1.0))
        spread = float((mean.max() - mean.min()) / max(std.mean(), 1e-12)) if len(models) > 1 else 0.0
        entry["spread"] = spread
        entry["headline"] = bool(spread >= min_spread)
        entry["reference"] = {f"psi:{name}": float(results[ds, name, True][0][0])
                              for d, name, ref in jobs if ref and d == ds}
        entry["num_examples"] = int(b.dataset_info(ds)["splits"]["train"])
        out[ds] = entry
    return out


def merge_entries(old: dict | None, new: dict, protocol: str, datasets) -> dict:
    """Ground truth to write after computing `new` for some datasets: the entries of an
    existing ``groundtruth.json`` (`old`) computed with the same protocol for other datasets
    still in the bank (`datasets`) are kept; a different protocol discards them."""
    if old is None or old.get("protocol") != protocol:
        return dict(new)
    return {d: e for d, e in old["datasets"].items() if d in set(datasets) and d not in new} | new


def protocol_text(num_folds, seeds, alphas) -> str:
    return PROTOCOL.format(k=num_folds, alphas=list(alphas), seeds=list(seeds))


def format_table(gt: dict, b=None) -> str:
    """A plain-text table: one row per dataset, models by descending accuracy."""
    lines = ["linear-probe transfer accuracy (frozen features, 5-fold ridge; not fine-tuning)"]
    for ds, e in gt.items():
        pool = b.dataset_info(ds)["pool"] if b is not None else ""
        order = np.argsort(-np.asarray(e["mean"]))
        models = ", ".join(f"{e['models'][i]} {e['mean'][i]:.3f}" for i in order)
        ref = ", ".join(f"{k} {v:.3f}" for k, v in e.get("reference", {}).items())
        lines.append(f"{ds} [{pool}] n={e.get('num_examples', '?')} spread={e['spread']:.1f} "
                     f"seed_tau_w={e.get('seed_tau_w', float('nan')):.2f} "
                     f"headline={e['headline']}: {models}" + (f" | ref {ref}" if ref else ""))
    return "\n".join(lines)


def main(argv):
    del argv
    from absl import flags

    from spider_jax import bank as bank_lib

    f = flags.FLAGS
    # --datasets updates those datasets' entries of a bank that may still be growing (one
    # modality or network at a time), so only a whole-bank run validates every array.
    b = bank_lib.open_bank(f.bank, validate=not f.datasets)
    seeds = tuple(int(s) for s in f.seeds)
    protocol = protocol_text(f.folds, seeds, f.alphas)
    start = time.time()
    gt = compute_groundtruth(b, num_folds=f.folds, seeds=seeds, alphas=tuple(float(a) for a in f.alphas),
                             min_spread=f.min_spread, datasets=f.datasets, include_psi=f.include_psi,
                             chunk=f.chunk, backend=f.backend, workers=f.workers)
    merged = merge_entries(bank_lib.read_groundtruth(f.bank) if f.datasets else None, gt, protocol, b.datasets)
    bank_lib.write_groundtruth(f.bank, merged, protocol=protocol)
    print(format_table(gt, b))
    print(f"wrote {f.bank}/groundtruth.json in {time.time() - start:.0f} s")


def _define_flags():
    from absl import flags

    flags.DEFINE_string("bank", None, "Feature bank directory.")
    flags.DEFINE_integer("folds", 5, "Stratified CV folds.")
    flags.DEFINE_list("seeds", ["0", "1"], "CV seeds; the first gives mean/std, two give seed_tau_w.")
    flags.DEFINE_list("alphas", [str(a) for a in DEFAULT_ALPHAS], "Ridge strengths (x n_train).")
    flags.DEFINE_float("min_spread", 3.0, "Tasks with (best-worst)/mean std below this are not headline.")
    flags.DEFINE_list("datasets", None, "Only these datasets (default: all); their entries replace"
                      " those in an existing groundtruth.json of the same protocol, the rest are kept.")
    flags.DEFINE_bool("include_psi", True, "Also probe the psi features (stored as 'reference').")
    flags.DEFINE_integer("chunk", 6, "(model, dataset) pairs per compiled call of the jax backend (~0.4 GB"
                         " each at N=2250, D=1280).")
    flags.DEFINE_enum("backend", "auto", ["auto", "numpy", "jax"], "numpy: CPU worker processes (LAPACK);"
                      " jax: jitted (GPU/TPU); auto: numpy when JAX's platform is CPU.")
    flags.DEFINE_integer("workers", None, "Worker processes of the numpy backend (default: usable cores).")
    flags.mark_flag_as_required("bank")


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
