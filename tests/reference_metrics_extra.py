"""Independent float64 NumPy/SciPy references for spider_jax.metrics.extra.

Written from the formulas (papers + the Model Spider / authors' releases), not
from the JAX code: per-class Python loops, SVD instead of eigh, slogdet instead
of eigenvalues, direct N x N matrices, scipy's generalised eigensolver. Only
real (unmasked) examples are passed in; absent classes simply do not occur.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.special


def lfc(x, y):
    """Pearson correlation of the entries of X X^T and the +-1 label-agreement matrix."""
    x = np.asarray(x, np.float64)
    k = x @ x.T
    agree = np.where(y[:, None] == y[None, :], 1.0, -1.0)
    k = k - k.mean()
    agree = agree - agree.mean()
    return float(np.sum(k * agree) / (np.linalg.norm(k) * np.linalg.norm(agree)))


def _pca_svd(x, dims):
    xc = x - x.mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    return xc @ vt[:dims].T, s ** 2, float(np.sum(xc ** 2))


def gbc(x, y, pca_dim=64, var_floor=1e-4):
    """-sum_{i != j} exp(-D_B) of per-class diagonal Gaussians after PCA to pca_dim."""
    x = np.asarray(x, np.float64)
    z, _, _ = _pca_svd(x, min(pca_dim, *x.shape))
    classes = np.unique(y)
    stats = []
    for c in classes:
        zc = z[y == c]
        var = zc.var(0, ddof=1) if len(zc) > 1 else np.zeros(z.shape[1])
        stats.append((zc.mean(0), np.maximum(var, var_floor)))
    score = 0.0
    for i, (mi, vi) in enumerate(stats):
        for j, (mj, vj) in enumerate(stats):
            if i == j:
                continue
            v = (vi + vj) / 2
            db = np.sum((mi - mj) ** 2 / v) / 8 + 0.5 * (
                np.sum(np.log(v)) - 0.5 * np.sum(np.log(vi)) - 0.5 * np.sum(np.log(vj)))
            score -= np.exp(-db)
    return float(score)


def _rate(z, n, eps, release):
    d = z.shape[1]
    scale = 1 / (n * eps) if release else d / (n * eps ** 2)
    sign, logdet = np.linalg.slogdet(np.eye(d) + scale * z.T @ z)
    assert sign > 0
    return 0.5 * logdet


def transrate(x, y, eps=1e-4, release=False):
    """Paper: R(Z) - sum_c n_c/n R(Z_c); release: 1/(n eps) scale, mean over classes."""
    z = np.asarray(x, np.float64)
    z = z - z.mean(0)
    n = len(z)
    classes = np.unique(y)
    r = _rate(z, n, eps, release)
    for c in classes:
        zc = z[y == c]
        weight = 1 / len(classes) if release else len(zc) / n
        r -= weight * _rate(zc, len(zc), eps, release)
    return float(r)


def pactran_dirichlet(probs, y, num_classes, lam=1.0, num_steps=10):
    """Mean-field ELBO / (n C) of the Dirichlet-categorical model (see _pactran.py)."""
    s = np.asarray(probs, np.float64)
    classes = np.unique(y)
    onehot = (y[:, None] == classes[None, :]).astype(np.float64)      # present classes only
    n = len(y)
    a0 = lam * onehot.sum(0) / n                                      # [Cp]
    log_s = np.log(s + 1e-10)
    q = s / s.sum(1, keepdims=True)
    for _ in range(num_steps):
        aw = a0[:, None] + onehot.T @ q
        logits = log_s + onehot @ scipy.special.digamma(aw) - scipy.special.digamma(aw.sum(0))
        q = np.exp(logits - scipy.special.logsumexp(logits, axis=1, keepdims=True))
    aw = a0[:, None] + onehot.T @ q
    elbo = 0.0
    for zi in range(s.shape[1]):
        log_b_w = np.sum(scipy.special.gammaln(aw[:, zi])) - scipy.special.gammaln(aw[:, zi].sum())
        log_b_0 = np.sum(scipy.special.gammaln(a0)) - scipy.special.gammaln(a0.sum())
        elbo += log_b_w - log_b_0
    elbo -= np.sum(q * (np.log(q) - log_s))
    return float(elbo / (n * num_classes))


class _RegLDA:
    """The release's SFDA class: shrunk within-class covariance, generalised eigh, LDA."""

    def __init__(self, shrinkage=None):
        self.shrinkage = shrinkage

    def fit(self, x, y):
        classes = np.unique(y)
        self.priors = np.array([np.mean(y == c) for c in classes])
        self.means = np.stack([x[y == c].mean(0) for c in classes])
        d = x.shape[1]
        sw = sum(p * np.atleast_2d(np.cov(x[y == c].T, bias=True))
                 for p, c in zip(self.priors, classes))
        if self.shrinkage is None:
            self.shrinkage = max(np.exp(-5 * np.linalg.eigvalsh(sw)[-1]), 1e-10)
        lam = self.shrinkage
        cov = np.cov(x.T, bias=True)
        st = (1 - lam) * cov + lam * np.trace(cov) / d * np.eye(d)
        sw_s = (1 - lam) * sw + lam * np.trace(sw) / d * np.eye(d)
        evals, evecs = scipy.linalg.eigh(st - sw_s, sw_s)
        evecs = evecs[:, np.argsort(evals)[::-1]]
        self.coef = self.means @ evecs @ evecs.T
        self.intercept = -0.5 * np.diag(self.means @ self.coef.T) + np.log(self.priors)
        return self

    def predict_proba(self, x):
        return scipy.special.softmax(x @ self.coef.T + self.intercept, axis=1)


def sfda(x, y, log_likelihood=True):
    """SFDA as in the release (ConfMix kept), with exact lambda_max; see _sfda.py."""
    x = np.array(x, np.float64)
    classes, yi = np.unique(y, return_inverse=True)
    first = _RegLDA().fit(x, y)
    prob = first.predict_proba(x)
    prob = scipy.special.softmax(prob, axis=1)
    means = first.means
    for k in range(len(classes)):
        idx = np.where(yi == k)[0]
        other = (means.sum(0) - means[k]) / (len(classes) - 1)
        r = prob[idx, k][:, None]
        x[idx] = r * x[idx] + (1 - r) * other
    second = _RegLDA(shrinkage=first.shrinkage).fit(x, y)
    p = second.predict_proba(x)[np.arange(len(y)), yi]
    return float(np.mean(np.log(p)) if log_likelihood else np.mean(p))


def nleep(x, y, num_classes, variance_kept=0.8, num_iters=100, reg_covar=1e-6):
    """PCA-80% (SVD), diagonal GMM by EM with PC1-strata init, then LEEP (see _nleep.py)."""
    x = np.asarray(x, np.float64)
    n, d = x.shape
    z, var, total = _pca_svd(x, min(n, d))
    ratio = np.cumsum(var) / total
    k_dims = min(int(np.searchsorted(ratio, variance_kept, side="right")) + 1, len(var))
    z = z[:, :k_dims]
    k = max(min(num_classes, int(0.2 * n)), int(0.1 * n), 1)
    order = np.argsort(z[:, 0], kind="stable")
    resp = np.zeros((n, k))
    for rank, i in enumerate(order):
        resp[i, rank * k // n] = 1.0
    reg = reg_covar * var[0] / n
    for _ in range(num_iters):
        nk = resp.sum(0) + 10 * np.finfo(np.float64).eps
        mu = resp.T @ z / nk[:, None]
        sig = np.stack([(resp[:, j:j + 1] * (z - mu[j]) ** 2).sum(0) / nk[j]
                        for j in range(k)]) + reg
        log_density = [np.sum(np.log(2 * np.pi * sig[j]) + (z - mu[j]) ** 2 / sig[j], axis=1)
                       for j in range(k)]
        log_joint = np.log(nk / n)[None, :] - 0.5 * np.stack(log_density, axis=1)
        resp = np.exp(log_joint - scipy.special.logsumexp(log_joint, axis=1, keepdims=True))
    classes = np.unique(y)
    joint = np.stack([resp[y == c].sum(0) for c in classes]) / n          # [Cp, K]
    cond = joint / joint.sum(0, keepdims=True)
    eep = np.array([resp[i] @ cond[np.searchsorted(classes, y[i])] for i in range(n)])
    return float(np.mean(np.log(eep)))
