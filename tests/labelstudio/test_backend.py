"""Push, annotate and pull through one real Label Studio server (see conftest.py)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pandas as pd
import pytest

from acorn.data.formats import format_yolo
from acorn.labeling.labelstudio.annotator import simulate_annotations
from acorn.labeling.labelstudio.backend import LabelStudioBackend
from acorn.labeling.labelstudio.client import LabelStudioAuthError
from acorn.labeling.labelstudio.convert import label_config
from acorn.labeling.labelstudio.project import ensure_project
from acorn.params import Params
from acorn.selection.labeling_queue import build_queue

from .conftest import CLASSES, H, W, no_predictions, stream

pytestmark = pytest.mark.labelstudio


def rect(x, y, w, h, label="squirrel", rid="r"):
    return {
        "id": rid,
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]},
    }


def test_server_runs_under_its_pid_file(ls_server):
    st = ls_server.status()
    assert st.running and st.healthy
    assert int(ls_server.pid_file.read_text()) == st.pid


def test_setup_is_idempotent(workspace):
    backend = workspace.backend()
    first = backend.setup()
    assert first.changed[0] == "project" and "storage" not in first.changed
    assert "does not exist yet" in first.warnings[0]  # before the tile stage: nothing to serve
    workspace.tiles(["x"])
    first = backend.setup()
    assert first.changed == ["storage"] and first.warnings == []
    second = ensure_project(backend.client, backend.spec)
    assert second.project_id == first.project_id
    assert second.changed == []
    client = backend.client
    assert len([p for p in client.projects.list() if p.title == workspace.title]) == 1
    project = client.projects.get(first.project_id)
    assert project.label_config == label_config(CLASSES)
    assert len(client.import_storage.local.list(project=first.project_id)) == 1
    # a new class is added to the config, nothing else changes
    wider = LabelStudioBackend(CLASSES + ["raccoon"], **_same(workspace))
    assert wider.setup().changed == ["label_config"]


def _same(workspace):
    conn = workspace.server.connection()
    return {
        "repo_root": workspace.root,
        "url": conn.url,
        "api_key": conn.api_key,
        "title": workspace.title,
        "document_root": workspace.server.document_root,
    }


def test_push_twice_never_duplicates_and_requeued_tiles_get_new_predictions(workspace):
    backend = workspace.backend()
    q1 = workspace.tiles(["a", "b", "c", "d"], batch=1, model_version="m1")
    preds = pd.DataFrame(
        {
            "tile_id": ["a", "a", "b"],
            "class_id": [0, 1, 0],
            "confidence": [0.9, 0.1, 0.5],
            "x1": [10.0, 50, 100],
            "y1": [20.0, 60, 100],
            "x2": [110.0, 90, 300],
            "y2": [220.0, 99, 250],
        }
    )
    r1 = backend.push(q1, preds)
    assert (r1.created, r1.updated, r1.unchanged) == (4, 0, 0)
    again = backend.push(q1, preds)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 4)

    tasks = workspace.tasks(backend)
    assert sorted(tasks) == ["a", "b", "c", "d"]
    a = tasks["a"]
    assert (
        a.data["batch"] == 1 and a.data["rank"] == 0 and a.data["image"].startswith("/data/local-files/?d=")
    )
    [pred] = a.predictions
    assert pred.model_version == "m1" and pred.score == pytest.approx(0.0)  # rank 1: the lowest score
    assert len(pred.result) == 1  # the 0.1 box is under the display threshold
    v = pred.result[0]["value"]
    assert (v["x"] / 100 * W, v["y"] / 100 * H) == pytest.approx((10, 20))
    assert pred.result[0]["original_width"] == W and pred.result[0]["original_height"] == H
    # the browser can load the image through the local-files storage
    conn = workspace.server.connection()
    img = httpx.get(conn.url + a.data["image"], headers={"Authorization": f"Token {conn.api_key}"})
    assert img.status_code == 200 and img.content[:2] == b"\xff\xd8"

    # "a" gets labeled; next cycle re-ranks b, a, e with a new model
    backend.client.annotations.create(a.id, result=[], was_cancelled=False)
    q2 = workspace.tiles(["b", "a", "e"], batch=2, model_version="m2")
    r2 = backend.push(q2, preds.assign(confidence=0.95))
    assert (r2.created, r2.updated, r2.unchanged) == (1, 1, 1)
    tasks = workspace.tasks(backend)
    assert sorted(tasks) == ["a", "b", "c", "d", "e"]
    b = tasks["b"]
    assert {p.model_version for p in b.predictions} == {"m1", "m2"}
    assert b.data["batch"] == 1  # first queued in batch 1, as the oracle keeps it
    assert next(p for p in b.predictions if p.model_version == "m2").score == pytest.approx(0.0)
    assert {p.model_version for p in tasks["a"].predictions} == {"m1"}  # labeled: left alone
    assert tasks["e"].data["batch"] == 2
    assert backend.client.projects.get(backend.project_id()).model_version == "m2"
    assert backend.push(q2, preds).unchanged == 3


def test_waiting_tiles_from_earlier_batches_get_the_new_models_predictions(workspace):
    backend = workspace.backend()
    backend.push(workspace.tiles(["a", "b"], batch=1, model_version="m1"), no_predictions())
    # cycle 2 queues c; a is still waiting and ranks after it, z was never queued
    rest = workspace.tiles(["a", "z"], batch=2, model_version="m2").assign(score=[0.5, 0.75])
    result = backend.push(workspace.tiles(["c"], batch=2, model_version="m2"), no_predictions(), rest)
    assert (result.created, result.updated) == (1, 1)
    tasks = workspace.tasks(backend)
    assert sorted(tasks) == ["a", "b", "c"], "a waiting tile is refreshed, never created"
    a_versions = {pr.model_version: pr.score for pr in tasks["a"].predictions}
    assert a_versions["m2"] == pytest.approx(0.5) and tasks["a"].data["batch"] == 1
    assert {pr.model_version for pr in tasks["b"].predictions} == {"m1"}


def test_round_trip_push_annotate_pull_within_a_pixel(workspace):
    rng = np.random.default_rng(1)
    ids = [f"t{i}" for i in range(6)]
    backend = workspace.backend()
    truth = {}
    for tid in ids:
        n = int(rng.integers(1, 5))
        x1, y1 = rng.uniform(0, W - 60, n), rng.uniform(0, H - 60, n)
        boxes = pd.DataFrame(
            {
                "class_id": rng.integers(0, 2, n),
                "x1": x1,
                "y1": y1,
                "x2": x1 + rng.uniform(3, 60, n),
                "y2": y1 + rng.uniform(3, 60, n),
            }
        )
        truth[tid] = boxes
        workspace.write_truth(tid, format_yolo(boxes, W, H))
    backend.push(workspace.tiles(ids), no_predictions())
    done = simulate_annotations(backend, "data/tiles/truth", limit=4)
    assert done.created == 4 and done.problems == []
    assert simulate_annotations(backend, "data/tiles/truth").created == 2

    pulled = backend.pull()
    assert pulled.problems == []
    assert sorted(pulled.annotations["tile_id"]) == ids
    assert (pulled.annotations[["width", "height"]] == [W, H]).all().all()
    assert set(pulled.annotations["annotator"]) == {workspace.server.username}
    for tid in ids:
        got = pulled.boxes[pulled.boxes["tile_id"] == tid]
        want = truth[tid]
        assert got["class_id"].tolist() == want["class_id"].tolist()
        err = np.abs(got[["x1", "y1", "x2", "y2"]].to_numpy() - want[["x1", "y1", "x2", "y2"]].to_numpy())
        assert err.max() <= 1.0
    # pull is read-only and repeatable
    assert backend.pull().annotations.equals(pulled.annotations)


def test_negative_missing_truth_cancelled_and_updated(workspace):
    backend = workspace.backend()
    backend.push(workspace.tiles(["neg", "nofile", "skip", "upd", "two", "late_cancel"]), no_predictions())
    workspace.write_truth("neg", "")
    result = simulate_annotations(backend, "data/tiles/truth", limit=2)  # neg, then nofile (no truth file)
    assert (result.created, result.negatives, result.skipped) == (1, 1, 1)
    assert "nofile" in result.problems[0] and "task" in result.problems[0]

    tasks = workspace.tasks(backend)
    ann = backend.client.annotations
    ann.create(tasks["skip"].id, result=[], was_cancelled=True)
    first = ann.create(tasks["upd"].id, result=[rect(10, 10, 10, 10)])
    ann.update(first.id, result=[rect(50, 50, 10, 10, label="bird")])
    ann.create(tasks["two"].id, result=[rect(10, 10, 10, 10)])
    ann.create(tasks["two"].id, result=[rect(20, 20, 10, 10), rect(30, 30, 5, 5, rid="s")])
    ann.create(tasks["late_cancel"].id, result=[rect(1, 1, 10, 10)])
    ann.create(tasks["late_cancel"].id, result=[], was_cancelled=True)

    pulled = backend.pull()
    assert pulled.problems == []
    assert sorted(pulled.annotations["tile_id"]) == ["late_cancel", "neg", "two", "upd"]
    boxes = pulled.boxes.groupby("tile_id")
    assert "neg" not in boxes.groups  # a checked negative: an annotation row, zero box rows
    upd = boxes.get_group("upd")
    assert upd["class_id"].tolist() == [1] and upd["x1"].iloc[0] == pytest.approx(0.5 * W)
    assert len(boxes.get_group("two")) == 2
    assert boxes.get_group("late_cancel")["x1"].iloc[0] == pytest.approx(0.01 * W)


def test_bad_labels_are_reported_with_the_task_and_handled_by_the_policy(workspace):
    backend = workspace.backend()
    backend.push(workspace.tiles(["bad", "fine", "poly"]), no_predictions())
    tasks = workspace.tasks(backend)
    ann = backend.client.annotations
    bad_id = tasks["bad"].id
    bad = ann.create(
        bad_id,
        result=[
            rect(10, 10, 10, 10, rid="ok"),
            rect(10, 10, 10, 10, label="raccoon", rid="unknown"),
            rect(95, 95, 20, 20, rid="over"),
            rect(40, 40, 0, 0, rid="zero"),
        ],
    )
    ann.create(tasks["fine"].id, result=[rect(5, 5, 5, 5)])
    polygon = {
        "id": "p1",
        "type": "polygonlabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "value": {"points": [[10, 10], [30, 10], [20, 30]], "polygonlabels": ["squirrel"]},
    }
    ann.create(tasks["poly"].id, result=[rect(5, 5, 5, 5), polygon])
    pulled = backend.pull()
    assert sorted(pulled.annotations["tile_id"]) == ["bad", "fine"], "the polygon's annotation is skipped"
    assert pulled.boxes.groupby("tile_id").size().to_dict() == {"bad": 2, "fine": 1}  # ok + clipped
    kinds = {(p.tile_id, p.region): (p.kind, p.action) for p in pulled.problems}
    assert kinds == {
        ("bad", "unknown"): ("unknown_label", "skipped_box"),
        ("bad", "over"): ("outside", "clipped"),
        ("bad", "zero"): ("zero_area", "skipped_box"),
        ("poly", "p1"): ("not_rectangle", "skipped_annotation"),
    }
    bad_messages = [p.message for p in pulled.problems if p.tile_id == "bad"]
    assert all(m.startswith(f"task {bad_id} (tile bad) annotation {bad.id} region ") for m in bad_messages)


def test_personal_access_token_and_bad_key(workspace):
    pat = workspace.backend().client.tokens.create().token
    assert pat.count(".") == 2  # a JWT refresh token
    backend = workspace.backend(api_key=pat)
    assert backend.setup().project_id > 0
    assert backend.pull().annotations.empty
    with pytest.raises(LabelStudioAuthError, match="refused the API key"):
        workspace.backend(api_key="0" * 40).pull()


def test_ml_backend_connection_is_idempotent(workspace):
    """Label Studio calls /health and /setup of the backend it connects; a stub answers both."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Stub(BaseHTTPRequestHandler):
        def _answer(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            self._answer({"status": "UP", "model_class": "stub"})

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer({"model_version": "stub-1"} if self.path.startswith("/setup") else {"results": []})

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        backend = workspace.backend(ml_backend_url=url, storage_path=None)
        assert backend.setup().changed == ["project", "ml_backend"]
        assert backend.setup().changed == []
        [ml] = backend.client.ml.list(project=backend.project_id())
        assert ml.url.rstrip("/") == url
    finally:
        httpd.shutdown()


def test_cli_setup_and_annotate(workspace, monkeypatch):
    from typer.testing import CliRunner

    from acorn.labeling.labelstudio.cli import labelstudio_app

    conn = workspace.server.connection()
    monkeypatch.setenv("LABEL_STUDIO_URL", conn.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", conn.api_key)
    monkeypatch.chdir(workspace.root)
    (workspace.root / "params.yaml").write_text("classes: [squirrel, bird]\n")
    runner = CliRunner()
    args = ["setup", "--title", workspace.title, "--no-storage"]
    first = runner.invoke(labelstudio_app, args)
    assert first.exit_code == 0, first.output
    again = runner.invoke(labelstudio_app, args)
    assert again.exit_code == 0 and "changed nothing" in again.output
    backend = workspace.backend(storage_path=None)
    backend.push(workspace.tiles(["c1", "c2"]), no_predictions())
    workspace.write_truth("c1", "0 0.5 0.5 0.2 0.2\n")
    workspace.write_truth("c2", "")
    done = runner.invoke(labelstudio_app, ["annotate", "--title", workspace.title])
    assert done.exit_code == 0 and "answered 2 tasks (1 negatives)" in done.output, done.output
    pulled = backend.pull()
    assert len(pulled.annotations) == 2 and len(pulled.boxes) == 1
    assert conn.api_key not in first.output + again.output + done.output


def _pool(workspace, ids: list[str], model_version: str) -> pd.DataFrame:
    tiles = workspace.tiles(ids)
    return tiles[["tile_id", "image", "width", "height"]].assign(model_version=model_version)


def test_label_stream_serves_the_queue_in_rank_order(workspace):
    """The project's stream serves rank 1, rank 2, ... of acorn's queue, then the waiting tiles.

    The queue comes from ``build_queue`` itself (random strategy: an order unrelated to tile
    ids), so this checks the score convention against Label Studio's own sampling.
    """
    backend = workspace.backend()
    params = Params().with_overrides({"rank.strategy": "random", "rank.balance_by": "", "rank.budget": 5})
    first = [f"p{i}" for i in range(8)]
    queue, waiting, _ = build_queue(no_predictions(), _pool(workspace, first, "m-v1"), params, batch=1)
    backend.push(queue, no_predictions(), waiting)
    assert stream(backend, limit=2) == queue["tile_id"].tolist()[:2]

    # next cycle: a new model ranks what is left of the pool and three new tiles
    labeled = set(queue["tile_id"].iloc[:2])
    pool = _pool(workspace, [t for t in first if t not in labeled] + ["p8", "p9", "p10"], "m-v2")
    params = params.with_overrides({"rank.budget": 3, "rank.seed": 1})
    queue, waiting, _ = build_queue(no_predictions(), pool, params, batch=2)
    backend.push(queue, no_predictions(), waiting)
    in_project = set(workspace.tasks(backend))
    expected = queue["tile_id"].tolist() + [t for t in waiting["tile_id"] if t in in_project]
    assert set(expected) == in_project - labeled  # the batch, then batch 1's unlabeled rest
    # the Data Manager sorted by prediction score ascending, done tasks hidden, shows the same order
    view = {
        "ordering": ["tasks:predictions_score"],
        "filters": {
            "conjunction": "and",
            "items": [
                {
                    "filter": "filter:tasks:total_annotations",
                    "operator": "equal",
                    "type": "Number",
                    "value": 0,
                }
            ],
        },
    }
    listed = backend.client.tasks.list(project=backend.project_id(), query=json.dumps(view), page_size=100)
    assert [t.data["tile_id"] for t in listed] == expected
    assert stream(backend) == expected
