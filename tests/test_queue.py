import numpy as np
import pandas as pd

from acorn.params import Params
from acorn.selection.labeling_queue import build_queue
from acorn.selection.strategies import order_by_score


def pool(n=12):
    return pd.DataFrame(
        {
            "tile_id": [f"t{i:02d}" for i in range(n)],
            "image": [f"images/t{i:02d}.jpg" for i in range(n)],
            "width": 640,
            "height": 540,
            "n_boxes": [1] * (n - 2) + [0, 0],
            "condition": ["day"] * (n - 3) + ["night"] * 3,
            "model_version": "m-v3",
            "embedding": list(np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)),
        }
    )


def boxes(n=12):
    # tile i has one box at confidence (i + 1) / 20: entropy rises towards 0.5
    return pd.DataFrame(
        {
            "tile_id": [f"t{i:02d}" for i in range(n - 2)],
            "class_id": 0,
            "confidence": [(i + 1) / 20 for i in range(n - 2)],
            "x1": 1.0,
            "y1": 1.0,
            "x2": 9.0,
            "y2": 9.0,
        }
    )


def params(**rank):
    return Params().with_overrides({f"rank.{k}": v for k, v in rank.items()})


def test_queue_follows_the_strategy_and_carries_what_labelers_need():
    queue, _, summary = build_queue(
        boxes(), pool(), params(strategy="entropy", aggregate="max", budget=3, balance_by=""), batch=4
    )
    assert queue["tile_id"].tolist() == ["t09", "t08", "t07"]  # confidences 0.5, 0.45, 0.4
    assert queue["rank"].tolist() == [1, 2, 3]
    # Label Studio serves the lowest score first: rank 1 has the lowest
    assert queue["score"].iloc[0] == 0.0 and queue["score"].is_monotonic_increasing
    assert (queue["batch"] == 4).all() and (queue["model_version"] == "m-v3").all()
    assert queue["strategy_score"].iloc[0] == round(np.log(2), 6)
    assert summary["queued_tiles"] == 3 and summary["pool_tiles"] == 12


def test_balance_gives_rare_conditions_a_turn():
    queue, _, _ = build_queue(
        boxes(), pool(), params(strategy="entropy", aggregate="max", budget=4, balance_by="condition"), 1
    )
    conditions = pool().set_index("tile_id").loc[queue["tile_id"], "condition"].tolist()
    assert conditions.count("night") == 2


def test_empty_tiles_are_ranked_not_dropped():
    queue, _, summary = build_queue(
        boxes(), pool(), params(strategy="entropy", aggregate="max", budget=12, balance_by=""), 1
    )
    assert set(queue["tile_id"]) == set(pool()["tile_id"])
    assert summary["queued_without_detections"] == 2


def test_the_rest_of_the_pool_ranks_after_the_batch():
    queue, waiting, _ = build_queue(
        boxes(), pool(), params(strategy="entropy", aggregate="max", budget=3, balance_by=""), 2
    )
    assert len(queue) + len(waiting) == 12 and not set(queue["tile_id"]) & set(waiting["tile_id"])
    scores = pd.concat([queue["score"], waiting["score"]])
    assert scores.is_monotonic_increasing and scores.is_unique
    assert waiting["tile_id"].iloc[0] == "t06"  # the next most uncertain after t09, t08, t07


def test_defaults_leave_random_uniform_and_positive_mines_the_top_confidence():
    assert Params().rank.balance_by == ""  # stratifying is off unless a measurement shows it pays
    queue, _, _ = build_queue(boxes(), pool(), params(strategy="positive", budget=3), 1)
    assert queue["tile_id"].tolist() == ["t09", "t08", "t07"]  # top confidences 0.5, 0.45, 0.4
    # random with the defaults: one seeded permutation of the whole pool, the 3 night tiles no
    # more likely than any other (balanced, they would take every other place)
    queue, _, _ = build_queue(boxes(), pool(), params(strategy="random", budget=12), 1)
    uniform = order_by_score(pd.Series(0.0, index=pool()["tile_id"]), seed=0)
    assert queue["tile_id"].tolist() == uniform
    balanced, _, _ = build_queue(
        boxes(), pool(), params(strategy="random", budget=12, balance_by="condition"), 1
    )
    assert balanced["tile_id"].tolist() != uniform


def near_copy_pool(n=12):
    """Tiles t00-t05 of frame A and t06-t11 of frame B, a near-copy of A: same group, and the
    same six places (row, col) in the same order."""
    tiles = pool(n)
    return tiles.assign(
        frame_id=["A"] * 6 + ["B"] * 6,
        near_copy_group="A",
        row=[i % 6 // 3 for i in range(n)],
        col=[i % 3 for i in range(n)],
    )


def copy_boxes(confidences: dict[str, float]) -> pd.DataFrame:
    found = boxes()
    return found.assign(confidence=found["tile_id"].map(confidences).fillna(0.05))


def test_a_batch_takes_one_tile_per_place_of_a_near_copy_group():
    # t03 and t09 are one place of two near-copy frames, and the two tiles entropy wants most
    found = copy_boxes({"t03": 0.5, "t09": 0.45, "t01": 0.4, "t07": 0.35})
    free = build_queue(found, near_copy_pool(), params(strategy="entropy", budget=3, near_copies=0), batch=1)[
        0
    ]
    assert list(free["tile_id"]) == ["t03", "t09", "t01"]
    limited = build_queue(
        found, near_copy_pool(), params(strategy="entropy", budget=3, near_copies=1), batch=1
    )
    picked = list(limited[0]["tile_id"])
    assert picked[:2] == ["t03", "t01"] and picked[2] not in {"t09", "t07"}, picked  # t07: t01's place
    assert {"t09", "t07"} <= set(limited[1]["tile_id"])  # deferred, still in the ranked pool


def test_near_copies_fill_the_batch_when_distinct_places_run_out():
    found = copy_boxes({"t03": 0.5, "t09": 0.45})
    queue = build_queue(
        found, near_copy_pool(), params(strategy="entropy", budget=8, near_copies=1), batch=1
    )[0]
    places = queue["tile_id"].map(lambda t: int(t[1:]) % 6)
    assert len(queue) == 8 and places.iloc[:6].nunique() == 6 and queue["tile_id"].iloc[0] == "t03"
