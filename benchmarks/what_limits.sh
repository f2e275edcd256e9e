#!/usr/bin/env bash
# What limits the demo's gain (docs/label-efficiency.md, "What limits the gain"): after `make demo`, from the commit
# of the last cycle, the train stage re-run with one change at a time as a DVC experiment; then the
# base model alone at imgsz 320 and 640. One seed each; ~1.3 h on 2 cores (the 640 runs are ~4x).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .acorn/work
for change in train.epochs=24 train.replay_images=0 train.freeze=0 model.imgsz=640 train.lr0=0.002 train.lr0=0.05; do
  git checkout -q -- params.yaml dvc.lock metrics
  nice dvc exp run train -S "$change" -n "limits-${change//[.=]/-}"
done
git checkout -q -- params.yaml dvc.lock metrics
dvc exp show --no-pager --md --only-changed --keep metrics/train.json
python - <<'PY'
import tempfile
from pathlib import Path

from acorn import training
from acorn.params import load_params

p = load_params()
with tempfile.TemporaryDirectory(dir=".acorn/work") as tmp:
    test = training.folder_dataset(Path(p.test.data), p.classes, Path(tmp) / "test")
    for imgsz in (320, 640):
        m = training.evaluate(p.model.base, test, imgsz, Path(tmp) / f"v{imgsz}")
        print(f"base model, no labels, imgsz {imgsz}: map50 {m.map50:.3f} precision {m.precision:.3f} recall {m.recall:.3f}")
PY
