"""Run a detector over whole frames: slice, detect in batches, merge, write frame-level results.

The detector was trained on tiles, so a frame is cut into slices the size of the tile stage's
tiles (``acorn.frames.merge.slice_windows``), detected with the predict stage's batched
``Detector`` (its chunking, its settings), and the slices' boxes are put back in frame pixels
and merged (``merge_boxes``): one object, one box. Frames are decoded one at a time and their
slices predicted a chunk at a time, so memory holds a chunk of slices whatever the number of
frames.

Outputs (``write_results``): ``labels/<frame_id>.txt`` (YOLO, one per frame, empty when nothing
was found), ``detections.json`` (COCO, with scores) and ``boxes.parquet`` (one row per box), and
``bad_frames.csv`` when frames could not be read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from acorn.data.tiling import MAX_FRAME_PIXELS, TileGrid, decode_frame, list_frames
from acorn.frames.merge import Merged, MergeRule, merge_boxes, slice_windows
from acorn.runtime.errors import InputError

log = logging.getLogger("acorn")

BOXES = "boxes.parquet"
COCO = "detections.json"
LABELS = "labels"
BAD_FRAMES = "bad_frames.csv"
BOX_COLUMNS = ["frame_id", "class_id", "class_name", "confidence", "x1", "y1", "x2", "y2", "pieces"]


@dataclass(frozen=True)
class Slicing:
    """How frames are cut and their boxes merged."""

    grid: TileGrid  # the tile stage's grid: slices are its tiles' size
    overlap: float  # at least this share of a slice is shared with each neighbour
    merge: MergeRule = field(default_factory=MergeRule)


@dataclass
class FrameDetections:
    """``boxes``: one row per merged box (``BOX_COLUMNS``, frame pixels); ``frames``: one row per
    frame given (frame_id, path, width, height, slices, boxes, error; error '' when read)."""

    boxes: pd.DataFrame
    frames: pd.DataFrame


def find_frames(sources: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """Frame files and ids from files and folders: a folder's images as the tile stage lists them
    (recursive, ids with '__' for sub-folders), a file as its name without suffix."""
    paths: list[Path] = []
    ids: list[str] = []
    for source in map(Path, sources):
        if source.is_dir():
            found, found_ids = list_frames(source)
            if not found:
                raise InputError(f"{source}: no image files in this folder")
            paths += found
            ids += found_ids
        elif source.is_file():
            paths.append(source)
            ids.append(source.stem)
        else:
            raise InputError(f"{source}: no such file or folder")
    seen: dict[str, Path] = {}
    for path, frame_id in zip(paths, ids, strict=True):
        if frame_id in seen:
            raise InputError(f"{path}: frame id {frame_id!r} is also {seen[frame_id]}'s; rename one")
        seen[frame_id] = path
    return paths, ids


def detect_frames(
    detector,
    frames: Sequence[Path],
    frame_ids: Sequence[str],
    slicing: Slicing,
    chunk: int = 64,
    on_bad_frame: str = "skip",
    max_pixels: int = MAX_FRAME_PIXELS,
) -> FrameDetections:
    """Detect on whole frames with ``detector`` (an ``acorn.model.detection.Detector``).

    Slices are handed to the detector ``chunk`` (or more: a frame is never split) at a time;
    it runs them ``predict.batch`` per forward pass. A frame that cannot be read is skipped and
    reported (``on_bad_frame="skip"``, as the tile stage does: one bad file must not stop a
    month of frames), or stops the run with an error naming it (``"stop"``).
    """
    from tqdm import tqdm

    box_parts: list[pd.DataFrame] = []
    frame_rows: list[dict] = []
    with tqdm(total=len(frames), desc="detect", unit="frame") as progress:
        for part, rows in _chunks(frames, frame_ids, slicing, chunk, on_bad_frame, max_pixels):
            box_parts.append(_detect_chunk(detector, part, rows, slicing))
            frame_rows += rows
            progress.update(len(rows))
    names = {int(k): str(v) for k, v in detector.class_names.items()}
    boxes = pd.concat([_empty_boxes(), *box_parts], ignore_index=True)
    boxes["class_name"] = boxes["class_id"].map(names).astype(str)
    columns = ["frame_id", "path", "width", "height", "slices", "boxes", "error"]
    table = pd.DataFrame(frame_rows, columns=columns)
    counts = boxes.groupby("frame_id").size()
    table["boxes"] = table["frame_id"].map(counts).fillna(0).astype("int64")
    return FrameDetections(boxes=boxes[BOX_COLUMNS], frames=table)


@dataclass
class _Chunk:
    """Slices of whole frames, ready for one ``Detector.predict`` call."""

    images: list = field(default_factory=list)
    frame: list[int] = field(default_factory=list)  # per slice: its frame's index in the chunk's rows
    windows: list[np.ndarray] = field(default_factory=list)  # per frame: (slices, 4) x0, y0, x1, y1


def _chunks(
    frames: Sequence[Path],
    frame_ids: Sequence[str],
    slicing: Slicing,
    chunk: int,
    on_bad_frame: str,
    max_pixels: int,
) -> Iterator[tuple[_Chunk, list[dict]]]:
    """Decode and slice frames until a chunk holds ``chunk`` slices; bad frames yield a row only."""
    part, rows = _Chunk(), []
    for path, frame_id in zip(frames, frame_ids, strict=True):
        row = {"frame_id": frame_id, "path": str(path), "width": 0, "height": 0, "slices": 0, "error": ""}
        try:
            image = decode_frame(Path(path), max_pixels)
        except (InputError, OSError) as exc:  # OSError: unreadable (permissions, a vanished file)
            why = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            if on_bad_frame == "stop":
                raise InputError(why) from None
            log.warning("skipped: %s", why)
            rows.append({**row, "error": why})
            continue
        width, height = image.size
        windows = slice_windows(width, height, slicing.grid, slicing.overlap)[["x0", "y0", "x1", "y1"]]
        corners = windows.to_numpy()
        part.images += [image.crop(tuple(w)) for w in corners.tolist()]
        part.frame += [len(rows)] * len(corners)
        part.windows.append(corners)
        rows.append({**row, "width": width, "height": height, "slices": len(corners)})
        if len(part.images) >= chunk:
            yield part, rows
            part, rows = _Chunk(), []
    if rows:
        yield part, rows


def _detect_chunk(detector, part: _Chunk, rows: list[dict], slicing: Slicing) -> pd.DataFrame:
    """One predict call over a chunk's slices, then one merge per frame, in frame pixels."""
    if not part.images:
        return _empty_boxes()
    found = detector.predict(part.images, [str(i) for i in range(len(part.images))]).boxes
    slice_of_box = found["tile_id"].astype(int).to_numpy()
    windows = np.concatenate(part.windows).astype(np.float64)[slice_of_box]
    xyxy = found[["x1", "y1", "x2", "y2"]].to_numpy() + windows[:, [0, 1, 0, 1]]
    frame_of_box = np.asarray(part.frame)[slice_of_box]
    merged = []
    for k in np.unique(np.asarray(part.frame)):  # frames with slices (read ones), bad ones have none
        mine = frame_of_box == k
        result = merge_boxes(
            xyxy[mine],
            found["confidence"].to_numpy()[mine],
            found["class_id"].to_numpy()[mine],
            windows[mine],
            (rows[k]["width"], rows[k]["height"]),
            slicing.merge,
        )
        merged.append(frame_boxes(rows[k]["frame_id"], result))
    return pd.concat([_empty_boxes(), *merged], ignore_index=True)


def frame_boxes(frame_id: str, merged: Merged) -> pd.DataFrame:
    """One frame's merged boxes as rows of the frame-level table (frame pixels, pieces joined)."""
    return pd.DataFrame(
        {
            "frame_id": frame_id,
            "class_id": merged.class_id,
            "confidence": merged.confidence,
            "x1": merged.xyxy[:, 0],
            "y1": merged.xyxy[:, 1],
            "x2": merged.xyxy[:, 2],
            "y2": merged.xyxy[:, 3],
            "pieces": merged.pieces,
        }
    )


def _empty_boxes() -> pd.DataFrame:
    dtypes = {"frame_id": str, "class_id": "int64", "pieces": "int64"}
    return pd.DataFrame(
        {c: pd.Series(dtype=dtypes.get(c, "float64")) for c in BOX_COLUMNS if c != "class_name"}
    )


def write_results(result: FrameDetections, out: Path, class_names: dict[int, str], model: str) -> None:
    """YOLO txt per read frame, one COCO JSON and one Parquet table under ``out``; bad frames in
    ``bad_frames.csv``. Files of frames not in ``result`` are left as they are."""
    from acorn.data.formats import xyxy_to_yolo
    from acorn.runtime.atomic import write_csv, write_json, write_parquet, write_text

    out = Path(out)
    boxes, frames = result.boxes, result.frames
    read = frames[frames["error"] == ""]
    by_frame = dict(tuple(boxes.groupby("frame_id", sort=False)))
    for frame in read.itertuples(index=False):
        mine = by_frame.get(frame.frame_id, boxes.iloc[:0])
        yolo = xyxy_to_yolo(mine[["x1", "y1", "x2", "y2"]].to_numpy(), frame.width, frame.height)
        text = "".join(
            f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n"
            for c, (cx, cy, w, h) in zip(mine["class_id"].tolist(), yolo, strict=True)
        )
        write_text(out / LABELS / f"{frame.frame_id}.txt", text, sync=False)
    write_json(out / COCO, coco_dict(boxes, read, class_names, model))
    write_parquet(boxes.assign(model=model), out / BOXES)
    bad = frames[frames["error"] != ""][["path", "error"]]
    if not bad.empty:
        write_csv(bad, out / BAD_FRAMES)


def coco_dict(boxes: pd.DataFrame, frames: pd.DataFrame, class_names: dict[int, str], model: str) -> dict:
    """COCO detection results as a dataset: images, annotations (with ``score``), categories.

    Category ids are the model's class ids (0-based, as in the YOLO files and the Parquet table),
    image and annotation ids count from 1 (COCO tools treat 0 as unset).
    """
    image_id = {fid: i for i, fid in enumerate(frames["frame_id"], start=1)}
    width, height = boxes["x2"] - boxes["x1"], boxes["y2"] - boxes["y1"]
    annotations = [
        {
            "id": i,
            "image_id": image_id[fid],
            "category_id": int(c),
            "bbox": [round(float(v), 2) for v in (x, y, w, h)],
            "area": round(float(w * h), 2),
            "score": round(float(s), 5),
            "iscrowd": 0,
        }
        for i, (fid, c, x, y, w, h, s) in enumerate(
            zip(
                boxes["frame_id"],
                boxes["class_id"],
                boxes["x1"],
                boxes["y1"],
                width,
                height,
                boxes["confidence"],
                strict=True,
            ),
            start=1,
        )
    ]
    images = [
        {"id": image_id[f.frame_id], "file_name": f.path, "width": int(f.width), "height": int(f.height)}
        for f in frames.itertuples(index=False)
    ]
    categories = [{"id": int(k), "name": v} for k, v in sorted(class_names.items())]
    return {
        "info": {"description": "acorn detect: sliced whole-frame detection", "model": model},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
