"""The synthetic squirrel data: deterministic bytes, valid YOLO folders, metadata, and the domain gap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from acorn.demo import synth as demo

W, H = 640, 360


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _boxes(label: Path) -> list[tuple[float, float, float, float]]:
    rows = []
    for line in label.read_text().splitlines():
        parts = line.split()
        assert len(parts) == 5 and parts[0] == "0", line
        assert all(len(p.split(".")[1]) == 6 for p in parts[1:]), line
        cx, cy, w, h = (float(p) for p in parts[1:])
        assert 0 < w <= 1 and 0 < h <= 1, line
        assert cx - w / 2 >= -1e-6 and cx + w / 2 <= 1 + 1e-6, line
        assert cy - h / 2 >= -1e-6 and cy + h / 2 <= 1 + 1e-6, line
        rows.append((cx, cy, w, h))
    return rows


@pytest.fixture(scope="module")
def webcam(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("webcam")
    return out, demo.make_webcam_set(out, 24, width=W, height=H, seed=3)


def test_webcam_is_deterministic_and_independent_of_count(tmp_path: Path, webcam) -> None:
    first, _ = webcam
    demo.make_webcam_set(tmp_path / "a", 24, width=W, height=H, seed=3)
    assert _files(tmp_path / "a") == _files(first)
    # Frame i depends on (seed, i) only: a shorter run reproduces the same first frames.
    demo.make_webcam_set(tmp_path / "b", 5, width=W, height=H, seed=3)
    short = _files(tmp_path / "b")
    assert {k: v for k, v in _files(first).items() if k in short and k != "metadata.csv"} == {
        k: v for k, v in short.items() if k != "metadata.csv"
    }
    # Another seed gives other images.
    demo.make_webcam_set(tmp_path / "c", 3, width=W, height=H, seed=4)
    img = "images/frame_00000.jpg"
    assert _files(tmp_path / "c")[img] != _files(first)[img]


def test_webcam_layout_and_labels(webcam) -> None:
    out, meta = webcam
    assert (out / "classes.txt").read_text() == "squirrel\n"
    ids = [f"frame_{i:05d}" for i in range(24)]
    assert sorted(p.stem for p in (out / "images").glob("*.jpg")) == ids
    assert sorted(p.stem for p in (out / "labels").glob("*.txt")) == ids
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    counts = {}
    for frame_id in ids:
        with Image.open(out / "images" / f"{frame_id}.jpg") as im:
            assert im.size == (W, H) and im.format == "JPEG"
        boxes = _boxes(out / "labels" / f"{frame_id}.txt")  # parses and checks every line
        counts[frame_id] = len(boxes)
    assert meta["n_squirrels"].tolist() == [counts[i] for i in ids]
    empty = [i for i in ids if counts[i] == 0]
    assert empty, "a webcam set has frames without squirrels"
    assert all((out / "labels" / f"{i}.txt").read_bytes() == b"" for i in empty)
    assert any(counts[i] > 0 for i in ids)


def test_webcam_metadata(webcam) -> None:
    out, meta = webcam
    assert list(meta.columns) == ["frame_id", "condition", "rain", "blur", "occluded", "n_squirrels"]
    assert meta["frame_id"].tolist() == [f"frame_{i:05d}" for i in range(24)]
    assert set(meta["condition"]) <= {"day", "dusk", "night"}
    for col in ("rain", "blur", "occluded"):
        assert meta[col].dtype == bool
    assert (meta["n_squirrels"].between(0, len(demo.N_SQUIRREL_P) - 1)).all()
    on_disk = pd.read_csv(out / "metadata.csv")
    pd.testing.assert_frame_equal(on_disk, meta)


def test_webcam_condition_rates_and_sizes(tmp_path: Path) -> None:
    """Over many tiny frames the hard cases are rare but present; squirrels are mostly small."""
    meta = demo.make_webcam_set(tmp_path, 150, width=192, height=108, seed=0)
    share = meta["condition"].value_counts(normalize=True)
    assert (
        0.55 < share["day"] < 0.85
        and 0.05 < share.get("dusk", 0) < 0.32
        and 0.03 < share.get("night", 0) < 0.25
    )
    assert 0.02 < meta["rain"].mean() < 0.22 and 0.02 < meta["blur"].mean() < 0.22
    assert meta["occluded"].any()
    assert 0.2 < (meta["n_squirrels"] == 0).mean() < 0.5
    boxes = np.array([b for p in sorted((tmp_path / "labels").glob("*.txt")) for b in _boxes(p)])
    # Squirrels partly out of frame occur, and their boxes were clipped to the image (checked in _boxes).
    x0, x1 = boxes[:, 0] - boxes[:, 2] / 2, boxes[:, 0] + boxes[:, 2] / 2
    assert ((x0 < 1e-6) | (x1 > 1 - 1e-6)).any()
    heights = boxes[:, 3] * 108
    assert np.median(heights) < 150 / 2160 * 108  # most squirrels are small in the 4K-equivalent frame


def test_night_frames_are_grey(tmp_path: Path) -> None:
    meta = demo.make_webcam_set(tmp_path, 40, width=320, height=180, seed=1)
    night = meta.loc[meta["condition"] == "night", "frame_id"]
    day = meta.loc[meta["condition"] == "day", "frame_id"]
    assert len(night) and len(day)

    def chroma(frame_id: str) -> float:
        a = np.asarray(Image.open(tmp_path / "images" / f"{frame_id}.jpg").convert("RGB")).astype(float)
        return float(np.abs(a - a.mean(axis=2, keepdims=True)).mean())

    assert max(chroma(i) for i in night) < 2 < min(chroma(i) for i in day)


def test_closeups_have_large_boxes_and_are_deterministic(tmp_path: Path) -> None:
    meta = demo.make_closeup_set(tmp_path / "a", 10, size=160, seed=0)
    demo.make_closeup_set(tmp_path / "b", 10, size=160, seed=0)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert list(meta.columns) == demo.METADATA_COLUMNS
    assert set(meta["condition"]) == {"day"} and (meta["n_squirrels"] >= 1).all()
    for i in range(10):
        with Image.open(tmp_path / "a" / "images" / f"closeup_{i:05d}.jpg") as im:
            assert im.size == (160, 160)
        boxes = _boxes(tmp_path / "a" / "labels" / f"closeup_{i:05d}.txt")
        assert len(boxes) == meta["n_squirrels"][i]
        largest = max(max(w, h) for _, _, w, h in boxes)
        assert 0.35 <= largest <= 0.9


def test_box_is_tight_around_the_drawn_squirrel() -> None:
    """The sprite box covers every clearly opaque pixel and nothing more."""
    for k in range(20):
        sprite = demo.squirrel_sprite(np.random.default_rng(k), 60.0)
        alpha = np.asarray(sprite.image.getchannel("A"))
        x0, y0, x1, y1 = sprite.box
        assert (alpha >= demo.ALPHA_BOX_THRESHOLD).sum() == (
            alpha[y0:y1, x0:x1] >= demo.ALPHA_BOX_THRESHOLD
        ).sum()
        for edge in (alpha[y0, x0:x1], alpha[y1 - 1, x0:x1], alpha[y0:y1, x0], alpha[y0:y1, x1 - 1]):
            assert edge.max() >= demo.ALPHA_BOX_THRESHOLD
        assert abs((y1 - y0) - 60) <= 4


def test_boxes_are_clipped_to_the_image_and_written_as_yolo() -> None:
    assert demo._clip_box((-5, 10, 30, 50), 100, 60) == (0.0, 10, 30, 50)
    assert demo._clip_box((80, -3, 130, 70), 100, 60) == (80, 0.0, 100.0, 60.0)
    assert demo._clip_box((99, 10, 140, 20), 100, 60) is None  # less than 2 px left inside
    assert demo._label_text([(0, 0, 50, 30)], 100, 60) == "0 0.250000 0.250000 0.500000 0.500000\n"
    assert demo._label_text([], 100, 60) == ""


def test_parallel_workers_give_the_same_bytes(tmp_path: Path) -> None:
    demo.make_webcam_set(tmp_path / "a", 6, width=320, height=180, seed=5)
    demo.make_webcam_set(tmp_path / "b", 6, width=320, height=180, seed=5, workers=2)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_demo_data_holds_a_validation_set_of_its_own_frames(tmp_path: Path) -> None:
    """The validation set (val.data) is tiled from webcam frames of its own, like the test set: no
    frame is in the pool, the test set and the validation set twice, so the set that chooses
    (validation) is neither the paid labels nor the set that reports (test)."""
    from acorn.demo.run import demo_inputs, make_demo_data
    from acorn.params import Params

    p = Params().with_overrides(
        {
            "tile.rows": 2,
            "tile.cols": 2,
            "tile.workers": 1,
            "train.replay_images": 2,
            "demo.frames": 2,
            "demo.test_frames": 2,
            "demo.val_frames": 3,
            "demo.source_images": 2,
            "demo.width": W,
            "demo.height": H,
        }
    )
    make_demo_data(p, tmp_path)
    assert Path(p.val.data) in demo_inputs(p)
    frames = {
        name: sorted({f.stem.rsplit("_r", 1)[0] for f in (tmp_path / folder / "images").glob("*.jpg")})
        for name, folder in (("test", p.test.data), ("val", p.val.data))
    }
    frames["pool"] = sorted(f.stem for f in (tmp_path / "data/raw/images").glob("*.jpg"))
    assert [len(frames[k]) for k in ("pool", "test", "val")] == [2, 2, 3]
    assert not set(frames["val"]) & (set(frames["test"]) | set(frames["pool"]))
    val_tiles = sorted((tmp_path / p.val.data / "images").glob("*.jpg"))
    assert len(val_tiles) == 3 * 4 and (tmp_path / p.val.data / "classes.txt").read_text() == "squirrel\n"
    test_bytes = {f.read_bytes() for f in (tmp_path / p.test.data / "images").glob("*.jpg")}
    assert not test_bytes & {f.read_bytes() for f in val_tiles}  # other pictures, not renamed copies
    # the test set's frames are kept whole beside their tiles (test.frames), with whole-frame labels
    whole = tmp_path / p.test.frames
    assert Path(p.test.frames) in demo_inputs(p)
    assert sorted(f.stem for f in (whole / "images").glob("*.jpg")) == frames["test"]
    assert sorted(f.stem for f in (whole / "labels").glob("*.txt")) == frames["test"]
    with Image.open(whole / "images" / f"{frames['test'][0]}.jpg") as image:
        assert image.size == (W, H)
