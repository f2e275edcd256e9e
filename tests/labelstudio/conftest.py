"""One real Label Studio server per test run, shared by every test in this folder.

The server gets its own data dir, a free port on 127.0.0.1 and a document root in a tmp
folder; it never touches the developer's ``.env`` or ``.acorn/labelstudio/data``. Only its
virtual environment is shared with ``acorn labelstudio start`` (``.acorn/labelstudio/venv``,
made on first use: ~1 min; first server start ~40 s). Each test works in its own project
(titled after the test) and its own tiles folder, so tests do not see each other's tasks.
The server is stopped by its pid at the end of the session.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from acorn.labeling.labelstudio.backend import LabelStudioBackend
from acorn.labeling.labelstudio.server import LocalServer
from acorn.selection.labeling_queue import queue_scores

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["squirrel", "bird"]
W, H = 640, 540
# the tests' Label Studio venv: the project's own unless another is named (built on first use)
VENV = Path(os.environ.get("ACORN_LABELSTUDIO_VENV", REPO / ".acorn" / "labelstudio" / "venv"))


@pytest.fixture(scope="session")
def ls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    root = tmp_path_factory.mktemp("labelstudio")
    docroot = root / "docroot"
    docroot.mkdir()
    server = LocalServer.scratch(root, VENV, docroot)
    server.start(timeout=300)
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Workspace:
    """A fake repository under the server's document root, with its own project title."""

    server: LocalServer
    root: Path
    title: str

    def backend(self, **kwargs: Any) -> LabelStudioBackend:
        conn = self.server.connection()
        options: dict[str, Any] = {
            "repo_root": self.root,
            "url": conn.url,
            "api_key": conn.api_key,
            "title": self.title,
            "document_root": self.server.document_root,
            "display_threshold": 0.25,
        }
        options.update(kwargs)
        return LabelStudioBackend(CLASSES, **options)

    def tiles(self, ids: list[str], batch: int = 1, model_version: str = "m1") -> pd.DataFrame:
        """Write tiny JPEG tiles (640x540) and return their queue, ranked in the given order."""
        from PIL import Image

        images = self.root / "data" / "tiles" / "images"
        images.mkdir(parents=True, exist_ok=True)
        for tid in ids:
            path = images / f"{tid}.jpg"
            if not path.exists():
                Image.new("RGB", (W, H), (90, 120, 60)).save(path, quality=60)
        n = len(ids)
        return pd.DataFrame(
            {
                "tile_id": ids,
                "rank": np.arange(n),
                "score": queue_scores(n),
                "strategy_score": np.linspace(0.9, 0.1, n) if n else [],
                "batch": batch,
                "image": [f"data/tiles/images/{t}.jpg" for t in ids],
                "width": W,
                "height": H,
                "model_version": model_version,
            }
        )

    def write_truth(self, tile_id: str, text: str) -> None:
        truth = self.root / "data" / "tiles" / "truth"
        truth.mkdir(parents=True, exist_ok=True)
        (truth / f"{tile_id}.txt").write_text(text, encoding="utf-8")

    def tasks(self, backend: LabelStudioBackend) -> dict[str, Any]:
        """tile_id -> task (with annotations and predictions)."""
        pid = backend.project_id()
        return {
            t.data["tile_id"]: t for t in backend.client.tasks.list(project=pid, fields="all", page_size=100)
        }


@pytest.fixture
def workspace(ls_server: LocalServer, request: pytest.FixtureRequest) -> Workspace:
    name = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name)[:60]
    root = Path(ls_server.document_root) / name
    root.mkdir(parents=True, exist_ok=True)
    return Workspace(server=ls_server, root=root, title=f"t {name}"[:50])


def no_predictions() -> pd.DataFrame:
    return pd.DataFrame(columns=["tile_id", "class_id", "confidence", "x1", "y1", "x2", "y2"])


def stream(backend: LabelStudioBackend, limit: int = 100) -> list[str]:
    """What "Label All Tasks" serves the annotator, in order: ask ``/next``, submit, ask again.

    ``/next`` locks the task it serves for this user and serves it again until it is
    answered, so each served task gets an (empty) annotation before the next question.
    """
    conn = backend.connection
    pid = backend.project_id()
    served: list[str] = []
    with httpx.Client(base_url=conn.url, headers={"Authorization": f"Token {conn.api_key}"}) as http:
        for _ in range(limit):
            answer = http.get(f"/api/projects/{pid}/next")
            if answer.status_code == 404:  # nothing left to label
                break
            answer.raise_for_status()
            task = answer.json()
            served.append(task["data"]["tile_id"])
            backend.client.annotations.create(task["id"], result=[], was_cancelled=False)
    return served
