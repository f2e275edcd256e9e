"""The oracle's noise model (acorn.labeling.noise): the rates hold on a sample, small boxes are
missed first, every error is recorded, and a tile's errors depend on its id and the seed only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acorn.labeling.noise import KINDS, SHIFT_IOU, PoolReference, active, corrupt, records_table
from acorn.labeling.oracle import OracleBackend, read_noise_record
from acorn.params import NoiseParams, load_params

W, H = 640, 540


def make_pool(n_tiles: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A pool like the demo's but denser: 40% of tiles hold 1-3 boxes, 8 to 120 px a side."""
    rng = np.random.default_rng(seed)
    pool = {}
    for i in range(n_tiles):
        n = int(rng.integers(1, 4)) if rng.random() < 0.4 else 0
        side = rng.uniform(8, 120, size=n)
        x1, y1 = rng.uniform(0, W - side), rng.uniform(0, H - side)
        pool[f"f{i // 24:04d}_{i % 24:02d}"] = np.column_stack([np.zeros(n), x1, y1, x1 + side, y1 + side])
    return pool


def write_truth(pool: dict[str, np.ndarray], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for tile_id, boxes in pool.items():
        lines = [
            f"{c:.0f} {(x1 + x2) / 2 / W:.6f} {(y1 + y2) / 2 / H:.6f} {(x2 - x1) / W:.6f} {(y2 - y1) / H:.6f}\n"
            for c, x1, y1, x2, y2 in boxes
        ]
        (folder / f"{tile_id}.txt").write_text("".join(lines), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> tuple[dict[str, np.ndarray], PoolReference]:
    tiles = make_pool(2400)
    return tiles, PoolReference.from_truth(write_truth(tiles, tmp_path_factory.mktemp("truth")))


def run(pool, noise: NoiseParams) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    tiles, reference = pool
    answers, records = {}, []
    for tile_id, truth in tiles.items():
        answers[tile_id], rec = corrupt(tile_id, truth, W, H, noise, reference)
        records += rec
    return answers, records_table(records)


def within(observed: int, trials: int, rate: float) -> bool:
    """``observed`` successes of ``trials`` agree with ``rate`` (4 standard deviations)."""
    return abs(observed - rate * trials) <= 4 * np.sqrt(trials * rate * (1 - rate)) + 1


def test_the_default_is_no_noise_and_the_truth_comes_back(pool):
    assert not active(load_params(Path(__file__).resolve().parents[1] / "params.yaml").labeling.noise)
    assert not active(NoiseParams()) and not active(None)
    answers, records = run(pool, NoiseParams())
    assert records.empty
    for tile_id, truth in pool[0].items():
        np.testing.assert_array_equal(answers[tile_id], truth)


@pytest.mark.parametrize("rate", [0.05, 0.2])
def test_each_rate_holds_on_a_sample(pool, rate):
    tiles, reference = pool
    noise = NoiseParams(missed=rate, spurious=rate, shifted=rate, emptied=rate, seed=1)
    _, records = run(pool, noise)
    kinds = records["kind"].value_counts()
    positive = [t for t, b in tiles.items() if len(b)]
    emptied = set(records.loc[records["kind"] == "emptied", "tile_id"])
    boxes = sum(len(b) for b in tiles.values())
    kept_tile_boxes = sum(len(tiles[t]) for t in positive if t not in emptied)
    assert within(len(emptied), len(positive), rate)
    assert within(kinds["missed"], kept_tile_boxes, rate)  # over the pool's sizes: the stated rate
    assert within(kinds["shifted"], kept_tile_boxes - kinds["missed"], rate)
    assert within(kinds["spurious"], len(tiles), rate * reference.boxes_per_tile)
    assert kinds["spurious"] == pytest.approx(rate * boxes, rel=0.25)  # spurious boxes per true box


def test_small_boxes_are_missed_first(pool):
    tiles, _ = pool
    _, records = run(pool, NoiseParams(missed=0.2))
    truth = pd.DataFrame(
        [(t, *row) for t, boxes in tiles.items() for row in boxes],
        columns=["tile_id", "class_id", "x1", "y1", "x2", "y2"],
    )
    side = np.sqrt((truth["x2"] - truth["x1"]) * (truth["y2"] - truth["y1"]))
    missed = records[records["kind"] == "missed"]
    lost = truth.merge(missed, left_on=["tile_id", "x1", "y1"], right_on=["tile_id", "truth_x1", "truth_y1"])
    assert len(lost) == len(missed)  # every record names a true box
    small, large = side <= side.quantile(0.25), side >= side.quantile(0.75)
    lost_side = np.sqrt((lost["x2"] - lost["x1"]) * (lost["y2"] - lost["y1"]))
    rate_small = lost_side.le(side.quantile(0.25)).sum() / small.sum()
    rate_large = lost_side.ge(side.quantile(0.75)).sum() / large.sum()
    # p = 2 * 0.2 * (1 - q): about 0.35 in the smallest quarter, 0.05 in the largest
    assert rate_small > 0.28 and rate_large < 0.09


def test_emptied_tiles_answer_nothing_and_record_every_box(pool):
    tiles, _ = pool
    answers, records = run(pool, NoiseParams(emptied=0.3))
    emptied = records[records["kind"] == "emptied"]
    assert set(records["kind"]) == {"emptied"}
    for tile_id, rows in emptied.groupby("tile_id"):
        assert len(answers[tile_id]) == 0
        assert len(rows) == len(tiles[tile_id])
    assert all(len(tiles[t]) for t in emptied["tile_id"])  # an empty tile is never "emptied"


def test_shifted_boxes_overlap_the_truth_as_stated_and_stay_in_the_tile(pool):
    answers, records = run(pool, NoiseParams(shifted=0.5))
    shifted = records[records["kind"] == "shifted"]
    assert len(shifted) > 100
    inside = shifted["iou"].between(*SHIFT_IOU)
    assert inside.mean() > 0.9 and shifted["iou"].between(0.05, 0.6).all()  # a cut at the border may move it
    label = shifted[[f"label_{c}" for c in ("x1", "y1", "x2", "y2")]].to_numpy()
    assert (label >= 0).all() and (label[:, [0, 2]] <= W).all() and (label[:, [1, 3]] <= H).all()
    for row in shifted.head(20).itertuples(index=False):
        assert (np.abs(answers[row.tile_id][:, 1] - row.label_x1) < 1e-9).any()


def test_a_tile_gets_the_same_errors_whatever_else_is_labeled_and_a_new_seed_others(pool):
    tiles, reference = pool
    noise = NoiseParams(missed=0.2, spurious=0.2, shifted=0.2, emptied=0.2, seed=7)
    _, all_records = run(pool, noise)
    some = list(tiles)[::-1][:300]  # another order, a subset: as a resumed run would label them
    alone = records_table([r for t in some for r in corrupt(t, tiles[t], W, H, noise, reference)[1]])
    expected = all_records[all_records["tile_id"].isin(some)]
    key = ["tile_id", "kind", "truth_x1", "label_x1"]
    pd.testing.assert_frame_equal(
        alone.sort_values(key, ignore_index=True), expected.sort_values(key, ignore_index=True)
    )
    _, other_seed = run(pool, noise.model_copy(update={"seed": 8}))
    assert set(other_seed["tile_id"]) != set(all_records["tile_id"])


def test_raising_one_rate_adds_errors_of_its_kind_and_moves_no_other(pool):
    _, low = run(pool, NoiseParams(missed=0.1, shifted=0.1))
    _, high = run(pool, NoiseParams(missed=0.3, shifted=0.1))
    lost = lambda r: set(r.loc[r["kind"] == "missed", ["tile_id", "truth_x1"]].itertuples(index=False))  # noqa: E731
    assert lost(low) < lost(high)
    # a shifted box that is not missed at the higher rate is shifted the same way
    still = high.loc[high["kind"] == "shifted", ["tile_id", "truth_x1", "label_x1"]]
    before = low.loc[low["kind"] == "shifted", ["tile_id", "truth_x1", "label_x1"]]
    assert len(still.merge(before)) == len(still)


def test_the_oracle_records_its_errors_and_a_resumed_run_labels_the_same(tmp_path):
    tiles = make_pool(96, seed=3)
    truth = write_truth(tiles, tmp_path / "truth")
    queue = pd.DataFrame(
        {
            "tile_id": list(tiles),
            "rank": range(1, len(tiles) + 1),
            "score": 0.0,
            "batch": 1,
            "image": [f"{t}.jpg" for t in tiles],
            "width": W,
            "height": H,
            "model_version": "acorn-v1",
        }
    )
    empty = pd.DataFrame(columns=["tile_id", "class_id", "confidence", "x1", "y1", "x2", "y2"])
    noise = NoiseParams(missed=0.3, spurious=0.5, shifted=0.3, emptied=0.3, seed=2)
    oracle = OracleBackend(tmp_path / "one", truth, noise=noise)
    oracle.push(queue, empty)
    assert oracle.annotate() == len(tiles)
    resumed = OracleBackend(tmp_path / "two", truth, noise=noise)
    resumed.push(queue, empty)
    assert resumed.annotate(limit=10) + resumed.annotate(limit=40) + resumed.annotate() == len(tiles)

    one, two = oracle.pull(), resumed.pull()
    pd.testing.assert_frame_equal(one.boxes, two.boxes)
    records = read_noise_record(oracle.state_dir)
    pd.testing.assert_frame_equal(records, read_noise_record(resumed.state_dir))
    assert set(records["kind"]) == set(KINDS)
    assert (oracle.state_dir / "noise.json").exists()
    # the labels differ from the truth exactly where an error is recorded
    labeled = one.boxes.groupby("tile_id").size().reindex(list(tiles), fill_value=0)
    true = pd.Series({t: len(b) for t, b in tiles.items()})
    changed = set(labeled.index[labeled != true])
    assert changed <= set(records.loc[records["kind"] != "shifted", "tile_id"])
    # without noise the oracle answers the truth and records nothing
    clean = OracleBackend(tmp_path / "clean", truth)
    clean.push(queue, empty)
    clean.annotate()
    assert clean.pull().boxes.groupby("tile_id").size().sum() == true.sum()
    assert read_noise_record(clean.state_dir).empty
