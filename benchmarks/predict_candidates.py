"""Predict stage with a candidate subset (``predict.candidates``): cost per cycle against pool size.

For each pool size, in a generated repository, two cycles of ``python stages/predict.py`` (each a
child process, timed from start to exit, peak RSS from ``os.wait4``):

- ``cycle 1``: empty prediction cache, no labels: the candidates are a fresh stratified sample.
- ``cycle 2``: 50 of cycle 1's candidates labeled (batch 1) and 50 more queued but unlabeled (as
  data/queue.csv): the backlog, cycle 1's most undecided tiles and a new sample (another seed);
  tiles the champion already predicted come from the cache.

- ``re-run``: cycle 2 again: nothing to predict, so its time is what the pool size itself costs
  (imports, reading the manifest twice, choosing candidates, cache look-ups, writing outputs).

``ms/tile`` is cycle 1's cost per predicted tile with the re-run's fixed cost taken out, and
``whole pool (est.)`` what predicting every tile would cost at that rate: an extrapolation, not
a run (300,000 tiles would take hours here).

Tiles: a few synthetic 4K webcam frames from the demo generator, cut once by the tile stage's code;
the manifest repeats their tiles under new tile, frame and frame-hash ids (every row points at one
of the few real files, so a large pool costs no disk) with a ``condition`` column (day / dusk /
night, by frame) for ``rank.balance_by``. Timings on a shared machine are noisy: compare the
columns of one run.

Usage: ``python benchmarks/predict_candidates.py [--tiles 3000,30000,300000] [--candidates 1500]
[--weights models/base.pt] [--imgsz N] [--frames 4]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import acorn  # noqa: F401  (offline settings first)
from acorn import paths
from acorn.params import load_params

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from predict_floor import base_weights, run_child, source_tiles  # noqa: E402  (a sibling script)

CONDITIONS = np.array(["day", "dusk", "night"])


def make_pool(
    root: Path, source: pd.DataFrame, source_dir: Path, tiles: int, params: dict, weights: Path
) -> Path:
    """A repository whose manifest repeats ``source``'s rows up to ``tiles`` (whole frames)."""
    per_frame = int(source.groupby("frame_id").size().iloc[0])
    frames = -(-tiles // per_frame)
    copies = -(-frames // source["frame_id"].nunique())
    k = np.repeat(np.arange(copies), len(source))
    rows = pd.concat([source] * copies, ignore_index=True).iloc[: frames * per_frame]
    k = k[: len(rows)]
    prefix = pd.Series([f"c{i:06d}__" for i in k])
    rows = rows.assign(
        frame_id=prefix + rows["frame_id"],
        tile_id=prefix + rows["tile_id"],
        frame_sha1=[
            hashlib.sha1(f"{s}:{i}".encode()).hexdigest() for s, i in zip(rows["frame_sha1"], k, strict=True)
        ],
    )
    frame_number = pd.factorize(rows["frame_id"])[0]
    rows["condition"] = CONDITIONS[np.minimum(frame_number % 10, 2)]  # 80% day, 10% dusk, 10% night
    shutil.copytree(source_dir / "images", root / paths.TILES / "images")
    rows.to_parquet(root / paths.TILE_MANIFEST, index=False)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "models").mkdir()
    shutil.copyfile(weights, root / paths.CHAMPION)
    (root / paths.REGISTRY).write_text('{"champion_model_version": "bench-1"}\n')
    (root / paths.LABELS).mkdir(parents=True)
    return root


def run_stage(root: Path) -> dict:
    """One predict stage run: seconds, peak RSS (MiB), tiles predicted and served from the cache."""
    run = run_child([sys.executable, str(REPO / "stages" / "predict.py")], root)
    found = re.search(r"(\d+) tiles predicted, (\d+) from the cache", run["log"])
    return {"s": run["s"], "rss": run["rss"], "predicted": int(found[1]), "cached": int(found[2])}


def label_some(root: Path, budget: int) -> None:
    """After cycle 1: ``budget`` candidates labeled (batch 1), ``budget`` more queued, unlabeled."""
    pool = pd.read_parquet(root / paths.PRED_TILES, columns=["tile_id"])["tile_id"]
    pd.DataFrame({"tile_id": pool[:budget], "batch": 1}).to_csv(
        root / paths.LABELS / "manifest.csv", index=False
    )
    pd.DataFrame({"tile_id": pool[budget : 2 * budget]}).to_csv(root / paths.QUEUE, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", default="3000,30000,300000", help="pool sizes, comma-separated")
    parser.add_argument("--candidates", type=int, default=1500, help="predict.candidates (30x the budget)")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--imgsz", type=int, default=None, help="default: params.yaml model.imgsz")
    parser.add_argument("--frames", type=int, default=4, help="distinct synthetic frames to repeat")
    args = parser.parse_args()
    sizes = [int(n) for n in args.tiles.split(",")]

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    if args.imgsz is not None:
        params["model"]["imgsz"] = args.imgsz
    params["predict"].update({"candidates": args.candidates, "engine": "local"})
    params["rank"]["balance_by"] = "condition"
    p = load_params(REPO / "params.yaml").with_overrides({"model.imgsz": params["model"]["imgsz"]})
    budget = p.rank.budget
    load = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="acorn-bench-candidates-") as tmp:
        work = Path(tmp)
        weights = base_weights(args.weights, work)
        source_tiles(work / "source", args.frames, p)
        source = pd.read_parquet(work / "source" / "tiles" / "manifest.parquet")
        for n in sizes:
            root = make_pool(work / f"pool{n}", source, work / "source" / "tiles", n, params, weights)
            first = run_stage(root)
            label_some(root, budget)
            second = run_stage(root)
            again = run_stage(root)
            rows.append({"tiles": n, "first": first, "second": second, "again": again})
            shutil.rmtree(root)
    print(
        f"\npredict.candidates {args.candidates} (rank.budget {budget}), imgsz {p.model.imgsz}, "
        f"batch {p.predict.batch}, {weights.name}; {os.cpu_count()} CPUs, load average {load[0]:.1f} at "
        f"start, {os.getloadavg()[0]:.1f} at end\n"
    )
    header = (
        f"{'pool tiles':>10} | {'cycle 1 s':>9} | {'predicted':>9} | {'RSS MiB':>7} | {'cycle 2 s':>9} | "
        f"{'predicted':>9} | {'cached':>6} | {'RSS MiB':>7} | {'re-run s':>8} | {'ms/tile':>7} | "
        f"{'whole pool (est.)':>17}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        a, b, c = r["first"], r["second"], r["again"]
        per_tile = (a["s"] - c["s"]) / max(a["predicted"], 1)
        print(
            f"{r['tiles']:>10} | {a['s']:>9.1f} | {a['predicted']:>9} | {a['rss']:>7.0f} | {b['s']:>9.1f} | "
            f"{b['predicted']:>9} | {b['cached']:>6} | {b['rss']:>7.0f} | {c['s']:>8.1f} | "
            f"{1000 * per_tile:>7.1f} | {r['tiles'] * per_tile / 60:>13.0f} min"
        )


if __name__ == "__main__":
    main()
