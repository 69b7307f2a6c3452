"""The Model Spider scorer (paper section 4.2, 4.4, appendix A.5): one score per (task, PTM).

Tokens (all d-dimensional):

* model tokens ``theta_m`` (learned, ``[M, d]``) + the "model" type embedding;
* generic task tokens: psi class centres through one Dense (``[B, C, d]``) + "generic" type;
* PTM-specific task tokens: PTM ``m``'s own class centres through its projection ``P_m``
  (heterogeneous ``D_m`` padded to ``D_max``: weight ``[M, D_max, d]``, bias ``[M, d]``)
  + "specific" type, for the PTMs flagged in ``specific_mask`` (paper: they *replace* the
  generic tokens of that PTM; ``specific_replaces_generic=False`` keeps both).

For PTM ``m`` the paper runs a Transformer over ``z = [theta_m, mu(T)]`` and reads the
output at position 0 (Eq. 6).  With one layer only the query of position 0 matters, so
we compute exactly that: the query is the model token, the keys/values are
``[theta_m, task tokens]``.  Keys and values of the generic task tokens do not depend
on ``m`` and are computed once per task, then broadcast over the M model queries; the
specific tokens are per (task, PTM) by nature.  For ``num_layers > 1`` every layer again
lets the model-token stream attend to the (fixed) task tokens — a stack of cross-
attention layers, identical to full self-attention at one layer (what the paper and the
release use) and keeping the "task work once per task" property at any depth.

Block (release: 1 head, no Q/K/V bias, scale 1/sqrt(d_head), attention dropout, output
Dense + dropout, post-norm residual, no feed-forward):
``x <- LN(x + Dropout(Dense(Attn(x W_Q, [x; t] W_K, [x; t] W_V))))``
and with ``mlp_dim > 0`` also ``x <- LN(x + Dropout(MLP(x)))``.
Head: ``LayerNorm -> Dense(1)``.

Prior + residual (``prior_residual=True``; issue 11 item 4, not in the paper): the score
is ``s_m(T) = b_m + g(T) r_m(T)`` with a learned per-PTM prior ``b`` ([M], the
task-independent ranking), the Transformer head above as the task-dependent residual
``r_m(T)``, and a gate ``g(T) in (0, 1]`` that falls back to the prior for a task far from
the training distribution (:func:`residual_gate`: the mean over the task's classes of the
distance from each psi class centre to its nearest training class centre, relative to a
calibrated in-distribution scale; ``g = exp(-max(0, dist / scale - 1))``, so ``g = 1``
within the training spread and decays beyond it).  The ``gate_refs`` reference centres
and the scale are frozen parameters (``gate_ref`` [R, D_psi], ``gate_scale`` []) that
training fills once from the training pool (:mod:`spider_jax.prior`) and never updates
(gradient stopped here, optimizer update zeroed there).  During training,
``residual_dropout`` of the tasks are scored by the prior alone (``g = 0``), so ``b`` on
its own is trained to rank the training distribution; the residual is recorded as the
``intermediates/residual`` collection for an optional L2 penalty.

Ensembles (:class:`SpiderEnsemble`, issue 11 item 4): ``members`` independent scorers
(different initialisations and dropout streams, same batches) as one ``nn.vmap`` over a
leading parameter axis; the ensemble score is the mean over members of each member's
per-task standardised scores (:func:`combine_members`); ``return_members=True`` gives the
per-member scores ``[K, B, M]`` (seed mean +- sd).

Why Flax linen: the scorer is a small, pure function of a parameter pytree; linen's
``init``/``apply`` keep ``train_step`` a plain jitted function of (params, opt_state,
batch) that donates buffers, vmaps and shards with no module state to thread, and the
params are a plain dict that orbax checkpoints and restores directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["SpiderScorer", "SpiderEnsemble", "make_scorer", "split_members", "residual_gate", "combine_members",
           "is_frozen_param", "FROZEN_PARAMS"]

FROZEN_PARAMS = ("gate_ref", "gate_scale")   # set from the training pool, never trained

_NEG = -1e30


def residual_gate(psi_centres, class_mask, ref, scale):
    """How far in distribution each task is: ``g in (0, 1]`` per task (pure).

    ``dist(T) = mean over real classes c of min_r ||psi_c - ref_r||``;
    ``g = exp(-max(0, dist / scale - 1))``.

    Args:
      psi_centres: [B, C, D_psi]; class_mask: [B, C] bool.
      ref: [R, D_psi] reference class centres of the training pool.
      scale: [] the in-distribution distance (calibrated, see spider_jax.prior).

    Returns:
      [B] float32 gates.
    """
    hp = jax.lax.Precision.HIGHEST
    psi = psi_centres.astype(jnp.float32)
    ref = ref.astype(jnp.float32)
    d2 = (jnp.sum(psi * psi, -1)[..., None] + jnp.sum(ref * ref, -1)[None, None, :]
          - 2.0 * jnp.einsum("bcp,rp->bcr", psi, ref, precision=hp))
    near = jnp.sqrt(jnp.maximum(jnp.min(d2, axis=-1), 0.0))                 # [B, C]
    w = class_mask.astype(jnp.float32)
    dist = jnp.sum(near * w, -1) / jnp.maximum(jnp.sum(w, -1), 1.0)
    return jnp.exp(-jnp.maximum(dist / jnp.maximum(scale, 1e-12) - 1.0, 0.0))


def combine_members(scores):
    """Ensemble score from member scores ``[K, B, M]``: mean of per-task z-scores.

    Each member's scores are standardised over the M PTMs of a task (ranking losses are
    shift- and, in practice, scale-free, so members' raw scales differ); constant score
    vectors standardise to zeros.
    """
    mu = jnp.mean(scores, axis=-1, keepdims=True)
    sd = jnp.std(scores, axis=-1, keepdims=True)
    return jnp.mean((scores - mu) / jnp.where(sd > 0, sd, 1.0), axis=0)


def is_frozen_param(path) -> bool:
    """True for a parameter path (tuple of keys) that training must not update."""
    return any(getattr(k, "key", k) in FROZEN_PARAMS for k in path)


class _QueryBlock(nn.Module):
    """One attention (+ optional MLP) block whose queries are the model tokens."""

    d: int
    num_heads: int
    mlp_dim: int
    dropout: float
    attn_dropout: float

    @nn.compact
    def __call__(self, x, generic, generic_mask, specific, specific_mask, *, deterministic):
        """x [B,M,d]; generic [B,C,d]; generic_mask [B,M,C]; specific [B,M,C,d] or None."""
        h, dh = self.num_heads, self.d // self.num_heads
        dense = lambda name: nn.DenseGeneral((h, dh), use_bias=False, name=name)
        wq, wk, wv = dense("query"), dense("key"), dense("value")
        q = wq(x) / jnp.sqrt(jnp.asarray(dh, x.dtype))            # [B,M,H,dh]
        k_self, v_self = wk(x), wv(x)                              # [B,M,H,dh]
        k_gen, v_gen = wk(generic), wv(generic)                    # [B,C,H,dh]  once per task
        logit_self = jnp.einsum("bmhd,bmhd->bmh", q, k_self)[..., None]        # [B,M,H,1]
        logit_gen = jnp.einsum("bmhd,bchd->bmhc", q, k_gen)                    # [B,M,H,C]
        logit_gen = jnp.where(generic_mask[:, :, None, :], logit_gen, _NEG)
        logits = [logit_self, logit_gen]
        if specific is not None:
            k_spec, v_spec = wk(specific), wv(specific)            # [B,M,C,H,dh]
            logit_spec = jnp.einsum("bmhd,bmchd->bmhc", q, k_spec)
            logits.append(jnp.where(specific_mask[:, :, None, :], logit_spec, _NEG))
        weights = jax.nn.softmax(jnp.concatenate(logits, axis=-1), axis=-1)
        weights = nn.Dropout(self.attn_dropout)(weights, deterministic=deterministic)
        c = generic.shape[1]
        out = weights[..., 0, None] * v_self                        # [B,M,H,dh]
        out = out + jnp.einsum("bmhc,bchd->bmhd", weights[..., 1:1 + c], v_gen)
        if specific is not None:
            out = out + jnp.einsum("bmhc,bmchd->bmhd", weights[..., 1 + c:], v_spec)
        out = nn.DenseGeneral(self.d, axis=(-2, -1), name="out")(out)
        out = nn.Dropout(self.dropout)(out, deterministic=deterministic)
        x = nn.LayerNorm(name="norm_attn")(x + out)
        if self.mlp_dim > 0:
            y = nn.Dense(self.mlp_dim, name="mlp_in")(x)
            y = nn.Dense(self.d, name="mlp_out")(nn.gelu(y))
            y = nn.Dropout(self.dropout)(y, deterministic=deterministic)
            x = nn.LayerNorm(name="norm_mlp")(x + y)
        return x


class SpiderScorer(nn.Module):
    """Scores all M PTMs for a batch of tasks in one call.

    Attributes:
      model_dims: feature dim D_m of every PTM (M = len); specific centres are padded to
        ``max(model_dims)`` and the padded dims are ignored (multiplied by 0).
      d: token width (paper: 1024).
      num_layers, num_heads: attention stack (paper/release: 1, 1).
      mlp_dim: feed-forward width, 0 = none (release).
      dropout, attn_dropout: output / attention dropout (release: 0.1 / 0.1).
      use_type_embeddings: add learned model/generic/specific type embeddings (paper).
      specific_replaces_generic: PTMs with specific tokens do not see the generic ones.
      prior_residual: score = learned per-PTM prior + gate * task residual (module doc).
      gate_refs: R reference class centres of the distance gate (0 = no gate, g = 1).
      residual_dropout: training only: fraction of tasks scored by the prior alone.
    """

    model_dims: Sequence[int]
    d: int = 1024
    num_layers: int = 1
    num_heads: int = 1
    mlp_dim: int = 0
    dropout: float = 0.1
    attn_dropout: float = 0.1
    use_type_embeddings: bool = True
    specific_replaces_generic: bool = True
    prior_residual: bool = False
    gate_refs: int = 0
    residual_dropout: float = 0.0

    @nn.compact
    def __call__(self, psi_centres, class_mask, specific_centres=None, specific_mask=None,
                 *, deterministic: bool = True):
        """Args:
          psi_centres: [B, C, D_psi] generic class centres (Eq. 5).
          class_mask: [B, C] bool, True for real classes.
          specific_centres: [B, M, C, D_max] PTM-specific class centres, or None (k = 0).
          specific_mask: [B, M] bool, True where PTM m receives its specific tokens.
          deterministic: False enables dropout (needs a 'dropout' rng).

        Returns:
          [B, M] float32 scores, higher = more transferable.
        """
        if self.d % self.num_heads:
            raise ValueError(f"d={self.d} must be divisible by num_heads={self.num_heads}")
        m, d = len(self.model_dims), self.d
        b = psi_centres.shape[0]
        init = nn.initializers.normal(0.02)
        theta = self.param("model_tokens", init, (m, d))
        types = self.param("type_embeddings", init, (3, d)) if self.use_type_embeddings \
            else jnp.zeros((3, d), jnp.float32)
        x = jnp.broadcast_to((theta + types[0][None, :])[None], (b, m, d))
        generic = nn.Dense(d, name="task_proj")(psi_centres) + types[1][None, None, :]  # [B,C,d]
        class_mask = class_mask.astype(bool)
        specific = None
        gen_mask = jnp.broadcast_to(class_mask[:, None, :], (b, m, class_mask.shape[1]))
        spec_mask = None
        if specific_centres is not None:
            if specific_mask is None:
                raise ValueError("specific_mask is required with specific_centres")
            d_max = max(self.model_dims)
            if specific_centres.shape[1:] != (m, class_mask.shape[1], d_max):
                raise ValueError(f"specific_centres shape {specific_centres.shape} != "
                                 f"[B, {m}, {class_mask.shape[1]}, {d_max}]")
            dim_mask = (jnp.arange(d_max)[None, :] <
                        jnp.asarray(self.model_dims)[:, None]).astype(specific_centres.dtype)
            proj_w = self.param("specific_proj", nn.initializers.lecun_normal(
                in_axis=1, out_axis=2, batch_axis=(0,)), (m, d_max, d))
            proj_b = self.param("specific_bias", nn.initializers.zeros, (m, d))
            specific = jnp.einsum("bmck,mkd->bmcd", specific_centres * dim_mask[None, :, None, :],
                                  proj_w) + (proj_b + types[2][None, :])[None, :, None, :]
            has = specific_mask.astype(bool)
            spec_mask = has[:, :, None] & class_mask[:, None, :]                  # [B,M,C]
            if self.specific_replaces_generic:
                gen_mask = gen_mask & ~has[:, :, None]
        for i in range(self.num_layers):
            x = _QueryBlock(d, self.num_heads, self.mlp_dim, self.dropout, self.attn_dropout,
                            name=f"block{i}")(x, generic, gen_mask, specific, spec_mask,
                                              deterministic=deterministic)
        x = nn.LayerNorm(name="head_norm")(x)
        out = nn.Dense(1, name="head")(x)[..., 0]
        if not self.prior_residual:
            return out
        self.sow("intermediates", "residual", out)
        prior = self.param("prior", nn.initializers.zeros, (m,))
        gate = jnp.ones((b,), jnp.float32)
        if self.gate_refs > 0:
            ref = self.param("gate_ref", nn.initializers.zeros, (self.gate_refs,
                                                                  psi_centres.shape[-1]))
            scale = self.param("gate_scale", nn.initializers.ones, ())
            gate = residual_gate(psi_centres, class_mask, jax.lax.stop_gradient(ref),
                                 jax.lax.stop_gradient(scale))
        if not deterministic and self.residual_dropout > 0:
            keep = jax.random.bernoulli(self.make_rng("dropout"), 1.0 - self.residual_dropout,
                                        (b,))
            gate = gate * keep.astype(gate.dtype)
        return prior[None, :] + gate[:, None] * out


class SpiderEnsemble(SpiderScorer):
    """``members`` independent :class:`SpiderScorer` s as one module (``nn.vmap``).

    Parameters are the member scorer's with a leading ``[K]`` axis under ``"members"``;
    inputs are shared.  Returns :func:`combine_members` of the member scores ``[B, M]``,
    or with ``return_members=True`` the member scores ``[K, B, M]``.
    """

    members: int = 3

    @nn.compact
    def __call__(self, psi_centres, class_mask, specific_centres=None, specific_mask=None,
                 *, deterministic: bool = True, return_members: bool = False):
        if self.members < 1:
            raise ValueError(f"ensemble.members must be >= 1, got {self.members}")
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(SpiderScorer)
                  if f.name not in ("parent", "name")}
        vm = nn.vmap(_Member, variable_axes={"params": 0, "intermediates": 0},
                     split_rngs={"params": True, "dropout": True}, in_axes=None, out_axes=0,
                     axis_size=self.members)
        out = vm(**fields, name="members")(psi_centres, class_mask, specific_centres,
                                           specific_mask, deterministic)
        return out if return_members else combine_members(out)


def split_members(model, params):
    """(the member scorer, [params of each member]) of an ensemble; a single scorer:
    (model, [params])."""
    if not isinstance(model, SpiderEnsemble):
        return model, [params]
    fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(SpiderScorer)
              if f.name not in ("parent", "name")}
    members = params["members"]
    k = jax.tree.leaves(members)[0].shape[0]
    # static slices (no index array sent to the device: the transfer-guard tests hold)
    return SpiderScorer(**fields), [
        jax.tree.map(lambda a, i=i: jax.lax.index_in_dim(a, i, keepdims=False), members)
        for i in range(k)]


class _Member(SpiderScorer):
    """SpiderScorer with ``deterministic`` positional (nn.vmap maps positional args)."""

    def __call__(self, psi_centres, class_mask, specific_centres, specific_mask,
                 deterministic):
        return super().__call__(psi_centres, class_mask, specific_centres, specific_mask,
                                deterministic=deterministic)


def make_scorer(config, model_dims: Sequence[int]) -> SpiderScorer:
    """Builds the scorer from ``config.model`` (and ``config.ensemble``, when present).

    Configs written before these switches existed (checkpoints' config.json) lack the
    prior/residual and ensemble fields: they build the paper's single scorer.
    """
    mc = config.model
    kwargs = dict(model_dims=tuple(int(x) for x in model_dims), d=mc.d,
                  num_layers=mc.num_layers, num_heads=mc.num_heads, mlp_dim=mc.mlp_dim,
                  dropout=mc.dropout, attn_dropout=mc.attn_dropout,
                  use_type_embeddings=mc.use_type_embeddings,
                  specific_replaces_generic=mc.specific_replaces_generic)
    if mc.get("prior_residual", False):
        kwargs.update(prior_residual=True, gate_refs=int(mc.get("gate_refs", 0)),
                      residual_dropout=float(mc.get("residual_dropout", 0.0)))
    members = int(config.get("ensemble", {}).get("members", 1))
    if members < 1:
        raise ValueError(f"ensemble.members must be >= 1, got {members}")
    return SpiderEnsemble(members=members, **kwargs) if members > 1 else SpiderScorer(**kwargs)


def init_params(model: SpiderScorer, zoo, num_classes: int, seed: int):
    """Fresh parameters of ``model`` for ``zoo`` (needs ``psi_dim``, ``num_models``,
    ``max_dim``): one dummy task of ``num_classes`` classes, every PTM specific (pure)."""
    psi = jnp.zeros((1, num_classes, zoo.psi_dim), jnp.float32)
    cm = jnp.ones((1, num_classes), bool)
    spec = jnp.zeros((1, zoo.num_models, num_classes, zoo.max_dim), jnp.float32)
    sm = jnp.ones((1, zoo.num_models), bool)
    return model.init(jax.random.PRNGKey(seed), psi, cm, spec, sm)["params"]
