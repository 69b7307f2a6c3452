"""The methods registry and the Table 2 / Table 8 benchmark (end to end on a tiny
synthetic bank)."""

import csv
import os

import jax.numpy as jnp
import numpy as np
import pytest

from tests.tiny import tiny_config
from spider_jax import bank as bank_lib
from spider_jax import benchmark, evaluation, methods, metrics

C = 3


def _task(seed=0, n=36):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % C
    feats = [rng.normal(size=(n, w)).astype(np.float32) + labels[:, None] * s
             for w, s in ((6, 0.5), (6, 0.2), (4, 1.0))]
    probs = [rng.dirichlet(np.ones(5), size=n).astype(np.float32), None,
             rng.dirichlet(np.ones(5), size=n).astype(np.float32)]
    return feats, probs, labels.astype(np.int32)


def _direct(name, x, labels):
    """The same metric called directly, one PTM at a time."""
    if name == "nce":
        src = np.argmax(x, axis=1).astype(np.int32)
        return float(metrics.nce(src, labels, num_source_classes=x.shape[1], num_classes=C))
    return float(getattr(metrics, name)(x, labels, num_classes=C))


@pytest.mark.parametrize("name", ["logme", "hscore", "regularized_hscore", "leep", "nce",
                                  "transrate", "gbc", "lfc", "pactran_dirichlet", "sfda",
                                  "nleep"])
def test_registry_agrees_with_metrics(name):
    feats, probs, labels = _task()
    inputs = feats if methods.input_of(name) == "features" else probs
    stats = {}
    got = methods.score_zoo(name, inputs, labels, num_classes=C, stats=stats)
    for i, x in enumerate(inputs):
        if x is None:
            assert np.isnan(got[i]), "a PTM without the input must be skipped (NaN)"
        else:
            np.testing.assert_allclose(got[i], _direct(name, x, labels), rtol=2e-4, atol=1e-5)
    assert stats["run_s"] >= 0 and stats["bytes"] > 0


def test_registry_lists_every_metric_and_its_input():
    assert set(methods.names()) == set(metrics.__all__) - {"logme_regression"}
    assert {n for n in methods.names() if methods.needs_source_head(n)} == {
        "leep", "nce", "pactran_dirichlet"}
    assert methods.available_for("leep", {"has_source_head": False}) is False
    assert methods.available_for("logme", {"has_source_head": False}) is True
    with pytest.raises(ValueError, match="unknown method"):
        methods.input_of("otce")
    feats, _, labels = _task()
    with pytest.raises(ValueError, match="labels must lie"):
        methods.score_zoo("logme", feats, labels + 5, num_classes=C)
    bad = [f.copy() for f in feats]
    bad[1][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        methods.score_zoo("logme", bad, labels, num_classes=C)


def test_fewshot_rows_take_shots_per_class_and_are_seeded():
    labels = np.repeat(np.arange(4), [20, 5, 30, 12])
    rows = benchmark.fewshot_rows(labels, 4, 10, [0, 1, 2])
    counts = np.bincount(labels[rows], minlength=4)
    np.testing.assert_array_equal(counts, [10, 5, 10, 10])
    np.testing.assert_array_equal(rows, benchmark.fewshot_rows(labels, 4, 10, [0, 1, 2]))
    assert not np.array_equal(rows, benchmark.fewshot_rows(labels, 4, 10, [0, 2, 2]))


def test_anchor_rows_reproduce_rankagg_0716():
    here = os.path.join(os.path.dirname(__file__), "data")
    a = benchmark.anchor_rows(here)
    agg = [v for k, v in a["table"].items() if k.startswith("RankAgg")][0]
    assert round(float(np.mean(agg)), 3) == 0.716            # ORIGINAL_NOTES / paper
    assert round(float(np.mean(a["table"]["LogME"])), 3) == 0.678


@pytest.mark.slow
def test_benchmark_end_to_end_on_synthetic_bank(tmp_path):
    config = tiny_config()
    wd, out = str(tmp_path / "wd"), str(tmp_path / "out")
    md_path = str(tmp_path / "docs" / "RESULTS.md")
    names = ["logme", "hscore", "leep", "nce"]
    res = benchmark.run_benchmark(config, wd, out, shots=3, trials=2, method_names=names,
                                  anchors_dir=os.path.join(os.path.dirname(__file__), "data"),
                                  results_md=md_path, command="pytest", log=lambda *a: None)
    for p in ("results.csv", "results.md", "summary.json", "rows.json",
              "figure3_image_k0.png", "figure3_image_k3.png"):
        assert os.path.getsize(os.path.join(out, p)) > 0, p
    with open(md_path) as fh:
        md = fh.read()
    for text in ("## tau_w, Standard protocol", "## tau_w, Few-shot protocol", "Top-1 regret",
                 "Table 8", "Published anchors", "Forward cost not measured", "noise ceiling"):
        assert text in md, text
    with open(os.path.join(out, "results.csv")) as fh:
        rows = list(csv.DictReader(fh))
    methods_seen = {r["method"] for r in rows}
    assert methods_seen == set(names) | {"rankagg", "zoo_prior", "spider_k0", "spider_k3"}
    assert len(rows) == len(methods_seen) * 2 * 2          # x 2 tasks x 2 protocols
    assert {r["trials"] for r in rows if r["protocol"] == "fewshot"} == {"2"}
    # every PTM has a head in this bank: RankAgg is Copeland over all four methods
    assert {r["notes"] for r in rows if r["method"] == "rankagg"} <= {
        "hscore+nce+leep+logme", "regularized_hscore+nce+leep+logme"}
    # the standard-protocol LogME tau_w equals one computed here from the bank directly
    b = bank_lib.open_bank(os.path.join(wd, "bank"))
    ds = b.pool("downstream")[0]
    gt = b.groundtruth(ds)
    x = [np.asarray(b.features(m, ds), np.float32) for m in gt["models"]]
    y = np.asarray(b.labels(ds))
    c = b.dataset_info(ds)["num_classes"]
    pred = [float(metrics.logme(f, y, num_classes=c)) for f in x]
    want = evaluation.weighted_tau(gt["mean"], pred)
    got = [r for r in rows if r["method"] == "logme" and r["task"] == ds
           and r["protocol"] == "standard"][0]
    np.testing.assert_allclose(float(got["tau_w"]), want, rtol=1e-6)
    assert float(got["fit_s"]) > 0 and got["forward_measured"] == "False"
    assert res["summary"]["image"]["standard"]["best_single"] in names
    assert "spider_k0" in res["summary"]["image"]["standard"]["total_over_k0"]
    assert jnp.isfinite(float(got["peak_mb"]))
