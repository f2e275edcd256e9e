"""Whole-frame detection (``acorn detect``, acorn.frames): the merge on bare box arrays, the
slice geometry, and a real run of the command on small synthetic frames."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acorn.data.tiling import TileGrid
from acorn.frames.detect import BOX_COLUMNS
from acorn.frames.merge import merge_boxes, slice_windows
from tests.conftest import REPO, tool_env

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


# --- acorn detect, for real: synthetic frames, the shipped base model, a subprocess -------------

BASE = REPO / "models" / "base.pt"


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    """Two small demo frames (960 x 540: the default 4 x 6 grid cuts 160 x 135 slices)."""
    from acorn.demo.synth import make_webcam_set

    root = tmp_path_factory.mktemp("frames")
    make_webcam_set(root, 2, width=960, height=540, seed=3)
    return root / "images"


def acorn_detect(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    shutil.copy(REPO / "params.yaml", cwd / "params.yaml")
    return subprocess.run(
        ["acorn", "detect", *args], cwd=cwd, env=tool_env(cwd), capture_output=True, text=True, timeout=600
    )


def test_acorn_detect_writes_yolo_coco_and_parquet(frames, tmp_path):
    proc = acorn_detect([str(frames), "--model", str(BASE), "--out", "out", "--conf", "0.05"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    boxes = pd.read_parquet(out / "boxes.parquet")
    assert list(boxes.columns) == [*BOX_COLUMNS, "model"]
    assert len(boxes) > 0, "the base model finds nothing above 0.05 on two demo frames"
    assert set(boxes["frame_id"]) <= {"frame_00000", "frame_00001"} and (boxes["model"] == "base").all()
    assert (boxes["x1"] >= 0).all() and (boxes["x2"] <= 960).all() and (boxes["y2"] <= 540).all()
    assert (boxes["x2"] > boxes["x1"]).all() and (boxes["pieces"] >= 1).all()
    assert boxes["confidence"].between(0.05, 1).all() and (boxes["class_name"] == "squirrel").all()

    coco = json.loads((out / "detections.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["squirrel"]
    assert [(i["width"], i["height"]) for i in coco["images"]] == [(960, 540)] * 2
    assert Path(coco["images"][0]["file_name"]).name == "frame_00000.jpg"
    assert len(coco["annotations"]) == len(boxes)
    ids = {i["id"] for i in coco["images"]}
    for ann in coco["annotations"]:
        assert ann["image_id"] in ids and ann["category_id"] == 0 and ann["iscrowd"] == 0
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and ann["area"] == pytest.approx(w * h, rel=0.01) and 0 < ann["score"] <= 1

    for frame_id in ("frame_00000", "frame_00001"):
        lines = (out / "labels" / f"{frame_id}.txt").read_text().splitlines()
        assert len(lines) == (boxes["frame_id"] == frame_id).sum()
        values = np.array([line.split() for line in lines], dtype=float).reshape(-1, 5)
        assert (values[:, 0] == 0).all() and ((values[:, 1:] >= 0) & (values[:, 1:] <= 1)).all()
    assert not (out / "bad_frames.csv").exists()


def test_the_champion_is_the_default_model(frames, tmp_path):
    """As acorn serve finds it: <register.model_name>@champion in the repository's store."""
    from acorn.model.registry import register, tracking_uri

    with pytest.MonkeyPatch.context() as mp:  # register() exports the URI: undo it after
        mp.setenv("MLFLOW_TRACKING_URI", tracking_uri(tmp_path))
        settings = {"imgsz": 320, "device": "cpu", "batch": 8, "conf_floor": 0.01, "iou": 0.6, "max_det": 100}
        register(BASE, {"map50": 0.5}, "acorn-detector", "map50", settings, root=tmp_path)
    proc = acorn_detect([str(frames / "frame_00000.jpg"), "--out", "out"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    coco = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert coco["info"]["model"] == "acorn-detector-v1" and len(coco["images"]) == 1


def test_without_a_champion_or_a_model_file_the_error_names_what_is_missing(frames, tmp_path):
    no_registry = acorn_detect([str(frames)], tmp_path)
    assert no_registry.returncode == 1
    assert f"{tmp_path / 'mlflow.db'}: no model registry here" in no_registry.stderr
    assert "--model" in no_registry.stderr and "Traceback" not in no_registry.stderr
    missing = acorn_detect([str(frames), "--model", "nowhere/best.pt"], tmp_path)
    assert missing.returncode == 1 and "nowhere/best.pt: model weights not found" in missing.stderr


def test_an_unreadable_frame_is_named(frames, tmp_path):
    folder = tmp_path / "frames"
    shutil.copytree(frames, folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    stop = acorn_detect([str(folder), "--model", str(BASE), "--on-bad-frame", "stop"], tmp_path)
    assert stop.returncode == 1 and "Traceback" not in stop.stderr
    assert f"{folder / 'broken.jpg'}: not an image PIL can read" in stop.stderr

    skip = acorn_detect([str(folder), "--model", str(BASE), "--out", "out"], tmp_path)  # tile.on_bad_frame
    assert skip.returncode == 0, skip.stderr
    assert f"skipped: {folder / 'broken.jpg'}" in skip.stderr
    bad = pd.read_csv(tmp_path / "out" / "bad_frames.csv")
    assert bad["path"].tolist() == [str(folder / "broken.jpg")]
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == [
        "frame_00000.txt",
        "frame_00001.txt",
    ]
    assert len(json.loads((tmp_path / "out" / "detections.json").read_text())["images"]) == 2


def test_a_missing_source_is_named(tmp_path):
    proc = acorn_detect(["nowhere", "--model", str(BASE)], tmp_path)
    assert proc.returncode == 1 and "nowhere: no such file or folder" in proc.stderr


@pytest.mark.parametrize("overlap", [0.0, 0.1, 0.2])
def test_a_perfect_slice_detector_merges_back_to_the_frame_truth(overlap, tmp_path):
    """The demo's truth cut into each slice (what a perfect detector would find there) merges
    back to the truth box for box: the rule joins what an edge cut and nothing else, on real
    layouts (squirrels side by side, at edges and corners)."""
    from acorn.data.formats import read_yolo_labels
    from acorn.data.tiling import clip_boxes
    from acorn.demo.synth import make_webcam_set

    width, height = 1920, 1080
    make_webcam_set(tmp_path, 24, width=width, height=height, seed=7)
    windows = slice_windows(width, height, TileGrid(), overlap)[["x0", "y0", "x1", "y1"]].to_numpy()
    cut = 0
    for label in sorted((tmp_path / "labels").glob("*.txt")):
        truth = read_yolo_labels(label, width, height)
        pieces = [(clip_boxes(truth, tuple(w), 1e-9), w) for w in windows]
        xyxy = np.concatenate([b[["x1", "y1", "x2", "y2"]].to_numpy() + w[[0, 1, 0, 1]] for b, w in pieces])
        owner = np.concatenate([np.repeat([w], len(b), axis=0) for b, w in pieces]).reshape(-1, 4)
        merged = merge_boxes(xyxy, np.full(len(xyxy), 0.9), np.zeros(len(xyxy)), owner, (width, height))
        expected = truth[["x1", "y1", "x2", "y2"]].to_numpy().clip(0, [width, height, width, height])
        assert sorted(map(tuple, merged.xyxy.round(3))) == sorted(map(tuple, expected.round(3))), label.name
        cut += int((merged.pieces > 1).sum())
    assert cut >= 5  # the frames do put squirrels across slice edges
