"""The label errors people make, injected on purpose: a noise model for the oracle.

A review queue for suspect labels (acorn.labeling.review) can only be measured against errors
whose truth is known, so the oracle (acorn.labeling.oracle) can answer with the four kinds of
error labelers make, at rates set in ``labeling.noise`` (params.yaml; all 0, no noise, by
default), and records each error it made:

- **emptied**: a tile with objects answered as empty (``emptied``: the share of tiles with
  objects); all of its boxes are recorded, as ``emptied``. No other error is drawn on it.
- **missed**: a true box left out (``missed``: the share of true boxes, on tiles not emptied),
  small ones first: a box is missed with probability ``2 * missed * (1 - q)``, ``q`` being its
  area's quantile among the pool's true boxes, so the smallest are missed at twice the rate,
  the largest never, and the pool's rate is ``missed`` (hence ``missed`` <= 0.5).
- **shifted**: a true box drawn displaced (``shifted``: the share of true boxes kept), moved
  diagonally so that its IoU with the truth is drawn uniformly from ``SHIFT_IOU`` (0.2 to 0.5:
  below the 0.5 at which mAP50 counts a box found, so a shifted label really teaches a wrong
  box), then kept inside the tile.
- **spurious**: a box drawn where there is nothing (``spurious``: spurious boxes per true box
  of the pool): a tile gets one with probability ``spurious * boxes_per_tile`` (the pool's mean),
  its size drawn from the pool's box areas, its place uniform over the tile.

Each tile's errors are drawn from its own random stream, seeded by ``labeling.noise.seed`` and
the tile id (sha256, not Python's salted ``hash``): a resumed or repeated run labels every tile
the same, whatever was labeled before it, and every random number is drawn whether used or not,
so raising one rate adds errors of that kind without moving the others. The pool's statistics
(box area quantiles, boxes per tile, classes) are read once from the truth folder and kept in
the oracle's state (``PoolReference``), so tiles added to the pool later do not change them.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from acorn.data.formats import format_yolo, read_yolo_labels
from acorn.labeling.cost import box_iou
from acorn.params import NoiseParams
from acorn.runtime.errors import InputError

KINDS = ("emptied", "missed", "shifted", "spurious")
SHIFT_IOU = (0.2, 0.5)
SPURIOUS_ASPECT = (0.5, 2.0)  # width / height of a spurious box, drawn log-uniformly
QUANTILES = 101  # the pool's box areas are kept as this many quantiles (0%, 1%, ..., 100%)
_CORNERS = ["x1", "y1", "x2", "y2"]
# one row per injected error: the true box (none for spurious) and the box labeled (none for a
# box left out), in pixels; iou: of the two, for shifted
RECORD_COLUMNS = [
    "tile_id",
    "kind",
    "class_id",
    *(f"truth_{c}" for c in _CORNERS),
    *(f"label_{c}" for c in _CORNERS),
    "iou",
]


def active(noise: NoiseParams | None) -> bool:
    """Whether ``noise`` injects anything (the default, all rates 0, does not)."""
    return noise is not None and any(getattr(noise, kind) > 0 for kind in KINDS)


@dataclass(frozen=True)
class PoolReference:
    """What the pool's truth looks like: box areas as a share of their tile (quantiles), mean
    true boxes per tile and the class ids present. Missed and spurious boxes are drawn against it."""

    area_quantiles: tuple[float, ...]
    boxes_per_tile: float
    class_ids: tuple[int, ...]

    @classmethod
    def from_truth(cls, truth_dir: Path) -> PoolReference:
        """Read every ``<tile_id>.txt`` of ``truth_dir`` (YOLO, normalised: no image sizes needed)."""
        files = sorted(Path(truth_dir).glob("*.txt"))
        return cls.from_files(files, len(files))

    @classmethod
    def from_files(cls, files: list[Path], tiles: int) -> PoolReference:
        """The YOLO label ``files`` of a pool of ``tiles`` items (those without objects may have none)."""
        rows = [_yolo_rows(f) for f in files]
        table = np.concatenate(rows) if rows else np.empty((0, 5))
        areas = table[:, 3] * table[:, 4]
        quantiles = np.quantile(areas, np.linspace(0, 1, QUANTILES)) if len(areas) else np.array([])
        return cls(
            area_quantiles=tuple(float(q) for q in quantiles),
            boxes_per_tile=len(table) / tiles if tiles else 0.0,
            class_ids=tuple(sorted({int(c) for c in table[:, 0]})),
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PoolReference:
        return cls(tuple(data["area_quantiles"]), float(data["boxes_per_tile"]), tuple(data["class_ids"]))

    def area_quantile(self, areas: np.ndarray) -> np.ndarray:
        """Each area's quantile (0: the pool's smallest box, 1: its largest); 0.5 with no pool boxes."""
        if not self.area_quantiles:
            return np.full(len(areas), 0.5)
        levels = np.linspace(0, 1, len(self.area_quantiles))
        return np.interp(areas, self.area_quantiles, levels)

    def area_at(self, quantile: float) -> float:
        return float(np.interp(quantile, np.linspace(0, 1, len(self.area_quantiles)), self.area_quantiles))


def _yolo_rows(path: Path) -> np.ndarray:
    """A YOLO label file's rows ``class cx cy w h``, read fast: the pool's truth is thousands of files."""
    values = path.read_text(encoding="utf-8").split()
    try:
        if len(values) % 5:
            raise ValueError
        return np.array(values, dtype=np.float64).reshape(-1, 5)
    except ValueError:
        raise InputError(f"{path}: not a YOLO label file (5 numbers a line: class cx cy w h)") from None


def tile_rng(tile_id: str, seed: int) -> np.random.Generator:
    """The tile's own random stream: the same for the same tile and seed, on any machine."""
    digest = int.from_bytes(hashlib.sha256(str(tile_id).encode("utf-8")).digest()[:8], "big")
    return np.random.default_rng([seed & 0xFFFFFFFF, digest])


def corrupt(
    tile_id: str,
    truth: np.ndarray,
    width: int,
    height: int,
    noise: NoiseParams,
    reference: PoolReference,
) -> tuple[np.ndarray, list[dict]]:
    """The answer a noisy labeler gives for one tile, and the errors in it.

    ``truth``: the tile's true boxes, ``(n, 5)`` rows ``class_id, x1, y1, x2, y2`` in pixels.
    Returns the boxes labeled (same layout) and one ``RECORD_COLUMNS`` dict per injected error.
    Arrays, not data frames: the oracle calls this once per tile.
    """
    truth = np.asarray(truth, dtype=np.float64).reshape(-1, 5)
    n = len(truth)
    rng = tile_rng(tile_id, noise.seed)
    # every draw is made, used or not: one kind's rate never moves another kind's errors
    u_empty = rng.random()
    u_miss, u_shift, u_iou = rng.random(n), rng.random(n), rng.random(n)
    signs = rng.choice([-1.0, 1.0], size=(n, 2))
    u_spur, u_area, u_aspect, u_class = rng.random(4)
    u_xy = rng.random(2)

    classes, xyxy = truth[:, 0].astype(np.int64), truth[:, 1:]
    if n and u_empty < noise.emptied:
        return truth[:0], [
            _record(tile_id, "emptied", c, box, None) for c, box in zip(classes, xyxy, strict=True)
        ]

    areas = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]) / (width * height)
    missed = u_miss < np.minimum(1.0, 2 * noise.missed * (1 - reference.area_quantile(areas)))
    shifted = ~missed & (u_shift < noise.shifted)
    labeled = xyxy.copy()
    if shifted.any():
        target = SHIFT_IOU[0] + u_iou[shifted] * (SHIFT_IOU[1] - SHIFT_IOU[0])
        labeled[shifted] = _shift(xyxy[shifted], target, signs[shifted], width, height)
    records = [_record(tile_id, "missed", classes[i], xyxy[i], None) for i in np.flatnonzero(missed)]
    ious = box_iou(xyxy[shifted], labeled[shifted])
    records += [
        _record(tile_id, "shifted", classes[i], xyxy[i], labeled[i], iou)
        for i, iou in zip(np.flatnonzero(shifted), ious, strict=True)
    ]
    answer = np.column_stack([classes, labeled])[~missed]

    if reference.area_quantiles and u_spur < min(1.0, noise.spurious * reference.boxes_per_tile):
        area = reference.area_at(u_area) * width * height
        low, high = np.log(SPURIOUS_ASPECT)
        aspect = float(np.exp(low + u_aspect * (high - low)))
        w, h = min(width, np.sqrt(area * aspect)), min(height, np.sqrt(area / aspect))
        x1, y1 = u_xy[0] * (width - w), u_xy[1] * (height - h)
        box = np.array([x1, y1, x1 + w, y1 + h])
        ids = reference.class_ids or (0,)
        c = ids[min(int(u_class * len(ids)), len(ids) - 1)]
        answer = np.vstack([answer, [c, *box]])
        records.append(_record(tile_id, "spurious", c, None, box))
    return answer, records


def noisy_label_text(
    tile_id: str,
    truth_file: Path | None,
    width: int,
    height: int,
    noise: NoiseParams,
    reference: PoolReference,
) -> tuple[str, list[dict]]:
    """What a noisy labeler answers for one item, as YOLO text, and the errors in it: ``corrupt``
    on its true labels (``truth_file``; None: no objects), as the oracle answers a tile of the same
    id and noise seed."""
    truth = (
        read_yolo_labels(truth_file, width, height)[["class_id", *_CORNERS]]
        if truth_file is not None
        else pd.DataFrame(columns=["class_id", *_CORNERS])
    )
    boxes, errors = corrupt(tile_id, truth.to_numpy(dtype="float64"), width, height, noise, reference)
    answer = pd.DataFrame(boxes, columns=["class_id", *_CORNERS]).astype({"class_id": "int64"})
    return format_yolo(answer, width, height), errors


def records_table(records: list[dict]) -> pd.DataFrame:
    """``corrupt``'s records as one ``RECORD_COLUMNS`` table."""
    return pd.DataFrame(records, columns=RECORD_COLUMNS).astype({"class_id": "int64", "iou": "float64"})


def _shift(
    boxes: np.ndarray, target_iou: np.ndarray, signs: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Move each box by ``a`` times its width and height, ``a`` chosen so that IoU = ``target_iou``:
    the overlap of a box moved so is ``(1 - a)^2`` of its area, so IoU = o / (2 - o) with
    o = (1 - a)^2. A move that would leave the tile goes the other way; what still sticks out is cut."""
    a = 1 - np.sqrt(2 * target_iou / (1 + target_iou))
    size = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)
    step = a[:, None] * size * signs
    low, high = boxes[:, :2] + step, boxes[:, 2:] + step
    outside = (low < 0) | (high > np.array([width, height]))
    step = np.where(outside, -step, step)
    moved = boxes + np.concatenate([step, step], axis=1)
    return np.clip(moved, 0, np.array([width, height, width, height], dtype=np.float64))


def _record(
    tile_id: str,
    kind: str,
    class_id: int,
    truth: np.ndarray | None,
    label: np.ndarray | None,
    iou: float = np.nan,
) -> dict:
    nan4 = [np.nan] * 4
    return {
        "tile_id": tile_id,
        "kind": kind,
        "class_id": int(class_id),
        **dict(
            zip([f"truth_{c}" for c in _CORNERS], nan4 if truth is None else map(float, truth), strict=True)
        ),
        **dict(
            zip([f"label_{c}" for c in _CORNERS], nan4 if label is None else map(float, label), strict=True)
        ),
        "iou": float(iou),
    }
