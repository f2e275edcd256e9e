"""The cycle report as GitHub-flavoured markdown: tables and images linked by relative path.

GitHub and DagsHub render a ``.md`` file and the PNGs next to it with nothing to install, so the
report is read where the cycle's commit is reviewed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from acorn.labeling.cost import ORACLE

SCORE_NAMES = {
    "map50": "mAP50",
    "map50_95": "mAP50-95",
    "precision": "precision",
    "recall": "recall",
    "frame_map50": "mAP50, whole frames",
}
COST_NAMES = {"hours": "hours", "median_s": "median s a task", "shown": "pre-annotated"}


@dataclass(frozen=True)
class CycleReport:
    """Everything the page shows, already computed; image fields are file names or None."""

    cycle: int
    row: dict  # this cycle's history row
    before_cycle: int | None
    labeled: pd.DataFrame  # labeled_summary of this cycle's batch
    scores: pd.DataFrame  # score_changes: before, after, change per score
    promotion: str
    object_name: str
    queue_size: int
    queue_shown: int
    queue_image: str | None
    threshold: float
    test_tiles: int
    test_boxes: int
    true_positives: int
    false_positives: int
    false_negatives: int
    false_positive_tiles: int  # test tiles with a false positive
    missed_tiles: int  # test tiles with a missed object
    false_positive_image: str | None
    missed_image: str | None
    mistake_tiles: int  # tiles shown per sheet, at most
    # acorn.labeling.cost.cycle_costs of this cycle's batch (one row per labeler, a total if several);
    # None: no labels' snapshot to read it from
    costs: pd.DataFrame | None = None
    # acorn.labeling.review: this cycle's suspects (rank, tile_id, reason, score), how many of the
    # batch's tiles were scored and the sheet; None: no data/review to read them from
    suspects: pd.DataFrame | None = None
    scored: int = 0
    review_budget: int = 0
    suspects_image: str | None = None
    # misses that are pieces of objects found on the whole frame (acorn.frames.evaluate.found_on_frames):
    # left out of the missed sheet; None: no whole test frames to tell
    missed_found_on_frames: int | None = None


def table(df: pd.DataFrame, index_name: str) -> str:
    """A markdown table of strings: the first column left-aligned, the numbers right-aligned."""
    header = [index_name, *map(str, df.columns)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":---", *["---:"] * len(df.columns)]) + "|",
    ]
    lines += [
        "| " + " | ".join([str(i), *map(str, row)]) + " |"
        for i, row in zip(df.index, df.to_numpy(), strict=True)
    ]
    return "\n".join(lines) + "\n"


def _score(value: float, signed: bool = False) -> str:
    if math.isnan(value):
        return ""
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def render(r: CycleReport) -> str:
    row = r.row
    added = int(r.labeled.loc["total", "tiles"])
    with_objects = int(r.labeled.loc["total", "with objects"])
    lines = [f"# Cycle {r.cycle}", ""]
    if r.cycle == 0 or added == 0:
        lines.append("No new labels this cycle: the scores are the starting model's.")
    else:
        lines.append(
            f"**+{added} labeled tiles** ({with_objects} with {r.object_name}s, {added - with_objects} empty; "
            f"{int(r.labeled.loc['total', 'boxes'])} boxes): {row['labeled_tiles']} labeled tiles and "
            f"{row['labeled_boxes']} boxes in all."
        )
    lines += ["", r.promotion, ""]

    lines += [f"## Labeled this cycle (batch {r.cycle})", ""]
    if added:
        lines.append(table(r.labeled, r.labeled.index.name))
    else:
        lines += ["Nothing.", ""]

    lines += cost_lines(r.cycle, r.costs, row, float(r.scores.loc["map50", "change"]))
    lines += suspect_lines(r)

    before = f"cycle {r.before_cycle}" if r.before_cycle is not None else "before"
    scores = pd.DataFrame(
        {
            before: [_score(v) for v in r.scores["before"]],
            f"cycle {r.cycle}": [_score(v) for v in r.scores["after"]],
            "change": [_score(v, signed=True) for v in r.scores["change"]],
        },
        index=[SCORE_NAMES[k] for k in r.scores.index],
    )
    lines += [
        f"## Test set: this cycle's model (v{row['model_version']})",
        "",
        table(scores, "score"),
    ]

    lines += [f"## Next batch: {r.queue_size} tiles queued", ""]
    if r.queue_image:
        shown = "" if r.queue_shown == r.queue_size else f" (the first {r.queue_shown})"
        lines += [
            f"In queue order{shown}, with the champion's boxes at confidence {r.threshold:g} or above "
            f"(yellow); each caption gives the rank, the tile's {r.labeled.index.name}, the boxes drawn "
            "and the top confidence. Dark tiles are brightened for viewing.",
            "",
            f"![next batch]({r.queue_image})",
            "",
        ]
    else:
        lines += [
            "Nothing queued: every tile is labeled."
            if not r.queue_size
            else "Not drawn (report.queue_tiles is 0).",
            "",
        ]

    lines += [
        f"## Where the champion (v{row['champion_version']}) fails on the test set",
        "",
        f"{r.test_tiles} tiles, {r.test_boxes} true boxes; at confidence {r.threshold:g} and IoU 0.5: "
        f"{r.true_positives} found, {r.false_positives} false positives, {r.false_negatives} missed"
        + (
            f" ({r.missed_found_on_frames} of them pieces of objects cut by a tile edge and found on the whole "
            "frame: not shown below)."
            if r.missed_found_on_frames
            else "."
        ),
        "",
    ]
    legend = {
        "fp": "Yellow: the champion's wrong boxes (confidence shown); cyan: the tile's true boxes.",
        "fn": "Cyan: the missed true boxes; yellow: the champion's boxes on the tile (confidence shown).",
    }
    for key, title, image, tiles in (
        ("fp", "False positives, most confident first", r.false_positive_image, r.false_positive_tiles),
        ("fn", f"Missed {r.object_name}s, largest first", r.missed_image, r.missed_tiles),
    ):
        lines += [f"### {title}", ""]
        if image:
            more = (
                f"the first {r.mistake_tiles} of {tiles} tiles"
                if tiles > r.mistake_tiles
                else f"{tiles} tiles"
            )
            lines += [
                f"{legend[key]} Next to a tile, an enlarged crop of its first mistake "
                f"where that shows it larger ({more}).",
                "",
                f"![{title.lower()}]({image})",
                "",
            ]
        else:
            lines += ["None." if not tiles else "Not drawn (report.mistakes is 0).", ""]
    return "\n".join(lines)


def cost_lines(cycle: int, costs: pd.DataFrame | None, row: dict, map50_change: float) -> list[str]:
    """The section on what the batch cost the labelers and what the pre-annotations saved them
    (docs/labeling-cost.md): a table per labeler, then the pre-annotations and the hours in words."""
    lines = [f"## What batch {cycle} cost the labelers", ""]
    if costs is None:
        return [*lines, "Unknown: no labels' snapshot (data/label-snapshot) to read it from.", ""]
    if costs.empty:
        return [*lines, "Nothing: no annotation in this batch.", ""]
    shown = costs.assign(
        hours=costs["hours"].map(lambda h: "" if pd.isna(h) else f"{h:.2f}"),
        median_s=costs["median_s"].map(lambda s: "" if pd.isna(s) else f"{s:.0f}"),
    ).rename(columns=COST_NAMES)
    lines.append(table(shown, "labeler"))
    total = costs.iloc[-1]
    pre = int(total["shown"])
    if pre:
        lines.append(
            f"Pre-annotations: of {pre} boxes shown, {int(total['kept'])} kept as they were (IoU >= 0.9, "
            f"same class), {int(total['moved'])} moved or relabeled, {int(total['deleted'])} deleted; "
            f"{int(total['added'])} boxes drawn from scratch."
        )
    else:
        lines.append(f"No pre-annotated boxes were shown; {int(total['added'])} boxes drawn from scratch.")
    hours, so_far = float(total["hours"]), float(row.get("labeler_hours", math.nan))
    if math.isnan(hours):
        lines.append("No labeling time was recorded (Label Studio's lead_time).")
    else:
        spent = f"{hours:.2f} labeler-hours this batch, {so_far:.2f} in all"
        if hours > 0 and not math.isnan(map50_change):
            spent += f"; mAP50 {map50_change:+.3f} for it, {map50_change / hours:+.3f} a labeler-hour"
        lines.append(spent + ".")
    if ORACLE in costs.index:
        lines.append(
            "The oracle's times are modelled, not measured (docs/labeling-cost.md, acorn.labeling.oracle)."
        )
    return [*lines, ""]


def suspect_lines(r: CycleReport) -> list[str]:
    """The section on the batch's suspect labels (docs/label-quality.md): a table in review order,
    then the sheet."""
    lines = [f"## Suspect labels in batch {r.cycle}", ""]
    if r.suspects is None:
        return [*lines, "Not scored: no data/review (the export-labels stage writes it).", ""]
    if not r.review_budget:
        return [*lines, "Not scored (review.budget is 0).", ""]
    if not r.scored:
        return [
            *lines,
            "Nothing scored: no tile labeled this cycle had the champion's boxes from before it was labeled.",
            "",
        ]
    if r.suspects.empty:
        return [*lines, f"None: the {r.scored} labels scored all agree with the champion's boxes.", ""]
    shown = r.suspects.set_index("rank")[["tile_id", "reason", "score"]].assign(
        score=r.suspects["score"].map(lambda v: f"{v:.2g}").to_numpy()  # cleanlab's go down to 1e-18
    )
    lines += [
        f"The {len(r.suspects)} labels (of {r.scored} scored) that disagree most with the champion's boxes, "
        "which never trained on them; the lower the score, the surer the disagreement (0 to 1). "
        "missed: a confident box with no label on it; shifted: a label box off the model's; spurious: a "
        "label box the model does not see; class: a label box the model calls another class.",
        "",
        table(shown, "rank"),
    ]
    if r.suspects_image:
        lines += [
            f"Cyan: the label's boxes; yellow: the champion's at confidence {r.threshold:g} or above. "
            "Next to a tile, an enlarged crop of the box its reason is about.",
            "",
            f"![suspect labels]({r.suspects_image})",
            "",
        ]
    return lines
