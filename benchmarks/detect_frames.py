"""What whole-frame detection (``acorn detect``) costs per frame, against the tile predict floor.

- ``floor``: a bare ultralytics loop, ``YOLO(weights).predict(tiles[i : i + batch], ...)`` over the
  tile stage's own tiles of the same frames, pre-cut and written as JPEG (the tile stage's
  quality): what predicting the frame's tiles costs at least. Per frame: the grid's tile count
  divided by the floor's tiles per second.
- ``sliced, overlap o``: ``acorn.frames.detect.detect_frames`` on the frame files, what the
  command runs: decode the 4K frame, cut slices the size of the tiles (more of them as the
  overlap grows), detect them with acorn's batched ``Detector``, merge per frame.

All in one process with the same model, imgsz, batch, conf, iou, max_det, device and torch
threads (params.yaml, ``model.threads`` as the predict stage sets it), rounds interleaved so a
change of load on a shared machine hits every column. Costs are the process's CPU time (the least
of the rounds): on a shared machine wall time also measures the other jobs; the wall-time ratios
(fastest round, median round) are beside it.

Frames: ``--frames`` synthetic 3840x2160 webcam frames from the demo generator.

Usage: ``python benchmarks/detect_frames.py [--frames 3] [--rounds 2] [--overlaps 0,0.1,0.2]
[--weights models/base.pt] [--out DIR]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

import acorn  # noqa: F401  (offline settings first)
from acorn.params import load_params

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--overlaps", default="0,0.1,0.2")
    parser.add_argument("--weights", type=Path, default=REPO / "models" / "base.pt")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--out", type=Path, help="write summary.md and rounds.csv here")
    args = parser.parse_args()
    overlaps = [float(o) for o in args.overlaps.split(",")]

    from PIL import Image

    from acorn.demo.synth import make_webcam_set
    from acorn.detection import Detector, DetectorConfig, use_cpu_threads
    from acorn.env import configure_ultralytics
    from acorn.frames.detect import Slicing, detect_frames, find_frames
    from acorn.tiling import TileGrid, encode_jpeg

    p = load_params(args.params)
    grid = TileGrid(p.tile.rows, p.tile.cols, p.tile.overlap)
    config = replace(DetectorConfig.from_params(p, args.weights), conf_floor=p.rank.threshold)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="detect-frames-") as tmp:
        root = Path(tmp)
        make_webcam_set(root / "frames", args.frames, seed=11)
        frames, frame_ids = find_frames([root / "frames" / "images"])
        tiles = []
        for i, frame in enumerate(frames):  # the tile stage's tiles, pre-cut
            with Image.open(frame) as image:
                for w in grid.windows(*image.size)[["x0", "y0", "x1", "y1"]].itertuples(index=False):
                    tiles.append(root / f"tile_{i}_{len(tiles)}.jpg")
                    tiles[-1].write_bytes(encode_jpeg(image.crop(tuple(w)), p.tile.jpeg_quality))

        configure_ultralytics()
        from ultralytics import YOLO

        bare = YOLO(str(args.weights))
        detector = Detector(config)

        def floor() -> float:
            for start in range(0, len(tiles), config.batch):
                bare.predict(
                    [str(t) for t in tiles[start : start + config.batch]],
                    imgsz=config.imgsz,
                    conf=config.conf_floor,
                    iou=config.iou,
                    max_det=config.max_det,
                    device=config.device,
                    verbose=False,
                )
                use_cpu_threads(config.threads, bare.predictor.device)  # ultralytics resets it
            return len(tiles)

        def sliced(overlap: float) -> float:
            result = detect_frames(detector, frames, frame_ids, Slicing(grid, overlap))
            return float(result.frames["slices"].sum())

        runs = {"floor": floor, **{f"sliced {o:g}": (lambda o=o: sliced(o)) for o in overlaps}}
        floor()  # warm-up: ultralytics sets its predictor up on the first call
        rows = []
        for r in range(args.rounds):
            for name, run in runs.items():
                start, cpu = time.perf_counter(), time.process_time()
                images = run()
                wall, cpu = time.perf_counter() - start, time.process_time() - cpu
                rows.append({"round": r, "run": name, "images": images, "seconds": wall, "cpu": cpu})
    load_after = os.getloadavg()

    table = pd.DataFrame(rows)
    tiles_per_frame = len(tiles) / len(frames)
    # on a machine shared with other jobs wall time measures them too: CPU time of this process
    # (torch runs on model.threads threads) is the cost, the fastest wall round the one they
    # disturbed least, the median wall round what a user would see among them
    by_run = table.groupby("run", sort=False)
    summary = by_run.agg(
        images=("images", "first"), cpu=("cpu", "min"), wall=("seconds", "min"), median=("seconds", "median")
    )
    floor_row = summary.loc["floor"]
    summary["images/frame"] = summary["images"] / len(frames)
    summary["cpu ms/image"] = 1000 * summary["cpu"] / summary["images"]
    summary["cpu s/frame"] = summary["cpu"] / len(frames)
    summary["x floor/frame (cpu)"] = summary["cpu"] / floor_row["cpu"]
    summary["x floor/frame (wall, fastest)"] = summary["wall"] / floor_row["wall"]
    summary["x floor/frame (wall, median)"] = summary["median"] / floor_row["median"]
    summary = summary.drop(columns=["images", "cpu", "wall", "median"]).round(3)
    header = (
        f"{len(frames)} frames 3840x2160, {tiles_per_frame:g} tiles a frame ({grid.rows}x{grid.cols}), "
        f"{args.weights.name}, imgsz {config.imgsz}, batch {config.batch}, conf {config.conf_floor}, "
        f"device {config.device}, torch threads {detector_threads()}, {args.rounds} rounds; "
        f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f}, {os.cpu_count()} CPUs"
    )
    print(header)
    print(summary.to_markdown())
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "rounds.csv", index=False)
        (args.out / "summary.md").write_text(f"{header}\n\n{summary.to_markdown()}\n", encoding="utf-8")


def detector_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
