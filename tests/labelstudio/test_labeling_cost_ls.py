"""Labeling cost from a snapshot that a real Label Studio server produced (see conftest.py): its
stored ``lead_time`` and the pushed pre-annotations come back through ``pull`` into the same
kept / moved / deleted / added counts as the hand-built snapshots of tests/test_labeling_cost.py."""

from __future__ import annotations

import pandas as pd
import pytest

from acorn.labeling import cost

from .conftest import H, W, no_predictions

pytestmark = pytest.mark.labelstudio


def region(x1: float, y1: float, x2: float, y2: float, label: str = "squirrel") -> dict:
    """A rectangle as a person's annotation holds it, from tile pixels."""
    return {
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "value": {
            "x": 100 * x1 / W,
            "y": 100 * y1 / H,
            "width": 100 * (x2 - x1) / W,
            "height": 100 * (y2 - y1) / H,
            "rotation": 0,
            "rectanglelabels": [label],
        },
    }


def test_lead_time_and_pre_annotation_outcomes_survive_a_real_server(workspace):
    backend = workspace.backend()
    queue = workspace.tiles(["p", "q"], batch=2, model_version="acorn-v3")
    predictions = pd.DataFrame(
        [
            ("p", 0, 0.9, 100, 100, 200, 200),  # kept as shown
            ("p", 0, 0.8, 300, 300, 400, 400),  # moved 50 px: IoU 50 / 150 = 0.33
            ("p", 1, 0.7, 10, 10, 60, 60),  # deleted
            ("p", 0, 0.1, 500, 400, 600, 500),  # under the display threshold: never shown
        ],
        columns=["tile_id", "class_id", "confidence", "x1", "y1", "x2", "y2"],
    )
    backend.push(queue, predictions)
    tasks = workspace.tasks(backend)
    backend.client.annotations.create(
        tasks["p"].id,
        result=[region(100, 100, 200, 200), region(350, 300, 450, 400), region(500, 100, 540, 140)],
        lead_time=31.5,
        was_cancelled=False,
    )
    backend.client.annotations.create(tasks["q"].id, result=[], lead_time=4.0, was_cancelled=False)
    backend.push(queue, no_predictions())  # pushed again: no second prediction on the tasks

    table = cost.annotation_costs(backend.pull().snapshot.tasks)
    p, q = (table[table["tile_id"] == t].iloc[0] for t in ("p", "q"))
    assert (p["cycle"], p["seconds"], p["boxes"], p["shown"]) == (2, 31.5, 3, 3)
    assert p[cost.OUTCOMES].tolist() == [1, 1, 1, 1]
    assert (q["seconds"], q["boxes"], q["shown"]) == (4.0, 0, 0)
    summary = cost.cycle_costs(table, 2)
    assert list(summary.index) == [workspace.server.username]  # the author's email
    assert summary.iloc[0][["tasks", "boxes", "kept"]].tolist() == [2, 3, 1]
    assert summary.iloc[0]["hours"] == pytest.approx(35.5 / 3600)
