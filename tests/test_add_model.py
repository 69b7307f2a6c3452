"""add_model: a scorer trained without one PTM, extended with it (paper appendix C.4).

The reference for the new PTM's supervision is the ordinary labeller run on the whole
zoo (``label.label_tasks``, all PTMs at once), independent of add_model's one-PTM path.
"""

import os

import jax
import numpy as np
import pytest

from spider_jax import add_model, bank as bank_lib, label, synthetic, train
from spider_jax import workdir as workdir_lib
from spider_jax.ranker import Ranker
from tests.tiny import file_snapshot

NEW = "ptm02"


def _config(bank_dir):
    from configs import smoke

    c = smoke.get_config()
    c.bank_dir = bank_dir
    c.synthetic = {"enabled": False}
    c.modality = "image"
    c.data.num_train_tasks = 32
    c.model.d = 16
    c.train.num_steps = 8
    c.train.log_every = 4
    return c


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    root = tmp_path_factory.mktemp("add_model")
    bank_dir = synthetic.make_bank(str(root / "bank"), num_models=5, num_datasets=10,
                                   num_downstream=2, dims=[16, 24, 40, 12, 16], seed=3)
    config = _config(bank_dir)
    bank = bank_lib.open_bank(bank_dir).subset("image")
    old = str(root / "old")
    view = bank.select_models([m for m in bank.models if m != NEW])
    train.train_one(config, old, view, "image", os.path.join(old, "labels"))
    before = file_snapshot(old)
    res = add_model.add_model(old, bank_dir, NEW, out=str(root / "new"), num_steps=30,
                              progress=False)
    return {"root": root, "old": old, "new": str(root / "new"), "res": res, "bank": bank,
            "config": config, "before": before}


def test_original_untouched_and_extended_run_loads(extended):
    assert file_snapshot(extended["old"]) == extended["before"]
    new = Ranker.from_workdir(extended["new"])
    assert new.models == ("ptm00", "ptm01", "ptm02", "ptm03", "ptm04")
    assert new.dims == (16, 24, 40, 12, 16)
    assert not any(n.startswith("new.tmp") for n in os.listdir(extended["root"]))
    with pytest.raises(ValueError, match="exists"):
        add_model.add_model(extended["old"], extended["bank"].root, NEW, out=extended["new"],
                            num_steps=1, progress=False)
    with pytest.raises(ValueError, match="already in the zoo"):
        add_model.add_model(extended["new"], extended["bank"].root, NEW, num_steps=1,
                            progress=False)


def test_only_the_new_ptm_is_learned(extended):
    p_old = jax.tree.map(np.asarray, train.load_trained(extended["old"])[2])
    p_new = jax.tree.map(np.asarray, train.load_trained(extended["new"])[2])
    j = 2
    for key in p_old:
        if key in add_model.NEW_LEAVES:
            continue
        jax.tree.map(np.testing.assert_array_equal, p_old[key], p_new[key])
    keep = [0, 1, 3, 4]
    np.testing.assert_array_equal(p_new["model_tokens"][keep], p_old["model_tokens"])
    np.testing.assert_array_equal(p_new["specific_bias"][keep], p_old["specific_bias"])
    d_old = p_old["specific_proj"].shape[1]
    np.testing.assert_array_equal(p_new["specific_proj"][keep, :d_old], p_old["specific_proj"])
    assert not np.any(p_new["specific_proj"][keep, d_old:])   # zero padding
    assert np.any(p_new["specific_proj"][j, :40])
    # old PTMs score every task exactly as before; the new one has a score of its own
    old_r, new_r = Ranker.from_workdir(extended["old"]), Ranker.from_workdir(extended["new"])
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 5, old_r.psi_dim)).astype(np.float32)
    mask = np.ones((6, 5), bool)
    np.testing.assert_allclose(new_r.scores_k0(centres, mask)[:, keep],
                               old_r.scores_k0(centres, mask), rtol=1e-6, atol=1e-6)
    loss = extended["res"]["loss"]
    assert np.mean(loss[-5:]) < np.mean(loss[:5])


def test_new_labels_equal_labelling_the_whole_zoo(extended, tmp_path):
    """The extended run's label cache == label_tasks on all five PTMs from scratch."""
    config = extended["config"]
    ref = label.label_tasks(extended["bank"], config, modality="image",
                            cache_dir=str(tmp_path / "ref"), progress=False)
    new_config = workdir_lib.read_run(extended["new"]).config
    got = label.label_tasks(extended["bank"], new_config, modality="image",
                            cache_dir=os.path.join(extended["new"], "labels"), progress=False)
    assert got["meta"]["hash"] == ref["meta"]["hash"]       # a valid cache for the new zoo
    np.testing.assert_allclose(got["metric_scores"], ref["metric_scores"], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got["rank_labels"], ref["rank_labels"])
    np.testing.assert_array_equal(got["specific_centres"], ref["specific_centres"])
