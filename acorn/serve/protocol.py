"""Label Studio's side of the ML backend protocol, as pure functions (no server, no model).

Label Studio stores whatever ``/predict`` returns, so every shape here is what its editor
expects: rectangles in percent of the image, ``from_name``/``to_name`` naming the project's
own tags, one prediction per task. Keeping this apart from the server lets it be checked
against plain numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from label_studio_sdk.label_interface import LabelInterface

from acorn.data.formats import boxes_to_percent

log = logging.getLogger("acorn.serve")


@dataclass(frozen=True)
class LabelTarget:
    """Where rectangles go in a project: the RectangleLabels tag, its Image tag and data key."""

    from_name: str = "label"
    to_name: str = "image"
    value_key: str = "image"  # the task data field holding the image URL (``$image``)
    labels: tuple[str, ...] = ()


def parse_label_config(label_config: str | None) -> LabelTarget:
    """The first ``<RectangleLabels>`` of the project, the object tag it points to, and its labels.

    Parsed by the Label Studio SDK's ``LabelInterface``, the parser Label Studio itself uses,
    so ``toName`` lists, ``$`` data keys and label aliases mean what they mean to the server.
    A project without such a tag (or no config at all) gets the defaults, which match the
    label config acorn's own Label Studio backend creates; a warning says why boxes may not show.
    """
    if not label_config:
        return LabelTarget()
    try:
        interface = LabelInterface(label_config)
    except Exception as exc:  # the SDK raises bare Exception subclasses for malformed XML
        log.warning("label_config cannot be parsed (%s); using from_name=label, to_name=image", exc)
        return LabelTarget()
    rect = next((c for c in interface.controls if c.tag.lower() == "rectanglelabels"), None)
    if rect is None:
        log.warning(
            "label_config has no <RectangleLabels>; rectangles use from_name=label, to_name=image "
            "and Label Studio will not show them until the project has such a tag"
        )
        return LabelTarget()
    to_name = rect.to_name[0] if rect.to_name else "image"
    image = next((o for o in rect.objects if o.name == to_name), None)
    value = str(image.value) if image is not None and image.value else "$image"
    return LabelTarget(rect.name, to_name, value.lstrip("$") or "image", tuple(rect.labels))


def task_score(confidences: Sequence[float]) -> float:
    """A task's prediction score: the mean confidence of the boxes shown, 0.0 when none is shown.

    This is the score the Label Studio tutorial backend reports, so sorting the task list by
    prediction score means the same thing with either backend: low = pre-annotation to check first.
    """
    return float(sum(confidences) / len(confidences)) if len(confidences) else 0.0


def rectangle_results(
    boxes: pd.DataFrame, width: int, height: int, class_names: dict[int, str], target: LabelTarget
) -> list[dict]:
    """Pixel boxes (``class_id, confidence, x1..y2``) of one image -> ``rectanglelabels`` items.

    Clipped to the image and converted by :func:`acorn.data.formats.boxes_to_percent`, as the
    boxes pushed with the queue are.
    """
    results = []
    for i, box in enumerate(boxes_to_percent(boxes, width, height).itertuples(index=False)):
        results.append(
            {
                "id": f"acorn{i}",
                "from_name": target.from_name,
                "to_name": target.to_name,
                "type": "rectanglelabels",
                "original_width": int(width),
                "original_height": int(height),
                "image_rotation": 0,
                "value": {
                    "x": float(box.x),
                    "y": float(box.y),
                    "width": float(box.w),
                    "height": float(box.h),
                    "rotation": 0,
                    "rectanglelabels": [class_names.get(int(box.class_id), str(box.class_id))],
                },
                "score": float(box.confidence),
            }
        )
    return results


def prediction(result: list[dict], model_version: str) -> dict:
    """One task's prediction; its score follows :func:`task_score` over the shown boxes."""
    return {
        "model_version": model_version,
        "score": task_score([r["score"] for r in result]),
        "result": result,
    }


def error_prediction(message: str, model_version: str) -> dict:
    """A task that could not be predicted: an empty prediction that says why, keeping the count right."""
    return {"model_version": model_version, "score": 0.0, "result": [], "error": message}
