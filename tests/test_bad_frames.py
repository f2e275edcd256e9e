"""A month of webcam frames holds bad files: every one is found in one run, listed with its reason,
and the good frames are tiled (tile.on_bad_frame: skip), or the stage stops naming them (stop)."""

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from acorn.data.tiling import BAD_FRAMES, TileGrid, tile_dataset
from acorn.runtime.errors import InputError

W, H = 64, 48


def _rgb(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8))


def _jpeg(image: Image.Image, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **kw)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return _jpeg(_rgb(9), exif=exif.tobytes())


GOOD = {
    "good.jpg": lambda: _jpeg(_rgb(0)),
    "gray.png": lambda: _png(_rgb(1).convert("L")),
    "rgba.png": lambda: _png(_rgb(2).convert("RGBA")),
    "palette.png": lambda: _png(_rgb(3).convert("P")),
    "cmyk.jpg": lambda: _jpeg(_rgb(4).convert("CMYK")),
    "sixteen.png": lambda: _png(Image.fromarray(np.full((H, W), 40000, dtype=np.uint16))),
    "rotated.jpg": _exif_rotated,
    "odd_size.jpg": lambda: _jpeg(_rgb(5).resize((W + 1, H + 1))),
    "cam1/same.jpg": lambda: _jpeg(_rgb(6)),
    "cam2/same.jpg": lambda: _jpeg(_rgb(7)),
}
BAD = {
    "empty.jpg": (lambda: b"", "empty file"),
    "truncated.jpg": (lambda: _jpeg(_rgb(10))[:300], "corrupt or truncated"),
    "cut.png": (lambda: _png(_rgb(11))[:200], "corrupt or truncated"),
    "corrupt.jpg": (lambda: b"\xff\xd8\xff" + bytes(range(256)) * 8, "not an image|corrupt"),
    "notes.jpg": (lambda: b"this is a text file, not a photo\n", "not an image"),
    "bomb.png": (lambda: _png(Image.new("RGB", (200, 200))), "decompression bomb|pixel limit"),
    "twin.jpg": (lambda: _jpeg(_rgb(12)), "same frame id 'twin'"),
    "twin.png": (lambda: _png(_rgb(13)), "same frame id 'twin'"),
    "badlabel.jpg": (lambda: _jpeg(_rgb(14)), "badlabel.txt"),
    "badclass.jpg": (lambda: _jpeg(_rgb(15)), "class id 7"),
    "offframe.jpg": (lambda: _jpeg(_rgb(16)), "offframe.txt:2: box lies outside the image"),
}
LABELS = {
    "badlabel.txt": "0 0.5 0.5 oops\n",
    "badclass.txt": "7 0.5 0.5 0.2 0.2\n",
    "offframe.txt": "0 0.5 0.5 0.2 0.2\n0 1.5 0.5 0.1 0.1\n",
    "good.txt": "0 0.5 0.5 0.2 0.2\n",
}


@pytest.fixture
def raw(tmp_path) -> Path:
    images = tmp_path / "raw" / "images"
    for name, make in {**GOOD, **{k: v[0] for k, v in BAD.items()}}.items():
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        (images / name).write_bytes(make())
    (tmp_path / "raw" / "labels").mkdir()
    for name, text in LABELS.items():
        (tmp_path / "raw" / "labels" / name).write_text(text)
    return tmp_path / "raw"


def _tile(raw: Path, out: Path, policy: str = "skip") -> pd.DataFrame:
    return tile_dataset(
        raw, out, TileGrid(2, 3), ["squirrel"], workers=1, on_bad_frame=policy, max_pixels=10_000
    )


def test_every_bad_frame_is_listed_with_its_reason_and_the_rest_is_tiled(raw, tmp_path):
    manifest = _tile(raw, tmp_path / "tiles")
    bad = pd.read_csv(tmp_path / "tiles" / BAD_FRAMES)
    listed = {Path(f).name: problem for f, problem in zip(bad["frame"], bad["problem"], strict=True)}
    assert set(listed) == set(BAD)
    for name, (_, reason) in BAD.items():
        assert pd.Series([listed[name]]).str.contains(reason).all(), (name, listed[name])
        assert name in listed[name]  # the message names the file
    tiled = set(manifest["frame_id"])
    assert tiled == {
        "good",
        "gray",
        "rgba",
        "palette",
        "cmyk",
        "sixteen",
        "rotated",
        "odd_size",
        "cam1__same",
        "cam2__same",
    }
    assert (manifest.groupby("frame_id").size() == 6).all()


def test_conversions_keep_the_picture(raw, tmp_path):
    manifest = _tile(raw, tmp_path / "tiles").set_index("tile_id")
    rotated = manifest[manifest["frame_id"] == "rotated"]
    assert rotated["width"].sum() == 2 * H and rotated["height"].sum() == 3 * W  # EXIF rotation honoured
    odd = manifest[manifest["frame_id"] == "odd_size"]
    assert odd["width"].sum() == 2 * (W + 1) and odd["height"].sum() == 3 * (H + 1)  # every pixel in a tile
    sixteen = np.asarray(Image.open(tmp_path / "tiles" / manifest.loc["sixteen_r0c0", "image"]))
    assert sixteen.shape[2] == 3 and 150 < sixteen.mean() < 160  # 40000 / 257 = 155, not clipped to 255


def test_stop_policy_names_the_bad_frames_and_keeps_the_good_tiles(raw, tmp_path):
    with pytest.raises(InputError, match=f"{len(BAD)} bad frames.*tile.on_bad_frame: skip"):
        _tile(raw, tmp_path / "tiles", policy="stop")
    kept = pd.read_parquet(tmp_path / "tiles" / "manifest.parquet")
    assert kept["frame_id"].nunique() == len(GOOD)


def test_ultralytics_image_open_patch_keeps_the_verdict(tmp_path, monkeypatch):
    """ultralytics replaces PIL.Image.open process-wide; on an unreadable file it tries to install
    pi-heif and raises ImportError. acorn.runtime.env switches that off; the tile stage copes either way."""
    from ultralytics.utils import patches

    from acorn.data.tiling import decode_frame
    from acorn.runtime.env import configure_ultralytics

    notes = tmp_path / "notes.jpg"
    notes.write_bytes(b"a text file, not a photo\n")
    monkeypatch.setattr(patches, "_pil_plugins_registered", False)  # as right after `import ultralytics`
    monkeypatch.setattr("ultralytics.utils.checks.check_requirements", lambda *a, **k: None)  # no pip here
    with pytest.raises(InputError, match="not an image"):
        decode_frame(notes)
    configure_ultralytics()
    assert patches._pil_plugins_registered
    with pytest.raises(InputError, match="not an image"):
        decode_frame(notes)
