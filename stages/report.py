"""report: this cycle's labels, metrics, registry record, queue and test set -> reports/cycles/NNNN.md.

What was labeled, what it cost the labelers (time, and what became of the pre-annotations, from
the labels' snapshot: acorn.labeling.cost), what it bought (scores against the cycle before,
from the history kept next to the reports), whether the champion moved, the next batch with the
champion's boxes, the test set's worst false positives and misses, and the batch's suspect labels
(acorn.labeling.review, scored by export-labels), as pictures a reviewer sees in the cycle's commit
(acorn.reporting).
"""

import json
import logging
import tempfile
from pathlib import Path

import pandas as pd
from PIL import Image

from acorn import paths
from acorn.frames.evaluate import found_on_frames
from acorn.labeling.cost import annotation_costs, cycle_costs, cycle_totals
from acorn.labeling.export import read_manifest
from acorn.labeling.review import read_review
from acorn.labeling.snapshot import SNAPSHOT_DIR, read_snapshot
from acorn.model import training
from acorn.model.detection import resolve_device
from acorn.params import Params
from acorn.reporting import build, history
from acorn.reporting.drawing import MISSED, PREDICTED, save_png
from acorn.reporting.markdown import CycleReport, render
from acorn.reporting.matching import match_boxes
from acorn.runtime.atomic import write_csv, write_text
from acorn.runtime.entrypoint import run_stage
from acorn.runtime.errors import InputError

log = logging.getLogger("acorn")

REPORTS, HISTORY = paths.CYCLE_REPORTS, paths.HISTORY


def read_json(path: Path, keys: tuple[str, ...]) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found; run the stage that writes it (dvc repro)") from None
    missing = [k for k in keys if k not in data]
    if missing:
        raise InputError(f"{path}: no {missing[0]!r}; re-run the stage that writes it")
    return data


def champion_test_boxes(p: Params) -> Path:
    """The champion's boxes on the test set, as the train stage kept them when it scored the model;
    scored here only where they are missing (a clone, a cleared cache)."""
    test = Path(p.test.data)
    kept = training.scored_boxes_dir(paths.CHAMPION, test, p.model.imgsz, paths.SCORED_TEST_BOXES)
    if not (kept / training.IMAGES).exists():
        log.info("scoring the champion on %s (its boxes are not in %s)", test, paths.SCORED_TEST_BOXES)
        paths.WORK.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=paths.WORK, prefix="report-") as tmp:
            data = training.folder_dataset(test, p.classes, Path(tmp) / "test_set")
            device = resolve_device(p.model.device)
            training.evaluate(
                paths.CHAMPION,
                data,
                p.model.imgsz,
                Path(tmp) / "score",
                device,
                p.model.threads,
                boxes_out=kept,
            )
    return kept


def report(p: Params) -> None:
    metrics = read_json(paths.TRAIN_METRICS, ("cycle", *history.COUNTS, *history.SCORES))
    record = read_json(paths.REGISTRY, ("version", "champion_version", "metric", "value", "gain"))
    snapshot = read_snapshot(SNAPSHOT_DIR)
    costs = None if snapshot is None else annotation_costs(snapshot.tasks)
    cycle = int(metrics["cycle"])
    row = history.history_row(metrics, record, None if costs is None else cycle_totals(costs, cycle))
    past = history.read_history(HISTORY)
    before = history.previous_row(past, cycle)

    labels = read_manifest(paths.LABELS)
    tiles = pd.read_parquet(paths.TILE_MANIFEST)
    labeled = build.labeled_summary(labels[labels["batch"] == cycle], tiles, p.rank.balance_by)

    queue = pd.read_csv(paths.QUEUE, dtype={"tile_id": str})
    by = p.rank.balance_by
    tags = tiles.set_index("tile_id")[by].fillna("").astype(str) if by in tiles else pd.Series(dtype=str)
    sheets: dict[str, Image.Image | None] = {}
    if p.report.queue_tiles:
        boxes = pd.read_parquet(paths.PRED_BOXES, columns=["tile_id", "confidence", "x1", "y1", "x2", "y2"])
        sheets["queue"] = build.queue_sheet(queue, boxes, p.rank.threshold, p.report.queue_tiles, tags)

    test = build.read_test_set(Path(p.test.data), champion_test_boxes(p), len(p.classes))
    shown = test.predictions[test.predictions["confidence"] >= p.rank.threshold]
    matches = match_boxes(shown, test.truth)
    fp, fn = matches.false_positives, matches.false_negatives
    on_frames = None  # misses that are pieces of objects the whole frame shows found
    frames = Path(p.test.frames) if p.test.frames else None
    if frames is not None and (frames / "images").is_dir():
        try:
            found = found_on_frames(fn, test.predictions, frames, p)
            on_frames, fn = int(found.sum()), fn[~found]
        except InputError as exc:
            log.warning("misses not checked on whole frames: %s", exc)
    if p.report.mistakes:
        n = p.report.mistakes
        sheets["false-positives"] = build.mistakes_sheet(
            fp, test.truth, test.images, (PREDICTED, MISSED), build.false_positive_caption, n, 2
        )
        sheets["missed"] = build.mistakes_sheet(
            fn, shown, test.images, (MISSED, PREDICTED), build.missed_caption, n, 2
        )
    review = read_review(cycle)
    if review is not None:
        images = dict(zip(tiles["tile_id"], [paths.TILES / i for i in tiles["image"]], strict=True))
        sheets["suspects"] = build.suspects_sheet(review.suspects, review.boxes, images, p.rank.threshold)
    name = f"{cycle:04d}"
    files = {key: f"{name}-{key}.png" for key, sheet in sheets.items() if sheet is not None}
    for stale in set(REPORTS.glob(f"{name}-*.png")) - {REPORTS / f for f in files.values()}:
        stale.unlink()  # a re-run cycle's sheet that has nothing to show now
    for key, file in files.items():
        save_png(sheets[key], REPORTS / file)

    page = CycleReport(
        cycle=cycle,
        row=row,
        before_cycle=None if before is None else int(before["cycle"]),
        labeled=labeled,
        scores=history.score_changes(before, row),
        promotion=history.promotion_text(record, None if before is None else int(before["champion_version"])),
        object_name=p.classes[0] if len(p.classes) == 1 else "object",
        queue_size=len(queue),
        queue_shown=min(len(queue), p.report.queue_tiles),
        queue_image=files.get("queue"),
        threshold=p.rank.threshold,
        test_tiles=len(test.images),
        test_boxes=len(test.truth),
        true_positives=int(matches.predictions["matched"].sum()),
        false_positives=len(fp),
        false_negatives=len(matches.false_negatives),
        false_positive_tiles=fp["tile_id"].nunique(),
        missed_tiles=fn["tile_id"].nunique(),
        missed_found_on_frames=on_frames,
        false_positive_image=files.get("false-positives"),
        missed_image=files.get("missed"),
        mistake_tiles=p.report.mistakes,
        costs=None if costs is None else cycle_costs(costs, cycle),
        suspects=None if review is None else review.suspects,
        scored=0 if review is None else review.scored,
        review_budget=p.review.budget,
        suspects_image=files.get("suspects"),
    )
    write_text(REPORTS / f"{name}.md", render(page))
    write_csv(history.update_history(past, row), HISTORY)
    log.info(
        "cycle %d: %s (%d false positives, %d missed on the test set%s)",
        cycle,
        REPORTS / f"{name}.md",
        len(fp),
        len(matches.false_negatives),
        f", {on_frames} of them found on the whole frame" if on_frames else "",
    )


if __name__ == "__main__":
    run_stage(report)
