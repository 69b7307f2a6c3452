"""Input/output path of ``spider_jax.score``: prefetched reads, a background part writer and
columnar output (Parquet via pyarrow; a vectorised CSV writer otherwise).

The scorer's kernel runs thousands of tasks per second per CPU core; writing one CSV row
per (task, PTM) from Python was the bottleneck of the CLI (issue 15). Here:

* ``prefetch`` reads the next batches on a thread while the device computes;
* ``BackgroundWriter`` writes part files on one thread, in order, while scoring goes on
  (a failed write is re-raised in the caller);
* ``write_scores`` turns [n, M] score blocks into rows column-wise: ranks and the
  rank order come from one argsort per block, ``top`` keeps only each task's best PTMs,
  and the rows go out as dictionary-encoded Arrow columns (Parquet, or CSV through
  pyarrow.csv) when pyarrow is installed, else through one formatted string per row.
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


def columns(names: Sequence[str], scores: np.ndarray, top: int | None = None) -> dict:
    """One block of output rows as columns: tasks in input order, PTMs by rank.

    Args:
      names: [n] task names. scores: [n, M] scores.
      top: keep only each task's best ``top`` PTMs (None: all).
    Returns:
      {"task": [n*k] int32 index into ``names``, "model": [n*k] int32 zoo index,
       "score": [n*k] float32, "rank": [n*k] int32} with k = min(top, M).
    """
    scores = np.asarray(scores, np.float32)
    order = order_from_scores(scores)  # rank order
    k = scores.shape[1] if top is None else max(1, min(int(top), scores.shape[1]))
    order = order[:, :k]
    return {"task": np.repeat(np.arange(len(names), dtype=np.int32), k),
            "model": order.reshape(-1).astype(np.int32),
            "score": np.take_along_axis(scores, order, axis=1).reshape(-1),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), len(names))}


def _check_plain(kind: str, values: Sequence[str]) -> None:
    for v in values:
        if any(ch in v for ch in ',"\n\r'):
            raise ValueError(f"{kind} name {v!r} needs CSV quoting: install pyarrow or write .parquet")


def csv_text(names: Sequence[str], models: Sequence[str], cols: dict) -> str:
    """CSV lines (no header) of ``columns(...)`` without pyarrow: scores as ``%.7g``.

    Task and model names may not contain commas, quotes or newlines (checked).
    """
    names, models = list(names), list(models)
    _check_plain("task", names)
    _check_plain("model", models)
    prefix = [f"{t},{m}," for t, m in zip(np.asarray(names, dtype=object)[cols["task"]],
                                             np.asarray(models, dtype=object)[cols["model"]])]
    scores = map("{:.7g}".format, cols["score"].astype(np.float64).tolist())
    return "".join(map("{}{},{}\n".format, prefix, scores, cols["rank"].tolist()))


def _arrow_table(names, models, cols, schema):
    """Dictionary-encoded Arrow table: no per-row string objects."""
    import pyarrow as pa

    return pa.table({"task": pa.DictionaryArray.from_arrays(cols["task"], pa.array(list(names), pa.string())),
                     "model": pa.DictionaryArray.from_arrays(cols["model"], pa.array(list(models), pa.string())),
                     "score": cols["score"], "rank": cols["rank"]}, schema=schema)


def write_scores(fh, blocks: Iterable[tuple[Sequence[str], np.ndarray]], models: Sequence[str], *,
                 parquet: bool, top: int | None = None) -> None:
    """Writes (names [n], scores [n, M]) blocks to the open binary file ``fh``.

    Parquet needs pyarrow (ValueError otherwise). CSV goes through pyarrow.csv when pyarrow
    is installed (names quoted), else through ``csv_text``.
    """
    models = list(models)
    try:
        import pyarrow as pa
        import pyarrow.csv as pa_csv
        import pyarrow.parquet as pq
    except ImportError as e:
        if parquet:
            raise ValueError("writing .parquet needs pyarrow (pip install pyarrow); "
                             "use a .csv output instead") from e
        fh.write((",".join(COLUMNS) + "\n").encode("utf-8"))
        for names, scores in blocks:
            fh.write(csv_text(names, models, columns(names, scores, top)).encode("utf-8"))
        return
    label = pa.dictionary(pa.int32(), pa.string())
    schema = pa.schema([("task", label), ("model", label), ("score", pa.float32()), ("rank", pa.int32())])
    with (pq.ParquetWriter(fh, schema) if parquet else pa_csv.CSVWriter(fh, schema)) as writer:
        for names, scores in blocks:
            writer.write_table(_arrow_table(names, models, columns(names, scores, top), schema))
