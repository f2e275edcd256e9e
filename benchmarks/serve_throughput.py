"""Pre-annotation throughput: one task per request (the tutorial's backend) vs acorn serve's batch vs predict.

All three paths run the same registered model on the same tiles in one run:

- ``per-task HTTP``: one ``/predict`` request per task, one image at a time, over real HTTP to a
  uvicorn server on 127.0.0.1 (what the Label Studio tutorial backend does per task);
- ``batched HTTP``: one ``/predict`` request holding every task (what ``acorn serve`` is built for);
- ``predict stage``: ``Detector.predict`` in-process on the same tiles, no HTTP (the floor).

The server runs in this process (a uvicorn thread) and is idle while the in-process path runs.
Usage: ``python benchmarks/serve_throughput.py --tiles 48 [--weights models/base.pt] [--threshold 0.05]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx

import acorn  # noqa: F401  (offline settings first)
from acorn.model.detection import detector_settings
from acorn.params import load_params

MODEL_NAME = "bench-detector"


def make_tiles(work: Path, n_tiles: int, p) -> list[Path]:
    """Synthetic 4K webcam frames cut with the pipeline's grid: the tiles the predict stage sees."""
    from acorn.data.tiling import TileGrid, tile_dataset
    from acorn.demo.synth import make_webcam_set

    per_frame = p.tile.rows * p.tile.cols
    frames = -(-n_tiles // per_frame)
    make_webcam_set(work / "raw", frames, p.demo.width, p.demo.height, seed=p.demo.seed)
    grid = TileGrid(p.tile.rows, p.tile.cols, p.tile.overlap)
    manifest = tile_dataset(work / "raw", work / "tiles", grid, p.classes, workers=1)
    return [work / "tiles" / image for image in manifest["image"][:n_tiles]]


def base_weights(path: Path | None, work: Path) -> Path:
    """The given weights, else an untrained yolov8n (inference costs the same; boxes are noise)."""
    if path is not None:
        return path
    from ultralytics import YOLO

    out = work / "untrained.pt"
    YOLO("yolov8n.yaml").save(out)
    return out


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=48)
    parser.add_argument("--weights", type=Path, default=None, help="default: an untrained yolov8n")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--threshold", type=float, default=None, help="display threshold (rank.threshold)")
    args = parser.parse_args()

    from acorn.model.detection import load_images
    from acorn.model.registry import register
    from acorn.serve.app import create_app
    from acorn.serve.config import ServeConfig
    from acorn.serve.server import ServerThread

    p = load_params(args.params)
    settings = detector_settings(p)
    threshold = p.rank.threshold if args.threshold is None else args.threshold
    with tempfile.TemporaryDirectory(prefix="acorn-bench-") as tmp:
        work = Path(tmp)
        tiles = make_tiles(work, args.tiles, p)
        weights = base_weights(args.weights, work)
        register(weights, {"map50": 0.0}, MODEL_NAME, "map50", settings, root=work)
        config = ServeConfig(model_name=MODEL_NAME, root=work, data_root=work, threshold=threshold)
        tasks = [
            {"id": i, "data": {"image": f"/data/local-files/?d={t.relative_to(work)}"}}
            for i, t in enumerate(tiles)
        ]
        app = create_app(config)
        with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=600) as http:
            http.post(
                "/predict", json={"tasks": tasks[:1]}
            ).raise_for_status()  # waits for the load; warms up
            per_task_s, per_task = timed(
                lambda: [http.post("/predict", json={"tasks": [t]}).json()["results"][0] for t in tasks]
            )
            batched_s, batched = timed(lambda: http.post("/predict", json={"tasks": tasks}).json()["results"])
            detector = app.state.champion.current(timeout=0).detector
            stage_s, found = timed(lambda: _predict_stage(detector, load_images, tiles))
        tile_size = _size(tiles[0])

    shown = int((found.boxes["confidence"] >= threshold).sum())
    assert sum(len(r["result"]) for r in batched) == shown, "batched HTTP and predict stage disagree"
    assert sum(len(r["result"]) for r in per_task) == shown, "per-task HTTP and predict stage disagree"
    n = len(tiles)
    print(f"{n} tiles of {tile_size}, imgsz {settings['imgsz']}, batch {settings['batch']}")
    print(f"{'path':<16} {'seconds':>8} {'tiles/s':>8} {'vs stage':>9}")
    for name, seconds in (
        ("per-task HTTP", per_task_s),
        ("batched HTTP", batched_s),
        ("predict stage", stage_s),
    ):
        print(f"{name:<16} {seconds:8.2f} {n / seconds:8.1f} {stage_s / seconds:8.2f}x")
    print(
        f"batched HTTP is {per_task_s / batched_s:.2f}x the per-task path; {shown} boxes >= {threshold} on every path"
    )


def _predict_stage(detector, load_images, tiles: list[Path]):
    """What the predict stage does per chunk: decode, then Detector.predict (``batch`` per pass)."""
    import pandas as pd

    from acorn.model.detection import Detections

    parts = []
    for start in range(0, len(tiles), 64):
        chunk = tiles[start : start + 64]
        parts.append(detector.predict(load_images(chunk), [str(t) for t in chunk]))
    return Detections(
        boxes=pd.concat([d.boxes for d in parts], ignore_index=True),
        tiles=pd.concat([d.tiles for d in parts], ignore_index=True),
    )


def _size(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as img:
        return f"{img.width}x{img.height}"


if __name__ == "__main__":
    main()
