"""Predict stage vs its floor: time per tile and peak memory at two pool sizes, in one run.

- ``floor``: a bare ultralytics loop, ``YOLO(weights).predict(paths[i : i + batch], ...)`` over the
  same tile files with the same model, imgsz, conf_floor, iou, max_det and device: inference and
  decoding alone, with no embeddings, tables, cache or output files.
- ``stage cold``: ``python stages/predict.py`` in a generated repository with an empty prediction
  cache: everything is predicted, cached and written.
- ``stage warm``: the same command again (champion unchanged): everything comes from the cache.

Each run is its own child process, timed from start to exit (imports and model loading
included) and its peak RSS read from ``os.wait4``; ``marginal`` is the slope between the two
pool sizes, i.e. the per-tile cost with start-up taken out.

Tiles: ``--frames`` synthetic 4K webcam frames from the demo generator, cut by the tile stage's
own code with params.yaml's grid, then repeated under new frame ids (hard links, distinct frame
hashes, so the cache cannot share them) up to each pool size: real webcam-like tiles for the
price of a few frames. Timings on a shared machine are noisy: compare the columns of one run.

Usage: ``python benchmarks/predict_floor.py [--tiles 240,960] [--weights models/base.pt]
[--imgsz N] [--batch N] [--frames 4]`` (defaults: params.yaml; an untrained yolov8n when
models/base.pt is missing).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

import acorn  # noqa: F401  (offline settings first)
from acorn import paths
from acorn.params import load_params

REPO = Path(__file__).resolve().parents[1]

FLOOR = """
import sys, json
import acorn
from acorn.runtime.env import configure_ultralytics
configure_ultralytics()
from ultralytics import YOLO
cfg = json.loads(sys.argv[1])
tiles = open(cfg["list"]).read().split()
model = YOLO(cfg["weights"])
for start in range(0, len(tiles), cfg["batch"]):
    model.predict(tiles[start : start + cfg["batch"]], imgsz=cfg["imgsz"], conf=cfg["conf"],
                  iou=cfg["iou"], max_det=cfg["max_det"], device=cfg["device"], verbose=False)
"""


def source_tiles(work: Path, frames: int, p) -> pd.DataFrame:
    """A few synthetic frames, tiled once with the pipeline's grid: the tiles every pool repeats."""
    from acorn.data.tiling import TileGrid, tile_dataset
    from acorn.demo.synth import make_webcam_set

    make_webcam_set(work / "raw", frames, p.demo.width, p.demo.height, seed=p.demo.seed)
    grid = TileGrid(p.tile.rows, p.tile.cols, p.tile.overlap)
    return tile_dataset(work / "raw", work / "tiles", grid, p.classes, workers=p.tile.workers)


def make_pool(
    root: Path, source: pd.DataFrame, source_dir: Path, tiles: int, params: dict, weights: Path
) -> Path:
    """A repository whose manifest repeats ``source`` up to ``tiles`` rows (whole frames)."""
    per_frame = int(source.groupby("frame_id").size().iloc[0])
    copies = []
    for k in range(-(-tiles // len(source))):
        part = source.copy()
        part["frame_id"] = [f"c{k:05d}__{f}" for f in part["frame_id"]]
        part["tile_id"] = [f"c{k:05d}__{t}" for t in part["tile_id"]]
        part["frame_sha1"] = [hashlib.sha1(f"{s}:{k}".encode()).hexdigest() for s in part["frame_sha1"]]
        part["source"] = source["image"]
        copies.append(part)
    manifest = pd.concat(copies, ignore_index=True).iloc[: -(-tiles // per_frame) * per_frame]
    (root / paths.TILES / "images").mkdir(parents=True)
    manifest["image"] = [f"images/{t}.jpg" for t in manifest["tile_id"]]
    for old, new in zip(manifest.pop("source"), manifest["image"], strict=True):
        os.link(source_dir / old, root / paths.TILES / new)
    manifest.to_parquet(root / paths.TILE_MANIFEST, index=False)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "models").mkdir()
    shutil.copyfile(weights, root / paths.CHAMPION)
    (root / paths.REGISTRY).write_text('{"champion_model_version": "bench-1"}\n')
    return root


# Peak RSS comes from wait4 in a bare launcher process: Linux keeps a process's RSS high-water
# mark across exec, so a child forked straight from this (large) process would report at least
# this process's RSS, whatever it used itself.
LAUNCHER = """
import json, os, sys
cmd = json.loads(sys.argv[1])
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.execv(cmd[0], cmd)
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss}))
"""


def run_child(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> dict:
    """One child process: ``s`` (wall seconds, start to exit), ``rss`` (peak RSS in MiB, the largest
    of it and the processes it waited for) and ``log`` (its stderr); its stdout is discarded."""
    launch = [sys.executable, "-S", "-E", "-c", LAUNCHER, json.dumps([str(c) for c in cmd])]
    start = time.perf_counter()
    done = subprocess.run(launch, cwd=cwd, env=env, capture_output=True, text=True, errors="replace")
    seconds = time.perf_counter() - start
    out = done.stdout.strip()
    result = json.loads(out.splitlines()[-1]) if out else {"rc": -1}
    if done.returncode != 0 or result["rc"] != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed in {cwd}:\n{done.stderr[-3000:]}")
    return {"s": seconds, "rss": result["maxrss_kib"] / 1024, "log": done.stderr}  # Linux: KiB


def timed_child(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one child process."""
    run = run_child(cmd, cwd)
    return run["s"], run["rss"]


def base_weights(path: Path | None, work: Path) -> Path:
    """The given weights, else models/base.pt, else an untrained yolov8n (same cost, noise boxes)."""
    for candidate in (path, REPO / "models" / "base.pt"):
        if candidate is not None and candidate.is_file():
            return candidate.resolve()
    from ultralytics import YOLO

    out = work / "untrained.pt"
    YOLO("yolov8n.yaml").save(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", default="240,960", help="two pool sizes, comma-separated")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--imgsz", type=int, default=None, help="default: params.yaml model.imgsz")
    parser.add_argument("--batch", type=int, default=None, help="default: params.yaml predict.batch")
    parser.add_argument("--frames", type=int, default=4, help="distinct synthetic frames to repeat")
    args = parser.parse_args()
    sizes = [int(n) for n in args.tiles.split(",")]

    from acorn.model.detection import resolve_device

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    if args.imgsz is not None:
        params["model"]["imgsz"] = args.imgsz
    if args.batch is not None:
        params["predict"]["batch"] = args.batch
    p = load_params(REPO / "params.yaml").with_overrides(
        {"model.imgsz": params["model"]["imgsz"], "predict.batch": params["predict"]["batch"]}
    )
    device = resolve_device(p.model.device)
    load = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="acorn-bench-predict-") as tmp:
        work = Path(tmp)
        weights = base_weights(args.weights, work)
        source = source_tiles(work / "source", args.frames, p)
        for n in sizes:
            root = make_pool(work / f"pool{n}", source, work / "source" / "tiles", n, params, weights)
            listing = root / "tiles.txt"
            images = pd.read_parquet(root / paths.TILE_MANIFEST, columns=["image"])["image"]
            listing.write_text("\n".join(str(root / paths.TILES / i) for i in images))
            floor_cfg = {
                "list": str(listing),
                "weights": str(weights),
                "batch": p.predict.batch,
                "imgsz": p.model.imgsz,
                "conf": p.predict.conf_floor,
                "iou": p.predict.iou,
                "max_det": p.predict.max_det,
                "device": device,
            }
            floor = timed_child([sys.executable, "-c", FLOOR, json.dumps(floor_cfg)], root)
            stage = [sys.executable, str(REPO / "stages" / "predict.py")]
            cold = timed_child(stage, root)
            warm = timed_child(stage, root)
            rows.append({"tiles": len(images), "floor": floor, "cold": cold, "warm": warm})
    print(
        f"\npredict at imgsz {p.model.imgsz}, batch {p.predict.batch}, device {device}, "
        f"{weights.name}; {os.cpu_count()} CPUs, load average {load[0]:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at end\n"
    )
    header = (
        f"{'tiles':>7} | {'floor ms/tile':>13} | {'stage cold ms/tile':>18} | {'cold/floor':>10} | "
        f"{'stage warm s':>12} | {'RSS floor MiB':>13} | {'RSS cold MiB':>12} | {'RSS warm MiB':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        n = r["tiles"]
        print(
            f"{n:>7} | {1000 * r['floor'][0] / n:>13.1f} | {1000 * r['cold'][0] / n:>18.1f} | "
            f"{r['cold'][0] / r['floor'][0]:>10.2f} | {r['warm'][0]:>12.2f} | "
            f"{r['floor'][1]:>13.0f} | {r['cold'][1]:>12.0f} | {r['warm'][1]:>12.0f}"
        )
    small, large = rows[0], rows[-1]
    if large["tiles"] > small["tiles"]:
        extra = large["tiles"] - small["tiles"]
        floor_ms = 1000 * (large["floor"][0] - small["floor"][0]) / extra
        cold_ms = 1000 * (large["cold"][0] - small["cold"][0]) / extra
        warm_ms = 1000 * (large["warm"][0] - small["warm"][0]) / extra
        print(
            f"\nmarginal per tile ({small['tiles']} -> {large['tiles']} tiles): floor {floor_ms:.1f} ms, "
            f"stage cold {cold_ms:.1f} ms ({cold_ms / floor_ms:.2f}x the floor), stage warm {warm_ms:.2f} ms; "
            f"peak RSS growth: floor {large['floor'][1] - small['floor'][1]:+.0f} MiB, "
            f"stage cold {large['cold'][1] - small['cold'][1]:+.0f} MiB, "
            f"stage warm {large['warm'][1] - small['warm'][1]:+.0f} MiB"
        )


if __name__ == "__main__":
    main()
