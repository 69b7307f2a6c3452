"""One code path from 1 CPU to a TPU pod: device mesh, shardings and multi-host helpers.

Every entry point (train, label, score) uses the same recipe:

1. ``maybe_initialize_distributed()`` first, before any other JAX call: joins a multi-host
      job through JAX's own distributed runtime (``jax.distributed.initialize``) when the
      launcher says so (flag, ``SPIDER_JAX_DISTRIBUTED=1``, the standard
      ``JAX_COORDINATOR_ADDRESS`` variables, SLURM, or a Cloud TPU pod).
2. ``mesh = make_mesh()``: a ``jax.sharding.Mesh`` over all global devices with a ``data``
      axis and a ``model`` axis (size 1 unless a parameter is large enough to be worth
      splitting).
3. Batches are sharded on ``data`` (``batch_sharding``), parameters replicated
      (``replicated``). Each host reads only its own slice of the work (``host_slice``) and
      ``host_to_global`` stitches the per-host numpy slices into one global ``jax.Array``.
4. Only process 0 logs and writes files (``is_main_process``); decisions that depend on
      files (what is already done) are agreed by all processes (``all_processes``) so
      every host runs the same collectives; ``sync`` is a
      barrier after process 0 has written something the others then read.

Manual multi-host launch (any cluster, or several processes on one machine)::

    JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 \
        python -m spider_jax.train --config=... --workdir=/shared/run      # on host 0
    JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=1 \
        python -m spider_jax.train --config=... --workdir=/shared/run      # on host 1
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
MODEL_AXIS = "model"

_DISTRIBUTED_ENV = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")
# JAX reads the coordinator address from the environment but not the process count/id
# (those come from a detected cluster: SLURM, Cloud TPU, MPI); these fill them in.
_NUM_PROCESSES_ENV = "JAX_NUM_PROCESSES"
_PROCESS_ID_ENV = "JAX_PROCESS_ID"


def _launched_multihost() -> bool:
    if os.environ.get("SPIDER_JAX_DISTRIBUTED", "") == "1":
        return True
    if any(os.environ.get(k) for k in _DISTRIBUTED_ENV):
        return True
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return True
    # Cloud TPU pod slices expose the worker list; a single-host TPU VM lists one worker.
    hostnames = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return len([h for h in hostnames.split(",") if h]) > 1


def maybe_initialize_distributed(force: bool | None = None, **kwargs: Any) -> bool:
    """Joins a multi-host job with ``jax.distributed.initialize`` when launched as one.

    Args:
        force: True always initialises, False never; None decides from the environment
            (``SPIDER_JAX_DISTRIBUTED=1``, ``JAX_COORDINATOR_ADDRESS``, SLURM with more than one
            task, or a multi-worker Cloud TPU slice).
        **kwargs: passed to ``jax.distributed.initialize`` (``coordinator_address``,
            ``num_processes``, ``process_id``, ...); without them JAX reads its cluster
            environment (SLURM, TPU, ``JAX_COORDINATOR_ADDRESS``), and ``num_processes`` /
            ``process_id`` default to ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID`` when set.

    Returns:
        Whether the distributed runtime was initialised by this call.
    """
    wanted = _launched_multihost() if force is None else force
    if not wanted:
        return False
    if jax.distributed.is_initialized():
        return False
    # CPU hosts need a collectives backend for cross-process reductions (GPU/TPU ignore it).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    for key, env in (("num_processes", _NUM_PROCESSES_ENV), ("process_id", _PROCESS_ID_ENV)):
        if kwargs.get(key) is None and os.environ.get(env, "") != "":
            kwargs[key] = int(os.environ[env])
    jax.distributed.initialize(**kwargs)
    return True


def is_main_process() -> bool:
    """True on process 0, the only one that logs, plots and writes result files."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """Barrier across processes (no-op with one): e.g. after process 0 wrote a file."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def all_processes(flags: np.ndarray) -> np.ndarray:
    """Element-wise AND of a bool array over processes (identity with one process).

    Used for decisions read from files (which cache chunks exist) so every host takes the
    same branch and enters the same collectives, whether or not hosts share a filesystem.
    """
    flags = np.asarray(flags, bool)
    if jax.process_count() == 1:
        return flags
    from jax.experimental import multihost_utils
    gathered = multihost_utils.process_allgather(flags.astype(np.int32))
    return np.asarray(gathered).reshape(jax.process_count(), *flags.shape).all(axis=0)


def make_mesh(model_parallel: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ``(data, model)`` mesh over all global devices.

    Args:
        model_parallel: size of the ``model`` axis; 1 (the default) replicates parameters.
            The Model Spider scorer is small, so only very large zoos (model tokens and
            per-PTM projections of tens of thousands of PTMs) benefit from more.
        devices: the devices to use; default ``jax.devices()`` (all hosts).

    Raises:
        ValueError: if ``model_parallel`` does not divide the device count.
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if model_parallel < 1 or n % model_parallel:
        raise ValueError(
                f"model_parallel={model_parallel} must be >= 1 and divide the {n} devices")
    grid = np.asarray(devices, dtype=object).reshape(n // model_parallel, model_parallel)
    return Mesh(grid, (DATA_AXIS, MODEL_AXIS))


def data_size(mesh: Mesh) -> int:
    """Number of shards along the data axis."""
    return mesh.shape[DATA_AXIS]


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device (parameters, optimizer state)."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
    """Sharding that splits the leading (batch) axis over ``data``; other axes whole."""
    return NamedSharding(mesh, P(DATA_AXIS, *([None] * (ndim - 1))))


def replicate_like(tree: Any, mesh: Mesh) -> Any:
    """The replicated sharding for every leaf of ``tree`` (e.g. a ``jax.eval_shape`` result)."""
    return jax.tree.map(lambda _: replicated(mesh), tree)


def with_shardings(abstract: Any, shardings: Any) -> Any:
    """``ShapeDtypeStruct`` leaves carrying their target sharding (for orbax restore)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract, shardings)


def check_batch(global_batch: int, mesh: Mesh) -> None:
    """Raises a clear ValueError unless the global batch divides over the data axis."""
    shards = data_size(mesh)
    if global_batch % shards:
        raise ValueError(
                f"global batch size {global_batch} must be divisible by the {shards} data-parallel "
                f"devices of the mesh {dict(mesh.shape)} ({jax.process_count()} process(es)); "
                f"choose a multiple of {shards}")


# Default tasks per device per call, by platform. CPU: small batches keep the activations
# in cache (benchmarks/score_speed.py: 32 tasks per call ran ~2x faster than 256 on the
# 2-core machine; label chunks of 8 tasks). GPU/TPU: wide batches fill the device (one H200,
# docs/device_check_h200.log: k=0 scoring 0.77 M tasks/s at 256 per call, 1.57 M at 1024,
# 2.9 M at 4096; 1024 leaves memory for C=100 tasks). The label figure for GPU/TPU is a
# memory-based choice ([32, N=500, D=1280] float32 features are 82 MB), not yet swept on a
# device: benchmarks/device_check.sh prints the label rate to check it.
DEFAULT_BATCH = {"score": {"cpu": 32, "gpu": 1024, "tpu": 1024},
                 "label": {"cpu": 8, "gpu": 32, "tpu": 32}}


def default_batch(kind: str, platform: str | None = None) -> int:
    """Default tasks per device per call for ``kind`` ("score" or "label") on ``platform``
    (default: JAX's default backend; unknown platforms get the CPU value)."""
    table = DEFAULT_BATCH[kind]
    return table.get(platform or jax.default_backend(), table["cpu"])


def round_up(n: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= n."""
    return -(-n // multiple) * multiple


def host_slice(num_items: int, process_index: int | None = None,
                              process_count: int | None = None) -> slice:
    """The contiguous slice of ``num_items`` this host reads (balanced, in order).

    With one process it is ``slice(0, num_items)``. Slices of all processes tile the range
    exactly, so every item is read by exactly one host.
    """
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    base, extra = divmod(num_items, pc)
    start = pi * base + min(pi, extra)
    return slice(start, start + base + (pi < extra))


def host_to_global(tree: Any, mesh: Mesh) -> Any:
    """Stitches each host's numpy slice of a batch into global arrays sharded on ``data``.

    Every leaf's leading axis is this host's part of the global batch; the global batch is
    the concatenation over processes in process order. Single-process, this is a
    ``device_put`` with the batch sharding.
    """
    def put(x):
        x = np.asarray(x)
        sharding = batch_sharding(mesh, x.ndim)
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree.map(put, tree)


def global_to_host(tree: Any) -> Any:
    """Gathers global arrays to numpy on every host (small outputs such as scores)."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, jax.device_get(tree))
    from jax.experimental import multihost_utils
    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def one_thread_lapack_pool(log=None) -> int:
    """Starts XLA:CPU with a one-thread intra-op pool; returns its thread count.

    Why: jaxlib's batched LAPACK kernels (eigh, Cholesky, LU, QR, triangular solve:
    ``ParallelBatchMap`` in ``jaxlib/cpu/lapack_kernels.cc``) split a batch into chunks,
    schedule them on XLA:CPU's intra-op pool and block a pool thread until they finish.
    When a program holds two independent batched LAPACK calls (TransRate's total and
    per-class ``eigvalsh`` vmapped over the PTMs of one width), the thunk executor runs
    both at once; with a pool of two threads (a 2-core machine) both threads block,
    waiting for chunks that only a free pool thread could run: a deadlock at 0% CPU
    (seen in the evaluation labels of the text zoo). With one pool thread the kernels
    run the whole batch inline, so they cannot wait on the pool.

    XLA sizes the pool from the CPU affinity when it first executes, so this pins the
    process to one CPU, runs one tiny batched ``eigvalsh`` (the pool is created), and
    restores the affinity of the calling thread and of the threads XLA started (the
    probe's worker processes keep every core). Call it before any JAX computation; a
    pool already started is left as is (the count says so).
    """
    import glob

    def tids():
        return {int(os.path.basename(t)) for t in glob.glob("/proc/self/task/*")}

    if not hasattr(os, "sched_setaffinity"):
        return -1
    cpus = os.sched_getaffinity(0)
    before = tids()
    os.sched_setaffinity(0, {min(cpus)})
    try:
        import jax
        import jax.numpy as jnp

        jax.block_until_ready(jax.jit(jnp.linalg.eigvalsh)(jnp.eye(4)[None].repeat(2, 0)))
    finally:
        os.sched_setaffinity(0, cpus)
        for tid in tids() - before:
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:
                pass
    names = []
    for t in glob.glob("/proc/self/task/*/comm"):
        try:
            names.append(open(t).read().strip())
        except OSError:
            pass
    n = sum(name == "tf_XLAEigen" for name in names)
    if n > 1 and log is not None:
        log(f"warning: XLA:CPU intra-op pool already has {n} threads; batched LAPACK calls "
            "may deadlock on a 2-core machine")
    return n


def guard_lapack_pool(log=None) -> int:
    """:func:`one_thread_lapack_pool` on a machine with at most two usable CPUs (where a
    two-thread pool can deadlock), nothing elsewhere; returns the pool's thread count
    (0: left alone). Entry points that compute the transferability metrics call it first."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (cpus or 1) > 2 or os.environ.get("JAX_PLATFORMS", "cpu").split(",")[0] not in ("", "cpu"):
        return 0
    return one_thread_lapack_pool(log=log)
