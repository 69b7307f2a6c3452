"""A small synthetic feature bank whose PTM ranking is learnable (tests, smoke runs).

Generative story (all latent, seeded):

* ``num_domains`` latent domains. Every PTM ``m`` has a non-negative *domain skill*
  vector ``s_m`` and every dataset ``d`` a domain mixture ``u_d`` (a point of the
  simplex); each class of ``d`` has a latent prototype ``p_c`` in ``R^L`` and a domain
  ``u_c = normalize(u_d + small noise)``.
* An example of class ``c`` seen by PTM ``m`` is ``a_mc * p_c + noise`` mapped to the
  PTM's own ``D_m`` dims by a fixed random matrix, with separability
  ``a_mc = base + gain * s_m . u_c``: a PTM separates the classes of the domains it is
  skilled at.  The true transfer score of ``m`` on a dataset is the mean ``a_mc`` over
  its classes (``groundtruth.json`` for the downstream pool, ``synthetic_truth.json``
  for every dataset).
* The generic encoder psi reveals the class domain and prototype
  (``psi = R [u_c * 3, p_c] + noise``), so a scorer can learn ``theta_m ~ s_m`` from
  psi class centres alone.
* PTMs with a source head emit softmax(source logits) from a random linear head over
  their features.

Datasets are split into a ``train`` pool (for sampling training tasks) and a
``downstream`` pool (held out).  Written through :class:`spider_jax.bank.BankWriter`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from spider_jax import bank as bank_lib

__all__ = ["make_bank", "true_scores"]


def _truth_and_arrays(*, num_models, num_datasets, classes_per_dataset, examples_per_class,
                      dims, psi_dim, num_source_classes, source_head_every, num_domains,
                      latent_dim, noise, seed):
    rng = np.random.default_rng(seed)
    skills = rng.gamma(0.6, 1.0, size=(num_models, num_domains))
    skills /= skills.sum(axis=1, keepdims=True)
    # An overall-quality spread (as in real zoos) on top of the domain interaction.
    quality = rng.uniform(0.0, 1.0, size=num_models)
    proj = [rng.normal(size=(latent_dim, d)) / np.sqrt(latent_dim) for d in dims]
    heads = [rng.normal(size=(d, num_source_classes)) / np.sqrt(d) for d in dims]
    psi_proj = rng.normal(size=(num_domains + latent_dim, psi_dim)) / np.sqrt(latent_dim)
    datasets = []
    for ds in range(num_datasets):
        mix = rng.dirichlet(np.full(num_domains, 0.3))
        num_c = classes_per_dataset[ds % len(classes_per_dataset)]
        protos = rng.normal(size=(num_c, latent_dim))
        dom = np.abs(mix[None, :] + 0.05 * rng.normal(size=(num_c, num_domains)))
        dom /= dom.sum(axis=1, keepdims=True)
        sep = 0.15 + quality[:, None] + 2.5 * (skills @ dom.T)          # [M, C]
        n = num_c * examples_per_class
        labels = np.repeat(np.arange(num_c), examples_per_class)
        rng.shuffle(labels)
        base_noise = rng.normal(size=(n, latent_dim))
        feats, probs = [], []
        for m in range(num_models):
            z = sep[m, labels][:, None] * protos[labels] + noise * base_noise
            f = z @ proj[m] + 0.3 * noise * rng.normal(size=(n, dims[m]))
            feats.append(f.astype(np.float32))
            logits = f @ heads[m] * 3.0
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            probs.append((p / p.sum(axis=1, keepdims=True)).astype(np.float32))
        latent = np.concatenate([dom[labels] * 3.0, protos[labels]], axis=1)
        psi = latent @ psi_proj + 0.5 * noise * rng.normal(size=(n, psi_dim))
        datasets.append(dict(labels=labels.astype(np.int32), feats=feats, probs=probs,
                             psi=psi.astype(np.float32), truth=sep.mean(axis=1),
                             num_classes=num_c))
    has_head = [(source_head_every > 0 and m % source_head_every == 0) for m in range(num_models)]
    return datasets, has_head


def true_scores(root: str) -> dict[str, list[float]]:
    """The analytic transfer scores {dataset: [M]} saved beside a synthetic bank."""
    with open(os.path.join(root, "synthetic_truth.json")) as fh:
        return json.load(fh)


def make_bank(root: str, *, num_models: int = 6, num_datasets: int = 8,
              classes_per_dataset: Sequence[int] = (6, 8, 5), examples_per_class: int = 30,
              dims: Sequence[int] | None = None, psi_dim: int = 32,
              num_downstream: int = 2, modality: str = "image",
              num_source_classes: int = 20, source_head_every: int = 1,
              num_domains: int = 4, latent_dim: int = 12, noise: float = 1.0,
              num_groups: int = 0, seed: int = 0) -> str:
    """Writes a synthetic bank under ``root`` (skips the work if it is already complete).

    Args:
      root: output directory (created).
      num_models: M, the number of PTMs.
      num_datasets: total datasets; the last ``num_downstream`` form the downstream pool.
      classes_per_dataset: class counts, cycled over datasets.
      examples_per_class: examples per class in the ``train`` split.
      dims: per-PTM feature dims (default: cycles 16, 24, 12 for heterogeneity).
      psi_dim: dimension of the generic encoder psi.
      num_downstream: how many datasets go to the downstream pool.
      modality: modality tag of every model and dataset.
      num_source_classes: source-head classes for PTMs with a head.
      source_head_every: PTM m has a source head iff m % source_head_every == 0
        (1: all, 2: every other, 0: none).
      num_domains, latent_dim, noise: generative knobs (see module docstring).
      num_groups: > 0 tags dataset i with group ``g{i % num_groups}`` (leave-one-group-out
        tests); 0 leaves datasets untagged.
      seed: the only source of randomness.

    Returns:
      ``root``.
    """
    if num_downstream >= num_datasets:
        raise ValueError(f"num_downstream={num_downstream} must be < num_datasets={num_datasets}")
    if dims is None:
        dims = [(16, 24, 12)[m % 3] for m in range(num_models)]
    dims = [int(d) for d in dims]
    if len(dims) != num_models:
        raise ValueError(f"len(dims)={len(dims)} != num_models={num_models}")
    if os.path.exists(os.path.join(root, "manifest.json")) and os.path.exists(
            os.path.join(root, "synthetic_truth.json")):
        return root
    datasets, has_head = _truth_and_arrays(
        num_models=num_models, num_datasets=num_datasets,
        classes_per_dataset=list(classes_per_dataset), examples_per_class=examples_per_class,
        dims=dims, psi_dim=psi_dim, num_source_classes=num_source_classes,
        source_head_every=source_head_every, num_domains=num_domains, latent_dim=latent_dim,
        noise=noise, seed=seed)
    os.makedirs(root, exist_ok=True)
    writer = bank_lib.BankWriter(root, psi={modality: {"name": "synthetic_psi", "dim": psi_dim}})
    models = [f"ptm{m:02d}" for m in range(num_models)]
    for m, name in enumerate(models):
        writer.add_model(name, dim=dims[m], modality=modality, has_source_head=has_head[m],
                         num_source_classes=num_source_classes if has_head[m] else 0,
                         description="synthetic PTM")
    truth = {}
    for i, ds in enumerate(datasets):
        name = f"ds{i:02d}"
        pool = "downstream" if i >= num_datasets - num_downstream else "train"
        writer.add_dataset(name, modality=modality,
                           class_names=[f"{name}_c{c}" for c in range(ds["num_classes"])],
                           pool=pool, source="spider_jax.synthetic", licence="CC0",
                           **({"group": f"g{i % num_groups}"} if num_groups > 0 else {}))
        writer.write_labels(name, "train", ds["labels"])
        writer.write_psi(name, "train", ds["psi"])
        for m, mname in enumerate(models):
            writer.write_features(mname, name, "train", ds["feats"][m])
            if has_head[m]:
                writer.write_source_probs(mname, name, "train", ds["probs"][m])
        truth[name] = [float(t) for t in ds["truth"]]
    writer.close()
    with open(os.path.join(root, "synthetic_truth.json"), "w") as fh:
        json.dump(truth, fh)
    _write_groundtruth(root, models, truth, datasets=[f"ds{i:02d}" for i in range(num_datasets)
                                                     if i >= num_datasets - num_downstream])
    return root


def _write_groundtruth(root, models, truth, datasets):
    """Writes the analytic truth of the downstream datasets as the bank's groundtruth."""
    payload = {ds: {"models": list(models), "mean": truth[ds], "std": [0.0] * len(models)}
               for ds in datasets}
    bank_lib.write_groundtruth(root, payload, protocol="synthetic: mean class separability "
                               "a_mc = base + gain * skill_m . domain_c (spider_jax.synthetic)")
