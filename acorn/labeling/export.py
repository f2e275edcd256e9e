"""Write pulled annotations as the YOLO labels folder that train reads.

The folder is rebuilt from the backend's full state every cycle, so updated and deleted
annotations are reflected; and it is byte-identical when nothing changed, so DVC skips
train. An annotation with no boxes is kept as an empty label file: a tile a person checked
and found empty is a valuable negative.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd

from acorn.atomic import replace_dir, write_csv
from acorn.formats import format_yolo
from acorn.labeling.base import Pulled

log = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = [
    "tile_id",
    "annotation_id",
    "annotator",
    "updated_at",
    "batch",
    "width",
    "height",
    "n_boxes",
]


def write_labels(pulled: Pulled, out_dir: Path, n_classes: int) -> pd.DataFrame:
    """Replace ``out_dir`` with one ``<tile_id>.txt`` per annotation plus a manifest."""
    out_dir = Path(out_dir)
    for problem in pulled.problems:
        log.warning("skipped: %s", problem)
    boxes = pulled.boxes
    bad_class = ~boxes["class_id"].between(0, n_classes - 1)
    for tile_id in boxes.loc[bad_class, "tile_id"].unique():
        log.warning("skipped: tile %s has a class id outside 0..%d", tile_id, n_classes - 1)
    boxes = boxes[~bad_class]
    annotations = pulled.annotations.sort_values("tile_id", ignore_index=True)
    if annotations["tile_id"].duplicated().any():
        raise ValueError(
            f"backend returned two annotations for tile {annotations['tile_id'][annotations['tile_id'].duplicated()].iloc[0]}"
        )
    staging = out_dir.with_name(f".{out_dir.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    by_tile = dict(tuple(boxes.groupby("tile_id")))
    counts = []
    for ann in annotations.itertuples(index=False):
        tile_boxes = by_tile.get(ann.tile_id, boxes.iloc[:0])
        (staging / f"{ann.tile_id}.txt").write_text(
            format_yolo(tile_boxes, ann.width, ann.height), encoding="utf-8"
        )
        counts.append(len(tile_boxes))
    manifest = annotations.assign(n_boxes=counts)[MANIFEST_COLUMNS]
    write_csv(manifest, staging / MANIFEST)
    replace_dir(staging, out_dir)
    return manifest


def read_manifest(labels_dir: Path) -> pd.DataFrame:
    path = Path(labels_dir) / MANIFEST
    if not path.exists():
        return pd.DataFrame(columns=MANIFEST_COLUMNS)
    return pd.read_csv(path, dtype={"tile_id": str, "annotator": str, "updated_at": str})
