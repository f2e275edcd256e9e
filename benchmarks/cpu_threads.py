"""CPU threads for prediction and training: torch threads = 1 vs every usable core, side by side.

ultralytics caps torch at ``min(8, cpu_count - 1)`` threads when it picks a CPU device
(``select_device``) and sets ``OMP_NUM_THREADS=1`` at import: on a 2-core machine that is one
thread, half the machine. This runs acorn's own code paths on CPU with each thread count:

- ``predict``: ``Detector.predict(fixed_batch=True)`` over ``--tiles`` tiles as the predict stage
  runs it (decoding included, the detector's load and warm-up excluded), params.yaml's imgsz and
  batch, ``models/base.pt`` (an untrained yolov8n when it is missing).
- ``train``: ``training.train`` for ``--epochs`` on ``--train-tiles`` labeled tiles, the train
  stage's settings (``TrainConfig.from_params``), validation included.

Each (task, threads) run is its own child process, so no thread setting leaks from one to the
next; runs alternate between thread counts (``--repeat`` rounds) and the fastest of each is shown.
The child reports the thread count torch had while working and a hash of its raw results (boxes,
confidences, embeddings; trained weights), so the table also says whether the thread count
changes results bit for bit.

On a machine busy with other CPU work the answer flips: with 2 threads on 2 shared cores one
thread is often descheduled and the other waits for it at every parallel op (measured 4-7x slower
than 1 thread). ``nice`` on the other work does not prevent that where the kernel groups processes
by session (``/proc/sys/kernel/sched_autogroup_enabled``); to measure with the cores mostly yours,
run it in its own session with a raised group priority:
``setsid sh -c 'echo -15 > /proc/self/autogroup; exec python benchmarks/cpu_threads.py'`` (root).

Tiles: synthetic 4K webcam frames from the demo generator, cut with the tile stage's own code and
params.yaml's grid (``benchmarks/predict_floor.source_tiles``): nothing is downloaded.

Usage: ``python benchmarks/cpu_threads.py [--tiles 96] [--train-tiles 48] [--epochs 1]
[--threads 1,N] [--repeat 2]`` (N: the usable cores, ``len(os.sched_getaffinity(0))``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]


def child(task: str, work: Path, threads: int, tiles: int, epochs: int) -> dict:
    """One timed run in this (fresh) process; returns seconds, torch's thread count and a result hash."""
    import numpy as np
    import pandas as pd
    import torch

    from acorn.model import training
    from acorn.model.detection import Detector, DetectorConfig, load_images
    from acorn.params import load_params

    p = load_params(REPO / "params.yaml").with_overrides({"model.device": "cpu", "model.threads": threads})
    manifest = pd.read_parquet(work / "source" / "tiles" / "manifest.parquet")
    tile_dir = work / "source" / "tiles"
    digest = hashlib.sha1()
    if task == "predict":
        rows = manifest.iloc[:tiles]
        detector = Detector(DetectorConfig.from_params(p, work / "weights.pt"))
        start = time.perf_counter()
        for i in range(0, len(rows), 64):  # the predict stage decodes and detects a part at a time
            part = rows.iloc[i : i + 64]
            found = detector.predict(
                load_images([tile_dir / f for f in part["image"]]), list(part["tile_id"]), fixed_batch=True
            )
            digest.update(
                found.boxes[["class_id", "confidence", "x1", "y1", "x2", "y2"]].to_numpy().tobytes()
            )
            digest.update(np.stack(found.tiles["embedding"]).tobytes())
        seconds = time.perf_counter() - start
        seen = torch.get_num_threads()
    else:
        ids = list(manifest["tile_id"].iloc[:tiles])
        data = training.labeled_dataset(
            ids,
            lambda t: (tile_dir / "images" / f"{t}.jpg", tile_dir / "truth" / f"{t}.txt"),
            p.classes,
            0.2,  # a timing: any split
            work / f"data-{os.getpid()}",
        )
        counts: list[int] = []
        start = time.perf_counter()
        weights = training.train(
            work / "weights.pt",
            data,
            training.TrainConfig.from_params(p, epochs=epochs),
            work / f"train-{os.getpid()}",
            on_epoch=lambda _metrics: counts.append(torch.get_num_threads()),
        )
        seconds = time.perf_counter() - start
        seen = counts[-1] if counts else -1
        state = torch.load(weights, map_location="cpu", weights_only=False)["model"].float().state_dict()
        for name in sorted(state):
            digest.update(state[name].numpy().tobytes())
    return {"s": seconds, "threads": seen, "hash": digest.hexdigest()[:12]}


def run(task: str, work: Path, threads: int, args) -> dict:
    cmd = [sys.executable, __file__, "--child", task, "--work", str(work), "--threads", str(threads)]
    cmd += [
        "--tiles",
        str(args.tiles if task == "predict" else args.train_tiles),
        "--epochs",
        str(args.epochs),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, errors="replace", cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{task} with {threads} threads failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    cores = len(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=96, help="tiles predicted")
    parser.add_argument("--train-tiles", type=int, default=48, help="labeled tiles trained on")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", default=f"1,{cores}", help="thread counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; the fastest run of each is shown")
    parser.add_argument("--tasks", default="predict,train")
    parser.add_argument("--child", choices=["predict", "train"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(args.child, args.work, int(args.threads), args.tiles, args.epochs)
        print(json.dumps(result))
        return

    import shutil

    from predict_floor import base_weights, source_tiles

    import acorn  # noqa: F401  (offline settings first)
    from acorn.params import load_params

    counts = [int(t) for t in args.threads.split(",")]
    tasks = args.tasks.split(",")
    p = load_params(REPO / "params.yaml")
    load = os.getloadavg()
    results: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="acorn-bench-threads-") as tmp:
        work = Path(tmp)
        frames = -(-max(args.tiles, args.train_tiles) // (p.tile.rows * p.tile.cols))
        source_tiles(work / "source", frames, p)
        shutil.copyfile(base_weights(None, work), work / "weights.pt")
        for _ in range(args.repeat):
            for task in tasks:
                for n in counts:
                    results.setdefault((task, n), []).append(run(task, work, n, args))
    ultralytics_default = min(8, max(1, (os.cpu_count() or 1) - 1))
    print(
        f"\nCPU, {cores} usable cores (ultralytics alone would use {ultralytics_default} thread(s)); "
        f"imgsz {p.model.imgsz}, predict batch {p.predict.batch}, train batch {p.train.batch}; "
        f"fastest of {args.repeat} run(s) each; load average {load[0]:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at end (other processes on a shared machine slow the runs)\n"
    )
    base = counts[0]
    header = f"{'task':<34} | " + " | ".join(f"{f'{n} thread(s)':>12}" for n in counts)
    header += " | " + " | ".join(f"{f'{base}/{n} ratio':>11}" for n in counts[1:]) + " | same results"
    print(header)
    print("-" * len(header))
    for task in tasks:
        best = {n: min(r["s"] for r in results[(task, n)]) for n in counts}
        seen = {n: {r["threads"] for r in results[(task, n)]} for n in counts}
        hashes = {r["hash"] for n in counts for r in results[(task, n)]}
        what = (
            f"predict {args.tiles} tiles"
            if task == "predict"
            else (f"train {args.epochs} epoch(s), {args.train_tiles} tiles")
        )
        unit = {n: f"{best[n]:.1f} s" for n in counts}
        if task == "predict":
            unit = {n: f"{1000 * best[n] / args.tiles:.0f} ms/tile" for n in counts}
        line = f"{what:<34} | " + " | ".join(f"{unit[n]:>12}" for n in counts)
        line += " | " + " | ".join(f"{best[base] / best[n]:>11.2f}" for n in counts[1:])
        line += f" | {'yes' if len(hashes) == 1 else 'NO'}"
        if len(hashes) > 1:
            line += (
                " ("
                + ", ".join(f"{n}: {' '.join(r['hash'] for r in results[(task, n)])}" for n in counts)
                + ")"
            )
        print(line)
        wrong = {n: s for n, s in seen.items() if s != {n}}
        if wrong:
            print(f"  warning: torch ran with other thread counts than asked: {wrong}")


if __name__ == "__main__":
    main()
