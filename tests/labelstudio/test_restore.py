"""Labels survive the labeling server: every export keeps a snapshot; a lost database is refused by
the next export and rebuilt by ``acorn labelstudio restore``; the labels come out byte for byte."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from acorn.labeling.export import write_labels
from acorn.labeling.labelstudio.backend import LabelStudioBackend
from acorn.labeling.labelstudio.client import RetryPolicy
from acorn.labeling.labelstudio.server import LocalServer
from tests.conftest import tool_env

from .conftest import CLASSES, REPO, H, W, Workspace, no_predictions
from .faultproxy import Fault, FaultProxy

pytestmark = pytest.mark.labelstudio

IMPORT_TASKS = r"^/api/projects/\d+/import(\?|$)"


def rect(x: float, y: float, w: float, h: float, label: str = "squirrel", rid: str = "r") -> dict:
    return {
        "id": rid,
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]},
    }


POLYGON = {
    "id": "p1",
    "type": "polygonlabels",
    "from_name": "label",
    "to_name": "image",
    "original_width": W,
    "original_height": H,
    "value": {"points": [[10, 10], [30, 10], [20, 30]], "polygonlabels": ["squirrel"]},
}


def label_a_project(workspace: Workspace, backend: LabelStudioBackend, annotator_email: str) -> None:
    """Two pushes and every kind of answer: boxes by a second annotator, a negative, a skip, a
    correction, two answers on one tile, a bad region of each policy, a tile still waiting."""
    predictions = pd.DataFrame(
        {
            "tile_id": ["t0", "t4", "t5"],
            "class_id": [0, 1, 0],
            "confidence": [0.9, 0.6, 0.4],
            "x1": [10.0, 50, 100],
            "y1": [20.0, 60, 100],
            "x2": [110.0, 90, 300],
            "y2": [220.0, 99, 250],
        }
    )
    backend.push(workspace.tiles([f"t{i}" for i in range(6)], batch=1, model_version="m1"), predictions)
    waiting = workspace.tiles(["t4", "t5"], batch=2, model_version="m2").assign(score=[0.5, 0.75])
    backend.push(workspace.tiles(["t6", "t7"], batch=2, model_version="m2"), predictions, waiting)
    tasks = workspace.tasks(backend)
    client = backend.client
    other = client.users.create(username=annotator_email.split("@")[0], email=annotator_email)
    ann = client.annotations
    ann.create(tasks["t0"].id, result=[rect(10, 10, 20, 20)], completed_by=other.id, lead_time=12.5)
    ann.create(tasks["t1"].id, result=[])  # checked, nothing there
    ann.create(tasks["t2"].id, result=[], was_cancelled=True)  # skipped: not a label
    first = ann.create(tasks["t3"].id, result=[rect(5, 5, 10, 10)])
    ann.update(first.id, result=[rect(50, 50, 10, 10, label="bird")])  # corrected
    ann.create(tasks["t4"].id, result=[rect(1, 1, 10, 10)])
    ann.create(tasks["t4"].id, result=[rect(20, 20, 5, 5), rect(30, 30, 5, 5, rid="s")])  # the later counts
    ann.create(tasks["t5"].id, result=[rect(5, 5, 5, 5), POLYGON])  # annotation skipped
    ann.create(tasks["t6"].id, result=[rect(95, 95, 20, 20), rect(5, 5, 5, 5, label="raccoon", rid="u")])


def tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow  # a server of its own, started twice (~1-2 min)
def test_labels_survive_losing_the_label_studio_database(tmp_path):
    """Label, export, stop the server, delete its data folder, start a fresh one: the export
    refuses (nothing written), `acorn labelstudio restore` rebuilds the project, and the next
    export writes the same labels and the same snapshot, byte for byte; the loop goes on."""
    docroot = tmp_path / "docroot"
    root = docroot / "repo"
    root.mkdir(parents=True)
    venv = Path(os.environ.get("ACORN_LABELSTUDIO_VENV", REPO / ".acorn" / "labelstudio" / "venv"))
    server = LocalServer.scratch(tmp_path, venv, docroot)
    params = {
        "classes": CLASSES,
        "labeling": {"backend": "label-studio", "project": "acorn", "document_root": str(docroot)},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))

    def run(*cmd: str, ok: bool = True) -> subprocess.CompletedProcess:
        conn = server.connection()
        env = {**tool_env(root), "LABEL_STUDIO_URL": conn.url, "LABEL_STUDIO_API_KEY": conn.api_key}
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        assert (proc.returncode == 0) == ok, f"{cmd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    export = (sys.executable, str(REPO / "stages" / "export_labels.py"))
    labels, snapshot = root / "data" / "labels", root / "data" / "label-snapshot"
    server.start(timeout=300)
    try:
        workspace = Workspace(server=server, root=root, title="acorn")
        label_a_project(workspace, workspace.backend(), "ann@lab.org")
        run(*export)
        manifest = pd.read_csv(labels / "manifest.csv")
        assert manifest["tile_id"].tolist() == ["t0", "t1", "t3", "t4", "t6"]
        assert manifest.set_index("tile_id").loc["t0", "annotator"] == "ann@lab.org"
        assert (root / "data/labels/problems.csv").read_text().count("\n") == 4  # header + 3
        before = tree(labels), tree(snapshot)

        server.stop()
        shutil.rmtree(server.data_dir)  # the database, and the old API key with it
        server.start(timeout=300)

        lost = run(*export, ok=False)
        assert "no longer has 6 labeled tiles" in lost.stderr and "acorn labelstudio restore" in lost.stderr
        assert (tree(labels), tree(snapshot)) == before, "a refused export writes nothing"

        restored = run("acorn", "labelstudio", "restore")
        assert "8 tasks restored, 0 were there already" in restored.stdout + restored.stderr
        run(*export)
        assert tree(labels) == before[0], "the same labels, byte for byte: DVC skips train"
        assert tree(snapshot) == before[1], "and the same snapshot"
        again = run("acorn", "labelstudio", "restore")
        assert "0 tasks restored, 8 were there already (0 annotations added" in again.stdout + again.stderr

        # the next cycle continues: a waiting tile gets the new model's prediction, a new one is made
        backend = workspace.backend()
        waiting = workspace.tiles(["t7"], batch=3, model_version="m3")
        pushed = backend.push(workspace.tiles(["t8"], batch=3, model_version="m3"), no_predictions(), waiting)
        assert (pushed.created, pushed.updated) == (1, 1)
        tasks = workspace.tasks(backend)
        assert Counter(t.data["tile_id"] for t in tasks.values()) == Counter(f"t{i}" for i in range(9))
        assert tasks["t7"].data["batch"] == 2
        backend.client.annotations.create(tasks["t8"].id, result=[rect(10, 10, 10, 10)])
        run(*export)
        after = pd.read_csv(labels / "manifest.csv")
        assert after["tile_id"].tolist() == ["t0", "t1", "t3", "t4", "t6", "t8"]
        pd.testing.assert_frame_equal(after.iloc[:5], manifest)
    finally:
        server.stop()


def test_restore_merges_into_a_project_that_has_some_tiles_already(workspace, ls_server, tmp_path):
    """A push reached the new project before the restore, and the restore's import is answered
    after the client's timeout: each tile still has one task, and the labels are the same."""
    backend = workspace.backend()
    label_a_project(workspace, backend, "merge@lab.org")
    pulled = backend.pull()
    write_labels(pulled, tmp_path / "before", n_classes=len(CLASSES))

    title = f"{workspace.title[:44]} new"
    fresh = workspace.backend(title=title)
    fresh.push(workspace.tiles(["t4", "t7"], batch=3, model_version="m3"), no_predictions())
    with FaultProxy(ls_server.url) as proxy:
        via = workspace.backend(url=proxy.url, title=title, retry=RetryPolicy(backoff=0.05, timeout=6.0))
        proxy.add(Fault("stall", "POST", IMPORT_TASKS, times=1, seconds=8.0))
        result = via.restore(pulled.snapshot)
        assert len(proxy.faulted("stall")) == 1
    assert (result.created, result.existing, result.annotations_added) == (6, 2, 2)
    assert result.model_version == "", "the project's own (newer) model version is kept"
    tasks = fresh.client.tasks.list(project=fresh.project_id(), fields="task_only")
    assert Counter(t.data["tile_id"] for t in tasks) == Counter(f"t{i}" for i in range(8))
    again = fresh.restore(pulled.snapshot)
    assert (again.created, again.annotations_added) == (0, 0)

    write_labels(fresh.pull(), tmp_path / "after", n_classes=len(CLASSES))
    assert tree(tmp_path / "after") == tree(tmp_path / "before")
