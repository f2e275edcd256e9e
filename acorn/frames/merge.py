"""Slice windows over a frame, and the merge of the slices' boxes into frame-level boxes.

Pure arithmetic on arrays, tested without a model. Two things make one object more than one
box when a frame is detected slice by slice:

- **duplicates**: with overlapping slices an object inside the shared band is seen whole by
  both slices. Class-wise NMS over the frame's whole boxes (``torchvision.ops.batched_nms``,
  the operator ultralytics' own NMS uses) keeps the more confident one. Boxes cut by an edge
  stay out of it: where a piece is the more confident, NMS would keep it and drop the whole.
- **pieces**: an object across a slice edge is seen in parts, a box in each slice, each ending
  at the edge. NMS cannot join them: two halves of a squirrel do not overlap (no overlap) or
  overlap little (IoU of a half against the whole is at most 0.5). Boxes cut by an inner slice
  edge are joined with the box that continues them on the other side of it over about the same
  stretch of the edge (1-D IoU along the edge), and with the box that holds most of them;
  joined boxes become their union, at the highest confidence among them. Joining is
  transitive, so an object on a corner of four slices becomes one box. IoU along the edge, not
  the share of the shorter piece: a weak detector fires boxes that fill a whole slice, and
  under the lenient rule each such box took in every small box across its edges, chaining a
  quarter of a 4K frame into one box (the shipped base model on a dark demo frame). The cost:
  a thin piece (a tail across the edge) next to a long one stays a box of its own.

Only boxes from different slices are joined: two boxes of one slice survived the detector's
own NMS, so they are two objects as far as the detector can tell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from acorn.data.tiling import TileGrid


def slice_windows(width: int, height: int, grid: TileGrid, overlap: float) -> pd.DataFrame:
    """Slices the size of ``grid``'s tiles over a ``width`` x ``height`` frame, sharing at least
    ``overlap`` of a slice with each neighbour: (row, col, x0, y0, x1, y1), in frame pixels.

    The size stays the tile size and slices are added as ``overlap`` grows, because the
    detector was trained on tiles: a larger slice would shrink every object at the model's
    input size, and the small ones (the ones slicing is for) would vanish. Per axis the count is
    the fewest slices that reach ``overlap``; the overlap is then spread evenly, so it may come
    out larger than asked (the tile stage's own windows, ``TileGrid.windows``, cut each axis).
    ``overlap == grid.overlap`` gives exactly the tile stage's tiles.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    cols, x_overlap = _axis_count(grid.cols, grid.overlap, overlap)
    rows, y_overlap = _axis_count(grid.rows, grid.overlap, overlap)
    xs = TileGrid(rows=1, cols=cols, overlap=x_overlap).windows(width, 1)[["x0", "x1"]].to_numpy()
    ys = TileGrid(rows=rows, cols=1, overlap=y_overlap).windows(1, height)[["y0", "y1"]].to_numpy()
    rr, cc = (a.ravel() for a in np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij"))
    return pd.DataFrame(
        {"row": rr, "col": cc, "x0": xs[cc, 0], "y0": ys[rr, 0], "x1": xs[cc, 1], "y1": ys[rr, 1]}
    )


def _axis_count(tiles: int, tile_overlap: float, overlap: float) -> tuple[int, float]:
    """(slices, their overlap) along an axis ``tiles`` tiles long at ``tile_overlap``."""
    span = tiles - (tiles - 1) * tile_overlap  # the axis length in tile sizes
    count = max(1, math.ceil((span - overlap) / (1 - overlap) - 1e-9))
    return count, (count - span) / (count - 1) if count > 1 else 0.0


@dataclass(frozen=True)
class MergeRule:
    """When two boxes of different slices are one object (see the module docstring)."""

    iou: float = 0.5  # class-wise NMS across slices: a duplicate seen whole by two slices
    edge_tol: float = (
        0.01  # a box side this close to an inner slice edge (fraction of the slice) is cut by it
    )
    # pieces join when their extents along the edge have at least this IoU, or when this share
    # of a cut piece lies inside the other box
    match: float = 0.5


@dataclass
class Merged:
    """Frame-level boxes: corners in frame pixels, and how many slice boxes each one joins."""

    xyxy: np.ndarray  # (n, 4) float64
    confidence: np.ndarray  # (n,) float64
    class_id: np.ndarray  # (n,) int64
    pieces: np.ndarray  # (n,) int64


def merge_boxes(
    xyxy: np.ndarray,
    confidence: np.ndarray,
    class_id: np.ndarray,
    windows: np.ndarray,
    frame_size: tuple[int, int],
    rule: MergeRule = MergeRule(),
) -> Merged:
    """One frame's boxes from all its slices -> one box per object, most confident first.

    ``xyxy`` are in frame pixels; ``windows`` holds, per box, the (x0, y0, x1, y1) of the slice
    that found it. An edge of the frame itself cuts nothing: an object there is cut by the
    camera, and no slice holds the rest.
    """
    import torch
    from torchvision.ops import batched_nms

    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    class_id = np.asarray(class_id, dtype=np.int64).reshape(-1)
    windows = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    cuts = _cut_sides(xyxy, windows, frame_size, rule.edge_tol)
    # NMS among whole boxes only: a cut box is part of an object by definition, and where it is
    # the more confident one NMS would keep it and drop the whole object's box. Cut boxes join.
    whole = np.flatnonzero(~cuts.any(axis=1))
    kept = batched_nms(
        torch.from_numpy(xyxy[whole]),
        torch.from_numpy(confidence[whole]),
        torch.from_numpy(class_id[whole]),
        rule.iou,
    ).numpy()
    keep = np.concatenate([whole[kept], np.flatnonzero(cuts.any(axis=1))])
    keep = keep[np.argsort(-confidence[keep], kind="stable")]  # most confident first
    xyxy, confidence, class_id = xyxy[keep], confidence[keep], class_id[keep]
    windows, cuts = windows[keep], cuts[keep]
    # a group's label is its most confident box's index (boxes come most confident first), so
    # groups numbered in label order come most confident first too
    first, group = np.unique(
        _components(len(xyxy), _same_object(xyxy, class_id, windows, cuts, rule)), return_inverse=True
    )
    n = len(first)
    out = np.empty((n, 4))
    out[:, :2] = np.inf
    out[:, 2:] = -np.inf
    np.minimum.at(out[:, 0], group, xyxy[:, 0])
    np.minimum.at(out[:, 1], group, xyxy[:, 1])
    np.maximum.at(out[:, 2], group, xyxy[:, 2])
    np.maximum.at(out[:, 3], group, xyxy[:, 3])
    return Merged(
        xyxy=out,
        confidence=confidence[first],
        class_id=class_id[first],
        pieces=np.bincount(group, minlength=n).astype(np.int64),
    )


def _cut_sides(
    xyxy: np.ndarray, windows: np.ndarray, frame_size: tuple[int, int], edge_tol: float
) -> np.ndarray:
    """(n, 4) bool: box i ends at the left, top, right, bottom edge of its slice, one inside the frame."""
    width, height = frame_size
    x1, y1, x2, y2 = xyxy.T
    wx0, wy0, wx1, wy1 = windows.T
    tol_x, tol_y = edge_tol * (wx1 - wx0), edge_tol * (wy1 - wy0)
    return np.stack(
        [
            (wx0 > 0) & (x1 - wx0 <= tol_x),
            (wy0 > 0) & (y1 - wy0 <= tol_y),
            (wx1 < width) & (wx1 - x2 <= tol_x),
            (wy1 < height) & (wy1 - y2 <= tol_y),
        ],
        axis=1,
    ).reshape(-1, 4)


def _same_object(
    xyxy: np.ndarray, class_id: np.ndarray, windows: np.ndarray, cuts: np.ndarray, rule: MergeRule
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) of boxes that are pieces of one object, i always a cut box.

    Every rule needs a cut box, so only cut boxes are compared with the rest: (cut, n) arrays,
    not (n, n) ones, which at a low ``--conf`` (100 boxes a slice, 40 slices) would be GBs."""
    rows = np.flatnonzero(cuts.any(axis=1))
    x1, y1, x2, y2 = xyxy.T
    wx0, wy0, wx1, wy1 = windows.T
    tol_x, tol_y = rule.edge_tol * (wx1 - wx0), rule.edge_tol * (wy1 - wy0)
    cut_left, cut_top, _, _ = cuts.T
    i = (rows, np.newaxis)  # the cut boxes along axis 0, every box along axis 1
    candidates = (class_id[i] == class_id) & np.any(windows[i] != windows[np.newaxis], axis=2)
    shared_x, shared_y = _shared(x1[i], x2[i], x1, x2), _shared(y1[i], y2[i], y1, y2)
    iou_y = shared_y / _spanned(y1[i], y2[i], y1, y2).clip(min=1e-9)  # 1-D IoU along a vertical edge
    iou_x = shared_x / _spanned(x1[i], x2[i], x1, x2).clip(min=1e-9)
    # i ends at its slice's right edge, j starts at the left edge of a slice further right, and
    # they meet (touch, or overlap in the band two overlapping slices share)
    across_x = (
        cuts[i][..., 2]
        & cut_left
        & (wx0 > wx0[i])
        & (x1 <= x2[i] + np.maximum(tol_x[i], tol_x))
        & (iou_y >= rule.match)
    )
    across_y = (
        cuts[i][..., 3]
        & cut_top
        & (wy0 > wy0[i])
        & (y1 <= y2[i] + np.maximum(tol_y[i], tol_y))
        & (iou_x >= rule.match)
    )
    area = ((x2 - x1).clip(min=0) * (y2 - y1).clip(min=0))[i]
    contained = shared_x * shared_y / area.clip(min=1e-9) >= rule.match  # the cut piece mostly inside j
    a, b = np.nonzero(candidates & (across_x | across_y | contained))
    return rows[a], b


def _shared(lo_i: np.ndarray, hi_i: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Length shared by intervals [lo_i, hi_i] and [lo_j, hi_j] (0 when apart), broadcast."""
    return (np.minimum(hi_i, hi) - np.maximum(lo_i, lo)).clip(min=0)


def _spanned(lo_i: np.ndarray, hi_i: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Length of the union of intervals [lo_i, hi_i] and [lo_j, hi_j] (their hull when apart), broadcast."""
    return np.maximum(hi_i, hi) - np.minimum(lo_i, lo)


def _components(n: int, pairs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Connected components of ``n`` nodes joined by ``pairs``: each node's smallest reachable index.

    Label propagation over the pairs: every round both ends of a pair take the smaller label;
    rounds are at most the longest chain of pieces (2-3 for an object on a slice corner)."""
    a, b = pairs
    labels = np.arange(n)
    while True:
        before = labels.copy()
        np.minimum.at(labels, a, labels[b])
        np.minimum.at(labels, b, labels[a])
        if np.array_equal(labels, before):
            return labels
