"""Fixtures for ``acorn serve``: a tiny untrained detector registered in a throwaway MLflow store.

The detector is random, but its class-0 bias is set per detection scale so that it finds
boxes of three confidences (~0.73, ~0.27 and ~0.05; tests.conftest.save_detector): some above
the 0.25 display threshold and some below, which is all these tests need to check geometry,
filtering and ordering.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import acorn  # noqa: F401  (offline settings before ultralytics loads)
from acorn.serve.champion import Champion
from acorn.serve.config import ServeConfig
from tests.conftest import save_detector

MODEL = "toy-detector"
LOCAL = "http://127.0.0.1"  # TestClient's own "testserver" is not a Host serve answers to
SETTINGS = {"imgsz": 96, "device": "cpu", "batch": 4, "conf_floor": 0.01, "iou": 0.6, "max_det": 100}


@pytest.fixture(scope="session", autouse=True)
def _isolated_env():
    """No test may reach a real tracking server or Label Studio named in the caller's env."""
    with pytest.MonkeyPatch.context() as mp:
        for key in ("MLFLOW_TRACKING_URI", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"):
            mp.delenv(key, raising=False)
        mp.delenv("ACORN_SERVE_TOKEN", raising=False)
        mp.delenv("ACORN_SERVE_BASIC_AUTH", raising=False)
        yield


def register_version(root: Path, weights: Path, map50: float) -> int:
    from acorn.model.registry import register, tracking_uri

    # mlflow.set_tracking_uri (inside register) also exports MLFLOW_TRACKING_URI, which would
    # point every later tracking_uri(root) at this store: setenv here so that it is undone after
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", tracking_uri(root))
        return register(weights, {"map50": map50}, MODEL, "map50", SETTINGS, root=root).version


def noise_image(path: Path, width: int, height: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path, quality=95)
    return path


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> Path:
    return save_detector(tmp_path_factory.mktemp("weights") / "toy.pt", bias=1.0)


@pytest.fixture(scope="session")
def registry_root(tmp_path_factory, weights) -> Path:
    """An MLflow store (mlflow.db + mlartifacts) whose champion is version 1 of the toy detector."""
    root = tmp_path_factory.mktemp("registry")
    register_version(root, weights, 0.1)
    return root


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """Images the tasks point at: two of one size and one of another, plus a few bad files."""
    root = tmp_path_factory.mktemp("data")
    (root / "tiles").mkdir()
    noise_image(root / "tiles" / "a.jpg", 96, 80, seed=1)
    noise_image(root / "tiles" / "b.jpg", 96, 80, seed=2)
    noise_image(root / "tiles" / "c.png", 64, 64, seed=3)
    (root / "tiles" / "text.jpg").write_bytes(b"this is not an image\n" * 10)
    return root


@pytest.fixture(scope="session")
def champion(registry_root) -> Champion:
    """One loaded champion shared by every app built with :func:`config_for` (loading costs ~1.5 s)."""
    from acorn.model.registry import tracking_uri

    shared = Champion(MODEL, tracking_uri(registry_root), refresh_s=3600)
    shared.start()
    shared.current(timeout=120)
    yield shared
    shared.stop()


@pytest.fixture
def config_for(registry_root, data_root):
    def make(**overrides) -> ServeConfig:
        return ServeConfig(
            **(
                {"model_name": MODEL, "threshold": 0.25, "root": registry_root, "data_root": data_root}
                | overrides
            )
        )

    return make


@pytest.fixture(scope="session")
def toy_store():
    """Register versions in a fresh store (for tests that move the alias)."""

    class Store:
        register_version = staticmethod(register_version)

    return Store


@pytest.fixture
def client_for(champion, config_for):
    """TestClients for apps that share the loaded session champion (no per-test model load)."""
    from fastapi.testclient import TestClient

    from acorn.serve.app import create_app

    open_clients: list[TestClient] = []

    def make(**overrides) -> TestClient:
        client = TestClient(create_app(config_for(**overrides), champion=champion), base_url=LOCAL)
        open_clients.append(client.__enter__())
        return client

    yield make
    for client in open_clients:
        client.__exit__(None, None, None)


def start_serve(root: Path, args: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """``acorn serve --port 0`` in ``root``; its URL, read from its log."""
    command = Path(sys.executable).parent / "acorn"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(command), "serve", "--port", "0", *args],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_text())
        if found:
            return proc, found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    stop(proc)
    raise AssertionError(f"acorn serve did not start:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """Stop the serve process this test started, by its process group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def clean_env() -> dict[str, str]:
    """The caller's environment without a tracking server, Label Studio or serve credentials."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LABEL_STUDIO_", "ACORN_SERVE"))
    }
