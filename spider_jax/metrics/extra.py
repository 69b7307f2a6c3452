"""Additional transferability metrics: N-LEEP, TransRate, GBC, LFC, PACTran-Dirichlet, SFDA.

Stub: signatures only; implementations follow.
"""
from __future__ import annotations

__all__ = ["nleep", "transrate", "gbc", "lfc", "pactran_dirichlet", "sfda"]


def nleep(features, labels, *, num_classes, mask=None, seed=0, **kwargs):
  raise NotImplementedError


def transrate(features, labels, *, num_classes, mask=None, eps=1e-4):
  raise NotImplementedError


def gbc(features, labels, *, num_classes, mask=None, pca_dim=64):
  raise NotImplementedError


def lfc(features, labels, *, num_classes, mask=None):
  raise NotImplementedError


def pactran_dirichlet(source_probs, labels, *, num_classes, mask=None, **kwargs):
  raise NotImplementedError


def sfda(features, labels, *, num_classes, mask=None, **kwargs):
  raise NotImplementedError
