"""Ground truth (linear-probe transfer accuracy): folds, both backends (the jitted JAX ridge CV
and the NumPy/LAPACK CPU kernel) against a float64 NumPy reference written from the formula
and against each other, padding invariance, the padded-batch API, and a synthetic bank whose
answer is known."""
import numpy as np
import pytest

from spider_jax import bank, groundtruth, ridge_cv


def _ridge_cv_reference(x, y, num_classes, folds, alphas):
    """float64 NumPy ridge classifier CV, solved directly (no eigendecomposition)."""
    x = np.asarray(x, np.float64)
    out = np.zeros((folds.max() + 1, len(alphas)))
    for k in range(folds.max() + 1):
        tr, te = folds != k, folds == k
        mu, sd = x[tr].mean(0), x[tr].std(0)
        sd[sd <= 1e-6] = 1.0
        z_tr, z_te = (x[tr] - mu) / sd, (x[te] - mu) / sd
        y_tr = np.eye(num_classes)[y[tr]]
        ybar = y_tr.mean(0)
        for a, alpha in enumerate(alphas):
            w = np.linalg.solve(z_tr.T @ z_tr + alpha * tr.sum() * np.eye(x.shape[1]), z_tr.T @ (y_tr - ybar))
            pred = (z_te @ w + ybar).argmax(1)
            out[k, a] = (pred == y[te]).mean()
    return out


def _problem(n, d, c, seed, signal=1.0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    centres = rng.normal(size=(c, d)) * signal
    x = centres[y] + rng.normal(size=(n, d))
    x[:, 0] = 3.0  # a constant column must not break standardisation
    return x.astype(np.float32), y


def test_stratified_folds():
    y = np.repeat([0, 1, 2], [23, 11, 6])
    f = groundtruth.stratified_folds(y, 5, seed=0)
    assert f.min() == 0 and f.max() == 4
    for c in range(3):
        counts = np.bincount(f[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1
    sizes = np.bincount(f)
    assert sizes.max() - sizes.min() <= 1
    np.testing.assert_array_equal(f, groundtruth.stratified_folds(y, 5, seed=0))
    assert not np.array_equal(f, groundtruth.stratified_folds(y, 5, seed=1))


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_matches_float64_reference_with_padding(backend):
    alphas = (1e-3, 1e-1, 10.0)
    # the (30, 100) pair pads to N=64 < D=100 and takes the dual (kernel) path
    pairs = [_problem(60, 7, 3, 0, 0.6), _problem(45, 12, 4, 1, 0.5), _problem(80, 4, 2, 2, 0.4),
             _problem(30, 100, 3, 6, 0.3), _problem(40, 70, 2, 7, 0.2)]
    classes = (3, 4, 2, 3, 2)
    acc = groundtruth.linear_probe([(x, y, c) for (x, y), c in zip(pairs, classes)], seeds=(0, 3),
                                   alphas=alphas, chunk=2, backend=backend, workers=1)
    assert acc.shape == (5, 2, 5, 3)
    for i, ((x, y), c) in enumerate(zip(pairs, classes)):
        for s, seed in enumerate((0, 3)):
            ref = _ridge_cv_reference(x, y, c, groundtruth.stratified_folds(y, 5, seed), alphas)
            # predictions can only differ on a float32 near-tie: allow one test example
            np.testing.assert_allclose(acc[i, s], ref, atol=1.0 / 12 + 1e-9)
            assert np.abs(acc[i, s] - ref).mean() < 0.01


def test_padding_does_not_change_accuracy():
    small, big = _problem(40, 5, 2, 4, 0.5), _problem(90, 20, 5, 5)
    alone = groundtruth.linear_probe([(small[0], small[1], 2)], seeds=(0,), chunk=1, backend="jax")
    padded = groundtruth.linear_probe([(big[0], big[1], 5), (small[0], small[1], 2)], seeds=(0,), chunk=2,
                                      backend="jax")
    np.testing.assert_allclose(padded[1], alone[0], atol=1e-6)


def _hard_problem(n, d, c, seed):
    """Overlapping classes (accuracy well inside (chance, 1)), unequal class sizes, ReLU-like
    non-negative features with a constant and a near-duplicate column."""
    rng = np.random.default_rng(seed)
    y = rng.choice(c, size=n, p=np.linspace(1.0, 2.0, c) / np.linspace(1.0, 2.0, c).sum())
    y[:c * 5] = np.repeat(np.arange(c), 5)  # every class has >= 5 examples
    x = np.maximum(rng.normal(size=(c, d))[y] * 0.25 + rng.normal(size=(n, d)) + 0.3, 0.0)
    x[:, 1] = 7.0
    x[:, 2] = x[:, 3] * 2.0 + 1e-3 * rng.normal(size=n)
    return x.astype(np.float32), y


def test_numpy_backend_equals_current_jitted_probe():
    """The CPU kernel (Cholesky per alpha) reproduces the jitted probe (eigendecomposition
    per fold) number for number: dual (N < D) and primal (N > D) forms."""
    alphas = groundtruth.DEFAULT_ALPHAS
    pairs = [_hard_problem(150, 300, 6, 0) + (6,), _hard_problem(200, 40, 4, 1) + (4,),
             _hard_problem(97, 128, 3, 2) + (3,)]
    fast = groundtruth.linear_probe(pairs, alphas=alphas, backend="numpy", workers=1)
    jitted = groundtruth.linear_probe(pairs, alphas=alphas, backend="jax", chunk=3)
    assert 0.3 < fast.mean() < 0.95  # a task with something to get wrong
    # identical predictions give identical accuracies up to float rounding of the mean;
    # a float32 near-tie may flip one test example
    diff = np.abs(fast - jitted)
    assert diff.max() <= 1.0 / 19 + 1e-9 and (diff > 1e-6).mean() < 0.02


def test_numpy_kernel_matches_reference_on_a_singular_gram(monkeypatch):
    """Duplicated rows make the dual Gram singular; at a tiny alpha the float32 Cholesky
    fails and the clipped float64 eigendecomposition answers, still matching the reference."""
    fallbacks = []
    solve = ridge_cv._solve_clipped
    monkeypatch.setattr(ridge_cv, "_solve_clipped", lambda k, r, shift: fallbacks.append(shift) or solve(k, r, shift))
    x, y = _hard_problem(60, 90, 3, 3)
    x[30:] = x[:30]  # every row twice
    y[30:] = y[:30]
    folds = np.stack([groundtruth.stratified_folds(y, 5, 0)])
    alphas = (1e-9, 1e-2, 1.0)
    acc = ridge_cv.ridge_cv_pair(x, y, 3, folds, alphas)[0]
    ref = _ridge_cv_reference(x, y, 3, folds[0], alphas)
    assert fallbacks and max(fallbacks) < 1e-6  # only the tiny alpha needed the fallback
    np.testing.assert_allclose(acc, ref, atol=1.0 / 12 + 1e-9)
    assert np.abs(acc - ref).mean() < 0.01


def test_probe_tasks_padded_batch_with_masks():
    """[T, N, D] padded tasks with masks give each task's own unpadded answer."""
    tasks = [_hard_problem(70, 20, 3, 4), _hard_problem(50, 12, 2, 5), _hard_problem(90, 20, 4, 6)]
    n, d = 96, 24
    feats = np.zeros((3, n, d), np.float32)
    labels = np.full((3, n), 99, np.int32)  # junk at padded rows must be ignored
    mask = np.zeros((3, n), bool)
    for t, (x, y) in enumerate(tasks):
        feats[t, :len(y), :x.shape[1]] = x
        feats[t, len(y):] = 1e6  # junk rows
        labels[t, :len(y)] = y
        mask[t, :len(y)] = True
    out = groundtruth.probe_tasks(feats, labels, mask, seeds=(0, 1), backend="numpy", workers=1)
    alone = groundtruth.linear_probe([(x, y, int(y.max()) + 1) for x, y in tasks], backend="numpy", workers=1)
    np.testing.assert_array_equal(out["acc"], alone)
    for t in range(3):
        mean, std, best = groundtruth.summarize(alone[t])
        np.testing.assert_array_equal(out["mean"][t], mean)
        np.testing.assert_array_equal(out["std"][t], std)
        np.testing.assert_array_equal(out["alpha"][t], np.asarray(groundtruth.DEFAULT_ALPHAS)[best])
    with pytest.raises(ValueError, match="disagree"):
        groundtruth.probe_tasks(feats, labels[:, :5], mask)


def test_worker_processes_give_the_same_numbers():
    pairs = [_hard_problem(60, 30, 3, s) + (3,) for s in range(3)]
    one = groundtruth.linear_probe(pairs, backend="numpy", workers=1)
    two = groundtruth.linear_probe(pairs, backend="numpy", workers=2)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_rejects_bad_input(backend):
    x, y = _problem(20, 3, 2, 0)
    with pytest.raises(ValueError, match="pair 0: labels outside"):
        groundtruth.linear_probe([(x, y + 1, 2)], backend=backend)
    with pytest.raises(ValueError, match=">= 5 examples"):
        groundtruth.linear_probe([(x[:8], y[:8], 2)], backend=backend)
    with pytest.raises(ValueError, match="must be"):
        groundtruth.linear_probe([(x[:, 0], y, 2)], backend=backend)
    x[0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        groundtruth.linear_probe([(x, y, 2)], backend=backend)


def _synthetic_bank(root):
    """Known answer: 'oracle' encodes the label, 'partial' half of the classes, 'noise' nothing."""
    rng = np.random.default_rng(0)
    n, c = 200, 4
    w = bank.BankWriter(root, psi={"text": {"name": "psi", "dim": 3}})
    for name, dim in (("noise", 6), ("partial", 6), ("oracle", 6)):
        w.add_model(name, dim=dim, modality="text")
    for ds, pool in (("easy", "downstream"), ("hopeless", "downstream")):
        w.add_dataset(ds, modality="text", class_names=list("abcd"), pool=pool)
        y = rng.permutation(np.arange(n) % c)
        w.write_labels(ds, "train", y)
        onehot = np.eye(c)[y]
        feats = {
            "noise": rng.normal(size=(n, 6)),
            "partial": np.concatenate([onehot[:, :2] * 4 + rng.normal(size=(n, 2)), rng.normal(size=(n, 4))], 1),
            "oracle": np.concatenate([onehot * 4 + 0.1 * rng.normal(size=(n, c)), rng.normal(size=(n, 2))], 1),
        }
        if ds == "hopeless":  # nobody sees the label
            feats = {k: rng.normal(size=(n, 6)) for k in feats}
        for m, f in feats.items():
            w.write_features(m, ds, "train", f)
        w.write_psi(ds, "train", onehot[:, :3] + 0.1 * rng.normal(size=(n, 3)))
    w.close()
    return bank.open_bank(root)


def test_synthetic_bank_known_answer(tmp_path):
    b = _synthetic_bank(str(tmp_path))
    gt = groundtruth.compute_groundtruth(b, progress=False)
    e = gt["easy"]
    assert e["models"] == ["noise", "partial", "oracle"]
    assert e["mean"][2] == 1.0 and e["std"][2] == 0.0
    # partial separates classes {0, 1} from each other and from {2, 3}: about 3/4 correct
    assert 0.6 < e["mean"][1] < 0.85
    assert e["mean"][0] < 0.4  # chance is 0.25
    assert e["headline"] and e["spread"] > 3 and e["seed_tau_w"] == pytest.approx(1.0)
    assert e["mean_seed2"][2] == 1.0
    assert 0.6 < e["reference"]["psi:psi"] <= 1.0  # psi sees 3 of the 4 classes
    h = gt["hopeless"]
    assert not h["headline"] and max(h["mean"]) < 0.45
    bank.write_groundtruth(str(tmp_path), gt, protocol=groundtruth.protocol_text(5, (0, 1), (1.0,)))
    back = bank.open_bank(str(tmp_path)).groundtruth("easy")
    np.testing.assert_allclose(back["mean"], e["mean"])
    assert back["headline"] is True and "linear-probe" in groundtruth.format_table(gt, b)


def test_merge_entries_keeps_other_datasets_of_the_same_protocol():
    old = {"protocol": "P", "datasets": {"a": {"mean": [1]}, "b": {"mean": [2]}, "gone": {"mean": [3]}}}
    new = {"b": {"mean": [5]}}
    assert groundtruth.merge_entries(old, new, "P", ["a", "b"]) == {"a": {"mean": [1]}, "b": {"mean": [5]}}
    assert groundtruth.merge_entries(old, new, "Q", ["a", "b"]) == new  # other protocol: not comparable
    assert groundtruth.merge_entries(None, new, "P", ["a", "b"]) == new


@pytest.mark.parametrize("seed", range(3))
def test_ridge_cv_near_constant_columns(seed):
    """Dead units with one spike (classifier-head taps): nearly constant in a fold's training
    rows, far off in a test row. The CPU kernel must standardise them as the float64
    reference does (its former E[x^2] - mu^2 moments and rank-1 Gram centring cancelled
    catastrophically and changed accuracies by up to 0.75 here)."""
    rng = np.random.default_rng(seed)
    n, c = 20, 4
    y = np.arange(n) % c
    x = np.zeros((n, 120), np.float32)
    x[:, :40] = rng.normal(size=(c, 40))[y] * 0.3 + rng.normal(size=(n, 40))
    x[:, 40:] = rng.normal(size=(n, 80)) * 1e-5
    x[rng.integers(0, n, 80), np.arange(40, 120)] += rng.uniform(1, 5, 80)
    alphas = (1e-4, 1e-2, 1.0, 10.0)
    folds = groundtruth.stratified_folds(y, 5, 0)
    want = _ridge_cv_reference(x, y, c, folds, alphas)
    got = ridge_cv.ridge_cv_pair(x, y, c, folds[None], alphas)[0]
    np.testing.assert_array_equal(got, want)
    jitted = groundtruth.cv_accuracy(x[None], y[None].astype(np.int32), folds[None, None],
                                     np.ones((1, n), bool), np.ones((1, c), bool),
                                     np.asarray(alphas, np.float32), num_folds=5)
    np.testing.assert_array_equal(np.asarray(jitted)[0, 0], want)
