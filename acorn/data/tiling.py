"""Cut large frames into a grid of tiles and carry frame-level boxes into them.

A 4K webcam frame is too large for a detector at its native input size, and a small
squirrel vanishes when the frame is shrunk; tiles keep full resolution. Tile ids are
``<frame_id>_r<row>c<col>``: stable across runs, so labels, predictions and caches keyed
by tile id stay valid as new frames arrive.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from acorn.data.formats import BOX_COLUMNS, empty_boxes, xyxy_to_yolo
from acorn.data.near_copies import GROUP_COLUMN, HASH_COLUMN, HASH_SIDE, group_frames, image_hash
from acorn.runtime.errors import InputError

log = logging.getLogger("acorn")


@dataclass(frozen=True)
class TileGrid:
    """``rows`` x ``cols`` tiles; ``overlap`` is the fraction of a tile shared with its neighbour."""

    rows: int = 4
    cols: int = 6
    overlap: float = 0.0

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1:
            raise ValueError(f"tile grid needs rows >= 1 and cols >= 1, got {self.rows} x {self.cols}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"tile.overlap must be in [0, 1), got {self.overlap}")

    def windows(self, width: int, height: int) -> pd.DataFrame:
        """Pixel windows (row, col, x0, y0, x1, y1) covering the frame edge to edge."""
        xs = _axis_windows(width, self.cols, self.overlap)
        ys = _axis_windows(height, self.rows, self.overlap)
        rr, cc = np.meshgrid(np.arange(self.rows), np.arange(self.cols), indexing="ij")
        rr, cc = rr.ravel(), cc.ravel()
        return pd.DataFrame(
            {"row": rr, "col": cc, "x0": xs[cc, 0], "y0": ys[rr, 0], "x1": xs[cc, 1], "y1": ys[rr, 1]}
        )


def _axis_windows(length: int, count: int, overlap: float) -> np.ndarray:
    """Integer [start, end) windows of equal size along one axis, the last ending at ``length``."""
    size = length / (count - (count - 1) * overlap)
    step = size * (1 - overlap)
    starts = np.round(np.arange(count) * step).astype(int)
    ends = np.minimum(np.round(np.arange(count) * step + size).astype(int), length)
    ends[-1] = length
    return np.stack([starts, ends], axis=1)


def tile_id(frame_id: str, row: int, col: int) -> str:
    return f"{frame_id}_r{row}c{col}"


def tile_places(tile_ids: pd.Series) -> pd.DataFrame:
    """``frame_id``, ``row``, ``col`` of ids made by ``tile_id`` (NaN for an id that is not one)."""
    return tile_ids.str.extract(r"^(?P<frame_id>.*)_r(?P<row>\d+)c(?P<col>\d+)$")


def clip_boxes(boxes: pd.DataFrame, window: tuple[int, int, int, int], min_visibility: float) -> pd.DataFrame:
    """Frame boxes -> boxes of one tile, in tile pixels.

    A box keeps its clipped part when at least ``min_visibility`` of its area falls inside the
    window: a squirrel cut to a sliver at the tile edge would teach the model to fire on fur.
    """
    if boxes.empty:
        return empty_boxes()
    xyxy = boxes[["x1", "y1", "x2", "y2"]].to_numpy(dtype=np.float64)
    inside, keep = _clip_xyxy(xyxy, window, min_visibility)
    out = pd.DataFrame(inside, columns=["x1", "y1", "x2", "y2"])
    out.insert(0, "class_id", boxes["class_id"].to_numpy()[keep].astype("int64"))
    return out[BOX_COLUMNS].reset_index(drop=True)


def _clip_xyxy(
    xyxy: np.ndarray, window: tuple[int, int, int, int], min_visibility: float
) -> tuple[np.ndarray, np.ndarray]:
    """clip_boxes on bare arrays: (kept boxes in tile pixels, the keep mask over the input rows)."""
    x0, y0, x1, y1 = window
    clipped = np.stack(
        [
            np.clip(xyxy[:, 0], x0, x1),
            np.clip(xyxy[:, 1], y0, y1),
            np.clip(xyxy[:, 2], x0, x1),
            np.clip(xyxy[:, 3], y0, y1),
        ],
        axis=1,
    )
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    inside = np.clip(clipped[:, 2] - clipped[:, 0], 0, None) * np.clip(clipped[:, 3] - clipped[:, 1], 0, None)
    visibility = np.divide(inside, area, out=np.zeros_like(area), where=area > 0)
    keep = (inside > 0) & (visibility >= min_visibility)
    return clipped[keep] - [x0, y0, x0, y0], keep


def _truth_text(
    class_ids: np.ndarray, xyxy: np.ndarray, window: tuple[int, int, int, int], min_visibility: float
) -> tuple[str, int]:
    """One tile's truth file text and box count: ``format_yolo(clip_boxes(...))`` byte for byte,
    without building DataFrames (24 tiles a frame made them ~40% of a frame's tiling time)."""
    if not len(xyxy):
        return "", 0
    inside, keep = _clip_xyxy(xyxy, window, min_visibility)
    if not keep.any():
        return "", 0
    yolo = xyxy_to_yolo(inside, window[2] - window[0], window[3] - window[1])
    lines = [
        f"{int(c)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"
        for c, (cx, cy, w, h) in zip(class_ids[keep], yolo, strict=True)
    ]
    return "\n".join(lines) + "\n", len(lines)


def encode_jpeg(image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def file_sha1(path: str | Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def frame_hashes(frames: list[Path], cache: Path | None = None) -> list[str]:
    """sha1 of each frame. With ``cache`` (a Parquet file outside the DAG), a frame whose path,
    size, mtime and inode are those it had when it was hashed is not read again (DVC trusts the
    same stat for its own hashes): reading all 12,500 4K frames of a 300,000-tile pool on every
    run was ~40 s of a 65 s tile run that had 12 new frames (benchmarks/cycle_cost.py)."""
    from tqdm import tqdm

    stats = [f.stat() for f in frames]
    current = pd.DataFrame(
        {
            "path": [os.path.abspath(f) for f in frames],  # not resolve(): an lstat per path part
            "size": [s.st_size for s in stats],
            "mtime_ns": [s.st_mtime_ns for s in stats],
            "inode": [s.st_ino for s in stats],
        }
    )
    known = pd.DataFrame(columns=[*current.columns, "sha1"])
    if cache is not None and cache.is_file():
        try:
            known = pd.read_parquet(cache, columns=[*current.columns, "sha1"])
        except Exception as exc:  # a cache is only a shortcut: a broken one costs a re-hash
            log.warning("%s: unreadable (%s); hashing every frame again", cache, exc)
    merged = current.merge(known.drop_duplicates("path", keep="last"), on=list(current.columns), how="left")
    todo = merged.index[merged["sha1"].isna()]
    merged.loc[todo, "sha1"] = [
        file_sha1(frames[i]) for i in tqdm(todo, desc="hash frames", unit="frame", leave=False)
    ]
    if cache is not None and len(todo):
        from acorn.runtime.atomic import write_parquet

        cache.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(merged, cache)
    return merged["sha1"].astype(str).tolist()


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
MAX_FRAME_PIXELS = 100_000_000  # 4K is 8.3 MP; PIL's own bomb warning starts at 89 MP
BAD_FRAMES = "bad_frames.csv"  # tile stage output: every frame skipped, and why
# in the tiles folder while a run writes or removes tiles: a run that finds it was killed, and
# only then are the folders listed for files no manifest names (a listing of the whole pool)
IN_PROGRESS = ".tiling-in-progress"


@dataclass(frozen=True)
class TileJob:
    """Everything one worker process needs to tile one frame (picklable, no shared state)."""

    frame_id: str
    frame_path: Path
    label_path: Path | None
    frame_sha1: str
    class_map: dict[int, int]
    grid: TileGrid
    min_visibility: float
    jpeg_quality: int
    out_dir: Path
    max_pixels: int = MAX_FRAME_PIXELS


def tile_or_report(job: TileJob) -> tuple[list[dict], str]:
    """(rows, '') for a good frame, ([], why) for a bad one: one bad file must not stop a month."""
    try:
        return tile_frame(job), ""
    except InputError as exc:  # a bad label file is named by its own path: name the frame too
        return [], str(exc) if str(job.frame_path) in str(exc) else f"{job.frame_path}: {exc}"


def list_frames(images_dir: Path) -> tuple[list[Path], list[str]]:
    """Every image file under ``images_dir`` (symlinked folders not followed) in path order, and
    its frame id: the relative path without suffix, folders joined by '__' (unique, filename-safe).
    Plain strings, not pathlib: rglob, sorting Paths and relative_to were ~0.1 s of every tile
    run at 12,500 frames."""
    found: list[tuple[list[str], str]] = []  # (path parts under images_dir, frame id)
    for folder, _, names in os.walk(images_dir):
        rel = os.path.relpath(folder, images_dir)
        parts = [] if rel == os.curdir else rel.split(os.sep)
        for name in names:
            stem, suffix = os.path.splitext(name)
            if suffix.lower() in IMAGE_SUFFIXES:
                found.append(([*parts, name], "__".join([*parts, stem])))
    found.sort(key=lambda f: f[0])  # as pathlib orders paths: part by part
    return [images_dir.joinpath(*path) for path, _ in found], [fid for _, fid in found]


def decode_frame(path: Path, max_pixels: int = MAX_FRAME_PIXELS):
    """A frame as 8-bit RGB, or an InputError saying what is wrong with the file.

    EXIF orientation is honoured (as ultralytics does in training); grayscale, palette, CMYK and
    16-bit frames are converted (16-bit scaled to 8 bits, not clipped); an alpha channel is
    dropped. A frame over ``max_pixels`` is refused before it is decoded (a decompression bomb
    would exhaust memory in every worker).
    """
    import warnings

    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    Image.MAX_IMAGE_PIXELS = max_pixels  # PIL warns above it and refuses at twice it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > max_pixels:
                    raise InputError(
                        f"{path}: {img.width}x{img.height} is over the {max_pixels:,}-pixel limit "
                        "(tile.max_frame_pixels)"
                    )
                img.load()
                ImageOps.exif_transpose(img, in_place=True)  # no copy of the whole frame
                image = img
    except (
        UnidentifiedImageError,
        ImportError,
    ):  # ImportError: ultralytics patches Image.open (acorn.runtime.env)
        raise InputError(
            f"{path}: not an image PIL can read (wrong suffix, or not an image at all)"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"{path}: refused as a decompression bomb ({exc})") from None
    except OSError as exc:  # truncated or corrupt data
        raise InputError(f"{path}: corrupt or truncated image ({exc})") from None
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(image, dtype=np.uint32)
        scale = 257 if image.mode.startswith("I;16") or wide.max() > 255 else 1
        image = Image.fromarray((wide // scale).clip(0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")  # convert would copy an RGB frame


def frame_hash(path: str | Path, decoded=None) -> str:
    """The hash of a frame file, the same whoever asks (the tile stage, ``acorn doctor``).

    A JPEG is decoded again at 1/8 scale (DCT scaling: ~15 ms for a 4K frame where a full decode
    takes ~100 ms), EXIF orientation applied; a 1/8-scale decode differs from a full one by up to
    12 bits, which two paths would add to every distance. Other formats are hashed from the
    tile stage's decode (``decoded``, the frame already decoded by ``decode_frame``, else decoded
    here). It lives here, beside the decode, so that acorn.data.near_copies (which the rank stage
    imports for the group columns) does not pull the tiling code into rank's deps.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        if img.format == "JPEG":
            least = 4 * HASH_SIDE  # a small frame is not cut to a few pixels a cell
            img.draft("L", (max(least, img.width // 8), max(least, img.height // 8)))
            return image_hash(ImageOps.exif_transpose(img))
    if decoded is None:
        decoded = decode_frame(Path(path))
    return image_hash(decoded)


def tile_frame(job: TileJob) -> list[dict]:
    """Decode one frame once, write its tiles and clipped truth labels; return manifest rows."""
    from acorn.data.formats import read_yolo_labels
    from acorn.runtime.atomic import write_bytes, write_text

    image = decode_frame(job.frame_path, job.max_pixels)
    width, height = image.size
    boxes = None
    if job.label_path is not None:
        boxes = read_yolo_labels(job.label_path, width, height)
        unknown = sorted(set(boxes["class_id"]) - set(job.class_map))
        if unknown:
            raise InputError(f"{job.label_path}: class id {unknown[0]} is not in classes.txt")
        class_ids = boxes["class_id"].map(job.class_map).to_numpy(dtype="int64")
        xyxy = boxes[["x1", "y1", "x2", "y2"]].to_numpy(dtype=np.float64)
    windows = job.grid.windows(width, height)[["row", "col", "x0", "y0", "x1", "y1"]].to_numpy().tolist()
    near_copy_hash = frame_hash(job.frame_path, image)
    rows = []
    for r, c, x0, y0, x1, y1 in windows:  # Python ints
        tid = tile_id(job.frame_id, r, c)
        window = (x0, y0, x1, y1)
        tile = image.crop(window)
        # not fsynced one by one (~10 ms each here): the manifest checkpoint flushes them all first
        write_bytes(job.out_dir / "images" / f"{tid}.jpg", encode_jpeg(tile, job.jpeg_quality), sync=False)
        n_truth = -1
        if boxes is not None:
            text, n_truth = _truth_text(class_ids, xyxy, window, job.min_visibility)
            write_text(job.out_dir / "truth" / f"{tid}.txt", text, sync=False)
        rows.append(
            {
                "tile_id": tid,
                "frame_id": job.frame_id,
                "row": r,
                "col": c,
                "x0": x0,
                "y0": y0,
                "width": tile.size[0],
                "height": tile.size[1],
                "image": f"images/{tid}.jpg",
                "frame_sha1": job.frame_sha1,
                "n_truth": n_truth,
                HASH_COLUMN: near_copy_hash,
            }
        )
    return rows


def tile_dataset(
    raw_dir: Path,
    out_dir: Path,
    grid: TileGrid,
    classes: list[str],
    min_visibility: float = 0.3,
    jpeg_quality: int = 90,
    workers: int = 2,
    checkpoint_seconds: float = 60.0,
    on_bad_frame: str = "skip",
    max_pixels: int = MAX_FRAME_PIXELS,
    hash_cache: Path | None = None,
    near_copy_bits: int = 32,
) -> pd.DataFrame:
    """Tile every new or changed frame of a YOLO-layout folder; keep the tiles of the rest.

    Frames are matched by id and content hash and the grid settings, so a re-run with new
    frames tiles only those, and a run killed midway resumes from its last manifest checkpoint:
    one every ``checkpoint_seconds``, not every N frames, since each rewrites the whole manifest
    (~0.3 s at 300,000 tiles): a day's new frames would pay for several, a kill loses a minute.
    Bad frames (unreadable, truncated, bombs, bad label files, clashing ids) are all found in one
    run and listed in ``bad_frames.csv`` with the reason; ``on_bad_frame="skip"`` tiles the rest,
    ``"stop"`` then fails naming them (the good frames' tiles are kept either way).

    Files left by a killed run (tiles its manifest never listed, temporary files) are removed by
    the next run, which knows of them by the ``IN_PROGRESS`` marker the killed run left; a run
    after a clean one does not list the pool's ~600,000 files.

    Each frame's perceptual hash (``frame_hash``) is recorded with its tiles, and frames within
    ``near_copy_bits`` differing bits are grouped as near-copies (``near_copy_group``,
    ``acorn.data.near_copies``), afresh every run over all frames.
    """
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from acorn.runtime.atomic import sync_folder, write_parquet, write_text

    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    images_dir = raw_dir / "images"
    if not images_dir.is_dir():
        raise InputError(f"{images_dir}: no images folder (expected YOLO layout: images/, labels/)")
    class_map = _class_map(raw_dir, classes)
    signature = f"{grid.rows}x{grid.cols}:o{grid.overlap}:v{min_visibility}:q{jpeg_quality}"
    manifest_path = out_dir / "manifest.parquet"
    previous = pd.read_parquet(manifest_path) if manifest_path.exists() else pd.DataFrame()

    frames, frame_ids = list_frames(images_dir)
    if not frames:
        raise InputError(f"{images_dir}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    clash = pd.Series(frame_ids).duplicated(keep=False).to_numpy()
    bad = [
        (str(p), f"{p}: another image has the same frame id {fid!r} (same name, other suffix); rename one")
        for p, fid, c in zip(frames, frame_ids, clash, strict=True)
        if c
    ]
    frames = [p for p, c in zip(frames, clash, strict=True) if not c]
    frame_ids = [f for f, c in zip(frame_ids, clash, strict=True) if not c]
    shas = frame_hashes(frames, hash_cache)

    # a tile is kept when its frame is still there with the same hash and the grid is the same;
    # a frame is done when its tiles are kept (whole-column operations: a pool has ~300,000 rows)
    keep = pd.Series(False, index=previous.index)
    if not previous.empty and "signature" in previous:
        current_sha = pd.Series(shas, index=frame_ids, dtype=object)  # frame ids are unique here
        same_frame = previous["frame_id"].map(current_sha).eq(previous["frame_sha1"]).fillna(False)
        keep = same_frame.astype(bool) & previous["signature"].eq(signature).fillna(False).astype(bool)
    done = set(previous.loc[keep, "frame_id"].unique()) if keep.any() else set()
    jobs = []
    for path, fid, sha in zip(frames, frame_ids, shas, strict=True):
        if fid in done:
            continue
        label = raw_dir / "labels" / path.relative_to(images_dir).with_suffix(".txt")
        jobs.append(
            TileJob(
                fid,
                path,
                label if label.exists() else None,
                sha,
                class_map,
                grid,
                min_visibility,
                jpeg_quality,
                out_dir,
                max_pixels,
            )
        )
    marker = out_dir / IN_PROGRESS
    killed_before = marker.exists() or previous.empty  # no manifest: whatever is there is unlisted
    if jobs or not keep.all():
        write_text(marker, "a tiling run is writing or removing tiles here\n")
    kept = previous
    if not previous.empty:
        kept = _with_hashes(previous[keep], dict(zip(frame_ids, frames, strict=True)))
        _remove_tiles(out_dir, previous.loc[~keep, "tile_id"])

    new_rows: list[dict] = []
    last_checkpoint = time.monotonic()

    def checkpoint(final: bool = False) -> pd.DataFrame:
        # near-copy groups in the stage's output only: ~4 s at 12,500 frames, not every minute
        manifest = _finish_manifest(kept, new_rows, signature, raw_dir, near_copy_bits if final else None)
        sync_folder(out_dir)  # the tiles it lists are on disk before it is (one flush, not one per tile)
        write_parquet(manifest, manifest_path)
        return manifest

    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        results = pool.map(tile_or_report, jobs, chunksize=1)
        try:
            for job, (rows, problem) in zip(
                jobs, tqdm(results, total=len(jobs), desc="tile", unit="frame"), strict=True
            ):
                new_rows.extend(rows)
                if problem:
                    bad.append((str(job.frame_path), problem))
                if time.monotonic() - last_checkpoint >= checkpoint_seconds:
                    checkpoint()
                    last_checkpoint = time.monotonic()
        except BaseException:  # stopped (SIGTERM, Ctrl-C): not the frames still queued first
            pool.shutdown(cancel_futures=True)
            raise
    manifest = checkpoint(final=True)
    if killed_before:
        _remove_strays(out_dir, manifest)
    marker.unlink(missing_ok=True)
    _report_bad_frames(bad, out_dir / BAD_FRAMES, images_dir, on_bad_frame)
    return manifest


def _report_bad_frames(bad: list[tuple[str, str]], path: Path, images_dir: Path, policy: str) -> None:
    """Every bad frame in one list (a stage output) and one log line each: never a silent drop."""
    from acorn.runtime.atomic import write_csv

    table = pd.DataFrame(sorted(bad), columns=["frame", "problem"])
    write_csv(table, path)
    for problem in table["problem"]:
        log.warning("bad frame skipped: %s", problem)
    if len(table):
        log.warning(
            "%d bad frames in %s, listed in %s (tile.on_bad_frame: %s)", len(table), images_dir, path, policy
        )
    if len(table) and policy == "stop":
        raise InputError(
            f"{images_dir}: {len(table)} bad frames (listed in {path}), e.g. {table['problem'].iloc[0]}; "
            "fix or remove them, or set tile.on_bad_frame: skip"
        )


def _class_map(raw_dir: Path, classes: list[str]) -> dict[int, int]:
    """Raw class ids -> project class ids, matched by name through the raw classes.txt."""
    from acorn.data.formats import read_classes

    names_file = raw_dir / "classes.txt"
    if not names_file.exists():
        return {i: i for i in range(len(classes))}
    raw_names = read_classes(names_file)
    missing = [n for n in raw_names if n not in classes]
    if missing:
        raise InputError(f"{names_file}: class {missing[0]!r} is not in params classes {classes}")
    return {i: classes.index(n) for i, n in enumerate(raw_names)}


# what tiling itself records per tile; every other manifest column comes from metadata.csv
TILE_COLUMNS = [
    "tile_id",
    "frame_id",
    "row",
    "col",
    "x0",
    "y0",
    "width",
    "height",
    "image",
    "frame_sha1",
    "n_truth",
    HASH_COLUMN,
    "signature",
]


def _with_hashes(kept: pd.DataFrame, frame_paths: dict[str, Path]) -> pd.DataFrame:
    """Kept tiles with their frame's hash: a manifest from before the hash gets it from the frame
    files once (~15 ms a 4K JPEG), not by tiling them again."""
    from tqdm import tqdm

    missing = kept[HASH_COLUMN].isna() if HASH_COLUMN in kept else pd.Series(True, index=kept.index)
    if not missing.any():
        return kept
    todo = kept.loc[missing, "frame_id"].unique()
    hashes = {f: frame_hash(frame_paths[f]) for f in tqdm(todo, desc="hash kept frames", unit="frame")}
    kept = kept.copy()
    kept.loc[missing, HASH_COLUMN] = kept.loc[missing, "frame_id"].map(hashes)
    return kept


def _finish_manifest(
    kept: pd.DataFrame, new_rows: list[dict], signature: str, raw_dir: Path, near_copy_bits: int | None
) -> pd.DataFrame:
    """Kept and new tile rows, near-copy groups formed (unless ``near_copy_bits`` is None: a
    checkpoint) and metadata.csv joined afresh: new frames get theirs, edits land."""
    new = pd.DataFrame(new_rows)
    if not new.empty:
        new["signature"] = signature
    parts = [df[[c for c in TILE_COLUMNS if c in df]] for df in (kept, new) if not df.empty]
    manifest = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=TILE_COLUMNS)
    if near_copy_bits is not None:
        manifest[GROUP_COLUMN] = group_frames(manifest, near_copy_bits) if len(manifest) else None
    metadata = raw_dir / "metadata.csv"
    if metadata.exists():
        manifest = manifest.merge(read_metadata(metadata, manifest["frame_id"]), on="frame_id", how="left")
    return manifest.sort_values(["frame_id", "row", "col"], ignore_index=True)


def read_metadata(path: Path, frame_ids: pd.Series) -> pd.DataFrame:
    """metadata.csv: one row per frame, keyed by ``frame_id``; gaps and strays are reported."""
    meta = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "frame_id" not in meta:
        raise InputError(f"{path}: needs a frame_id column (the frame's file name without suffix)")
    clash = sorted(set(meta.columns) & {*TILE_COLUMNS, GROUP_COLUMN} - {"frame_id"})
    if clash:
        raise InputError(f"{path}: column {clash[0]!r} is a tile manifest column; rename it")
    repeated = meta["frame_id"][meta["frame_id"].duplicated()]
    if not repeated.empty:
        raise InputError(f"{path}: frame {repeated.iloc[0]!r} has two rows")
    frames = set(frame_ids.unique())  # one per frame, not per tile
    missing = frames - set(meta["frame_id"])
    if missing:
        log.warning(
            "%s: %d frames have no row (e.g. %s); their tiles get no metadata (NaN)",
            path,
            len(missing),
            min(missing),
        )
    stray = set(meta["frame_id"]) - frames
    if stray:
        log.warning("%s: %d rows name no frame (e.g. %s); ignored", path, len(stray), min(stray))
    return meta[meta["frame_id"].isin(frames)]


def _remove_strays(out_dir: Path, manifest: pd.DataFrame) -> None:
    """Delete tile and truth files no manifest row names. A run killed before its checkpoint
    leaves tiles (and temporary files) the manifest never listed; they are re-tiled next run,
    unless their frame was removed meanwhile, and then nothing else would ever delete them."""
    ids = manifest["tile_id"].tolist()
    for folder, suffix in (("images", ".jpg"), ("truth", ".txt")):
        if (out_dir / folder).is_dir():  # set difference: no Python loop over ~300,000 names
            for name in set(os.listdir(out_dir / folder)).difference([t + suffix for t in ids]):
                os.unlink(out_dir / folder / name)


def _remove_tiles(out_dir: Path, tile_ids: pd.Series) -> None:
    for tid in tile_ids:
        (out_dir / "images" / f"{tid}.jpg").unlink(missing_ok=True)
        (out_dir / "truth" / f"{tid}.txt").unlink(missing_ok=True)
