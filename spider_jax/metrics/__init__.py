"""Transferability metrics (higher = more transferable), jit- and vmap-able.

(Being filled in: the core metrics are added by the metrics-core helper.)
"""
