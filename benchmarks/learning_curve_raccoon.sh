#!/usr/bin/env bash
# Learning curves on real photos (../shared/data/raccoon, 200 images, 20% held out as the test set):
# random vs entropy (max and mean), hybrid, disagreement, least_confidence:min and hybrid over a
# least_confidence:min shortlist; 10 images per cycle, 5 cycles, 5 paired seeds, 3 epochs at 224 px,
# fine-tuned each cycle from models/base.pt (the demo's squirrel detector: a domain gap, as in the
# real use); every other setting is params.yaml's, but `hybrid` is pinned to its entropy shortlist
# (the one these runs were made with). ~70 min on 2 busy cores for the first four, ~10 min more for
# the next two, ~4 min for the last; results (docs/strategies.md) in
# benchmarks/results/learning_curve_raccoon/. Every raccoon photo holds a raccoon, so hit rates are 1 and
# there are no empty test images for the false-alarm rate. Re-running resumes (a folder written by
# an older acorn is refused: delete it first); extra arguments override, e.g. --cycles 8,
# -S train.freeze=0, or --screen for the first batches' hit rates only.
set -euo pipefail
cd "$(dirname "$0")/.."
exec nice acorn simulate \
  --pool ../shared/data/raccoon --base models/base.pt \
  --strategies random,entropy:max,entropy:mean,hybrid,disagreement,least_confidence:min,hybrid/least_confidence:min \
  --seeds 5 --cycles 5 --budget 10 --epochs 3 --imgsz 224 -S rank.uncertainty=entropy \
  --out benchmarks/results/learning_curve_raccoon "$@"
