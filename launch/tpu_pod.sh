#!/usr/bin/env bash
# Run one spider_jax command on every worker of an EXISTING Cloud TPU VM slice.
# Creates nothing: the slice, the project checkout and its venv must already be on each worker
# (e.g. set up once with SETUP below). JAX's distributed runtime finds the other workers by
# itself on a TPU pod slice; SPIDER_JAX_DISTRIBUTED=1 makes spider_jax call
# jax.distributed.initialize() before anything else.
#
# Usage:
#   launch/tpu_pod.sh TPU_NAME ZONE [PROJECT] -- python -m spider_jax.train \
#       --config=configs/multi42.py --config.bank_dir=/mnt/shared/bank42 \
#       --workdir=/mnt/shared/runs/multi42
# The workdir and bank must be a directory every worker sees (NFS/Filestore, or a gcsfuse
# mount of a bucket): labels, bank and JSON files are plain files, and orbax writes each
# checkpoint collectively (process 0 its metadata) into the same directory.
# Environment:
#   REPO_DIR   checkout path on the workers (default: ~/spider_jax)
#   SETUP      optional command run first on every worker (e.g. "pip install -e .[test]")
set -euo pipefail
if [[ $# -lt 3 ]]; then
  sed -n '2,20p' "$0"; exit 2
fi
TPU_NAME=$1; ZONE=$2; shift 2
PROJECT_FLAG=()
if [[ $1 != "--" ]]; then PROJECT_FLAG=(--project="$1"); shift; fi
[[ ${1:-} == "--" ]] && shift
REPO_DIR=${REPO_DIR:-'~/spider_jax'}
CMD=$(printf '%q ' "$@")
REMOTE="cd ${REPO_DIR} && ${SETUP:+${SETUP} && }SPIDER_JAX_DISTRIBUTED=1 ${CMD}"
echo "[tpu_pod] on all workers of ${TPU_NAME} (${ZONE}): ${REMOTE}" >&2
exec gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --zone="${ZONE}" "${PROJECT_FLAG[@]}" \
  --worker=all --command="${REMOTE}"
