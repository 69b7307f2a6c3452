"""The k = 0 fast path of a one-layer scorer: Model Spider's coarse ranking (Algorithm 2,
first stage) with every PTM-independent product folded once per checkpoint.

The k = 0 path (:func:`fast_scores`) is a pure function of the scorer's parameters,
equal to ``model.apply`` but with every PTM-independent product hoisted out of the
(task, PTM) loop.  For a one-layer scorer the model tokens ``x_m`` do not depend on the
task, so with task tokens ``t_c = psi_c W_p + b_p + e_gen``:

    logit_{m,h,c} = (x_m W_Q^h / sqrt(d_h)) . (t_c W_K^h) = a_{m,h} . psi_c + a0_{m,h}
    out_m = sum_h [w_{m,h,self} v'_{m,h} + sum_c w_{m,h,c} (t_c W_V^h W_O^h)] + b_O

where ``a = (x W_Q / sqrt(d_h)) W_K^T W_p^T`` ([M, H, D_psi]) and ``W_p W_V^h W_O^h`` are
folded once per checkpoint (:func:`prepare_fast`).  Per task that leaves one
``[min(C, M), D_psi] x [D_psi, H d]`` product (the C class values, shared by all PTMs, or
for C > M the M attention-mixed inputs, since the sum over c is linear) and
``O(M H C D)`` for logits and mixing: no ``d x d`` product per (task, PTM).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from spider_jax import model as model_lib

__all__ = ["prepare_fast", "fast_scores", "fast_flops_per_task"]

_NEG = -1e30  # the scorer's own mask value (spider_jax.model), so the fast path matches it


def _p(variables: Mapping[str, Any]) -> Mapping[str, Any]:
    return variables["params"] if "params" in variables else variables


def _layer_norm(p: Mapping[str, Any], x: jax.Array) -> jax.Array:
    return nn.LayerNorm().apply({"params": p}, x)


def _fast_route(num_heads: int, psi_dim: int, d: int) -> str:
    """'psi' folds the task projection into logits and values (H*D_psi*d flops per class)
    when that is cheaper than projecting to tokens first (D_psi*d + H*d*d per class)."""
    return "psi" if num_heads * psi_dim <= psi_dim + num_heads * d else "token"


def prepare_fast(variables: Mapping[str, Any], model: Any) -> dict[str, Any]:
    """Folds the PTM-side and weight-only products of a one-layer scorer once.

    Args:
      variables: the scorer's variables ``{"params": ...}`` (or the params dict).
      model: the :class:`spider_jax.model.SpiderScorer` (reads num_heads, num_layers, ...).

    Returns:
      A pytree of float32 arrays for :func:`fast_scores`; its structure (whether
      "proj_w" is present) selects the route, so it can be passed through jit.

    Raises:
      ValueError: for a scorer with more than one layer (use ``model.apply``).
    """
    if int(model.num_layers) != 1:
        raise ValueError(f"the k=0 fast path folds a one-layer scorer; this one has "
                         f"num_layers={model.num_layers} (use model.apply)")
    p = _p(variables)
    if "members" in p:       # an ensemble: fold every member (leading [K] axis)
        return {"members": jax.vmap(lambda q: _prepare_fast_one(q, model))(p["members"])}
    return _prepare_fast_one(p, model)


def _prepare_fast_one(p: Mapping[str, Any], model: Any) -> dict[str, Any]:
    """:func:`prepare_fast` of one (non-ensemble) scorer's params."""
    hp = jax.lax.Precision.HIGHEST
    theta = jnp.asarray(p["model_tokens"], jnp.float32)                  # [M, d]
    m, d = theta.shape
    types = jnp.asarray(p["type_embeddings"], jnp.float32) if model.use_type_embeddings \
        else jnp.zeros((3, d), jnp.float32)
    blk = p["block0"]
    wq, wk, wv = (jnp.asarray(blk[n]["kernel"], jnp.float32) for n in ("query", "key", "value"))
    h, dh = wq.shape[1], wq.shape[2]                                     # [d, H, dh]
    wo = jnp.asarray(blk["out"]["kernel"], jnp.float32)                  # [H, dh, d]
    bo = jnp.asarray(blk["out"]["bias"], jnp.float32)
    w_p = jnp.asarray(p["task_proj"]["kernel"], jnp.float32)             # [Dpsi, d]
    b_p = jnp.asarray(p["task_proj"]["bias"], jnp.float32) + types[1]    # [d]
    x = theta + types[0][None, :]                                        # [M, d]
    q = jnp.einsum("md,dhk->mhk", x, wq, precision=hp) / jnp.sqrt(jnp.float32(dh))
    k_self = jnp.einsum("md,dhk->mhk", x, wk, precision=hp)
    v_self = jnp.einsum("md,dhk->mhk", x, wv, precision=hp)
    qk = jnp.einsum("mhk,dhk->mhd", q, wk, precision=hp)                 # [M, H, d]
    vo = jnp.einsum("dhk,hke->dhe", wv, wo, precision=hp)                # [d, H, d]
    route = _fast_route(h, w_p.shape[0], d)
    fast = {
        "x": x,
        "logit_self": jnp.einsum("mhk,mhk->mh", q, k_self, precision=hp),
        "value_self": jnp.einsum("mhk,hke->mhe", v_self, wo, precision=hp),   # [M, H, d]
        "out_bias": bo,
        "logit_bias": jnp.einsum("mhd,d->mh", qk, b_p, precision=hp),
        "value_bias": jnp.einsum("d,dhe->he", b_p, vo, precision=hp),          # [H, d]
        "norm_attn": blk["norm_attn"], "head_norm": p["head_norm"], "head": p["head"],
    }
    if route == "psi":
        fast["logit_w"] = jnp.einsum("mhd,pd->mhp", qk, w_p, precision=hp)     # [M, H, Dpsi]
        fast["value_w"] = jnp.einsum("pd,dhe->phe", w_p, vo, precision=hp)     # [Dpsi, H, d]
    else:
        fast["proj_w"] = w_p
        fast["logit_w"] = qk                                                    # [M, H, d]
        fast["value_w"] = vo                                                    # [d, H, d]
    if int(model.mlp_dim) > 0:
        fast["mlp"] = {n: blk[n] for n in ("mlp_in", "mlp_out", "norm_mlp")}
    if "prior" in p:                         # prior + gated residual (model.py)
        fast["prior"] = jnp.asarray(p["prior"], jnp.float32)
        if "gate_ref" in p:
            fast["gate_ref"] = jnp.asarray(p["gate_ref"], jnp.float32)
            fast["gate_scale"] = jnp.asarray(p["gate_scale"], jnp.float32)
    return fast


def fast_scores(fast: Mapping[str, Any], psi_centres: jax.Array,
                class_mask: jax.Array) -> jax.Array:
    """k = 0 scores of all M PTMs for a batch of tasks (equals ``model.apply`` at k = 0).

    Args:
      fast: the output of :func:`prepare_fast` (a pytree: pass it as a jit argument).
      psi_centres: [B, C, D_psi] generic class centres.
      class_mask: [B, C] bool, True for real classes.

    Returns:
      [B, M] float32 scores (an ensemble: ``model.combine_members`` of its members').
    """
    if "members" in fast:
        member = jax.vmap(fast_scores, in_axes=(0, None, None))(fast["members"], psi_centres,
                                                                 class_mask)
        return model_lib.combine_members(member)
    psi = psi_centres.astype(jnp.float32)
    if "proj_w" in fast:  # 'token' route: project to tokens first (biases are folded)
        psi = jnp.einsum("bcp,pd->bcd", psi, fast["proj_w"])
    logits = jnp.einsum("bcp,mhp->bmhc", psi, fast["logit_w"]) \
        + fast["logit_bias"][None, :, :, None]
    logits = jnp.where(class_mask.astype(bool)[:, None, None, :], logits, _NEG)
    b, c = psi.shape[:2]
    m, h = fast["logit_self"].shape
    self_logit = jnp.broadcast_to(fast["logit_self"][None, :, :, None], (b, m, h, 1))
    weights = jax.nn.softmax(jnp.concatenate([self_logit, logits], axis=-1), axis=-1)
    w_task = weights[..., 1:]                                              # [B, M, H, C]
    out = jnp.einsum("bmh,mhe->bme", weights[..., 0], fast["value_self"]) \
        + jnp.einsum("bmh,he->bme", w_task.sum(-1), fast["value_bias"]) \
        + fast["out_bias"][None, None]
    # sum_c w_mhc (psi_c V_h) is linear in psi: project the C class values once per task
    # (C <= M) or the M attention-mixed inputs (C > M), whichever is fewer rows.
    if c <= m:
        values = jnp.einsum("bcp,phe->bche", psi, fast["value_w"])          # [B, C, H, d]
        out = out + jnp.einsum("bmhc,bche->bme", w_task, values)
    else:
        mixed = jnp.einsum("bmhc,bcp->bmhp", w_task, psi)                  # [B, M, H, D]
        out = out + jnp.einsum("bmhp,phe->bme", mixed, fast["value_w"])
    x = _layer_norm(fast["norm_attn"], fast["x"][None] + out)
    if "mlp" in fast:
        mp = fast["mlp"]
        y = nn.gelu(x @ mp["mlp_in"]["kernel"] + mp["mlp_in"]["bias"][None, None])
        y = y @ mp["mlp_out"]["kernel"] + mp["mlp_out"]["bias"][None, None]
        x = _layer_norm(mp["norm_mlp"], x + y)
    x = _layer_norm(fast["head_norm"], x)
    out = (x @ fast["head"]["kernel"])[..., 0] + fast["head"]["bias"][0]
    if "prior" not in fast:
        return out
    gate = jnp.ones((b,), jnp.float32) if "gate_ref" not in fast else model_lib.residual_gate(
        psi_centres, class_mask, fast["gate_ref"], fast["gate_scale"])
    return fast["prior"][None, :] + gate[:, None] * out


def fast_flops_per_task(fast: Mapping[str, Any], num_classes: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of :func:`fast_scores` for one task of C classes."""
    if "members" in fast:
        members = fast["members"]
        k = members["x"].shape[0]
        return k * fast_flops_per_task(jax.tree.map(lambda a: a[0], members), num_classes)
    m, h, kdim = fast["logit_w"].shape
    d = fast["x"].shape[1]
    c = num_classes
    flops = 2 * m * h * c * kdim            # logits
    if c <= m:
        flops += 2 * c * kdim * h * d       # class values, once per task
        flops += 2 * m * h * (c + 1) * d    # attention-weighted values
    else:
        flops += 2 * m * h * c * kdim       # attention-mixed inputs
        flops += 2 * m * h * kdim * d + 2 * m * h * d    # their projection + self value
    if "proj_w" in fast:
        flops += 2 * c * fast["proj_w"].shape[0] * d
    if "mlp" in fast:
        flops += 4 * m * d * fast["mlp"]["mlp_in"]["kernel"].shape[1]
    flops += 2 * m * d + 20 * m * d         # head + layer norms / softmax (approximate)
    if "gate_ref" in fast:
        flops += 2 * c * fast["gate_ref"].size  # distances to the gate's reference centres
    return int(flops)
