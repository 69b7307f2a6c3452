"""Leave-one-group-out benchmark (spider_jax.logo) on a tiny synthetic bank with 4 groups."""

import copy
import json
import os

import numpy as np
import pytest

from configs import logo_smoke
from spider_jax import bank as bank_lib
from spider_jax import groundtruth, label, logo
from spider_jax import workdir as workdir_lib


def _config():
    cfg = logo_smoke.get_config()
    cfg.logo.methods = ("logme", "hscore", "regularized_hscore", "leep", "nce")
    cfg.logo.train_steps = 10
    cfg.logo.select_every = 5
    return cfg


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("logo"))
    cfg = _config()
    res = logo.run_logo(cfg, wd, progress=False, log=lambda *a: None)
    return cfg, wd, res


# ----------------------------------------------------------------------------- pure parts
def test_fold_plan_excludes_held_out_and_validation_groups():
    touched = [frozenset(s) for s in (["a"], ["b"], ["a", "c"], ["c"], ["d", "b"], ["d"])]
    plan = {f["held_out"]: f for f in logo.fold_plan(["a", "b", "c", "d"], touched)}
    assert plan["a"]["validation"] == "b" and plan["d"]["validation"] == "a"
    assert plan["a"]["outer"] == [1, 3, 4, 5] and plan["a"]["train"] == [3, 5]
    assert plan["c"]["outer"] == [0, 1, 4, 5] and plan["c"]["train"] == [0, 1]
    for f in plan.values():
        assert all(f["held_out"] not in touched[i] for i in f["outer"])
        assert all(f["validation"] not in touched[i] for i in f["train"])
    assert logo.validation_group("a", ["a", "b"]) is None


def test_anchored_score_is_the_prior_plus_weighted_transformer_z_scores():
    from scipy import stats

    rng = np.random.default_rng(0)
    prior, raw = rng.normal(size=6), rng.normal(size=(4, 6))
    want = stats.zscore(prior)[None] + 0.5 * stats.zscore(raw, axis=1)
    np.testing.assert_allclose(logo.anchored(prior, raw, 0.5), want, rtol=1e-12)
    # weight 0: every task ranked as the prior; inf: the transformer alone
    zero = logo.anchored(prior, raw, 0.0)
    assert all((np.argsort(-r) == np.argsort(-prior)).all() for r in zero)
    np.testing.assert_array_equal(logo.anchored(prior, raw, float("inf")), raw)
    # a task whose transformer scores are all equal falls back to the prior (no NaN)
    flat = logo.anchored(prior, np.ones((1, 6)), 2.0)
    np.testing.assert_allclose(flat[0], stats.zscore(prior))


def test_fold_labels_follow_the_supervision_switch():
    rng = np.random.default_rng(0)
    pool = {"rank_labels": rng.normal(size=(5, 4)), "probe_scores": rng.uniform(size=(5, 4)),
            "class_mask": np.ones((5, 3), bool)}
    cfg = _config()
    rows = [0, 2, 4]
    np.testing.assert_allclose(logo.fold_labels(cfg, pool, rows)["targets"],
                               pool["rank_labels"][rows], rtol=1e-6)
    cfg.label.supervision = "probe"          # the sup_probe ablation trains on probe labels
    np.testing.assert_allclose(logo.fold_labels(cfg, pool, rows)["targets"],
                               pool["probe_scores"][rows], rtol=1e-6)


def test_timer_counts_a_finished_stage_once(tmp_path):
    path = str(tmp_path / "timings.json")
    t = logo._Timer(path)
    with pytest.raises(logo.MoreWork):
        with t.stage("image/pool_labels"):
            raise logo.MoreWork("stopped")
    with t.stage("image/pool_labels"):
        pass
    first = logo._Timer(path).data["image/pool_labels"]
    again = logo._Timer(path)
    with again.stage("image/pool_labels"):          # a later cache reload
        import time
        time.sleep(0.05)
    assert logo._Timer(path).data == {"image/pool_labels": first}


def _bootstrap_loop(values, datasets, num_boot, seed):
    """Independent reference: resample datasets, then tasks within each, one draw at a time."""
    rng = np.random.default_rng(seed)
    names = sorted(set(datasets))
    by = {d: [v for v, dd in zip(values, datasets) if dd == d] for d in names}
    out = []
    for _ in range(num_boot):
        drawn = []
        for d in rng.choice(names, len(names)):
            vals = by[d]
            drawn += [vals[i] for i in rng.integers(0, len(vals), len(vals))]
        out.append(np.mean(drawn))
    return np.asarray(out)


def test_hierarchical_bootstrap_matches_a_loop_reference():
    rng = np.random.default_rng(0)
    datasets = sum(([f"d{i}"] * n for i, n in enumerate((3, 5, 2, 6, 4))), [])
    offsets = {f"d{i}": o for i, o in enumerate((0.1, 0.5, -0.2, 0.3, 0.8))}
    values = np.asarray([offsets[d] + 0.1 * rng.normal() for d in datasets])
    boot = logo.hierarchical_bootstrap(values[None], datasets, num_boot=4000, seed=1)[0]
    ref = _bootstrap_loop(values, datasets, 4000, 2)
    assert abs(boot.mean() - ref.mean()) < 0.02
    assert abs(boot.std() - ref.std()) / ref.std() < 0.1
    # dataset-level resampling: far wider than resampling tasks alone
    flat = values[rng.integers(0, values.size, (4000, values.size))].mean(1)
    assert boot.std() > 1.5 * flat.std()


def test_hierarchical_bootstrap_nan_and_paired():
    v = np.asarray([[1.0, 1.0, 1.0, 1.0], [0.0, np.nan, 2.0, 2.0]])
    boot = logo.hierarchical_bootstrap(v, ["a", "a", "b", "b"], num_boot=300, seed=0)
    assert np.allclose(boot[0], 1.0)
    got = boot[1][np.isfinite(boot[1])]          # NaN only when every draw was NaN
    assert got.size > 250
    allowed = np.asarray([0.0, 2 / 3, 1.0, 4 / 3, 2.0])
    assert np.all(np.min(np.abs(got[:, None] - allowed[None]), axis=1) < 1e-9)


def test_eval_tasks_are_seeded_subsets_of_one_dataset(tmp_path):
    from spider_jax import synthetic

    root = synthetic.make_bank(str(tmp_path / "b"), num_models=3, num_datasets=4,
                               num_downstream=1, num_groups=2, classes_per_dataset=(6, 3),
                               examples_per_class=12, psi_dim=4, seed=1)
    bank = bank_lib.open_bank(root).subset("image")
    cfg = _config().logo
    tasks, notes = logo.eval_tasks(bank, cfg)
    again, _ = logo.eval_tasks(bank, cfg)
    assert not notes
    assert [t.name for t in tasks] == [t.name for t in again]
    assert all(np.array_equal(a, b) for t, u in zip(tasks, again)
               for a, b in zip(t.spec.class_rows, u.spec.class_rows))
    groups = logo.dataset_groups(bank)
    for ds in bank.datasets:
        mine = [t for t in tasks if t.dataset == ds]
        assert [t.kind for t in mine] == ["full"] + ["subset"] * cfg.num_subsets
        labels = np.asarray(bank.labels(ds))
        for t in mine:
            assert t.group == groups[ds] == bank.dataset_info(ds)["group"]
            lo = 2 if t.kind == "subset" else bank.dataset_info(ds)["num_classes"]
            assert lo <= t.spec.num_classes <= max(lo, cfg.subset_max_classes)
            for rows in t.spec.class_rows:
                assert len(set(labels[rows])) == 1 and len(rows) >= cfg.num_folds
                cap = cfg.subset_per_class if t.kind == "subset" else cfg.full_max_examples
                assert len(rows) <= max(cap, cfg.num_folds)


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_every_held_out_task_once_and_no_training_task_touches_its_group(run):
    cfg, wd, res = run
    ev = res["evals"]["image"]
    folds = res["folds"][("image", "main")]
    names = sorted(n for f in folds for n in f["test_tasks"])
    assert names == sorted(t.name for t in ev["tasks"])           # each task held out once
    assert len({f["held_out"] for f in folds}) == 4
    bank = workdir_lib.open_bank_for(cfg, wd)
    sub, zoo = label.zoo_for(bank, "image")
    sampler = label.make_sampler(sub, zoo, logo.pool_config(cfg))
    groups = logo.dataset_groups(sub)
    pool, touched = logo.label_pool(bank, "image", cfg, os.path.join(wd, "image", "pool"),
                                    progress=False)
    for i in range(len(touched)):                                  # recorded groups are right
        assert touched[i] == frozenset(groups[d] for d in sampler.spec(i).datasets)
    for f in logo.fold_plan(sorted(set(groups.values())), touched):
        used = f["outer"] if cfg.logo.refit else f["train"]
        assert used and all(f["held_out"] not in touched[i] for i in used)
    for f in folds:
        assert all(ev["tasks"][[t.name for t in ev["tasks"]].index(n)].group == f["held_out"]
                   for n in f["test_tasks"])
        assert f["validation"] != f["held_out"]
    methods = {r["method"] for r in res["rows"]}
    assert {"spider_k0", "spider_k3", "rankagg", "zoo_prior", "largest_first", "logme"} <= methods


@pytest.mark.slow
def test_eval_ground_truth_is_the_probe_on_the_task_rows(run):
    cfg, wd, res = run
    ev = res["evals"]["image"]
    bank = workdir_lib.open_bank_for(cfg, wd)
    sub, zoo = label.zoo_for(bank, "image")
    for i in (0, 2):
        t = ev["tasks"][i]
        rows = np.concatenate(t.spec.class_rows)
        y = np.concatenate([np.full(len(r), c) for c, r in enumerate(t.spec.class_rows)])
        pairs = [(np.asarray(sub.features(m, t.dataset))[rows], y, t.spec.num_classes)
                 for m in zoo.models]
        acc = groundtruth.linear_probe(pairs, num_folds=cfg.logo.num_folds, seeds=(0, 1))
        np.testing.assert_allclose(ev["truth"][i], [groundtruth.summarize(a)[0][0] for a in acc],
                                   atol=1e-6)


@pytest.mark.slow
def test_zoo_prior_uses_training_groups_only(run):
    _, _, res = run
    ev = res["evals"]["image"]
    for f in res["folds"][("image", "main")]:
        train = [i for i, t in enumerate(ev["tasks"]) if t.group != f["held_out"]]
        prior = ev["truth"][train].mean(0)
        tr = [r for r in res["rows"] if r["method"] == "zoo_prior" and r["group"] == f["held_out"]]
        i = [t.name for t in ev["tasks"]].index(tr[0]["task"])
        from spider_jax import evaluation
        assert tr[0]["tau_w"] == pytest.approx(evaluation.weighted_tau(ev["truth"][i], prior))


@pytest.mark.slow
def test_no_leakage_held_out_truth_changes_nothing_in_the_fold(run, tmp_path):
    cfg, wd, res = run
    bank = workdir_lib.open_bank_for(cfg, wd)
    ev = res["evals"]["image"]
    pool, touched = logo.label_pool(bank, "image", cfg, os.path.join(wd, "image", "pool"),
                                    progress=False)
    g = sorted({t.group for t in ev["tasks"]})[0]
    scrambled = dict(ev)
    truth = ev["truth"].copy()
    held = [i for i, t in enumerate(ev["tasks"]) if t.group == g]
    truth[held] = np.random.default_rng(0).permutation(truth[held].ravel()).reshape(
        truth[held].shape)
    scrambled["truth"] = truth
    recs = logo.run_folds(cfg, bank, "image", scrambled, pool, touched, str(tmp_path),
                          only=(g,), log=lambda *a: None)
    mine = next(f for f in res["folds"][("image", "main")] if f["held_out"] == g)
    other = next(f for f in recs if f["held_out"] == g)
    assert other["step"] == mine["step"] and other["curve"] == mine["curve"]
    assert other["weight"] == mine["weight"] and other["raw_step"] == mine["raw_step"]
    np.testing.assert_allclose(other["scores"]["spider_k0"], mine["scores"]["spider_k0"],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_fold_scores_anchor_on_the_training_prior_and_merge_the_hybrid(run):
    cfg, _, res = run
    ev = res["evals"]["image"]
    names = [t.name for t in ev["tasks"]]
    lm = ev["methods"].index(cfg.logo.hybrid_metric)
    for f in res["folds"][("image", "main")]:
        w = f["weight"]
        assert w in list(cfg.logo.anchor_weights) + [float("inf")]
        assert f["step"] in [c[0] for c in f["curve"]]
        prior = ev["truth"][[i for i, t in enumerate(ev["tasks"])
                             if t.group != f["held_out"]]].mean(0)
        k0 = np.asarray(f["scores"]["spider_k0"])
        if w == 0:      # the prior alone: every held-out task in the prior's order
            assert all((np.argsort(-r, kind="stable") == np.argsort(-prior, kind="stable")).all()
                       for r in k0)
        for k in (1, 3):
            hyb = np.asarray(f["scores"][f"hybrid_k{k}"])
            for j, name in enumerate(f["test_tasks"]):
                i = names.index(name)
                block = set(np.argsort(-k0[j], kind="stable")[:k])
                order = np.argsort(-hyb[j], kind="stable")
                assert set(order[:k]) == block          # the same top-k PTMs ...
                metric = ev["metric_scores"][i, lm]
                assert list(order[:k]) == sorted(block, key=lambda m: (-metric[m], m))  # by LogME
                rest = [m for m in np.argsort(-k0[j], kind="stable") if m not in block]
                assert list(order[k:]) == rest          # ... and the rest in k=0 order


@pytest.mark.slow
def test_resumable_with_deadline_and_report(run, tmp_path):
    cfg, wd, res = run
    with pytest.raises(logo.MoreWork):
        logo.run_logo(cfg, str(tmp_path / "w"), deadline=0.0, progress=False,
                      log=lambda *a: None)
    # finished folds are reused: removing one recomputes it identically
    fdir = os.path.join(wd, "image", "folds")
    first = sorted(os.listdir(fdir))[0]
    with open(os.path.join(fdir, first)) as fh:
        before = json.load(fh)
    os.remove(os.path.join(fdir, first))
    again = logo.run_logo(cfg, wd, progress=False, log=lambda *a: None)
    rec = next(f for f in again["folds"][("image", "main")] if f["held_out"] == before["held_out"])
    assert rec["step"] == before["step"]
    np.testing.assert_allclose(rec["scores"]["spider_k0"], before["scores"]["spider_k0"],
                               rtol=1e-5, atol=1e-6)
    out = logo.report(again, cfg, str(tmp_path / "r"), command="python -m spider_jax.logo ...",
                      results_md=str(tmp_path / "docs" / "RESULTS.md"))
    md = open(tmp_path / "docs" / "RESULTS.md").read()
    assert "No leakage" in md and "Issue 11 targets" in md and "noise ceiling" in md
    assert os.path.exists(tmp_path / "docs" / "figures" / "logo_image_tau.png")
    ov = out["summary"]["image"]["overall"]["methods"]
    assert ov["spider_k0"]["lo"] <= ov["spider_k0"]["tau_w"] <= ov["spider_k0"]["hi"]
    assert out["summary"]["image"]["overall"]["num_tasks"] == len(again["evals"]["image"]["tasks"])


def test_unknown_ablation_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown LOGO ablation"):
        logo.run_logo(_config(), str(tmp_path), ablation=("nope",), progress=False)
    with pytest.raises(ValueError, match="modality 'text' is not run"):
        logo.run_logo(_config(), str(tmp_path), ablation=("ensemble3:text",), progress=False)
