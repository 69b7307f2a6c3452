"""Issue 12, items 2, 5, 6, 7, 8: no damaged workdir, a clear error for every bad input,
files readable like plain open() ones, no orphan temporaries."""

import json
import logging
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

from spider_jax import atomic
from spider_jax import bank as bank_lib
from spider_jax import label, score, synthetic
from tests.ranker_fixtures import NAMES, PSI_DIM, make_ranker
from tests.tiny import file_snapshot

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_config(bank_dir):
    from configs import smoke
    config = smoke.get_config()
    config.bank_dir = bank_dir
    config.modality = "image"
    config.data.num_train_tasks = 8
    config.data.max_classes = 6
    config.data.examples_per_class = 4
    config.label.chunk_size = 4
    config.model.d = 16
    config.train.batch_size = 8
    config.train.num_steps = 2
    config.train.checkpoint_every = 1
    config.train.max_to_keep = 3
    config.train.log_every = 1
    config.train.eval_every = 100
    return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished two-step training run (checkpoints at steps 1 and 2)."""
    from spider_jax import train
    base = tmp_path_factory.mktemp("run")
    bank = synthetic.make_bank(str(base / "bank"), num_models=3, num_datasets=5, num_downstream=1,
                               classes_per_dataset=(3, 4), examples_per_class=8, dims=(4, 6, 4),
                               psi_dim=5, source_head_every=2, seed=2)
    config = _tiny_config(bank)
    workdir = str(base / "w")
    train.train_and_evaluate(config, workdir)
    return config, workdir


def _cli(module, *args):
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def _error_line(r):
    assert r.returncode != 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), r.stderr
    return last


# --------------------------------------------------------------------------- item 2
def test_resume_with_another_config_refuses_and_writes_nothing(run, tmp_path):
    from spider_jax import ranker, train
    config, workdir = run
    copy = str(tmp_path / "w")
    shutil.copytree(workdir, copy)
    before = file_snapshot(copy)
    other = _tiny_config(config.bank_dir)
    other.model.d = 32                                   # another model width
    other.optim.lr = 5e-4
    with pytest.raises(ValueError) as e:
        train.train_and_evaluate(other, copy)
    msg = str(e.value)
    assert "config.model.d: 16 (stored) != 32 (now)" in msg
    assert "config.optim.lr: 0.001 (stored) != 0.0005 (now)" in msg
    assert "nothing was written" in msg
    assert file_snapshot(copy) == before                      # config.json etc. untouched
    ranker.Ranker.from_workdir(copy)                      # the run still loads
    # Logging cadence may change on resume: the same run resumes (nothing to train).
    same = _tiny_config(config.bank_dir)
    same.train.log_every = 7
    train.train_and_evaluate(same, copy)


def test_resume_with_another_zoo_refuses(run, tmp_path):
    from spider_jax import train
    config, workdir = run
    copy = str(tmp_path / "w")
    shutil.copytree(workdir, copy)
    zoo = json.load(open(os.path.join(copy, "zoo.json")))
    zoo["zoo"]["dims"] = [d + 1 for d in zoo["zoo"]["dims"]]
    with open(os.path.join(copy, "zoo.json"), "w") as fh:
        json.dump(zoo, fh)
    with pytest.raises(ValueError, match=r"zoo\.zoo\.dims"):
        train.train_and_evaluate(_tiny_config(config.bank_dir), copy)


# --------------------------------------------------------------------------- item 6
def _corrupt_latest(workdir):
    ckpt = os.path.join(workdir, "checkpoints")
    latest = max(int(s) for s in os.listdir(ckpt) if s.isdigit())
    for dirpath, _, files in os.walk(os.path.join(ckpt, str(latest))):
        for f in files:
            with open(os.path.join(dirpath, f), "wb") as fh:
                fh.write(b"garbage")
    return latest


def test_corrupted_latest_checkpoint_falls_back_with_a_warning(run, tmp_path, capfd):
    import jax
    from spider_jax import ranker, train
    config, workdir = run
    copy = str(tmp_path / "w")
    shutil.copytree(workdir, copy)
    assert _corrupt_latest(copy) == 2
    got = ranker.Ranker.from_workdir(copy)                # was a 147-line orbax traceback
    assert "checkpoint(s) [2]" in capfd.readouterr().err and got.models
    step1, step2 = train.load_trained(copy)[2], train.load_trained(workdir)[2]
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(step1),
                                                        jax.tree.leaves(step2)))
    # Training resumes from step 1, sets step 2 aside and ends equal to the clean run.
    summary = train.train_and_evaluate(_tiny_config(config.bank_dir), copy)
    assert os.listdir(os.path.join(copy, "checkpoints_unreadable"))
    for a, b in zip(jax.tree.leaves(summary["image"]["params"]), jax.tree.leaves(step2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree.leaves(train.load_trained(copy)[2]), jax.tree.leaves(step2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_workdir_that_is_a_file(tmp_path):
    from spider_jax import train
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        train.train_and_evaluate(_tiny_config(""), str(f))
    with pytest.raises(ValueError, match="is a file"):
        train.train_and_evaluate(_tiny_config(""), str(f / "sub"))
    r = _cli("spider_jax.train", "--config=configs/smoke.py", f"--workdir={f}")
    assert "is a file, not a directory" in _error_line(r)


def test_rank_missing_features_file(run, tmp_path):
    _, workdir = run
    r = _cli("spider_jax.rank", f"--workdir={workdir}", f"--features={tmp_path}/missing.npy",
             f"--labels={tmp_path}/l.npy")
    assert "--features=" in _error_line(r) and "missing.npy: no such file" in _error_line(r)


def _bank(tmp_path):
    return synthetic.make_bank(str(tmp_path / "bank"), num_models=2, num_datasets=3,
                               num_downstream=1, classes_per_dataset=(3,), examples_per_class=5,
                               dims=(4, 4), psi_dim=3, num_source_classes=5, seed=1)


def _edit_json(path, fn):
    with open(path) as fh:
        data = json.load(fh)
    fn(data)
    with open(path, "w") as fh:
        json.dump(data, fh)


@pytest.mark.parametrize("edit,expected", [
    (lambda m: m["models"].__setitem__(next(iter(m["models"])), 7),
     r"manifest.json: model \S+: entry must be an object"),
    (lambda m: next(iter(m["datasets"].values()))["splits"].__setitem__("train", "abc"),
     r"manifest.json: dataset \S+: split 'train' size must be a non-negative integer, got 'abc'"),
])
def test_malformed_manifest_entries(tmp_path, edit, expected):
    root = _bank(tmp_path)
    _edit_json(os.path.join(root, "manifest.json"), edit)
    with pytest.raises(ValueError, match=expected):
        bank_lib.open_bank(root)


def test_groundtruth_with_short_mean_is_rejected_on_open(tmp_path):
    root = _bank(tmp_path)
    ds = bank_lib.open_bank(root).pool("downstream")[0]
    _edit_json(os.path.join(root, "groundtruth.json"),
               lambda g: g["datasets"][ds].__setitem__("mean", g["datasets"][ds]["mean"][:1]))
    with pytest.raises(ValueError, match=rf"groundtruth.json: dataset {ds}: 'mean' must be a "
                                         rf"list of 2 numbers, one per model, got 1 values"):
        bank_lib.open_bank(root)
    with pytest.raises(ValueError, match="'mean' must be a list of 2 numbers"):
        bank_lib.open_bank(root, validate=False).groundtruth(ds)


# --------------------------------------------------------------------------- item 5
@pytest.fixture(scope="module")
def ranker():
    return make_ranker()


def _array_tasks(root, t=6, c=3, names=None):
    os.makedirs(root, exist_ok=True)
    centres = np.random.default_rng(0).normal(size=(t, c, PSI_DIM)).astype(np.float32)
    np.save(os.path.join(root, "psi_centres.npy"), centres)
    if names is not None:
        with open(os.path.join(root, "names.txt"), "w") as fh:
            fh.write("\n".join(names) + "\n")
    return centres


def test_repeated_task_names_are_refused(tmp_path):
    root = str(tmp_path / "tasks")
    _array_tasks(root, names=["a", "b", "c", "b", "e", "f"])
    with pytest.raises(ValueError, match=r"names.txt: task name 'b' is repeated \(tasks 1 and 3\)"):
        score.open_tasks(root)


def test_corrupt_and_pickled_npz_tasks_name_the_file(tmp_path):
    d = tmp_path / "npz"
    d.mkdir()
    np.savez(d / "good.npz", psi_centres=np.zeros((3, PSI_DIM), np.float32))
    (d / "broken.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match=r"broken.npz: not a readable .npz task file"):
        score.open_tasks(str(d))
    os.remove(d / "broken.npz")
    np.savez(d / "pickled.npz", psi_centres=np.array([[object()]], dtype=object))
    with pytest.raises(ValueError, match=r"pickled.npz: psi_centres is a pickled object array"):
        score.open_tasks(str(d))
    os.remove(d / "pickled.npz")
    bad = tmp_path / "arr"
    bad.mkdir()
    (bad / "psi_centres.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match=r"psi_centres.npy: not a readable .npy array"):
        score.open_tasks(str(bad))


def test_nan_task_is_named_before_anything_is_written(ranker, tmp_path):
    centres = np.random.default_rng(1).normal(size=(40, 3, PSI_DIM)).astype(np.float32)
    centres[29, 1, 0] = np.nan
    out = str(tmp_path / "s.csv")
    with pytest.raises(ValueError, match=r"task 'task000029' \(index 29\): psi class centres"):
        score.score_tasks(ranker, score.InMemoryTasks(centres), out, batch_size=8,
                          part_size=8, progress=False)
    assert os.listdir(tmp_path) == []                     # no parts, no meta, no output


def test_score_cli_errors_are_sentences(run, tmp_path):
    _, workdir = run
    tasks = str(tmp_path / "tasks")
    c = np.random.default_rng(0).normal(size=(6, 3, 5)).astype(np.float32)  # run's psi_dim 5
    os.makedirs(tasks)
    np.save(os.path.join(tasks, "psi_centres.npy"), c)
    with open(os.path.join(tasks, "names.txt"), "w") as fh:
        fh.write("a\nb\na\nc\nd\ne\n")
    out = str(tmp_path / "out.csv")
    assert "task name 'a' is repeated" in _error_line(
        _cli("spider_jax.score", f"--workdir={workdir}", f"--tasks={tasks}", f"--out={out}"))
    os.remove(os.path.join(tasks, "names.txt"))
    # An interrupted run, resumed with other flags: a sentence, not a traceback.
    from spider_jax import ranker as ranker_lib
    score.score_tasks(ranker_lib.Ranker.from_workdir(workdir), score.open_tasks(tasks), out,
                      batch_size=8, part_size=8, progress=False, stop_after=0)
    assert "holds parts of a different run" in _error_line(
        _cli("spider_jax.score", f"--workdir={workdir}", f"--tasks={tasks}", f"--out={out}",
             "--batch_size=16"))


# --------------------------------------------------------------------------- item 7
@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_get_the_mode_of_a_plain_open(tmp_path, umask_027, ranker):
    want = umask_027
    with open(tmp_path / "plain", "w"):
        pass
    assert _mode(tmp_path / "plain") == want
    root = _bank(tmp_path)                                # BankWriter: arrays + manifest
    for rel in ("manifest.json", bank_lib.labels_path(bank_lib.open_bank(root).datasets[0],
                                                      "train")):
        assert _mode(os.path.join(root, rel)) == want, rel
    atomic.write_npz(str(tmp_path / "chunk_0000000.npz"), {"a": np.zeros(2)})
    assert _mode(tmp_path / "chunk_0000000.npz") == want
    out = str(tmp_path / "s.csv")
    centres = np.random.default_rng(0).normal(size=(10, 3, PSI_DIM)).astype(np.float32)
    score.score_tasks(ranker, score.InMemoryTasks(centres), out, batch_size=8, part_size=8,
                      progress=False, keep_parts=True)
    assert _mode(out) == want
    assert _mode(os.path.join(out + ".parts", "part-0000000.npz")) == want


# --------------------------------------------------------------------------- item 8
def _dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _plant(directory):
    """A dead writer's temporary, a live one's, an old unnamed one, and files not ours."""
    host = atomic._host()
    os.makedirs(directory, exist_ok=True)
    names = {"dead": f".tmp-{host}-{_dead_pid()}-abc123.part",
             "live": f".tmp-{host}-{os.getpid()}-def456.part",
             "old": ".tmp-oldstyle1.part",
             "other": ".tmp-notours.txt", "user": "tmpxyz.tmp"}
    for n in names.values():
        with open(os.path.join(directory, n), "wb") as fh:
            fh.write(b"x")
    old = os.path.join(directory, names["old"])
    os.utime(old, (1e9, 1e9))
    return names


def _left(directory, names):
    present = set(os.listdir(directory))
    return {k for k, n in names.items() if n in present}


def test_stale_temporaries_are_removed_on_the_next_run(tmp_path, ranker):
    kept = {"live", "other", "user"}
    # bank: reopening the writer (extraction resumes)
    root = _bank(tmp_path)
    feat_dir = os.path.join(root, "features", bank_lib.open_bank(root).models[0])
    planted = _plant(feat_dir)
    bank_lib.BankWriter(root)
    assert _left(feat_dir, planted) == kept
    # label cache
    cache = str(tmp_path / "labels")
    planted = _plant(cache)
    label._open_cache(cache, {"hash": "h"})
    assert _left(cache, planted) == kept
    # score: the parts directory and the output's directory
    out_dir = tmp_path / "scores"
    out = str(out_dir / "s.csv")
    planted_parts, planted_out = _plant(out + ".parts"), _plant(str(out_dir))
    centres = np.random.default_rng(0).normal(size=(10, 3, PSI_DIM)).astype(np.float32)
    score.score_tasks(ranker, score.InMemoryTasks(centres), out, batch_size=8, part_size=8,
                      progress=False, keep_parts=True)
    assert _left(out + ".parts", planted_parts) == kept
    assert _left(str(out_dir), planted_out) == kept
    assert len(score.read_scores(out, list(NAMES))[0]) == 10
