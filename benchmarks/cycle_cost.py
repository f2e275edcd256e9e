"""One active-learning cycle's cost against pool size, every stage beside its floor, in one run.

For each pool size, each stage is run as ``python stages/<stage>.py`` in a generated repository
(a child process, timed from start to exit with imports and model loading, its peak RSS from
``os.wait4``), and beside it its floor, measured in the same run on the same inputs:

- ``tile``: ``--new-frames`` new 4K frames arrive in a pool that already holds the others' tiles;
  the stage hashes every frame, finds the new ones and tiles only those. Floor: decoding the
  same new frames and encoding their tiles (PIL, same grid and JPEG quality, as many processes as
  ``tile.workers``), nothing written.
- ``export-labels`` -> ``train`` -> ``register`` -> ``predict`` -> ``rank``: one cycle with the
  oracle backend, from the labels of one batch (``rank.budget`` tiles labeled by the oracle) to
  the next queue. ``train`` fine-tunes the base model for ``--epochs`` on the labeled tiles
  (no replay set) and scores a 48-tile test set: kept tiny, since it does not read the pool.
  ``predict`` uses ``predict.candidates`` with an empty prediction cache (the worst case: a new
  champion, or a new sample). Floors: ``predict``, a bare ultralytics loop over the same tile
  files with the same weights and settings (benchmarks/predict_floor.py's); ``rank``, reading its
  inputs (the three prediction tables and the labels manifest) in a fresh process.

Before the timed cycle each repository is brought to where a cycle starts: cycle 0 run
(export-labels, train scoring the base model, register making it champion), then one batch of
``rank.budget`` tiles, drawn as the candidate sample is (acorn.selection.candidates.stratified_order),
queued to the oracle and labeled. DVC itself is not run: its own cost at 300,000 tiles
(``dvc status``, the hash of data/tiles) is another measurement.

Pools: a few synthetic 4K webcam frames from the demo generator, tiled once by the tile stage's
code, repeated under new frame and tile ids up to each size with hard links (no disk cost):
benchmarks/predict_floor.py's ``make_pool``, with distinct frame hashes so the prediction cache
cannot share results between copies, the oracle's truth files linked alongside and a
``condition`` column (day / dusk / night, 80 / 10 / 10 % of frames) for ``rank.balance_by``. The
tile stage's pool instead keeps the frames' real hashes (it hashes data/raw, whose frames are
hard links of the few real ones) so that it finds only the new frames new.

Usage: ``python benchmarks/cycle_cost.py [--tiles 3000,30000] [--candidates 1500] [--epochs 1]
[--imgsz 320] [--new-frames 12] [--frames 4] [--weights models/base.pt]``; the target scale is
``--tiles 3000,30000,300000``. The cycle's cost hardly depends on the pool, so each size costs
about the same: here, on 2 cores under a load average of ~5, the defaults took 19 minutes (about
a third of it the predict floor) and 300,000 alone 17 (with ~625,000 hard links to make).
Timings on a shared machine are noisy (+-40% between sizes of one run): compare within a row.
"""

from __future__ import annotations

import argparse
import json
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
from predict_floor import FLOOR, base_weights, make_pool, run_child, source_tiles  # noqa: E402

CONDITIONS = np.array(["day", "dusk", "night"])
CYCLE = ("export-labels", "train", "register", "predict", "rank")
SCRIPTS = {name: REPO / "stages" / f"{name.replace('-', '_')}.py" for name in ("tile", *CYCLE)}

TILE_FLOOR = """
import json, sys
from concurrent.futures import ProcessPoolExecutor
from PIL import Image
from acorn.data.tiling import TileGrid, encode_jpeg

cfg = json.loads(sys.argv[1])
grid = TileGrid(cfg["rows"], cfg["cols"], cfg["overlap"])

def frame(path):
    with Image.open(path) as img:
        image = img.convert("RGB")
    windows = grid.windows(*image.size)[["x0", "y0", "x1", "y1"]].itertuples(index=False)
    return sum(len(encode_jpeg(image.crop(tuple(map(int, w))), cfg["quality"])) for w in windows)

if __name__ == "__main__":
    with ProcessPoolExecutor(max_workers=cfg["workers"]) as pool:
        list(pool.map(frame, cfg["frames"], chunksize=1))
"""

RANK_FLOOR = """
import pandas as pd
for table in ("boxes", "tiles", "labeled"):
    pd.read_parquet(f"data/predictions/{table}.parquet")
pd.read_csv("data/labels/manifest.csv")
"""


def child(cmd: list[str], cwd: Path) -> dict:
    """One child process (predict_floor.run_child): seconds, peak RSS (MiB), its stderr log."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the repo's sqlite
    return run_child(cmd, cwd, env)


def stage(name: str, root: Path) -> dict:
    return child([sys.executable, str(SCRIPTS[name])], root)


def link_tree(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        os.link(f, dst / f.name)


def make_test_set(work: Path, p) -> Path:
    """Two more synthetic frames, tiled: the fixed test set train scores (48 tiles)."""
    from acorn.data.tiling import TileGrid, tile_dataset
    from acorn.demo.synth import make_webcam_set

    make_webcam_set(work / "raw", 2, p.demo.width, p.demo.height, seed=p.demo.seed + 10_000, prefix="test")
    tile_dataset(work / "raw", work / "tiles", TileGrid(p.tile.rows, p.tile.cols, p.tile.overlap), p.classes)
    test = work / "testset"
    test.mkdir()
    shutil.move(work / "tiles" / "images", test / "images")
    shutil.move(work / "tiles" / "truth", test / "labels")
    (test / "classes.txt").write_text("\n".join(p.classes) + "\n")
    return test


# -- the tile stage: new frames arriving in a pool of n tiles -----------------------------------


def make_raw_pool(root: Path, source: Path, manifest: pd.DataFrame, tiles: int, params: dict) -> int:
    """data/raw with whole frames up to ``tiles`` tiles (hard links of the few source frames, real
    hashes) and data/tiles as the tile stage left it for them; returns the number of frames."""
    per_frame = int(manifest.groupby("frame_id").size().iloc[0])
    frames = sorted(manifest["frame_id"].unique())
    n_frames = -(-tiles // per_frame)
    raw, out = root / paths.RAW, root / paths.TILES
    for folder in (raw / "images", raw / "labels", out / "images", out / "truth"):
        folder.mkdir(parents=True)
    shutil.copyfile(source / "raw" / "classes.txt", raw / "classes.txt")
    by_frame = {f: rows for f, rows in manifest.groupby("frame_id")}
    meta = pd.read_csv(source / "raw" / "metadata.csv", dtype=str, keep_default_na=False).set_index(
        "frame_id"
    )
    parts, meta_rows = [], []
    for i in range(n_frames):
        fid = frames[i % len(frames)]
        new = f"c{i // len(frames):05d}__{fid}"
        os.link(source / "raw" / "images" / f"{fid}.jpg", raw / "images" / f"{new}.jpg")
        os.link(source / "raw" / "labels" / f"{fid}.txt", raw / "labels" / f"{new}.txt")
        rows = by_frame[fid].copy()
        rows["frame_id"] = new
        rows["tile_id"] = [new + t[len(fid) :] for t in rows["tile_id"]]
        for old, tid in zip(by_frame[fid]["tile_id"], rows["tile_id"], strict=True):
            os.link(source / "tiles" / "images" / f"{old}.jpg", out / "images" / f"{tid}.jpg")
            os.link(source / "tiles" / "truth" / f"{old}.txt", out / "truth" / f"{tid}.txt")
        rows["image"] = [f"images/{t}.jpg" for t in rows["tile_id"]]
        parts.append(rows)
        meta_rows.append({"frame_id": new, **meta.loc[fid].to_dict()})
    pd.concat(parts, ignore_index=True).sort_values(["frame_id", "row", "col"], ignore_index=True).to_parquet(
        out / "manifest.parquet", index=False
    )
    pd.DataFrame(meta_rows).to_csv(raw / "metadata.csv", index=False)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return n_frames


def add_frames(root: Path, new: Path) -> list[Path]:
    """The new frames (and their labels and metadata) arrive in data/raw."""
    raw = root / paths.RAW
    added = []
    for image in sorted((new / "images").glob("*.jpg")):
        os.link(image, raw / "images" / image.name)
        os.link(new / "labels" / f"{image.stem}.txt", raw / "labels" / f"{image.stem}.txt")
        added.append(raw / "images" / image.name)
    meta = pd.read_csv(raw / "metadata.csv", dtype=str, keep_default_na=False)
    extra = pd.read_csv(new / "metadata.csv", dtype=str, keep_default_na=False)
    pd.concat([meta, extra], ignore_index=True).to_csv(raw / "metadata.csv", index=False)
    return added


def measure_tile(
    work: Path, n: int, source: Path, manifest: pd.DataFrame, new: Path, params: dict, p
) -> dict:
    root = work / f"tile{n}"
    frames = make_raw_pool(root, source, manifest, n, params)
    before = len(pd.read_parquet(root / paths.TILE_MANIFEST, columns=["tile_id"]))
    added = add_frames(root, new)
    run = stage("tile", root)
    after = len(pd.read_parquet(root / paths.TILE_MANIFEST, columns=["tile_id"]))
    if after - before != len(added) * len(manifest) // manifest["frame_id"].nunique():
        raise SystemExit(f"tile stage in {root}: {before} -> {after} tiles after {len(added)} new frames")
    cfg = {
        "rows": p.tile.rows,
        "cols": p.tile.cols,
        "overlap": p.tile.overlap,
        "quality": p.tile.jpeg_quality,
        "workers": p.tile.workers or os.cpu_count(),
        "frames": [str(f) for f in added],
    }
    floor = child([sys.executable, "-c", TILE_FLOOR, json.dumps(cfg)], root)
    shutil.rmtree(root)
    return {
        "stage": "tile",
        "run": run,
        "floor": floor,
        "note": f"{len(added)} new frames ({after - before} tiles) into {frames} frames",
    }


# -- one cycle: export-labels -> train -> register -> predict -> rank ------------------------------


def conditioned_pool(
    root: Path, n: int, source: Path, manifest: pd.DataFrame, params: dict, weights: Path
) -> tuple[Path, pd.DataFrame]:
    """predict_floor's pool with the base model, no champion (register makes one) and a
    ``condition`` column for ``rank.balance_by``; returns the root and its manifest."""
    root = make_pool(root, manifest, source / "tiles", n, params, weights)
    for stale in (paths.CHAMPION, paths.REGISTRY):  # make_pool fakes a champion
        (root / stale).unlink()
    shutil.copyfile(weights, root / "models" / "base.pt")
    pool = pd.read_parquet(root / paths.TILE_MANIFEST)
    frame_number = pd.factorize(pool["frame_id"])[0]
    pool["condition"] = CONDITIONS[np.minimum(frame_number % 10, 2)]  # 80% day, 10% dusk, 10% night
    pool.to_parquet(root / paths.TILE_MANIFEST, index=False)
    return root, pool


def make_cycle_pool(
    work: Path, n: int, source: Path, manifest: pd.DataFrame, test: Path, params: dict, weights: Path
) -> Path:
    """predict_floor's pool (distinct frame hashes) plus what a cycle needs: truth files for the
    oracle, a condition column, the test set and the base model; no champion yet."""
    root, pool = conditioned_pool(work / f"pool{n}", n, source, manifest, params, weights)
    truth = root / paths.TRUTH
    truth.mkdir()
    for tid in pool["tile_id"]:
        os.link(source / "tiles" / "truth" / f"{tid.split('__', 1)[1]}.txt", truth / f"{tid}.txt")
    link_tree(test / "images", root / "data" / "testset" / "images")
    link_tree(test / "labels", root / "data" / "testset" / "labels")
    shutil.copyfile(test / "classes.txt", root / "data" / "testset" / "classes.txt")
    return root


def first_batch(root: Path, p) -> None:
    """Cycle 0 (base scored and registered as champion), then one batch labeled by the oracle: where
    a cycle starts. The batch is a seeded stratified draw, as the candidate sample is."""
    from acorn.labeling.backends import oracle_backend
    from acorn.selection.candidates import stratified_order

    for name in ("export-labels", "train", "register"):
        stage(name, root)
    pool = pd.read_parquet(root / paths.TILE_MANIFEST)
    picked = stratified_order(pool, p.rank.seed, "condition")[: p.rank.budget]
    rows = pool.set_index("tile_id").loc[picked]
    queue = pd.DataFrame(
        {
            "tile_id": picked,
            "batch": 1,
            "rank": np.arange(1, len(picked) + 1),
            "score": np.linspace(0, 1, len(picked)),
            "image": [str(root / paths.TILES / i) for i in rows["image"]],
            "width": rows["width"].to_numpy(),
            "height": rows["height"].to_numpy(),
            "model_version": "base",
        }
    )
    oracle = oracle_backend(p, root)
    oracle.push(queue, pd.DataFrame({"tile_id": []}))
    oracle.annotate()


def measure_cycle(root: Path, p) -> list[dict]:
    rows = []
    for name in CYCLE:
        run = stage(name, root)
        row = {"stage": name, "run": run, "floor": None, "note": ""}
        if name == "export-labels":
            row["note"] = f"{len(pd.read_csv(root / paths.LABELS / 'manifest.csv'))} labeled tiles pulled"
        elif name == "train":
            metrics = json.loads((root / paths.TRAIN_METRICS).read_text())
            row["note"] = (
                f"{p.train.epochs} epoch(s) on {metrics['labeled_tiles']} tiles, map50 {metrics['map50']:.3f}"
            )
        elif name == "register":
            record = json.loads((root / paths.REGISTRY).read_text())
            row["note"] = f"champion {record.get('champion_model_version')}"
        elif name == "predict":
            found = re.search(r"(\d+) tiles predicted, (\d+) from the cache", run["log"])
            ids = pd.concat(
                [
                    pd.read_parquet(root / t, columns=["tile_id"])
                    for t in (paths.PRED_TILES, paths.PRED_LABELED)
                ]
            )["tile_id"]
            manifest = pd.read_parquet(root / paths.TILE_MANIFEST, columns=["tile_id", "image"])
            images = manifest.set_index("tile_id").loc[ids, "image"]
            listing = root / "floor-tiles.txt"
            listing.write_text("\n".join(str(root / paths.TILES / i) for i in images))
            floor_cfg = {
                "list": str(listing),
                "weights": str(root / paths.CHAMPION),
                "batch": p.predict.batch,
                "imgsz": p.model.imgsz,
                "conf": p.predict.conf_floor,
                "iou": p.predict.iou,
                "max_det": p.predict.max_det,
                "device": "cpu",
            }
            row["floor"] = child([sys.executable, "-c", FLOOR, json.dumps(floor_cfg)], root)
            row["note"] = f"{found[1]} predicted, {found[2]} cached; floor on the same {len(images)} tiles"
        elif name == "rank":
            row["floor"] = child([sys.executable, "-c", RANK_FLOOR], root)
            queued = pd.read_csv(root / paths.QUEUE)
            row["note"] = f"{len(queued)} queued"
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", default="3000,30000", help="pool sizes, comma-separated (add 300000)")
    parser.add_argument("--candidates", type=int, default=1500, help="predict.candidates (30x the budget)")
    parser.add_argument("--epochs", type=int, default=1, help="train.epochs of the timed fine-tune")
    parser.add_argument("--imgsz", type=int, default=None, help="default: params.yaml model.imgsz")
    parser.add_argument("--new-frames", type=int, default=12, help="frames arriving for the tile stage")
    parser.add_argument("--frames", type=int, default=4, help="distinct synthetic frames to repeat")
    parser.add_argument("--weights", type=Path, default=None, help="default: models/base.pt")
    args = parser.parse_args()
    sizes = [int(n) for n in args.tiles.split(",")]

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    if args.imgsz is not None:
        params["model"]["imgsz"] = args.imgsz
    params["model"].update({"base": "models/base.pt", "device": "cpu"})
    params["predict"].update({"candidates": args.candidates, "engine": "local"})
    params["rank"]["balance_by"] = "condition"
    params["labeling"]["backend"] = "oracle"
    params["train"].update({"epochs": args.epochs, "replay_images": 0})
    params["test"]["data"] = "data/testset"
    p = load_params(REPO / "params.yaml").with_overrides(
        {
            "model.imgsz": params["model"]["imgsz"],
            "train.epochs": args.epochs,
            "predict.candidates": args.candidates,
        }
    )
    load = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="acorn-bench-cycle-") as tmp:
        work = Path(tmp)
        weights = base_weights(args.weights, work)
        from acorn.demo.synth import make_webcam_set

        source = work / "source"
        manifest = source_tiles(source, args.frames, p)
        new = work / "new"
        make_webcam_set(
            new, args.new_frames, p.demo.width, p.demo.height, seed=p.demo.seed + 500, prefix="new"
        )
        test = make_test_set(work / "test", p)
        for n in sizes:
            print(f"pool of {n} tiles: tile stage", file=sys.stderr, flush=True)
            rows = [measure_tile(work, n, source, manifest, new, params, p)]
            print(f"pool of {n} tiles: one cycle", file=sys.stderr, flush=True)
            root = make_cycle_pool(work, n, source, manifest, test, params, weights)
            first_batch(root, p)
            rows += measure_cycle(root, p)
            shutil.rmtree(root)
            results.append((n, rows))
    print(
        f"\none cycle, oracle backend: rank.budget {p.rank.budget}, predict.candidates {args.candidates} "
        f"(empty prediction cache), imgsz {p.model.imgsz}, predict.batch {p.predict.batch}, "
        f"train {args.epochs} epoch(s), {weights.name}; {os.cpu_count()} CPUs, load average "
        f"{load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end\n"
    )
    print("| pool tiles | stage | s | peak RSS MiB | floor s | floor RSS MiB | stage / floor | what |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    for n, rows in results:
        for r in rows:
            run, floor = r["run"], r["floor"]
            cells = (
                ["", "", ""]
                if floor is None
                else [f"{floor['s']:.1f}", f"{floor['rss']:.0f}", f"{run['s'] / floor['s']:.2f}"]
            )
            print(
                f"| {n:,} | {r['stage']} | {run['s']:.1f} | {run['rss']:.0f} | {' | '.join(cells)} | {r['note']} |"
            )
        cycle = sum(r["run"]["s"] for r in rows if r["stage"] in CYCLE)
        print(f"| {n:,} | **cycle** (export-labels to queue) | **{cycle:.0f}** | | | | | |")


if __name__ == "__main__":
    main()
