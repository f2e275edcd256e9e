import numpy as np
import pandas as pd
import pytest

from acorn.data.formats import (
    LabelFileError,
    boxes_to_percent,
    format_yolo,
    parse_yolo_text,
    xyxy_to_yolo,
    yolo_to_xyxy,
)


def test_yolo_round_trip_is_exact_to_six_decimals():
    rng = np.random.default_rng(1)
    xyxy = np.sort(rng.uniform(0, 640, (50, 4)).reshape(50, 2, 2), axis=1).transpose(0, 2, 1).reshape(50, 4)
    back = yolo_to_xyxy(xyxy_to_yolo(xyxy, 640, 540), 640, 540)
    assert np.allclose(back, xyxy)


def test_format_then_parse_keeps_boxes_within_a_pixel():
    boxes = pd.DataFrame(
        {"class_id": [0, 1], "x1": [1.5, 100], "y1": [2, 200], "x2": [30, 639], "y2": [40, 539]}
    )
    parsed = parse_yolo_text(format_yolo(boxes, 640, 540), 640, 540)
    assert parsed["class_id"].tolist() == [0, 1]
    assert (
        np.abs(parsed[["x1", "y1", "x2", "y2"]].to_numpy() - boxes[["x1", "y1", "x2", "y2"]].to_numpy()).max()
        < 0.01
    )


def test_boxes_at_and_just_past_the_edge_are_kept():
    """Rounded full-image boxes (w 1.0004) and boxes whose centre is past the edge but which still
    overlap the image are real boxes; only one wholly outside, or larger than the image, is not."""
    boxes = parse_yolo_text("0 0.5 0.5 1.0004 1.0\n0 1.02 0.5 0.1 0.1\n", 100, 100)
    assert len(boxes) == 2


def test_empty_label_means_no_boxes():
    assert parse_yolo_text("", 10, 10).empty
    assert format_yolo(parse_yolo_text("\n", 10, 10), 10, 10) == ""


@pytest.mark.parametrize(
    "line,msg",
    [
        ("0 0.5 0.5 0.1", "expected"),
        ("x 0.5 0.5 0.1 0.1", "not a number"),
        ("0.5 0.5 0.5 0.1 0.1", "class id"),
        ("0 0.5 0.5 0 0.1", "positive"),
        ("0 nan 0.5 0.1 0.1", "finite"),
        ("0 1.5 0.5 0.1 0.1", "outside the image"),
        ("0 0.5 1.06 0.1 0.1", "outside the image"),
        ("0 0.5 0.5 1.2 0.5", "larger than the image"),
    ],
)
def test_bad_lines_name_file_and_line(line, msg):
    with pytest.raises(LabelFileError, match=rf"f\.txt:2: .*{msg}"):
        parse_yolo_text("0 0.5 0.5 0.1 0.1\n" + line, 10, 10, source="f.txt")


def test_percent_boxes_are_clipped_to_the_image_and_keep_their_columns():
    boxes = pd.DataFrame(
        {
            "class_id": [0, 1, 0, 1],
            "confidence": [0.9, 0.8, 0.7, 0.6],
            "x1": [64.0, -5.0, 700.0, 100.0],
            "y1": [54.0, 530.0, 10.0, 100.0],
            "x2": [128.0, 30.0, 720.0, 100.0],
            "y2": [108.0, 545.0, 20.0, 200.0],
        }
    )
    got = boxes_to_percent(boxes, 640, 540)
    # the box beyond the right edge and the zero-width one have nothing left to show
    assert got["confidence"].tolist() == [0.9, 0.8] and got["class_id"].tolist() == [0, 1]
    assert got.loc[0, ["x", "y", "w", "h"]].tolist() == pytest.approx([10.0, 10.0, 10.0, 10.0])
    # overshooting by 5 px on two sides: clipped to the corner, never below 0 or past 100
    assert got.loc[1, ["x", "y", "w", "h"]].tolist() == pytest.approx([0.0, 530 / 5.4, 30 / 6.4, 10 / 5.4])
    assert (got["x"] + got["w"]).max() <= 100.0 and (got["y"] + got["h"]).max() <= 100.0


def test_percent_boxes_accept_swapped_corners_and_no_boxes():
    swapped = pd.DataFrame({"class_id": [0], "x1": [128.0], "y1": [108.0], "x2": [64.0], "y2": [54.0]})
    assert boxes_to_percent(swapped, 640, 540).loc[0, ["x", "y", "w", "h"]].tolist() == pytest.approx(
        [10.0, 10.0, 10.0, 10.0]
    )
    empty = boxes_to_percent(pd.DataFrame(columns=["class_id", "x1", "y1", "x2", "y2"]), 640, 540)
    assert empty.empty and {"x", "y", "w", "h"} <= set(empty.columns)
