"""Ray Data engine vs the local engine on one machine, and what a 300,000-tile sweep costs per GPU.

Measured (each stage run a child process, cold prediction cache, same tiles and model):

- ``local``: ``python stages/predict.py`` with ``predict.engine: local``.
- ``ray``: the same with ``predict.engine: ray`` and no ``RAY_ADDRESS``: the stage starts a Ray
  instance on this machine (one actor per CPU), so Ray's start and the actors' model loading are
  in the figure, as they are in a real run.
- per-tile CPU work of one actor, in this process: decoding (``load_images``), ultralytics'
  own preprocess / inference / postprocess times (``Results.speed``), the rest of
  ``Detector.predict`` (embedding hook, tables) and the result rows (``tile_rows``).

On a GPU (``--device cuda``, or ``auto`` with one) every figure is measured: the local engine and
Ray with each ``--actors`` count sharing the card, and the minutes a 300,000-tile sweep takes at
each measured rate. Without a GPU it is estimated, not measured: a GPU actor still decodes, letterboxes and
post-processes on its CPU, so an actor's rate is bounded by the CPU work above without the
inference. ``--gpu-ms`` is the assumed GPU forward time per tile (default 1.0 ms: ultralytics'
published YOLOv8n figure on an A100 with TensorRT at 640 px, batch 1; at 320 px and batch 64 it is
lower). Per GPU with k actors sharing it: tiles/s = min(k / cpu_ms, 1 / gpu_ms) * 1000.

Usage: ``python benchmarks/ray_predict.py [--tiles 480] [--weights models/base.pt] [--imgsz N]
[--device auto] [--batch 128] [--actors 1,4,12] [--gpu-ms 1.0]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

import acorn  # noqa: F401  (offline settings first)
from acorn import paths
from acorn.params import load_params

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from predict_floor import base_weights, make_pool, source_tiles, timed_child  # noqa: E402

SWEEP = 300_000


def cpu_breakdown(root: Path, weights: Path, p, tiles: int) -> dict[str, float]:
    """ms per tile of each step of one engine's work, on up to ``tiles`` tiles, in this process."""
    from ultralytics import YOLO

    from acorn.model.detection import Detector, DetectorConfig, load_images
    from acorn.model.predict_cache import tile_rows

    manifest = pd.read_parquet(root / paths.TILE_MANIFEST).head(tiles)
    files = [root / paths.TILES / i for i in manifest["image"]]
    start = time.perf_counter()
    images = load_images(files)
    decode = time.perf_counter() - start
    config = DetectorConfig.from_params(p, weights)
    model = YOLO(str(weights))
    speeds = []
    for i in range(0, len(images), config.batch):
        results = model.predict(
            images[i : i + config.batch],
            imgsz=config.imgsz,
            conf=config.conf_floor,
            iou=config.iou,
            max_det=config.max_det,
            device=config.device,
            verbose=False,
        )
        speeds.append(results[0].speed)  # ms per image, averaged over the batch
    speed = pd.DataFrame(speeds).mean()
    detector = Detector(config)
    ids = manifest["tile_id"].tolist()
    start = time.perf_counter()
    found = detector.predict(images, ids, fixed_batch=True)
    detect = time.perf_counter() - start
    rows = manifest.assign(path=[str(f) for f in files])
    start = time.perf_counter()
    tile_rows(rows, found)
    table = time.perf_counter() - start
    n = len(images)
    detect_ms = 1000 * detect / n
    return {
        "decode": 1000 * decode / n,
        "preprocess": float(speed["preprocess"]),
        "inference": float(speed["inference"]),
        "postprocess": float(speed["postprocess"]),
        "detector rest": max(detect_ms - float(speed[["preprocess", "inference", "postprocess"]].sum()), 0.0),
        "result rows": 1000 * table / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=480)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--imgsz", type=int, default=None, help="default: params.yaml model.imgsz")
    parser.add_argument(
        "--device", default=None, help="default: params.yaml model.device (auto: a GPU if any)"
    )
    parser.add_argument("--batch", type=int, default=None, help="default: params.yaml predict.batch")
    parser.add_argument(
        "--actors", default="0", help="Ray actor counts to run, comma-separated (0: Ray's default)"
    )
    parser.add_argument("--frames", type=int, default=4, help="distinct synthetic frames to repeat")
    parser.add_argument("--gpu-ms", type=float, default=1.0, help="assumed GPU forward ms per tile (no GPU)")
    args = parser.parse_args()

    from acorn.model.detection import resolve_device

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, key, value in (
        ("model", "imgsz", args.imgsz),
        ("model", "device", args.device),
        ("predict", "batch", args.batch),
    ):
        if value is not None:
            params[section][key] = value
    p = load_params(REPO / "params.yaml").with_overrides(
        {
            "model.imgsz": params["model"]["imgsz"],
            "model.device": params["model"]["device"],
            "predict.batch": params["predict"]["batch"],
        }
    )
    device = resolve_device(p.model.device)
    gpu = device.startswith("cuda")
    load = os.getloadavg()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="acorn-bench-ray-") as tmp:
        work = Path(tmp)
        weights = base_weights(args.weights, work)
        source = source_tiles(work / "source", args.frames, p)
        engines = [("local", 0)] + [("ray", int(k)) for k in args.actors.split(",")]
        for engine, actors in engines:
            params["predict"].update({"engine": engine, "ray_actors": actors})
            name = engine if engine == "local" else f"ray x{actors or 'default'}"
            root = make_pool(
                work / name.replace(" ", "-"), source, work / "source" / "tiles", args.tiles, params, weights
            )
            runs[name] = timed_child([sys.executable, str(REPO / "stages" / "predict.py")], root)
        steps = cpu_breakdown(work / "local", weights, p, min(args.tiles, 160))
    import torch

    n = args.tiles
    card = torch.cuda.get_device_name(0) if gpu else "CPU"
    print(
        f"\n{n} tiles, imgsz {p.model.imgsz}, batch {p.predict.batch}, {weights.name}, {device} ({card}); "
        f"{os.cpu_count()} CPUs, load average {load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end\n"
    )
    print(
        f"{'engine':>12} | {'s':>6} | {'tiles/s':>7} | {f'min per {SWEEP:,}':>13} | {'peak RSS MiB (driver)':>21}"
    )
    print("-" * 72)
    for engine, (seconds, rss) in runs.items():
        print(
            f"{engine:>12} | {seconds:>6.1f} | {n / seconds:>7.1f} | {SWEEP / (n / seconds) / 60:>13.1f} | {rss:>21.0f}"
        )
    print(
        f"  (min per {SWEEP:,}: this run's rate, Ray's start and model loading included, times {SWEEP:,} tiles)"
    )
    where = "the GPU" if gpu else f"{torch.get_num_threads()} torch threads"
    print(f"\nper tile in one process (ms; inference on {where}, the rest on one CPU):")
    for name, ms in steps.items():
        print(f"  {name:<14} {ms:7.2f}")
    cpu_ms = sum(ms for name, ms in steps.items() if name != "inference")
    print(f"  {'CPU side':<14} {cpu_ms:7.2f}  (everything but the forward pass: what a GPU actor still does)")
    if gpu:
        return
    print(
        f"\nESTIMATE, not measured: a {SWEEP:,}-tile sweep per GPU, GPU forward assumed {args.gpu_ms} ms/tile"
    )
    print(f"{'actors per GPU':>14} | {'tiles/s per GPU':>15} | {'minutes per GPU':>15}")
    print("-" * 52)
    for k in (1, 2, 4, 8, 16):
        rate = min(k / cpu_ms, 1 / args.gpu_ms) * 1000
        print(f"{k:>14} | {rate:>15.0f} | {SWEEP / rate / 60:>15.1f}")


if __name__ == "__main__":
    main()
