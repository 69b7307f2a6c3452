"""Atomic file writes: the one writer every module uses (bank, label cache, run layout,
score parts, benchmark reports).

A write goes to a temporary file beside its target, is flushed and fsynced, then
``os.replace``-d over the target, so an interrupted run never leaves a half-written file:
readers see the old file or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from typing import IO, Any

import numpy as np

__all__ = ["atomic_write", "write_bytes", "write_text", "write_json", "write_npz",
           "write_npy"]


def atomic_write(path: str, write_fn: Callable[[IO[bytes]], Any]) -> None:
    """Writes ``path`` all or nothing: ``write_fn(file)`` into a temporary file beside it,
    fsync, then ``os.replace`` (an interrupted write never leaves a half-written file)."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_bytes(path: str, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str, obj: Any, **dump_kwargs) -> None:
    """``json.dumps(obj, **dump_kwargs)`` written atomically (UTF-8)."""
    write_text(path, json.dumps(obj, **dump_kwargs))


def write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` of ``arrays`` written atomically (uncompressed)."""
    atomic_write(path, lambda f: np.savez(f, **arrays))


def write_npy(path: str, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))
