"""Pure conversions between acorn's pixel boxes and Label Studio's JSON.

Label Studio stores a rectangle as percentages of the image (``x, y, width, height`` in
[0, 100]) plus a label name; acorn works in tile pixels ``x1, y1, x2, y2`` with a class id
that is a position in the class list. Everything here is plain data in, plain data out, so
the rules that decide what a human's box means (and which boxes are rejected, and why) are
unit-tested without a server.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import quoteattr

import pandas as pd

from acorn.formats import boxes_to_percent

FROM_NAME = "label"
TO_NAME = "image"
RESULT_TYPE = "rectanglelabels"

# a box may overshoot the image by this many pixels (float rounding in the browser) and is clipped;
# beyond it the box is reported as outside the image
OUTSIDE_TOLERANCE_PX = 0.5
# narrower or lower than this (pixels) is a degenerate, zero-area box
MIN_SIDE_PX = 0.5


def label_config(classes: Sequence[str]) -> str:
    """The labeling interface: one image, one rectangle tool with one label per class.

    The order of ``classes`` is the class id order, as in ``params.yaml``.
    """
    if not classes:
        raise ValueError("label_config needs at least one class")
    labels = "".join(f"<Label value={quoteattr(str(c))}/>" for c in classes)
    return (
        f'<View><Image name="{TO_NAME}" value="$image"/>'
        f'<RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}">{labels}</RectangleLabels></View>'
    )


def boxes_to_results(
    boxes: pd.DataFrame,
    width: int,
    height: int,
    classes: Sequence[str],
    min_confidence: float = 0.0,
) -> list[dict[str, Any]]:
    """Pixel boxes (``class_id, x1..y2`` and optionally ``confidence``) -> rectangle results.

    Boxes under ``min_confidence`` are left out: the pre-annotation shows what the model
    believes at the display threshold, while the faint candidates still drive the ranking.
    Clipping and the percent conversion are :func:`acorn.formats.boxes_to_percent`'s.
    """
    if boxes.empty:
        return []
    if "confidence" in boxes.columns:
        boxes = boxes[boxes["confidence"] >= min_confidence]
    bad = [int(c) for c in boxes["class_id"] if not 0 <= int(c) < len(classes)]
    if bad:
        raise ValueError(f"class id {bad[0]} is not in the class list ({len(classes)} classes)")
    results: list[dict[str, Any]] = []
    for i, row in enumerate(boxes_to_percent(boxes, width, height).itertuples(index=False)):
        item: dict[str, Any] = {
            "id": f"r{i}",
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "type": RESULT_TYPE,
            "original_width": int(width),
            "original_height": int(height),
            "image_rotation": 0,
            "value": {
                "x": float(row.x),
                "y": float(row.y),
                "width": float(row.w),
                "height": float(row.h),
                "rotation": 0,
                "rectanglelabels": [classes[int(row.class_id)]],
            },
        }
        if hasattr(row, "confidence"):
            item["score"] = float(row.confidence)
        results.append(item)
    return results


@dataclass
class ParsedResult:
    """Boxes of one annotation in tile pixels, plus what was wrong with the rest."""

    boxes: list[tuple[int, float, float, float, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def results_to_boxes(
    results: Iterable[Mapping[str, Any]] | None,
    width: int,
    height: int,
    class_ids: Mapping[str, int],
    where: str,
) -> ParsedResult:
    """Rectangle results of one annotation -> pixel boxes; bad regions become problems.

    ``width, height`` are the tile's pixel size from the queue; a region that says it was drawn
    on an image of another size is reported (its percentages would mean other pixels).
    ``where`` names the task in every problem (``task 17 (tile f1_r0_c2)``), so a person can
    open it in the browser and fix it. A bad region never hides the good ones beside it.
    """
    parsed = ParsedResult()
    for n, item in enumerate(results or []):
        region = f"{where} region {item.get('id', n)}"
        kind = item.get("type")
        if kind != RESULT_TYPE:
            parsed.problems.append(f"{region}: result type {kind!r} is not a rectangle label; skipped")
            continue
        value = item.get("value") or {}
        labels = value.get("rectanglelabels") or []
        if len(labels) != 1:
            parsed.problems.append(f"{region}: expected exactly one label, got {labels!r}; skipped")
            continue
        label = labels[0]
        if label not in class_ids:
            parsed.problems.append(
                f"{region}: unknown label {label!r} (classes: {', '.join(class_ids)}); skipped"
            )
            continue
        if float(value.get("rotation") or 0.0) % 360 != 0:
            parsed.problems.append(
                f"{region}: rotated box ({value.get('rotation')} deg) not supported; skipped"
            )
            continue
        ow, oh = item.get("original_width"), item.get("original_height")
        if ow is not None and oh is not None and (int(ow), int(oh)) != (int(width), int(height)):
            parsed.problems.append(
                f"{region}: drawn on a {ow}x{oh} image but the tile is {width}x{height}; skipped"
            )
            continue
        try:
            x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
        except (KeyError, TypeError, ValueError):
            parsed.problems.append(f"{region}: missing or non-numeric x/y/width/height; skipped")
            continue
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            parsed.problems.append(f"{region}: non-finite coordinates; skipped")
            continue
        x1, y1 = x / 100.0 * width, y / 100.0 * height
        x2, y2 = x1 + w / 100.0 * width, y1 + h / 100.0 * height
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        tol = OUTSIDE_TOLERANCE_PX
        if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
            parsed.problems.append(
                f"{region}: box ({x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}) px is outside the "
                f"{width}x{height} image; skipped"
            )
            continue
        x1, x2 = max(x1, 0.0), min(x2, float(width))
        y1, y2 = max(y1, 0.0), min(y2, float(height))
        if x2 - x1 < MIN_SIDE_PX or y2 - y1 < MIN_SIDE_PX:
            parsed.problems.append(
                f"{region}: zero-area box ({x2 - x1:.2f} x {y2 - y1:.2f} px) for label {label!r}; skipped"
            )
            continue
        parsed.boxes.append((class_ids[label], x1, y1, x2, y2))
    return parsed


def latest_finished(annotations: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The annotation that counts for a task: the latest-updated one that was not cancelled.

    A skipped task ("cancelled") is a person saying "not now", not "nothing here": it must not
    become a negative. When a task has several finished annotations (a correction, a second
    annotator), the newest wins; ties go to the higher id, which is the later one created.
    """
    finished = [a for a in annotations if not a.get("was_cancelled") and a.get("result") is not None]
    if not finished:
        return None
    return max(finished, key=annotation_order)


def annotation_order(annotation: Mapping[str, Any]) -> tuple[datetime, int]:
    """Sort key "which annotation is newer": parsed time (not the string: ``...23Z`` and
    ``...23.5Z`` sort wrongly as text), then id."""
    stamp = annotation.get("updated_at") or annotation.get("created_at")
    when = datetime.min.replace(tzinfo=UTC)
    if isinstance(stamp, datetime):
        when = stamp
    elif stamp:
        with contextlib.suppress(ValueError):
            when = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when, int(annotation.get("id") or 0)
