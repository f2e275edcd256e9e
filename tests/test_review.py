"""Suspect labels (acorn.labeling.review): each kind of label error is found with its reason, the
review is kept across a repeated run, a corrected label loses its score, and with a model that
sees the truth, the oracle's injected errors are the review's first suspects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acorn.labeling.noise import PoolReference, corrupt, records_table
from acorn.labeling.review import BOXES, SCORES, SUSPECTS, read_review, review_labels, score_labels
from acorn.params import NoiseParams

LABEL = ["tile_id", "class_id", "x1", "y1", "x2", "y2"]
PRED = ["tile_id", "class_id", "confidence", "x1", "y1", "x2", "y2"]


def tiles_of(ids: list[str], batch: int = 1) -> pd.DataFrame:
    return pd.DataFrame({"tile_id": ids, "annotation_id": range(1, len(ids) + 1), "batch": batch})


def cases() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    labels = pd.DataFrame(
        [
            ("clean", 0, 100, 100, 140, 140),
            ("shifted", 0, 115, 115, 155, 155),
            ("spurious", 0, 300, 300, 330, 330),
        ],
        columns=LABEL,
    )
    predictions = pd.DataFrame(
        [
            ("clean", 0, 0.8, 100, 100, 140, 140),
            ("shifted", 0, 0.8, 100, 100, 140, 140),
            ("missed", 0, 0.8, 100, 100, 140, 140),
            ("unsure", 0, 0.3, 100, 100, 140, 140),  # below review.confidence: no claim
            ("spurious", 0, 0.02, 0, 0, 20, 20),
        ],
        columns=PRED,
    )
    ids = ["clean", "shifted", "spurious", "missed", "unsure", "empty"]
    return labels, predictions, tiles_of(ids).assign(model_version="acorn-v1")


def test_each_kind_of_error_is_found_with_its_reason():
    labels, predictions, tiles = cases()
    scores = score_labels(labels, predictions, tiles, n_classes=1, confidence=0.5).set_index("tile_id")
    assert scores.loc["missed", "reason"] == "missed"
    assert scores.loc["shifted", "reason"] == "shifted"
    assert scores.loc["spurious", "reason"] == "spurious"
    # the most confident disagreement first; a clean, empty or unclaimed tile scores 1, no reason
    assert scores["rank"].tolist() == list(range(1, 7))
    assert list(scores.index[:3]) == ["missed", "shifted", "spurious"]
    for tile in ("clean", "empty", "unsure"):
        assert scores.loc[tile, "score"] == 1.0 and scores.loc[tile, "reason"] == ""


def write_predictions(folder: Path, predictions: pd.DataFrame, tiles: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    predictions.assign(model_version="acorn-v1").to_parquet(folder / "boxes.parquet")
    tiles[["tile_id"]].assign(model_version="acorn-v1").to_parquet(folder / "tiles.parquet")
    return folder


def test_the_review_is_written_kept_on_a_rerun_and_dropped_for_a_corrected_label(tmp_path):
    labels, predictions, tiles = cases()
    preds = write_predictions(tmp_path / "predictions", predictions, tiles)
    out = tmp_path / "review"
    annotations = tiles[["tile_id", "annotation_id", "batch"]]
    scored, suspects = review_labels(annotations, labels, 1, 2, 0.5, preds, out)
    assert len(scored) == 6
    assert suspects["tile_id"].tolist() == ["missed", "shifted"]  # the budget: 2
    written = {name: (out / name).read_bytes() for name in (SCORES, SUSPECTS, BOXES)}
    review = read_review(1, out)
    assert review.scored == 6 and review.suspects["reason"].tolist() == ["missed", "shifted"]
    assert set(review.boxes["tile_id"]) == {"missed", "shifted"}
    assert set(review.boxes.loc[review.boxes["tile_id"] == "shifted", "source"]) == {"label", "model"}
    assert read_review(2, out).scored == 0

    # predict ran: the labeled tiles are no longer predicted; a repeated run changes nothing
    write_predictions(tmp_path / "predictions", predictions.iloc[:0], tiles.iloc[:0])
    scored, _ = review_labels(annotations, labels, 1, 2, 0.5, preds, out)
    assert scored.empty
    assert {name: (out / name).read_bytes() for name in written} == written

    # the shifted box corrected (a new annotation): its score was for the old label
    fixed = annotations.assign(
        annotation_id=annotations["annotation_id"].where(tiles["tile_id"] != "shifted", 99)
    )
    _, suspects = review_labels(fixed, labels, 1, 2, 0.5, preds, out)
    assert suspects["tile_id"].tolist() == ["missed", "spurious"]
    assert "shifted" not in set(pd.read_csv(out / SCORES)["tile_id"])


def test_a_budget_of_0_scores_nothing(tmp_path):
    labels, predictions, tiles = cases()
    preds = write_predictions(tmp_path / "predictions", predictions, tiles)
    scored, suspects = review_labels(
        tiles[["tile_id", "annotation_id", "batch"]], labels, 1, 0, 0.5, preds, tmp_path / "r"
    )
    assert scored.empty and suspects.empty
    review = read_review(1, tmp_path / "r")
    assert review.scored == 0 and review.suspects.empty


@pytest.mark.parametrize("kind", ["missed", "spurious", "shifted", "emptied"])
def test_with_a_model_that_sees_the_truth_the_injected_errors_come_first(tmp_path, kind):
    """The review's ceiling: with the truth as confident predictions, the top suspects are exactly
    the tiles the oracle's noise model corrupted (small boxes are as visible as large ones here)."""
    rng = np.random.default_rng(0)
    width, height, tiles = 640, 540, {}
    for i in range(400):
        n = int(rng.integers(1, 3)) if rng.random() < 0.3 else 0
        side = rng.uniform(12, 90, size=n)
        x1, y1 = rng.uniform(0, width - side), rng.uniform(0, height - side)
        tiles[f"t{i:03d}"] = np.column_stack([np.zeros(n), x1, y1, x1 + side, y1 + side])
    truth_dir = tmp_path / "truth"
    truth_dir.mkdir()
    for t, b in tiles.items():
        (truth_dir / f"{t}.txt").write_text(
            "".join(
                f"0 {(r[1] + r[3]) / 2 / width} {(r[2] + r[4]) / 2 / height} {(r[3] - r[1]) / width} {(r[4] - r[2]) / height}\n"
                for r in b
            )
        )
    reference = PoolReference.from_truth(truth_dir)
    noise = NoiseParams(**{kind: 0.15}, seed=4)
    labels, records = [], []
    for t, b in tiles.items():
        answer, errors = corrupt(t, b, width, height, noise, reference)
        labels += [(t, *row) for row in answer]
        records += errors
    labels = pd.DataFrame(labels, columns=LABEL).astype({"class_id": "int64"})
    truth = pd.DataFrame([(t, 0, 0.9, *row[1:]) for t, b in tiles.items() for row in b], columns=PRED)
    wrong = set(records_table(records)["tile_id"])
    assert len(wrong) >= 10
    table = tiles_of(list(tiles)).assign(model_version="acorn-v1")
    scores = score_labels(labels, truth, table, n_classes=1, confidence=0.5)
    top = set(scores.head(len(wrong))["tile_id"])
    assert len(top & wrong) / len(wrong) >= 0.9
    expected = {"missed": "missed", "emptied": "missed", "shifted": "shifted", "spurious": "spurious"}[kind]
    assert (scores[scores["tile_id"].isin(wrong)]["reason"] == expected).mean() >= 0.9


def test_the_oracle_answers_reviews_correcting_wrong_labels_and_keeping_the_old_answer(tmp_path):
    from acorn.labeling import cost
    from acorn.labeling.oracle import OracleBackend

    width, height = 640, 540
    truth_dir = tmp_path / "truth"
    truth_dir.mkdir()
    (truth_dir / "a.txt").write_text("0 0.5 0.5 0.05 0.05\n")  # a squirrel: the noisy oracle leaves it out
    (truth_dir / "b.txt").write_text("0 0.2 0.2 0.1 0.1\n")  # labeled right
    queue = pd.DataFrame(
        {
            "tile_id": ["a", "b"],
            "rank": [1, 2],
            "score": 0.0,
            "batch": 1,
            "image": ["a.jpg", "b.jpg"],
            "width": width,
            "height": height,
            "model_version": "acorn-v1",
        }
    )
    oracle = OracleBackend(tmp_path / "state", truth_dir, noise=NoiseParams(emptied=1.0, seed=0))
    oracle.push(queue, pd.DataFrame(columns=PRED))
    oracle.annotate()
    before = oracle.pull()
    assert before.boxes.empty  # both tiles answered as empty
    ids = dict(zip(before.annotations["tile_id"], before.annotations["annotation_id"], strict=True))
    suspects = pd.DataFrame(
        {"tile_id": ["a"], "annotation_id": [ids["a"]], "cycle": 1, "reason": "missed", "score": 0.05}
    )
    assert oracle.push_review(suspects) == 1
    assert oracle.push_review(suspects) == 0  # a repeated dvc repro queues nothing new
    assert oracle.answer_reviews() == {"confirmed": 0, "corrected": 1}
    assert oracle.answer_reviews() == {"confirmed": 0, "corrected": 0}

    after = oracle.pull()
    fixed = after.boxes[after.boxes["tile_id"] == "a"]
    assert len(fixed) == 1 and fixed["x1"].iloc[0] == pytest.approx(0.475 * width)
    new_id = after.annotations.set_index("tile_id").loc["a", "annotation_id"]
    assert new_id > max(ids.values())
    task = next(t for t in after.snapshot.tasks if t["tile_id"] == "a")
    assert [a["id"] for a in task["annotations"]] == [ids["a"], new_id], (
        "the old answer kept, the correction last"
    )
    # the review's time counts: two annotations of tile a in batch 1's cost
    assert cost.cycle_costs(cost.annotation_costs(after.snapshot.tasks), 1).loc["oracle", "tasks"] == 3

    # a correct label is confirmed and left alone; a copy seeded from the snapshot keeps the history
    (truth_dir / "b.txt").write_text("")
    oracle.push_review(suspects.assign(tile_id="b", annotation_id=ids["b"]))
    assert oracle.answer_reviews() == {"confirmed": 1, "corrected": 0}
    assert oracle.pull().annotations.set_index("tile_id").loc["b", "annotation_id"] == ids["b"]
    from acorn.labeling.snapshot import write_snapshot

    write_snapshot(after.snapshot, tmp_path / "snap")
    copy = OracleBackend(tmp_path / "copy", truth_dir, tmp_path / "snap")
    assert copy.pull().snapshot.tasks == after.snapshot.tasks
