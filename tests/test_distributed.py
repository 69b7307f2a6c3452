"""Two processes joined by jax.distributed on 127.0.0.1 train like one process.

Each child is the real CLI (``python -m spider_jax.train``) on 2 forced CPU devices, joined
through ``parallel.maybe_initialize_distributed`` by the standard variables
(``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``): a 2 x 2 = 4-device
mesh, each host building its half of every batch and its slice of every label step,
process 0 writing the bank, labels and logs, orbax saving collectively.  The reference is
the same config trained in this (single) process on its 8 devices.
"""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import smoke
from spider_jax import inference, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The smoke config shrunk to seconds: 2 PTMs (2 feature-dim groups), 16 tasks in 4-task
# label chunks, 2 label methods, 6 steps of 8 tasks (checkpoint at 3 and 6), no re-ranking.
OVERRIDES = {"synthetic.num_models": 2, "synthetic.num_datasets": 8,
             "synthetic.num_downstream": 2, "data.num_train_tasks": 16, "label.chunk_size": 4,
             "label.methods": ("hscore", "leep"), "train.num_steps": 6,
             "train.log_every": 3, "train.checkpoint_every": 3, "eval.rerank_k": (0,)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli_value(v) -> str:
    return repr(tuple(v)) if isinstance(v, tuple) else str(v)


def _centred(x):
    """Scores up to a per-task shift: ListMLE (Eq. 4) and the ranking ignore it."""
    return x - x.mean(axis=-1, keepdims=True)


def test_two_processes_train_like_one(tmp_path):
    port = _free_port()
    workdir = str(tmp_path / "two")
    cmd = [sys.executable, "-m", "spider_jax.train", "--config=configs/smoke.py",
           f"--workdir={workdir}"] + [f"--config.{k}={_cli_value(v)}" for k, v in OVERRIDES.items()]
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
               JAX_NUM_PROCESSES="2", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    procs = [subprocess.Popen(cmd, cwd=REPO, env=dict(env, JAX_PROCESS_ID=str(i)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for i in range(2)]
    # The single-process reference runs meanwhile (the children mostly wait on compiles).
    config = smoke.get_config()
    for key, value in OVERRIDES.items():
        section, field = key.rsplit(".", 1)
        config[section][field] = value
    ref = train.train_and_evaluate(config, str(tmp_path / "one"))["image"]
    try:
        logs = [p.communicate(timeout=150)[0].decode(errors="replace") for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if any(p.returncode for p in procs) and any(
            "collectives" in log.lower() and ("not supported" in log.lower()
                                              or "unimplemented" in log.lower())
            for log in logs):
        pytest.skip("this jaxlib has no CPU collectives (gloo) for multi-process CPU runs")
    assert [p.returncode for p in procs] == [0, 0], "\n\n".join(log[-3000:] for log in logs)

    # Only process 0 printed the result table.
    assert "tau_w per downstream dataset" in logs[0]
    assert "tau_w per downstream dataset" not in logs[1]
    assert sorted(os.listdir(os.path.join(workdir, "image", "checkpoints"))) == ["3", "6"]

    _, model, params, zoo = train.load_trained(workdir)
    ref_params = ref["params"]
    # Every parameter agrees, except the two that get no gradient at all: ListMLE is
    # shift-invariant, so the head bias and the bias of the norm before it move only by
    # Adam's normalisation of float noise (sign(noise) * lr).
    flat = jax.tree_util.tree_leaves_with_path(params)
    ref_flat = dict((jax.tree_util.keystr(p), v)
                    for p, v in jax.tree_util.tree_leaves_with_path(ref_params))
    free = {"['head']['bias']", "['head_norm']['bias']"}
    checked = 0
    for path, value in flat:
        name = jax.tree_util.keystr(path)
        if name not in free:
            np.testing.assert_allclose(value, ref_flat[name], rtol=1e-6, atol=1e-6, err_msg=name)
            checked += 1
    assert checked == len(flat) - len(free)
    # Final scores on random tasks agree up to the shift those two parameters make.
    rng = np.random.default_rng(0)
    psi = rng.normal(size=(5, 12, zoo.psi_dim)).astype(np.float32)
    mask = np.arange(12)[None] < rng.integers(2, 13, size=(5, 1))
    two = inference.rerank_tasks(model, params, {"psi_centres": psi, "class_mask": mask}, 0)
    one = inference.rerank_tasks(model, ref_params, {"psi_centres": psi, "class_mask": mask}, 0)
    np.testing.assert_allclose(_centred(two), _centred(one), rtol=1e-4, atol=1e-4)
    assert np.ptp(_centred(one)) > 1e-2                     # the scorer discriminates
