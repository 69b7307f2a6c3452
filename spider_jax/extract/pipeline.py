"""Extraction pipeline: run adapters over sources and write a resumable feature bank.

``build_bank`` declares every model and task in the bank, writes the labels, then runs
one *unit* per network (all its pending (source, tasks) pairs, so each network loads once
and one forward pass serves all of its taps: members ``network@tap`` and possibly psi)
on a pool of single-threaded worker processes (one per core), longest units first.
Items of a source are encoded once, in a fixed order and in batches, and the features of
each task are the rows of its items. Arrays are written atomically per (model, task)
after each source, so an interrupted run loses at most one source's work for the units
in flight and a rerun skips every finished array. Features and psi are stored float16
(after checking they fit), source-head probabilities float32.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue as queue_lib
import sys
import time
from typing import Sequence

import numpy as np

from spider_jax import bank as bank_lib
from spider_jax.extract.adapters import Adapter, Tap
from spider_jax.extract.sources import Source

FLOAT16_MAX = float(np.finfo(np.float16).max)


def _single_thread_env() -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # never reach for a hub
        os.environ.setdefault(var, "1")
    try:
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
    except (ImportError, RuntimeError):
        pass


def _to_float16(x: np.ndarray, what: str) -> np.ndarray:
    big = float(np.abs(x).max()) if x.size else 0.0
    if not np.isfinite(big):
        raise ValueError(f"{what}: the model produced NaN or Inf")
    if big > FLOAT16_MAX:
        raise ValueError(f"{what}: |value| {big:.3g} overflows float16; store float32 instead")
    return x.astype(np.float16)


def _routes(adapter: Adapter, as_psi: bool) -> list[tuple[Tap, str]]:
    """(tap, "features" | "psi") for every output of `adapter` (all psi when `as_psi`)."""
    return [(t, "psi" if (as_psi or t.psi) else "features") for t in adapter.taps()]


def _route_arrays(tap: Tap, kind: str, task: str) -> list[str]:
    if kind == "psi":
        return [bank_lib.psi_path(task, "train")]
    paths = [bank_lib.features_path(tap.name, task, "train")]
    if tap.num_source_classes:
        paths.append(bank_lib.source_probs_path(tap.name, task, "train"))
    return paths


def _pending_tasks(writer, routes, source: Source) -> list[str]:
    """Tasks of `source` for which some output of the unit is still missing."""
    return [t.name for t in source.tasks
            if not all(writer.has_array(p) for tap, kind in routes for p in _route_arrays(tap, kind, t.name))]


def _run_unit(unit: dict, root: str, progress=None) -> dict:
    """Encodes one network's pending sources (one forward pass for all its taps) and
    writes every tap's arrays. Runs in a worker."""
    _single_thread_env()
    adapter: Adapter = unit["adapter"]
    routes = unit["routes"]
    writer = bank_lib.BankWriter(root)  # reads the manifest; only writes arrays
    start = time.time()
    adapter.load()
    written = 0
    for part in unit["parts"]:
        items, n = part["items"], len(part["items"])
        outs = {tap.key: ([], []) for tap, _ in routes}
        for lo in range(0, n, adapter.batch_size):
            batch = items[lo:lo + adapter.batch_size]
            for key, (f, p) in adapter.encode_taps(batch).items():
                if key in outs:
                    outs[key][0].append(f)
                    if p is not None:
                        outs[key][1].append(p)
            if progress is not None:
                progress.put(len(batch))
        for tap, kind in routes:
            fl, pl = outs[tap.key]
            feats = np.concatenate(fl) if fl else np.zeros((0, tap.dim), np.float32)
            probs = np.concatenate(pl) if pl else None
            for task_name, rows in part["tasks"]:
                if kind == "psi":
                    writer.write_psi(task_name, "train", _to_float16(feats[rows], f"psi {tap.name}/{task_name}"))
                else:
                    if probs is not None and tap.num_source_classes:
                        writer.write_source_probs(tap.name, task_name, "train", probs[rows].astype(np.float32))
                    writer.write_features(tap.name, task_name, "train",
                                          _to_float16(feats[rows], f"{tap.name}/{task_name}"))
                written += 1
    notes = {k: getattr(adapter, k) for k in ("num_empty", "num_char_fallback") if hasattr(adapter, k)}
    return {"model": adapter.name, "kind": unit["kind"], "members": [t.name for t, _ in routes],
            "arrays": written, "items": sum(len(p["items"]) for p in unit["parts"]),
            "seconds": time.time() - start, "notes": notes}


def _worker_entry(unit, root, progress):
    try:
        return _run_unit(unit, root, progress)
    except BaseException as e:  # report which model failed instead of a bare pool traceback
        raise RuntimeError(f"extraction of {unit['adapter'].name} failed: {type(e).__name__}: {e}") from None


def networks(models: dict[str, Adapter], psi: dict[str, Adapter]) -> list[tuple[Adapter, bool]]:
    """Every adapter to run once, with whether it is a psi-only adapter. A network in
    `models` may also carry the psi tap of its modality (then `psi` need not name it)."""
    out, seen = [], set()
    for a, as_psi in [(a, False) for a in models.values()] + [(a, True) for a in psi.values()]:
        if id(a) not in seen:
            seen.add(id(a))
            out.append((a, as_psi))
    return out


def psi_spec(models: dict[str, Adapter], psi: dict[str, Adapter]) -> dict[str, dict]:
    """The manifest's psi entry {modality: {"name", "dim"}} (one psi per modality)."""
    spec = {}
    for a, as_psi in networks(models, psi):
        for tap, kind in _routes(a, as_psi):
            if kind == "psi":
                if a.modality in spec and spec[a.modality]["name"] != tap.name:
                    raise ValueError(f"two psi encoders for {a.modality}: {spec[a.modality]['name']}, {tap.name}")
                spec[a.modality] = {"name": tap.name, "dim": tap.dim}
    return spec


def declare(root: str, models: dict[str, Adapter], psi: dict[str, Adapter],
            sources: Sequence[Source]) -> bank_lib.BankWriter:
    """Declares models and tasks and writes labels (checking a resumed bank matches)."""
    writer = bank_lib.BankWriter(root, psi=psi_spec(models, psi))
    for a in models.values():
        for tap, kind in _routes(a, False):
            if kind == "features":
                writer.add_model(tap.name, dim=tap.dim, modality=a.modality,
                                 has_source_head=tap.num_source_classes > 0,
                                 num_source_classes=tap.num_source_classes, description=tap.description,
                                 licence=tap.licence or a.licence, network=a.name)
    for s in sources:
        for t in s.tasks:
            writer.add_dataset(t.name, modality=s.modality, class_names=t.class_names, pool=t.pool,
                               source=s.source, licence=s.licence, source_dataset=s.name,
                               **({"group": s.group} if s.group else {}))
            rel = bank_lib.labels_path(t.name, "train")
            if writer.has_array(rel):
                old = np.load(os.path.join(root, rel), allow_pickle=False)
                if not np.array_equal(old, t.labels):
                    raise ValueError(f"{root}/{rel}: existing labels differ from this build's "
                                     "(different data or cap); write to a new --out")
            else:
                writer.write_labels(t.name, "train", t.labels)
    return writer


def plan(writer, models: dict[str, Adapter], psi: dict[str, Adapter], sources: Sequence[Source]):
    """Units of work (one per network: all its taps from one forward pass) for every
    array still missing, longest first."""
    units = []
    for adapter, as_psi in networks(models, psi):
        routes = _routes(adapter, as_psi)
        parts = []
        for s in sources:
            if s.modality != adapter.modality:
                continue
            pending = _pending_tasks(writer, routes, s)
            if not pending:
                continue
            needed = s.needed(pending)
            where = {int(i): k for k, i in enumerate(needed)}
            items = [s.items[int(i)] for i in needed]
            tasks = [(t.name, np.asarray([where[int(i)] for i in t.indices], np.int64))
                     for t in s.tasks if t.name in pending]
            parts.append({"source": s.name, "items": items, "tasks": tasks})
        if parts:
            n = sum(len(p["items"]) for p in parts)
            units.append({"adapter": adapter, "routes": routes, "kind": "psi" if as_psi else "features",
                          "parts": parts, "cost": n * getattr(adapter, "seconds_per_item", 0.01)})
    units.sort(key=lambda u: -u["cost"])
    return units


def build_bank(root: str, models: dict[str, Adapter], psi: dict[str, Adapter],
               sources: Sequence[Source], *, workers: int = 2, progress: bool = True,
               info: dict | None = None, validate: bool = True) -> dict:
    """Builds (or resumes) a feature bank.

    Args:
      root: bank directory.
      models: ranked models {name: Adapter}.
      psi: task encoders {modality: Adapter}.
      sources: dataset sources.
      workers: worker processes (one single-threaded worker per core); <= 1 runs inline.
      progress: show a tqdm bar over encoded items.
      info: extra fields for ``build_info.json`` (e.g. subset, cap).
      validate: check the whole bank at the end (off for a one-modality or one-network
        piece of a bank whose other parts may still be in progress).
    Returns:
      A summary {"units": [...], "seconds": float, "bytes": int}.
    """
    from tqdm import tqdm

    start = time.time()
    writer = declare(root, models, psi, sources)
    units = plan(writer, models, psi, sources)
    total = sum(len(p["items"]) for u in units for p in u["parts"])
    bar = tqdm(total=total, unit="ex", desc="extract", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, mininterval=0.2 if sys.stderr.isatty() else 10.0)
    results = []
    if workers <= 1 or len(units) <= 1:
        _single_thread_env()

        class _Inline:
            def put(self, n):
                bar.update(n)

        for u in units:
            results.append(_run_unit(u, writer.root, _Inline()))
            bar.set_postfix_str(f"done {results[-1]['model']}")
    else:
        ctx = mp.get_context("spawn")
        with ctx.Manager() as manager:
            q = manager.Queue()
            with ctx.Pool(workers, maxtasksperchild=1) as pool:
                pending = [pool.apply_async(_worker_entry, (u, writer.root, q)) for u in units]
                while pending:
                    try:
                        bar.update(q.get(timeout=0.5))
                    except queue_lib.Empty:
                        pass
                    for r in [r for r in pending if r.ready()]:
                        pending.remove(r)
                        results.append(r.get())  # re-raises a worker's error here
                        bar.set_postfix_str(f"done {results[-1]['model']}")
                while not q.empty():
                    bar.update(q.get())
    bar.close()
    writer.close()
    if validate:
        bank_lib.open_bank(root, validate=True)  # the finished bank must pass validation
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
    summary = {"units": results, "seconds": time.time() - start, "bytes": size}
    build_info = {"build_seconds_last_run": summary["seconds"], "bytes": size,
                  "units_last_run": results, **(info or {})}
    with open(os.path.join(root, ".build_info.tmp"), "w") as f:
        json.dump(build_info, f, indent=1)
    os.replace(os.path.join(root, ".build_info.tmp"), os.path.join(root, "build_info.json"))
    return summary


def licence_table(models: dict[str, Adapter], psi: dict[str, Adapter], sources: Sequence[Source]) -> str:
    """Markdown tables of every bank member (ranked and psi) and every dataset, with its
    licence and source, as the bank manifest will record them."""
    lines = ["| member | modality | network | dim | source head | licence | description |",
             "|---|---|---|---|---|---|---|"]
    for a, as_psi in networks(models, psi):
        for tap, kind in _routes(a, as_psi):
            name = tap.name + (" (psi)" if kind == "psi" else "")
            lines.append(f"| {name} | {a.modality} | {a.name} | {tap.dim} | {tap.num_source_classes or ''} |"
                         f" {tap.licence or a.licence} | {tap.description or a.description} |")
    lines += ["", "| dataset | modality | group | pool | examples | classes | licence | source |",
              "|---|---|---|---|---|---|---|---|"]
    for s in sources:
        for t in s.tasks:
            lines.append(f"| {t.name} | {s.modality} | {s.group} | {t.pool} | {len(t.labels)} |"
                         f" {len(t.class_names)} | {s.licence} | {s.source} |")
    return "\n".join(lines) + "\n"
