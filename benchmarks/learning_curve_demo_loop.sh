#!/usr/bin/env bash
# The headline of docs/label-efficiency.md, on the product's own loop: hybrid (the default) against
# uniform random (rank.balance_by off), 10 paired seeds, 10 cycles of 50 labels, each fine-tune
# validated on the fixed data/valset (best epoch kept), each seed drawing its own 90% share of the
# pool's frames (--pool-share), so seeds vary what a strategy can choose from, not only training
# noise. Run it in this repository after `make demo` (data/tiles, data/testset, data/valset,
# data/replay, models/base.pt). Two halves of 5 seeds run side by side, one torch thread each; each
# is resumable (re-running this script continues both); when both have ended, the merge adds the
# whole-pool reference with the same recipe (100 epochs, patience 10; also resumable).
# Cost measured for one cycle on a shared 2-core CPU: ~8 min a random cycle, ~10 min a hybrid one,
# ~40 CPU-hours in all. On a GPU add -S model.device=auto -S train.batch=-1 -S predict.batch=128
# and use other --out folders (the device is part of a folder's settings).
# Then: python benchmarks/paired.py benchmarks/results/learning_curve_demo_loop random --metric val_map50  (to choose)
#       python benchmarks/paired.py benchmarks/results/learning_curve_demo_loop random                      (to report)
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/learning_curve_demo_loop
common=(--pool data/tiles --strategies random,hybrid --cycles 10 --pool-share 0.9)
for first in 0 5; do
  nice acorn simulate "${common[@]}" --seeds 5 --first-seed "$first" --full-epochs 0 --out "${out}_s$first" "$@" \
    > "${out}_s$first.log" 2>&1 &
done
wait
exec nice acorn simulate "${common[@]}" --seeds 10 --full-epochs 100 --full-patience 10 --out "$out" \
  --merge "${out}_s0" --merge "${out}_s5" "$@"
