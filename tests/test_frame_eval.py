"""Frame-level scores: sliced detection + merge on whole frames, scored by ultralytics' metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from acorn.frames.detect import BOX_COLUMNS, FrameDetections
from acorn.frames.evaluate import FrameScores, evaluate_frames, score_frames
from acorn.params import Params
from acorn.runtime.errors import InputError
from tests.conftest import save_detector

NAMES = {0: "squirrel"}


def detections(rows: list[tuple]) -> FrameDetections:
    """rows: (frame_id, confidence, x1, y1, x2, y2), class 0, one piece each."""
    boxes = pd.DataFrame(
        [(f, 0, "squirrel", c, x1, y1, x2, y2, 1) for f, c, x1, y1, x2, y2 in rows], columns=BOX_COLUMNS
    )
    return FrameDetections(boxes=boxes, frames=pd.DataFrame())


def truth(*boxes: tuple) -> pd.DataFrame:
    return pd.DataFrame([(0, *b) for b in boxes], columns=["class_id", "x1", "y1", "x2", "y2"])


def test_a_hit_a_miss_and_a_false_alarm_on_an_empty_frame():
    found = detections(
        [("a", 0.9, 10, 10, 50, 50), ("empty", 0.5, 0, 0, 20, 20), ("empty", 0.1, 30, 30, 40, 40)]
    )
    scores = score_frames(
        found,
        {"a": truth((10, 10, 50, 50)), "missed": truth((100, 100, 140, 150)), "empty": truth()},
        NAMES,
        threshold=0.25,
    )
    assert (scores.frames, scores.objects, scores.empty_frames) == (3, 2, 1)
    assert (scores.false_alarms, scores.false_alarm_frames) == (1, 1)  # the 0.1 box is below the threshold
    assert 0.45 < scores.map50 < 0.56  # recall 0.5 at precision 1, then nothing: half the area
    assert scores.recall == pytest.approx(0.5)


def test_all_found_scores_as_ultralytics_scores_a_perfect_detector():
    found = detections([("a", 0.9, 10, 10, 50, 50), ("b", 0.8, 0, 0, 30, 60)])
    scores = score_frames(found, {"a": truth((10, 10, 50, 50)), "b": truth((0, 0, 30, 60))}, NAMES, 0.25)
    assert scores.map50 == pytest.approx(0.995) and scores.precision == pytest.approx(1.0)
    assert scores.metrics()["frame_map50"] == pytest.approx(0.995) and scores.metrics()["frame_objects"] == 2


def _frames(folder: Path, labels: dict[str, str]) -> None:
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    rng = np.random.default_rng(0)
    for name, text in labels.items():
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(
            folder / "images" / f"{name}.jpg"
        )
        if text is not None:
            (folder / "labels" / f"{name}.txt").write_text(text)


def test_whole_test_frames_are_detected_in_slices_and_scored(tmp_path):
    weights = save_detector(tmp_path / "model.pt", ["squirrel"], bias=1.0)
    _frames(tmp_path / "frames", {"f0": "0 0.5 0.5 0.3 0.4\n", "f1": ""})
    p = Params().with_overrides({"tile.rows": 2, "tile.cols": 2, "model.imgsz": 64})
    scores = evaluate_frames(weights, tmp_path / "frames", p, overlap=0.1)
    assert isinstance(scores, FrameScores)
    assert (scores.frames, scores.objects, scores.empty_frames) == (2, 1, 1)
    assert scores.false_alarm_frames == 1  # the random detector fires everywhere at 0.73
    assert 0.0 <= scores.map50 <= 1.0 and scores.seconds > 0


def test_a_test_frame_without_a_label_file_is_named(tmp_path):
    weights = save_detector(tmp_path / "model.pt", ["squirrel"])
    _frames(tmp_path / "frames", {"f0": "", "nolabel": None})
    p = Params().with_overrides({"tile.rows": 1, "tile.cols": 2, "model.imgsz": 64})
    with pytest.raises(InputError, match=r"labels/nolabel\.txt: no label file for test frame"):
        evaluate_frames(weights, tmp_path / "frames", p)
    with pytest.raises(InputError, match="no frames to score"):
        evaluate_frames(weights, tmp_path / "nowhere", p)


def test_tile_boxes_are_shifted_into_their_frame_merged_across_the_edge_and_scored(tmp_path):
    """A squirrel cut by the vertical tile edge of a 128 x 96 frame (2 x 2 tiles of 64 x 48): each
    half found on its own tile is one box on the frame, a perfect hit; junk below the threshold is
    left out, and a box on the empty frame is a false alarm."""
    from acorn.frames.evaluate import frames_from_tiles, score_frames_from_tiles

    _frames(tmp_path / "frames", {"f0": "0 0.5 0.5 0.25 0.25\n", "f1": ""})  # f0: (48, 36)-(80, 60)
    p = Params().with_overrides({"tile.rows": 2, "tile.cols": 2})
    tiles = pd.DataFrame(
        [
            ("f0_r0c0", 0, 0.9, 48, 36, 64, 48),  # the four quarters of the squirrel, tile pixels
            ("f0_r0c1", 0, 0.8, 0, 36, 16, 48),
            ("f0_r1c0", 0, 0.7, 48, 0, 64, 12),
            ("f0_r1c1", 0, 0.6, 0, 0, 16, 12),
            ("f0_r1c1", 0, 0.1, 30, 30, 40, 40),  # under rank.threshold: not drawn, not scored
            ("f1_r0c0", 0, 0.5, 5, 5, 20, 20),
        ],
        columns=["tile_id", "class_id", "confidence", "x1", "y1", "x2", "y2"],
    )
    found = frames_from_tiles(tiles, tmp_path / "frames", p)
    f0 = found.boxes[found.boxes["frame_id"] == "f0"]
    assert len(f0) == 1 and f0[["x1", "y1", "x2", "y2"]].iloc[0].tolist() == [48, 36, 80, 60]
    assert f0["pieces"].iloc[0] == 4
    scores = score_frames_from_tiles(tiles, tmp_path / "frames", p, NAMES)
    assert (scores.frames, scores.objects, scores.false_alarm_frames) == (2, 1, 1)
    assert scores.recall == pytest.approx(1.0) and scores.map50 > 0.9


def test_a_tile_miss_is_no_miss_where_the_whole_frame_finds_its_object(tmp_path):
    """f0's squirrel (40, 10)-(80, 40) is cut by the edge at x = 64: its left piece, found on tile
    r0c0, covers 60% of it, so on the whole frame it is found; the right piece, missed on tile r0c1,
    is a tile miss only. f1's squirrel is found nowhere: a miss on the frame too."""
    from acorn.frames.evaluate import found_on_frames

    _frames(tmp_path / "frames", {"f0": "0 0.46875 0.260417 0.3125 0.3125\n", "f1": "0 0.2 0.2 0.1 0.1\n"})
    p = Params().with_overrides({"tile.rows": 2, "tile.cols": 2})
    columns = ["tile_id", "class_id", "confidence", "x1", "y1", "x2", "y2"]
    tile_boxes = pd.DataFrame([("f0_r0c0", 0, 0.9, 40, 10, 64, 40)], columns=columns)
    missed = pd.DataFrame(
        [("f0_r0c1", 0, 0, 10, 16, 40), ("f1_r0c0", 0, 19.2, 14.4, 32.0, 24.0)],
        columns=["tile_id", "class_id", "x1", "y1", "x2", "y2"],
    )
    assert found_on_frames(missed, tile_boxes, tmp_path / "frames", p).tolist() == [True, False]
    assert found_on_frames(missed.iloc[:0], tile_boxes, tmp_path / "frames", p).empty


def test_test_tiles_of_another_grid_are_named_and_a_turned_frame_is_measured_upright(tmp_path):
    from acorn.frames.evaluate import frames_from_tiles, upright_size

    _frames(tmp_path / "frames", {"f0": ""})
    tiles = pd.DataFrame(
        [("f0_r3c0", 0, 0.9, 1, 1, 5, 5)],
        columns=["tile_id", "class_id", "confidence", "x1", "y1", "x2", "y2"],
    )
    with pytest.raises(InputError, match=r"test tile f0_r3c0 does not fit frame .*f0.jpg cut by .*\(2 x 2\)"):
        frames_from_tiles(
            tiles, tmp_path / "frames", Params().with_overrides({"tile.rows": 2, "tile.cols": 2})
        )
    image = Image.new("RGB", (128, 96))
    exif = image.getexif()
    exif[0x0112] = 6  # stored on its side: shown 96 wide, 128 high
    image.save(tmp_path / "turned.jpg", exif=exif)
    assert upright_size(tmp_path / "turned.jpg") == (96, 128)
    assert upright_size(tmp_path / "frames" / "images" / "f0.jpg") == (128, 96)
