"""Independent float64 NumPy references for the core metrics, written from the formulas.

Deliberately the straightforward algorithms (per-class loops, explicit matrices,
SVD, explicit covariance matrices, boolean selection of real examples) so that
they share no code path with spider_jax.metrics.
"""

from __future__ import annotations

import numpy as np


def _real(x, mask):
    x = np.asarray(x)
    return x if mask is None else x[np.asarray(mask).astype(bool)]


def logme_evidence_ref(f, y, max_iters=11, tol=1e-3, count_null_space=True):
    """LogME per-example evidence for one target (JMLR fixed point, float64, SVD).

    count_null_space=False reproduces the upstream bug (thuml/LogME issue #23).
    """
    f = np.asarray(f, np.float64)
    y = np.asarray(y, np.float64)
    n, d = f.shape
    u, sv, vh = np.linalg.svd(f, full_matrices=False)
    s = sv ** 2                                     # eigenvalues of F^T F (min(N, D) of them)
    fty = f.T @ y
    alpha, beta = 1.0, 1.0
    for _ in range(max_iters):
        gamma = np.sum(beta * s / (alpha + beta * s))
        m = vh.T @ ((vh @ fty) * beta / (alpha + beta * s))
        m2 = float(m @ m)
        res = float(np.sum((f @ m - y) ** 2))
        new_alpha = gamma / m2
        new_beta = (n - gamma) / res
        lam, new_lam = alpha / beta, new_alpha / new_beta
        alpha, beta = new_alpha, new_beta
        if abs(new_lam - lam) / lam <= tol:
            break
    # All D eigenvalues of A = alpha I + beta F^T F: the D - min(N, D) missing ones are alpha.
    logdet = np.sum(np.log(alpha + beta * s))
    if count_null_space:
        logdet += (d - s.size) * np.log(alpha)
    ev = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * logdet
          - beta / 2 * res - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
    return ev / n


def unit_rms_ref(f):
    """f / RMS(f): the scale LogME is evaluated at (its maximum evidence is scale-free;
    spider_jax.metrics documents this normalisation). All-zero f is returned as is."""
    rms = np.sqrt(np.mean(f * f))
    return f / rms if rms > 0 else f


def null_evidence_ref(y):
    """Per-example evidence of the noise-only model y ~ N(0, 1/beta), beta = N / |y|^2
    (LogME's alpha -> inf limit, the value for all-zero features)."""
    n = y.size
    beta = n / float(y @ y)
    return 0.5 * np.log(beta) - 0.5 - 0.5 * np.log(2 * np.pi)


def _evidence(f, y):
    return null_evidence_ref(y) if not np.any(f) else logme_evidence_ref(f, y)


def logme_ref(features, labels, num_classes, mask=None, normalise=True):
    f = _real(features, mask).astype(np.float64)
    f = unit_rms_ref(f) if normalise else f
    y = _real(labels, mask)
    evs = [_evidence(f, (y == c).astype(np.float64))
           for c in range(num_classes) if np.any(y == c)]
    return float(np.mean(evs))


def logme_regression_ref(features, targets, mask=None, normalise=True):
    f = _real(features, mask).astype(np.float64)
    f = unit_rms_ref(f) if normalise else f
    t = _real(targets, mask).astype(np.float64)
    if t.ndim == 1:
        t = t[:, None]
    return float(np.mean([_evidence(f, t[:, r]) for r in range(t.shape[1])]))


def leep_ref(source_probs, labels, num_classes, mask=None):
    p = _real(source_probs, mask).astype(np.float64)
    y = _real(labels, mask)
    n, z = p.shape
    joint = np.zeros((num_classes, z))
    for i in range(n):
        joint[y[i]] += p[i] / n
    pz = joint.sum(0)
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)
    return float(np.mean([np.log(np.dot(cond[y[i]], p[i])) for i in range(n)]))


def nce_ref(source_labels, labels, num_source_classes, num_classes, mask=None):
    z = _real(source_labels, mask)
    y = _real(labels, mask)
    n = y.size
    joint = np.zeros((num_classes, num_source_classes))
    np.add.at(joint, (y, z), 1.0 / n)
    pz = joint.sum(0)
    h = 0.0
    for c in range(num_classes):
        for k in range(num_source_classes):
            if joint[c, k] > 0:
                h -= joint[c, k] * np.log(joint[c, k] / pz[k])
    return -h


def hscore_ref(features, labels, num_classes, mask=None, rcond=1e-10):
    f = _real(features, mask).astype(np.float64)
    y = _real(labels, mask)
    cov_f = np.cov(f, rowvar=False)
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(0)
    cov_g = np.cov(g, rowvar=False)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=rcond, hermitian=True) @ cov_g))


def ledoit_wolf_ref(x):
    """Ledoit-Wolf (2004) shrunk covariance of centred x [n, p] and the shrinkage."""
    n, p = x.shape
    s = x.T @ x / n
    mu = np.trace(s) / p
    d2 = np.sum((s - mu * np.eye(p)) ** 2) / p
    b2 = sum(np.sum((np.outer(xi, xi) - s) ** 2) for xi in x) / n ** 2 / p
    a = 0.0 if d2 == 0 else min(b2, d2) / d2
    return (1 - a) * s + a * mu * np.eye(p), a


def regularized_hscore_ref(features, labels, num_classes, mask=None):
    f = _real(features, mask).astype(np.float64)
    y = _real(labels, mask)
    x = f - f.mean(0)
    cov_a, a = ledoit_wolf_ref(x)
    g = np.zeros_like(x)
    for c in np.unique(y):
        g[y == c] = x[y == c].mean(0)
    cov_g = g.T @ g / len(x)           # E[f|y] is centred already (weighted mean of class means)
    return float(np.trace(np.linalg.inv(cov_a) @ ((1 - a) * cov_g)))


def copeland_ref(scores):
    """Copeland points (paper Eq. 8) written literally: [A, M] scores of A methods for M
    PTMs -> [M]; a pair scores 1 for a majority win, 0.5 for a tie of wins."""
    s = np.asarray(scores, np.float64)
    a, m = s.shape
    out = np.zeros(m)
    for i in range(m):
        for j in range(m):
            if i == j:
                continue
            a_i = sum(s[k, i] > s[k, j] for k in range(a))
            a_j = sum(s[k, j] > s[k, i] for k in range(a))
            out[i] += 1.0 if a_i > a_j else (0.5 if a_i == a_j else 0.0)
    return out

