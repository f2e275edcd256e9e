"""Pure conversions between acorn's pixel boxes and Label Studio's JSON.

Label Studio stores a rectangle as percentages of the image (``x, y, width, height`` in
[0, 100]) plus a label name; acorn works in tile pixels ``x1, y1, x2, y2`` with a class id
that is a position in the class list. Everything here is plain data in, plain data out, so
the rules that decide what a human's box means (and which boxes are rejected, and why) and
the snapshot records that a restore turns back into tasks are unit-tested without a server.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import quoteattr

import pandas as pd

from acorn.data.formats import boxes_to_percent
from acorn.labeling.base import CLIPPED, SKIPPED_ANNOTATION, SKIPPED_BOX, Problem

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
    Clipping and the percent conversion are :func:`acorn.data.formats.boxes_to_percent`'s.
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
    """Boxes of one annotation in tile pixels, plus what was wrong with its regions."""

    boxes: list[tuple[int, float, float, float, float]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def skip_annotation(self) -> bool:
        """A region said an object is there but gave no box acorn can trust: the whole
        annotation is left out rather than exported with that object missing (which would
        teach the model that the object is background)."""
        return any(p.action == SKIPPED_ANNOTATION for p in self.problems)


def results_to_boxes(
    results: Iterable[Mapping[str, Any]] | None,
    width: int,
    height: int,
    class_ids: Mapping[str, int],
    *,
    tile_id: str,
    annotation_id: int | None = None,
    where: str = "",
) -> ParsedResult:
    """Rectangle results of one annotation -> pixel boxes, applying the bad-annotation policy.

    ``width, height`` are the tile's pixel size from the queue. ``where`` names the task on
    the server (``task 17``) for the log, so a person can open it and fix it. The policy
    (docs/labelstudio.md, "Bad annotations"), in the order the checks run:

    - not a rectangle (a polygon, a keypoint, a choice, ...), not exactly one label, rotated,
      drawn on an image of another size, coordinates missing or not finite, negative width or
      height: the region stands for an object whose box cannot be trusted, so the whole
      annotation is skipped (``skip_annotation``); the tile stays out of the labels until a
      person fixes it, rather than entering them with that object missing;
    - an unknown label (not in ``classes``): not an object acorn trains on, the box is skipped;
    - narrower or lower than ``MIN_SIDE_PX``, or nothing of it inside the image: no box there,
      it is skipped;
    - partly outside the image: clipped to it and kept (reported when it overshoots by more
      than ``OUTSIDE_TOLERANCE_PX``, the browser's rounding).

    A bad region never hides the good ones beside it from the report: every region is checked.
    """
    parsed = ParsedResult()

    def report(region: str, kind: str, action: str, detail: str) -> None:
        parsed.problems.append(Problem(tile_id, annotation_id, region, kind, action, detail, where))

    if results is not None and not isinstance(results, list):
        report(
            "",
            "bad_result",
            SKIPPED_ANNOTATION,
            f"result is a {type(results).__name__}, not a list of regions",
        )
        return parsed
    for n, item in enumerate(results or []):
        if not isinstance(item, Mapping):
            report(
                str(n),
                "bad_result",
                SKIPPED_ANNOTATION,
                f"region {n} is a {type(item).__name__}, not an object",
            )
            continue
        region = str(item.get("id", n))
        kind = item.get("type")
        if kind != RESULT_TYPE:
            report(
                region,
                "not_rectangle",
                SKIPPED_ANNOTATION,
                f"a {kind!r} region, not a rectangle ({RESULT_TYPE}): its object has no box",
            )
            continue
        value = item.get("value") or {}
        labels = value.get("rectanglelabels") or []
        if len(labels) != 1:
            report(region, "label_count", SKIPPED_ANNOTATION, f"expected exactly one label, got {labels!r}")
            continue
        label = labels[0]
        if label not in class_ids:
            report(
                region,
                "unknown_label",
                SKIPPED_BOX,
                f"unknown label {label!r} (classes: {', '.join(class_ids)})",
            )
            continue
        ow, oh = item.get("original_width"), item.get("original_height")
        if ow is not None and oh is not None and not _same_size(ow, oh, width, height):
            report(
                region,
                "image_size",
                SKIPPED_ANNOTATION,
                f"drawn on a {ow}x{oh} image but the tile is {width}x{height}",
            )
            continue
        try:
            x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
            rotation = float(value.get("rotation") or 0.0)
        except (KeyError, TypeError, ValueError):
            report(
                region,
                "bad_coordinates",
                SKIPPED_ANNOTATION,
                "missing or non-numeric x/y/width/height/rotation",
            )
            continue
        if not all(math.isfinite(v) for v in (x, y, w, h, rotation)):
            report(region, "bad_coordinates", SKIPPED_ANNOTATION, f"non-finite coordinates {(x, y, w, h)}")
            continue
        if rotation % 360 != 0:
            report(region, "rotated", SKIPPED_ANNOTATION, f"rotated box ({rotation:g} deg) not supported")
            continue
        if w < 0 or h < 0:
            report(
                region,
                "negative_size",
                SKIPPED_ANNOTATION,
                f"negative width or height ({w:g}% x {h:g}% of the image): which corner x/y names is unknown",
            )
            continue
        x1, y1 = x / 100.0 * width, y / 100.0 * height
        x2, y2 = x1 + w / 100.0 * width, y1 + h / 100.0 * height
        if x2 - x1 < MIN_SIDE_PX or y2 - y1 < MIN_SIDE_PX:
            report(
                region,
                "zero_area",
                SKIPPED_BOX,
                f"zero-area box ({x2 - x1:.2f} x {y2 - y1:.2f} px) for label {label!r}",
            )
            continue
        box = f"box ({x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}) px"
        cx1, cy1 = max(x1, 0.0), max(y1, 0.0)
        cx2, cy2 = min(x2, float(width)), min(y2, float(height))
        if cx2 - cx1 < MIN_SIDE_PX or cy2 - cy1 < MIN_SIDE_PX:
            report(region, "outside", SKIPPED_BOX, f"{box} lies outside the {width}x{height} image")
            continue
        tol = OUTSIDE_TOLERANCE_PX
        if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
            report(region, "outside", CLIPPED, f"{box} reaches beyond the {width}x{height} image")
        parsed.boxes.append((class_ids[label], cx1, cy1, cx2, cy2))
    if parsed.skip_annotation:
        parsed.boxes = []
    return parsed


def _same_size(original_width: Any, original_height: Any, width: int, height: int) -> bool:
    try:
        return (int(original_width), int(original_height)) == (int(width), int(height))
    except (TypeError, ValueError):
        return False


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


# ---- snapshot records and restored annotations ------------------------------------------------
# A restored annotation is a new row on the new server: new id, new times, and (when its author
# has no account there) another author. The task's meta keeps, under this key, what it was
# restored from, keyed by the annotation's ``import_id`` (the original id, which Label Studio's
# import stores); while the annotation is unchanged it is reported as the original.
RESTORED_KEY = "acorn_restored"
_IDENTITY = ("id", "completed_by", "created_at", "updated_at")


def fingerprint(result: Any, was_cancelled: bool) -> str:
    """What a person can change in an annotation, hashed: an edit after a restore changes it."""
    body = json.dumps(
        {"result": result, "was_cancelled": bool(was_cancelled)}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def snapshot_annotation(
    annotation: Mapping[str, Any], meta: Mapping[str, Any] | None, users: Mapping[Any, str]
) -> dict[str, Any]:
    """One annotation as the labels and the snapshot record it.

    ``users`` maps the server's user ids to emails (an email means the same person on any
    server; an id does not). An annotation restored by acorn and not edited since is its
    original: the id, author and times it had where it was made.
    """
    author = annotation.get("completed_by")
    if isinstance(author, Mapping):  # some endpoints expand the user
        author = author.get("id")
    record: dict[str, Any] = {
        "id": int(annotation["id"]),
        "completed_by": users.get(author, str(author)),
        "created_at": str(annotation.get("created_at") or ""),
        "updated_at": str(annotation.get("updated_at") or annotation.get("created_at") or ""),
        "was_cancelled": bool(annotation.get("was_cancelled")),
        "ground_truth": bool(annotation.get("ground_truth")),
        "lead_time": annotation.get("lead_time"),
        "result": annotation.get("result"),
    }
    restored = ((meta or {}).get(RESTORED_KEY) or {}).get(str(annotation.get("import_id")))
    if isinstance(restored, Mapping) and restored.get("fingerprint") == fingerprint(
        record["result"], record["was_cancelled"]
    ):
        record.update({k: restored[k] for k in _IDENTITY if k in restored})
    return record


def snapshot_task(
    tile_id: str,
    data: Mapping[str, Any],
    meta: Mapping[str, Any] | None,
    predictions: Iterable[Mapping[str, Any]],
    annotations: Iterable[Mapping[str, Any]],
) -> dict[str, Any]:
    """One tile's record in the snapshot: its task data (image, queue fields), meta, predictions
    and snapshot annotations, in an order that does not depend on the server."""
    own_meta = {k: v for k, v in (meta or {}).items() if k != RESTORED_KEY}
    preds = [
        {
            "model_version": str(p.get("model_version") or ""),
            "score": p.get("score"),
            "result": p.get("result") or [],
        }
        for p in predictions
    ]
    preds.sort(
        key=lambda p: (p["model_version"], p["score"] is None, p["score"] or 0.0, _canonical(p["result"]))
    )
    record: dict[str, Any] = {
        "tile_id": tile_id,
        "data": dict(data),
        "predictions": preds,
        "annotations": sorted(annotations, key=lambda a: (*annotation_order(a), _canonical(a))),
    }
    if own_meta:
        record["meta"] = own_meta
    return record


def import_task(record: Mapping[str, Any], members: Mapping[str, int]) -> dict[str, Any]:
    """A snapshot record as a task for Label Studio's import, annotations and predictions inline.

    The import keeps an annotation's ``id`` as its ``import_id``; an author with an account
    (by email) on this server is its author again, anyone else's annotation is made by the
    importing user. The original identity of each goes to the task's meta (``restored_meta``).
    """
    annotations = []
    for a in record.get("annotations", []):
        item: dict[str, Any] = {
            "id": a["id"],
            "result": a.get("result"),
            "was_cancelled": bool(a.get("was_cancelled")),
            "ground_truth": bool(a.get("ground_truth")),
            "lead_time": a.get("lead_time"),
        }
        if a.get("completed_by") in members:
            item["completed_by"] = {"email": a["completed_by"]}
        annotations.append(item)
    return {
        "data": dict(record["data"]),
        "meta": {**record.get("meta", {}), RESTORED_KEY: restored_meta(record.get("annotations", []))},
        "annotations": annotations,
        "predictions": [dict(p) for p in record.get("predictions", [])],
    }


def restored_meta(annotations: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The task meta that makes restored annotations report their original identity."""
    return {
        str(a["id"]): {
            **{k: a.get(k) for k in _IDENTITY},
            "fingerprint": fingerprint(a.get("result"), bool(a.get("was_cancelled"))),
        }
        for a in annotations
    }


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
