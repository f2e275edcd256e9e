"""The Label Studio format, checked against plain numbers (no model, no server)."""

from __future__ import annotations

import pandas as pd
import pytest

from acorn.serve.protocol import (
    LabelTarget,
    error_prediction,
    parse_label_config,
    prediction,
    rectangle_results,
    task_score,
)

CONFIG = """
<View>
  <Image name="frame" value="$img" zoom="true"/>
  <RectangleLabels name="boxes" toName="frame">
    <Label value="squirrel" background="red"/>
  </RectangleLabels>
</View>
"""


def test_label_config_names_come_from_the_project():
    assert parse_label_config(CONFIG) == LabelTarget("boxes", "frame", "img", ("squirrel",))


@pytest.mark.parametrize("config", [None, "", "<View><Image name='image' value='$image'/></View>", "<View"])
def test_label_config_defaults(config):
    assert parse_label_config(config) == LabelTarget("label", "image", "image", ())


def test_rectangles_are_percent_of_the_image():
    boxes = pd.DataFrame(
        {
            "class_id": [0, 3],
            "confidence": [0.9, 0.5],
            "x1": [64.0, 0.0],
            "y1": [54.0, 0.0],
            "x2": [128.0, 640.0],
            "y2": [108.0, 540.0],
        }
    )
    items = rectangle_results(boxes, 640, 540, {0: "squirrel"}, LabelTarget("boxes", "frame", "img"))
    first, second = items
    assert (
        first["from_name"] == "boxes" and first["to_name"] == "frame" and first["type"] == "rectanglelabels"
    )
    assert (first["original_width"], first["original_height"]) == (640, 540)
    assert first["value"]["x"] == pytest.approx(10.0) and first["value"]["y"] == pytest.approx(10.0)
    assert first["value"]["width"] == pytest.approx(10.0) and first["value"]["height"] == pytest.approx(10.0)
    assert first["value"]["rectanglelabels"] == ["squirrel"] and first["score"] == 0.9
    assert second["value"] | {"rectanglelabels": None} == {
        "x": 0.0,
        "y": 0.0,
        "width": 100.0,
        "height": 100.0,
        "rotation": 0,
        "rectanglelabels": None,
    }
    assert second["value"]["rectanglelabels"] == ["3"]  # a class the model has no name for
    assert first["id"] != second["id"]


def test_task_score_is_mean_of_shown_boxes():
    assert task_score([]) == 0.0
    assert task_score([0.5, 0.75]) == pytest.approx(0.625)
    shown = [{"score": 0.4}, {"score": 0.8}]
    assert prediction(shown, "m-v1") == {
        "model_version": "m-v1",
        "score": pytest.approx(0.6),
        "result": shown,
    }
    assert error_prediction("bad", "m-v1") == {
        "model_version": "m-v1",
        "score": 0.0,
        "result": [],
        "error": "bad",
    }


def test_rectangles_are_clipped_to_the_image_as_the_pushed_ones_are():
    """A box overshooting the border is clipped, one wholly outside is not sent, and the values
    equal those of the pre-annotations the rank stage pushes for the same boxes."""
    from acorn.labeling.labelstudio.convert import boxes_to_results

    boxes = pd.DataFrame(
        {
            "class_id": [0, 0],
            "confidence": [0.9, 0.5],
            "x1": [-3.0, 650.0],
            "y1": [500.0, 10.0],
            "x2": [40.0, 700.0],
            "y2": [545.0, 20.0],
        }
    )
    [item] = rectangle_results(boxes, 640, 540, {0: "squirrel"}, LabelTarget())
    v = item["value"]
    assert v["x"] == 0.0 and v["width"] == pytest.approx(40 / 6.4)
    assert v["y"] + v["height"] == pytest.approx(100.0)
    [pushed] = boxes_to_results(boxes, 640, 540, ["squirrel"])
    assert pushed["value"] == v
