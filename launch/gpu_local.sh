#!/usr/bin/env bash
# One host, all of its GPUs: a single process drives every local GPU through the device mesh
# (spider_jax.parallel.make_mesh), so no process management is needed.
#
# Usage:
#   launch/gpu_local.sh python -m spider_jax.train --config=configs/multi42.py --workdir=runs/m42
#   CUDA_VISIBLE_DEVICES=0,1 launch/gpu_local.sh python -m spider_jax.score --workdir=... ...
# Needs a CUDA jaxlib in the environment: pip install -e . "jax[cuda12]==0.10.2"
set -euo pipefail
if [[ $# -lt 1 ]]; then sed -n '2,9p' "$0"; exit 2; fi
export JAX_PLATFORMS=${JAX_PLATFORMS:-cuda}
# Let XLA take memory as needed rather than 75% up front (several jobs may share a host).
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
"${PYTHON:-python3}" - <<'PY' >&2
import jax
print(f"[gpu_local] {jax.local_device_count()} local device(s): {jax.local_devices()}")
PY
exec "$@"
