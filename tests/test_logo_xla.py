"""XLA:CPU guard of the LOGO CLI: two independent batched LAPACK calls in one program must
not deadlock (they did on 2 cores: both intra-op threads waited in jaxlib's
ParallelBatchMap for chunks only a free pool thread could run)."""

import os
import subprocess
import sys
import textwrap

import pytest

_SCRIPT = textwrap.dedent("""
    import sys
    from spider_jax import logo
    threads = logo.one_thread_lapack_pool()
    import jax, jax.numpy as jnp, numpy as np

    @jax.jit
    def two_eighs(a, b):   # independent: the thunk executor may run them at once
        return jnp.linalg.eigvalsh(a).sum() + jnp.linalg.eigvalsh(b).sum()

    rng = np.random.default_rng(0)
    a = rng.normal(size=(16, 96, 96)).astype(np.float32)
    a = a @ a.transpose(0, 2, 1)
    for i in range(150):
        two_eighs(a + i, a - i).block_until_ready()
    print("threads", threads, "affinity", len(__import__("os").sched_getaffinity(0)))
""")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_two_batched_eighs_finish_with_the_guard():
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # as the CLI runs: one CPU device (conftest's 8 fake devices make an 8-thread pool)
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                                if "xla_force_host_platform_device_count" not in f)
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                          timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    words = proc.stdout.split()
    assert words[:2] == ["threads", "1"], proc.stdout          # one intra-op thread
    assert int(words[3]) == len(os.sched_getaffinity(0))       # the process keeps its CPUs


def test_guard_leaves_larger_machines_alone(monkeypatch):
    from spider_jax import parallel

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    called = []
    monkeypatch.setattr(parallel, "one_thread_lapack_pool", lambda log=None: called.append(1) or 1)
    assert parallel.guard_lapack_pool() == 0 and not called
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert parallel.guard_lapack_pool() == 1 and called == [1]
