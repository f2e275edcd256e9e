"""The contract every labeling backend keeps (oracle, Label Studio, ...).

A backend holds its own state outside the DVC DAG, as a Label Studio database does: the
pipeline only ``push``es a ranked queue and ``pull``s finished annotations. Both calls are
idempotent, keyed by tile id, so a re-run stage never duplicates or loses work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

# queue: one row per tile to label, in ranking order; `score` rises along the queue from 0 (Label Studio serves the lowest first),
# `strategy_score` is the strategy's raw value
QUEUE_COLUMNS = [
    "tile_id",
    "rank",
    "score",
    "strategy_score",
    "batch",
    "image",
    "width",
    "height",
    "model_version",
]
# one row per finished annotation (the latest per tile); a row with no boxes is a checked negative
ANNOTATION_COLUMNS = ["tile_id", "annotation_id", "annotator", "updated_at", "batch", "width", "height"]
# boxes of those annotations, in tile pixels
LABEL_BOX_COLUMNS = ["tile_id", "class_id", "x1", "y1", "x2", "y2"]


@dataclass
class PushResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


# what export does with a region it cannot take as it is (docs/labelstudio.md, "Bad annotations")
CLIPPED = "clipped"  # the box is cut to the image and kept
SKIPPED_BOX = "skipped_box"  # this box is left out, the rest of the annotation is kept
SKIPPED_ANNOTATION = "skipped_annotation"  # the tile stays out of data/labels until the annotation is fixed
ACTIONS = {
    CLIPPED: "box clipped to the image",
    SKIPPED_BOX: "box skipped",
    SKIPPED_ANNOTATION: "annotation skipped: the tile stays unlabeled until it is fixed",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a finished annotation and what export did about it.

    Everything but ``where`` is about the label, not the server that holds it (the tile, the
    annotation id, the region id inside the annotation), so the report written into
    ``data/labels`` is the same before and after a restore to another server. ``where`` is how
    a person finds it on the server ("task 17"), and goes to the log only.
    """

    tile_id: str
    annotation_id: int | None
    region: str  # the region's id in the annotation; "" when the whole annotation is meant
    kind: str  # a short name: unknown_label, outside, negative_size, not_rectangle, ...
    action: str  # one of ACTIONS
    detail: str  # what is wrong, with the values that make it wrong
    where: str = ""

    @property
    def message(self) -> str:
        place = f"{self.where} (tile {self.tile_id})" if self.where else f"tile {self.tile_id}"
        if self.annotation_id is not None:
            place += f" annotation {self.annotation_id}"
        if self.region:
            place += f" region {self.region}"
        return f"{place}: {self.detail}; {ACTIONS[self.action]}"


@dataclass
class Snapshot:
    """What the backend held when it was pulled: every task, with its annotations (cancelled and
    empty ones too) and predictions, one record per tile, sorted by tile id.

    ``project`` names the backend and project and holds project-wide state (the model version
    the labeling stream follows) and counts. Nothing in it depends on when it was taken or on
    the server's own ids, so an unchanged project gives the same bytes, and a project restored
    to another server gives the snapshot it was restored from (acorn.labeling.snapshot).
    """

    project: dict[str, Any]
    tasks: list[dict[str, Any]] = field(default_factory=list)

    def labeled_tiles(self) -> set[str]:
        """Tiles with at least one finished (not cancelled) annotation."""
        return {
            t["tile_id"]
            for t in self.tasks
            if any(not a.get("was_cancelled") for a in t.get("annotations", []))
        }


@dataclass
class Pulled:
    """Finished annotations, the problems found in them (reported, handled, never fatal), what
    the backend held (``snapshot``), and remarks about the server's state for the log (``notes``)."""

    annotations: pd.DataFrame
    boxes: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    snapshot: Snapshot = field(default_factory=lambda: Snapshot(project={}))
    notes: list[str] = field(default_factory=list)


class LabelingBackend(Protocol):
    def push(
        self, queue: pd.DataFrame, predictions: pd.DataFrame, waiting: pd.DataFrame | None = None
    ) -> PushResult:
        """Queue tiles for labeling with pre-annotations.

        ``queue`` has QUEUE_COLUMNS (``image`` is a path relative to the repository root);
        ``predictions`` are the per-box rows (``tile_id, class_id, confidence, x1..y2``) of
        the model that ranked them. Tiles already queued are updated, never duplicated.
        ``waiting`` (same columns) ranks the rest of the pool below the queue: tiles queued in
        an earlier cycle and still unlabeled get the new model's predictions from it; no new
        task is made for them.
        """
        ...

    def pull(self) -> Pulled:
        """Every finished (not cancelled) annotation, the latest one per tile, and a snapshot of
        everything the backend holds (acorn.labeling.snapshot keeps it as a stage output)."""
        ...

    def push_review(self, suspects: pd.DataFrame) -> int:
        """Queue suspect labels (acorn.labeling.review's rows: ``tile_id, annotation_id, cycle,
        rank, reason, score``) for a second look; return how many are new. A correction is a newer
        annotation of the tile, so it comes back through ``pull`` like any label."""
        ...
