"""Input/output path of ``spider_jax.score``: prefetched reads, a background part writer and
columnar output (Parquet via pyarrow; a vectorised CSV writer otherwise).

The scorer's kernel runs thousands of tasks per second per CPU core; writing one CSV row
per (task, PTM) from Python was the bottleneck of the CLI (issue 15). Here:

* ``prefetch`` reads the next batches on a thread while the device computes;
* ``BackgroundWriter`` writes part files on one thread, in order, while scoring goes on
  (a failed write is re-raised in the caller);
* ``write_scores`` turns [n, M] score blocks into rows column-wise: ranks and the
  rank order come from one argsort per block, ``top`` keeps only each task's best PTMs,
  and rows are formatted by NumPy's vectorised string operations (CSV) or written as
  Arrow columns (Parquet, or CSV through pyarrow.csv when pyarrow is installed).
"""

from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from spider_jax.inference import order_from_scores

COLUMNS = ("task", "model", "score", "rank")


def prefetch(fn: Callable, items: Iterable, depth: int = 2) -> Iterator:
    """Yields ``fn(item)`` in order, computing up to ``depth`` items ahead on a thread."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="prefetch") as ex:
        pending = collections.deque()
        for item in items:
            pending.append(ex.submit(fn, item))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class BackgroundWriter:
    """Runs write jobs in submission order on one thread; at most ``max_pending`` queued.

    Use as a context manager: leaving it waits for every job and re-raises the first error.
    """

    def __init__(self, max_pending: int = 2):
        self._ex = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="writer")
        self._pending: collections.deque = collections.deque()
        self._max = max(1, max_pending)

    def submit(self, fn: Callable, *args, **kwargs) -> None:
        while len(self._pending) >= self._max:
            self._pending.popleft().result()
        self._pending.append(self._ex.submit(fn, *args, **kwargs))

    def close(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._ex.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def columns(names: Sequence[str], models: np.ndarray, scores: np.ndarray, top: int | None = None) -> dict:
    """One block of output rows as columns: tasks in input order, PTMs by rank.

    Args:
      names: [n] task names. models: [M] object array of model names.
      scores: [n, M] scores. top: keep only each task's best ``top`` PTMs (None: all).
    Returns:
      {"task": [n*k] object, "model": [n*k] object, "score": [n*k] float32, "rank": [n*k] int32}
      with k = min(top, M).
    """
    scores = np.asarray(scores, np.float32)
    order = order_from_scores(scores)  # rank order
    k = scores.shape[1] if top is None else max(1, min(int(top), scores.shape[1]))
    order = order[:, :k]
    return {"task": np.repeat(np.asarray(names, dtype=object), k),
            "model": models[order].reshape(-1),
            "score": np.take_along_axis(scores, order, axis=1).reshape(-1),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), len(names))}


def csv_text(cols: dict) -> str:
    """CSV lines (no header) of ``columns(...)``, formatted column-wise by NumPy.

    Scores are written as the shortest decimal that reads back to the same float32.
    Task and model names may not contain commas, quotes or newlines (checked).
    """
    task = cols["task"].astype(str)
    model = cols["model"].astype(str)
    for name, col in (("task", task), ("model", model)):
        bad = (np.char.find(col, ",") >= 0) | (np.char.find(col, '"') >= 0) | (np.char.find(col, "\n") >= 0)
        if bad.any():
            raise ValueError(f"{name} name {str(col[bad][0])!r} needs CSV quoting; write .parquet instead")
    score = cols["score"].astype(np.float32).astype(str)
    line = np.char.add(np.char.add(np.char.add(np.char.add(np.char.add(np.char.add(
        task, ","), model), ","), score), ","), cols["rank"].astype(str))
    return "\n".join(line.tolist()) + "\n" if line.size else ""


def write_scores(fh, blocks: Iterable[tuple[Sequence[str], np.ndarray]], models: Sequence[str], *,
                 parquet: bool, top: int | None = None) -> None:
    """Writes (names [n], scores [n, M]) blocks to the open binary file ``fh``.

    Parquet needs pyarrow (ValueError otherwise); CSV uses ``csv_text``.
    """
    models = np.asarray(list(models), dtype=object)
    if parquet:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ValueError("writing .parquet needs pyarrow (pip install pyarrow); "
                             "use a .csv output instead") from e
        schema = pa.schema([("task", pa.string()), ("model", pa.string()), ("score", pa.float32()),
                            ("rank", pa.int32())])
        with pq.ParquetWriter(fh, schema) as writer:
            for names, scores in blocks:
                writer.write_table(pa.table(columns(names, models, scores, top), schema=schema))
        return
    fh.write((",".join(COLUMNS) + "\n").encode("utf-8"))
    for names, scores in blocks:
        fh.write(csv_text(columns(names, models, scores, top)).encode("utf-8"))
