import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from acorn.data.formats import read_yolo_labels
from acorn.data.tiling import IN_PROGRESS, TileGrid, clip_boxes, tile_dataset, tile_id
from acorn.runtime.errors import InputError


def boxes(*rows):
    return pd.DataFrame(rows, columns=["class_id", "x1", "y1", "x2", "y2"])


def test_default_grid_cuts_4k_into_640x540_tiles():
    w = TileGrid(4, 6).windows(3840, 2160)
    assert len(w) == 24
    assert set(w["x1"] - w["x0"]) == {640}
    assert set(w["y1"] - w["y0"]) == {540}
    assert w["x0"].min() == 0 and w["x1"].max() == 3840 and w["y1"].max() == 2160


def test_grid_windows_cover_odd_sizes_edge_to_edge():
    w = TileGrid(3, 7).windows(1001, 333)
    xs = sorted(set(zip(w["x0"], w["x1"], strict=True)))
    assert xs[0][0] == 0 and xs[-1][1] == 1001
    assert all(a[1] == b[0] for a, b in zip(xs, xs[1:], strict=False))  # no gap, no overlap


def test_overlap_shares_the_requested_fraction():
    w = TileGrid(1, 3, overlap=0.25).windows(1000, 100)
    xs = sorted(zip(w["x0"], w["x1"], strict=True))
    size = xs[0][1] - xs[0][0]
    assert abs((xs[0][1] - xs[1][0]) / size - 0.25) < 0.01
    assert xs[-1][1] == 1000


@pytest.mark.parametrize("rows,cols,overlap", [(0, 6, 0.0), (4, 6, 1.0), (4, 6, -0.1)])
def test_bad_grid_is_rejected(rows, cols, overlap):
    with pytest.raises(ValueError):
        TileGrid(rows, cols, overlap)


def test_clip_keeps_inside_part_in_tile_pixels():
    out = clip_boxes(boxes((0, 90, 10, 130, 50)), (100, 0, 200, 100), min_visibility=0.5)
    assert out.to_numpy().tolist() == [[0, 0, 10, 30, 50]]


def test_clip_drops_slivers_below_min_visibility():
    b = boxes((0, 90, 10, 130, 50), (0, 190, 10, 205, 20))
    out = clip_boxes(b, (100, 0, 200, 100), min_visibility=0.8)
    assert out.empty
    assert len(clip_boxes(b, (100, 0, 200, 100), min_visibility=0.7)) == 1


def test_clip_ignores_boxes_elsewhere_and_keeps_class():
    b = boxes((2, 300, 300, 320, 320), (1, 10, 10, 20, 20))
    out = clip_boxes(b, (0, 0, 100, 100), min_visibility=0.3)
    assert out["class_id"].tolist() == [1]


def _frames(root: Path, n: int, size=(120, 60)) -> None:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
            root / "images" / f"f{i}.jpg"
        )
        # one box straddling the vertical middle line of the frame
        (root / "labels" / f"f{i}.txt").write_text("0 0.5 0.5 0.2 0.4\n")


def test_tile_dataset_writes_tiles_truth_and_manifest(tmp_path):
    _frames(tmp_path / "raw", 2)
    m = tile_dataset(
        tmp_path / "raw", tmp_path / "tiles", TileGrid(2, 2), ["squirrel"], min_visibility=0.2, workers=1
    )
    assert len(m) == 8
    assert m["tile_id"].tolist()[:4] == [tile_id("f0", r, c) for r in (0, 1) for c in (0, 1)]
    for t in m.itertuples():
        assert (tmp_path / "tiles" / t.image).exists()
        img = Image.open(tmp_path / "tiles" / t.image)
        assert img.size == (t.width, t.height) == (60, 30)
    # the 24x24 px box at the frame centre is split over the four tiles, a quarter (12x12 px) in each
    truth = read_yolo_labels(tmp_path / "tiles" / "truth" / "f0_r0c0.txt", 60, 30)
    assert truth[["x1", "y1", "x2", "y2"]].round(3).to_numpy().tolist() == [[48, 18, 60, 30]]


def test_tile_dataset_tiles_only_new_frames(tmp_path):
    _frames(tmp_path / "raw", 2)
    tile_dataset(tmp_path / "raw", tmp_path / "tiles", TileGrid(2, 2), ["squirrel"], workers=1)
    first = tmp_path / "tiles" / "images" / "f0_r0c0.jpg"
    mtime = first.stat().st_mtime_ns
    Image.new("RGB", (120, 60)).save(tmp_path / "raw" / "images" / "f9.jpg")
    m = tile_dataset(tmp_path / "raw", tmp_path / "tiles", TileGrid(2, 2), ["squirrel"], workers=1)
    assert len(m) == 12
    assert first.stat().st_mtime_ns == mtime
    assert (m.loc[m.frame_id == "f9", "n_truth"] == -1).all()  # no label file: unknown, not "empty"


def test_only_new_or_changed_frames_are_read_to_hash_them(tmp_path, monkeypatch):
    """The hash cache: a re-run reads the new frame and the rewritten one, not the rest; a frame
    rewritten in place still gets its new tiles (its stat changed)."""
    import acorn.data.tiling as tiling

    _frames(tmp_path / "raw", 3)
    cache = tmp_path / "cache" / "hashes.parquet"
    run = lambda: tile_dataset(  # noqa: E731
        tmp_path / "raw", tmp_path / "tiles", TileGrid(2, 2), ["squirrel"], workers=1, hash_cache=cache
    )
    first = run()
    read = []
    monkeypatch.setattr(tiling, "file_sha1", lambda path: read.append(Path(path).name) or _sha1(path))
    Image.new("RGB", (120, 60)).save(tmp_path / "raw" / "images" / "f9.jpg")
    Image.new("RGB", (120, 60), "white").save(tmp_path / "raw" / "images" / "f1.jpg")
    second = run()
    assert sorted(read) == ["f1.jpg", "f9.jpg"]
    assert len(second) == 16
    changed = (
        first.set_index("tile_id")["frame_sha1"]
        != second.set_index("tile_id")["frame_sha1"].loc[first["tile_id"]]
    )
    assert sorted({t.split("_")[0] for t in changed[changed].index}) == ["f1"]
    read.clear()
    cache.write_bytes(b"not parquet")  # a broken cache costs a re-hash, not a failure
    assert run()["frame_sha1"].tolist() == second["frame_sha1"].tolist()
    assert sorted(read) == ["f0.jpg", "f1.jpg", "f2.jpg", "f9.jpg"]


def _sha1(path) -> str:
    import hashlib

    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def test_tile_dataset_names_the_bad_label_file(tmp_path):
    _frames(tmp_path / "raw", 1)
    (tmp_path / "raw" / "labels" / "f0.txt").write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(InputError, match=r"1 bad frames.*f0\.txt:1"):
        tile_dataset(
            tmp_path / "raw", tmp_path / "tiles", TileGrid(2, 2), ["squirrel"], workers=1, on_bad_frame="stop"
        )


def test_tile_dataset_rejects_unknown_class_name(tmp_path):
    _frames(tmp_path / "raw", 1)
    (tmp_path / "raw" / "classes.txt").write_text("raccoon\n")
    with pytest.raises(InputError, match="classes.txt.*raccoon"):
        tile_dataset(tmp_path / "raw", tmp_path / "tiles", TileGrid(2, 2), ["squirrel"], workers=1)


def _tile(raw: Path, out: Path) -> pd.DataFrame:
    return tile_dataset(raw, out, TileGrid(2, 2), ["squirrel"], workers=1)


def _write_metadata(raw: Path, text: str) -> None:
    (raw / "metadata.csv").write_text(text)


def _conditions(manifest: pd.DataFrame) -> dict[str, set]:
    return {f: set(g["condition"]) for f, g in manifest.groupby("frame_id")}


def test_metadata_is_joined_afresh_on_every_run(tmp_path):
    """New frames get their metadata and edits land, though kept frames are not tiled again."""
    raw, out = tmp_path / "raw", tmp_path / "tiles"
    _frames(raw, 2)
    _write_metadata(raw, "frame_id,condition\nf0,day\nf1,night\n")
    assert _conditions(_tile(raw, out)) == {"f0": {"day"}, "f1": {"night"}}

    for name in ("g0", "g1"):
        Image.new("RGB", (120, 60)).save(raw / "images" / f"{name}.jpg")
    _write_metadata(raw, "frame_id,condition\nf0,day\nf1,night\ng0,dusk\ng1,rain\n")
    grown = _tile(raw, out)
    assert _conditions(grown) == {"f0": {"day"}, "f1": {"night"}, "g0": {"dusk"}, "g1": {"rain"}}
    assert grown["condition"].notna().all()

    kept_tile = out / "images" / "f0_r0c0.jpg"
    mtime = kept_tile.stat().st_mtime_ns
    _write_metadata(
        raw, "frame_id,condition,camera\nf0,fog,east\nf1,night,east\ng0,dusk,west\ng1,rain,west\n"
    )
    edited = _tile(raw, out)
    assert _conditions(edited) == {"f0": {"fog"}, "f1": {"night"}, "g0": {"dusk"}, "g1": {"rain"}}
    assert set(edited.loc[edited.frame_id == "g1", "camera"]) == {"west"}
    assert kept_tile.stat().st_mtime_ns == mtime, "a metadata edit must not re-tile the frame"

    (raw / "metadata.csv").unlink()
    assert not {"condition", "camera"} & set(_tile(raw, out).columns)


def test_metadata_gaps_and_strays_are_reported_with_the_file(tmp_path, caplog):
    raw, out = tmp_path / "raw", tmp_path / "tiles"
    _frames(raw, 3)
    _write_metadata(raw, "frame_id,condition\nf0,day\nf2,night\nf7,dusk\n")
    with caplog.at_level("WARNING", logger="acorn"):
        m = _tile(raw, out)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    metadata = str(raw / "metadata.csv")
    assert any(metadata in w and "f1" in w and "no row" in w for w in warnings), warnings
    assert any(metadata in w and "f7" in w for w in warnings), warnings
    assert len(m) == 12 and set(m["frame_id"]) == {"f0", "f1", "f2"}, "a stray row adds no tiles"
    assert _conditions(m.dropna(subset=["condition"])) == {"f0": {"day"}, "f2": {"night"}}


@pytest.mark.parametrize(
    "text,problem",
    [
        ("frame_id,condition\nf0,day\nf0,night\n", "'f0' has two rows"),
        ("frame,condition\nf0,day\n", "frame_id column"),
        ("frame_id,image\nf0,x.jpg\n", "'image' is a tile manifest column"),
    ],
)
def test_bad_metadata_is_an_input_error_naming_the_file(tmp_path, text, problem):
    raw, out = tmp_path / "raw", tmp_path / "tiles"
    _frames(raw, 1)
    _write_metadata(raw, text)
    with pytest.raises(InputError, match=re.escape(f"{raw / 'metadata.csv'}: ") + ".*" + re.escape(problem)):
        _tile(raw, out)


def test_tiles_real_aerial_frames(tmp_path):
    """Real PNGs with hundreds of small boxes (../shared/data/trees)."""
    trees = Path(__file__).resolve().parents[2] / "shared" / "data" / "trees"
    if not trees.exists():
        pytest.skip("shared data not present")
    m = tile_dataset(trees, tmp_path / "tiles", TileGrid(2, 2), ["tree"], workers=2)
    frames = len(list((trees / "images").iterdir()))
    assert len(m) == 4 * frames
    assert m["n_truth"].sum() >= 0.8 * sum(
        len((trees / "labels" / f"{p.stem}.txt").read_text().splitlines())
        for p in (trees / "images").iterdir()
    )


def _reference_tiles(frame: Path, label: Path | None, grid: TileGrid, quality: int, min_visibility: float):
    """What a tile stage must write, by the plainest route: PIL's own EXIF transpose and RGB
    conversion (both copies), clip_boxes and format_yolo on DataFrames."""
    import io

    from PIL import ImageOps

    from acorn.data.formats import format_yolo

    with Image.open(frame) as img:
        image = ImageOps.exif_transpose(img)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(image, dtype=np.uint32)
        image = Image.fromarray((wide // 257).clip(0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    image = image.convert("RGB")
    frame_boxes = None if label is None else read_yolo_labels(label, *image.size)
    out = {}
    for w in grid.windows(*image.size).itertuples(index=False):
        window = (int(w.x0), int(w.y0), int(w.x1), int(w.y1))
        tile = image.crop(window)
        buffer = io.BytesIO()
        tile.save(buffer, format="JPEG", quality=quality)
        truth = None
        if frame_boxes is not None:
            truth = format_yolo(clip_boxes(frame_boxes, window, min_visibility), *tile.size).encode()
        out[(int(w.row), int(w.col))] = (buffer.getvalue(), truth)
    return out


@pytest.mark.parametrize("grid", [TileGrid(2, 3), TileGrid(3, 2, overlap=0.25)])
def test_tiles_and_truth_are_byte_identical_to_the_plain_route(tmp_path, grid):
    """The stage's fast path (no whole-frame copies, truth clipped on arrays) writes exactly the
    bytes of the plain PIL + DataFrame route, for RGB, EXIF-rotated, gray, palette and 16-bit
    frames and boxes cut by tile edges."""
    raw = tmp_path / "raw"
    (raw / "images").mkdir(parents=True)
    (raw / "labels").mkdir()
    rng = np.random.default_rng(7)
    rgb = lambda: Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))  # noqa: E731
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb().save(raw / "images" / "plain.jpg", quality=95)
    rgb().save(raw / "images" / "rotated.jpg", exif=exif.tobytes())
    rgb().convert("L").save(raw / "images" / "gray.png")
    rgb().convert("P").save(raw / "images" / "palette.png")
    Image.fromarray(rng.integers(0, 65535, (90, 120), dtype=np.uint16)).save(raw / "images" / "sixteen.png")
    for name in ("plain", "rotated", "gray", "sixteen"):
        cx, cy = rng.uniform(0.1, 0.9, 40), rng.uniform(0.1, 0.9, 40)
        w = np.minimum(rng.uniform(0.01, 0.6, 40), 2 * np.minimum(cx, 1 - cx))
        h = np.minimum(rng.uniform(0.01, 0.6, 40), 2 * np.minimum(cy, 1 - cy))
        lines = [
            f"{i % 2} {a:.6f} {b:.6f} {c:.6f} {d:.6f}"
            for i, (a, b, c, d) in enumerate(zip(cx, cy, w, h, strict=True))
        ]
        (raw / "labels" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    (raw / "labels" / "palette.txt").write_text("")  # a frame with no boxes
    m = tile_dataset(raw, tmp_path / "tiles", grid, ["squirrel", "bird"], min_visibility=0.3, workers=1)
    assert sorted(m["frame_id"].unique()) == ["gray", "palette", "plain", "rotated", "sixteen"]
    assert m["n_truth"].sum() > 20
    for frame in (raw / "images").iterdir():
        label = raw / "labels" / f"{frame.stem}.txt"
        expected = _reference_tiles(frame, label, grid, 90, 0.3)
        for t in m[m["frame_id"] == frame.stem].itertuples():
            image, truth = expected[(t.row, t.col)]
            assert (tmp_path / "tiles" / t.image).read_bytes() == image, t.tile_id
            assert (tmp_path / "tiles" / "truth" / f"{t.tile_id}.txt").read_bytes() == truth, t.tile_id
            assert t.n_truth == truth.count(b"\n")


def test_an_rgb_frame_is_decoded_without_copying_it(tmp_path, monkeypatch):
    """A 4K frame is ~25 MB of pixels: EXIF transpose and RGB conversion copied it twice, a third
    of a frame's decode + encode time. An upright RGB frame is now used as decoded."""
    from acorn.data.tiling import decode_frame

    Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8)).save(tmp_path / "f.jpg")
    monkeypatch.setattr(Image.Image, "copy", lambda self: pytest.fail("the frame was copied"))
    image = decode_frame(tmp_path / "f.jpg")
    assert (image.mode, image.size) == ("RGB", (60, 40))


def test_a_run_after_a_clean_one_does_not_list_the_pool(tmp_path, monkeypatch):
    """Listing ~600,000 tile files costs ~1 s at 300,000 tiles on every run; only a killed run
    (its marker left behind) can have left files the manifest does not name."""
    _frames(tmp_path / "raw", 2)
    out = tmp_path / "tiles"
    tile_dataset(tmp_path / "raw", out, TileGrid(2, 2), ["squirrel"], workers=1)
    assert not (out / IN_PROGRESS).exists()
    listed = []
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path=".": listed.append(Path(path)) or real_listdir(path))
    Image.new("RGB", (120, 60), "white").save(tmp_path / "raw" / "images" / "f9.jpg")
    m = tile_dataset(tmp_path / "raw", out, TileGrid(2, 2), ["squirrel"], workers=1)
    assert set(m["frame_id"]) == {"f0", "f1", "f9"}
    assert not [p for p in listed if p.parent == out], "the tile folders were listed after a clean run"
    (out / IN_PROGRESS).write_text("")  # a killed run's marker: the next run lists and cleans
    (out / "images" / "f8_r0c0.jpg").write_bytes(b"left by a killed run")
    tile_dataset(tmp_path / "raw", out, TileGrid(2, 2), ["squirrel"], workers=1)
    assert {out / "images", out / "truth"} <= set(listed)
    assert not (out / "images" / "f8_r0c0.jpg").exists() and not (out / IN_PROGRESS).exists()


def test_rerun_keeps_removes_and_retiles_exactly_what_changed(tmp_path):
    """The pool bookkeeping (done frames, kept tiles, strays) works on whole columns; each case:
    an unchanged frame keeps its files untouched, a rewritten frame is re-tiled, a deleted frame's
    tiles go, a file no manifest row names (a killed run's tile or temporary file) goes, a new grid
    re-tiles everything, and a manifest from before grid signatures is re-tiled, not an error."""
    _frames(tmp_path / "raw", 3)
    out = tmp_path / "tiles"
    two_by_two = TileGrid(2, 2)
    run = lambda grid=two_by_two: tile_dataset(tmp_path / "raw", out, grid, ["squirrel"], workers=1)  # noqa: E731
    run()
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "images").glob("f0_*")}
    Image.new("RGB", (120, 60), "white").save(tmp_path / "raw" / "images" / "f1.jpg")
    (tmp_path / "raw" / "images" / "f2.jpg").unlink()
    (out / "images" / "f9_r0c0.jpg").write_bytes(b"left by a killed run")
    (out / "truth" / ".f9_r0c0.txt.123.abcd.tmp").write_text("")
    (out / IN_PROGRESS).write_text("")  # ... which also left its marker
    m = run()
    assert not (out / IN_PROGRESS).exists()
    assert sorted(m["frame_id"].unique()) == ["f0", "f1"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "images").glob("f0_*")} == kept
    assert Image.open(out / "images" / "f1_r0c0.jpg").getpixel((5, 5)) == (255, 255, 255)
    for folder, suffix in (("images", ".jpg"), ("truth", ".txt")):
        assert sorted(p.name for p in (out / folder).iterdir()) == sorted(t + suffix for t in m["tile_id"])
    regrid = run(TileGrid(1, 2))
    assert len(regrid) == 4 and set(regrid["signature"]) == {"1x2:o0.0:v0.3:q90"}
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(t + ".jpg" for t in regrid["tile_id"])
    regrid.drop(columns="signature").to_parquet(out / "manifest.parquet")  # an older manifest
    assert len(run(TileGrid(1, 2))) == 4
    assert set(pd.read_parquet(out / "manifest.parquet")["signature"]) == {"1x2:o0.0:v0.3:q90"}


def _tile_2x2_in_one_worker(root: Path, checkpoint_seconds: float) -> pd.DataFrame:
    return tile_dataset(
        root / "raw",
        root / "tiles",
        TileGrid(2, 2),
        ["squirrel"],
        workers=1,
        checkpoint_seconds=checkpoint_seconds,
    )


def test_a_run_stopped_between_frames_does_not_tile_the_frames_still_queued(tmp_path, monkeypatch):
    """A stop (SIGTERM unwinding, Ctrl-C) that lands in the loop, here in the first checkpoint,
    must not wait for the queued frames to be tiled and thrown away: the pool drops them. The stop
    is injected (its moment cannot be caught from outside); the pool and the frames are real."""
    import acorn.runtime.atomic as atomic

    _frames(tmp_path / "raw", 40, size=(640, 360))  # ~10 ms each to tile

    def stopped(*_args):
        raise KeyboardInterrupt("stopped during a checkpoint")

    monkeypatch.setattr(atomic, "write_parquet", stopped)
    with pytest.raises(KeyboardInterrupt):
        _tile_2x2_in_one_worker(tmp_path, checkpoint_seconds=0)
    tiled = {p.name.split("_")[0] for p in (tmp_path / "tiles" / "images").iterdir()}
    # the first frame and those the worker took before the stop (a few, more on a loaded machine)
    assert 1 <= len(tiled) < 20, sorted(tiled)


@pytest.mark.parametrize("seconds,written", [(0.0, [4, 8, 12, 12]), (3600.0, [12])])
def test_manifest_checkpoints_are_paced_by_time_not_frames(tmp_path, monkeypatch, seconds, written):
    """Each checkpoint rewrites the whole manifest (~0.3 s at 300,000 tiles): paced by the clock,
    a long run still resumes from a recent one and a short one writes the manifest once."""
    import acorn.runtime.atomic as atomic

    _frames(tmp_path / "raw", 3)
    rows = []
    real = atomic.write_parquet
    monkeypatch.setattr(atomic, "write_parquet", lambda df, path: rows.append(len(df)) or real(df, path))
    _tile_2x2_in_one_worker(tmp_path, checkpoint_seconds=seconds)
    assert rows == written


def test_near_copy_frames_share_a_group_in_the_manifest_and_old_manifests_get_hashes(tmp_path):
    """The frame hash is recorded per tile and near-copies get their first frame's group; a
    manifest from before the hash gets it from the frame files, without tiling them again."""
    from acorn.data.tiling import frame_hash
    from tests.test_duplicates import a_minute_later, scene

    raw = tmp_path / "raw"
    (raw / "images").mkdir(parents=True)
    scene(0).save(raw / "images" / "cam_0900.jpg", quality=90)
    a_minute_later(scene(0), 1).save(raw / "images" / "cam_0901.jpg", quality=90)
    scene(1).save(raw / "images" / "cam_1500.jpg", quality=90)

    def run(bits: int) -> pd.DataFrame:
        return tile_dataset(
            raw, tmp_path / "tiles", TileGrid(2, 2), ["squirrel"], workers=1, near_copy_bits=bits
        )

    m = run(32)
    frames = m.drop_duplicates("frame_id").set_index("frame_id")
    assert frames["near_copy_group"].to_dict() == {
        "cam_0900": "cam_0900",
        "cam_0901": "cam_0900",
        "cam_1500": "cam_1500",
    }
    assert frames.loc["cam_0901", "frame_hash"] == frame_hash(
        raw / "images" / "cam_0901.jpg"
    )  # as doctor hashes
    assert run(0)["near_copy_group"].tolist() == m["frame_id"].tolist()  # regrouped, not retiled

    old = m.drop(columns=["frame_hash", "near_copy_group"])
    old.to_parquet(tmp_path / "tiles" / "manifest.parquet")
    first = tmp_path / "tiles" / "images" / "cam_0900_r0c0.jpg"
    mtime = first.stat().st_mtime_ns
    again = run(32)
    assert first.stat().st_mtime_ns == mtime
    pd.testing.assert_frame_equal(again, m)
