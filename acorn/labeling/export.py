"""Write pulled annotations as the YOLO labels folder that train reads.

The folder is rebuilt from the backend's full state every cycle, so updated and deleted
annotations are reflected; and it is byte-identical when nothing changed, so DVC skips
train. An annotation with no boxes is kept as an empty label file: a tile a person checked
and found empty is a valuable negative.

Beside the labels: ``manifest.csv`` (one row per labeled tile: who, which annotation, when),
``problems.csv`` (every bad region found and what was done with it, see
``acorn.labeling.base.Problem``) and ``report.json`` (the counts). None of them holds a time
of the export or a server's own ids, so they change only when the labels do.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd

from acorn.data.formats import format_yolo
from acorn.labeling.base import ACTIONS, SKIPPED_BOX, Problem, Pulled
from acorn.runtime.atomic import replace_dir, write_csv, write_json

log = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
PROBLEMS = "problems.csv"
REPORT = "report.json"
PROBLEM_COLUMNS = ["tile_id", "annotation_id", "region", "kind", "action", "detail"]
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
    """Replace ``out_dir`` with one ``<tile_id>.txt`` per annotation, the manifest and the report.

    Every problem is logged as a warning naming where to fix it; a box whose class id is
    outside ``0..n_classes-1`` (a truth file of the oracle, a changed class list) is one too,
    and is skipped.
    """
    out_dir = Path(out_dir)
    boxes = pulled.boxes
    bad_class = ~boxes["class_id"].between(0, n_classes - 1)
    problems = list(pulled.problems) + [
        Problem(
            str(row.tile_id),
            None,
            "",
            "class_out_of_range",
            SKIPPED_BOX,
            f"class id {int(row.class_id)} is outside 0..{n_classes - 1}",
        )
        for row in boxes.loc[bad_class].itertuples(index=False)
    ]
    for note in pulled.notes:
        log.warning("%s", note)
    for problem in problems:
        log.warning("%s", problem.message)
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
    table = pd.DataFrame(
        [(p.tile_id, p.annotation_id, p.region, p.kind, p.action, p.detail) for p in problems],
        columns=PROBLEM_COLUMNS,
    ).astype({"annotation_id": "Int64"})
    write_csv(table.sort_values(PROBLEM_COLUMNS[:4], ignore_index=True, kind="stable"), staging / PROBLEMS)
    write_json(staging / REPORT, export_report(manifest, problems))
    replace_dir(staging, out_dir)
    return manifest


def export_report(manifest: pd.DataFrame, problems: list[Problem]) -> dict[str, object]:
    """The counts of an export: labeled tiles, boxes, negatives, and problems by kind and by action."""
    return {
        "labeled_tiles": len(manifest),
        "boxes": int(manifest["n_boxes"].sum()),
        "negatives": int((manifest["n_boxes"] == 0).sum()),
        "problems": len(problems),
        "problems_by_kind": dict(sorted(Counter(p.kind for p in problems).items())),
        "problems_by_action": {a: sum(p.action == a for p in problems) for a in ACTIONS},
    }


def read_report(labels_dir: Path) -> dict[str, object]:
    """The export's counts (``export_report``), or ``{}`` for a labels folder written before it existed."""
    path = Path(labels_dir) / REPORT
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def read_manifest(labels_dir: Path) -> pd.DataFrame:
    path = Path(labels_dir) / MANIFEST
    if not path.exists():
        return pd.DataFrame(columns=MANIFEST_COLUMNS)
    return pd.read_csv(path, dtype={"tile_id": str, "annotator": str, "updated_at": str})
