"""Predict a tile pool in bounded memory, resumably, and never twice for the same tile and model.

Why: at 300,000 tiles one sweep costs hours on a CPU, while most cycles change little: the
champion often stays (the promotion gate refused the new model) and new frames add a few
tiles. So every result is kept in a cache outside the DAG, keyed by what determines it, and a
run predicts only what the cache lacks; a run killed with SIGKILL loses at most the part it
was predicting, since each part is cached as soon as it is detected.

Cache (``.acorn/cache/predict/``, git-ignored):

- ``<model key>/`` per model: the key hashes the weights file, the predict settings that change
  results (imgsz, conf_floor, iou, max_det) and the ultralytics / torch versions; ``key.json``
  says what it holds, its mtime is the last run that used it (the oldest are pruned).
- ``<model key>/<frame_sha1>-<grid hash>.arrow``: one Arrow IPC file per frame, one row per
  tile (row, col, size, embedding and the boxes as list columns). A frame is the unit because
  the tile manifest already carries its content hash (no tile file is read to look it up) and
  the tile stage's grid signature fixes each (row, col) window; a renamed frame still hits.
  An entry may hold only some of a frame's tiles (a candidate subset, ``predict.candidates``):
  tiles predicted later are merged into it, sorted by (row, col).
- ``carry-over/``: the candidate subset's state between cycles (acorn.selection.candidates).

Who detects is an :class:`Engine`: :class:`LocalEngine` in this process, or Ray Data over a
cluster (acorn.model.ray_engine); the store decides what is missing and caches what comes back.

Device, ``batch`` and ``model.threads`` are not in the key: they change how fast results come,
and results only at float-rounding level (kept out so that the local and Ray engines share one
cache); ``Detector.predict(fixed_batch=True)`` makes a tile's result independent of the tiles it
is batched with, so cached and fresh results agree bit for bit on the same device and thread count.

Outputs (the predict stage's DVC outputs) are written with ``pyarrow.parquet.ParquetWriter``,
one row group per block of whole frames in manifest order, so the same manifest, labels and
predictions give byte-identical files whichever parts came from the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from acorn.model.detection import Detections, Detector, DetectorConfig, load_images
from acorn.paths import PREDICT_CACHE as CACHE_ROOT
from acorn.runtime.atomic import atomic_path, write_json
from acorn.runtime.errors import InputError

log = logging.getLogger("acorn")

CACHE_FORMAT = 1  # bump when the cache layout or what a prediction holds changes
MODELS_KEPT = 3  # model caches kept: the current champion and a couple to go back to
BLOCK_TILES = 4096  # manifest rows read at a time: one output row group (whole frames)
PART_BATCHES = 8  # forward passes per part: the decoded images held, and what a kill can lose

BOX_LISTS = {
    "class_id": pa.int64(),
    "confidence": pa.float64(),
    "x1": pa.float64(),
    "y1": pa.float64(),
    "x2": pa.float64(),
    "y2": pa.float64(),
}
EMBEDDING = pa.list_(pa.float32())
CACHE_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("col", pa.int64()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("n_boxes", pa.int64()),
        ("max_confidence", pa.float64()),
        ("embedding", EMBEDDING),
        *((name, pa.list_(kind)) for name, kind in BOX_LISTS.items()),
    ]
)
FRAME_KEY = ["frame_sha1", "signature"]
ROW_KEY = [*FRAME_KEY, "row", "col"]
NEEDED = ["tile_id", "frame_id", "row", "col", "image", *FRAME_KEY]
TODO_COLUMNS = ["tile_id", "path", *ROW_KEY]  # what an engine is given: tiles the cache lacks
RESULT_SCHEMA = pa.schema([("frame_sha1", pa.string()), ("signature", pa.string()), *CACHE_SCHEMA])


def model_key(config: DetectorConfig) -> tuple[str, dict]:
    """(key, description): what makes two runs' predictions the same, hashed."""
    with open(config.weights, "rb") as fh:
        weights_sha1 = hashlib.file_digest(fh, "sha1").hexdigest()
    described = {
        "format": CACHE_FORMAT,
        "weights_sha1": weights_sha1,
        "imgsz": config.imgsz,
        "conf_floor": config.conf_floor,
        "iou": config.iou,
        "max_det": config.max_det,
        "ultralytics": version("ultralytics"),  # read without importing them: a cached run
        "torch": version("torch"),  # never loads torch
    }
    key = hashlib.sha1(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]
    return key, described


class PredictionCache:
    """Per-frame predictions of one model (see the module docstring for the layout)."""

    def __init__(self, root: Path, key: str, described: dict) -> None:
        self.root = Path(root)
        self.dir = self.root / key
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json(self.dir / "key.json", described)  # also marks this model as the latest used

    def path(self, frame_sha1: str, signature: str) -> Path:
        grid = hashlib.sha1(signature.encode()).hexdigest()[:8]
        return self.dir / f"{frame_sha1}-{grid}.arrow"

    def get(self, frame_sha1: str, signature: str) -> pa.Table | None:
        path = self.path(frame_sha1, signature)
        try:
            with pa.memory_map(str(path)) as source:
                table = pa.ipc.open_file(source).read_all()
        except FileNotFoundError:
            return None
        except (pa.ArrowInvalid, OSError) as exc:  # written atomically, so only a damaged disk
            log.warning("%s: unreadable prediction cache entry (%s); predicting again", path, exc)
            return None
        return table if table.schema.equals(CACHE_SCHEMA) else None

    def put(self, frame_sha1: str, signature: str, table: pa.Table) -> None:
        with (
            atomic_path(self.path(frame_sha1, signature)) as tmp,
            pa.OSFile(str(tmp), "wb") as sink,
            pa.ipc.new_file(sink, CACHE_SCHEMA) as writer,
        ):
            writer.write_table(table)

    def prune(self, keep: int = MODELS_KEPT) -> list[Path]:
        """Remove all but the ``keep`` most recently used model caches; return what went."""
        models = sorted(
            (d for d in self.root.iterdir() if (d / "key.json").is_file()),
            key=lambda d: (d / "key.json").stat().st_mtime_ns,
            reverse=True,
        )
        gone = [d for d in models[keep:] if d != self.dir]
        for d in gone:
            shutil.rmtree(d, ignore_errors=True)
        return gone


@dataclass
class PredictStats:
    """What a run did: the tests and the log read it (tiles predicted vs served from the cache)."""

    tiles: int = 0
    frames: int = 0
    predicted_tiles: int = 0
    predicted_frames: int = 0
    cached_tiles: int = 0
    boxes: int = 0
    unlabeled_tiles: int = 0
    labeled_tiles: int = 0


class Engine(Protocol):
    """Runs the detector over tiles the cache lacks: locally (:class:`LocalEngine`) or on a Ray
    cluster (``acorn.model.ray_engine.RayEngine``). Both call ``Detector.predict(fixed_batch=True)``, so
    a tile's result does not depend on the engine's batching, and both return :func:`tile_rows`."""

    def predict(self, todo: Iterator[pd.DataFrame]) -> Iterator[pa.Table]:
        """Detect the tiles of each ``todo`` table (``TODO_COLUMNS``, whole frames' missing tiles);
        yield ``RESULT_SCHEMA`` tables as parts finish, in any order and any split."""
        ...


class LocalEngine:
    """This process: ``todo`` is consumed lazily and predicted in parts of whole frames holding at
    least ``PART_BATCHES`` passes, each cached as soon as it is detected, so memory holds one part
    of decoded images and a SIGKILL loses at most that part. Parts fill up across manifest blocks:
    a candidate subset leaves a few tiles per block, and a part of a few tiles would be mostly
    padding (``fixed_batch`` pads every pass to ``batch``)."""

    def __init__(self, make_detector: Callable[[], Detector], batch: int) -> None:
        self.make_detector = make_detector
        self.batch = batch
        self.detector: Detector | None = None  # made on the first cache miss

    def predict(self, todo: Iterator[pd.DataFrame]) -> Iterator[pa.Table]:
        size = PART_BATCHES * self.batch
        held: list[pd.DataFrame] = []  # tiles waiting for their part to fill up
        for rows in todo:
            held.append(rows)
            if sum(map(len, held)) < size:
                continue
            rows = pd.concat(held, ignore_index=True).drop_duplicates(ROW_KEY, ignore_index=True)
            frame_sizes = rows.groupby(FRAME_KEY, sort=False).size().to_numpy()
            part = np.repeat(_parts(frame_sizes, size), frame_sizes)
            last = part == part[-1]
            done = np.ones(len(rows), dtype=bool) if last.sum() >= size else ~last
            for _, whole in rows[done].groupby(part[done]):
                yield self._detect(whole)
            held = [rows[~done]]
        if sum(map(len, held)):
            yield self._detect(pd.concat(held, ignore_index=True).drop_duplicates(ROW_KEY, ignore_index=True))

    def _detect(self, part: pd.DataFrame) -> pa.Table:
        if self.detector is None:
            self.detector = self.make_detector()
        images = load_images(list(part["path"]))
        return tile_rows(part, self.detector.predict(images, list(part["tile_id"]), fixed_batch=True))


def predict_pool(
    manifest: Path,
    tiles_dir: Path,
    labeled: set[str],
    engine: Engine,
    config: DetectorConfig,
    model_version: str,
    out: dict[str, Path],
    cache_root: Path = CACHE_ROOT,
    block_tiles: int = BLOCK_TILES,
    candidates: set[str] | None = None,
) -> PredictStats:
    """Predict the tiles of ``manifest`` (cache first) and stream the three output tables.

    ``out`` maps ``boxes`` / ``tiles`` / ``labeled`` to their Parquet paths: boxes of unlabeled
    tiles, one row per unlabeled tile (manifest columns + size, box count, max confidence,
    embedding) and the embeddings of ``labeled`` tiles, every row carrying ``model_version``.
    ``candidates``: the unlabeled tiles to predict (acorn.selection.candidates); None: all of them.

    Two passes over the manifest: the first finds what the cache lacks and hands it to
    ``engine`` (the engine is not even started when nothing is missing: a re-run with an
    unchanged champion does not load the model), the second writes the outputs from the cache.
    """
    if not Path(manifest).is_file():
        raise InputError(f"{manifest}: no tile manifest; run the tile stage first (dvc repro tile)")
    schema = pq.read_schema(manifest).remove_metadata()
    missing = [c for c in NEEDED if c not in schema.names]
    if missing:
        raise InputError(f"{manifest}: no column {missing[0]!r}; re-run the tile stage (dvc repro tile)")
    key, described = model_key(config)
    cache = PredictionCache(cache_root, key, described)
    schemas = _output_schemas(schema)
    stats = PredictStats()
    wanted = (
        None if candidates is None else pa.array(sorted(labeled | candidates), schema.field("tile_id").type)
    )

    for folder in {p.parent for p in out.values() if p.parent.is_dir()}:
        for tmp in folder.glob(".*.tmp"):  # left by a killed run; would end up in the DVC output
            tmp.unlink(missing_ok=True)
    with ExitStack() as stack, tqdm(total=_count(manifest, wanted), desc="predict", unit="tile") as bar:
        filler = _Filler(cache, stats, bar)
        for result in engine.predict(_todo(manifest, tiles_dir, block_tiles, wanted, filler)):
            filler.add(result)
        filler.check_done()
        tmps = {name: stack.enter_context(atomic_path(path)) for name, path in out.items()}
        writers = {name: pq.ParquetWriter(tmps[name], schemas[name]) for name in out}
        try:
            for block in _wanted_blocks(manifest, block_tiles, wanted):
                keys = block.select(NEEDED).to_pandas()
                frames = keys[FRAME_KEY].drop_duplicates().itertuples(index=False, name=None)
                tables = {k: table for k in frames if (table := cache.get(*k)) is not None}
                outputs = _output_tables(block, keys, tables, labeled, model_version)
                for name, table in outputs.items():
                    if table.num_rows:
                        writers[name].write_table(table.cast(schemas[name]), row_group_size=table.num_rows)
                stats.boxes += outputs["boxes"].num_rows
                stats.unlabeled_tiles += outputs["tiles"].num_rows
                stats.labeled_tiles += outputs["labeled"].num_rows
                stats.tiles += block.num_rows
                stats.frames += keys["frame_id"].nunique()
        finally:
            for writer in writers.values():
                writer.close()
    gone = cache.prune()
    if gone:
        log.info("prediction cache: removed %d older model caches", len(gone))
    return stats


def _count(manifest: Path, wanted: pa.Array | None) -> int:
    """Tiles the run covers (the progress bar's total)."""
    if wanted is None:
        return pq.ParquetFile(manifest).metadata.num_rows
    ids = pq.read_table(manifest, columns=["tile_id"])["tile_id"]
    return int(pc.sum(pc.is_in(ids, value_set=wanted.cast(ids.type))).as_py() or 0)


def _output_schemas(manifest: pa.Schema) -> dict[str, pa.Schema]:
    """Fixed before the first row is written: every row group of a file has the same schema."""
    tile_id = manifest.field("tile_id").type
    labelled_by = pa.field("model_version", pa.large_string())
    own = [f for f in manifest if f.name not in ("width", "height")]
    return {
        "boxes": pa.schema([pa.field("tile_id", tile_id), *BOX_LISTS.items(), labelled_by]),
        "tiles": pa.schema(
            [
                *own,
                ("width", pa.int64()),
                ("height", pa.int64()),
                ("n_boxes", pa.int64()),
                ("max_confidence", pa.float64()),
                ("embedding", EMBEDDING),
                labelled_by,
            ]
        ),
        "labeled": pa.schema([pa.field("tile_id", tile_id), ("embedding", EMBEDDING), labelled_by]),
    }


def _frame_blocks(manifest: Path, block_tiles: int) -> Iterator[pa.Table]:
    """Manifest rows, about ``block_tiles`` at a time, cut between frames (a frame is never split).

    The manifest is read in batches, so memory holds one block whatever the pool size. Its rows
    must group each frame together (the tile stage sorts by frame): a frame seen again after
    another one would be predicted and cached in two halves.
    """
    seen: set[str] = set()
    source = pq.ParquetFile(manifest)
    schema = source.schema_arrow.remove_metadata()
    pending = schema.empty_table()
    for batch in source.iter_batches(batch_size=block_tiles):
        rows = pa.concat_tables([pending, pa.Table.from_batches([batch]).cast(schema)])
        frames = rows["frame_id"].to_numpy()
        other = np.flatnonzero(frames != frames[-1])
        cut = int(other[-1]) + 1 if len(other) else 0  # the last frame may go on in the next batch
        block, pending = rows.slice(0, cut), rows.slice(cut)
        if block.num_rows:
            yield _checked(block, seen, manifest)
    if pending.num_rows:
        yield _checked(pending, seen, manifest)


def _checked(block: pa.Table, seen: set[str], manifest: Path) -> pa.Table:
    """The block, once its frames are known to start here (a set lookup per frame: pandas' isin
    against a growing ``seen`` costs O(block x frames so far), seconds at 300,000 tiles)."""
    frames = block["frame_id"].to_numpy()
    starts = np.flatnonzero(np.concatenate([[True], frames[1:] != frames[:-1]]))
    for frame in frames[starts].tolist():
        if frame in seen:
            raise InputError(
                f"{manifest}: the tiles of frame {frame!r} are not together; "
                "rows must be grouped by frame (re-run the tile stage)"
            )
        seen.add(frame)
    return block.combine_chunks()


def _wanted_blocks(manifest: Path, block_tiles: int, wanted: pa.Array | None) -> Iterator[pa.Table]:
    """The manifest's blocks (whole frames), less the tiles outside ``wanted`` when it is given."""
    for block in _frame_blocks(manifest, block_tiles):
        if wanted is not None:
            block = block.filter(pc.is_in(block["tile_id"], value_set=wanted))
        if block.num_rows:
            yield block


def _todo(
    manifest: Path, tiles_dir: Path, block_tiles: int, wanted: pa.Array | None, filler: _Filler
) -> Iterator[pd.DataFrame]:
    """Per block, the tiles the cache lacks (``TODO_COLUMNS``; a frame shared by two frame files
    once), registered with ``filler`` before they are handed to the engine."""
    for block in _wanted_blocks(manifest, block_tiles, wanted):
        keys = block.select(NEEDED).to_pandas()
        frames = keys[FRAME_KEY].drop_duplicates()
        cached = {
            k: table
            for k in frames.itertuples(index=False, name=None)
            if (table := filler.cache.get(*k)) is not None
        }
        merged = keys[ROW_KEY].merge(_positions(cached), how="left", on=ROW_KEY, indicator=True)
        found = merged["_merge"].eq("both").to_numpy()
        filler.cached(int(found.sum()))
        rows = keys[~found].drop_duplicates(ROW_KEY)
        if rows.empty:
            continue
        rows = rows.assign(path=[str(tiles_dir / i) for i in rows["image"]])[TODO_COLUMNS]
        filler.expect(rows)
        yield rows.reset_index(drop=True)


class _Filler:
    """Puts engine results into the cache frame by frame: a frame's entry is rewritten once all of
    its expected tiles have come back (merged with the tiles already cached for it, sorted by row
    and col, so the file is the same whichever engine, part or order they came from)."""

    def __init__(self, cache: PredictionCache, stats: PredictStats, bar: tqdm) -> None:
        self.cache, self.stats, self.bar = cache, stats, bar
        self.pending: dict[tuple[str, str], set[tuple[int, int]]] = {}
        self.parts: dict[tuple[str, str], list[pa.Table]] = {}

    def cached(self, tiles: int) -> None:
        self.stats.cached_tiles += tiles
        self.bar.update(tiles)

    def expect(self, rows: pd.DataFrame) -> None:
        for key, group in rows.groupby(FRAME_KEY, sort=False):
            self.pending.setdefault(key, set()).update(zip(group["row"], group["col"], strict=True))

    def add(self, result: pa.Table) -> None:
        result = result.select(RESULT_SCHEMA.names).cast(RESULT_SCHEMA)
        index = result.select(ROW_KEY).to_pandas()
        for key, positions in index.groupby(FRAME_KEY, sort=False).indices.items():
            waiting = self.pending.get(key, set())
            rows = index.iloc[positions]
            fresh = positions[[(r, c) in waiting for r, c in zip(rows["row"], rows["col"], strict=True)]]
            if not len(fresh):
                continue  # a duplicate: already put
            waiting.difference_update(zip(rows["row"], rows["col"], strict=True))
            self.parts.setdefault(key, []).append(result.take(pa.array(fresh)).select(CACHE_SCHEMA.names))
            self.stats.predicted_tiles += len(fresh)
            self.bar.update(len(fresh))
            if not waiting:
                self._put(key)
        self.bar.set_postfix(predicted=self.stats.predicted_tiles, cached=self.stats.cached_tiles)

    def check_done(self) -> None:
        """An engine that returned less than it was given is a bug, not a user mistake."""
        left = {k: v for k, v in self.pending.items() if v}
        if left:
            raise RuntimeError(f"the engine returned no result for {sum(map(len, left.values()))} tiles")

    def _put(self, key: tuple[str, str]) -> None:
        old = self.cache.get(*key)
        merged = pa.concat_tables(([old] if old is not None else []) + self.parts.pop(key))
        self.cache.put(*key, merged.sort_by([("row", "ascending"), ("col", "ascending")]))
        del self.pending[key]
        self.stats.predicted_frames += 1


def _parts(frame_sizes: np.ndarray, tiles: int) -> np.ndarray:
    """Part number of each frame: consecutive frames are grouped until a part holds ``tiles``."""
    parts = np.zeros(len(frame_sizes), dtype=np.int64)
    part, held = 0, 0
    for i, size in enumerate(frame_sizes):
        parts[i] = part
        held += int(size)
        if held >= tiles:
            part, held = part + 1, 0
    return parts


def tile_rows(rows: pd.DataFrame, found: Detections) -> pa.Table:
    """Detections of ``rows`` (``TODO_COLUMNS``, same order) -> one ``RESULT_SCHEMA`` row per tile:
    the frame key and the cache columns, boxes as list columns. What every engine returns."""
    tiles = found.tiles
    offsets = np.concatenate([[0], np.cumsum(tiles["n_boxes"].to_numpy())])
    columns = {
        "frame_sha1": pa.array(rows["frame_sha1"].astype(str), pa.string()),
        "signature": pa.array(rows["signature"].astype(str), pa.string()),
        "row": pa.array(rows["row"].to_numpy(np.int64)),
        "col": pa.array(rows["col"].to_numpy(np.int64)),
        "width": pa.array(tiles["width"].to_numpy(np.int64)),
        "height": pa.array(tiles["height"].to_numpy(np.int64)),
        "n_boxes": pa.array(tiles["n_boxes"].to_numpy(np.int64)),
        "max_confidence": pa.array(tiles["max_confidence"].to_numpy(np.float64)),
        "embedding": pa.array(list(tiles["embedding"]), type=EMBEDDING),
    }
    for name, kind in BOX_LISTS.items():
        values = pa.array(found.boxes[name].to_numpy(), type=kind)
        columns[name] = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)
    return pa.table(columns, schema=RESULT_SCHEMA)


def _positions(tables: dict[tuple[str, str], pa.Table]) -> pd.DataFrame:
    """(frame key, row, col) of every tile in the cached ``tables``, in their order: built from
    whole columns (one small DataFrame per frame costs ~1 ms each, seconds per 1,000 frames)."""
    keys, counts = list(tables), [t.num_rows for t in tables.values()]
    return pd.DataFrame(
        {
            "frame_sha1": np.repeat(np.array([k[0] for k in keys], dtype=object), counts),
            "signature": np.repeat(np.array([k[1] for k in keys], dtype=object), counts),
            **{
                name: np.concatenate([np.zeros(0, np.int64), *(t[name].to_numpy() for t in tables.values())])
                for name in ("row", "col")
            },
        }
    )


def _output_tables(
    block: pa.Table,
    keys: pd.DataFrame,
    tables: dict[tuple[str, str], pa.Table],
    labeled: set[str],
    model_version: str,
) -> dict[str, pa.Table]:
    """A block's rows of the three outputs, in manifest order, matched by (frame, row, col)."""
    stacked = pa.concat_tables([CACHE_SCHEMA.empty_table(), *tables.values()])
    index = _positions(tables)
    at = keys[ROW_KEY].merge(index.assign(position=np.arange(len(index))), how="left", on=ROW_KEY)
    if at["position"].isna().any():
        tile = keys["tile_id"][at["position"].isna().to_numpy()].iloc[0]
        raise InputError(
            f"tile {tile}: its (row, col) is missing from its frame's cached predictions in "
            f"{CACHE_ROOT}; delete that folder and re-run"
        )
    found = stacked.take(pa.array(at["position"].to_numpy(np.int64)))
    is_labeled = keys["tile_id"].isin(labeled).to_numpy()
    pool_rows = pa.array(np.flatnonzero(~is_labeled))
    pool = block.drop_columns(["width", "height"]).take(pool_rows)
    for name in ("width", "height", "n_boxes", "max_confidence", "embedding"):
        pool = pool.append_column(name, found[name].take(pool_rows))
    unlabeled = found.take(pool_rows)
    parents = pc.list_parent_indices(unlabeled["class_id"])
    boxes = pa.table(
        {
            "tile_id": pool["tile_id"].take(parents),
            **{name: pc.list_flatten(unlabeled[name]) for name in BOX_LISTS},
        }
    )
    labeled_rows = pa.array(np.flatnonzero(is_labeled))
    embedded = pa.table(
        {"tile_id": block["tile_id"].take(labeled_rows), "embedding": found["embedding"].take(labeled_rows)}
    )
    label = pa.scalar(model_version, pa.large_string())
    return {
        name: table.append_column("model_version", pa.repeat(label, table.num_rows))
        for name, table in {"boxes": boxes, "tiles": pool, "labeled": embedded}.items()
    }
