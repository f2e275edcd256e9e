"""Box formats: YOLO text labels and Label Studio percentages <-> internal pixel boxes.

Internally a box is a row of a DataFrame in pixel ``x1, y1, x2, y2`` of its image, with an
integer ``class_id`` (and a ``confidence`` for predictions). Pixel corners make clipping and
Label Studio percent conversion plain arithmetic; YOLO's normalised centres are only an
on-disk format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from acorn.runtime.errors import InputError

BOX_COLUMNS = ["class_id", "x1", "y1", "x2", "y2"]


class LabelFileError(InputError):
    """A label file that cannot be read; the message names the file and line."""


def empty_boxes() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="int64" if c == "class_id" else "float64") for c in BOX_COLUMNS})


def yolo_to_xyxy(yolo: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(n, 4)`` normalised cx, cy, w, h -> ``(n, 4)`` pixel x1, y1, x2, y2."""
    yolo = np.asarray(yolo, dtype=np.float64).reshape(-1, 4)
    cx, cy, w, h = (yolo[:, i] for i in range(4))
    return np.stack(
        [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], axis=1
    )


def xyxy_to_yolo(xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(n, 4)`` pixel corners -> ``(n, 4)`` normalised cx, cy, w, h."""
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = (xyxy[:, i] for i in range(4))
    return np.stack(
        [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height], axis=1
    )


def boxes_to_percent(boxes: pd.DataFrame, width: int, height: int) -> pd.DataFrame:
    """Pixel boxes -> the same rows with Label Studio's ``x, y, w, h`` in percent of the image.

    Both ways boxes reach Label Studio (the pushed pre-annotations and ``acorn serve``) use
    this, so a box looks the same whichever drew it. Corners are clipped to the image first:
    a detector may overshoot the border by a pixel, and Label Studio keeps a region that
    sticks out as it is, which then fails the pull's outside-the-image check. A box with no
    area left after clipping (entirely outside, or degenerate) is dropped. Other columns
    (``class_id``, ``confidence``) are kept; the index is reset.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    x = boxes[["x1", "x2"]].to_numpy(dtype=np.float64).clip(0.0, width)
    y = boxes[["y1", "y2"]].to_numpy(dtype=np.float64).clip(0.0, height)
    x1, x2 = x.min(axis=1), x.max(axis=1)
    y1, y2 = y.min(axis=1), y.max(axis=1)
    keep = (x2 > x1) & (y2 > y1)
    out = boxes.loc[keep].reset_index(drop=True)
    out["x"] = x1[keep] / width * 100.0
    out["y"] = y1[keep] / height * 100.0
    out["w"] = (x2 - x1)[keep] / width * 100.0
    out["h"] = (y2 - y1)[keep] / height * 100.0
    return out


_SLACK = 1e-3  # YOLO values are written rounded: a full-image box may read 1.0004


def parse_yolo_text(text: str, width: int, height: int, source: str = "<text>") -> pd.DataFrame:
    """Parse YOLO label lines into pixel boxes, naming ``source`` and the line on any error."""
    rows: list[list[float]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise LabelFileError(f"{source}:{lineno}: expected 'class cx cy w h', got {line.strip()!r}")
        try:
            values = [float(f) for f in fields]
        except ValueError as exc:
            raise LabelFileError(f"{source}:{lineno}: not a number in {line.strip()!r}") from exc
        if not values[0].is_integer() or values[0] < 0:
            raise LabelFileError(
                f"{source}:{lineno}: class id must be a non-negative integer, got {fields[0]}"
            )
        if not all(np.isfinite(values)) or any(v < 0 for v in values[1:]) or values[3] <= 0 or values[4] <= 0:
            raise LabelFileError(
                f"{source}:{lineno}: box values must be finite, positive sizes: {line.strip()!r}"
            )
        _, cx, cy, w, h = values
        if w > 1 + _SLACK or h > 1 + _SLACK:
            raise LabelFileError(f"{source}:{lineno}: box larger than the image: {line.strip()!r}")
        if cx - w / 2 >= 1 or cy - h / 2 >= 1:  # (negative values are refused above)
            raise LabelFileError(f"{source}:{lineno}: box lies outside the image: {line.strip()!r}")
        rows.append(values)
    if not rows:
        return empty_boxes()
    arr = np.asarray(rows)
    xyxy = yolo_to_xyxy(arr[:, 1:], width, height)
    df = pd.DataFrame(xyxy, columns=["x1", "y1", "x2", "y2"])
    df.insert(0, "class_id", arr[:, 0].astype("int64"))
    return df


def read_yolo_labels(path: str | Path, width: int, height: int) -> pd.DataFrame:
    path = Path(path)
    return parse_yolo_text(path.read_text(encoding="utf-8"), width, height, source=str(path))


def format_yolo(boxes: pd.DataFrame, width: int, height: int) -> str:
    """Pixel boxes -> YOLO label text; fixed precision so identical boxes give identical bytes."""
    if boxes.empty:
        return ""
    yolo = xyxy_to_yolo(boxes[["x1", "y1", "x2", "y2"]].to_numpy(), width, height)
    lines = [
        f"{int(c)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"
        for c, (cx, cy, w, h) in zip(boxes["class_id"].to_numpy(), yolo, strict=True)
    ]
    return "\n".join(lines) + "\n"


def read_classes(path: str | Path) -> list[str]:
    """One class name per line (YOLO ``classes.txt``)."""
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
