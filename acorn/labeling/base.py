"""The contract every labeling backend keeps (oracle, Label Studio, ...).

A backend holds its own state outside the DVC DAG, as a Label Studio database does: the
pipeline only ``push``es a ranked queue and ``pull``s finished annotations. Both calls are
idempotent, keyed by tile id, so a re-run stage never duplicates or loses work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

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


@dataclass
class Pulled:
    """Finished annotations plus the problems found in them (reported, skipped, never fatal)."""

    annotations: pd.DataFrame
    boxes: pd.DataFrame
    problems: list[str] = field(default_factory=list)


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
        """Every finished (not cancelled) annotation, the latest one per tile."""
        ...
