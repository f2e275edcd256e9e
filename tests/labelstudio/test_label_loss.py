"""A Label Studio that keeps its tasks but loses labels (an older database restored, annotations
deleted in bulk, turned into skips or emptied) is refused by export-labels, which then writes
nothing; `acorn labelstudio restore` puts the labels back; an edit passes; a missing snapshot
is refused where labels were exported before; ACORN_ALLOW_LABEL_LOSS=1 lets a meant loss through."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import yaml

from acorn.labeling.snapshot import ALLOW_VAR
from tests.conftest import tool_env

from .conftest import CLASSES, REPO, H, W, Workspace, no_predictions
from .test_restore import tree

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]  # six stage runs and a restore (~40 s)

EXPORT = (sys.executable, str(REPO / "stages" / "export_labels.py"))


def box(x: float) -> dict:
    value = {"x": x, "y": 10, "width": 10, "height": 10, "rotation": 0, "rectanglelabels": ["squirrel"]}
    return {
        "id": "r",
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "value": value,
    }


def test_lost_annotations_stop_export_labels_and_restore_brings_them_back(workspace: Workspace):
    root = workspace.root
    params = {
        "classes": CLASSES,
        "labeling": {
            "backend": "label-studio",
            "project": workspace.title,
            "document_root": str(workspace.server.document_root),
        },
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    conn = workspace.server.connection()

    def run(*cmd: str, ok: bool = True, **env: str) -> str:
        full_env = {
            **tool_env(root),
            "LABEL_STUDIO_URL": conn.url,
            "LABEL_STUDIO_API_KEY": conn.api_key,
            **env,
        }
        proc = subprocess.run(cmd, cwd=root, env=full_env, capture_output=True, text=True)
        assert (proc.returncode == 0) == ok, f"{cmd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout + proc.stderr

    backend = workspace.backend()
    backend.push(workspace.tiles([f"t{i}" for i in range(6)]), no_predictions())
    tasks = workspace.tasks(backend)
    made = {
        t: backend.client.annotations.create(tasks[t].id, result=[box(5)]) for t in ("t0", "t1", "t3", "t4")
    }
    backend.client.annotations.create(tasks["t2"].id, result=[])  # checked: nothing there
    run(*EXPORT)  # the first export: no snapshot yet, and none expected
    labels, snapshot = root / "data" / "labels", root / "data" / "label-snapshot"
    before = tree(labels), tree(snapshot)
    assert sorted(pd.read_csv(labels / "manifest.csv")["tile_id"]) == ["t0", "t1", "t2", "t3", "t4"]

    # the tasks stay; the labels go: one annotation deleted, one turned into a skip, one emptied
    backend.client.annotations.delete(made["t0"].id)
    backend.client.annotations.update(made["t1"].id, was_cancelled=True)
    backend.client.annotations.update(made["t3"].id, result=[])
    refused = run(*EXPORT, ok=False)
    for part in (
        "no longer has 3 labeled tiles",
        "1 annotation deleted (t0)",
        "1 annotation turned into a skip (t1)",
        "1 annotation emptied: it had boxes, now none (t3)",
        "acorn labelstudio restore",
        f"{ALLOW_VAR}=1",
    ):
        assert part in refused, refused
    assert (tree(labels), tree(snapshot)) == before, "a refused export writes nothing"

    restored = run("acorn", "labelstudio", "restore")
    assert "(3 annotations added to them)" in restored, restored
    run(*EXPORT)
    assert (tree(labels), tree(snapshot)) == before, "the same labels and snapshot, byte for byte"

    # an edit is not a loss: a box moved, a negative given a box
    tasks = workspace.tasks(backend)
    backend.client.annotations.update(made["t4"].id, result=[box(40)])
    backend.client.annotations.update(tasks["t2"].annotations[0]["id"], result=[box(60)])
    run(*EXPORT)
    assert tree(labels) != before[0]
    edited = tree(labels), tree(snapshot)

    # a snapshot missing where labels were exported (a clone without `dvc pull`) is refused
    for path in snapshot.iterdir():
        path.unlink()
    snapshot.rmdir()
    missing = run(*EXPORT, ok=False, DVC_STAGE="export-labels")  # as dvc repro runs it
    assert "no previous labels snapshot" in missing and "dvc pull data/label-snapshot" in missing, missing
    assert "`dvc checkout data/labels` puts back the labels dvc repro removed" in missing, missing
    assert tree(labels) == edited[0] and not snapshot.exists()

    # a loss that is meant: the override lets it through, says so, and the snapshot follows
    [restored_t0] = workspace.tasks(backend)["t0"].annotations  # restore made it anew
    backend.client.annotations.delete(restored_t0["id"])
    allowed = run(*EXPORT, **{ALLOW_VAR: "1"})
    assert f"{ALLOW_VAR} is set: exporting although there is no previous labels snapshot" in allowed
    assert sorted(pd.read_csv(labels / "manifest.csv")["tile_id"]) == ["t1", "t2", "t3", "t4"]
    run(*EXPORT)  # and from there on, that is the state to compare with
