"""Pure conversions between pixel boxes and Label Studio JSON, the bad-annotation policy, and the
snapshot records that restore round-trips (hand-made annotation JSON, no server)."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from acorn.labeling.base import CLIPPED, SKIPPED_ANNOTATION, SKIPPED_BOX
from acorn.labeling.labelstudio.convert import (
    RESTORED_KEY,
    boxes_to_results,
    import_task,
    label_config,
    latest_finished,
    results_to_boxes,
    snapshot_annotation,
    snapshot_task,
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
    parsed = results_to_boxes(boxes_to_results(boxes, W, H, CLASSES), W, H, IDS, tile_id="t1")
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


POLYGON = {
    "id": "poly",
    "type": "polygonlabels",
    "from_name": "label",
    "to_name": "image",
    "original_width": W,
    "original_height": H,
    "value": {"points": [[10, 10], [20, 10], [15, 20]], "polygonlabels": ["squirrel"]},
}

# each bad region the policy knows: (region, kind, action); docs/labelstudio.md lists the same
BAD_REGIONS = {
    "outside": (rect(110, 10, 5, 5, id="out"), "outside", SKIPPED_BOX),
    "partly outside": (rect(95, 10, 20, 10, id="over"), "outside", CLIPPED),
    "negative width": (rect(50, 10, -10, 10, id="neg"), "negative_size", SKIPPED_ANNOTATION),
    "negative height": (rect(50, 10, 10, -5, id="negh"), "negative_size", SKIPPED_ANNOTATION),
    "unknown label": (rect(10, 10, 10, 10, label="raccoon", id="unk"), "unknown_label", SKIPPED_BOX),
    "polygon": (POLYGON, "not_rectangle", SKIPPED_ANNOTATION),
    "choices": (
        {"id": "ch", "type": "choices", "value": {"choices": ["x"]}},
        "not_rectangle",
        SKIPPED_ANNOTATION,
    ),
    "zero area": (rect(10, 10, 0, 10, id="zero"), "zero_area", SKIPPED_BOX),
    "two labels": (
        rect(10, 10, 10, 10, id="two")
        | {"value": {**rect(10, 10, 10, 10)["value"], "rectanglelabels": ["squirrel", "bird"]}},
        "label_count",
        SKIPPED_ANNOTATION,
    ),
    "rotated": (
        rect(10, 10, 10, 10, id="rot") | {"value": {**rect(10, 10, 10, 10)["value"], "rotation": 30}},
        "rotated",
        SKIPPED_ANNOTATION,
    ),
    "other image size": (
        rect(10, 10, 10, 10, id="size", original_width=1280, original_height=1080),
        "image_size",
        SKIPPED_ANNOTATION,
    ),
    "missing coordinate": (
        rect(10, 10, 10, 10, id="miss")
        | {"value": {"x": 1, "y": 1, "width": 5, "rectanglelabels": ["squirrel"]}},
        "bad_coordinates",
        SKIPPED_ANNOTATION,
    ),
    "not a number": (rect(float("nan"), 10, 10, 10, id="nan"), "bad_coordinates", SKIPPED_ANNOTATION),
}


@pytest.mark.parametrize("name", sorted(BAD_REGIONS))
def test_each_bad_region_is_named_and_handled_by_the_policy(name):
    region, kind, action = BAD_REGIONS[name]
    good = rect(10, 10, 10, 10, id="good")
    parsed = results_to_boxes(
        [good, region], W, H, IDS, tile_id="f1_r0_c2", annotation_id=33, where="task 17"
    )
    [problem] = parsed.problems
    assert (problem.kind, problem.action, problem.region) == (kind, action, str(region["id"]))
    message = problem.message
    assert message.startswith(f"task 17 (tile f1_r0_c2) annotation 33 region {region['id']}: "), message
    assert ("annotation skipped" if action == SKIPPED_ANNOTATION else "box") in message
    if (
        action == SKIPPED_ANNOTATION
    ):  # an object is there without a box to trust: nothing from this annotation
        assert parsed.skip_annotation and parsed.boxes == []
    else:  # the good box beside it is kept
        assert not parsed.skip_annotation
        assert parsed.boxes[0] == pytest.approx((0, 64.0, 54.0, 128.0, 108.0))
        assert len(parsed.boxes) == (2 if action == CLIPPED else 1)


def test_partly_outside_box_is_clipped_to_the_image():
    parsed = results_to_boxes([rect(95, -10, 20, 30)], W, H, IDS, tile_id="t")
    assert parsed.boxes == [(0, pytest.approx(0.95 * W), 0.0, float(W), pytest.approx(0.2 * H))]
    assert "reaches beyond the 640x540 image" in parsed.problems[0].detail


def test_details_say_what_is_wrong_without_server_ids():
    results = [region for region, _, _ in BAD_REGIONS.values()]
    parsed = results_to_boxes(results, W, H, IDS, tile_id="t", annotation_id=5, where="task 99")
    text = "\n".join(p.detail for p in parsed.problems)
    for word in (
        "unknown label 'raccoon'",
        "outside",
        "zero-area",
        "'polygonlabels'",
        "'choices'",
        "rotated",
        "1280x1080",
        "negative width or height",
        "non-finite",
        "exactly one label",
    ):
        assert word in text
    assert "99" not in text, "the task id goes to the log line (message), not into data/labels"


def test_result_that_is_not_a_list_skips_the_annotation():
    parsed = results_to_boxes({"x": 1}, W, H, IDS, tile_id="t")  # type: ignore[arg-type]
    assert parsed.skip_annotation and parsed.problems[0].kind == "bad_result"


def test_tiny_overshoot_from_the_browser_is_clipped_not_rejected():
    parsed = results_to_boxes([rect(90, 90, 10.00001, 10.00001)], W, H, IDS, tile_id="t")
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


ADMIN = "admin@acorn.local"


def server_annotation(ann_id, result, import_id=None, author=1, cancelled=False, when="2026-01-01T00:00:05Z"):
    return {
        "id": ann_id,
        "result": result,
        "completed_by": author,
        "was_cancelled": cancelled,
        "ground_truth": False,
        "created_at": when,
        "updated_at": when,
        "lead_time": 2.5,
        "import_id": import_id,
    }


def test_restored_annotation_keeps_its_identity_until_it_is_edited():
    original = snapshot_annotation(server_annotation(7, [rect(1, 1, 5, 5)], author=4), {}, {4: "ann@lab.org"})
    assert original["id"] == 7 and original["completed_by"] == "ann@lab.org"
    task = import_task(
        {"tile_id": "t", "data": {"tile_id": "t"}, "annotations": [original]}, members={ADMIN: 1}
    )
    [imported] = task["annotations"]
    assert imported["id"] == 7 and "completed_by" not in imported, (
        "unknown author: made by the importing user"
    )
    meta = task["meta"]
    # on the new server: id 1, the restoring admin, restore's time, import_id 7
    restored = server_annotation(1, [rect(1, 1, 5, 5)], import_id=7, author=1, when="2027-05-05T00:00:00Z")
    again = snapshot_annotation(restored, meta, {1: ADMIN})
    assert again == original
    edited = restored | {"result": [rect(2, 2, 5, 5)], "updated_at": "2027-06-01T00:00:00Z"}
    after_edit = snapshot_annotation(edited, meta, {1: ADMIN})
    assert (after_edit["id"], after_edit["completed_by"], after_edit["updated_at"]) == (
        1,
        ADMIN,
        "2027-06-01T00:00:00Z",
    )


def test_known_author_keeps_authorship_on_the_new_server():
    record = snapshot_annotation(server_annotation(3, []), {}, {1: ADMIN})
    [imported] = import_task({"tile_id": "t", "data": {}, "annotations": [record]}, members={ADMIN: 9})[
        "annotations"
    ]
    assert imported["completed_by"] == {"email": ADMIN}
    assert imported["result"] == [] and imported["was_cancelled"] is False, "a negative stays a negative"


def test_snapshot_task_does_not_depend_on_server_order():
    annotations = [
        snapshot_annotation(server_annotation(i, [], when=f"2026-01-01T00:00:0{i}Z"), {}, {})
        for i in range(1, 5)
    ]
    predictions = [
        {"model_version": v, "score": s, "result": []} for v, s in [("m2", 0.5), ("m1", 0.1), ("m1", 0.0)]
    ]
    meta = {RESTORED_KEY: {"1": {}}, "note": "kept"}
    first = snapshot_task("t", {"tile_id": "t"}, meta, predictions, annotations)
    random.seed(1)
    random.shuffle(annotations)
    random.shuffle(predictions)
    assert snapshot_task("t", {"tile_id": "t"}, meta, predictions, annotations) == first
    assert [a["id"] for a in first["annotations"]] == [1, 2, 3, 4]
    assert [(p["model_version"], p["score"]) for p in first["predictions"]] == [
        ("m1", 0.0),
        ("m1", 0.1),
        ("m2", 0.5),
    ]
    assert first["meta"] == {"note": "kept"}, "acorn's own restore bookkeeping is not part of the snapshot"
