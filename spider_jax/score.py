"""Batch-score thousands of tasks with a trained scorer: sharded, streamed, resumable.

    python -m spider_jax.score --workdir=DIR --tasks=TASKS --out=scores.csv [--batch_size=256]

Tasks input (``--tasks``), two layouts:

* **array directory**: ``TASKS/psi_centres.npy`` float16|float32 ``[T, C, D_psi]`` (psi
  class centres, Eq. 5), optional ``TASKS/class_mask.npy`` bool ``[T, C]`` (True = real
  class; default all True) and optional ``TASKS/names.txt`` (one task name per line;
  default ``task000000``...).  Read memory-mapped: each host reads only its rows.
* **npz directory**: one ``NAME.npz`` per task holding ``psi_centres`` ``[C_t, D_psi]``
  (+ optional ``class_mask`` ``[C_t]``); C_t may vary and is padded to the largest
  (file order: sorted names; the task name is the file stem).

Output (``--out``): one row per (task, PTM): ``task, model, score, rank`` (rank 1 =
best; ties broken by zoo order), CSV, or Parquet when the name ends in ``.parquet`` and
pyarrow is installed.  Rows are grouped by task in input order, PTMs in rank order;
``--top=N`` keeps only each task's N best PTMs.  Reads are prefetched on a thread, part
files are written by a background thread and the output is built column-wise
(:mod:`spider_jax.score_io`).

Execution: tasks are cut into fixed-shape global batches of ``batch_size`` (a multiple of
the mesh's data axis; default per device 32 on CPU, 1024 on GPU/TPU:
``parallel.DEFAULT_BATCH``), sharded over every device of every host
(:mod:`spider_jax.parallel`); each host reads only its slice of each batch; the last
batch is padded with empty tasks whose rows are dropped.  One compile serves the run.

Resumable: after each part (``part_size`` tasks, default 4096, whole batches) process 0
writes ``OUT.parts/part-PPPPPPP.npz`` atomically (temporary file + fsync + rename) beside a
``meta.json`` fingerprint of the run (task source, batch and part sizes, zoo).  A
restarted run skips the parts that exist, then merges all parts into ``OUT`` (atomically)
and deletes them, so no task is written twice.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import shutil
import sys
import zipfile
from collections.abc import Sequence

import jax
import numpy as np

from spider_jax import atomic, parallel, score_io
from spider_jax.inference import ranks_from_scores
from spider_jax.ranker import Ranker

__all__ = ["TaskSource", "ArrayTasks", "NpzDirTasks", "InMemoryTasks", "open_tasks",
           "score_tasks", "ranks_from_scores", "read_scores"]


# ----------------------------------------------------------------------------- sources
class TaskSource:
    """Random-access psi class centres of T tasks, padded to C classes."""

    num_tasks: int
    num_classes: int
    psi_dim: int

    def names(self) -> list[str]:
        raise NotImplementedError

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Tasks [start, stop): (centres [n, C, D_psi] float32, class_mask [n, C] bool)."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        raise NotImplementedError

    def class_counts(self) -> np.ndarray:
        """[T] number of real classes per task (for validation before any compile)."""
        raise NotImplementedError


class InMemoryTasks(TaskSource):
    """Tasks held in arrays (library use and tests)."""

    def __init__(self, psi_centres: np.ndarray, class_mask: np.ndarray | None = None,
                 names: Sequence[str] | None = None):
        self.centres = np.asarray(psi_centres)
        if self.centres.ndim != 3:
            raise ValueError(f"psi_centres must be [T, C, D_psi], got {self.centres.shape}")
        self.mask = np.ones(self.centres.shape[:2], bool) if class_mask is None \
            else np.asarray(class_mask).astype(bool)
        if self.mask.shape != self.centres.shape[:2]:
            raise ValueError(f"class_mask shape {self.mask.shape} != [T, C] "
                             f"{self.centres.shape[:2]}")
        self.num_tasks, self.num_classes, self.psi_dim = self.centres.shape
        self._names = list(names) if names is not None else \
            [f"task{i:06d}" for i in range(self.num_tasks)]
        if len(self._names) != self.num_tasks:
            raise ValueError(f"{len(self._names)} names for {self.num_tasks} tasks")
        check_names(self._names)

    def names(self):
        return self._names

    def read(self, start, stop):
        return np.asarray(self.centres[start:stop], np.float32), self.mask[start:stop]

    def class_counts(self):
        return self.mask.sum(axis=1)

    def fingerprint(self):
        h = hashlib.sha256()
        h.update(repr((self.centres.shape, self._names[:3], self._names[-3:])).encode())
        h.update(np.ascontiguousarray(self.centres[:2], np.float32).tobytes())
        return h.hexdigest()[:16]


def check_names(names: Sequence[str], where: str = "task names") -> None:
    """Task names must be unique (each becomes the key of M output rows)."""
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise ValueError(f"{where}: task name {n!r} is repeated (tasks {seen[n]} and {i}); "
                             f"every task needs its own name")
        seen[n] = i


def _load_array(path: str, mmap: bool = False) -> np.ndarray:
    """An .npy file as an array; unreadable, truncated or pickled files name themselves."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npy array ({e})") from None


class ArrayTasks(InMemoryTasks):
    """The array-directory layout (``psi_centres.npy`` memory-mapped)."""

    def __init__(self, root: str):
        self.root = root
        path = os.path.join(root, "psi_centres.npy")
        centres = _load_array(path, mmap=True)
        mask_path = os.path.join(root, "class_mask.npy")
        mask = _load_array(mask_path) if os.path.exists(mask_path) else None
        if mask is not None and mask.dtype != np.bool_ and not np.issubdtype(mask.dtype,
                                                                              np.integer):
            raise ValueError(f"{mask_path}: dtype {mask.dtype}, expected bool")
        names_path = os.path.join(root, "names.txt")
        names = None
        if os.path.exists(names_path):
            with open(names_path, encoding="utf-8") as fh:
                names = [line.rstrip("\n") for line in fh if line.strip()]
            check_names(names, names_path)
        if centres.dtype not in (np.float16, np.float32, np.float64):
            raise ValueError(f"{path}: dtype {centres.dtype} is not a float type")
        try:
            super().__init__(centres, mask, names)
        except ValueError as e:
            raise ValueError(f"{root}: {e}") from None

    def fingerprint(self):
        st = os.stat(os.path.join(self.root, "psi_centres.npy"))
        return hashlib.sha256(repr((os.path.abspath(self.root), self.centres.shape,
                                    st.st_size, st.st_mtime_ns)).encode()).hexdigest()[:16]


def _npz_member_header(path: str, key: str) -> tuple[tuple[int, ...], np.dtype] | None:
    """(shape, dtype) of one member of an .npz from its header (None when absent); a file
    that is not a readable .npz, or a pickled (object) member, is a ValueError naming it."""
    try:
        with zipfile.ZipFile(path) as zf:
            if f"{key}.npy" not in zf.namelist():
                return None
            with zf.open(f"{key}.npy") as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                    else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fh)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npz task file ({e})") from None
    if dtype.hasobject:
        raise ValueError(f"{path}: {key} is a pickled object array; store plain numbers")
    return tuple(shape), dtype


class NpzDirTasks(TaskSource):
    """The npz-directory layout: one ``NAME.npz`` per task, padded to the largest C."""

    def __init__(self, root: str):
        self.root = root
        self.paths = sorted(glob.glob(os.path.join(root, "*.npz")))
        if not self.paths:
            raise ValueError(f"{root}: no psi_centres.npy and no .npz task files")
        shapes = []
        for p in self.paths:
            head = _npz_member_header(p, "psi_centres")
            if head is None or len(head[0]) != 2 or not np.issubdtype(head[1], np.floating):
                raise ValueError(f"{p}: needs float psi_centres [C, D_psi], got "
                                 f"{head and (head[0], str(head[1]))}")
            mask = _npz_member_header(p, "class_mask")
            if mask is not None and mask[0] != head[0][:1]:
                raise ValueError(f"{p}: class_mask shape {mask[0]} != [C] = {head[0][:1]}")
            shapes.append(head[0])
        dims = {s[1] for s in shapes}
        if len(dims) != 1:
            raise ValueError(f"{root}: task files disagree on D_psi: {sorted(dims)}")
        self.num_tasks = len(self.paths)
        self.psi_dim = dims.pop()
        self._c = np.array([s[0] for s in shapes])
        self.num_classes = int(self._c.max())

    def names(self):
        return [os.path.splitext(os.path.basename(p))[0] for p in self.paths]

    def read(self, start, stop):
        n = stop - start
        centres = np.zeros((n, self.num_classes, self.psi_dim), np.float32)
        mask = np.zeros((n, self.num_classes), bool)
        for j, p in enumerate(self.paths[start:stop]):
            with np.load(p, allow_pickle=False) as z:
                c = z["psi_centres"]
                centres[j, :c.shape[0]] = c
                mask[j, :c.shape[0]] = z["class_mask"].astype(bool) if "class_mask" in z \
                    else True
        return centres, mask

    def class_counts(self):
        return self._c

    def fingerprint(self):
        h = hashlib.sha256(os.path.abspath(self.root).encode())
        for p in self.paths:
            h.update(os.path.basename(p).encode())
        return h.hexdigest()[:16]


def open_tasks(path: str) -> TaskSource:
    """Opens either tasks layout (see the module docstring)."""
    if os.path.isfile(os.path.join(path, "psi_centres.npy")):
        return ArrayTasks(path)
    if os.path.isdir(path):
        return NpzDirTasks(path)
    raise ValueError(f"--tasks={path}: not a directory with psi_centres.npy or *.npz files")


# ----------------------------------------------------------------------------- scoring
def sharded_step(ranker: Ranker, mesh: jax.sharding.Mesh):
    """The k = 0 scorer jitted over ``mesh``: params replicated, tasks sharded on ``data``.

    Returns ``(step, params)``; ``step(params, centres [B, C, D_psi], class_mask [B, C])``
    gives ``[B, M]`` scores sharded like the batch.
    """
    fn, params = ranker.batch_scorer()
    rep = parallel.replicated(mesh)
    step = jax.jit(fn, in_shardings=(rep, parallel.batch_sharding(mesh, 3),
                                     parallel.batch_sharding(mesh, 2)),
                   out_shardings=parallel.batch_sharding(mesh, 2))
    return step, jax.device_put(params, rep)


def _part_path(parts: str, b: int) -> str:
    return os.path.join(parts, f"part-{b:07d}.npz")


def _check_source(ranker: Ranker, source: TaskSource) -> None:
    if source.psi_dim != ranker.psi_dim:
        raise ValueError(f"task psi feature width {source.psi_dim} != the checkpoint's psi dim "
                         f"{ranker.psi_dim}")
    counts = np.asarray(source.class_counts())
    if counts.size and counts.max() > ranker.max_classes:
        i = int(np.argmax(counts))
        raise ValueError(f"task {source.names()[i]!r} has {int(counts[i])} classes, more than "
                         f"the {ranker.max_classes} the model was built for (max_classes)")
    if counts.size and counts.min() < 1:
        i = int(np.argmin(counts))
        raise ValueError(f"task {source.names()[i]!r} has no real class")
    check_names(source.names())


def _check_values(source: TaskSource, chunk: int = 4096) -> None:
    """Every real class centre finite, checked before anything is scored or written
    (one extra read of the tasks); the error names the first bad task."""
    names = source.names()
    for lo in range(0, source.num_tasks, chunk):
        centres, mask = source.read(lo, min(lo + chunk, source.num_tasks))
        bad = ~np.isfinite(centres).all(axis=2) & mask                    # [n, C]
        if bad.any():
            t = int(np.flatnonzero(bad.any(axis=1))[0])
            raise ValueError(f"task {names[lo + t]!r} (index {lo + t}): psi class centres "
                             f"contain NaN or Inf")


def score_tasks(ranker: Ranker, source: TaskSource, out: str, *, batch_size: int | None = None,
                part_size: int = 4096, mesh: jax.sharding.Mesh | None = None,
                progress: bool = True, keep_parts: bool = False,
                stop_after: int | None = None, top: int | None = None) -> str | None:
    """Scores every task of ``source`` for every PTM and writes ``out`` (see module doc).

    Args:
      ranker: the trained scorer and zoo.
      source: the tasks.
      out: output path (.csv, or .parquet with pyarrow).
      batch_size: global tasks per step, rounded up to a multiple of the data axis;
        default ``parallel.default_batch("score")`` per data shard (32 on CPU, 1024 on
        GPU/TPU).
      part_size: tasks per resumable part file (rounded up to whole batches); a restart
        redoes at most one part.
      mesh: device mesh (default :func:`spider_jax.parallel.make_mesh` over all devices).
      progress: show a tqdm bar (process 0).
      keep_parts: keep ``OUT.parts`` after merging.
      top: write only each task's ``top`` best PTMs (None: all).
      stop_after: stop after this many newly written parts without merging (simulates an
        interruption; for tests).

    Returns:
      ``out`` when complete (process 0), else None.
    """
    _check_source(ranker, source)
    _check_values(source)                     # before any part or meta.json is written
    mesh = parallel.make_mesh() if mesh is None else mesh
    shards = parallel.data_size(mesh)
    if not batch_size:
        batch_size = parallel.default_batch("score") * shards
    gbatch = parallel.round_up(max(1, int(batch_size)), shards)
    per_part = max(1, -(-int(part_size) // gbatch))           # batches per part
    num_batches = -(-source.num_tasks // gbatch)
    num_parts = -(-num_batches // per_part)
    parts = out + ".parts"
    main = parallel.is_main_process()
    meta = {"source": source.fingerprint(), "num_tasks": source.num_tasks,
            "batch_size": gbatch, "batches_per_part": per_part, "models": list(ranker.models),
            "num_classes": source.num_classes}
    if main:
        _check_or_write_meta(parts, meta)
    done = np.array([main and os.path.exists(_part_path(parts, p)) for p in range(num_parts)])
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        done = np.asarray(multihost_utils.broadcast_one_to_all(done))

    step, params = sharded_step(ranker, mesh)
    local = parallel.host_slice(gbatch)
    todo = [p for p in range(num_parts) if not done[p]]
    if stop_after is not None:
        todo = todo[:stop_after]
    bar = None
    if progress and main:
        from tqdm import tqdm
        bar = tqdm(total=source.num_tasks, unit="task", desc="scoring",
                   initial=min(source.num_tasks, int(np.sum(done)) * per_part * gbatch))

    def read(b):
        """This host's slice of batch b (padded with empty tasks), checked."""
        lo = b * gbatch + local.start
        hi = min(b * gbatch + local.stop, source.num_tasks)
        centres = np.zeros((local.stop - local.start, source.num_classes, source.psi_dim),
                           np.float32)
        mask = np.zeros((local.stop - local.start, source.num_classes), bool)
        if hi > lo:
            centres[:hi - lo], mask[:hi - lo] = source.read(lo, hi)
            if not np.all(np.isfinite(centres[:hi - lo][mask[:hi - lo]])):
                raise ValueError(f"tasks {lo}..{hi - 1}: psi class centres contain NaN or Inf")
        return centres, mask

    def save(p, results):
        start = p * per_part * gbatch
        scores = np.concatenate(results, axis=0)[:source.num_tasks - start]
        atomic.write_npz(_part_path(parts, p), {"scores": scores.astype(np.float32), "start": np.int64(start)})

    order = [(p, b) for p in todo for b in range(p * per_part, min((p + 1) * per_part, num_batches))]
    results = {p: [] for p in todo}

    def collect(i, pending, writer):
        """Fetches the scores of batch order[i]; queues its part's write once complete."""
        p, b = order[i]
        results[p].append(parallel.global_to_host(pending))
        if bar is not None:
            bar.update(min(gbatch, source.num_tasks - b * gbatch))
        if i + 1 == len(order) or order[i + 1][0] != p:
            part = results.pop(p)
            if main:
                writer.submit(save, p, part)

    with score_io.BackgroundWriter() as writer:
        # Batch i's step is launched before batch i-1's scores are fetched (compute overlaps
        # the host), reads run ahead on a thread, and parts are written in the background.
        pending = None
        for i, host in enumerate(score_io.prefetch(read, [b for _, b in order])):
            launched = step(params, *parallel.host_to_global(host, mesh))
            if pending is not None:
                collect(i - 1, pending, writer)
            pending = launched
        if pending is not None:
            collect(len(order) - 1, pending, writer)
    if bar is not None:
        bar.close()
    if stop_after is not None and len(todo) < int(np.sum(~done)):
        return None
    if not main:
        return None
    _merge(parts, out, source.names(), list(ranker.models), num_parts, top=top)
    if not keep_parts:
        shutil.rmtree(parts, ignore_errors=True)
    return out


def _check_or_write_meta(parts: str, meta: dict) -> None:
    os.makedirs(parts, exist_ok=True)
    # Temporaries of a killed run: part files, and the merged output beside OUT.
    atomic.remove_stale_temporaries(parts)
    atomic.remove_stale_temporaries(os.path.dirname(os.path.abspath(parts)))
    meta_path = os.path.join(parts, "meta.json")
    if os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as fh:
            old = json.load(fh)
        if old != meta:
            raise ValueError(f"{parts} holds parts of a different run (source "
                             f"{old.get('source')}, batch {old.get('batch_size')}, "
                             f"{old.get('batches_per_part')} batches per part); delete it or "
                             f"choose another --out")
        return
    atomic.write_json(meta_path, meta)


def _merge(parts: str, out: str, names: Sequence[str], models: Sequence[str],
           num_parts: int, top: int | None = None) -> None:
    missing = [b for b in range(num_parts) if not os.path.exists(_part_path(parts, b))]
    if missing:
        raise ValueError(f"{parts}: parts {missing[:5]} are missing; rerun to finish")

    def blocks():
        for b in range(num_parts):
            with np.load(_part_path(parts, b), allow_pickle=False) as z:
                scores, start = z["scores"], int(z["start"])
            yield names[start:start + scores.shape[0]], scores

    atomic.atomic_write(out, lambda fh: score_io.write_scores(
        fh, blocks(), models, parquet=out.endswith(".parquet"), top=top))


def read_scores(path: str, models: Sequence[str] | None = None
                ) -> tuple[list[str], list[str], np.ndarray]:
    """Reads a CSV written by :func:`score_tasks` -> (tasks, models, scores [T, M]).

    Columns follow ``models`` (default: sorted names); ValueError on a duplicate row.
    """
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    models = list(models) if models is not None else sorted({r["model"] for r in rows})
    ti = {t: i for i, t in enumerate(tasks)}
    mi = {m: i for i, m in enumerate(models)}
    scores = np.full((len(tasks), len(models)), np.nan)
    for r in rows:
        if not np.isnan(scores[ti[r["task"]], mi[r["model"]]]):
            raise ValueError(f"{path}: duplicate row for task {r['task']!r}, model {r['model']!r}")
        scores[ti[r["task"]], mi[r["model"]]] = float(r["score"])
    return tasks, models, scores


# ----------------------------------------------------------------------------- main
def main(argv: Sequence[str]) -> None:
    del argv
    from absl import flags, logging
    fl = flags.FLAGS
    parallel.maybe_initialize_distributed()
    logging.set_verbosity(logging.WARNING)
    try:
        ranker = Ranker.from_workdir(fl.workdir, modality=fl.modality)
        source = open_tasks(fl.tasks)
        _check_source(ranker, source)
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    if parallel.is_main_process():
        print("scoring %d tasks (C=%d, D_psi=%d) for %d PTMs on %d devices" % (
                     source.num_tasks, source.num_classes, source.psi_dim, len(ranker.models),
                     jax.device_count()), file=sys.stderr)
    try:          # e.g. OUT.parts left by a run with other flags: a sentence, not a traceback
        written = score_tasks(ranker, source, fl.out, batch_size=fl.batch_size,
                              part_size=fl.part_size, keep_parts=fl.keep_parts,
                              top=fl.top or None)
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    if written and parallel.is_main_process():
        rows = source.num_tasks * (min(fl.top, len(ranker.models)) if fl.top else len(ranker.models))
        print(f"wrote {rows} rows to {written}")


def _define_flags() -> None:
    from absl import flags
    flags.DEFINE_string("workdir", None, "training workdir (checkpoint + config)")
    flags.DEFINE_string("tasks", None, "tasks directory (psi_centres.npy layout or *.npz)")
    flags.DEFINE_string("out", None, "output .csv (or .parquet with pyarrow)")
    flags.DEFINE_integer("batch_size", 0, "global tasks per step, a multiple of the devices "
                         "(0: per device 32 on CPU, 1024 on GPU/TPU)")
    flags.DEFINE_string("modality", None, "scorer to use when the workdir holds one per modality")
    flags.DEFINE_integer("part_size", 4096, "tasks per resumable part file")
    flags.DEFINE_bool("keep_parts", False, "keep OUT.parts after merging")
    flags.DEFINE_integer("top", 0, "write only each task's N best PTMs (0: all)")
    flags.mark_flags_as_required(["workdir", "tasks", "out"])


if __name__ == "__main__":
    from absl import app
    _define_flags()
    app.run(main)
