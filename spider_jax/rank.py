"""Rank a model zoo for one task from the command line (thin absl main over spider_jax.ranker).

A dataset of a feature bank (re-ranking reads the top-k PTMs' features from the bank)::

    python -m spider_jax.rank --workdir=DIR --bank=BANK --dataset=NAME [--k=3] \
        [--format=table|json|csv]

Your own task, as psi features and labels (``.npy``; labels are any integer class ids),
optionally with each PTM's features for re-ranking (``PTM_DIR/{model}.npy`` [N, D_m],
rows in the same order as the labels)::

    python -m spider_jax.rank --workdir=DIR --features=F.npy --labels=L.npy \
        [--k=3 --ptm_features=PTM_DIR]

Your own labelled data: an image folder (``PATH/<class>/*.png``) or a CSV / JSONL table
of texts and labels. The workdir knows which psi encoder and PTM adapters built its zoo,
so rank runs psi on the examples (and, for k > 0, only the top-k PTMs); features are
cached by content hash (``--cache_dir``), so a second call is instant::

    python -m spider_jax.rank --workdir=DIR --data=PATH [--k=3] \
        [--text_field=text --label_field=label] [--cache_dir=DIR]

Every form takes ``--rerank=paper|hybrid`` (how the top k are rescored: the paper's
PTM-specific tokens, or LogME on their features merged into the k = 0 ranking) and
``--anchor=W`` (rank by z(zoo prior) + W z(scores); 0 = the zoo prior alone; see
:mod:`spider_jax.ranker`).

Prints the ranking: every PTM with its rank and score (best first).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from absl import app, flags, logging

from spider_jax import ranker as ranker_lib

def _load(path: str, flag: str = "") -> np.ndarray:
    """An .npy array; a missing or unreadable file is a ValueError naming it."""
    where = f"{flag}={path}" if flag else path
    if not os.path.isfile(path):
        raise ValueError(f"{where}: no such file")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"{where}: not a readable .npy array ({e})") from None


def run(workdir: str, *, bank: str | None = None, dataset: str | None = None,
        split: str = "train", features: str | None = None, labels: str | None = None,
        ptm_features: str | None = None, k: int = 0,
        modality: str | None = None, data: str | None = None, text_field: str = "text",
        label_field: str = "label", cache_dir: str | None = None,
        progress: bool = True, rerank: str = "paper",
        anchor: float | None = None) -> ranker_lib.Ranking:
    """Loads the scorer and ranks the zoo for the task the arguments name."""
    opts = dict(rerank=rerank, anchor=anchor)
    if data:
        from spider_jax import owndata
        items, labels, name, data_modality = owndata.load_data(
            data, text_field=text_field, label_field=label_field)
        if modality and modality != data_modality:
            raise ValueError(f"--data {data} holds {data_modality} examples, not {modality}")
        r = ranker_lib.Ranker.from_workdir(workdir, modality=data_modality)
        return r.rank_data(items, labels, k=k, name=name, cache_dir=cache_dir,
                           progress=progress, **opts)
    if bank and dataset:
        from spider_jax import bank as bank_lib
        b = bank_lib.open_bank(bank, validate=False)
        r = ranker_lib.Ranker.from_workdir(
            workdir, modality=modality or b.dataset_info(dataset)["modality"])
        return r.rank_bank_dataset(b, dataset, k=k, split=split, **opts)
    if features and labels:
        r = ranker_lib.Ranker.from_workdir(workdir, modality=modality)
        name = os.path.splitext(os.path.basename(features))[0]
        task = ranker_lib.Task.from_features(np.asarray(_load(features, "--features"), np.float32),
                                             np.asarray(_load(labels, "--labels")), name=name)
        forward = None
        if ptm_features:
            def forward(model: str) -> np.ndarray:
                path = os.path.join(ptm_features, f"{model}.npy")
                if not os.path.exists(path):
                    raise ValueError(f"re-ranking needs {path} (features of {model!r})")
                return np.asarray(_load(path), np.float32)
        return r.rank(task, k=k, forward=forward, **opts)
    raise ValueError("give --data, or --bank and --dataset, or --features and --labels")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    fl = flags.FLAGS
    logging.set_verbosity(logging.WARNING)   # keep the terminal for the ranking
    try:
        result = run(fl.workdir, bank=fl.bank, dataset=fl.dataset, split=fl.split,
                     features=fl.features, labels=fl.labels, ptm_features=fl.ptm_features,
                     k=fl.k, modality=fl.modality, data=fl.data, text_field=fl.text_field,
                     label_field=fl.label_field, cache_dir=fl.cache_dir, rerank=fl.rerank,
                     anchor=None if fl.anchor is None else float(fl.anchor))
    except (ValueError, OSError) as e:
        raise SystemExit(f"error: {e}") from None
    text = {"table": result.to_table, "json": result.to_json, "csv": result.to_csv}[fl.format]()
    print(text.rstrip("\n"))


def _define_flags() -> None:
    """Flags are defined only when run as a program (importing run() defines none)."""
    flags.DEFINE_string("workdir", None, "training workdir (checkpoint + config)")
    flags.DEFINE_string("bank", None, "feature bank root (with --dataset)")
    flags.DEFINE_string("dataset", None, "dataset of the bank to rank the zoo for")
    flags.DEFINE_string("split", "train", "bank split holding the task's labelled examples")
    flags.DEFINE_string("features", None, "psi features [N, D_psi] (.npy)")
    flags.DEFINE_string("labels", None, "labels [N] (.npy)")
    flags.DEFINE_string("ptm_features", None,
                        "directory of {model}.npy [N, D_m] for re-ranking (k > 0)")
    flags.DEFINE_string("data", None, "your labelled data: an image folder PATH/<class>/* "
                        "or a .csv / .jsonl file of texts and labels")
    flags.DEFINE_string("text_field", "text", "text column / key of --data (CSV, JSONL)")
    flags.DEFINE_string("label_field", "label", "label column / key of --data (CSV, JSONL)")
    flags.DEFINE_string("cache_dir", None, "feature cache for --data (default "
                        "$SPIDER_JAX_CACHE or ~/.cache/spider_jax/features)")
    flags.DEFINE_integer("k", 0, "re-ranking budget: rescore the top k with their own features")
    flags.DEFINE_string("modality", None, "scorer to use when the workdir holds one per "
                        "modality (default: the dataset's, or the only one)")
    flags.DEFINE_enum("rerank", "paper", ["paper", "hybrid"], "k > 0: rescore the top k "
                      "with the paper's PTM-specific tokens, or reorder them by LogME on "
                      "their own features (hybrid)")
    flags.DEFINE_string("anchor", None, "rank by z(zoo prior) + ANCHOR z(scores) (0: the zoo "
                        "prior alone, inf: the scorer alone; default: the scorer alone)")
    flags.DEFINE_enum("format", "table", ["table", "json", "csv"], "output format")
    flags.mark_flag_as_required("workdir")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
