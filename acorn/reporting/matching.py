"""Match predicted boxes to truth, the way mAP counts them, to find false positives and misses.

mAP says how often the champion is wrong, not where; showing the most confident wrong boxes and
the missed objects tells a person what to label next (the background it mistakes for an object,
the object sizes or poses it cannot see yet).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from acorn.labeling.cost import box_iou

CORNERS = ["x1", "y1", "x2", "y2"]


@dataclass(frozen=True)
class Matches:
    """``predictions`` and ``truth`` with a ``matched`` column; a pair shares one tile and class."""

    predictions: pd.DataFrame
    truth: pd.DataFrame

    @property
    def false_positives(self) -> pd.DataFrame:
        """Unmatched predictions, most confident first: the mistakes the labelers would see."""
        fp = self.predictions[~self.predictions["matched"]]
        return fp.sort_values("confidence", ascending=False, kind="stable", ignore_index=True)

    @property
    def false_negatives(self) -> pd.DataFrame:
        """Unmatched truth, largest first: a big missed object is the surprising one."""
        fn = self.truth[~self.truth["matched"]]
        area = (fn["x2"] - fn["x1"]) * (fn["y2"] - fn["y1"])
        return fn.assign(area=area).sort_values("area", ascending=False, kind="stable", ignore_index=True)


def match_boxes(predictions: pd.DataFrame, truth: pd.DataFrame, iou: float = 0.5) -> Matches:
    """Greedy matching by confidence, as COCO and ultralytics count a true positive.

    ``predictions``: tile_id, class_id, confidence, x1..y2; ``truth``: tile_id, class_id,
    x1..y2. Each prediction, most confident first, takes the unmatched truth box of its tile and
    class with the highest IoU, if that IoU is at least ``iou``. Candidate pairs are found with
    one join and one vectorised IoU; only the pairs that overlap enough are walked in order.
    """
    preds = predictions.reset_index(drop=True)
    gt = truth.reset_index(drop=True)
    key = ["tile_id", "class_id"]
    pairs = preds[key].reset_index(names="p").merge(gt[key].reset_index(names="t"), on=key)
    overlap = box_iou(preds.loc[pairs["p"], CORNERS].to_numpy(), gt.loc[pairs["t"], CORNERS].to_numpy())
    pairs = pairs.assign(iou=overlap, confidence=preds["confidence"].to_numpy()[pairs["p"].to_numpy()])
    pairs = pairs[pairs["iou"] >= iou].sort_values(["confidence", "iou"], ascending=False, kind="stable")
    pred_matched = np.zeros(len(preds), dtype=bool)
    truth_matched = np.zeros(len(gt), dtype=bool)
    for p, t in zip(pairs["p"].to_numpy(), pairs["t"].to_numpy(), strict=True):
        if not pred_matched[p] and not truth_matched[t]:
            pred_matched[p] = truth_matched[t] = True
    return Matches(preds.assign(matched=pred_matched), gt.assign(matched=truth_matched))
