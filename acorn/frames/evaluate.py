"""Score a detector on whole frames: sliced detection and merging as ``acorn detect`` runs it,
against whole-frame truth.

The tile scores of the train stage count an object cut by a tile edge as two objects, each
half a miss or a hit; on the whole frame it is one squirrel, seen or not, which is what a
deployed detector is judged by. This runs :func:`acorn.frames.detect.detect_frames` on a YOLO
folder of whole frames (``test.frames``) and scores the merged boxes with ultralytics' own
matching (``BaseValidator.match_predictions``) and metrics (``DetMetrics``: ``ap_per_class``),
so a frame map50 means what the tile map50 beside it means.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from acorn.data.tiling import TileGrid, list_frames, tile_places
from acorn.frames.detect import FrameDetections, Slicing, detect_frames, frame_boxes
from acorn.params import Params
from acorn.runtime.errors import InputError

log = logging.getLogger("acorn")


@dataclass(frozen=True)
class FrameScores:
    """Frame-level scores. ``false_alarms`` counts boxes at or above the display threshold
    (``rank.threshold``) that match no true object at IoU 0.5: what a user of the deployed
    detector sees fire on empty lawn; ``false_alarm_frames`` how many of the ``empty_frames``
    (no true object) show at least one box at that threshold."""

    map50: float
    map50_95: float
    precision: float
    recall: float
    frames: int
    objects: int
    false_alarms: int
    empty_frames: int
    false_alarm_frames: int
    seconds: float

    def metrics(self, prefix: str = "frame_") -> dict[str, float | int]:
        """Flat, prefixed, rounded: ready for metrics/train.json beside the tile scores."""
        return {f"{prefix}{k}": round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


def read_truth(frames: FrameDetections, labels_dir: Path, images_dir: Path) -> dict[str, pd.DataFrame]:
    """Each read frame's true boxes in frame pixels, from ``labels/<same relative path>.txt``. A
    frame without a label file is an error naming it: a test frame's truth is never unknown."""
    from acorn.data.formats import read_yolo_labels

    truth = {}
    for frame in frames.frames[frames.frames["error"] == ""].itertuples(index=False):
        label = labels_dir / Path(frame.path).relative_to(images_dir).with_suffix(".txt")
        if not label.is_file():
            raise InputError(
                f"{label}: no label file for test frame {frame.path} (an empty file means no objects)"
            )
        truth[frame.frame_id] = read_yolo_labels(label, frame.width, frame.height)
    return truth


def score_frames(
    detections: FrameDetections, truth: dict[str, pd.DataFrame], class_names: dict[int, str], threshold: float
) -> FrameScores:
    """Match each frame's boxes to its truth (most confident first, class-wise, IoU 0.5:0.95)
    and score them as ultralytics' validator does; frames not in ``truth`` are left out."""
    import torch
    from ultralytics.engine.validator import BaseValidator
    from ultralytics.utils.metrics import DetMetrics, box_iou

    iou_levels = torch.linspace(0.5, 0.95, 10)
    matcher = type("Matcher", (), {"iouv": iou_levels})()  # match_predictions reads only self.iouv
    metrics = DetMetrics(names=class_names)
    by_frame = dict(tuple(detections.boxes.groupby("frame_id", sort=False)))
    false_alarms = false_alarm_frames = empty_frames = objects = 0
    for frame_id, true in truth.items():
        pred = by_frame.get(frame_id, detections.boxes.iloc[:0]).sort_values("confidence", ascending=False)
        pred_xyxy = torch.tensor(pred[["x1", "y1", "x2", "y2"]].to_numpy(np.float32).reshape(-1, 4))
        pred_cls = torch.tensor(pred["class_id"].to_numpy(np.float32))
        true_xyxy = torch.tensor(true[["x1", "y1", "x2", "y2"]].to_numpy(np.float32).reshape(-1, 4))
        true_cls = torch.tensor(true["class_id"].to_numpy(np.float32))
        if len(pred) and len(true):
            iou = box_iou(true_xyxy, pred_xyxy)
            tp = BaseValidator.match_predictions(matcher, pred_cls, true_cls, iou).numpy()
        else:
            tp = np.zeros((len(pred), len(iou_levels)), dtype=bool)
        shown = pred["confidence"].to_numpy() >= threshold
        false_alarms += int((shown & ~tp[:, 0]).sum())
        objects += len(true)
        if not len(true):
            empty_frames += 1
            false_alarm_frames += int(shown.any())
        metrics.update_stats(
            {
                "tp": tp,
                "conf": pred["confidence"].to_numpy(),
                "pred_cls": pred_cls.numpy(),
                "target_cls": true_cls.numpy(),
                "target_img": np.unique(true_cls.numpy()),
                "im_name": frame_id,
            }
        )
    metrics.process()
    box = metrics.box
    return FrameScores(
        map50=float(box.map50),
        map50_95=float(box.map),
        precision=float(box.mp),
        recall=float(box.mr),
        frames=len(truth),
        objects=objects,
        false_alarms=false_alarms,
        empty_frames=empty_frames,
        false_alarm_frames=false_alarm_frames,
        seconds=0.0,
    )


def evaluate_frames(
    weights: str | Path,
    folder: str | Path,
    p: Params,
    overlap: float | None = None,
    conf: float | None = None,
) -> FrameScores:
    """Frame-level scores of ``weights`` on the YOLO folder ``folder`` (``images/``, ``labels/``):
    sliced as ``acorn detect`` slices (``tile`` grid, ``overlap`` default ``tile.overlap``),
    detected with the predict stage's settings down to ``conf`` (default ``rank.threshold``),
    merged, scored.

    The default is the confidence ``acorn detect`` keeps by default, what a user of the deployed
    detector is shown; not ultralytics' val default (0.001): the merge joins boxes cut by slice
    edges whatever their confidence, and low-confidence junk along every edge joins real boxes
    into wrong unions. Demo base model, the demo's 100 test frames (benchmarks/frame_eval.py):
    frame map50 at overlap 0 / 0.1 was 0.061 / 0.029 down to 0.001, 0.068 / 0.094 down to 0.05
    and 0.065 / 0.110 down to 0.25 (the tile map50 beside it 0.094).
    """
    from acorn.model.detection import Detector, DetectorConfig

    start = time.perf_counter()
    folder = Path(folder)
    images = folder / "images"
    frames, frame_ids = list_frames(images) if images.is_dir() else ([], [])
    if not frames:
        raise InputError(f"{images}: no frames to score (test.frames: a YOLO folder of whole test frames)")
    detector = Detector(
        replace(DetectorConfig.from_params(p, weights), conf_floor=p.rank.threshold if conf is None else conf)
    )
    slicing = Slicing(
        grid=TileGrid(p.tile.rows, p.tile.cols, p.tile.overlap),
        overlap=p.tile.overlap if overlap is None else overlap,
    )
    found = detect_frames(
        detector, frames, frame_ids, slicing, on_bad_frame="stop", max_pixels=p.tile.max_frame_pixels
    )
    truth = read_truth(found, folder / "labels", images)
    names = {int(k): str(v) for k, v in detector.class_names.items()}
    scores = score_frames(found, truth, names, p.rank.threshold)
    return replace(scores, seconds=round(time.perf_counter() - start, 3))


def upright_size(path: str | Path) -> tuple[int, int]:
    """A frame's width and height as the tile stage sees it: turned upright by its EXIF
    orientation (a phone's portrait JPEG is stored on its side), read from the header only."""
    from PIL import Image

    with Image.open(path) as im:
        width, height = im.size
        turned = im.getexif().get(0x0112) in (5, 6, 7, 8)  # Orientation: transposed or rotated 90°
    return (height, width) if turned else (width, height)


def frames_from_tiles(
    tile_boxes: pd.DataFrame, folder: str | Path, p: Params, conf: float | None = None
) -> FrameDetections:
    """Frame-level boxes from boxes already found on the frames' tiles (``tile_id`` as the tile
    stage names them, ``<frame_id>_r<row>c<col>``, corners in tile pixels): each shifted into its
    frame by the tile grid of ``tile.*`` and merged across tile edges as ``acorn detect`` merges
    slices, down to ``conf`` (default ``rank.threshold``, as ``evaluate_frames``).

    At the tile stage's own overlap the tiles are the slices ``acorn detect`` would cut, so the
    train stage scores whole frames from the test tiles' boxes it scored anyway: no second
    inference over the test set."""

    from acorn.frames.merge import merge_boxes

    folder = Path(folder)
    images = folder / "images"
    paths, frame_ids = list_frames(images) if images.is_dir() else ([], [])
    if not paths:
        raise InputError(f"{images}: no frames to score (test.frames: a YOLO folder of whole test frames)")
    grid = TileGrid(p.tile.rows, p.tile.cols, p.tile.overlap)
    floor = p.rank.threshold if conf is None else conf
    parts = tile_places(tile_boxes["tile_id"])
    boxes = pd.concat([tile_boxes, parts], axis=1)
    boxes = boxes[boxes["frame_id"].notna() & (boxes["confidence"] >= floor)].astype({"row": int, "col": int})
    by_frame = dict(tuple(boxes.groupby("frame_id", sort=False)))
    rows, merged = [], []
    for path, frame_id in zip(paths, frame_ids, strict=True):
        width, height = upright_size(path)
        windows = grid.windows(width, height).set_index(["row", "col"])
        mine = by_frame.get(frame_id, boxes.iloc[:0])
        places = pd.MultiIndex.from_arrays([mine["row"], mine["col"]])
        if not places.isin(windows.index).all():
            bad = mine.loc[~places.isin(windows.index), "tile_id"].iloc[0]
            raise InputError(
                f"test tile {bad} does not fit frame {path} cut by tile.rows x tile.cols "
                f"({p.tile.rows} x {p.tile.cols}): the test set was tiled with another grid"
            )
        window = (
            windows.loc[list(zip(mine["row"], mine["col"], strict=True))].to_numpy(np.float64).reshape(-1, 4)
        )
        xyxy = mine[["x1", "y1", "x2", "y2"]].to_numpy(np.float64) + window[:, [0, 1, 0, 1]]
        result = merge_boxes(
            xyxy, mine["confidence"].to_numpy(), mine["class_id"].to_numpy(), window, (width, height)
        )
        rows.append({"frame_id": frame_id, "path": str(path), "width": width, "height": height, "error": ""})
        merged.append(frame_boxes(frame_id, result))
    return FrameDetections(boxes=pd.concat(merged, ignore_index=True), frames=pd.DataFrame(rows))


def score_frames_from_tiles(
    tile_boxes: pd.DataFrame, folder: str | Path, p: Params, class_names: dict[int, str]
) -> FrameScores:
    """``frames_from_tiles`` scored against the frames' truth (``score_frames``)."""
    start = time.perf_counter()
    found = frames_from_tiles(tile_boxes, folder, p)
    truth = read_truth(found, Path(folder) / "labels", Path(folder) / "images")
    scores = score_frames(found, truth, class_names, p.rank.threshold)
    return replace(scores, seconds=round(time.perf_counter() - start, 3))


INSIDE = 0.9  # a tile's piece of an object: this share of its area lies inside the object's frame box


def found_on_frames(
    missed: pd.DataFrame, tile_boxes: pd.DataFrame, folder: str | Path, p: Params
) -> pd.Series:
    """For each tile-level miss (``tile_id``, ``class_id``, corners in tile pixels): whether the
    object it is a piece of was found on the whole frame, i.e. a merged box of its class at
    ``rank.threshold`` or above overlaps that object's true frame box at IoU 0.5. A squirrel cut
    by a tile edge and found on the other side is a tile miss but no miss on the frame; a report
    that shows it among the "largest misses" shows a half-object the deployed detector sees."""
    from acorn.labeling.cost import box_iou

    found = pd.Series(False, index=missed.index)
    if missed.empty:
        return found
    frames = frames_from_tiles(tile_boxes, folder, p)
    truth = read_truth(frames, Path(folder) / "labels", Path(folder) / "images")
    grid = TileGrid(p.tile.rows, p.tile.cols, p.tile.overlap)
    sizes = frames.frames.set_index("frame_id")[["width", "height"]]
    boxes = dict(tuple(frames.boxes.groupby("frame_id", sort=False)))
    parts = tile_places(missed["tile_id"])
    corners = ["x1", "y1", "x2", "y2"]
    frame_windows: dict[str, pd.DataFrame] = {}  # a frame's tile windows, computed once for its misses
    for i, frame_id, row, col in zip(
        missed.index, parts["frame_id"], parts["row"], parts["col"], strict=True
    ):
        if not isinstance(frame_id, str) or frame_id not in truth:
            continue
        width, height = sizes.loc[frame_id]
        windows = frame_windows.setdefault(
            frame_id, grid.windows(int(width), int(height)).set_index(["row", "col"])
        )
        if (int(row), int(col)) not in windows.index:
            continue  # a tile of another grid: frames_from_tiles names the first one it meets
        window = windows.loc[(int(row), int(col))]
        piece = missed.loc[i, corners].to_numpy(np.float64) + window[["x0", "y0", "x0", "y0"]].to_numpy(
            np.float64
        )
        true = truth[frame_id]
        true = true[true["class_id"] == missed.at[i, "class_id"]]
        inner = np.clip(
            np.minimum(true[["x2", "y2"]].to_numpy(), piece[2:])
            - np.maximum(true[["x1", "y1"]].to_numpy(), piece[:2]),
            0,
            None,
        ).prod(axis=1)
        area = max((piece[2] - piece[0]) * (piece[3] - piece[1]), 1e-9)
        objects = true[inner / area >= INSIDE]
        mine = boxes.get(frame_id)
        if objects.empty or mine is None:
            continue
        mine = mine[mine["class_id"] == missed.at[i, "class_id"]]
        if len(mine):
            iou = box_iou(objects[corners].to_numpy(np.float64), mine[corners].to_numpy(np.float64))
            found.at[i] = bool((iou >= 0.5).any())
    return found
