"""``acorn serve`` as the ML backend of the real Label Studio server (see conftest.py).

What a user does: connect the backend to the project (acorn's project set-up with an ML
backend URL), select tasks in the Data Manager and run "Retrieve Predictions". Label Studio
then calls ``/setup`` and ``/predict`` and stores what comes back; these tests check what it
stored, and that a moved champion alias reaches Label Studio without restarting the backend.
One backend and one project of 50 tasks serve both tests; each test reads the champion from
the registry, so they do not depend on their order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest

from acorn.labeling.labelstudio.backend import LabelStudioBackend
from acorn.labeling.labelstudio.server import LocalServer
from acorn.model.detection import load_images
from acorn.model.registry import champion_version, model_version_label
from acorn.selection.labeling_queue import queue_scores
from acorn.serve.app import create_app
from acorn.serve.champion import Champion, served_model_version
from acorn.serve.config import ServeConfig
from acorn.serve.server import ServerThread
from tests.conftest import save_detector
from tests.serve.conftest import MODEL, noise_image, register_version

from .conftest import CLASSES, no_predictions, stream

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

N_TASKS = 50
TILE_W, TILE_H = 128, 96  # not square: x and y percentages have different bases
PUSHED = "pushed-by-acorn"  # the model_version of the (empty) predictions the push itself stores
REFRESH_S = 0.5


@dataclass
class Served:
    """The backend on a port, the project it is connected to, and the registry it serves from."""

    app_server: ServerThread
    champion: Champion  # the app's own watcher: the model it serves now
    backend: LabelStudioBackend
    store: str  # tracking URI of the throwaway registry
    registry: Path
    weights: Path
    tiles: Path
    task_ids: dict[str, int]  # tile_id -> Label Studio task id

    @property
    def project_id(self) -> int:
        pid = self.backend.project_id(create=False)
        assert pid is not None
        return pid

    def alias_version(self) -> int:
        """The registry version the champion alias names now."""
        client = mlflow.MlflowClient(tracking_uri=self.store, registry_uri=self.store)
        version = champion_version(client, MODEL)
        assert version is not None
        return version

    def champion_label(self) -> str:
        """The model_version on what acorn serve predicts with the champion."""
        return served_model_version(MODEL, self.alias_version())

    def health(self) -> dict:
        return httpx.get(f"{self.app_server.url}/health", timeout=10).json()

    def wait_serving(self, label: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while (h := self.health())["state"] != "ready" or h["model_version"] != label:
            assert time.monotonic() < deadline, f"acorn serve never served {label}: {h}"
            time.sleep(0.1)

    def retrieve(self, task_ids: list[int]) -> None:
        """The Data Manager action "Retrieve Predictions" on these tasks (synchronous in Label Studio)."""
        self.backend.client.actions.create(
            id="retrieve_tasks_predictions",
            project=self.project_id,
            selected_items={"all": False, "included": task_ids},
        )

    def predictions(self) -> list[Any]:
        return list(self.backend.client.predictions.list(project=self.project_id))


@pytest.fixture(scope="module")
def served(ls_server: LocalServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    registry = tmp_path_factory.mktemp("serve-registry")
    weights = save_detector(tmp_path_factory.mktemp("serve-weights") / "toy.pt", bias=1.0)
    assert register_version(registry, weights, 0.1) == 1
    store = f"sqlite:///{(registry / 'mlflow.db').resolve()}"

    # the repository's tiles, under Label Studio's document root, which is also the data root
    docroot = Path(ls_server.document_root)
    root = docroot / "serve_ls"
    tiles = root / "data" / "tiles" / "images"
    tiles.mkdir(parents=True)
    ids = [f"s{i:02d}" for i in range(N_TASKS)]
    for seed, tid in enumerate(ids):
        noise_image(tiles / f"{tid}.jpg", TILE_W, TILE_H, seed=100 + seed)
    queue = pd.DataFrame(
        {
            "tile_id": ids,
            "rank": range(N_TASKS),
            "score": queue_scores(N_TASKS),
            "strategy_score": 0.5,
            "batch": 1,
            "image": [f"data/tiles/images/{t}.jpg" for t in ids],
            "width": TILE_W,
            "height": TILE_H,
            "model_version": PUSHED,
        }
    )

    # what `MLFLOW_TRACKING_URI=... acorn serve --data-root <docroot> --refresh 0.5` builds;
    # the champion watcher reads the URI when the app is made, so the env is restored right after
    config = ServeConfig(
        model_name=MODEL, threshold=0.25, root=registry, data_root=docroot, refresh_s=REFRESH_S
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store)
        app = create_app(config)
    with ServerThread(app) as app_server:
        conn = ls_server.connection()
        backend = LabelStudioBackend(
            CLASSES,
            repo_root=root,
            url=conn.url,
            api_key=conn.api_key,
            title="t serve_ls",
            document_root=docroot,
            ml_backend_url=app_server.url,
        )
        served = Served(app_server, app.state.champion, backend, store, registry, weights, tiles, {})
        # Label Studio calls /health and /setup when the backend is connected: have a model by then
        served.wait_serving(served_model_version(MODEL, 1))
        assert backend.setup().changed == ["project", "storage", "ml_backend"]
        assert backend.push(queue, no_predictions()).created == N_TASKS
        served.task_ids = {
            t.data["tile_id"]: int(t.id)
            for t in backend.client.tasks.list(project=served.project_id, fields="task_only", page_size=100)
        }
        assert sorted(served.task_ids) == ids
        yield served


def by_task(predictions: list[Any], model_version: str) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for p in predictions:
        if p.model_version == model_version:
            out.setdefault(int(p.task), []).append(p)
    return out


def test_retrieve_predictions_stores_one_champion_prediction_per_task(served):
    label = served.champion_label()
    served.wait_serving(label)
    started = time.perf_counter()
    served.retrieve(list(served.task_ids.values()))
    seconds = time.perf_counter() - started

    stored = by_task(served.predictions(), label)
    assert sorted(stored) == sorted(served.task_ids.values()), f"{len(stored)} of {N_TASKS} tasks predicted"
    assert all(len(ps) == 1 for ps in stored.values()), "one prediction per task"
    assert sum(len(ps) for ps in stored.values()) == N_TASKS
    for [p] in stored.values():
        assert p.result, "the toy model finds boxes above the display threshold on every noise tile"
        assert p.score == pytest.approx(sum(r["score"] for r in p.result) / len(p.result))
        for r in p.result:
            assert (r["from_name"], r["to_name"], r["type"]) == ("label", "image", "rectanglelabels")
            assert (r["original_width"], r["original_height"]) == (TILE_W, TILE_H)
            assert r["value"]["rectanglelabels"] == ["squirrel"] and r["score"] >= 0.25
            v = r["value"]
            assert 0 <= v["x"] <= v["x"] + v["width"] <= 100 + 1e-6
            assert 0 <= v["y"] <= v["y"] + v["height"] <= 100 + 1e-6

    # percent of the tile's own size: back in pixels, the boxes are what the champion finds on the file
    model = served.champion.current(timeout=0)
    assert model.label == label
    for tile_id in ("s00", "s17", "s49"):
        [p] = stored[served.task_ids[tile_id]]
        with model.lock:
            found = model.detector.predict(load_images([served.tiles / f"{tile_id}.jpg"]), ["t"]).boxes
        shown = found[found["confidence"] >= 0.25].sort_values("confidence", ignore_index=True)
        got = pd.DataFrame(
            {
                "confidence": [r["score"] for r in p.result],
                "x1": [r["value"]["x"] * TILE_W / 100 for r in p.result],
                "y1": [r["value"]["y"] * TILE_H / 100 for r in p.result],
                "x2": [(r["value"]["x"] + r["value"]["width"]) * TILE_W / 100 for r in p.result],
                "y2": [(r["value"]["y"] + r["value"]["height"]) * TILE_H / 100 for r in p.result],
            }
        ).sort_values("confidence", ignore_index=True)
        pd.testing.assert_frame_equal(
            got, shown[list(got.columns)].astype("float64"), atol=1e-2, check_dtype=False
        )
    print(f"\nLabel Studio retrieved {N_TASKS} predictions from acorn serve in {seconds:.1f} s")


def test_moved_champion_alias_reaches_label_studio(served):
    few = [served.task_ids[t] for t in ("s03", "s04", "s05")]
    old = served.champion_label()
    served.wait_serving(old)
    served.retrieve(few)  # these tasks have the old champion's prediction (a no-op if they had one)

    new_version = register_version(served.registry, served.weights, 0.1 * (served.alias_version() + 1))
    new = served_model_version(MODEL, new_version)
    assert new != old and served.champion_label() == new, "a better version becomes champion"
    served.wait_serving(new, timeout=60)  # the watcher re-reads the alias every REFRESH_S
    served.retrieve(few)

    predictions = served.predictions()
    assert sorted(by_task(predictions, new)) == sorted(few), "only the selected tasks get the new version"
    assert all(len(ps) == 1 for ps in by_task(predictions, new).values())
    assert all(p.result for ps in by_task(predictions, new).values() for p in ps)
    for task_id in few:
        assert {p.model_version for p in predictions if int(p.task) == task_id} == {PUSHED, old, new}
    [ml] = served.backend.client.ml.list(project=served.project_id)
    assert ml.model_version == new, "Label Studio's backend record follows /setup"


def test_serve_predictions_never_reorder_the_queue(served):
    """Predictions retrieved from acorn serve before the rank stage pushes the same champion's
    queue: the labeling stream still serves the queue in rank order.

    Serve scores a task by its boxes' mean confidence; the queue ranks these tiles in the
    opposite order (highest confidence first), so a stream that followed serve's scores
    would serve the queue backwards.
    """
    version = served.alias_version()
    served.wait_serving(served_model_version(MODEL, version))
    tiles = [f"s{i}" for i in range(20, 26)]
    served.retrieve([served.task_ids[t] for t in tiles])
    confidence = {
        int(p.task): p.score for p in served.predictions() if p.model_version == served.champion_label()
    }
    order = sorted(tiles, key=lambda t: -confidence[served.task_ids[t]])
    queue = pd.DataFrame(
        {
            "tile_id": order,
            "rank": range(1, len(order) + 1),
            "score": queue_scores(len(order)),
            "strategy_score": 0.5,
            "batch": 2,
            "image": [f"data/tiles/images/{t}.jpg" for t in order],
            "width": TILE_W,
            "height": TILE_H,
            "model_version": model_version_label(MODEL, version),  # what the rank stage pushes
        }
    )
    served.backend.push(queue, no_predictions())
    assert stream(served.backend, limit=len(order)) == order
