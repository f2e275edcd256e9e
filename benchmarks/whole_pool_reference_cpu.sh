#!/usr/bin/env bash
# The whole-pool reference with the recipe 500 labels did best with (train.epochs 24 for the
# random cycle, backbone not frozen), trained until its validation map50 has not improved for 10
# epochs (up to 100): the yardstick of "95% of the whole-pool model" (docs/label-efficiency.md,
# "The flattening is the recipe"). On the 2-core CPU 3.7 min an epoch with params.yaml's one torch thread, 2.4 min
# with `-S model.threads=2` when nothing else runs (session 9; 6.5 min shared with other work), so
# hours: it resumes from its last epoch.
# The folder's checkpoint (work/reference/train/weights: last.pt with the optimizer state, best.pt
# without it) is committed at the end of a session that could not finish it, so that the next
# session goes on from there: run this script again (in this repository; it makes the demo pool
# first if data/tiles is missing). This folder's results are the CPU's (config.json: model.device
# cpu), so a GPU does not continue it; there `SKIP_TESTS=1 benchmarks/gpu_checks.sh train` trains
# the unfrozen reference from the start (batch 64), in its own folder, in minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f data/tiles/manifest.parquet ] || { acorn demo-data && python stages/tile.py; }
exec nice acorn simulate --pool data/tiles --strategies random --seeds 1 --cycles 1 \
  --full-epochs 100 --full-patience 10 -S train.epochs=24 -S train.freeze=0 \
  --out benchmarks/results/whole_pool_reference_unfrozen_cpu "$@"
