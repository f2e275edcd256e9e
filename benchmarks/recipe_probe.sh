#!/usr/bin/env bash
# What the fine-tune recipe buys for one fixed set of labels, chosen on the validation set: the
# train stage itself (stages/train.py, the product's code) run once per variant in a scratch
# folder that links a finished repository's data (its data/labels, tiles, val and test sets,
# replay set and models/base.pt) and overrides train.epochs / train.freeze in a copy of its
# params.yaml. Resumable: a variant whose metrics/train.json exists is skipped.
#   usage: benchmarks/recipe_probe.sh SOURCE_REPO OUT_FOLDER [name:epochs:freeze ...]
#   e.g.   benchmarks/recipe_probe.sh /tmp/demo benchmarks/results/recipe_probe_150 e8_f10:8:10 e24_f0:24:0
# Then OUT_FOLDER/results.csv holds one row per variant (val_* choose; the test scores report).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
src=$(cd "$1" && pwd); out=$2; shift 2
[ $# -gt 0 ] || set -- e8_f10:8:10 e8_f0:8:0 e24_f10:24:10 e24_f0:24:0
mkdir -p "$out/runs"
for v in "$@"; do
  IFS=: read -r name epochs freeze <<<"$v"
  d="$out/runs/$name"
  [ -f "$d/metrics/train.json" ] && continue
  rm -rf "$d"; mkdir -p "$d/models"
  ln -s "$src/data" "$d/data"; ln -s "$src/models/base.pt" "$d/models/base.pt"
  sed -e "s/^  epochs: [0-9]*/  epochs: $epochs/" -e "s/^  freeze: [0-9]* /  freeze: $freeze /" \
    "$src/params.yaml" > "$d/params.yaml"
  (cd "$d" && git init -q && nice python "$here/stages/train.py" > train.log 2>&1)
done
python - "$out" <<'PY'
import json, re, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = []
for run in sorted((out / "runs").iterdir()):
    if not (run / "metrics/train.json").is_file():
        continue
    m = json.loads((run / "metrics/train.json").read_text())
    params = (run / "params.yaml").read_text()
    epochs = re.search(r"^  epochs: (\d+)", params, re.M).group(1)
    freeze = re.search(r"^  freeze: (\d+)", params, re.M).group(1)
    vals = [float(x) for x in re.findall(r"epoch \d+/\d+  val map50 ([0-9.]+)", (run / "train.log").read_text())]
    best = max(range(len(vals)), key=vals.__getitem__) + 1 if vals else 0
    rows.append([run.name, epochs, freeze, m["labeled_tiles"], best] + [m[k] for k in
                 ("val_map50", "val_map50_95", "map50", "map50_95", "precision", "recall")])
head = "variant,epochs,freeze,labeled_tiles,best_epoch,val_map50,val_map50_95,map50,map50_95,precision,recall"
(out / "results.csv").write_text(head + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
print((out / "results.csv").read_text())
PY
