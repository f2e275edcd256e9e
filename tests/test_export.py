"""Oracle backend, the labels folder and the labels snapshot: idempotent push, negatives,
byte-identical export, the export's problem report, the snapshot and its lost-labels check."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from acorn.labeling.base import QUEUE_COLUMNS, SKIPPED_ANNOTATION, SKIPPED_BOX, Problem, Pulled, Snapshot
from acorn.labeling.export import read_manifest, read_report, write_labels
from acorn.labeling.oracle import OracleBackend
from acorn.labeling.snapshot import (
    LabelsLostError,
    check_nothing_lost,
    exported_before,
    read_snapshot,
    write_snapshot,
)
from acorn.runtime.errors import AcornError


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
    unknown = Problem("c", 9, "r1", "unknown_label", SKIPPED_BOX, "unknown label 'cat'", where="task 12")
    write_labels(Pulled(ann, boxes, problems=[unknown]), out, n_classes=1)
    assert "task 12 (tile c) annotation 9 region r1: unknown label 'cat'; box skipped" in caplog.text
    assert "tile b: class id 7 is outside 0..0; box skipped" in caplog.text
    assert (out / "b.txt").read_text() == ""
    write_labels(Pulled(ann.iloc[:1], boxes.iloc[:1]), out, n_classes=1)
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "manifest.csv", "problems.csv", "report.json"]


def test_export_report_counts_problems_by_kind_and_action_and_is_stable(tmp_path):
    out = tmp_path / "labels"
    ann = pd.DataFrame(
        {
            "tile_id": ["a", "n"],
            "annotation_id": [1, 2],
            "annotator": "x",
            "updated_at": "t",
            "batch": 1,
            "width": 100,
            "height": 100,
        }
    )
    boxes = pd.DataFrame({"tile_id": ["a"], "class_id": [0], "x1": [1], "y1": [1], "x2": [5], "y2": [5]})
    problems = [
        Problem("z", 4, "p", "not_rectangle", SKIPPED_ANNOTATION, "a 'polygonlabels' region", where="task 3"),
        Problem("a", 1, "u", "unknown_label", SKIPPED_BOX, "unknown label 'cat'", where="task 1"),
        Problem("a", 1, "v", "unknown_label", SKIPPED_BOX, "unknown label 'dog'", where="task 1"),
    ]
    write_labels(Pulled(ann, boxes, problems=problems), out, n_classes=1)
    report = read_report(out)
    assert report == {
        "labeled_tiles": 2,
        "boxes": 1,
        "negatives": 1,
        "problems": 3,
        "problems_by_kind": {"not_rectangle": 1, "unknown_label": 2},
        "problems_by_action": {"clipped": 0, "skipped_annotation": 1, "skipped_box": 2},
    }
    table = pd.read_csv(out / "problems.csv")
    assert table[["tile_id", "region", "kind", "action"]].values.tolist() == [
        ["a", "u", "unknown_label", "skipped_box"],
        ["a", "v", "unknown_label", "skipped_box"],
        ["z", "p", "not_rectangle", "skipped_annotation"],
    ]
    assert "task" not in (out / "problems.csv").read_text(), "server ids stay out of data/labels"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write_labels(Pulled(ann, boxes, problems=problems[::-1]), out, n_classes=1)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


BOX = {"id": "r", "type": "rectanglelabels", "value": {"x": 1, "y": 1, "width": 5, "height": 5}}


def ls_snapshot(tiles: dict[str, bool | str], project: str = "acorn") -> Snapshot:
    """A Label Studio snapshot: tile -> its label: "boxes", "empty" (a reviewed negative; also
    ``True``), "skipped" (a cancelled annotation only) or "" (a task with no annotation; also ``False``)."""
    kinds = {True: "empty", False: ""}
    answers = {
        "": [],
        "empty": [{"was_cancelled": False, "result": []}],
        "boxes": [{"was_cancelled": False, "result": [BOX]}],
        "skipped": [{"was_cancelled": True, "result": []}],
    }
    tasks = [
        {
            "tile_id": t,
            "data": {"tile_id": t, "image": f"/data/local-files/?d=data/tiles/images/{t}.jpg", "rank": i},
            "predictions": [{"model_version": "m-v1", "score": i / 10, "result": []}],
            "annotations": [
                {"id": i, "completed_by": "ann@lab.org", **a} for a in answers[kinds.get(label, label)]
            ],
        }
        for i, (t, label) in enumerate(tiles.items())
    ]
    return Snapshot(
        project={"backend": "label-studio", "project": project, "model_version": "m-v1"}, tasks=tasks
    )


def test_snapshot_round_trip_is_sorted_and_byte_stable(tmp_path):
    snap = ls_snapshot({"b": True, "a": False, "ü": True})
    out = tmp_path / "label-snapshot"
    write_snapshot(snap, out)
    lines = (out / "tasks.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["tile_id"] for line in lines] == ["a", "b", "ü"]
    back = read_snapshot(out)
    assert back.project == snap.project and back.labeled_tiles() == {"b", "ü"}
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write_snapshot(back, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert read_snapshot(tmp_path / "none") is None


def test_lost_labels_stop_the_export_and_name_the_tiles_and_the_way_back(tmp_path):
    """Tasks still there do not make labels still there: a task gone, its annotation deleted,
    turned into a skip, or emptied of its boxes all count as lost, by kind, with the tiles named."""
    previous = ls_snapshot(
        {"a": "boxes", "b": "empty", "c": "boxes", "d": "boxes", "e": "boxes", "f": "empty", "g": ""}
    )
    edits = {"a": "boxes", "b": "empty", "c": "boxes", "d": "boxes", "e": "boxes", "f": "boxes"}
    assert check_nothing_lost(previous, ls_snapshot({**edits, "h": "boxes"}), tmp_path) == [], (
        "edits, a negative given boxes, an unlabeled task gone, a new tile: nothing lost"
    )
    now = ls_snapshot({"b": "", "c": "skipped", "d": "empty", "e": "boxes", "f": "", "g": ""})
    with pytest.raises(LabelsLostError) as refused:
        check_nothing_lost(previous, now, tmp_path)
    message = str(refused.value)
    for part in (
        "no longer has 5 labeled tiles",
        "1 task gone (a)",
        "2 annotations deleted (b, f)",
        "1 annotation turned into a skip (c)",
        "1 annotation emptied: it had boxes, now none (d)",
        "acorn labelstudio restore",
        "ACORN_ALLOW_LABEL_LOSS=1",
        "Nothing was written",
    ):
        assert part in message, message
    [accepted] = check_nothing_lost(previous, now, tmp_path, allow=True)
    assert accepted.startswith("ACORN_ALLOW_LABEL_LOSS is set: exporting although") and "(a)" in accepted


def test_a_loss_of_many_tiles_names_the_first_few_and_counts_the_rest(tmp_path):
    previous = ls_snapshot({f"t{i:02d}": "boxes" for i in range(12)})
    with pytest.raises(LabelsLostError, match=r"12 tasks gone \(t00, t01, t02, t03, t04, \.\.\. 7 more\)"):
        check_nothing_lost(previous, ls_snapshot({}), tmp_path)


def test_a_changed_project_or_a_missing_snapshot_is_refused_unless_allowed(tmp_path):
    labeled = ls_snapshot({"a": "boxes", "b": "empty"})
    other = ls_snapshot({"x": "boxes"}, project="other")
    with pytest.raises(
        LabelsLostError, match=r"holds 2 labeled tiles of .*'acorn'.*'other'.*labeling.project"
    ):
        check_nothing_lost(labeled, other, tmp_path)
    assert "ACORN_ALLOW_LABEL_LOSS is set" in check_nothing_lost(labeled, other, tmp_path, allow=True)[0]
    assert check_nothing_lost(ls_snapshot({"a": ""}), other, tmp_path) == [], "nothing labeled: a new start"
    oracle = Snapshot(project={"backend": "oracle", "project": "oracle"}, tasks=labeled.tasks)
    assert check_nothing_lost(oracle, other, tmp_path) == [], "the oracle's simulated labels are not work"
    with pytest.raises(LabelsLostError, match="the oracle backend"):
        check_nothing_lost(labeled, Snapshot(project={"backend": "oracle", "project": "oracle"}), tmp_path)

    # no previous snapshot: a first export passes; where labels were exported before it is refused
    assert check_nothing_lost(None, labeled, tmp_path) == []
    evidence = "dvc.lock records data/label-snapshot (exported here before)"
    with pytest.raises(LabelsLostError, match=r"no previous labels snapshot .*dvc.lock records.*`dvc pull"):
        check_nothing_lost(None, labeled, tmp_path, evidence=evidence)
    assert check_nothing_lost(None, labeled, tmp_path, evidence=evidence, allow=True)
    oracle_pull = Snapshot(project={"backend": "oracle", "project": "oracle"})
    assert check_nothing_lost(None, oracle_pull, tmp_path, evidence=evidence) == []


def test_an_earlier_export_is_seen_in_the_labels_manifest_or_dvc_lock(tmp_path):
    """``dvc repro`` removes data/labels before the stage runs; its dvc.lock still records the
    snapshot. Run by hand, the manifest shows it. A fresh repository has neither."""
    labels, lock = tmp_path / "labels", tmp_path / "dvc.lock"
    assert exported_before(labels, lock) is None
    labels.mkdir()
    (labels / "manifest.csv").write_text("tile_id,annotation_id\n")
    assert exported_before(labels, lock) is None, "an export of no labels"
    (labels / "manifest.csv").write_text("tile_id,annotation_id\na,1\n")
    assert "lists labeled tiles" in exported_before(labels, lock)
    (labels / "manifest.csv").unlink()
    lock.write_text("schema: '2.0'\nstages:\n  tile:\n    outs:\n    - path: data/tiles\n")
    assert exported_before(labels, lock) is None
    lock.write_text(
        "schema: '2.0'\nstages:\n  export-labels:\n    outs:\n    - path: data/labels\n"
        "    - path: data/label-snapshot\n      md5: 0a.dir\n"
    )
    assert "records data/label-snapshot" in exported_before(labels, lock)
    lock.write_text("stages: [\n")
    with pytest.raises(AcornError, match=r"dvc.lock: not valid YAML"):
        exported_before(labels, lock)


def test_oracle_snapshot_holds_every_answer_and_ignores_new_pushes(oracle):
    oracle.push(queue(["a", "b", "c"]), NO_PREDICTIONS)
    oracle.annotate(limit=2)
    snap = oracle.pull().snapshot
    assert snap.project["backend"] == "oracle"
    assert [t["tile_id"] for t in snap.tasks] == ["a", "b"] == sorted(snap.labeled_tiles())
    assert snap.tasks[1]["data"]["rank"] == 2
    oracle.push(queue(["d"], batch=2, model_version="m-v2"), NO_PREDICTIONS)
    assert oracle.pull().snapshot == snap, "a push alone leaves the snapshot (and dvc.lock) as it was"
    assert snap.tasks[0]["annotations"][0]["boxes"] == [[0, 240.0, 216.0, 400.0, 324.0]]
    check_nothing_lost(
        snap, OracleBackend(oracle.state_dir.parent / "gone", oracle.truth_dir).pull().snapshot
    )
