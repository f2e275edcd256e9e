"""Cut large frames into a grid of tiles and carry frame-level boxes into them.

A 4K webcam frame is too large for a detector at its native input size, and a small
squirrel vanishes when the frame is shrunk; tiles keep full resolution. Tile ids are
``<frame_id>_r<row>c<col>``: stable across runs, so labels, predictions and caches keyed
by tile id stay valid as new frames arrive.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from acorn.formats import BOX_COLUMNS, empty_boxes


@dataclass(frozen=True)
class TileGrid:
    """``rows`` x ``cols`` tiles; ``overlap`` is the fraction of a tile shared with its neighbour."""

    rows: int = 4
    cols: int = 6
    overlap: float = 0.0

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1:
            raise ValueError(f"tile grid needs rows >= 1 and cols >= 1, got {self.rows} x {self.cols}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"tile.overlap must be in [0, 1), got {self.overlap}")

    def windows(self, width: int, height: int) -> pd.DataFrame:
        """Pixel windows (row, col, x0, y0, x1, y1) covering the frame edge to edge."""
        xs = _axis_windows(width, self.cols, self.overlap)
        ys = _axis_windows(height, self.rows, self.overlap)
        rr, cc = np.meshgrid(np.arange(self.rows), np.arange(self.cols), indexing="ij")
        rr, cc = rr.ravel(), cc.ravel()
        return pd.DataFrame(
            {"row": rr, "col": cc, "x0": xs[cc, 0], "y0": ys[rr, 0], "x1": xs[cc, 1], "y1": ys[rr, 1]}
        )


def _axis_windows(length: int, count: int, overlap: float) -> np.ndarray:
    """Integer [start, end) windows of equal size along one axis, the last ending at ``length``."""
    size = length / (count - (count - 1) * overlap)
    step = size * (1 - overlap)
    starts = np.round(np.arange(count) * step).astype(int)
    ends = np.minimum(np.round(np.arange(count) * step + size).astype(int), length)
    ends[-1] = length
    return np.stack([starts, ends], axis=1)


def tile_id(frame_id: str, row: int, col: int) -> str:
    return f"{frame_id}_r{row}c{col}"


def clip_boxes(boxes: pd.DataFrame, window: tuple[int, int, int, int], min_visibility: float) -> pd.DataFrame:
    """Frame boxes -> boxes of one tile, in tile pixels.

    A box keeps its clipped part when at least ``min_visibility`` of its area falls inside the
    window: a squirrel cut to a sliver at the tile edge would teach the model to fire on fur.
    """
    if boxes.empty:
        return empty_boxes()
    x0, y0, x1, y1 = window
    xyxy = boxes[["x1", "y1", "x2", "y2"]].to_numpy(dtype=np.float64)
    clipped = np.stack(
        [
            np.clip(xyxy[:, 0], x0, x1),
            np.clip(xyxy[:, 1], y0, y1),
            np.clip(xyxy[:, 2], x0, x1),
            np.clip(xyxy[:, 3], y0, y1),
        ],
        axis=1,
    )
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    inside = np.clip(clipped[:, 2] - clipped[:, 0], 0, None) * np.clip(clipped[:, 3] - clipped[:, 1], 0, None)
    visibility = np.divide(inside, area, out=np.zeros_like(area), where=area > 0)
    keep = (inside > 0) & (visibility >= min_visibility)
    out = pd.DataFrame(clipped[keep] - [x0, y0, x0, y0], columns=["x1", "y1", "x2", "y2"])
    out.insert(0, "class_id", boxes["class_id"].to_numpy()[keep].astype("int64"))
    return out[BOX_COLUMNS].reset_index(drop=True)


def encode_jpeg(image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def file_sha1(path: str | Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
