"""Oracle backend and the labels folder: idempotent push, negatives, byte-identical export."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from acorn.labeling.base import QUEUE_COLUMNS, Pulled
from acorn.labeling.export import read_manifest, write_labels
from acorn.labeling.oracle import OracleBackend


def queue(tile_ids, batch=1, model_version="m-v1"):
    n = len(tile_ids)
    return pd.DataFrame(
        {
            "tile_id": tile_ids,
            "rank": range(1, n + 1),
            "score": [1 - i / n for i in range(n)],
            "strategy_score": 0.5,
            "batch": batch,
            "image": [f"data/tiles/images/{t}.jpg" for t in tile_ids],
            "width": 640,
            "height": 540,
            "model_version": model_version,
        },
        columns=QUEUE_COLUMNS,
    )


NO_PREDICTIONS = pd.DataFrame(columns=["tile_id", "class_id", "confidence", "x1", "y1", "x2", "y2"])


@pytest.fixture
def oracle(tmp_path):
    truth = tmp_path / "truth"
    truth.mkdir()
    (truth / "a.txt").write_text("0 0.5 0.5 0.25 0.2\n")
    (truth / "b.txt").write_text("")  # checked, nothing there
    (truth / "c.txt").write_text("0 0.1 0.1 0.1 0.1\n0 0.9 0.9 0.1 0.1\n")
    return OracleBackend(tmp_path / "state", truth)


def test_push_twice_never_duplicates(oracle):
    first = oracle.push(queue(["a", "b"]), NO_PREDICTIONS)
    again = oracle.push(queue(["a", "b"]), NO_PREDICTIONS)
    refreshed = oracle.push(queue(["b", "c"], batch=2, model_version="m-v2"), NO_PREDICTIONS)
    assert (first.created, again.unchanged, refreshed.created, refreshed.updated) == (2, 2, 1, 1)
    tasks = json.loads((oracle.state_dir / "tasks.json").read_text())
    assert sorted(tasks) == ["a", "b", "c"]
    assert tasks["b"]["batch"] == 1 and tasks["b"]["model_version"] == "m-v2"


def test_oracle_labels_in_queue_order_and_respects_limit(oracle):
    oracle.push(queue(["c", "a", "b"]), NO_PREDICTIONS)
    assert oracle.annotate(limit=2) == 2
    assert sorted(oracle.pull().annotations["tile_id"]) == ["a", "c"]
    assert oracle.annotate() == 1
    assert oracle.annotate() == 0


def test_oracle_without_truth_names_the_file(oracle):
    oracle.push(queue(["zzz"]), NO_PREDICTIONS)
    with pytest.raises(FileNotFoundError, match="zzz.txt"):
        oracle.annotate()


def test_export_writes_negatives_and_is_byte_identical(oracle, tmp_path):
    oracle.push(queue(["a", "b", "c"]), NO_PREDICTIONS)
    oracle.annotate()
    out = tmp_path / "labels"
    manifest = write_labels(oracle.pull(), out, n_classes=1)
    assert manifest.set_index("tile_id")["n_boxes"].to_dict() == {"a": 1, "b": 0, "c": 2}
    assert (out / "b.txt").read_text() == ""
    assert (out / "a.txt").read_text() == "0 0.500000 0.500000 0.250000 0.200000\n"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write_labels(oracle.pull(), out, n_classes=1)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert read_manifest(out)["tile_id"].tolist() == ["a", "b", "c"]


def test_export_reflects_deleted_annotations_and_skips_bad_classes(tmp_path, caplog):
    out = tmp_path / "labels"
    ann = pd.DataFrame(
        {
            "tile_id": ["a", "b"],
            "annotation_id": [1, 2],
            "annotator": "x",
            "updated_at": "t",
            "batch": 1,
            "width": 100,
            "height": 100,
        }
    )
    boxes = pd.DataFrame(
        {"tile_id": ["a", "b"], "class_id": [0, 7], "x1": [1, 1], "y1": [1, 1], "x2": [5, 5], "y2": [5, 5]}
    )
    write_labels(Pulled(ann, boxes, problems=["task 9: unknown label 'cat'"]), out, n_classes=1)
    assert "task 9: unknown label 'cat'" in caplog.text and "tile b has a class id outside" in caplog.text
    assert (out / "b.txt").read_text() == ""
    write_labels(Pulled(ann.iloc[:1], boxes.iloc[:1]), out, n_classes=1)
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "manifest.csv"]
