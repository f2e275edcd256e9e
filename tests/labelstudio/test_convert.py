"""Pure conversions between pixel boxes and Label Studio JSON (no server)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from acorn.labeling.labelstudio.convert import (
    boxes_to_results,
    label_config,
    latest_finished,
    results_to_boxes,
)

CLASSES = ["squirrel", "bird"]
IDS = {c: i for i, c in enumerate(CLASSES)}
W, H = 640, 540


def rect(x, y, w, h, label="squirrel", **extra):
    item = {
        "id": extra.pop("id", "a"),
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]},
    }
    item.update(extra)
    return item


def test_label_config_one_label_per_class_in_order():
    import xml.etree.ElementTree as ET

    cfg = label_config(["squirrel", 'odd "name" & <co>'])
    labels = [e.get("value") for e in ET.fromstring(cfg).iter("Label")]
    assert labels == ["squirrel", 'odd "name" & <co>']
    assert '<Image name="image" value="$image"/>' in cfg
    assert '<RectangleLabels name="label" toName="image">' in cfg


def test_round_trip_is_exact_to_a_pixel():
    rng = np.random.default_rng(0)
    x1 = rng.uniform(0, W - 50, 40)
    y1 = rng.uniform(0, H - 50, 40)
    boxes = pd.DataFrame(
        {
            "class_id": rng.integers(0, 2, 40),
            "x1": x1,
            "y1": y1,
            "x2": x1 + rng.uniform(2, 50, 40),
            "y2": y1 + rng.uniform(2, 50, 40),
        }
    )
    parsed = results_to_boxes(boxes_to_results(boxes, W, H, CLASSES), W, H, IDS, "task 1")
    assert parsed.problems == []
    back = np.array([b[1:] for b in parsed.boxes])
    assert np.abs(back - boxes[["x1", "y1", "x2", "y2"]].to_numpy()).max() < 1e-6
    assert [b[0] for b in parsed.boxes] == boxes["class_id"].tolist()


def test_predictions_below_threshold_are_not_shown_and_overshoot_is_clipped():
    boxes = pd.DataFrame(
        {
            "class_id": [0, 1],
            "confidence": [0.9, 0.1],
            "x1": [-3, 10],
            "y1": [5, 5],
            "x2": [20, 30],
            "y2": [545, 30],
        }
    )
    results = boxes_to_results(boxes, W, H, CLASSES, min_confidence=0.25)
    assert len(results) == 1
    v = results[0]["value"]
    assert v["x"] == 0 and v["y"] + v["height"] == pytest.approx(100)
    assert results[0]["score"] == 0.9


def test_bad_regions_are_problems_naming_the_task_and_good_ones_survive():
    results = [
        rect(10, 10, 10, 10, id="good"),
        rect(10, 10, 10, 10, label="raccoon", id="unknown"),
        rect(95, 10, 20, 10, id="outside"),
        rect(10, 10, 0, 10, id="zero"),
        {"id": "choice", "type": "choices", "value": {"choices": ["x"]}},
        rect(10, 10, 10, 10, id="rotated") | {"value": {**rect(10, 10, 10, 10)["value"], "rotation": 30}},
        rect(10, 10, 10, 10, id="size", original_width=1280, original_height=1080),
    ]
    parsed = results_to_boxes(results, W, H, IDS, "task 42 (tile t1)")
    assert len(parsed.boxes) == 1
    assert len(parsed.problems) == 6
    assert all(p.startswith("task 42 (tile t1)") for p in parsed.problems)
    text = "\n".join(parsed.problems)
    for word in ("unknown label 'raccoon'", "outside", "zero-area", "choices", "rotated", "1280x1080"):
        assert word in text


def test_tiny_overshoot_from_the_browser_is_clipped_not_rejected():
    parsed = results_to_boxes([rect(90, 90, 10.00001, 10.00001)], W, H, IDS, "task 1")
    assert parsed.problems == []
    assert parsed.boxes[0][3:] == (W, H)


def test_latest_finished_ignores_cancelled_and_takes_newest():
    anns = [
        {"id": 1, "result": [], "was_cancelled": False, "updated_at": "2026-01-01T00:00:02Z"},
        {"id": 2, "result": [], "was_cancelled": False, "updated_at": "2026-01-01T00:00:05Z"},
        {"id": 3, "result": [], "was_cancelled": True, "updated_at": "2026-01-01T00:00:09Z"},
    ]
    assert latest_finished(anns)["id"] == 2
    assert latest_finished(anns[2:]) is None
    assert latest_finished([]) is None


def test_latest_finished_compares_times_not_strings():
    anns = [
        {"id": 7, "result": [], "updated_at": "2026-01-01T00:00:23.5Z"},
        {"id": 3, "result": [], "updated_at": "2026-01-01T00:00:23Z"},
    ]
    assert latest_finished(anns)["id"] == 7
