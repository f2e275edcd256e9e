#!/usr/bin/env bash
# Learning curves on real photos (../shared/data/raccoon, 200 images, 20% held out as the test set):
# random vs least-confidence vs hybrid, 10 images per cycle, 5 cycles, 2 seeds, 3 epochs at 224 px,
# fine-tuned each cycle from models/base.pt (the demo's squirrel detector: a domain gap, as in the
# real use). Small on purpose (~5 CPU-minutes): it proves the command end to end; the
# numbers mean little at this budget. Re-running resumes; extra arguments override, e.g. --cycles 8.
set -euo pipefail
cd "$(dirname "$0")/.."
exec nice acorn simulate \
  --pool ../shared/data/raccoon --base models/base.pt \
  --strategies random,least_confidence,hybrid --seeds 2 --cycles 5 --budget 10 --epochs 3 --imgsz 224 \
  --out benchmarks/learning_curve_raccoon "$@"
