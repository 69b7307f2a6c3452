"""Tests for spider_jax.ranker: fast k=0 path, Algorithm 2 re-ranking, results, bad input."""

import csv
import io
import json

import jax
import numpy as np
import pytest

from spider_jax import model as model_lib
from spider_jax import ranker as ranker_lib
from tests.ranker_fixtures import DIMS, MAX_CLASSES, NAMES, PSI_DIM, make_ranker


@pytest.fixture(scope="module")
def ranker():
    return make_ranker()


def _task(rng, n=40, num_classes=5, psi_dim=PSI_DIM):
    feats = rng.normal(size=(n, psi_dim)).astype(np.float32)
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    return feats, labels


@pytest.mark.parametrize("heads,mlp,psi_dim,types", [
    (1, 0, PSI_DIM, True),      # 'psi' route (fold the task projection)
    (2, 0, 40, True),           # 'token' route (project to tokens first)
    (2, 8, PSI_DIM, False),     # MLP block, no type embeddings
])
def test_fast_path_equals_model_apply(heads, mlp, psi_dim, types):
    r = make_ranker(psi_dim=psi_dim, num_heads=heads, mlp_dim=mlp, use_type_embeddings=types)
    rng = np.random.default_rng(1)
    fast = ranker_lib.prepare_fast(r.variables, r.model)
    for c in (3, 6):        # C <= M (project class values) and C > M (project mixed inputs)
        centres = rng.normal(size=(4, c, psi_dim)).astype(np.float32)
        mask = np.ones((4, c), bool)
        mask[1, 2:] = False
        mask[3, 1:] = False
        ref = np.asarray(r.model.apply(r.variables, centres, mask))
        got = np.asarray(jax.jit(ranker_lib.fast_scores)(fast, centres, mask))
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    # Padding classes must not change a score.
    padded_c = np.concatenate([centres, rng.normal(size=(4, 3, psi_dim)).astype(np.float32)], 1)
    padded_m = np.concatenate([mask, np.zeros((4, 3), bool)], 1)
    np.testing.assert_allclose(np.asarray(ranker_lib.fast_scores(fast, padded_c, padded_m)),
                               ref, rtol=1e-5, atol=1e-5)


def test_class_centres_matches_numpy():
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(30, 7))
    labels = rng.integers(0, 4, size=30)
    mask = np.ones(30, bool)
    mask[25:] = False
    centres, cmask = ranker_lib.class_centres(feats.astype(np.float32), labels, mask,
                                              num_classes=6)
    for c in range(6):
        rows = feats[:25][labels[:25] == c]
        assert bool(cmask[c]) == (len(rows) > 0)
        want = rows.mean(axis=0) if len(rows) else np.zeros(7)
        np.testing.assert_allclose(np.asarray(centres[c]), want, rtol=1e-5, atol=1e-6)


def test_rank_is_deterministic_and_complete(ranker):
    feats, labels = _task(np.random.default_rng(3))
    task = ranker_lib.Task.from_features(feats, labels, name="t")
    a, b = ranker.rank(task), ranker.rank(task)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.order, b.order)
    assert sorted(a.ranks.tolist()) == list(range(1, len(NAMES) + 1))
    assert a.models == NAMES
    # Scores equal the scorer itself on the psi class centres (k = 0).
    centres = np.stack([feats[labels == c].mean(0) for c in range(5)])[None]
    ref = np.asarray(ranker.model.apply(ranker.variables, centres, np.ones((1, 5), bool)))[0]
    np.testing.assert_allclose(a.scores, ref, rtol=1e-5, atol=1e-5)


def test_ties_broken_by_zoo_order():
    np.testing.assert_array_equal(ranker_lib.order_from_scores(np.array([1.0, 2.0, 2.0, 0.0])),
                                  [1, 2, 0, 3])


def test_label_values_do_not_matter(ranker):
    feats, labels = _task(np.random.default_rng(4))
    a = ranker.rank(ranker_lib.Task.from_features(feats, labels))
    b = ranker.rank(ranker_lib.Task.from_features(feats, labels * 7 + 100))
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)


def test_rerank_changes_only_topk(ranker):
    rng = np.random.default_rng(5)
    feats, labels = _task(rng)
    ptm_feats = {n: rng.normal(size=(len(labels), d)) for n, d in zip(NAMES, DIMS)}
    calls = []

    def forward(name):
        calls.append(name)
        return ptm_feats[name]

    task = ranker_lib.Task.from_features(feats, labels)
    k = 2
    res = ranker.rank(task, k=k, forward=forward)
    coarse = ranker.rank(task)
    top = coarse.order[:k]
    assert sorted(calls) == sorted(NAMES[i] for i in top)     # only the top-k run forward
    np.testing.assert_array_equal(res.coarse_scores, coarse.scores)
    others = np.setdiff1d(np.arange(len(NAMES)), top)
    np.testing.assert_array_equal(res.scores[others], coarse.scores[others])
    assert res.reranked.tolist() == [i in top for i in range(len(NAMES))]
    # Top-k rescored as in Algorithm 2: independent float64 class centres, the scorer on them.
    c = 5
    spec = np.zeros((1, len(NAMES), c, max(DIMS)), np.float32)
    for i in top:
        spec[0, i, :, :DIMS[i]] = np.stack([ptm_feats[NAMES[i]][labels == j].mean(0)
                                            for j in range(c)])
    smask = np.zeros((1, len(NAMES)), bool)
    smask[0, top] = True
    psi = np.stack([feats[labels == j].mean(0) for j in range(c)])[None].astype(np.float32)
    want = np.asarray(ranker.model.apply(ranker.variables, psi, np.ones((1, c), bool), spec,
                                         smask))[0]
    np.testing.assert_allclose(res.scores[top], want[top], rtol=1e-4, atol=1e-5)
    assert not np.allclose(res.scores[top], coarse.scores[top])


def test_ranking_formats(ranker):
    feats, labels = _task(np.random.default_rng(6))
    res = ranker.rank(ranker_lib.Task.from_features(feats, labels, name="demo"))
    rows = json.loads(res.to_json())["ranking"]
    assert [r["rank"] for r in rows] == list(range(1, len(NAMES) + 1))
    assert [r["model"] for r in rows] == [NAMES[i] for i in res.order]
    table = res.to_table()
    assert all(n in table for n in NAMES) and "demo" in table
    parsed = list(csv.DictReader(io.StringIO(res.to_csv())))
    assert len(parsed) == len(NAMES)
    np.testing.assert_allclose([float(r["score"]) for r in parsed], res.scores[res.order],
                               rtol=1e-5)


def test_bad_inputs(ranker):
    rng = np.random.default_rng(7)
    feats, labels = _task(rng, num_classes=MAX_CLASSES + 1)
    with pytest.raises(ValueError, match="classes, more than"):
        ranker.rank(ranker_lib.Task.from_features(feats, labels))
    feats, labels = _task(rng, psi_dim=PSI_DIM + 1)
    with pytest.raises(ValueError, match="psi feature width"):
        ranker.rank(ranker_lib.Task.from_features(feats, labels))
    with pytest.raises(ValueError, match="labels must be"):
        ranker_lib.Task.from_features(feats, labels[:-1])
    bad = feats.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ranker_lib.Task.from_features(bad, labels)
    feats, labels = _task(rng)
    task = ranker_lib.Task.from_features(feats, labels)
    with pytest.raises(ValueError, match="width 3; the checkpoint expects"):
        ranker.rank(task, k=1, forward=lambda n: rng.normal(size=(len(labels), 3)))
    with pytest.raises(ValueError, match="needs the task's labels"):
        ranker.rank(ranker_lib.Task.from_centres(task.psi_centres), k=1, forward=lambda n: None)
    with pytest.raises(ValueError, match="k=9"):
        ranker.rank(task, k=9)


def test_zoo_and_checkpoint_mismatch(ranker):
    with pytest.raises(ValueError, match="zoo differs from the checkpoint"):
        ranker_lib.check_zoo(NAMES, DIMS, NAMES[:-1] + ("other",))
    with pytest.raises(ValueError, match="different order"):
        ranker_lib.check_zoo(NAMES, DIMS, NAMES[::-1])
    with pytest.raises(ValueError, match="feature dims differ"):
        ranker_lib.check_zoo(NAMES, DIMS, NAMES, (5, 7, 3, 9, 5))
    other = model_lib.SpiderScorer(model_dims=DIMS, d=8, dropout=0.0, attn_dropout=0.0)
    with pytest.raises(ValueError, match="another config"):
        ranker_lib.Ranker(other, ranker.variables, NAMES, max_classes=MAX_CLASSES)
    with pytest.raises(ValueError, match="model names"):
        ranker_lib.Ranker(ranker.model, ranker.variables, NAMES[:-1], max_classes=MAX_CLASSES)


@pytest.mark.slow
def test_smoke_trained_workdir_end_to_end(tmp_path):
    """Trains the smoke config briefly, then ranks, scores and plots from its workdir; the
    ranker's Algorithm 2 must agree with the trainer's own evaluation (inference.rerank_tasks)."""
    import os

    from configs import smoke
    from spider_jax import bank as bank_lib
    from spider_jax import inference, label, plots, rank, score, train

    config = smoke.get_config()
    config.train.num_steps = 24
    config.data.num_train_tasks = 32
    workdir = str(tmp_path / "wd")
    train.train_and_evaluate(config, workdir)
    r = ranker_lib.Ranker.from_workdir(workdir)
    bank = bank_lib.open_bank(os.path.join(workdir, "bank"))
    downstream = label.label_downstream(bank, config, modality="image",
                                        cache_dir=os.path.join(workdir, "image", "labels"))
    _, model, params, _ = train.load_trained(workdir)
    # The trainer caches PTM-specific centres in float16: k = 3 agrees to that precision.
    for k, tol in ((0, 1e-5), (3, 3e-3)):
        want = inference.rerank_tasks(model, params, downstream, k)
        for i, ds in enumerate(downstream["datasets"]):
            got = r.rank_bank_dataset(bank, ds, k=k)      # 30 examples/class = the eval cap
            np.testing.assert_allclose(got.scores, want[i], rtol=tol, atol=tol)
            cli = rank.run(workdir, bank=os.path.join(workdir, "bank"), dataset=ds, k=k)
            np.testing.assert_array_equal(cli.scores, got.scores)
    src = score.InMemoryTasks(downstream["psi_centres"], downstream["class_mask"],
                              downstream["datasets"])
    out = score.score_tasks(r, src, str(tmp_path / "s.csv"), progress=False)
    _, _, s = score.read_scores(out, r.models)
    np.testing.assert_allclose(s, inference.rerank_tasks(model, params, downstream, 0),
                               rtol=1e-4, atol=1e-4)
    written = plots.make_plots(workdir, os.path.join(workdir, "bank"), str(tmp_path / "plots"),
                               k=3, tasks_per_dataset=2)
    assert [os.path.basename(p) for p in written] == ["spider_charts.png", "scatter.png"]
    assert all(os.path.getsize(p) > 10_000 for p in written)
    with pytest.raises(ValueError, match="no trained 'text' run"):
        ranker_lib.Ranker.from_workdir(workdir, modality="text")
    # The zoo prior: the synthetic bank has no ground truth of its training pool, so none
    # is stored and anchoring says so; a stored one is read in the zoo's order.
    zoo_path = os.path.join(workdir, "image", "zoo.json")
    with open(zoo_path) as fh:
        meta = json.load(fh)
    assert meta["zoo_prior"] is None and r.prior is None
    ds = downstream["datasets"][0]
    with pytest.raises(ValueError, match="needs the zoo prior"):
        rank.run(workdir, bank=os.path.join(workdir, "bank"), dataset=ds, anchor=1.0)
    acc = np.linspace(0.9, 0.1, len(r.models))
    meta["zoo_prior"] = {"models": list(r.models)[::-1], "accuracy": acc[::-1].tolist(),
                         "datasets": ["by hand"]}
    with open(zoo_path, "w") as fh:
        json.dump(meta, fh)
    np.testing.assert_allclose(ranker_lib.Ranker.from_workdir(workdir).prior, acc)
    zero = rank.run(workdir, bank=os.path.join(workdir, "bank"), dataset=ds, anchor=0.0)
    assert list(zero.order) == list(range(len(r.models)))
    cfg_path = os.path.join(workdir, "image", "config.json")
    with open(cfg_path) as fh:
        cfg = json.load(fh)
    cfg["model"]["d"] = 16
    with open(cfg_path, "w") as fh:
        json.dump(cfg, fh)
    with pytest.raises(ValueError, match="another config"):
        ranker_lib.Ranker.from_workdir(workdir)


@pytest.mark.parametrize("members,gate_refs", [(1, 0), (1, 6),
                                               pytest.param(3, 6, marks=pytest.mark.slow)])
def test_fast_path_equals_model_apply_prior_residual(members, gate_refs):
    """Prior + gated residual and ensembles: the folded k = 0 path is still model.apply."""
    r = make_ranker(members=members, prior_residual=True, gate_refs=gate_refs,
                    residual_dropout=0.5)
    variables = r.variables
    rng = np.random.default_rng(3)
    if gate_refs:       # a scale at which some tasks are gated and some are not
        p = dict(variables["params"])
        target = dict(p["members"]) if members > 1 else p
        target["gate_scale"] = np.full(np.shape(target["gate_scale"]), 3.5, np.float32)
        if members > 1:
            p["members"] = target
        variables = {"params": p}
    r = ranker_lib.Ranker(r.model, variables, list(NAMES), max_classes=MAX_CLASSES)
    fast = ranker_lib.prepare_fast(r.variables, r.model)
    centres = rng.normal(size=(6, 5, PSI_DIM)).astype(np.float32) \
        * np.array([0.1, 0.5, 1.0, 2.0, 4.0, 8.0], np.float32)[:, None, None]
    mask = np.ones((6, 5), bool)
    mask[2, 3:] = False
    ref = np.asarray(r.model.apply(r.variables, centres, mask))
    got = np.asarray(jax.jit(ranker_lib.fast_scores)(fast, centres, mask))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    if gate_refs and members == 1:   # the gate is neither all-on nor all-off on these tasks
        g = np.asarray(model_lib.residual_gate(centres, mask, r.variables["params"]["gate_ref"],
                                               r.variables["params"]["gate_scale"]))
        assert g.max() == 1.0 and g.min() < 0.5
    assert ranker_lib.fast_flops_per_task(fast, 5) > 0


def test_hybrid_rerank_reorders_topk_by_the_metric(ranker):
    """Hybrid (issue 11 item 5): only the top-k run forward; their order = their LogME's."""
    from spider_jax import metrics

    rng = np.random.default_rng(8)
    feats, labels = _task(rng, n=60, num_classes=3)
    ptm_feats = {n: rng.normal(size=(len(labels), d)) + (labels[:, None] == 0) * i
                 for i, (n, d) in enumerate(zip(NAMES, DIMS))}
    calls = []

    def forward(name):
        calls.append(name)
        return ptm_feats[name]

    task = ranker_lib.Task.from_features(feats, labels)
    coarse = ranker.rank(task)
    k = 3
    res = ranker.rank(task, k=k, forward=forward, rerank="hybrid")
    top = list(coarse.order[:k])
    assert sorted(calls) == sorted(NAMES[i] for i in top)
    logme = {i: float(metrics.logme(ptm_feats[NAMES[i]].astype(np.float32), labels,
                                    num_classes=3)) for i in top}
    want = sorted(top, key=lambda i: -logme[i]) + list(coarse.order[k:])
    assert list(res.order) == want
    np.testing.assert_array_equal(res.coarse_scores, coarse.scores)
    assert res.reranked.tolist() == [i in top for i in range(len(NAMES))]
    with pytest.raises(ValueError, match="rerank"):
        ranker.rank(task, k=k, forward=forward, rerank="nope")
    with pytest.raises(ValueError, match="features"):
        ranker.rank(task, k=k, forward=forward, rerank="hybrid", metric="leep")


def test_anchored_ranking_is_the_prior_plus_weighted_scores():
    """anchor=w (issue 11 item 4): z(prior) + w z(scores), checked against scipy z-scores;
    0 = the prior's order whatever the task, inf = the scorer alone; with re-ranking the
    paper's top k come from the scorer alone and the hybrid's from the anchored ranking."""
    from scipy import stats

    from spider_jax import metrics

    prior = np.array([0.6, 0.9, 0.2, 0.75, 0.4])
    r = make_ranker(seed=3)
    ra = ranker_lib.Ranker(r.model, r.variables, NAMES, max_classes=MAX_CLASSES, prior=prior)
    rng = np.random.default_rng(11)
    feats, labels = _task(rng, n=60, num_classes=3)
    task = ranker_lib.Task.from_features(feats, labels)
    raw = ra.rank(task)
    got = ra.rank(task, anchor=0.5)
    np.testing.assert_allclose(got.scores, stats.zscore(prior) + 0.5 * stats.zscore(
        raw.scores.astype(np.float64)), rtol=1e-6, atol=1e-6)
    assert list(ra.rank(task, anchor=0.0).order) == list(np.argsort(-prior))
    np.testing.assert_array_equal(ra.rank(task, anchor=float("inf")).scores, raw.scores)

    ptm_feats = {n: rng.normal(size=(len(labels), d)) + (labels[:, None] == 0) * i
                 for i, (n, d) in enumerate(zip(NAMES, DIMS))}
    paper = ra.rank(task, k=2, forward=ptm_feats.__getitem__)
    paper_a = ra.rank(task, k=2, forward=ptm_feats.__getitem__, anchor=2.0)
    np.testing.assert_array_equal(paper_a.reranked, paper.reranked)
    np.testing.assert_allclose(paper_a.scores, stats.zscore(prior) + 2.0 * stats.zscore(
        paper.scores.astype(np.float64)), rtol=1e-6, atol=1e-6)
    hyb = ra.rank(task, k=2, forward=ptm_feats.__getitem__, rerank="hybrid", anchor=0.25)
    coarse = stats.zscore(prior) + 0.25 * stats.zscore(raw.scores.astype(np.float64))
    top = list(np.argsort(-coarse, kind="stable")[:2])
    logme = {i: float(metrics.logme(ptm_feats[NAMES[i]].astype(np.float32), labels,
                                    num_classes=3)) for i in top}
    want = sorted(top, key=lambda i: -logme[i]) + list(np.argsort(-coarse, kind="stable")[2:])
    assert list(hyb.order) == want
    with pytest.raises(ValueError, match="needs the zoo prior"):
        r.rank(task, anchor=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        ra.rank(task, anchor=-0.5)
    with pytest.raises(ValueError, match="zoo prior must be"):
        ranker_lib.Ranker(r.model, r.variables, NAMES, max_classes=MAX_CLASSES, prior=prior[:3])
