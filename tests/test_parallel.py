"""Mesh, sharding and multi-host helpers (spider_jax.parallel) and the sweep expander."""
import importlib.util
import pathlib

import jax
import numpy as np
import pytest

from spider_jax import parallel


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
