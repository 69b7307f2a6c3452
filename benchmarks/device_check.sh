#!/usr/bin/env bash
# Accelerator check (about 3-4 minutes on one GPU): smoke training, metric throughput and
# scoring throughput on whatever accelerator JAX finds, each step timed, figures printed.
#
#   benchmarks/device_check.sh                      # from the repo root
#   DEVICE_CHECK_QUICK=1 benchmarks/device_check.sh # tiny sizes: checks the script starts (CPU)
#
# Needs a python3 with jax (CUDA or TPU build), flax, optax, orbax-checkpoint, chex, absl,
# tqdm, matplotlib, numpy, scipy, plus ml_collections and tensorboardX (install those first,
# e.g. `python3 -m pip install --no-index --find-links=WHEELS ml_collections tensorboardX`;
# the repo itself need not be installed: everything runs from the repo root).
# Environment: PYTHON (default python3), OUT (log directory, default /tmp; the log is
# $OUT/device_check.log), JAX_PLATFORMS (default: the platform JAX picks, e.g. cuda),
# DEVICE_CHECK_QUICK=1 (tiny sizes).
# Steps: (1) smoke training (configs/smoke.py: synthetic bank, labels, 400 steps, eval),
# then the spider_jax.score CLI on its scorer; (2) benchmarks/metrics_speed.py --quick;
# (3) the scoring kernels of benchmarks/score_speed.py on the accelerator (its k = 0 fast
# path vs model.apply, a batch sweep, end-to-end score_tasks to CSV, Parquet and --top=5);
# its 1-vs-8 forced host device comparison is CPU-only by design and is not run here;
# (4) the ground-truth probe (jax backend) at N=500, D=1280. Its figures are the GPU
# column of docs/PERFORMANCE.md (benchmarks/run_all.py writes the CPU one).
# Each step has its own time limit; a failed step is reported and the others still run;
# the exit status is non-zero when any step failed.
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
QUICK=${DEVICE_CHECK_QUICK:-0}
LOG_DIR=${OUT:-/tmp}
mkdir -p "$LOG_DIR"
LOG="$LOG_DIR/device_check.log"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/device_check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-1}
# Several steps run one after another: take GPU memory as needed, not 75% up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}

echo "== device_check $(date -u +%FT%TZ) quick=$QUICK log=$LOG"
echo "== nvidia-smi -L"
nvidia-smi -L 2>/dev/null || echo "(no nvidia-smi)"
"$PY" - <<'PY'
import importlib.util, sys
missing = [m for m in ("jax", "flax", "optax", "orbax.checkpoint", "chex", "absl", "tqdm",
                       "matplotlib", "ml_collections", "tensorboardX", "scipy")
           if importlib.util.find_spec(m.split(".")[0]) is None]
if missing:
    sys.exit(f"device_check: missing python packages {missing} (see the header of this script)")
PY
if [[ -z ${JAX_PLATFORMS:-} ]]; then
  platform=$("$PY" -c 'import jax; print(jax.devices()[0].platform)')
  # metrics_speed.py defaults JAX_PLATFORMS to cpu: name the accelerator explicitly.
  case $platform in gpu) JAX_PLATFORMS=cuda ;; *) JAX_PLATFORMS=$platform ;; esac
fi
export JAX_PLATFORMS
echo "== JAX_PLATFORMS=$JAX_PLATFORMS"
"$PY" -c 'import jax; print("jax", jax.__version__, "| devices:", jax.devices())'

FAILED=()
SUMMARY=()
step() {   # step NAME LIMIT_SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo
  echo "== [$name] $*"
  local t0=$SECONDS rc=0
  timeout --kill-after=10 "$limit" "$@" || rc=$?
  local dt=$((SECONDS - t0))
  if [[ $rc -eq 0 ]]; then
    SUMMARY+=("$name: ok in ${dt}s")
  else
    SUMMARY+=("$name: FAILED (exit $rc$([[ $rc -eq 124 ]] && echo ", over ${limit}s")) after ${dt}s")
    FAILED+=("$name")
  fi
  echo "== [$name] exit $rc after ${dt}s"
}

# (1) smoke training, then the scoring CLI on the scorer it trained.
SMOKE=(--config=configs/smoke.py --workdir="$WORK/smoke")
if [[ $QUICK == 1 ]]; then
  SMOKE+=(--config.synthetic.num_models=3 --config.synthetic.num_datasets=8
          --config.synthetic.num_downstream=2 --config.data.num_train_tasks=16
          --config.label.chunk_size=8 --config.train.num_steps=4 --config.train.log_every=2
          --config.eval.rerank_k="(0,)")
fi
step smoke_train 180 "$PY" -m spider_jax.train "${SMOKE[@]}"
if [[ -d $WORK/smoke/image/checkpoints ]]; then
  "$PY" - "$WORK/tasks" "$QUICK" <<'PY'
import os, sys
import numpy as np
root, quick = sys.argv[1], sys.argv[2] == "1"
os.makedirs(root, exist_ok=True)
n = 512 if quick else 20000                        # smoke: psi_dim 32, max_classes 12
rng = np.random.default_rng(0)
np.save(os.path.join(root, "psi_centres.npy"), rng.normal(size=(n, 10, 32)).astype(np.float16))
PY
  step score_cli 60 "$PY" -m spider_jax.score --workdir="$WORK/smoke" --modality=image \
    --tasks="$WORK/tasks" --out="$WORK/scores.csv"
fi

# (2) batched metrics vs per-task NumPy (the NumPy side runs on one CPU core).
step metrics_speed 120 "$PY" benchmarks/metrics_speed.py --quick

# (3) scoring kernels of score_speed.py on the accelerator.
step score_speed 120 "$PY" - "$QUICK" <<'PY'
import os, sys, time
quick = sys.argv[1] == "1"
sys.argv = [sys.argv[0], "--all_cores"]   # score_speed: no CPU pinning of this process
sys.path.insert(0, "benchmarks")
import score_speed as sp                  # noqa: E402  (sets its single-thread CPU flags)
import jax                                # noqa: E402
import jax.numpy as jnp                   # noqa: E402

print(f"jax {jax.__version__}, devices {jax.devices()}")
reps = 2 if quick else 5
peak = sp.matmul_peak(n=512 if quick else 4096, reps=reps)
print(f"f32 matmul ({512 if quick else 4096}^3): {peak:.0f} GFLOP/s")
ranker = sp.build()
for c, batch in ((10, 32 if quick else 1024), (100, 8 if quick else 256)):
    r = sp.bench_k0(ranker, c, batch, reps, peak)
    print(f"k=0, {sp.M} PTMs, d={sp.D}, C={c}, batch {batch}: {r['tasks_per_s']:.0f} tasks/s "
          f"(model.apply {r['apply_tasks_per_s']:.0f}, fast path x{r['speedup_vs_apply']:.1f}, "
          f"max |diff| {r['max_abs_diff_vs_apply']:.1e}), {r['gflops']:.0f} GFLOP/s = "
          f"{100 * r['fraction_of_peak']:.0f}% of the matmul rate; "
          f"{r['seconds_42zoo_per_task'] * 1e6:.1f} us per task "
          f"(paper Table 8: {sp.PAPER_K0_SECONDS} s)")
fn, params = ranker.batch_scorer()
fast = jax.jit(fn)
for c, sizes in ((10, (32, 256) if quick else (256, 1024, 4096)),
                 (100, (8,) if quick else (64, 256, 1024))):
    line = []
    for b in sizes:
        centres = jnp.zeros((b, c, sp.PSI), jnp.float32) + 0.1
        mask = jnp.ones((b, c), bool)
        t = sp._best_time(lambda: fast(params, centres, mask).block_until_ready(), reps)
        line.append(f"batch {b}: {b / t:.0f}")
    print(f"batch-size sweep, C={c}: " + ", ".join(line) + " tasks/s")
for name, top in (("scores.csv", None), ("scores.parquet", None), ("scores.csv", 5)):
    e2e = sp.end_to_end(ranker, 1024 if quick else 131072, out_name=name, top=top)
    print(f"end to end (score_tasks: mmap float16 tasks -> sharded step -> parts -> {name}"
          f"{f', --top={top}' if top else ''}), {e2e['tasks']} tasks of C=10: {e2e['seconds']:.2f} s "
          f"= {e2e['tasks_per_s']:.0f} tasks/s (compile {e2e['compile_cpu_s']:.1f} CPU-s)")
PY

# (4) ground truth (jitted probe) on the accelerator, N=500, D=1280, the CLI's protocol.
step groundtruth_speed 120 "$PY" - "$QUICK" <<'PY'
import sys, time
sys.path.insert(0, ".")
from benchmarks.groundtruth_speed import make_pairs
from spider_jax import groundtruth
quick = sys.argv[1] == "1"
pairs = make_pairs(8 if quick else 64, n=120 if quick else 500, d=64 if quick else 1280)
chunk = 8 if quick else 32
groundtruth.linear_probe(pairs[:chunk], backend="jax", chunk=chunk)   # compile
t = time.perf_counter()
groundtruth.linear_probe(pairs, backend="jax", chunk=chunk)
print(f"ground truth, jitted probe on the device, chunk {chunk}: "
      f"{len(pairs) / (time.perf_counter() - t):.1f} (task, PTM) pairs/s")
PY

echo
echo "== summary ($(date -u +%FT%TZ))"
printf '  %s\n' "${SUMMARY[@]}"
if [[ ${#FAILED[@]} -gt 0 ]]; then
  echo "== FAILED: ${FAILED[*]} (log: $LOG)"
  exit 1
fi
echo "== all steps passed (log: $LOG)"
