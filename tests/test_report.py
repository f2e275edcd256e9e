"""The cycle report's pure parts: history, deltas, promotion text, matching, drawing, markdown.

Pictures are checked as pictures: a known bright object in a synthetic tile, a box on it, and
the drawn outline must sit around the object without covering it.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from acorn.labeling import cost
from acorn.model import training
from acorn.model.training import epoch_metrics
from acorn.reporting import build, history
from acorn.reporting.drawing import (
    MISSED,
    PREDICTED,
    contact_sheet,
    draw_boxes,
    save_png,
    thumbnail,
    viewable,
    zoom,
    zoom_window,
)
from acorn.reporting.markdown import CycleReport, render
from acorn.reporting.matching import box_iou, match_boxes
from acorn.runtime.errors import InputError
from tests.conftest import save_detector


def metrics(cycle: int, tiles: int, map50: float) -> dict:
    return {
        "cycle": cycle,
        "labeled_tiles": tiles,
        "labeled_boxes": tiles // 2,
        "labeled_tiles_with_objects": tiles // 4,
        "map50": map50,
        "map50_95": map50 / 3,
        "precision": 0.5,
        "recall": 0.25,
    }


def record(version: int, champion: int, value: float, gain: float) -> dict:
    return {"version": version, "champion_version": champion, "metric": "map50", "value": value, "gain": gain}


def rows() -> list[dict]:
    return [
        history.history_row(metrics(0, 0, 0.061), record(1, 1, 0.061, 0.061)),
        history.history_row(metrics(1, 50, 0.092), record(2, 2, 0.092, 0.031)),
        history.history_row(metrics(2, 100, 0.080), record(3, 2, 0.080, -0.012)),
    ]


def test_history_append_is_idempotent_and_survives_csv(tmp_path):
    path = tmp_path / "history.csv"
    table = history.read_history(path)
    for row in rows():
        table = history.update_history(table, row)
    again = history.update_history(table, rows()[-1])
    pd.testing.assert_frame_equal(again, table)
    table.to_csv(path, index=False)
    back = history.read_history(path)
    pd.testing.assert_frame_equal(back, table)
    assert back["cycle"].tolist() == [0, 1, 2] and back["promoted"].tolist() == [True, True, False]
    assert back["champion_version"].tolist() == [1, 2, 2]


def test_rerun_cycle_replaces_its_row_and_drops_later_ones(tmp_path):
    table = history.read_history(tmp_path / "none.csv")
    for row in rows():
        table = history.update_history(table, row)
    redo = history.history_row(metrics(1, 50, 0.100), record(4, 4, 0.100, 0.039))
    table = history.update_history(table, redo)
    assert table["cycle"].tolist() == [0, 1] and table["map50"].tolist() == [0.061, 0.1]


def test_history_of_another_layout_names_the_file(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("cycle,map50\n0,0.1\n")
    with pytest.raises(InputError, match="history.csv: no column 'labeled_tiles'"):
        history.read_history(path)


def test_deltas_against_the_previous_cycle():
    table = pd.concat([pd.DataFrame([r]) for r in rows()[:2]], ignore_index=True)
    before = history.previous_row(table, 2)
    assert before["cycle"] == 1
    changes = history.score_changes(before, rows()[2])
    assert changes.loc["map50", "before"] == pytest.approx(0.092)
    assert changes.loc["map50", "change"] == pytest.approx(0.080 - 0.092)
    first = history.score_changes(history.previous_row(table, 0), rows()[0])
    assert math.isnan(first.loc["map50", "change"]) and first.loc["map50", "after"] == pytest.approx(0.061)


def test_promotion_text_says_whether_the_champion_moved():
    assert "v1 is the champion" in history.promotion_text(record(1, 1, 0.061, 0.061), None)
    moved = history.promotion_text(record(2, 2, 0.092, 0.031), 1)
    assert "Champion moved to v2" in moved and "+0.031 over v1" in moved
    kept = history.promotion_text(record(3, 2, 0.080, -0.012), 2)
    assert "Champion kept: v2" in kept and "v3 scored map50 0.080" in kept and "-0.012" in kept


def boxes(rows: list[tuple], with_conf: bool = True) -> pd.DataFrame:
    columns = ["tile_id", "class_id", *(["confidence"] if with_conf else []), "x1", "y1", "x2", "y2"]
    return pd.DataFrame(rows, columns=columns)


def test_box_iou_rowwise():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert box_iou(a, b) == pytest.approx([1.0, 50 / 150, 0.0])


def test_matching_counts_duplicates_and_misplaced_boxes_as_false_positives():
    preds = boxes(
        [
            ("a", 0, 0.8, 1, 1, 11, 11),  # overlaps the truth, but a more confident box took it
            ("a", 0, 0.9, 0, 0, 10, 10),  # the match
            ("a", 0, 0.7, 50, 50, 60, 60),  # nothing there
            ("b", 1, 0.95, 0, 0, 10, 10),  # right place, wrong class
            ("c", 0, 0.6, 0, 0, 10, 4),  # IoU 0.4 with the truth: too loose
        ]
    )
    truth = boxes(
        [("a", 0, 0, 0, 10, 10), ("b", 0, 0, 0, 10, 10), ("c", 0, 0, 0, 10, 10), ("d", 0, 5, 5, 25, 45)],
        with_conf=False,
    )
    m = match_boxes(preds, truth)
    assert m.predictions["matched"].tolist() == [False, True, False, False, False]
    assert m.false_positives["confidence"].tolist() == [0.95, 0.8, 0.7, 0.6]
    assert m.truth["matched"].tolist() == [True, False, False, False]
    assert m.false_negatives["tile_id"].tolist() == ["d", "b", "c"], "largest missed object first"


def test_matching_gives_the_best_overlap_to_the_most_confident_box():
    preds = boxes([("a", 0, 0.9, 0, 0, 10, 10), ("a", 0, 0.5, 2, 0, 12, 10)])
    truth = boxes([("a", 0, 2, 0, 12, 10), ("a", 0, 0, 0, 10, 10)], with_conf=False)
    m = match_boxes(preds, truth)
    assert m.predictions["matched"].all() and m.truth["matched"].all()
    assert match_boxes(preds.iloc[:0], truth).false_negatives.shape[0] == 2
    assert match_boxes(preds, truth.iloc[:0]).false_positives.shape[0] == 2


def tile_with_object(box=(200, 120, 240, 150), size=(640, 540)) -> Image.Image:
    """A dark textured tile with one bright rectangle: the object."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(20, 60, size=(size[1], size[0], 3), dtype=np.uint8)
    x1, y1, x2, y2 = box
    pixels[y1:y2, x1:x2] = 250
    return Image.fromarray(pixels)


def outline_bounds(image: Image.Image, color=PREDICTED) -> tuple[int, int, int, int]:
    """Bounding box (x1, y1, x2, y2), exclusive ends, of the pixels drawn in ``color``."""
    hit = np.all(np.asarray(image) == np.array(color, dtype=np.uint8), axis=2)
    ys, xs = np.nonzero(hit)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_draw_boxes_outlines_the_object_without_covering_it():
    image = tile_with_object()
    drawn = draw_boxes(image, boxes([("t", 0, 200, 120, 240, 150)], with_conf=False), width=3)
    assert np.array_equal(np.asarray(image), np.asarray(tile_with_object())), "the input is left alone"
    pixels = np.asarray(drawn)
    assert outline_bounds(drawn) == (197, 117, 243, 153), "a 3 px ring just outside the box"
    assert (pixels[120:150, 200:240] == 250).all(), "the object itself is not painted over"
    for x, y in [(198, 135), (241, 135), (220, 118), (220, 151)]:  # left, right, top, bottom sides
        assert tuple(pixels[y, x]) == PREDICTED
    assert np.array_equal(pixels[300:, :], np.asarray(image)[300:, :]), "nothing drawn elsewhere"


def test_confidence_labels_do_not_cover_each_other():
    image = tile_with_object()
    two = boxes([("t", 0, 0.91, 200, 120, 240, 150), ("t", 0, 0.42, 200, 120, 260, 170)])
    yellow = np.all(np.asarray(draw_boxes(image, two)) == PREDICTED, axis=2)
    above, below = yellow[95:117, 197:240], yellow[173:195, 197:240]
    assert above.sum() > 100, "the most confident box's label sits above the shared corner"
    assert below.sum() > 100, "the other label moved below its box instead of covering the first"


def test_a_label_at_the_image_corner_stays_inside_and_off_its_box():
    image = Image.new("RGB", (100, 80))
    yellow = np.all(np.asarray(draw_boxes(image, boxes([("t", 0, 0.5, 0, 0, 30, 20)]))) == PREDICTED, axis=2)
    assert yellow[:20, :30].sum() == 0, "the box's inside is left clear"
    assert yellow[23:, :].sum() > 100, "the label went below the box, inside the image"


def test_dark_tiles_are_brightened_and_others_left_alone():
    dark = Image.fromarray(np.random.default_rng(0).integers(10, 50, size=(54, 64, 3), dtype=np.uint8))
    assert np.asarray(viewable(dark)).max() > 200
    day = tile_with_object().point(lambda v: v + 100)
    assert viewable(day) is day


def test_thumbnail_and_zoom_keep_boxes_on_the_object():
    image = tile_with_object(box=(400, 300, 416, 316))
    box = boxes([("t", 0, 400, 300, 416, 316)], with_conf=False)
    small = thumbnail(image, 320, [(box, PREDICTED)])
    assert small.size == (320, 270)
    x1, y1, x2, y2 = outline_bounds(small)
    assert (x1, y1) < (200, 150) and (x2, y2) > (208, 158) and x2 - x1 <= 8 + 2 * 2 + 1
    window = zoom_window(box.iloc[0], image.size)
    assert window == (388, 288, 40)  # 2.5 x the 16 px side, centred
    big = zoom(image, window, 200, [(box, PREDICTED)])
    x1, y1, x2, y2 = outline_bounds(big)
    assert (x1, y1, x2, y2) == (58, 58, 142, 142), "the box at 5x, its 2 px ring outside"
    # at the tile's edge the window stays inside the image
    assert zoom_window(boxes([("t", 0, 630, 530, 640, 540)], False).iloc[0], image.size) == (600, 500, 40)


def test_contact_sheet_renders_to_png(tmp_path):
    cells = [tile_with_object().resize((160, 135)) for _ in range(5)]
    sheet = contact_sheet(cells, [f"#{i}" for i in range(5)], columns=2)
    save_png(sheet, tmp_path / "sheet.png")
    with Image.open(tmp_path / "sheet.png") as back:
        assert back.size == sheet.size and back.width == 2 * 160 + 3 * 6
        pixels = np.asarray(back.convert("RGB")).astype(int)
    for i in range(5):  # each cell holds its tile: the bright object at its scaled place
        x, y = 6 + (i % 2) * (160 + 6), 6 + (i // 2) * (sheet.height - 6) // 3
        assert (pixels[y + 31 : y + 37, x + 51 : x + 59] > 200).all()
    with pytest.raises(ValueError, match="3 cells and 2 captions"):
        contact_sheet(cells[:3], ["a", "b"], columns=2)


def test_queue_sheet_draws_only_boxes_at_the_threshold(tmp_path):
    for i in range(3):
        tile_with_object().save(tmp_path / f"t{i}.jpg")
    queue = pd.DataFrame(
        {
            "rank": [2, 1, 3],
            "tile_id": ["t1", "t0", "t2"],
            "image": [str(tmp_path / f"t{i}.jpg") for i in (1, 0, 2)],
        }
    )
    found = boxes([("t0", 0, 0.9, 200, 120, 240, 150), ("t1", 0, 0.1, 200, 120, 240, 150)])
    sheet = build.queue_sheet(queue, found, 0.25, limit=2, tags=pd.Series({"t0": "night"}))
    w, h = build.QUEUE_WIDTH, round(540 * build.QUEUE_WIDTH / 640)
    assert sheet.size[0] == 2 * w + 3 * 6, "two tiles (limit), in a row"
    pixels = np.asarray(sheet)
    first, second = pixels[6 : 6 + h, 6 : 6 + w], pixels[6 : 6 + h, 12 + w : 12 + 2 * w]
    assert np.all(first == PREDICTED, axis=2).sum() > 50, "rank 1 (t0) has its 0.9 box"
    assert np.all(second == PREDICTED, axis=2).sum() == 0, "rank 2 (t1) has only a 0.1 box: not drawn"
    assert build.queue_sheet(queue.iloc[:0], found, 0.25, 2, pd.Series(dtype=str)) is None


def test_mistakes_sheet_one_cell_per_tile_with_a_crop_for_small_objects(tmp_path):
    tile_with_object(box=(400, 300, 416, 316)).save(tmp_path / "small.png")
    tile_with_object(box=(100, 100, 400, 400)).save(tmp_path / "large.png")
    images = {"small": tmp_path / "small.png", "large": tmp_path / "large.png"}
    missed = boxes([("large", 0, 100, 100, 400, 400), ("small", 0, 400, 300, 416, 316)], with_conf=False)
    captions = []
    sheet = build.mistakes_sheet(
        missed,
        boxes([]),
        images,
        (PREDICTED, PREDICTED),
        lambda b, n: captions.append(b["tile_id"]) or "",
        8,
        1,
    )
    assert captions == ["large", "small"]
    pixels = np.asarray(sheet)
    assert sheet.width == 6 + 320 + 6 + 200 + 6, "the small object's cell has a crop next to its tile"
    large_cell_right = pixels[6 : 6 + 270, 6 + 320 + 6 :]
    assert (large_cell_right == pixels[0, 0]).all(), "no crop for an object the thumbnail already shows"


def test_labeled_summary_by_condition_and_in_total():
    batch = pd.DataFrame({"tile_id": ["a", "b", "c", "d"], "n_boxes": [0, 2, 0, 1]})
    tiles = pd.DataFrame(
        {"tile_id": ["a", "b", "c", "d", "e"], "condition": ["day", "day", "night", "", "day"]}
    )
    table = build.labeled_summary(batch, tiles, "condition")
    assert table.index.tolist() == ["(none)", "day", "night", "total"]
    assert table.loc["day"].tolist() == [2, 1, 1, 2]
    assert table.loc["total"].tolist() == [4, 2, 2, 3]
    assert build.labeled_summary(batch, tiles, "").index.tolist() == ["total"]
    assert build.labeled_summary(batch.iloc[:0], tiles, "condition").loc["total", "tiles"] == 0


def report(**changes) -> CycleReport:
    row = rows()[1]
    fields = {
        "cycle": 1,
        "row": row,
        "before_cycle": 0,
        "labeled": build.labeled_summary(
            pd.DataFrame({"tile_id": ["a", "b"], "n_boxes": [0, 3]}),
            pd.DataFrame({"tile_id": ["a", "b"], "condition": ["day", "night"]}),
            "condition",
        ),
        "scores": history.score_changes(rows()[0], row),
        "promotion": history.promotion_text(record(2, 2, 0.092, 0.031), 1),
        "object_name": "squirrel",
        "queue_size": 50,
        "queue_shown": 50,
        "queue_image": "0001-queue.png",
        "threshold": 0.25,
        "test_tiles": 480,
        "test_boxes": 42,
        "true_positives": 4,
        "false_positives": 37,
        "false_negatives": 38,
        "false_positive_tiles": 20,
        "missed_tiles": 30,
        "false_positive_image": "0001-false-positives.png",
        "missed_image": None,
        "mistake_tiles": 8,
    }
    return CycleReport(**{**fields, **changes})


def test_markdown_links_images_and_shows_deltas():
    page = render(report())
    assert page.startswith("# Cycle 1\n")
    assert "**+2 labeled tiles** (1 with squirrels, 1 empty; 3 boxes)" in page
    assert "| mAP50 | 0.061 | 0.092 | +0.031 |" in page
    assert "| night | 1 | 1 | 0 | 3 |" in page
    assert "![next batch](0001-queue.png)" in page and "(0001-false-positives.png)" in page
    assert "the first 8 of 20 tiles" in page and "Not drawn" in page
    first = render(report(cycle=0, before_cycle=None, scores=history.score_changes(None, rows()[0])))
    assert "| mAP50 |  | 0.061 |  |" in first


def test_epoch_metrics_have_plot_friendly_names():
    trainer = SimpleNamespace(
        tloss=[1.0, 2.0, 3.0],
        label_loss_items=lambda loss, prefix: {
            f"{prefix}/{k}": v for k, v in zip(("box_loss", "cls_loss"), loss, strict=False)
        },
        metrics={"metrics/mAP50(B)": 0.5, "metrics/mAP50-95(B)": 0.2, "val/box_loss": 1.5},
    )
    assert epoch_metrics(trainer) == {
        "train/box_loss": 1.0,
        "train/cls_loss": 2.0,
        "val/map50": 0.5,
        "val/map50_95": 0.2,
        "val/box_loss": 1.5,
    }


def test_the_report_reads_the_boxes_the_test_score_counted_with_truth_in_pixels(tmp_path):
    weights = save_detector(tmp_path / "model.pt", ["squirrel"], bias=1.0)
    folder = tmp_path / "testset"
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for name in ("a", "b"):
        tile_with_object(size=(160, 120)).save(folder / "images" / f"{name}.jpg")
    (folder / "labels" / "a.txt").write_text("0 0.5 0.5 0.25 0.5\n")  # b has no label file: empty
    cache = tmp_path / "cache"
    scored = training.scored_boxes_dir(weights, folder, 96, cache)
    data = training.folder_dataset(folder, ["squirrel"], tmp_path / "set")
    metrics = training.evaluate(weights, data, 96, tmp_path / "val", boxes_out=scored)
    assert 0.0 <= metrics.map50 <= 1.0 and scored.parent == cache
    # scoring wrote ultralytics' labels.cache into the folder: the same folder, the same boxes
    assert (folder / "labels.cache").exists() and training.scored_boxes_dir(
        weights, folder, 96, cache
    ) == scored

    test = build.read_test_set(folder, scored, n_classes=1)
    assert sorted(test.images) == ["a", "b"]
    assert test.truth[["tile_id", "x1", "y1", "x2", "y2"]].values.tolist() == [["a", 60.0, 30.0, 100.0, 90.0]]
    boxes = test.predictions
    assert set(boxes["tile_id"]) == {"a", "b"} and len(boxes) > 2  # the random detector finds boxes
    assert (
        boxes[["x1", "x2"]].stack().between(0, 160).all()
        and boxes[["y1", "y2"]].stack().between(0, 120).all()
    )
    assert boxes["confidence"].max() > 0.5  # the head's biases put boxes near 0.73 (tests.conftest)
    (folder / "labels" / "b.txt").write_text("3 0.5 0.5 0.1 0.1\n")
    with pytest.raises(InputError, match=r"labels/b.txt: class id 3 is not among the 1 classes"):
        build.read_test_set(folder, scored, n_classes=1)
    # another model, or a changed test folder, has its own boxes
    other = save_detector(tmp_path / "other.pt", ["squirrel"], bias=-1.0)
    assert training.scored_boxes_dir(other, folder, 96, cache) != training.scored_boxes_dir(
        weights, folder, 96, cache
    )
    assert training.scored_boxes_dir(weights, folder, 96, cache) != scored
    assert training.scored_boxes_dir(weights, folder, 128, cache) != training.scored_boxes_dir(
        weights, folder, 96, cache
    )


def cost_table(labelers: dict[str, list]) -> pd.DataFrame:
    """A cycle_costs table: tasks, skipped, hours, median_s, boxes, shown, kept, moved, deleted, added."""
    return pd.DataFrame.from_dict(labelers, orient="index", columns=cost.COST_COLUMNS).rename_axis("labeler")


def test_history_keeps_the_batch_cost_and_reads_an_older_history(tmp_path):
    costs = {
        "tasks": 50,
        "boxes": 12,
        "kept": 7,
        "moved": 2,
        "deleted": 3,
        "added": 3,
        "hours": 0.25,
        "median_s": 14.0,
        "labeler_hours": 0.5,
    }
    row = history.history_row(metrics(1, 50, 0.092), record(2, 2, 0.092, 0.031), costs)
    assert (row["batch_tasks"], row["pre_kept"], row["batch_hours"], row["labeler_hours"]) == (
        50,
        7,
        0.25,
        0.5,
    )
    path = tmp_path / "history.csv"
    table = history.update_history(history.read_history(path), rows()[0])  # no snapshot: cost unknown
    table = history.update_history(table, row)
    table.to_csv(path, index=False)
    assert "True,0.061,,,,,,,,,\n" in path.read_text()  # cycle 0's cost is empty, not 0
    back = history.read_history(path)
    pd.testing.assert_frame_equal(back, table)
    assert back["batch_tasks"].tolist()[1] == 50 and back["batch_tasks"].isna().tolist() == [True, False]
    # a history written before the cost columns
    old = table.drop(columns=history.COSTS)
    old.to_csv(path, index=False)
    assert history.read_history(path)["labeler_hours"].isna().all()


def test_markdown_says_what_the_batch_cost_and_what_pre_annotations_saved():
    two = cost_table(
        {
            "ann@example.com": [30, 1, 0.2, 20.0, 9, 10, 6, 2, 2, 1],
            "bob@example.com": [20, 0, 0.1, 15.0, 4, 5, 1, 1, 3, 2],
            "total": [50, 1, 0.3, 18.0, 13, 15, 7, 3, 5, 3],
        }
    )
    page = render(report(costs=two, row={**rows()[1], "labeler_hours": 0.5}))
    assert "## What batch 1 cost the labelers" in page
    assert "| labeler | tasks | skipped | hours | median s a task | boxes | pre-annotated |" in page
    assert "| bob@example.com | 20 | 0 | 0.10 | 15 | 4 | 5 | 1 | 1 | 3 | 2 |" in page
    assert (
        "of 15 boxes shown, 7 kept as they were (IoU >= 0.9, same class), 3 moved or relabeled, 5 deleted"
        in page
    )
    # mAP50 0.061 -> 0.092 for 0.3 h: +0.031, +0.103 a labeler-hour
    assert "0.30 labeler-hours this batch, 0.50 in all; mAP50 +0.031 for it, +0.103 a labeler-hour." in page
    assert "modelled" not in page
    oracle = render(
        report(costs=cost_table({"oracle": [2, 0, float("nan"), float("nan"), 1, 0, 0, 0, 0, 1]}))
    )
    assert "No pre-annotated boxes were shown; 1 boxes drawn from scratch." in oracle
    assert "No labeling time was recorded" in oracle and "The oracle's times are modelled" in oracle
    assert "Unknown: no labels' snapshot" in render(report())
    assert "Nothing: no annotation in this batch." in render(report(costs=cost_table({})))


def test_markdown_lists_the_suspect_labels_or_says_why_none():
    suspects = pd.DataFrame(
        {
            "rank": [1, 2],
            "tile_id": ["f1_03", "f2_07"],
            "reason": ["missed", "spurious"],
            "score": [0.046, 0.5],
        }
    )
    page = render(report(suspects=suspects, scored=48, review_budget=10, suspects_image="0001-suspects.png"))
    assert "## Suspect labels in batch 1" in page
    assert "The 2 labels (of 48 scored) that disagree most" in page
    assert "| 1 | f1_03 | missed | 0.046 |" in page and "| 2 | f2_07 | spurious | 0.5 |" in page
    assert "![suspect labels](0001-suspects.png)" in page
    assert "Not scored: no data/review" in render(report())
    assert "review.budget is 0" in render(report(suspects=suspects.iloc[:0], review_budget=0))
    assert "Nothing scored" in render(report(suspects=suspects.iloc[:0], review_budget=10))
    clean = render(report(suspects=suspects.iloc[:0], scored=48, review_budget=10))
    assert "None: the 48 labels scored all agree" in clean


def test_suspects_sheet_draws_the_label_and_the_models_boxes_and_zooms_on_the_reason(tmp_path):
    tile_with_object(box=(400, 300, 416, 316)).save(tmp_path / "a.png")
    tile_with_object(box=(100, 100, 400, 400)).save(tmp_path / "b.png")
    images = {"a": tmp_path / "a.png", "b": tmp_path / "b.png"}
    suspects = pd.DataFrame(
        {"rank": [1, 2], "tile_id": ["a", "b"], "reason": ["missed", "shifted"], "score": [0.1, 0.3]}
    )
    found = pd.DataFrame(
        [
            ("a", "model", 0, 0.9, 400, 300, 416, 316),  # the missed squirrel: the crop is on it
            ("a", "model", 0, 0.1, 10, 10, 60, 60),  # under the threshold: not drawn
            ("b", "label", 0, np.nan, 150, 150, 450, 450),
            ("b", "model", 0, 0.8, 100, 100, 400, 400),
        ],
        columns=["tile_id", "source", "class_id", "confidence", "x1", "y1", "x2", "y2"],
    )
    sheet = build.suspects_sheet(suspects, found, images, 0.25)
    pixels = np.asarray(sheet)
    assert sheet.width == 6 + (320 + 6 + 200 + 6) * 2, "two cells a row, the small one with a crop"
    first = pixels[:270, : 6 + 320]
    second = pixels[:270, 6 + 320 + 6 + 200 + 6 :]
    assert np.all(first == PREDICTED, axis=2).sum() > 10, "the missed squirrel's box, in yellow"
    assert np.all(first[: 6 + 40, : 6 + 40] == PREDICTED, axis=2).sum() == 0, "a 0.1 box is not drawn"
    assert np.all(second == MISSED, axis=2).sum() > 50, "the label's box, in cyan"
    assert build.suspects_sheet(suspects.iloc[:0], found, images, 0.25) is None


def test_whole_frame_map50_goes_to_the_history_and_the_scores_when_there_were_frames(tmp_path):
    with_frames = history.history_row(
        {**metrics(1, 50, 0.092), "frame_map50": 0.31}, record(2, 2, 0.092, 0.031)
    )
    without = history.history_row(metrics(1, 50, 0.092), record(2, 2, 0.092, 0.031))
    assert with_frames["frame_map50"] == 0.31 and math.isnan(without["frame_map50"])
    assert "frame_map50" in history.score_changes(None, with_frames).index
    assert "frame_map50" not in history.score_changes(None, without).index
    path = tmp_path / "history.csv"
    history.update_history(history.read_history(path), with_frames).drop(columns="frame_map50").to_csv(
        path, index=False
    )
    assert history.read_history(path)["frame_map50"].isna().all()  # a history from before frame scores
