"""Label Studio's side of the ML backend protocol, as pure functions (no server, no model).

Label Studio stores whatever ``/predict`` returns, so every shape here is what its editor
expects: rectangles in percent of the image, ``from_name``/``to_name`` naming the project's
own tags, one prediction per task. Keeping this apart from the server lets it be checked
against plain numbers.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

log = logging.getLogger("acorn.serve")


@dataclass(frozen=True)
class LabelTarget:
    """Where rectangles go in a project: the RectangleLabels tag, its Image tag and data key."""

    from_name: str = "label"
    to_name: str = "image"
    value_key: str = "image"  # the task data field holding the image URL (``$image``)
    labels: tuple[str, ...] = ()


def parse_label_config(label_config: str | None) -> LabelTarget:
    """Read the first ``<RectangleLabels name=... toName=...>`` and its ``<Image value="$key">``.

    A project without one (or no config at all) gets the defaults, which match the label
    config acorn's own Label Studio backend creates; a warning says why boxes may not show.
    """
    if not label_config:
        return LabelTarget()
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError as exc:
        log.warning("label_config is not valid XML (%s); using from_name=label, to_name=image", exc)
        return LabelTarget()
    tags = list(root.iter())
    rect = next((t for t in tags if t.tag.lower() == "rectanglelabels"), None)
    if rect is None:
        log.warning(
            "label_config has no <RectangleLabels>; rectangles use from_name=label, to_name=image "
            "and Label Studio will not show them until the project has such a tag"
        )
        return LabelTarget()
    from_name = rect.get("name", "label")
    to_name = rect.get("toName", "image").split(",")[0]
    image = next((t for t in tags if t.get("name") == to_name and t is not rect), None)
    value = image.get("value", "$image") if image is not None else "$image"
    labels = tuple(t.get("value", "") for t in rect if t.tag.lower() == "label")
    return LabelTarget(from_name, to_name, value.lstrip("$") or "image", labels)


def task_score(confidences: Sequence[float]) -> float:
    """A task's prediction score: the mean confidence of the boxes shown, 0.0 when none is shown.

    This is the score the Label Studio tutorial backend reports, so sorting the task list by
    prediction score means the same thing with either backend: low = pre-annotation to check first.
    """
    return float(sum(confidences) / len(confidences)) if len(confidences) else 0.0


def rectangle_results(
    boxes: pd.DataFrame, width: int, height: int, class_names: dict[int, str], target: LabelTarget
) -> list[dict]:
    """Pixel boxes (``class_id, confidence, x1..y2``) of one image -> ``rectanglelabels`` items."""
    results = []
    for i, box in enumerate(boxes.itertuples(index=False)):
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
                    "x": 100.0 * box.x1 / width,
                    "y": 100.0 * box.y1 / height,
                    "width": 100.0 * (box.x2 - box.x1) / width,
                    "height": 100.0 * (box.y2 - box.y1) / height,
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
