"""The report stage's pieces: what was labeled, the next batch's sheet, the test set's mistakes,
the suspect labels.

Each function takes tables already read (the stage reads the files), so that it can be tested
with a few hand-made rows; only ``read_test_set`` reads a folder of images and its scored boxes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from acorn.data.formats import empty_boxes, read_yolo_labels
from acorn.model.detection import load_images
from acorn.model.training import BOXES, IMAGES
from acorn.reporting.drawing import (
    MISSED,
    PREDICTED,
    contact_sheet,
    side_by_side,
    thumbnail,
    zoom,
    zoom_window,
)
from acorn.runtime.errors import InputError

THUMB_WIDTH = 320  # a mistake's 640x540 tile at half size
QUEUE_WIDTH = 256  # a queued tile: 50 of them, 5 a row, fill GitHub's page and ~1 MB of PNG
QUEUE_COLUMNS = 5
ZOOM_SIZE = 200  # the enlarged crop next to a mistake: a 16 px squirrel becomes 80 px
MIN_ZOOM = 1.5  # a crop is shown only if it enlarges the mistake this much over the tile's thumbnail


def labeled_summary(batch: pd.DataFrame, tiles: pd.DataFrame, by: str) -> pd.DataFrame:
    """This cycle's labeled tiles (rows of the labels manifest) counted per ``by`` value, plus a total.

    ``by`` is a tile manifest column (the metadata column the batch was balanced over); '' or a
    column the manifest lacks gives the total alone.
    """
    counts = batch[["tile_id", "n_boxes"]].assign(with_objects=batch["n_boxes"] > 0)
    total = pd.DataFrame(
        {
            "tiles": [len(counts)],
            "with objects": [int(counts["with_objects"].sum())],
            "empty": [int((~counts["with_objects"]).sum())],
            "boxes": [int(counts["n_boxes"].sum())],
        },
        index=pd.Index(["total"], name=by or "group"),
    )
    if not by or by not in tiles or counts.empty:
        return total
    groups = counts.merge(tiles[["tile_id", by]], on="tile_id", how="left")
    groups[by] = groups[by].fillna("(none)").astype(str).replace("", "(none)")
    per_group = groups.groupby(by, sort=True).agg(
        tiles=("tile_id", "size"), **{"with objects": ("with_objects", "sum")}, boxes=("n_boxes", "sum")
    )
    per_group.insert(2, "empty", per_group["tiles"] - per_group["with objects"])
    return pd.concat([per_group.astype("int64"), total])


@dataclass(frozen=True)
class TestSet:
    """The test set's images by tile id, the champion's boxes on them and the true boxes."""

    __test__ = False  # not a pytest test class

    images: dict[str, Path]
    predictions: pd.DataFrame
    truth: pd.DataFrame


def read_test_set(folder: Path, scored: Path, n_classes: int) -> TestSet:
    """The YOLO folder ``folder`` (images/, labels/) with its truth and the champion's boxes as the
    validator scored them (``scored``: a folder ``acorn.model.training.evaluate`` kept, see
    ``acorn.cycle_step.fine_tune.scored_boxes_dir``): the pictures show the boxes the test score
    counts. A tile with no label file is a checked empty tile, as in training."""
    from ultralytics.data.utils import IMG_FORMATS  # the images the train stage's test score counts

    images_dir = folder / "images"
    files = sorted(f for f in images_dir.glob("*") if f.suffix.lower().lstrip(".") in IMG_FORMATS)
    if not files:
        raise InputError(f"{images_dir}: no test images (test.data; YOLO layout images/, labels/)")
    ids = [f.stem for f in files]
    if len(set(ids)) != len(ids):
        raise InputError(f"{images_dir}: two images share a name stem; the test set needs unique names")
    boxes = pd.read_parquet(scored / BOXES)
    sizes = pd.read_parquet(scored / IMAGES)
    truth = [
        read_yolo_labels(label, int(w), int(h)).assign(tile_id=t)
        for t, w, h in sizes.itertuples(index=False)
        if (label := folder / "labels" / f"{t}.txt").is_file()
    ]
    truth = (
        pd.concat(truth, ignore_index=True) if truth else empty_boxes().assign(tile_id=pd.Series(dtype=str))
    )
    bad = truth[~truth["class_id"].between(0, n_classes - 1)]
    if not bad.empty:
        raise InputError(
            f"{folder / 'labels' / bad['tile_id'].iloc[0]}.txt: class id {bad['class_id'].iloc[0]} "
            f"is not among the {n_classes} classes in params.yaml"
        )
    return TestSet(dict(zip(ids, files, strict=True)), boxes, truth)


def queue_sheet(
    queue: pd.DataFrame, boxes: pd.DataFrame, threshold: float, limit: int, tags: pd.Series
) -> Image.Image | None:
    """The next batch in queue order, each tile with the champion's boxes at ``threshold`` or above.

    ``queue``: rank, tile_id, image (path); ``boxes``: the predict stage's per-box table; ``tags``:
    a label per tile id (its condition) or empty. The caption says how many boxes cleared the
    threshold and the most confident one: why the strategy found the tile uncertain is usually
    visible from the two together.
    """
    shown = queue.sort_values("rank").head(limit)
    if shown.empty:
        return None
    mine = boxes[boxes["tile_id"].isin(shown["tile_id"])]
    top = mine.groupby("tile_id")["confidence"].max()
    kept = dict(tuple(mine[mine["confidence"] >= threshold].groupby("tile_id")))
    cells, captions = [], []
    for row in shown.itertuples(index=False):
        drawn = kept.get(row.tile_id, mine.iloc[:0])
        cells.append(thumbnail(load_images([Path(row.image)])[0], QUEUE_WIDTH, [(drawn, PREDICTED)]))
        n = len(drawn)
        captions.append(
            f"#{row.rank} {tags.get(row.tile_id, '')}  {n} box{'es' if n != 1 else ''}, "
            f"top {top.get(row.tile_id, 0.0):.2f}"
        )
    return contact_sheet(cells, captions, QUEUE_COLUMNS)


def mistakes_sheet(
    mistakes: pd.DataFrame,
    others: pd.DataFrame,
    images: Mapping[str, Path],
    colors: tuple[tuple[int, int, int], tuple[int, int, int]],
    caption: Callable[[pd.Series, int], str],
    limit: int,
    columns: int,
) -> Image.Image | None:
    """One cell per tile for the tiles of the first mistakes, in ``mistakes`` order (``limit`` tiles).

    A cell is the whole tile with all of its mistakes (first colour) and, for context, ``others``
    (second colour: the truth on a false positive's tile, the predictions on a missed object's
    tile), so that a wrong box reads apart from a box in the wrong place. Next to it, an enlarged
    crop around the tile's first mistake, where the crop shows it larger than the tile does.
    """
    firsts = mistakes.drop_duplicates("tile_id").head(limit)
    if firsts.empty:
        return None
    mine, theirs = dict(tuple(mistakes.groupby("tile_id"))), dict(tuple(others.groupby("tile_id")))
    cells, captions = [], []
    for _, box in firsts.iterrows():
        tile = box["tile_id"]
        image = load_images([images[tile]])[0]
        layers = [(theirs.get(tile, others.iloc[:0]), colors[1]), (mine[tile], colors[0])]
        cell = thumbnail(image, THUMB_WIDTH, layers)
        window = zoom_window(box, image.size)
        if ZOOM_SIZE / window[2] >= MIN_ZOOM * THUMB_WIDTH / image.width:
            cell = side_by_side(cell, zoom(image, window, ZOOM_SIZE, layers))
        cells.append(cell)
        captions.append(caption(box, len(mine[tile])))
    return contact_sheet(cells, captions, columns)


def false_positive_caption(box: pd.Series, on_tile: int) -> str:
    more = f" (+{on_tile - 1} more)" if on_tile > 1 else ""
    return f"{box['confidence']:.2f}{more}  {box['tile_id']}"


def missed_caption(box: pd.Series, on_tile: int) -> str:
    more = f" (+{on_tile - 1} more)" if on_tile > 1 else ""
    return f"missed {box['x2'] - box['x1']:.0f}x{box['y2'] - box['y1']:.0f} px{more}  {box['tile_id']}"


def suspects_sheet(
    suspects: pd.DataFrame, boxes: pd.DataFrame, images: Mapping[str, Path], threshold: float
) -> Image.Image | None:
    """One cell per suspect label, in review order: the tile with its label boxes (cyan) and the
    champion's boxes at ``threshold`` or above (yellow, confidence shown), and an enlarged crop
    around the box the reason is about (the most confident unlabeled prediction for a missed
    object, else the first label box) where the crop shows it larger.

    ``suspects``: acorn.labeling.review's rows (rank, tile_id, reason, score); ``boxes``: its
    ``boxes.csv`` (``source`` label or model, pixel corners).
    """
    if suspects.empty:
        return None
    by_tile = dict(tuple(boxes.groupby("tile_id")))
    cells, captions = [], []
    for row in suspects.itertuples(index=False):
        tile = by_tile.get(row.tile_id, boxes.iloc[:0])
        label = tile[tile["source"] == "label"].drop(columns="confidence")
        model = tile[(tile["source"] == "model") & (tile["confidence"] >= threshold)]
        image = load_images([images[row.tile_id]])[0]
        layers = [(model, PREDICTED), (label, MISSED)]
        cell = thumbnail(image, THUMB_WIDTH, layers)
        focus = model.sort_values("confidence", ascending=False) if row.reason == "missed" else label
        if len(focus):
            window = zoom_window(focus.iloc[0], image.size)
            if ZOOM_SIZE / window[2] >= MIN_ZOOM * THUMB_WIDTH / image.width:
                cell = side_by_side(cell, zoom(image, window, ZOOM_SIZE, layers))
        cells.append(cell)
        captions.append(f"#{row.rank} {row.reason} {row.score:.2g}  {row.tile_id}")
    return contact_sheet(cells, captions, 2)
