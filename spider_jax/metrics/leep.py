"""LEEP and NCE: transferability from the PTM's source-head predictions.

* LEEP (Nguyen et al., "LEEP: A New Measure to Evaluate Transferability of
  Learned Representations", ICML 2020). With source-head probabilities
  ``theta_i(z)`` over source classes z and target labels y_i::

      P(y, z) = 1/N sum_i theta_i(z) 1[y_i = y],   P(y | z) = P(y, z) / sum_y' P(y', z)
      LEEP    = 1/N sum_i log( sum_z P(y_i | z) theta_i(z) )

* NCE (Tran et al., "Transferability and Hardness of Supervised Classification
  Tasks", ICCV 2019): negative conditional entropy of the target label given the
  source label z_i = argmax source prediction::

      P(y, z) = 1/N #{i : y_i = y, z_i = z}
      NCE     = -H(Y | Z) = sum_{y,z} P(y, z) log( P(y, z) / P(z) )      (0 log 0 = 0)

Both are <= 0 and higher = more transferable. Padding: masked examples get weight
0 and N is the number of real examples. Target classes absent from the task
contribute nothing (their joint column is zero); source classes that receive
no mass are skipped (no 0/0).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from spider_jax.metrics import _validate

__all__ = ["leep", "nce"]


def _weights(mask, n, dtype):
    return jnp.ones((n,), dtype) if mask is None else jnp.asarray(mask).astype(dtype)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _leep_jit(source_probs, labels, mask, *, num_classes):
    probs = _validate.as_float(source_probs)
    w = _weights(mask, probs.shape[0], probs.dtype)
    n_real = jnp.sum(w)
    real = w > 0
    # One-hot matmuls rather than segment_sum / take: under vmap these stay batched
    # matmuls, while batched scatters and gathers are ~9x slower on CPU.
    onehot = jax.nn.one_hot(labels, num_classes, dtype=probs.dtype) * w[:, None]   # [N, C]
    joint = onehot.T @ probs / n_real                                             # [C, Z]
    marginal = jnp.sum(joint, axis=0)                                             # [Z]
    cond = joint / jnp.where(marginal > 0, marginal, 1.0)[None, :]                # P(y|z)
    eep = jnp.sum(onehot * (probs @ cond.T), axis=1)                              # [N]
    log_eep = jnp.where(real, jnp.log(jnp.where(real, eep, 1.0)), 0.0)
    return jnp.sum(w * log_eep) / n_real


@functools.partial(jax.jit, static_argnames=("num_source_classes", "num_classes"))
def _nce_jit(source_labels, labels, mask, *, num_source_classes, num_classes):
    w = _weights(mask, labels.shape[0], jnp.float64 if jax.config.jax_enable_x64
                 else jnp.float32)
    real = w > 0
    cell = jnp.where(real, labels.astype(jnp.int32) * num_source_classes
                     + source_labels.astype(jnp.int32), 0)
    joint = jax.ops.segment_sum(w, cell, num_segments=num_classes * num_source_classes)
    joint = joint.reshape(num_classes, num_source_classes) / jnp.sum(w)          # [C, Z]
    marginal = jnp.sum(joint, axis=0, keepdims=True)
    ok = joint > 0
    ratio = jnp.where(ok, joint / jnp.where(ok, marginal, 1.0), 1.0)
    return jnp.sum(jnp.where(ok, joint * jnp.log(ratio), 0.0))


def leep(source_probs, labels, *, num_classes, mask=None):
    """LEEP score (Nguyen et al., ICML 2020); formula in the module docstring.

    Args:
      source_probs: [N, Z] source-head softmax probabilities: every real row
        non-negative and summing to 1 within ``bank.PROB_SUM_TOL`` (float16
        storage rounding is fine; scaled or all-zero rows are rejected).
      labels: [N] int target labels in ``[0, num_classes)``.
      num_classes: static number of target classes C.
      mask: optional [N] 0/1, 1 = real example.

    Returns:
      scalar float <= 0 (higher = more transferable).

    Raises:
      ValueError: NaN/Inf or negative probabilities, rows not summing to 1
        (naming them), labels out of range,
        mismatched lengths, fewer than 2 real examples or 2 classes.
    """
    _validate.validate_classification(source_probs, labels, num_classes=num_classes, mask=mask,
                                      x_name="source_probs", probs=True)
    return _leep_jit(source_probs, labels, mask, num_classes=num_classes)


def nce(source_labels, labels, *, num_source_classes, num_classes, mask=None):
    """NCE score -H(Y | Z) (Tran et al., ICCV 2019); formula in the module docstring.

    Args:
      source_labels: [N] int source labels z_i in ``[0, num_source_classes)``
        (argmax of the source head).
      labels: [N] int target labels in ``[0, num_classes)``.
      num_source_classes: static number of source classes Z.
      num_classes: static number of target classes C.
      mask: optional [N] 0/1, 1 = real example.

    Returns:
      scalar float <= 0 (float32, float64 under jax_enable_x64).

    Raises:
      ValueError: labels or source labels out of range, mismatched lengths,
        fewer than 2 real examples or 2 target classes.
    """
    num_classes = _validate.check_static_int(num_classes, "num_classes", 2)
    _validate.check_static_int(num_source_classes, "num_source_classes", 1)
    shape = _validate._shape(labels, "labels")
    if len(shape) != 1:
        raise ValueError(f"labels must be 1-D [N], got shape {shape}")
    n = shape[0]
    n_real = _validate.check_mask(mask, n)
    _validate.check_num_real(n_real, 2)
    _validate.check_labels(source_labels, num_source_classes, n, "source_labels", mask=mask,
                           min_classes=1)
    _validate.check_labels(labels, num_classes, n, "labels", mask=mask)
    return _nce_jit(source_labels, labels, mask, num_source_classes=num_source_classes,
                    num_classes=num_classes)
