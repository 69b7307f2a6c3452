"""Training end to end on the synthetic smoke bank: learning, NaN stop, kill-and-resume."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from spider_jax import losses, train
from spider_jax import workdir as workdir_lib
from configs import smoke
from tests.tiny import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


TOTAL = 150
# The smoke config, shortened; the kill-and-resume test reruns exactly this config.
OVERRIDES = {"train.num_steps": TOTAL, "train.checkpoint_every": 30, "train.eval_every": 1000,
             "model.dropout": 0.1}


def _config():
    config = smoke.get_config()
    for key, value in OVERRIDES.items():
        section, field = key.split(".")
        config[section][field] = value
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("smoke"))
    config = _config()
    config.synthetic.dims = (16, 16, 16, 16, 16, 16)   # one feature-dim group: fewer compiles
    return workdir, config, train.train_and_evaluate(config, workdir)["image"]


def test_training_reduces_loss_and_raises_tau(trained):
    _, _, s = trained
    loss = [h["loss"] for h in s["history"]]
    assert np.mean(loss[-5:]) < 0.8 * np.mean(loss[:2])
    assert s["evals"][0]["step"] == 0
    assert s["evals"][-1]["spider_k0"] > s["evals"][0]["spider_k0"] + 0.2
    assert set(s["final"]["columns"]) >= {"spider_k0", "spider_k3", "rankagg", "logme", "hscore"}
    assert "tau_w per downstream dataset" in s["table"]


def test_load_trained_restores_final_params(trained):
    workdir, config, s = trained
    cfg, model, params, zoo = train.load_trained(workdir)
    assert zoo.num_models == 6 and cfg.model.d == config.model.d
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, s["params"])
    psi = np.zeros((2, 12, zoo.psi_dim), np.float32)
    mask = np.ones((2, 12), bool)
    assert model.apply({"params": params}, psi, mask).shape == (2, 6)


def test_nan_loss_stops_with_clear_message(trained, tmp_path, monkeypatch):
    ref_dir, _, _ = trained
    config = _config()
    config.bank_dir = os.path.join(ref_dir, "bank")            # reuse bank and label cache
    config.label.cache_dir = str(tmp_path / "labels")
    os.makedirs(config.label.cache_dir)
    os.symlink(os.path.join(ref_dir, "image", "labels"), os.path.join(config.label.cache_dir, "image"))
    config.data.num_train_tasks = config.label.chunk_size
    config.train.num_steps = 3
    monkeypatch.setattr(losses, "ranking_loss", lambda *a, **k: np.float32(np.nan) * a[1].sum())
    with pytest.raises(FloatingPointError, match="loss became nan at step 0"):
        train.train_and_evaluate(config, str(tmp_path / "run"))


def _launch(workdir, overrides):
    cmd = [sys.executable, "-m", "spider_jax.train", "--config=configs/smoke.py",
           f"--workdir={workdir}"] + overrides
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _steps(ckpt_dir):
    if not os.path.isdir(ckpt_dir):
        return []
    return sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit())


def test_kill_and_resume_matches_uninterrupted(trained, tmp_path):
    ref_dir, _, ref = trained
    # Same config as the in-process reference run; reuse its bank and label cache.
    cache = tmp_path / "labels"
    cache.mkdir()
    os.symlink(os.path.join(ref_dir, "image", "labels"), cache / "image")
    overrides = [f"--config.bank_dir={os.path.join(ref_dir, 'bank')}",
                 f"--config.label.cache_dir={cache}"]
    overrides += [f"--config.{k}={v}" for k, v in OVERRIDES.items()]
    killed = str(tmp_path / "killed")
    overrides.append("--config.eval.rerank_k=()")   # no scorer evaluation: params unaffected
    p = _launch(killed, overrides + ["--config.train.sleep_per_step=0.05"])
    ckpts = os.path.join(killed, "image", "checkpoints")
    deadline = time.time() + 120
    while not _steps(ckpts) and time.time() < deadline:
        assert p.poll() is None, p.stderr.read().decode()[-2000:]
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    at_kill = _steps(ckpts)
    assert at_kill and max(at_kill) < TOTAL
    p = _launch(killed, overrides)
    assert p.wait(timeout=120) == 0, p.stderr.read().decode()[-2000:]
    assert _steps(ckpts)[-1] == TOTAL
    _, _, params_resumed, _ = train.load_trained(killed)
    jax.tree_util.tree_map(np.testing.assert_array_equal, ref["params"], params_resumed)


def test_training_and_labelling_loops_make_no_implicit_transfer(tmp_path):
    """Under ``jax.transfer_guard("disallow")`` the labelling and training loops run: every
    host <-> device copy is explicit (batches put, logged values fetched on the log
    interval); no per-step sync such as ``float(loss)``."""
    config = tiny_config()
    config.train.num_steps = 6
    config.train.log_every = 3
    config.train.eval_every = 3
    config.train.checkpoint_every = 3
    with jax.transfer_guard("disallow"):
        s = train.train_and_evaluate(config, str(tmp_path / "wd"))["image"]
    assert [h["step"] for h in s["history"]] == [3, 6]
    assert np.isfinite([h["loss"] for h in s["history"]]).all()


@pytest.mark.slow
def test_issue11_switches_end_to_end(tmp_path):
    """Probe + RankAgg supervision, prior + gated residual, a 3-member ensemble and the hybrid
    re-ranking train, evaluate, checkpoint and restore into a Ranker whose folded k = 0 path
    equals model.apply (the loops under ``transfer_guard("disallow")``)."""
    from spider_jax import ranker as ranker_lib

    config = tiny_config()
    config.train.num_steps = 6
    config.train.checkpoint_every = 6
    config.train.eval_every = 6
    config.model.prior_residual = True
    config.model.residual_l2 = 0.01
    config.ensemble.members = 3
    config.label.supervision = "both"
    config.eval.rerank_k = (0, 3)
    config.eval.hybrid_metric = "logme"          # off by default (the paper's Algorithm 2)
    workdir = str(tmp_path / "w")
    with jax.transfer_guard("disallow"):       # the switches add no implicit transfer either
        summary = train.train_and_evaluate(config, workdir)["image"]
    assert all(np.isfinite(h["loss"]) for h in summary["history"])
    final = summary["final"]
    assert {"spider_k0", "spider_k3", "hybrid_k3", "spider_k0_member2"} <= set(final["columns"])
    assert len(final["members"]["spider_k0"]) == 2
    cache = workdir_lib.cache_dir_for(config, workdir, "image")
    assert os.path.exists(os.path.join(cache, "probe_meta.json"))
    assert os.path.exists(os.path.join(cache, "probe_0000000.npz"))
    gate = summary["params"]["members"]["gate_scale"]
    assert float(gate[0]) != 1.0 and np.all(np.asarray(gate) == gate[0])   # calibrated, frozen
    r = ranker_lib.Ranker.from_workdir(workdir)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 4, r.psi_dim)).astype(np.float32)
    mask = np.ones((3, 4), bool)
    np.testing.assert_allclose(r.scores_k0(centres, mask),
                               np.asarray(r.model.apply(r.variables, centres, mask)),
                               rtol=1e-5, atol=1e-5)
