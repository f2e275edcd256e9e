"""What the labels cost: labeler time per task and what people did with the pre-annotations.

Label Studio keeps each annotation's ``lead_time`` (seconds the labeler spent on it) and the
labels' snapshot (``data/label-snapshot``) keeps it with the annotation, next to the model's
boxes that were shown as pre-annotations. Nothing else says what a cycle cost in labeler time,
or whether pre-annotations save work, so this module turns a snapshot into one row per
annotation and sums those rows per cycle and labeler. It is pure: plain snapshot records in,
tables out; the oracle uses the same rule to model its own time (acorn.labeling.oracle).

The cycle of a task is its ``batch``: the rank stage queues batch N for cycle N and the train
stage calls cycle N the one whose newest labels are batch N, so the report's "labeled this
cycle" and this cost agree. A tile queued in an earlier batch and labeled later keeps its
first batch, as its label does.

The IoU rule, per annotation, against the pre-annotation the labeler saw (the task's
prediction of the newest model version: a task gets a newer one only while it is unlabeled):

- pairs are made greedily, highest IoU first, one pre-annotated box to one annotation box, at
  IoU >= ``MOVED_IOU`` whatever the class;
- **kept**: a pair at IoU >= ``KEPT_IOU`` with the same class (accepted as shown);
- **moved**: any other pair (a box dragged or resized, or its class changed);
- **deleted**: a pre-annotated box left without a pair;
- **added**: an annotation box left without a pair (drawn from scratch).

IoU does not change when an image is stretched along x or y, so Label Studio's percent
rectangles and the oracle's pixel boxes are compared in their own units.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

KEPT_IOU = 0.9
# the labeler name of the oracle's answers (acorn.labeling.oracle), whose times are modelled, not measured
ORACLE = "oracle"
MOVED_IOU = 0.3
OUTCOMES = ["kept", "moved", "deleted", "added"]
# one row per annotation: a finished one is a task done, a cancelled one (a skip) costs time only
ANNOTATION_COST_COLUMNS = ["tile_id", "cycle", "labeler", "seconds", "skipped", "boxes", "shown", *OUTCOMES]
# per cycle and labeler (and in total): what the table in the cycle report shows
COST_COLUMNS = ["tasks", "skipped", "hours", "median_s", "boxes", "shown", *OUTCOMES]
BOX_KEYS = ["key", "label", "x1", "y1", "x2", "y2"]
_CORNERS = ["x1", "y1", "x2", "y2"]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of each row of ``a`` with the same row of ``b`` (both ``(n, 4)`` corners ``x1, y1, x2, y2``)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def preannotation_outcomes(shown: pd.DataFrame, drawn: pd.DataFrame) -> pd.DataFrame:
    """Kept / moved / deleted / added counts per ``key`` (the module's IoU rule).

    ``shown``: the pre-annotated boxes, ``drawn``: the annotation's boxes, both with
    ``BOX_KEYS`` (``key`` names the annotation, ``label`` the class in any comparable form).
    Candidate pairs come from one join on ``key`` and one vectorised IoU; the greedy one-to-one
    assignment is made in rounds: each round takes every pair that is the best of both its
    boxes, which is what taking pairs one by one, best first, gives, in a few rounds.
    """
    keys = pd.Index(pd.concat([shown["key"], drawn["key"]]).unique(), name="key")
    s, d = shown.reset_index(drop=True), drawn.reset_index(drop=True)
    pairs = s[["key"]].reset_index(names="s").merge(d[["key"]].reset_index(names="d"), on="key")
    iou = box_iou(s.loc[pairs["s"], _CORNERS].to_numpy(), d.loc[pairs["d"], _CORNERS].to_numpy())
    pairs = pairs.assign(iou=iou)
    pairs = pairs[pairs["iou"] >= MOVED_IOU].sort_values(["iou", "s", "d"], ascending=[False, True, True])
    taken = []
    while not pairs.empty:
        best = pairs.groupby("s", sort=False)["iou"].idxmax()
        mutual = pairs.loc[best[best.isin(pairs.groupby("d", sort=False)["iou"].idxmax())]]
        taken.append(mutual)
        pairs = pairs[~pairs["s"].isin(mutual["s"]) & ~pairs["d"].isin(mutual["d"])]
    matched = pd.concat(taken) if taken else pd.DataFrame({"key": [], "s": [], "d": [], "iou": []})
    same = (
        s["label"].to_numpy()[matched["s"].to_numpy(int)] == d["label"].to_numpy()[matched["d"].to_numpy(int)]
    )
    kept = matched["iou"].to_numpy() >= KEPT_IOU
    matched = matched.assign(kept=same & kept)
    count = {
        "kept": matched[matched["kept"]].groupby("key").size(),
        "moved": matched[~matched["kept"]].groupby("key").size(),
        "deleted": s.groupby("key").size().sub(matched.groupby("key").size(), fill_value=0),
        "added": d.groupby("key").size().sub(matched.groupby("key").size(), fill_value=0),
    }
    out = pd.DataFrame({k: v.reindex(keys, fill_value=0) for k, v in count.items()}, index=keys)
    return out.fillna(0).astype("int64")


def annotation_costs(tasks: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per annotation of a snapshot's ``tasks`` (``ANNOTATION_COST_COLUMNS``).

    ``seconds`` is the annotation's ``lead_time`` (NaN where none was recorded: an annotation
    imported without one); ``boxes`` what it holds, ``shown`` the pre-annotated boxes it started
    from, and the outcomes follow the module's IoU rule. A skip has no boxes and no outcomes.
    """
    rows, shown, drawn = [], [], []
    for task in tasks:
        seen = _boxes(_newest(task.get("predictions") or []))
        for ann in task.get("annotations") or []:
            key = len(rows)
            skipped = bool(ann.get("was_cancelled"))
            mine = [] if skipped else _boxes(ann)
            rows.append(
                {
                    "tile_id": str(task["tile_id"]),
                    "cycle": int((task.get("data") or {}).get("batch", -1)),
                    "labeler": str(ann.get("completed_by", "")),
                    "seconds": _seconds(ann.get("lead_time")),
                    "skipped": skipped,
                    "boxes": len(mine),
                    "shown": 0 if skipped else len(seen),
                }
            )
            if not skipped:
                shown += [(key, *b) for b in seen]
                drawn += [(key, *b) for b in mine]
    table = pd.DataFrame(rows, columns=ANNOTATION_COST_COLUMNS[: -len(OUTCOMES)]).astype(
        {"cycle": "int64", "seconds": "float64", "skipped": "bool", "boxes": "int64", "shown": "int64"}
    )
    outcomes = preannotation_outcomes(
        pd.DataFrame(shown, columns=BOX_KEYS), pd.DataFrame(drawn, columns=BOX_KEYS)
    )
    return table.join(outcomes.reindex(table.index, fill_value=0))[ANNOTATION_COST_COLUMNS]


def cost_summary(costs: pd.DataFrame, by: str | list[str]) -> pd.DataFrame:
    """``annotation_costs`` rows summed per ``by`` (``COST_COLUMNS``).

    ``tasks`` counts finished annotations (a task annotated twice, a correction or a second
    labeler, cost twice); ``hours`` is all recorded time, skips included, NaN when none was
    recorded; ``median_s`` the median seconds of a finished annotation.
    """
    done = costs.assign(done=~costs["skipped"], finished_s=costs["seconds"].where(~costs["skipped"]))
    grouped = done.groupby(by, sort=True)
    out = pd.DataFrame(
        {
            "tasks": grouped["done"].sum(),
            "skipped": grouped["skipped"].sum(),
            "hours": grouped["seconds"].sum(min_count=1) / 3600,
            "median_s": grouped["finished_s"].median(),
        }
    )
    out = out.join(grouped[["boxes", "shown", *OUTCOMES]].sum())
    return out.astype({c: "int64" for c in COST_COLUMNS if c not in ("hours", "median_s")})[COST_COLUMNS]


def cycle_costs(costs: pd.DataFrame, cycle: int) -> pd.DataFrame:
    """Batch ``cycle``'s cost per labeler, and a ``total`` row when there are several: the
    cycle report's table (empty when nobody labeled the batch)."""
    mine = costs[costs["cycle"] == cycle]
    per = cost_summary(mine, "labeler")
    if len(per) < 2:
        return per
    return pd.concat([per, cost_summary(mine.assign(labeler="total"), "labeler")])


def cycle_totals(costs: pd.DataFrame, cycle: int) -> dict[str, float]:
    """Batch ``cycle``'s cost in total, and ``labeler_hours``: the recorded hours of every batch up
    to it (the x of the learning curve against labeler time). No annotation gives zeros, no
    recorded time NaN hours."""
    mine = costs[costs["cycle"] == cycle]
    total = cost_summary(mine.assign(all=0), "all")
    row = total.iloc[0].to_dict() if len(total) else {**dict.fromkeys(COST_COLUMNS, 0), "median_s": math.nan}
    upto = costs.loc[costs["cycle"].between(0, cycle), "seconds"]
    return {**row, "labeler_hours": upto.sum(min_count=1) / 3600 if len(upto) else 0.0}


def _newest(predictions: list[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The prediction of the newest model version (``<name>-v<N>``: the highest N, then the name)."""
    if not predictions:
        return {}
    return max(predictions, key=lambda p: _version_key(str(p.get("model_version") or "")))


def _version_key(version: str) -> tuple[int, str]:
    number = re.search(r"(\d+)$", version)
    return (int(number.group(1)) if number else -1, version)


def _boxes(item: Mapping[str, Any]) -> list[tuple[str, float, float, float, float]]:
    """The rectangles of an annotation or prediction as ``(label, x1, y1, x2, y2)``.

    The oracle keeps pixel ``boxes`` (``class_id, x1..y2``); Label Studio a ``result`` of regions
    in percent of the image (``x, y, width, height`` and ``rectanglelabels``). Every rectangle a
    person drew counts, also one that export later clips or skips: it cost the same time.
    """
    if "boxes" in item:
        return [(str(int(b[0])), *map(float, b[1:5])) for b in item["boxes"] or []]
    out = []
    for region in item.get("result") or []:
        value = region.get("value") or {}
        if region.get("type") != "rectanglelabels" or not all(
            k in value for k in ("x", "y", "width", "height")
        ):
            continue
        x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
        label = (value.get("rectanglelabels") or [""])[0]
        out.append((str(label), x, y, x + w, y + h))
    return out


def _seconds(lead_time: Any) -> float:
    try:
        seconds = float(lead_time)
    except (TypeError, ValueError):
        return math.nan
    return seconds if seconds >= 0 else math.nan
