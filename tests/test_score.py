"""Tests for spider_jax.score: batch = per-task ranking, resume without duplicates, sharding."""

import csv
import os

import jax
import numpy as np
import pytest

from spider_jax import parallel
from spider_jax import ranker as ranker_lib
from spider_jax import score
from tests.ranker_fixtures import MAX_CLASSES, NAMES, PSI_DIM, make_ranker

T, C = 21, 6


@pytest.fixture(scope="module")
def ranker():
    return make_ranker()


@pytest.fixture(scope="module")
def tasks():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(T, C, PSI_DIM)).astype(np.float32)
    mask = np.ones((T, C), bool)
    for t in range(T):
        mask[t, 2 + t % (C - 1):] = False
    centres[~mask] = 0.0
    return centres, mask


def _rows(path):
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_batch_scoring_equals_per_task_ranking(ranker, tasks, tmp_path):
    centres, mask = tasks
    out = score.score_tasks(ranker, score.InMemoryTasks(centres, mask), str(tmp_path / "s.csv"),
                            batch_size=8, part_size=16, progress=False)   # 2 batches a part
    rows = _rows(out)
    assert len(rows) == T * len(NAMES)
    names, models, scores = score.read_scores(out, NAMES)
    assert names == [f"task{i:06d}" for i in range(T)]
    by_task = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r)
    for t in range(T):
        c = int(mask[t].sum())
        res = ranker.rank(ranker_lib.Task.from_centres(centres[t, :c], name=f"t{t}"))
        np.testing.assert_allclose(scores[t], res.scores, rtol=1e-5, atol=1e-5)
        got = by_task[f"task{t:06d}"]
        assert [g["model"] for g in got] == [NAMES[i] for i in res.order]   # rank order
        assert [int(g["rank"]) for g in got] == list(range(1, len(NAMES) + 1))
    assert not os.path.exists(out + ".parts")


def test_resume_after_interruption_has_no_duplicates(ranker, tasks, tmp_path):
    centres, mask = tasks
    src = score.InMemoryTasks(centres, mask)
    out = str(tmp_path / "r.csv")
    assert score.score_tasks(ranker, src, out, batch_size=8, part_size=8, progress=False,
                             stop_after=2) is None          # "killed" after 2 of 3 parts
    assert not os.path.exists(out)
    parts = sorted(os.listdir(out + ".parts"))
    assert parts == ["meta.json", "part-0000000.npz", "part-0000001.npz"]
    # A half-written temporary file from the kill must not count as a part.
    open(os.path.join(out + ".parts", "junk.tmp"), "w").close()
    assert score.score_tasks(ranker, src, out, batch_size=8, part_size=8,
                             progress=False) == out
    rows = _rows(out)
    keys = [(r["task"], r["model"]) for r in rows]
    assert len(keys) == len(set(keys)) == T * len(NAMES)
    full = score.score_tasks(ranker, src, str(tmp_path / "full.csv"), batch_size=8,
                             progress=False)
    assert _rows(full) == rows


def test_resume_refuses_a_different_run(ranker, tasks, tmp_path):
    centres, mask = tasks
    out = str(tmp_path / "x.csv")
    score.score_tasks(ranker, score.InMemoryTasks(centres, mask), out, batch_size=8,
                      part_size=8, progress=False, stop_after=1)
    with pytest.raises(ValueError, match="different run"):
        score.score_tasks(ranker, score.InMemoryTasks(centres, mask), out, batch_size=16,
                          progress=False)


def test_sharded_equals_single_device(ranker, tasks, tmp_path):
    assert jax.device_count() == 8
    centres, mask = tasks
    src = score.InMemoryTasks(centres, mask)
    one = score.score_tasks(ranker, src, str(tmp_path / "one.csv"), batch_size=8,
                            mesh=parallel.make_mesh(devices=jax.devices()[:1]), progress=False)
    eight = score.score_tasks(ranker, src, str(tmp_path / "eight.csv"), batch_size=8,
                              mesh=parallel.make_mesh(), progress=False)
    _, _, a = score.read_scores(one, NAMES)
    _, _, b = score.read_scores(eight, NAMES)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert [r["model"] for r in _rows(one)] == [r["model"] for r in _rows(eight)]


def test_task_layouts_give_the_same_scores(ranker, tasks, tmp_path):
    centres, mask = tasks
    arr = tmp_path / "arr"
    arr.mkdir()
    np.save(arr / "psi_centres.npy", centres.astype(np.float16).astype(np.float32))
    np.save(arr / "class_mask.npy", mask)
    (arr / "names.txt").write_text("".join(f"n{t:03d}\n" for t in range(T)))
    npz = tmp_path / "npz"
    npz.mkdir()
    for t in range(T):
        c = int(mask[t].sum())
        np.savez(npz / f"n{t:03d}.npz", psi_centres=centres[t, :c].astype(np.float16))
    a = score.open_tasks(str(arr))
    b = score.open_tasks(str(npz))
    assert isinstance(a, score.ArrayTasks) and isinstance(b, score.NpzDirTasks)
    assert a.names() == b.names() and b.num_classes == int(mask.sum(1).max())
    outs = [score.score_tasks(ranker, s, str(tmp_path / f"{i}.csv"), batch_size=8,
                              progress=False) for i, s in enumerate((a, b))]
    sa, sb = (score.read_scores(o, NAMES)[2] for o in outs)
    np.testing.assert_allclose(sa, sb, rtol=1e-5, atol=1e-5)


def test_ranks_from_scores_matches_ranking():
    rng = np.random.default_rng(1)
    s = rng.integers(0, 3, size=(6, 5)).astype(np.float32)   # many ties
    ranks = score.ranks_from_scores(s)
    for row, r in zip(s, ranks):
        res = ranker_lib.Ranking(NAMES, row, row, np.zeros(5, bool))
        np.testing.assert_array_equal(r, res.ranks)


def test_bad_task_sources(ranker, tmp_path):
    rng = np.random.default_rng(2)
    wide = score.InMemoryTasks(rng.normal(size=(3, 4, PSI_DIM + 2)).astype(np.float32))
    with pytest.raises(ValueError, match="psi feature width"):
        score.score_tasks(ranker, wide, str(tmp_path / "a.csv"), progress=False)
    many = score.InMemoryTasks(rng.normal(size=(3, MAX_CLASSES + 1, PSI_DIM)).astype(np.float32))
    with pytest.raises(ValueError, match="more than the"):
        score.score_tasks(ranker, many, str(tmp_path / "b.csv"), progress=False)
    bad = rng.normal(size=(3, 4, PSI_DIM)).astype(np.float32)
    bad[1, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        score.score_tasks(ranker, score.InMemoryTasks(bad), str(tmp_path / "c.csv"),
                          progress=False)
    with pytest.raises(ValueError, match="not a directory"):
        score.open_tasks(str(tmp_path / "missing"))


_CHILD = """
import sys
sys.path.insert(0, {root!r})
pid, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
from spider_jax import parallel
parallel.maybe_initialize_distributed(force=True, coordinator_address=f"127.0.0.1:{{port}}",
                                      num_processes=2, process_id=pid)
import numpy as np
from spider_jax import score
from tests.ranker_fixtures import make_ranker, PSI_DIM
rng = np.random.default_rng(0)
src = score.InMemoryTasks(rng.normal(size=(21, 6, PSI_DIM)).astype(np.float32))
score.score_tasks(make_ranker(), src, out, batch_size=8, part_size=8, progress=False)
"""


@pytest.mark.slow
def test_two_processes_equal_one(ranker, tmp_path):
    """Two local processes (4 devices each) joined by jax.distributed: each reads only its
    slice of every batch; process 0 writes the same rows as a single process."""
    import socket
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(root=root))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=4")
    out = str(tmp_path / "mh.csv")
    procs = [subprocess.Popen([sys.executable, str(script), str(i), str(port), out], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for i in range(2)]
    logs = [p.communicate(timeout=180)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    rng = np.random.default_rng(0)
    src = score.InMemoryTasks(rng.normal(size=(21, 6, PSI_DIM)).astype(np.float32))
    single = score.score_tasks(ranker, src, str(tmp_path / "one.csv"), batch_size=8,
                               progress=False)
    np.testing.assert_allclose(score.read_scores(out, NAMES)[2],
                               score.read_scores(single, NAMES)[2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("out_name", ["top.csv", "top.parquet"])
def test_top_keeps_each_tasks_best_ptms(ranker, tasks, tmp_path, out_name):
    """--top=2 writes exactly the first two rows of every task of the full output."""
    if out_name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    centres, mask = tasks
    source = score.InMemoryTasks(centres, mask)
    full = score.score_tasks(ranker, source, str(tmp_path / "all.csv"), batch_size=8, part_size=16,
                             progress=False)
    top = score.score_tasks(ranker, source, str(tmp_path / out_name), batch_size=8, part_size=16,
                            progress=False, top=2)
    want = [r for r in _rows(full) if int(r["rank"]) <= 2]
    if top.endswith(".parquet"):
        import pyarrow.parquet as pq
        t = pq.read_table(top).to_pydict()
        got = [dict(task=a, model=b, rank=str(d)) for a, b, d in zip(t["task"], t["model"], t["rank"])]
        want = [{k: r[k] for k in ("task", "model", "rank")} for r in want]
    else:
        got = _rows(top)
    assert got == want and len(got) == 2 * T
