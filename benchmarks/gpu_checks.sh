#!/usr/bin/env bash
# The checks that need a GPU, as run for docs/scale.md and docs/strategies.md on one
# NVIDIA card (python3 with a CUDA torch and this repository's requirements importable; `acorn`
# on PATH). Logs go to $OUT (default gpu-results/). Four parts, so each fits a short lease:
#   train:  GPU tests (training with AutoBatch, predict), then the demo pool generated here and
#           `acorn simulate` on it with model.device cuda: one random cycle and the whole-pool
#           reference (the ceiling the demo's learning curves are read against), trained for up to
#           REF_EPOCHS (100) and stopped after REF_PATIENCE (10) epochs without a better validation
#           score: reference.json says whether it converged (30 epochs took 2 min on an H100).
#           Two references side by side: the demo's recipe (simulate-gpu/) and the recipe 500 labels
#           did best with, 24 epochs and the backbone not frozen (simulate-gpu-unfrozen/)
#   refit:  the demo pool made here, then benchmarks/refit.py on the ten-cycle runs' 500 labels
#           (hybrid and random, seed 4) with the unfrozen recipe at imgsz 320 and 640, on cuda
#   curves: the same GPU tests while the demo pool is generated, then the paired demo-pool curves
#           (benchmarks/learning_curve_demo.sh's recipe: STRATEGIES "random hybrid", SEEDS 5, CYCLES 2 of
#           50, the demo's fine-tune) with one process per strategy and seed (--first-seed, then
#           --merge), beside the whole-pool reference (up to REF_EPOCHS, REF_PATIENCE); packed in $OUT/curves.tar.gz.
#           On an H100 the defaults took 3.5 min (~2.5 min per hybrid process of 2 cycles)
#   ray:    the Ray engine's GPU test, then benchmarks/ray_predict.py measured on the card
set -uo pipefail
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu-$1.txt"
nproc | tee -a "$OUT/gpu-$1.txt"

gpu_tests() {
  timeout 200 python3 -m pytest -q -rs -p no:cacheprovider tests/test_gpu.py \
    tests/test_predict.py::test_predict_runs_on_the_gpu_with_a_gpu_sized_batch > "$OUT/pytest-train.log" 2>&1
}

demo_pool() {  # the demo's pool and test set, made here: the same frames as `make demo` makes
  local start=$(date +%s)
  sed -i 's/^  workers: 2 /  workers: 0 /' params.yaml  # tile on every core
  timeout 150 acorn demo-data 2>&1 | tail -5 | tee "$OUT/demo-data.log"
  timeout 120 python3 stages/tile.py 2>&1 | tail -3 | tee -a "$OUT/demo-data.log"
  echo "demo data + tiles: $(($(date +%s) - start)) s" | tee -a "$OUT/demo-data.log"
  python3 -c "import pandas as pd, hashlib; m = pd.read_parquet('data/tiles/manifest.parquet');
print(len(m), 'tiles;', 'frames sha1 digest', hashlib.sha1(''.join(sorted(set(m.frame_sha1))).encode()).hexdigest())" |
    tee -a "$OUT/demo-data.log"
}

case "$1" in
train)
  [ -n "${SKIP_TESTS:-}" ] || { gpu_tests; cat "$OUT/pytest-train.log"; }
  demo_pool
  reference() {  # <out folder> [-S ...]: one random cycle, then the whole-pool reference
    local out=$1
    shift
    timeout "${SIM_TIMEOUT:-480}" acorn simulate --pool data/tiles --strategies random --seeds 1 --cycles 1 \
      --full-epochs "${REF_EPOCHS:-100}" --full-patience "${REF_PATIENCE:-10}" -S model.device=cuda \
      -S predict.batch=128 -S train.batch=64 -S train.workers=4 "$@" --out "$OUT/$out" 2>&1 | tr '\r' '\n' |
      grep -v "^simulate\|it/s\]$" > "$OUT/$out.log"
  }
  reference simulate-gpu &
  reference simulate-gpu-unfrozen -S train.epochs=24 -S train.freeze=0 &
  wait
  tail -n 30 "$OUT"/simulate-gpu*.log
  ;;
refit)
  demo_pool
  unfrozen=model.device=cuda,train.epochs=24,train.freeze=0
  for s in hybrid random; do
    timeout "${REFIT_TIMEOUT:-400}" python3 benchmarks/refit.py benchmarks/results/learning_curve_demo_long \
      --strategy $s --seed 4 --cycle 10 --variant $unfrozen --variant $unfrozen,model.imgsz=640 \
      --out "$OUT/refit-$s" > "$OUT/refit-$s.log" 2>&1 &
  done
  wait
  tail -n 8 "$OUT"/refit-*.log
  ;;
curves)
  [ -n "${SKIP_TESTS:-}" ] || gpu_tests &
  demo_pool
  wait
  cat "$OUT/pytest-train.log" 2>/dev/null
  runs=/tmp/curves-runs
  mkdir -p $runs
  gpu=(-S model.device=cuda -S model.threads=2)
  cycles=${CYCLES:-2} strategies=(${STRATEGIES:-random hybrid})
  recipe=(--pool data/tiles --cycles $cycles --full-epochs 0 -S predict.batch=64 "${gpu[@]}")
  parts=()
  for seed in $(seq 0 $((${SEEDS:-5} - 1))); do
    for strategy in "${strategies[@]}"; do
      part=$runs/${strategy//\//+}-s$seed  # hybrid/least_confidence:min: no folder separator
      parts+=(--merge "$part")
      timeout "${CURVES_TIMEOUT:-300}" acorn simulate "${recipe[@]}" --strategies $strategy --seeds 1 \
        --first-seed $seed --out "$part" > "$part.log" 2>&1 &
    done
  done
  timeout "${CURVES_TIMEOUT:-300}" acorn simulate --pool data/tiles --strategies random --seeds 1 --cycles 1 \
    --full-epochs "${REF_EPOCHS:-35}" --full-patience "${REF_PATIENCE:-10}" "${gpu[@]}" -S predict.batch=128 \
    -S train.batch=64 -S train.workers=8 \
    --out $runs/reference > $runs/reference.log 2>&1 &
  wait
  for log in $runs/*.log; do echo "== $log"; tr '\r' '\n' < "$log" | grep -v "it/s\]$\|cycle/s" | tail -4; done
  grep -h "epoch" $runs/reference.log | tr '\r' '\n' | grep "INFO" | tee "$OUT/reference-epochs.log"
  finished() {  # every part ran all its cycles: merging then trains nothing
    python3 -c "import pandas as pd, sys; sys.exit(any(pd.read_csv(f'{p}/curves.csv')['cycle'].max() != $cycles
for p in sys.argv[1:]))" $(printf '%s\n' "${parts[@]}" | grep -v -- --merge)
  }
  if finished 2>/dev/null; then
    timeout 120 acorn simulate "${recipe[@]}" --strategies "$(IFS=,; echo "${strategies[*]}")" \
      --seeds "${SEEDS:-5}" "${parts[@]}" \
      --out $runs/merged 2>&1 | tr '\r' '\n' | grep -v "it/s\]$\|cycle/s"
  else
    echo "not every run finished its cycles: merge the parts elsewhere (acorn simulate --merge)"
  fi
  tar -czf "$OUT/curves.tar.gz" --exclude=models --exclude=work -C $runs .
  ;;
ray)
  [ -n "${SKIP_TESTS:-}" ] || timeout 200 python3 -m pytest -x -q -rs -p no:cacheprovider \
    tests/test_ray_engine.py::test_ray_actors_predict_on_the_gpu_as_the_local_engine_does 2>&1 |
    tee "$OUT/pytest-ray.log"
  timeout "${BENCH_TIMEOUT:-300}" python3 benchmarks/ray_predict.py --tiles "${TILES:-8000}" --device cuda \
    --batch 128 --actors "${ACTORS:-1,4,12}" 2>&1 | grep -v "it/s\]$" | tee "$OUT/ray-predict.log"
  ;;
esac
