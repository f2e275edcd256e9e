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

Merge check (``--truth-frames``, no model): each demo frame's truth boxes cut into the slices
(what a perfect detector would find in each) and merged again; how many truth boxes come back
exactly. ``--sahi`` adds sahi's own merge (GREEDYNMM, IOS 0.5: ``get_sliced_prediction``'s
default) to that check and sahi's sliced prediction to the timing. sahi is not in the locked
environment; to run it, install it outside the repository and put it on the path::

    pip install --no-deps --target /tmp/sahi-pkgs sahi==0.12.8 shapely pybboxes==0.1.6 fire terminaltables
    PYTHONPATH=/tmp/sahi-pkgs python benchmarks/detect_frames.py --sahi

Usage: ``python benchmarks/detect_frames.py [--frames 3] [--rounds 2] [--overlaps 0,0.1,0.2]
[--weights models/base.pt] [--truth-frames 60] [--sahi] [--out DIR]``
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
    parser.add_argument(
        "--truth-frames", type=int, default=60, help="merge check: 1920x1080 frames (0: none)"
    )
    parser.add_argument("--sahi", action="store_true", help="also sahi 0.12.8 (not in the lock; see above)")
    args = parser.parse_args()
    overlaps = [float(o) for o in args.overlaps.split(",")]

    from PIL import Image

    from acorn.data.tiling import TileGrid, encode_jpeg
    from acorn.demo.synth import make_webcam_set
    from acorn.frames.detect import Slicing, detect_frames, find_frames
    from acorn.model.detection import Detector, DetectorConfig, use_cpu_threads
    from acorn.runtime.env import configure_ultralytics

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
        if args.sahi:
            sahi_run = sahi_runner(args.weights, config, frames, grid)
            runs.update({f"sahi {o:g}": (lambda o=o: sahi_run(o)) for o in overlaps})
            sahi_run(0.0)  # warm-up
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
    text = f"{header}\n\n{summary.to_markdown()}\n"
    if args.truth_frames:
        check = merge_check(args.truth_frames, grid, overlaps, args.sahi)
        text += (
            f"\nMerge check: the truth of {args.truth_frames} demo frames (1920x1080, seed 7) cut into each "
            "slice, as a perfect detector would find it, then merged; truth boxes merged back exactly:\n\n"
            f"{check.to_markdown(index=False)}\n"
        )
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "rounds.csv", index=False)
        (args.out / "summary.md").write_text(text, encoding="utf-8")


def merge_check(n_frames: int, grid, overlaps: list[float], with_sahi: bool) -> pd.DataFrame:
    """Per overlap: truth boxes, those cut into pieces, and those each merge gives back exactly."""
    import numpy as np

    from acorn.data.formats import read_yolo_labels
    from acorn.data.tiling import clip_boxes
    from acorn.demo.synth import make_webcam_set
    from acorn.frames.merge import merge_boxes, slice_windows

    width, height = 1920, 1080
    rows = []
    with tempfile.TemporaryDirectory(prefix="merge-check-") as tmp:
        make_webcam_set(Path(tmp), n_frames, width=width, height=height, seed=7)
        truths = [read_yolo_labels(f, width, height) for f in sorted(Path(tmp, "labels").glob("*.txt"))]
    for overlap in overlaps:
        windows = slice_windows(width, height, grid, overlap)[["x0", "y0", "x1", "y1"]].to_numpy()
        counts = {"overlap": overlap, "truth boxes": 0, "whole in no slice": 0, "acorn merge": 0}
        if with_sahi:
            counts["sahi GREEDYNMM IOS 0.5"] = 0
        for truth in truths:
            pieces = [(clip_boxes(truth, tuple(w), 1e-9), w) for w in windows]
            xyxy = np.concatenate(
                [b[["x1", "y1", "x2", "y2"]].to_numpy() + w[[0, 1, 0, 1]] for b, w in pieces]
            )
            owner = np.concatenate([np.repeat([w], len(b), axis=0) for b, w in pieces]).reshape(-1, 4)
            expected = truth[["x1", "y1", "x2", "y2"]].to_numpy().clip(0, [width, height, width, height])
            ones = np.full(len(xyxy), 0.9)
            merged = merge_boxes(xyxy, ones, np.zeros(len(xyxy)), owner, (width, height)).xyxy
            counts["truth boxes"] += len(expected)
            counts["whole in no slice"] += int(_exact(expected, xyxy, invert=True))
            counts["acorn merge"] += _exact(expected, merged)
            if with_sahi:
                counts["sahi GREEDYNMM IOS 0.5"] += _exact(expected, _sahi_merge(xyxy, ones, (width, height)))
        rows.append(counts)
    return pd.DataFrame(rows)


def _exact(expected, boxes, invert: bool = False) -> int:
    """Truth boxes found among ``boxes`` to a hundredth of a pixel (``invert``: those not found)."""
    import numpy as np

    found = (np.abs(expected[:, None, :] - boxes[None, :, :]) < 0.01).all(axis=2).any(axis=1)
    return int((~found if invert else found).sum())


def _sahi_merge(xyxy, scores, frame_size: tuple[int, int]):
    """sahi's own merge of sliced predictions (its get_sliced_prediction default) on the same boxes."""
    import numpy as np
    from sahi.postprocess.combine import GreedyNMMPostprocess
    from sahi.prediction import ObjectPrediction

    width, height = frame_size
    predictions = [
        ObjectPrediction(
            bbox=list(b), category_id=0, category_name="squirrel", score=float(s), full_shape=[height, width]
        )
        for b, s in zip(xyxy.tolist(), scores, strict=True)
    ]
    merged = GreedyNMMPostprocess(match_threshold=0.5, match_metric="IOS", class_agnostic=False)(predictions)
    return np.array([m.bbox.to_xyxy() for m in merged], dtype=np.float64).reshape(-1, 4)


def sahi_runner(weights: Path, config, frames: list[Path], grid):
    """sahi's get_sliced_prediction over the frames at an overlap (slices of the tile size, no
    extra whole-frame pass, as acorn detect), returning the slices it cut."""
    from PIL import Image
    from sahi import AutoDetectionModel
    from sahi.predict import get_sliced_prediction
    from sahi.slicing import get_slice_bboxes

    from acorn.model.detection import use_cpu_threads

    model = AutoDetectionModel.from_pretrained(
        model_type="ultralytics",
        model_path=str(weights),
        confidence_threshold=config.conf_floor,
        device=config.device,
        image_size=config.imgsz,
    )

    def run(overlap: float) -> float:
        slices = 0
        for frame in frames:
            with Image.open(frame) as image:
                rgb = image.convert("RGB")
            tile_w, tile_h = rgb.width // grid.cols, rgb.height // grid.rows
            get_sliced_prediction(
                rgb,
                model,
                slice_height=tile_h,
                slice_width=tile_w,
                overlap_height_ratio=overlap,
                overlap_width_ratio=overlap,
                perform_standard_pred=False,
                batch_size=config.batch,
                verbose=0,
            )
            use_cpu_threads(config.threads, config.device)  # ultralytics resets it on set-up
            slices += len(get_slice_bboxes(rgb.height, rgb.width, tile_h, tile_w, False, overlap, overlap))
        return float(slices)

    return run


def detector_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
