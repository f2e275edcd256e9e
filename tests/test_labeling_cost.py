"""Labeling cost from a snapshot: the IoU rule for pre-annotations, time per cycle and labeler,
and the oracle's modelled time. Every number here is worked out by hand in the comments."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from acorn.labeling import cost
from acorn.labeling.oracle import OracleBackend, modelled_seconds


def rect(label: str, x1: float, y1: float, x2: float, y2: float, score: float | None = None) -> dict:
    """A Label Studio rectangle region in percent of the image."""
    region = {
        "type": "rectanglelabels",
        "value": {"x": x1, "y": y1, "width": x2 - x1, "height": y2 - y1, "rectanglelabels": [label]},
    }
    return region if score is None else {**region, "score": score}


def boxes(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=cost.BOX_KEYS)


def snapshot_tasks() -> list[dict]:
    """Label Studio records: batch 1 labeled by ann (two tasks) and skipped once by bob, batch 2
    by the oracle (its pixel boxes), all kinds of outcome."""
    return [
        {
            "tile_id": "a",
            "data": {"batch": 1},
            "predictions": [
                # an older model's boxes, shown before the tile was queued again: not what ann saw
                {"model_version": "acorn-v9", "result": [rect("squirrel", 0, 0, 5, 5)]},
                {
                    "model_version": "acorn-v10",
                    "result": [
                        rect("squirrel", 10, 10, 20, 20, 0.9),  # ann keeps it exactly: IoU 1
                        rect("squirrel", 50, 50, 60, 60, 0.8),  # ann shifts it by 2: IoU 80/120 = 0.67
                        rect("squirrel", 80, 80, 90, 90, 0.7),  # ann deletes it
                    ],
                },
            ],
            "annotations": [
                {
                    "id": 1,
                    "completed_by": "ann@example.com",
                    "lead_time": 42.0,
                    "was_cancelled": False,
                    "result": [
                        rect("squirrel", 10, 10, 20, 20),
                        rect("squirrel", 52, 50, 62, 60),
                        rect("squirrel", 30, 30, 40, 40),  # drawn from scratch
                    ],
                }
            ],
        },
        {
            "tile_id": "b",
            "data": {"batch": 1},
            "predictions": [],
            "annotations": [
                {
                    "id": 2,
                    "completed_by": "bob@example.com",
                    "lead_time": 5,
                    "was_cancelled": True,
                    "result": [],
                },
                # no lead_time recorded (imported): counted as a task, not in the hours
                {
                    "id": 3,
                    "completed_by": "ann@example.com",
                    "lead_time": None,
                    "was_cancelled": False,
                    "result": [rect("squirrel", 1, 1, 2, 2), rect("bird", 3, 3, 4, 4)],
                },
            ],
        },
        {
            "tile_id": "c",
            "data": {"batch": 2},
            "predictions": [{"model_version": "acorn-v11", "boxes": [[0, 0, 0, 100, 100]]}],
            # same place, other class: moved
            "annotations": [
                {"id": 4, "completed_by": "oracle", "lead_time": 9.0, "boxes": [[1, 0, 0, 100, 100]]}
            ],
        },
    ]


def test_iou_rule_kept_moved_deleted_added():
    shown = boxes([("t", "s", 10, 10, 20, 20), ("t", "s", 50, 50, 60, 60), ("t", "s", 80, 80, 90, 90)])
    drawn = boxes([("t", "s", 10.2, 10, 20.2, 20), ("t", "s", 52, 50, 62, 60), ("t", "s", 30, 30, 40, 40)])
    out = cost.preannotation_outcomes(shown, drawn)
    # 0.2 px off: IoU 9.8 / 10.2 = 0.96 -> kept; 2 px off: 0.67 -> moved; the third pair does not overlap
    assert out.loc["t"].to_dict() == {"kept": 1, "moved": 1, "deleted": 1, "added": 1}


def test_iou_rule_thresholds_and_class():
    # IoU exactly 0.9 (9 of 10 wide) keeps, just under 0.3 is no pair, a class change moves
    shown = boxes([("k", "s", 0, 0, 10, 10), ("n", "s", 0, 0, 10, 10), ("c", "s", 0, 0, 10, 10)])
    drawn = boxes([("k", "s", 0, 0, 9, 10), ("n", "s", 0, 0, 2.9, 10), ("c", "b", 0, 0, 10, 10)])
    out = cost.preannotation_outcomes(shown, drawn)
    assert out.loc["k"].tolist() == [1, 0, 0, 0]
    assert out.loc["n"].tolist() == [0, 0, 1, 1]
    assert out.loc["c"].tolist() == [0, 1, 0, 0]


def test_pairs_go_greedily_best_first_not_each_to_its_own_best():
    # boxes 10 high, so IoU is the overlap of x intervals: P1 [0,10], P2 [4,14]; D1 [0,10], D2 [2,10]
    # P1-D1 1.0, P1-D2 0.8, P2-D2 6/12 = 0.5, P2-D1 6/14 = 0.43. Best first: P1-D1, then P2-D2.
    # (Each pre box to its best drawn box would give both to D1 and leave D2 "added".)
    shown = boxes([("t", "s", 0, 0, 10, 10), ("t", "s", 4, 0, 14, 10)])
    drawn = boxes([("t", "s", 0, 0, 10, 10), ("t", "s", 2, 0, 10, 10)])
    assert cost.preannotation_outcomes(shown, drawn).loc["t"].tolist() == [1, 1, 0, 0]


def test_no_boxes_at_all():
    out = cost.preannotation_outcomes(boxes([]), boxes([]))
    assert out.empty and list(out.columns) == cost.OUTCOMES


def test_one_row_per_annotation_from_both_backends_records():
    table = cost.annotation_costs(snapshot_tasks())
    assert list(table.columns) == cost.ANNOTATION_COST_COLUMNS
    a, skip, b, c = (r._asdict() for r in table.itertuples(index=False))
    assert (a["cycle"], a["labeler"], a["seconds"], a["boxes"], a["shown"]) == (
        1,
        "ann@example.com",
        42.0,
        3,
        3,
    )
    assert (a["kept"], a["moved"], a["deleted"], a["added"]) == (1, 1, 1, 1)  # acorn-v10's boxes, not v9's
    assert skip["skipped"] and skip["seconds"] == 5.0 and skip["boxes"] == 0
    assert math.isnan(b["seconds"]) and (b["boxes"], b["added"], b["shown"]) == (2, 2, 0)
    assert (c["cycle"], c["labeler"], c["moved"], c["kept"]) == (2, "oracle", 1, 0)


def test_cost_per_cycle_and_labeler_with_a_total():
    table = cost.cycle_costs(cost.annotation_costs(snapshot_tasks()), 1)
    assert list(table.index) == ["ann@example.com", "bob@example.com", "total"]
    assert list(table.columns) == cost.COST_COLUMNS
    ann, bob, total = (table.loc[k] for k in table.index)
    # ann: 2 tasks, 42 s recorded (the other has no time), 3 + 2 boxes
    assert (ann["tasks"], ann["skipped"], ann["boxes"], ann["added"]) == (2, 0, 5, 3)
    assert ann["hours"] == pytest.approx(42 / 3600) and ann["median_s"] == 42.0
    assert (bob["tasks"], bob["skipped"]) == (0, 1) and bob["hours"] == pytest.approx(5 / 3600)
    assert math.isnan(bob["median_s"])  # a skip is not a task done
    assert total["hours"] == pytest.approx(47 / 3600)
    assert total[["tasks", "skipped", "boxes", "shown", *cost.OUTCOMES]].tolist() == [2, 1, 5, 3, 1, 1, 1, 3]
    # one labeler: no total row repeating it
    assert list(cost.cycle_costs(cost.annotation_costs(snapshot_tasks()), 2).index) == ["oracle"]
    assert cost.cycle_costs(cost.annotation_costs(snapshot_tasks()), 7).empty


def test_cycle_totals_and_labeler_hours_up_to_the_cycle():
    costs = cost.annotation_costs(snapshot_tasks())
    one, two = cost.cycle_totals(costs, 1), cost.cycle_totals(costs, 2)
    assert one["tasks"] == 2 and one["hours"] == pytest.approx(47 / 3600)
    assert one["labeler_hours"] == pytest.approx(47 / 3600)
    assert two["tasks"] == 1 and two["labeler_hours"] == pytest.approx(56 / 3600)
    none = cost.cycle_totals(costs, 0)
    assert none["tasks"] == 0 and none["labeler_hours"] == 0 and math.isnan(none["median_s"])
    empty = cost.cycle_totals(cost.annotation_costs([]), 3)
    assert empty["tasks"] == 0 and empty["labeler_hours"] == 0.0


def test_oracle_time_model_is_stated_and_deterministic():
    counts = pd.DataFrame({"kept": [0, 2], "moved": [0, 1], "deleted": [0, 1], "added": [0, 3]})
    # 4 s a look; 2 kept x 1 + 1 moved x 5 + 1 deleted x 2 + 3 drawn x 8 = 33 s more
    assert modelled_seconds(counts).tolist() == [4.0, 37.0]


def test_oracle_records_pre_annotation_and_modelled_time_in_the_snapshot(tmp_path):
    truth = tmp_path / "truth"
    truth.mkdir()
    # 100x100 tiles: truth box centre (0.5, 0.5) size 0.2 -> pixels [40, 40, 60, 60]
    (truth / "t1.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.1 0.1 0.1 0.1\n")
    (truth / "t2.txt").write_text("")
    queue = pd.DataFrame(
        {
            "tile_id": ["t1", "t2"],
            "rank": [1, 2],
            "score": [0.0, 0.5],
            "strategy_score": [0.9, 0.1],
            "batch": 3,
            "image": ["t1.jpg", "t2.jpg"],
            "width": 100,
            "height": 100,
            "model_version": "acorn-v2",
        }
    )
    predictions = pd.DataFrame(
        [
            ("t1", 0, 0.9, 40, 40, 60, 60),  # on the first truth box: kept
            ("t1", 0, 0.1, 0, 0, 100, 100),  # under the display threshold: never shown
            ("t2", 0, 0.5, 10, 10, 30, 30),  # nothing there: deleted
        ],
        columns=["tile_id", "class_id", "confidence", "x1", "y1", "x2", "y2"],
    )
    oracle = OracleBackend(tmp_path / "state", truth, display_threshold=0.25)
    oracle.push(queue, predictions)
    assert oracle.annotate() == 2
    snapshot = oracle.pull().snapshot
    by_tile = {t["tile_id"]: t for t in snapshot.tasks}
    assert by_tile["t1"]["predictions"] == [
        {"model_version": "acorn-v2", "boxes": [[0, 40.0, 40.0, 60.0, 60.0]]}
    ]
    assert "preannotation" not in by_tile["t1"]["data"]
    # t1: a look + 1 kept + the small box drawn = 4 + 1 + 8; t2: a look + 1 deleted = 4 + 2
    assert by_tile["t1"]["annotations"][0]["lead_time"] == 13.0
    assert by_tile["t2"]["annotations"][0]["lead_time"] == 6.0
    table = cost.cycle_costs(cost.annotation_costs(snapshot.tasks), 3)
    assert table.loc["oracle", ["tasks", "boxes", "kept", "deleted", "added"]].tolist() == [2, 2, 1, 1, 1]
    assert table.loc["oracle", "hours"] == pytest.approx(19 / 3600)

    # a copy that starts from the snapshot (no state) gives the same snapshot back
    from acorn.labeling.snapshot import write_snapshot

    write_snapshot(snapshot, tmp_path / "snap")
    copy = OracleBackend(tmp_path / "copy", truth, tmp_path / "snap")
    assert copy.pull().snapshot.tasks == snapshot.tasks
