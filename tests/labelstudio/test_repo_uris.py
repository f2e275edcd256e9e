"""``repo://`` images end to end on the real Label Studio server: the backend pushes tasks that name
their tiles by ``repo://`` URI (``labeling.document_root: repo://...``, as for DagsHub's hosted
Label Studio), and "Retrieve Predictions" through ``acorn serve`` gets boxes for them, the tiles'
bytes coming from a local HTTP server on 127.0.0.1 standing in for DagsHub (tests/test_dagshub.py).
No tile exists on this machine's disk: the hosted case.
"""

from __future__ import annotations

import time

import httpx
import pandas as pd
import pytest

from acorn.data import repo_uris
from acorn.labeling.labelstudio.backend import LabelStudioBackend
from acorn.labeling.labelstudio.server import LocalServer
from acorn.model.detection import load_images
from acorn.selection.labeling_queue import queue_scores
from acorn.serve.app import create_app
from acorn.serve.champion import served_model_version
from acorn.serve.config import ServeConfig
from acorn.serve.server import ServerThread
from tests.conftest import save_detector
from tests.serve.conftest import MODEL, noise_image, register_version
from tests.test_dagshub import OWNER, REPO, TOKEN, fake_dagshub

from .conftest import CLASSES, no_predictions

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

W, H = 128, 96
ROOT = f"repo://{OWNER}/{REPO}/main:"


def test_repo_uri_tasks_get_predictions_from_acorn_serve(ls_server: LocalServer, tmp_path, monkeypatch):
    registry = tmp_path / "registry"
    weights = save_detector(tmp_path / "toy.pt", bias=1.0)
    assert register_version(registry, weights, 0.1) == 1
    ids = ["r0", "r1", "r2"]
    pixels = tmp_path / "pixels"  # the tiles' bytes, served by the stand-in; not under any root
    pixels.mkdir()

    with fake_dagshub() as dagshub:
        for seed, tid in enumerate(ids):
            path = noise_image(pixels / f"{tid}.jpg", W, H, seed=300 + seed)
            dagshub.files[("main", f"data/tiles/images/{tid}.jpg")] = path.read_bytes()
        monkeypatch.setenv(repo_uris.HOST_VAR, dagshub.url)
        monkeypatch.setenv(repo_uris.TOKEN_VAR, TOKEN)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{(registry / 'mlflow.db').resolve()}")
        config = ServeConfig(
            model_name=MODEL, threshold=0.25, root=registry, data_root=tmp_path / "empty", refresh_s=3600
        )
        app = create_app(config)
        with ServerThread(app) as served:
            label = served_model_version(MODEL, 1)
            deadline = time.monotonic() + 120
            while httpx.get(f"{served.url}/health", timeout=10).json().get("model_version") != label:
                assert time.monotonic() < deadline, "acorn serve never loaded the champion"
                time.sleep(0.2)
            conn = ls_server.connection()
            backend = LabelStudioBackend(
                CLASSES,
                repo_root=tmp_path / "repo",
                url=conn.url,
                api_key=conn.api_key,
                title="t repo uris",
                document_root=ROOT,
                ml_backend_url=served.url,
            )
            assert backend.setup().changed == ["project", "ml_backend"], "no local-files storage"
            queue = pd.DataFrame(
                {
                    "tile_id": ids,
                    "rank": range(1, 4),
                    "score": queue_scores(3),
                    "strategy_score": 0.5,
                    "batch": 1,
                    "image": [f"data/tiles/images/{t}.jpg" for t in ids],
                    "width": W,
                    "height": H,
                    "model_version": "pushed-by-acorn",
                }
            )
            assert backend.push(queue, no_predictions()).created == 3
            pid = backend.project_id(create=False)
            tasks = {
                t.data["tile_id"]: t
                for t in backend.client.tasks.list(project=pid, fields="all", page_size=10)
            }
            assert {t: task.data["image"] for t, task in tasks.items()} == {
                t: f"{ROOT}data/tiles/images/{t}.jpg" for t in ids
            }

            dagshub.authorizations.clear()
            backend.client.actions.create(
                id="retrieve_tasks_predictions",
                project=pid,
                selected_items={"all": False, "included": [int(t.id) for t in tasks.values()]},
            )
            stored = {
                int(p.task): p
                for p in backend.client.predictions.list(project=pid)
                if p.model_version == label
            }
            model = app.state.champion.current(timeout=0)

    assert sorted(stored) == sorted(int(t.id) for t in tasks.values()), "one prediction per repo:// task"
    assert set(dagshub.authorizations) == {f"Bearer {TOKEN}"}, (
        "each tile read from the stand-in with the token"
    )
    for tid, task in tasks.items():
        p = stored[int(task.id)]
        assert p.result, "the toy model finds boxes above the display threshold on a noise tile"
        with model.lock:
            found = model.detector.predict(load_images([pixels / f"{tid}.jpg"]), ["t"]).boxes
        shown = found[found["confidence"] >= 0.25]
        assert sorted(round(r["score"], 4) for r in p.result) == sorted(
            round(float(c), 4) for c in shown["confidence"]
        ), "the boxes are the champion's on the repo:// tile's bytes"
