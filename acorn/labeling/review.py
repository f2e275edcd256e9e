"""Suspect labels: the labeled tiles whose label disagrees most with a model that never trained on them.

People tire, miss small objects and draw loose boxes; one missed squirrel on a "negative" tile
teaches the model that squirrels are background. Every cycle, the export-labels stage scores the
tiles whose labels just arrived against the champion's boxes for them, and the top
``review.budget`` go to review (``data/review``; the cycle report shows them).

**Out-of-sample for free.** The predict stage predicts every unlabeled tile it ranks with the
champion, before the tile is labeled; those boxes are still in ``data/predictions`` when the next
export-labels runs (predict runs after it). So the tiles labeled since the last predict, the
newest batch, have predictions from a model that did not train on them, at no extra cost. Older
labels have none (k-fold fine-tunes would give them some, at k fine-tunes a cycle).

**Scoring: cleanlab where it fits.** ``cleanlab.object_detection.rank`` scores each tile per
kind of error, 0 (surely wrong) to 1 (clean), from its per-box scores pooled by softmin:

- **missed** (cleanlab's *overlooked*): a prediction at ``review.confidence`` or above that
  overlaps no label box; a tile answered as empty with a squirrel on it scores here too;
- **shifted** (*badloc*): a label box whose best same-class prediction above
  ``review.confidence`` sits poorly on it;
- **class** (*swap*): a label box that a confident prediction of another class covers.

cleanlab's thresholds are set by ``review.confidence`` instead of its defaults (0.95 for
overlooked boxes), which a fine-tuned detector seldom reaches on a 16 px squirrel. cleanlab
does not score a label box that no prediction supports (its badloc score is 1 when no confident
prediction of the class exists), and a spurious box is exactly that, so one kind is added here:

- **spurious**: a label box with no prediction of its class at IoU >= ``SUPPORT_IOU``; its score
  is ``SPURIOUS_FLOOR + (1 - SPURIOUS_FLOOR) * min(1, support / review.confidence)`` (support: the
  best such prediction's confidence, down to predict.conf_floor), pooled as cleanlab pools. The floor keeps an
  unsupported box behind a confidently overlooked object: a detector misses small objects far
  more often than it invents confident ones, so "the model does not see it" is the weaker
  evidence.

A tile's score is its lowest kind's and its reason is that kind: the reviewer is told what to
look for. Ties (clean tiles score 1) keep the labels' order.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from acorn import paths
from acorn.labeling.cost import box_iou
from acorn.paths import REVIEW
from acorn.runtime.atomic import replace_dir, write_csv

SCORES = "scores.csv"  # every tile scored, each in the cycle it was scored in, most suspect first
SUSPECTS = "suspects.csv"  # this cycle's first review.budget: what goes to review
BOXES = "boxes.csv"  # the suspects' label boxes and the model's, for the report's pictures
REASONS = ("missed", "shifted", "class", "spurious")
SCORE_COLUMNS = [
    "cycle",
    "rank",
    "tile_id",
    "annotation_id",
    "batch",
    "score",
    "reason",
    *REASONS,
    "model_version",
]
BOX_COLUMNS = ["tile_id", "source", "class_id", "confidence", "x1", "y1", "x2", "y2"]
SUPPORT_IOU = 0.1
SPURIOUS_FLOOR = 0.5
_CORNERS = ["x1", "y1", "x2", "y2"]


def review_labels(
    annotations: pd.DataFrame,
    boxes: pd.DataFrame,
    n_classes: int,
    budget: int,
    confidence: float,
    predictions_dir: Path = paths.PREDICTIONS,
    out_dir: Path = REVIEW,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score the labeled tiles that ``predictions_dir`` predicted while they were unlabeled, add them
    to ``out_dir``'s scores and return them with this cycle's suspects.

    ``annotations``: ``tile_id, annotation_id, batch`` per labeled tile; ``boxes``: their label
    boxes in pixels (``acorn.labeling.base.Pulled``'s, whichever backend pulled them). The cycle
    is the newest batch, as the train stage counts it. Earlier scores are kept, since their
    predictions are gone once predict re-runs: a repeated ``dvc repro`` writes the same review.
    A tile whose annotation changed (a correction) or went loses its score: it was for the old label.
    """
    before, before_boxes = _read_scores(out_dir)
    cycle = int(annotations["batch"].max()) if len(annotations) else 0
    scored, shown = pd.DataFrame(columns=SCORE_COLUMNS), pd.DataFrame(columns=BOX_COLUMNS)
    tiles_file = Path(predictions_dir) / paths.PRED_TILES.name
    if budget and tiles_file.exists():
        predicted = pd.read_parquet(tiles_file, columns=["tile_id", "model_version"])
        tiles = annotations[["tile_id", "annotation_id", "batch"]].merge(predicted, on="tile_id")
        ids = tiles["tile_id"].tolist()
        columns = ["tile_id", "class_id", "confidence", *_CORNERS]
        found = (
            pd.read_parquet(
                Path(predictions_dir) / paths.PRED_BOXES.name,
                columns=columns,
                filters=[("tile_id", "in", ids)],
            )
            if ids
            else pd.DataFrame(columns=columns)
        )
        labels = boxes[boxes["tile_id"].isin(ids) & boxes["class_id"].between(0, n_classes - 1)]
        scored = score_labels(labels, found, tiles, n_classes, confidence).assign(cycle=cycle)[SCORE_COLUMNS]
        shown = review_boxes(suspects_of(scored, budget, cycle), labels, found)
    scores = merge_scores(before, scored, annotations)
    kept = before_boxes["tile_id"].isin(scores["tile_id"]) & ~before_boxes["tile_id"].isin(scored["tile_id"])
    shown = pd.concat([t for t in (before_boxes[kept], shown) if len(t)] or [shown], ignore_index=True)
    suspects = suspects_of(scores, budget, cycle)
    _write(out_dir, scores, suspects, shown)
    return scored, suspects


def merge_scores(before: pd.DataFrame, scored: pd.DataFrame, annotations: pd.DataFrame) -> pd.DataFrame:
    """``before``'s rows whose tile still has the annotation it was scored for and was not scored
    again, then ``scored``; by cycle and rank."""
    current = annotations[["tile_id", "annotation_id"]].astype({"annotation_id": "int64"})
    still = before.merge(current, on=["tile_id", "annotation_id"])[SCORE_COLUMNS]
    still = still[~still["tile_id"].isin(scored["tile_id"])]
    table = pd.concat([t for t in (still, scored) if len(t)] or [scored], ignore_index=True)
    return table.sort_values(["cycle", "rank"], ignore_index=True, kind="stable")[SCORE_COLUMNS]


def suspects_of(scores: pd.DataFrame, budget: int, cycle: int) -> pd.DataFrame:
    """The first ``budget`` tiles scored in ``cycle``, by rank; a tile scored 1 (clean) never is one."""
    mine = scores[(scores["cycle"] == cycle) & (scores["score"] < 1.0)]
    return mine.sort_values("rank", kind="stable").head(budget).reset_index(drop=True)


def score_labels(
    labels: pd.DataFrame,
    predictions: pd.DataFrame,
    tiles: pd.DataFrame,
    n_classes: int,
    confidence: float,
) -> pd.DataFrame:
    """One ``SCORE_COLUMNS`` row (but the cycle) per tile of ``tiles`` (``tile_id, annotation_id,
    batch, model_version``), most suspect first; cleanlab is imported only here.

    ``labels``: the label boxes (``tile_id, class_id, x1..y2``, pixels); ``predictions``: the
    out-of-sample boxes of the same tiles (the same with ``confidence``).
    """
    from cleanlab.object_detection import rank as objectlab

    columns = [c for c in SCORE_COLUMNS if c != "cycle"]
    tiles = tiles.reset_index(drop=True)
    if tiles.empty:
        return pd.DataFrame(columns=columns)
    ids = tiles["tile_id"].tolist()
    given = dict(tuple(labels.groupby("tile_id", sort=False)))
    seen = dict(tuple(predictions.groupby("tile_id", sort=False)))
    empty_l, empty_p = labels.iloc[:0], predictions.iloc[:0]
    cl_labels = [_cleanlab_label(given.get(t, empty_l)) for t in ids]
    cl_predictions = [_cleanlab_prediction(seen.get(t, empty_p), n_classes) for t in ids]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns on tiles with no boxes at all: clean, as meant
        per_box = {
            "missed": objectlab.compute_overlooked_box_scores(
                labels=cl_labels, predictions=cl_predictions, high_probability_threshold=confidence
            ),
            "shifted": objectlab.compute_badloc_box_scores(
                labels=cl_labels, predictions=cl_predictions, low_probability_threshold=confidence
            ),
            "class": objectlab.compute_swap_box_scores(
                labels=cl_labels, predictions=cl_predictions, high_probability_threshold=confidence
            ),
            "spurious": [
                _spurious_scores(given.get(t, empty_l), seen.get(t, empty_p), confidence) for t in ids
            ],
        }
        kinds = pd.DataFrame({k: objectlab.pool_box_scores_per_image(v) for k, v in per_box.items()})
    table = pd.concat([tiles[["tile_id", "annotation_id", "batch", "model_version"]], kinds], axis=1)
    table["score"] = kinds.min(axis=1)
    table["reason"] = kinds.idxmin(axis=1).where(table["score"] < 1.0, "")
    table = table.sort_values("score", kind="stable", ignore_index=True)
    table["rank"] = np.arange(1, len(table) + 1)
    return table[columns]


def _cleanlab_label(boxes: pd.DataFrame) -> dict:
    return {
        "bboxes": boxes[_CORNERS].to_numpy(dtype=np.float64).reshape(-1, 4),
        "labels": boxes["class_id"].to_numpy(dtype=np.int64),
    }


def _cleanlab_prediction(boxes: pd.DataFrame, n_classes: int) -> list[np.ndarray]:
    """cleanlab's layout: per class, an ``(m, 5)`` array of ``x1, y1, x2, y2, confidence``."""
    rows = boxes[[*_CORNERS, "confidence"]].to_numpy(dtype=np.float64).reshape(-1, 5)
    classes = boxes["class_id"].to_numpy()
    return [rows[classes == k] for k in range(n_classes)]


def _spurious_scores(labels: pd.DataFrame, predictions: pd.DataFrame, confidence: float) -> np.ndarray:
    """Per label box: ``SPURIOUS_FLOOR`` raised by the confidence of the best same-class prediction
    at IoU >= ``SUPPORT_IOU``, up to 1 where it reaches ``confidence`` (the module docstring)."""
    if labels.empty:
        return np.empty(0)
    a = labels[_CORNERS].to_numpy(dtype=np.float64)
    b = predictions[_CORNERS].to_numpy(dtype=np.float64)
    if not len(b):
        return np.full(len(a), SPURIOUS_FLOOR)
    pairs_a, pairs_b = np.repeat(np.arange(len(a)), len(b)), np.tile(np.arange(len(b)), len(a))
    iou = box_iou(a[pairs_a], b[pairs_b]).reshape(len(a), len(b))
    same = labels["class_id"].to_numpy()[:, None] == predictions["class_id"].to_numpy()[None, :]
    conf = predictions["confidence"].to_numpy(dtype=np.float64)[None, :]
    support = np.where(same & (iou >= SUPPORT_IOU), conf, 0.0).max(axis=1)
    return SPURIOUS_FLOOR + (1 - SPURIOUS_FLOOR) * np.minimum(1.0, support / confidence)


def review_boxes(suspects: pd.DataFrame, labels: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """The suspects' label boxes (``source`` label) and the model's (``source`` model), ``BOX_COLUMNS``."""
    chosen = set(suspects["tile_id"])
    mine = labels[labels["tile_id"].isin(chosen)].assign(source="label", confidence=np.nan)
    model = predictions[predictions["tile_id"].isin(chosen)].assign(source="model")
    parts = [t[BOX_COLUMNS] for t in (mine, model) if len(t)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=BOX_COLUMNS)


def _write(out_dir: Path, scores: pd.DataFrame, suspects: pd.DataFrame, boxes: pd.DataFrame) -> None:
    out_dir = Path(out_dir)
    staging = out_dir.with_name(f".{out_dir.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write_csv(scores, staging / SCORES)
    write_csv(suspects, staging / SUSPECTS)
    write_csv(boxes.sort_values(["tile_id", "source"], ignore_index=True, kind="stable"), staging / BOXES)
    replace_dir(staging, out_dir)


def _read_scores(out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    out_dir = Path(out_dir)
    if not (out_dir / SCORES).exists():
        return pd.DataFrame(columns=SCORE_COLUMNS), pd.DataFrame(columns=BOX_COLUMNS)
    scores = pd.read_csv(out_dir / SCORES, dtype={"tile_id": str, "reason": str, "model_version": str})
    boxes = pd.read_csv(out_dir / BOXES, dtype={"tile_id": str, "source": str})
    return scores.assign(reason=scores["reason"].fillna("")), boxes


@dataclass(frozen=True)
class Review:
    """What the cycle report shows: how many tiles a cycle scored, its suspects and their boxes."""

    scored: int
    suspects: pd.DataFrame
    boxes: pd.DataFrame


def read_review(cycle: int, out_dir: Path = REVIEW) -> Review | None:
    """``cycle``'s review, or None where no export-labels run wrote one."""
    out_dir = Path(out_dir)
    if not (out_dir / SUSPECTS).exists():
        return None
    scores, boxes = _read_scores(out_dir)
    suspects = pd.read_csv(out_dir / SUSPECTS, dtype={"tile_id": str, "reason": str, "model_version": str})
    suspects = suspects[suspects["cycle"] == cycle].reset_index(drop=True)
    return Review(
        scored=int((scores["cycle"] == cycle).sum()),
        suspects=suspects,
        boxes=boxes[boxes["tile_id"].isin(suspects["tile_id"])].reset_index(drop=True),
    )
