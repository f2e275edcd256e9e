"""The cycle history: one row per cycle, the learning curve of the real loop.

metrics/train.json and models/registry.json hold only the latest cycle; the report needs the
cycle before (to show deltas) and ``dvc plots show`` needs every cycle (to draw map50 against
labeled tiles, and against labeler-hours). The history is a small CSV kept in git next to the
reports, updated once per cycle in a way that makes re-running a cycle harmless.

The labeling cost columns (``COSTS``, acorn.labeling.cost, docs/labeling-cost.md) came later: a
history written before them reads with those columns empty (NaN) instead of failing.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from acorn.runtime.errors import InputError

SCORES = ("map50", "map50_95", "precision", "recall")
# whole test frames (test.frames): the tiles' boxes merged across tile edges, scored per frame
# (acorn.frames.evaluate); NaN where the train stage had no whole frames to score
FRAME_SCORES = ("frame_map50",)
COUNTS = ("labeled_tiles", "labeled_boxes", "labeled_tiles_with_objects")
# what this cycle's batch cost (acorn.labeling.cost.cycle_totals): counts (empty where unknown) and
# times; labeler_hours is every batch's recorded hours up to this one, the x of the learning curve
# against labeler time
COST_COUNTS = {
    "tasks": "batch_tasks",
    "boxes": "batch_boxes",
    "kept": "pre_kept",
    "moved": "pre_moved",
    "deleted": "pre_deleted",
    "added": "pre_added",
}
COST_TIMES = {"hours": "batch_hours", "median_s": "batch_median_s", "labeler_hours": "labeler_hours"}
COSTS = [*COST_COUNTS.values(), *COST_TIMES.values()]
HISTORY_COLUMNS = [
    "cycle",
    *COUNTS,
    *SCORES,
    *FRAME_SCORES,
    "model_version",  # registry version trained this cycle
    "champion_version",  # registry version that predicts for the labelers after this cycle
    "promoted",
    "gain",  # register.metric of this cycle's model minus the previous champion's
    *COSTS,
]


def history_row(metrics: dict, record: dict, costs: dict | None = None) -> dict:
    """One cycle's row from the train stage's metrics, the register stage's record and the batch's
    labeling cost (``cycle_totals``; ``None``, no snapshot to read it from, leaves it NaN)."""
    costs = costs or {}
    return {
        "cycle": int(metrics["cycle"]),
        **{k: int(metrics[k]) for k in COUNTS},
        **{k: round(float(metrics[k]), 6) for k in SCORES},
        **{k: round(float(metrics.get(k, math.nan)), 6) for k in FRAME_SCORES},
        "model_version": int(record["version"]),
        "champion_version": int(record["champion_version"]),
        "promoted": int(record["champion_version"]) == int(record["version"]),
        "gain": round(float(record["gain"]), 6),
        **{column: int(costs[key]) if key in costs else pd.NA for key, column in COST_COUNTS.items()},
        **{column: round(float(costs.get(key, math.nan)), 6) for key, column in COST_TIMES.items()},
    }


def read_history(path: Path) -> pd.DataFrame:
    """The history so far (empty before the first report); a file from another layout is an error."""
    if not path.is_file():
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in HISTORY_COLUMNS})
    history = pd.read_csv(path)
    history = history.assign(**{c: math.nan for c in (*COSTS, *FRAME_SCORES) if c not in history})
    missing = [c for c in HISTORY_COLUMNS if c not in history]
    if missing:
        raise InputError(f"{path}: no column {missing[0]!r}; delete the file to start the history afresh")
    return history[HISTORY_COLUMNS].astype({c: _dtype(c) for c in HISTORY_COLUMNS})


def update_history(history: pd.DataFrame, row: dict) -> pd.DataFrame:
    """``history`` with ``row`` as its last cycle.

    A re-run cycle (``dvc exp run``, a forced repro) replaces its own row instead of adding a
    second one, and rows of later cycles go too: a loop rewound to an earlier cycle starts its
    curve again from there. Applying the same row twice gives the same table.
    """
    kept = history[history["cycle"] < row["cycle"]]
    new = pd.DataFrame([row], columns=HISTORY_COLUMNS).astype({c: _dtype(c) for c in HISTORY_COLUMNS})
    return pd.concat([kept, new], ignore_index=True) if not kept.empty else new


def previous_row(history: pd.DataFrame, cycle: int) -> dict | None:
    """The latest cycle before ``cycle``: what this cycle's numbers are compared with."""
    earlier = history[history["cycle"] < cycle]
    return None if earlier.empty else earlier.sort_values("cycle").iloc[-1].to_dict()


def score_changes(before: dict | None, after: dict) -> pd.DataFrame:
    """Test-set scores before and after this cycle, with the change (NaN where there is no before)."""
    shown = [*SCORES, *(k for k in FRAME_SCORES if not math.isnan(float(after.get(k, math.nan))))]
    now = pd.Series({k: float(after[k]) for k in shown})
    then = pd.Series({k: float(before.get(k, math.nan)) if before else math.nan for k in shown})
    return pd.DataFrame({"before": then, "after": now, "change": now - then})


def promotion_text(record: dict, previous_champion: int | None) -> str:
    """Whether the champion moved, in one sentence: a cycle's model is only used if it won."""
    version, champion = int(record["version"]), int(record["champion_version"])
    metric, value, gain = record["metric"], float(record["value"]), float(record["gain"])
    if champion == version and previous_champion is None:
        return f"v{version} is the champion ({metric} {value:.3f}); no earlier cycle to compare with."
    if champion == version:
        return (
            f"**Champion moved to v{version}**: {metric} {value:.3f}, {gain:+.3f} over v{previous_champion}."
        )
    return (
        f"**Champion kept: v{champion}.** This cycle's v{version} scored {metric} {value:.3f}, "
        f"{gain:+.3f} against it; the labelers keep getting v{champion}'s boxes."
    )


def _dtype(column: str) -> str:
    if column == "promoted":
        return "bool"
    if column in COST_COUNTS.values():
        return "Int64"  # a count that may be unknown
    return "float64" if column in (*SCORES, *FRAME_SCORES, "gain", *COST_TIMES.values()) else "int64"
