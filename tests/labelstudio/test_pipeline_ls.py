"""Two full cycles of `dvc repro` against the real Label Studio server, with the simulated annotator."""

from __future__ import annotations

import json
import shutil
import subprocess

import pandas as pd
import pytest

from acorn.labeling.labelstudio import LabelStudioBackend
from tests.conftest import tool_env, write_params

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]


def test_two_cycles_through_label_studio(ls_server, tiny_template):
    # the repository must sit under the server's local-files document root
    root = ls_server.document_root / "e2e-repo"
    shutil.copytree(tiny_template, root, symlinks=True)
    write_params(
        root,
        {
            "labeling": {
                "backend": "label-studio",
                "project": "e2e",
                "document_root": str(ls_server.document_root),
            }
        },
    )
    conn = ls_server.connection()
    env = {**tool_env(root), "LABEL_STUDIO_URL": conn.url, "LABEL_STUDIO_API_KEY": conn.api_key}

    def run(*cmd: str) -> str:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        return proc.stdout + proc.stderr

    run("dvc", "repro")
    queue = pd.read_csv(root / "data/queue.csv")
    backend = LabelStudioBackend(
        ["squirrel"],
        repo_root=root,
        url=conn.url,
        api_key=conn.api_key,
        title="e2e",
        document_root=ls_server.document_root,
    )
    tasks = list(backend.client.tasks.list(project=backend.project_id()))
    assert sorted(t.data["tile_id"] for t in tasks) == sorted(queue["tile_id"])

    run("acorn", "annotate")
    run("dvc", "repro")
    labels = pd.read_csv(root / "data/labels/manifest.csv")
    assert sorted(labels["tile_id"]) == sorted(queue["tile_id"])
    assert labels["annotator"].notna().all() and labels["annotation_id"].is_unique
    for t in labels["tile_id"]:
        truth = (root / "data/tiles/truth" / f"{t}.txt").read_text().split()
        got = (root / "data/labels" / f"{t}.txt").read_text().split()
        assert len(got) == len(truth)
    assert json.loads((root / "metrics/train.json").read_text())["cycle"] == 1
    assert json.loads((root / "data/labels/report.json").read_text())["labeled_tiles"] == len(queue)
    # the backup: every task the project held at export, each with its annotation (DVC-tracked)
    snapshot = [
        json.loads(line) for line in (root / "data/label-snapshot/tasks.jsonl").read_text().splitlines()
    ]
    assert [t["tile_id"] for t in snapshot] == sorted(queue["tile_id"])
    assert all(len(t["annotations"]) == 1 for t in snapshot)
    assert "data/label-snapshot" in (root / "dvc.lock").read_text()
    second_queue = pd.read_csv(root / "data/queue.csv")
    tasks = list(backend.client.tasks.list(project=backend.project_id()))
    ids = [t.data["tile_id"] for t in tasks]
    assert len(ids) == len(set(ids)) == len(queue) + len(second_queue), "no task is duplicated across cycles"
    # the key was in the environment of every command: it must be in none of the files they wrote
    # (dvc.lock, params, metrics, registry.json, queue.csv, labels, DVC's and MLflow's own state)
    written = [f for f in root.rglob("*") if f.is_file() and ".git" not in f.relative_to(root).parts]
    assert {"dvc.lock", "queue.csv", "registry.json", "manifest.csv"} <= {f.name for f in written}
    key = conn.api_key.encode()
    leaks = [str(f.relative_to(root)) for f in written if key in f.read_bytes()]
    assert leaks == [], f"the Label Studio API key was written to {leaks}"
