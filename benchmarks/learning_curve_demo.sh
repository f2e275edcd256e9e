#!/usr/bin/env bash
# Paired learning curves on the demo pool, in this repository after `make demo` (it reads
# data/tiles, data/testset, data/replay and models/base.pt): random vs hybrid (the default),
# disagreement, entropy:max, least_confidence:min and hybrid over a least_confidence:min shortlist,
# 50 tiles per cycle, 2 cycles, 5 paired seeds, the demo's fine-tune (params.yaml: 8 epochs, imgsz
# 320, 100 replay close-ups; `hybrid` pinned to the entropy shortlist these runs were made with);
# then the candidate
# shortcut's cost: hybrid choosing among 1,500 candidates per cycle (predict.candidates), same
# seeds. No whole-pool reference (--full-epochs 0: on 2 cores it costs more than the curves; the
# one in docs/label-efficiency.md was trained on a GPU). On one core of a 2-core machine running
# two of these, ~5 min a cycle: ~50 min per seed for the first five, ~10 for the sixth and for the
# shortcut. Results (docs/strategies.md, docs/scale.md) in benchmarks/results/learning_curve_demo/
# and benchmarks/results/learning_curve_demo_candidates/; both
# are resumable and hold what has run so far: re-running continues them (extra arguments override,
# e.g. --seeds 2 to summarise the first two seeds, -S model.device=cuda on a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
nice acorn simulate --pool data/tiles \
  --strategies random,hybrid,disagreement,entropy:max,least_confidence:min,hybrid/least_confidence:min \
  -S rank.uncertainty=entropy --seeds 5 --cycles 2 --full-epochs 0 --out benchmarks/results/learning_curve_demo "$@"
exec nice acorn simulate --pool data/tiles --strategies hybrid -S predict.candidates=1500 -S rank.uncertainty=entropy --seeds 5 --cycles 2 \
  --full-epochs 0 --out benchmarks/results/learning_curve_demo_candidates "$@"
