"""Whole-frame detection (``acorn detect``, acorn.frames): the merge on bare box arrays, the
slice geometry, and a real run of the command on small synthetic frames."""

from __future__ import annotations

import numpy as np
import pytest

from acorn.frames.merge import merge_boxes, slice_windows
from acorn.tiling import TileGrid

FRAME = (1280, 720)  # a 2 x 2 grid of 640 x 360 slices, inner edges at x = 640 and y = 360
LEFT, RIGHT = (0, 0, 640, 360), (640, 0, 1280, 360)
BOTTOM_LEFT, BOTTOM_RIGHT = (0, 360, 640, 720), (640, 360, 1280, 720)


def merge(boxes, windows, conf=None, cls=None):
    n = len(boxes)
    conf = np.linspace(0.9, 0.5, n) if conf is None else conf
    cls = np.zeros(n, dtype=np.int64) if cls is None else cls
    return merge_boxes(np.array(boxes, float), conf, cls, np.array(windows, float), FRAME)


def test_an_object_cut_by_a_slice_edge_is_one_box():
    # a squirrel from x 600 to 700: its body in the left slice, its head (shorter) in the right
    merged = merge([(600, 100, 640, 160), (640, 110, 700, 150)], [LEFT, RIGHT], conf=np.array([0.4, 0.8]))
    assert merged.xyxy.tolist() == [[600, 100, 700, 160]]
    assert merged.confidence.tolist() == [0.8] and merged.pieces.tolist() == [2]


def test_an_object_on_a_corner_of_four_slices_is_one_box():
    pieces = [(600, 330, 640, 360), (640, 330, 690, 360), (600, 360, 640, 400), (640, 360, 690, 400)]
    merged = merge(pieces, [LEFT, RIGHT, BOTTOM_LEFT, BOTTOM_RIGHT])
    assert merged.xyxy.tolist() == [[600, 330, 690, 400]] and merged.pieces.tolist() == [4]


def test_a_box_a_few_pixels_short_of_the_edge_still_joins():
    # the detector's side lands 3 px inside the slice (tolerance: 1% of 640 = 6.4 px)
    merged = merge([(600, 100, 637, 160), (642, 110, 700, 150)], [LEFT, RIGHT])
    assert len(merged.xyxy) == 1


def test_objects_that_only_look_cut_stay_apart():
    merged = merge(
        [
            (600, 100, 640, 160),  # cut at x 640 ...
            (640, 200, 700, 260),  # ... but the box across the edge is lower: another squirrel
            (500, 400, 600, 500),  # not at an edge
            (640, 400, 700, 500),  # at the edge, nothing on the other side
        ],
        [LEFT, RIGHT, BOTTOM_LEFT, BOTTOM_RIGHT],
    )
    assert len(merged.xyxy) == 4 and merged.pieces.tolist() == [1, 1, 1, 1]


def test_pieces_of_other_classes_or_of_one_slice_stay_apart():
    other_class = merge([(600, 100, 640, 160), (640, 110, 700, 150)], [LEFT, RIGHT], cls=np.array([0, 1]))
    same_slice = merge([(600, 100, 640, 160), (560, 110, 600, 150)], [LEFT, LEFT])
    assert len(other_class.xyxy) == 2 and len(same_slice.xyxy) == 2


def test_the_frame_border_cuts_nothing():
    # two boxes touching across x = 0 cannot exist; two at the frame's right border are two objects
    merged = merge([(1200, 100, 1280, 160), (1200, 170, 1280, 230)], [RIGHT, RIGHT])
    assert len(merged.xyxy) == 2


def test_overlapping_slices_keep_one_box_of_a_duplicate_and_join_a_piece_to_its_whole():
    left, right = (0, 0, 700, 360), (580, 0, 1280, 360)  # a shared band from x 580 to 700
    merged = merge(
        [
            (600, 50, 650, 90),  # whole in the band: seen by both slices
            (601, 51, 651, 91),
            (660, 200, 700, 260),  # the left slice sees the part up to its edge at 700 ...
            (660, 198, 760, 262),  # ... the right slice sees the whole squirrel
        ],
        [left, right, left, right],
        conf=np.array([0.9, 0.8, 0.7, 0.6]),
    )
    assert merged.xyxy.tolist() == [[600, 50, 650, 90], [660, 198, 760, 262]]
    assert merged.confidence.tolist() == [0.9, 0.7] and merged.pieces.tolist() == [1, 2]


def test_no_boxes_merge_to_no_boxes():
    merged = merge(np.zeros((0, 4)), np.zeros((0, 4)))
    assert merged.xyxy.shape == (0, 4) and len(merged.confidence) == 0


def test_slices_at_the_tile_overlap_are_the_tile_stage_tiles():
    grid = TileGrid(rows=4, cols=6, overlap=0.0)
    assert slice_windows(3840, 2160, grid, 0.0).equals(grid.windows(3840, 2160))
    overlapped = TileGrid(rows=4, cols=6, overlap=0.25)
    assert slice_windows(3840, 2160, overlapped, 0.25).equals(overlapped.windows(3840, 2160))


@pytest.mark.parametrize("overlap", [0.1, 0.2, 0.5])
def test_overlapping_slices_keep_the_tile_size_and_cover_the_frame(overlap):
    windows = slice_windows(3840, 2160, TileGrid(rows=4, cols=6), overlap)
    widths, heights = windows["x1"] - windows["x0"], windows["y1"] - windows["y0"]
    assert widths.between(639, 641).all() and heights.between(539, 541).all()
    assert windows["x0"].min() == 0 and windows["x1"].max() == 3840 and windows["y1"].max() == 2160
    first_row = windows[windows["row"] == 0].sort_values("col")
    shared = first_row["x1"].to_numpy()[:-1] - first_row["x0"].to_numpy()[1:]
    assert (shared >= overlap * 640 - 1).all()
