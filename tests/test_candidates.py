"""The candidate subset (acorn.selection.candidates): bounded, stratified, seeded, carry-over first."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from acorn.runtime.errors import ParamsError
from acorn.selection.candidates import (
    carry_count,
    check_size,
    read_carry_over,
    select_candidates,
    stratified_order,
    top_tiles,
    write_carry_over,
)


def make_pool(frames: int = 40, tiles: int = 24, night_every: int = 10) -> pd.DataFrame:
    """``frames`` frames of ``tiles`` tiles; every ``night_every``-th frame is 'night' (rare)."""
    frame = np.repeat([f"f{i:04d}" for i in range(frames)], tiles)
    tile = np.tile(np.arange(tiles), frames)
    night = np.repeat(np.arange(frames) % night_every == 0, tiles)
    return pd.DataFrame(
        {
            "tile_id": [f"{f}_t{t:02d}" for f, t in zip(frame, tile, strict=True)],
            "frame_id": frame,
            "condition": np.where(night, "night", "day"),
        }
    )


def test_size_is_bounded_and_the_pool_is_taken_whole_when_smaller():
    pool = make_pool()
    for size in (1, 7, 100, 959):
        chosen = select_candidates(pool, size, seed=0)
        assert len(chosen) == size and chosen["tile_id"].is_unique
        assert set(chosen["tile_id"]) <= set(pool["tile_id"])
    assert sorted(select_candidates(pool, 5000, seed=0)["tile_id"]) == sorted(pool["tile_id"])
    with pytest.raises(ValueError, match="at least 1"):
        select_candidates(pool, 0, seed=0)


def test_sample_spreads_over_frames_and_balances_the_condition():
    pool = make_pool()  # 40 frames: 4 night (96 tiles), 36 day (864 tiles)
    chosen = select_candidates(pool, 80, seed=3, balance_by="condition").merge(pool, on="tile_id")
    per_condition = chosen["condition"].value_counts()
    assert per_condition["night"] == per_condition["day"] == 40  # turns, not proportions
    night = chosen[chosen["condition"] == "night"].groupby("frame_id").size()
    assert sorted(night) == [10, 10, 10, 10]  # 40 night tiles over 4 frames: 10 each
    day = chosen[chosen["condition"] == "day"].groupby("frame_id").size()
    assert day.max() - day.min() <= 1 and len(day) == 36  # 40 over 36 frames: one or two each
    unbalanced = select_candidates(pool, 80, seed=3).merge(pool, on="tile_id")
    assert unbalanced.groupby("frame_id").size().tolist() == [2] * 40  # frames only: 2 per frame
    # a missing column is no stratum: the sample is as without it
    assert select_candidates(pool, 80, seed=3, balance_by="weather")["tile_id"].tolist() == (
        select_candidates(pool, 80, seed=3)["tile_id"].tolist()
    )


def test_rare_condition_runs_out_and_the_rest_fills_up():
    pool = make_pool()
    chosen = select_candidates(pool, 300, seed=1, balance_by="condition").merge(pool, on="tile_id")
    assert chosen["condition"].value_counts().to_dict() == {"day": 204, "night": 96}


def test_seeded_deterministic_and_independent_of_row_order():
    pool = make_pool()
    first = select_candidates(pool, 50, seed=7, balance_by="condition")
    shuffled = pool.sample(frac=1.0, random_state=1)
    pd.testing.assert_frame_equal(first, select_candidates(shuffled, 50, seed=7, balance_by="condition"))
    other = select_candidates(pool, 50, seed=8, balance_by="condition")
    assert len(set(first["tile_id"]) & set(other["tile_id"])) < 25  # another cycle, other tiles


def test_waiting_first_then_carried_up_to_its_share_then_the_sample():
    pool = make_pool()
    ids = pool["tile_id"].tolist()
    waiting = [ids[5], "labeled-since", ids[5], ids[6]]
    carried = [ids[6], ids[10], ids[11], ids[12], ids[13], ids[14], ids[15]]
    chosen = select_candidates(pool, 10, seed=0, waiting=waiting, carried=carried, carry_over=0.4)
    assert chosen["source"].tolist() == ["waiting"] * 2 + ["carried"] * 4 + ["sample"] * 4
    assert chosen["tile_id"].tolist()[:6] == [ids[5], ids[6], ids[10], ids[11], ids[12], ids[13]]
    assert chosen["tile_id"].is_unique
    # a backlog larger than the set is kept whole, with nothing else
    backlog = select_candidates(pool, 3, seed=0, waiting=ids[:5], carried=carried)
    assert backlog["tile_id"].tolist() == ids[:5] and set(backlog["source"]) == {"waiting"}
    assert carry_count(10, 0.4) == 4 and carry_count(1500, 0.5) == 750 and carry_count(3, 0.0) == 0


def test_pool_without_frames_or_metadata():
    pool = pd.DataFrame({"tile_id": [f"img{i}" for i in range(30)]})
    assert len(stratified_order(pool, 0)) == 30
    assert len(select_candidates(pool, 12, seed=0)) == 12
    assert stratified_order(pool.iloc[:0], 0) == []


def test_top_tiles_are_the_most_undecided():
    tiles = pd.DataFrame(
        {
            "tile_id": ["sure", "faint", "half", "empty", "likely", "half2"],
            "max_confidence": [0.97, 0.02, 0.5, 0.0, 0.7, 0.5],
        }
    )
    assert top_tiles(tiles, 4) == ["half", "half2", "likely", "sure"]
    assert top_tiles(tiles, 0) == [] and top_tiles(tiles.iloc[:0], 3) == []


def test_carry_over_file_per_cycle(tmp_path):
    assert read_carry_over(tmp_path, 2) == ([], [])
    for cycle in range(1, 6):
        write_carry_over(tmp_path, cycle, [f"w{cycle}"], [f"t{cycle}", "x"])
    assert read_carry_over(tmp_path, 5) == (["w5"], ["t5", "x"])
    assert sorted(p.name for p in (tmp_path / "carry-over").iterdir()) == [
        "000003.parquet",
        "000004.parquet",
        "000005.parquet",
    ]


def test_candidates_below_the_budget_are_refused():
    check_size(0, 50)
    check_size(50, 50)
    with pytest.raises(ParamsError, match=r"predict.candidates \(10\) is below rank.budget \(50\)"):
        check_size(10, 50)
