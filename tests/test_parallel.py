"""Mesh, sharding and multi-host helpers (spider_jax.parallel) and the sweep expander."""
import importlib.util
import os
import pathlib

import chex
import jax
import numpy as np
import optax
import pytest

from spider_jax import losses, parallel


def test_mesh_uses_all_forced_devices():
    mesh = parallel.make_mesh()
    assert jax.device_count() == 8
    assert dict(mesh.shape) == {"data": 8, "model": 1}
    assert dict(parallel.make_mesh(model_parallel=2).shape) == {"data": 4, "model": 2}
    with pytest.raises(ValueError, match="divide"):
        parallel.make_mesh(model_parallel=3)


@pytest.mark.parametrize("n,pc", [(10, 3), (7, 8), (0, 2), (64, 4)])
def test_host_slices_tile_the_range(n, pc):
    covered = []
    for pi in range(pc):
        s = parallel.host_slice(n, pi, pc)
        covered.extend(range(n)[s])
    assert covered == list(range(n))
    sizes = [len(range(n)[parallel.host_slice(n, pi, pc)]) for pi in range(pc)]
    assert max(sizes) - min(sizes) <= 1


def test_check_batch_names_the_problem():
    mesh = parallel.make_mesh()
    parallel.check_batch(16, mesh)
    with pytest.raises(ValueError, match="divisible by the 8 data-parallel devices"):
        parallel.check_batch(12, mesh)


def test_host_to_global_shards_batch_axis_and_round_trips():
    mesh = parallel.make_mesh()
    x = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
    g = parallel.host_to_global({"x": x}, mesh)["x"]
    assert g.sharding.spec[0] == "data"
    assert len(g.addressable_shards) == 8
    assert g.addressable_shards[0].data.shape == (2, 3)
    np.testing.assert_array_equal(parallel.global_to_host(g), x)


def _load_sweep():
    path = pathlib.Path(__file__).resolve().parents[1] / "launch" / "sweep.py"
    spec = importlib.util.spec_from_file_location("sweep", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sweep_expands_grid_into_separate_workdirs():
    sweep = _load_sweep()
    cmds = sweep.build_commands("configs/smoke.py", "runs/s",
                                ["optim.lr=1e-3,3e-4", "--config.model.num_layers=1,2"])
    assert len(cmds) == 4
    workdirs = {c[4] for c in cmds}
    assert len(workdirs) == 4
    assert cmds[1][-2:] == ["--config.optim.lr=1e-3", "--config.model.num_layers=2"]
    with pytest.raises(ValueError, match="field.path=v1,v2"):
        sweep.expand_grid(["optim.lr"])
    with pytest.raises(ValueError, match="twice"):
        sweep.expand_grid(["a=1", "a=2"])


# ----------------------------------------------------------------------------- train / label
def _tiny_run(dropout=0.1):
    from configs import smoke
    from spider_jax import model as model_lib, train
    from spider_jax.sampler import Zoo

    config = smoke.get_config()
    config.model.d, config.model.dropout, config.model.attn_dropout = 16, dropout, dropout
    config.train.batch_size, config.train.max_specific = 8, 2
    zoo = Zoo(models=tuple("abcd"), dims=(5, 7, 5, 6), has_source_head=(False,) * 4,
              num_source_classes=(0,) * 4, psi_dim=6, modality="image")
    rng = np.random.default_rng(0)
    t, c = 16, 4
    labels = {"psi_centres": rng.normal(size=(t, c, zoo.psi_dim)).astype(np.float32),
              "class_mask": np.arange(c)[None, :] < rng.integers(2, c + 1, size=(t, 1)),
              "specific_centres": rng.normal(size=(t, 4, c, 7)).astype(np.float16),
              "rank_labels": rng.normal(size=(t, 4)).astype(np.float32)}
    model = model_lib.make_scorer(config, zoo.dims)
    tx, _ = train.make_optimizer(config, 10)
    return config, zoo, labels, model, tx


def _steps_on(mesh, num_steps, tx=None, dropout=0.1):
    """Runs num_steps sharded train steps on mesh; returns (params after each step, jitted)."""
    from spider_jax import train

    config, zoo, labels, model, adam = _tiny_run(dropout)
    tx = adam if tx is None else tx
    state, shardings = train.create_state(model, tx, zoo, 4, config.seed, mesh)
    step_fn = train.make_train_step(model, tx, config.train.loss, mesh, shardings)
    rng = jax.random.PRNGKey(1)
    rows = parallel.host_slice(config.train.batch_size)
    out = []
    for step in range(num_steps):
        batch = train.make_batch(labels, step, config, zoo.num_models, rows)
        state, metrics = step_fn(state, parallel.host_to_global(batch, mesh), rng)
        out.append((jax.tree.map(np.asarray, state["params"]), jax.tree.map(float, metrics)))
    return state, out, step_fn


def test_sharded_train_step_equals_single_device(monkeypatch):
    # Plain SGD: Adam divides by sqrt(v), which turns float noise in the exactly-zero
    # gradients of ListMLE's shift-invariant directions (the head bias) into O(lr) steps.
    sgd = optax.sgd(0.05)
    _, one, _ = _steps_on(parallel.make_mesh(devices=jax.devices()[:1]), 2, sgd)
    # One trace (so one compile) serves every step of the sharded run.
    monkeypatch.setattr(losses, "ranking_loss", chex.assert_max_traces(losses.ranking_loss, n=1))
    state, eight, step_fn = _steps_on(parallel.make_mesh(), 2, sgd)
    # The state is replicated on all 8 devices (created there) and the batch split over them.
    leaf = jax.tree.leaves(state["params"])[0]
    assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 8
    for (p1, m1), (p8, m8) in zip(one, eight):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), p1, p8)
        np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-6)
        np.testing.assert_allclose(m1["grad_norm"], m8["grad_norm"], rtol=1e-6)
    moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), one[0][0], one[1][0])
    assert max(jax.tree.leaves(moved)) > 1e-3               # the step really changed them


def test_batch_rows_are_host_slices_of_the_global_batch():
    from spider_jax import train

    config, zoo, labels, _, _ = _tiny_run()
    full = train.make_batch(labels, 5, config, zoo.num_models)
    parts = [train.make_batch(labels, 5, config, zoo.num_models, parallel.host_slice(8, i, 2))
             for i in range(2)]
    for k, v in full.items():
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), v)


def test_train_rejects_batch_not_dividing_the_data_axis(tmp_path):
    from configs import smoke
    from spider_jax import train

    config = smoke.get_config()
    config.train.batch_size = 12
    with pytest.raises(ValueError, match="divisible by the 8 data-parallel devices"):
        train.train_and_evaluate(config, str(tmp_path))


def test_label_sharded_equals_unsharded(tmp_path):
    from configs import smoke
    from spider_jax import bank as bank_lib, label, synthetic

    root = synthetic.make_bank(str(tmp_path / "bank"), num_models=4, num_datasets=6,
                               num_downstream=1, classes_per_dataset=(3, 4), examples_per_class=8,
                               dims=(6, 9, 6, 9), psi_dim=5, source_head_every=2, seed=1)
    bank = bank_lib.open_bank(root)
    config = smoke.get_config()
    config.data.num_train_tasks, config.data.max_classes = 11, 6
    config.data.examples_per_class, config.label.chunk_size = 4, 3
    ref = label.label_tasks(bank, config, modality="image", cache_dir=str(tmp_path / "a"),
                            progress=False)
    cache = str(tmp_path / "b")
    got = label.label_tasks(bank, config, modality="image", cache_dir=cache, progress=False,
                            mesh=parallel.make_mesh())
    # 3-task chunks, 8 devices: two chunks per sharded step padded to 8 tasks.
    assert sorted(os.listdir(cache)) == ["chunk_0000000.npz", "chunk_0000003.npz",
                                         "chunk_0000006.npz", "chunk_0000009.npz", "meta.json"]
    for k in ("psi_centres", "class_mask", "specific_centres", "num_classes", "rank_labels"):
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
    # LogME's float32 fixed point differs in the last bits with the batch layout (3e-6 rel).
    np.testing.assert_allclose(got["metric_scores"], ref["metric_scores"], rtol=1e-5, atol=1e-6)
    assert np.isnan(got["metric_scores"]).sum() == np.isnan(ref["metric_scores"]).sum() > 0
    # Resume: a removed chunk is relabelled (sharded) and matches again.
    os.remove(os.path.join(cache, "chunk_0000003.npz"))
    again = label.label_tasks(bank, config, modality="image", cache_dir=cache, progress=False,
                              mesh=parallel.make_mesh())
    np.testing.assert_array_equal(again["rank_labels"], ref["rank_labels"])
