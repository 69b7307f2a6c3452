"""Input validation shared by every transferability metric.

Every public metric validates its inputs with these helpers *before* any jitted
code is compiled, and raises ``ValueError`` naming the argument and the problem.

Two regimes:

* Concrete inputs (NumPy arrays, Python lists, concrete ``jax.Array``): full
  checks with NumPy -- shapes, dtypes, finiteness, label range, number of real
  examples and of classes present.
* Traced inputs (inside ``jax.jit`` / ``jax.vmap``, see :func:`is_traced`):
  only *static* checks (ranks, lengths, dtypes, static integers), because the
  values are unknown at trace time.

Conventions used by all metrics:

* ``mask`` is ``None`` (all examples real) or a 1-D array of length ``N`` whose
  entries are 0 or 1 (bool or numeric); 1 = real example, 0 = padding.
* Features / probabilities must be finite everywhere, padding rows included
  (a NaN in a padding row would survive ``0 * NaN``).
* Labels of *real* examples must be integers in ``[0, num_classes)``; labels at
  padded positions are ignored (any integer, e.g. -1, is allowed there).
* A task needs at least 2 real examples; a classification task needs at least
  2 distinct classes among its real examples.

Reusable helpers (each returns ``None`` unless documented otherwise):

* ``is_traced(*xs) -> bool``
* ``check_static_int(value, name, minimum)`` -> int
* ``check_features(x, name="features")`` -> N
* ``check_probs(p, name="source_probs", mask=None)`` -> N (real rows must be distributions)
* ``warn_if_constant(x, mask, metric)`` -> bool (RuntimeWarning for constant features)
* ``check_targets(y, n, name="targets")``  (regression targets ``[N]`` or ``[N, R]``)
* ``check_mask(mask, n, name="mask")`` -> number of real examples (or ``None`` if traced)
* ``check_labels(labels, num_classes, n, name="labels", mask=None, min_classes=2)``
* ``check_num_real(n_real, minimum=2)``
* ``validate_classification(x, labels, *, num_classes, mask, x_name="features")``:
  the usual combination for ``metric(features, labels, *, num_classes, mask)``.

Also ``as_float(x)`` (jit-safe): the compute dtype of metric inputs -- float32 for
integer or half-precision inputs (banks store float16), float64 kept as is.
"""

from __future__ import annotations

import numbers
import warnings

import jax
import numpy as np

from spider_jax.bank import PROB_SUM_TOL   # the bank's tolerance for stored softmax rows

__all__ = [
    "as_float",
    "is_traced",
    "check_static_int",
    "check_features",
    "check_probs",
    "check_targets",
    "check_mask",
    "check_labels",
    "check_num_real",
    "validate_classification",
    "warn_if_constant",
    "PROB_SUM_TOL",
]



def as_float(x):
    """jnp array in the compute dtype: float32 unless already float32/float64."""
    import jax.numpy as jnp

    x = jnp.asarray(x)
    if x.dtype in (jnp.float32, jnp.float64):
        return x
    return x.astype(jnp.float32)


def is_traced(*xs) -> bool:
    """True if any argument is a JAX tracer (we are inside jit/vmap/grad)."""
    return any(isinstance(x, jax.core.Tracer) for x in xs if x is not None)


def _shape(x, name):
    shape = getattr(x, "shape", None)
    if shape is None:
        try:
            shape = np.shape(x)
        except Exception as e:  # ragged lists etc.
            raise ValueError(f"{name}: cannot interpret as an array ({e})") from None
    return tuple(shape)


def _dtype(x):
    dt = getattr(x, "dtype", None)
    return np.asarray(x).dtype if dt is None else np.dtype(dt)


def _concrete(x):
    return np.asarray(x)


def check_static_int(value, name: str, minimum: int = 1) -> int:
    """A static (Python) integer >= ``minimum``, e.g. ``num_classes``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a static Python int, "
                         f"got {type(value).__name__}: {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_features(x, name: str = "features") -> int:
    """Features ``[N, D]``: 2-D, numeric, finite (padding rows included). Returns N."""
    shape = _shape(x, name)
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D [N, D], got shape {shape}")
    if shape[1] < 1:
        raise ValueError(f"{name} must have at least one feature column, got shape {shape}")
    dt = _dtype(x)
    if not (np.issubdtype(dt, np.floating) or np.issubdtype(dt, np.integer)):
        raise ValueError(f"{name} must be a real numeric array, got dtype {dt}")
    if not is_traced(x):
        a = _concrete(x)
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
            raise ValueError(f"{name} contains {bad} NaN/Inf value(s)")
    return shape[0]


def check_probs(p, name: str = "source_probs", mask=None) -> int:
    """Source-head probabilities ``[N, C_src]``: every real row a distribution. Returns N.

    Entries must be finite and non-negative and each real row (``mask`` 1; all rows
    when ``mask`` is None) must sum to 1 within :data:`PROB_SUM_TOL` (banks may store
    float16, so exact normalisation is not required).  Scaled or all-zero rows are
    rejected: LEEP would return impossible values (> 0 or -inf) on them.
    """
    n = check_features(p, name)
    if not is_traced(p, mask):
        a = _concrete(p)
        if np.any(a < 0):
            rows = np.flatnonzero(np.any(a < 0, axis=1))
            raise ValueError(f"{name} must be non-negative probabilities: rows "
                             f"{_first(rows)} have negative entries (min {a.min()})")
        sums = a.astype(np.float64).sum(axis=1)
        bad = np.abs(sums - 1.0) > PROB_SUM_TOL
        if mask is not None and _shape(mask, "mask") == (n,):
            bad &= _concrete(mask).astype(bool)
        if np.any(bad):
            rows = np.flatnonzero(bad)
            raise ValueError(f"{name} rows must be probability distributions (sum to 1 "
                             f"+-{PROB_SUM_TOL}): rows {_first(rows)} sum to "
                             f"{_first(sums[rows], fmt='{:.4g}')}")
    return n


def _first(values, k: int = 5, fmt: str = "{}") -> str:
    """``[v0, v1, ...]`` of at most k values plus how many more."""
    shown = ", ".join(fmt.format(v) for v in list(values)[:k])
    more = len(values) - k
    return f"[{shown}{f', ... ({more} more)' if more > 0 else ''}]"


def warn_if_constant(x, mask, metric: str, name: str = "features") -> bool:
    """Warns (and returns True) when every real row of concrete ``x`` is the same vector.

    Such features carry no information about the task; the metric still returns its
    no-information value (LogME: the evidence of a noise-only model, H-Scores: 0).
    """
    if is_traced(x, mask):
        return False
    a = _concrete(x)
    if mask is not None:
        a = a[_concrete(mask).astype(bool)]
    if a.shape[0] == 0 or not np.all(a == a[:1]):
        return False
    warnings.warn(f"{metric}: {name} are constant over the {a.shape[0]} real examples: "
                  f"this model's features carry no information about the task",
                  RuntimeWarning, stacklevel=3)
    return True


def check_targets(y, n: int, name: str = "targets") -> None:
    """Regression targets ``[N]`` or ``[N, R]``: numeric, finite, length N."""
    shape = _shape(y, name)
    if len(shape) not in (1, 2):
        raise ValueError(f"{name} must be [N] or [N, R], got shape {shape}")
    if shape[0] != n:
        raise ValueError(f"{name} has length {shape[0]} but features have N={n} rows")
    dt = _dtype(y)
    if not (np.issubdtype(dt, np.floating) or np.issubdtype(dt, np.integer)):
        raise ValueError(f"{name} must be real numeric, got dtype {dt}")
    if not is_traced(y):
        a = _concrete(y)
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN/Inf values")


def check_mask(mask, n: int, name: str = "mask"):
    """Mask ``[N]`` of 0/1 (bool or numeric). Returns the number of real examples
    (``n`` if ``mask`` is None, ``None`` if the mask is traced)."""
    if mask is None:
        return n
    shape = _shape(mask, name)
    if shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the examples, got {shape}")
    if is_traced(mask):
        return None
    a = _concrete(mask)
    if a.dtype != np.bool_:
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"{name} must be bool or numeric, got dtype {a.dtype}")
        if not np.all((a == 0) | (a == 1)):
            raise ValueError(f"{name} entries must be 0 or 1 (1 = real example)")
    return int(np.count_nonzero(a))


def check_num_real(n_real, minimum: int = 2) -> None:
    """At least ``minimum`` real (unmasked) examples; no-op when unknown (traced)."""
    if n_real is not None and n_real < minimum:
        raise ValueError(f"need at least {minimum} real (unmasked) examples, got {n_real}")


def check_labels(labels, num_classes: int, n: int, name: str = "labels", *,
                 mask=None, min_classes: int = 2) -> None:
    """Integer labels ``[N]`` in ``[0, num_classes)`` for real examples.

    With concrete inputs also requires ``min_classes`` distinct classes among
    the real examples. Labels at masked positions are not checked.
    """
    num_classes = check_static_int(num_classes, "num_classes", 1)
    shape = _shape(labels, name)
    if len(shape) != 1:
        raise ValueError(f"{name} must be 1-D [N], got shape {shape}")
    if shape[0] != n:
        raise ValueError(f"{name} has length {shape[0]} but the inputs have N={n} rows")
    dt = _dtype(labels)
    if not np.issubdtype(dt, np.integer):
        raise ValueError(f"{name} must be an integer array, got dtype {dt}")
    if is_traced(labels, mask):
        return
    a = _concrete(labels)
    if mask is not None:
        a = a[_concrete(mask).astype(bool)]
    if a.size and (a.min() < 0 or a.max() >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}) for real examples, "
                         f"got range [{a.min()}, {a.max()}]")
    present = np.unique(a).size
    if present < min_classes:
        raise ValueError(f"{name}: need at least {min_classes} distinct classes among real "
                         f"examples, got {present}")


def validate_classification(x, labels, *, num_classes, mask=None, x_name: str = "features",
                            probs: bool = False, min_classes: int = 2) -> None:
    """Validate ``metric(x, labels, *, num_classes, mask)`` (x = features or probs)."""
    num_classes = check_static_int(num_classes, "num_classes", 2)
    n = check_probs(x, x_name, mask=mask) if probs else check_features(x, x_name)
    n_real = check_mask(mask, n)
    check_num_real(n_real, 2)
    check_labels(labels, num_classes, n, mask=mask, min_classes=min_classes)
