"""Atomic file writes: the one writer every module uses (bank, label cache, run layout,
score parts, benchmark reports).

A write goes to a temporary file beside its target, is flushed and fsynced, then
``os.replace``-d over the target, so an interrupted run never leaves a half-written file:
readers see the old file or the new one.  Files get the mode a plain ``open()`` would
(0o666 minus the umask, not mkstemp's 0o600), and temporaries are named
``.tmp-HOST-PID-XXXX.part`` so :func:`remove_stale_temporaries` can delete those a killed
run left (only ours, only when their writer is gone).
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from typing import IO, Any

import numpy as np

__all__ = ["atomic_write", "write_bytes", "write_text", "write_json", "write_npz",
           "write_npy", "temp_file_beside", "remove_stale_temporaries", "plain_file_mode"]


# Temporary files of this program: ".tmp-{host}-{pid}-{random}.part" beside their target,
# so a later run can tell ours from anyone else's and whether the writer is still alive.
_TMP_RE = re.compile(r"^\.tmp-(?:(?P<host>[A-Za-z0-9_.]*)-(?P<pid>\d+)-)?[A-Za-z0-9_]+\.part$")
STALE_TEMP_S = 3600          # a temporary of another host counts as stale after this


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def plain_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: 0o666 minus the umask
    (``mkstemp`` creates 0o600, unreadable to the other users and hosts of a shared run)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def temp_file_beside(path: str) -> tuple[int, str]:
    """(fd, name) of a new temporary file in ``path``'s directory, named as this
    program's (see :func:`remove_stale_temporaries`), with the mode of a plain ``open``."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{_host()}-{os.getpid()}-", suffix=".part",
                               dir=directory)
    os.fchmod(fd, plain_file_mode())
    return fd, tmp


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(directory: str, *, recursive: bool = False,
                             max_age_s: float = STALE_TEMP_S) -> list[str]:
    """Deletes the temporaries an interrupted writer of this program left in ``directory``.

    Only files named like :func:`temp_file_beside`'s are considered, and only stale ones:
    written on this host by a process that no longer exists, or (other hosts, and the
    unnamed ``.tmp-XXXX.part`` of older versions) not modified for ``max_age_s`` seconds.
    Returns the removed paths.
    """
    if not os.path.isdir(directory):
        return []
    now, host, removed = time.time(), _host(), []
    walk = os.walk(directory) if recursive else [(directory, None, os.listdir(directory))]
    for dirpath, _, files in walk:
        for f in files:
            m = _TMP_RE.match(f)
            if not m:
                continue
            path = os.path.join(dirpath, f)
            try:
                if m.group("pid") is not None and m.group("host") == host:
                    stale = not _pid_alive(int(m.group("pid")))
                else:
                    stale = now - os.path.getmtime(path) > max_age_s
                if stale:
                    os.unlink(path)
                    removed.append(path)
            except OSError:
                pass
    return removed


def atomic_write(path: str, write_fn: Callable[[IO[bytes]], Any]) -> None:
    """Writes ``path`` all or nothing: ``write_fn(file)`` into a temporary file beside it,
    fsync, then ``os.replace`` (an interrupted write never leaves a half-written file).
    The file gets the mode a plain ``open`` would (0o666 minus the umask)."""
    fd, tmp = temp_file_beside(path)
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
