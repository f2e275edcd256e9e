"""Push, annotate and pull N tasks through a Label Studio server; print tasks/s for each.

A cycle at the scale of the design (a 10,000-tile queue, or 10,000 labeled tiles pulled by
export-labels) must not time out, so push imports in chunks and pull pages through the task
list. This measures both against a real server.

    python benchmarks/labelstudio_throughput.py                 # the server in LABEL_STUDIO_URL / .env
    python benchmarks/labelstudio_throughput.py --own-server    # a throwaway local server (tmp data dir)
    python benchmarks/labelstudio_throughput.py -n 2000 --keep  # keep the benchmark project

It works in a project of its own (``acorn-bench-<time>``), deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from acorn.data.formats import format_yolo  # noqa: E402
from acorn.labeling.labelstudio.annotator import simulate_annotations  # noqa: E402
from acorn.labeling.labelstudio.backend import LabelStudioBackend  # noqa: E402
from acorn.labeling.labelstudio.server import LocalServer  # noqa: E402

W, H = 640, 540


def make_queue(
    n: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    ids = [f"bench_{i:06d}" for i in range(n)]
    queue = pd.DataFrame(
        {
            "tile_id": ids,
            "rank": np.arange(n),
            "score": np.round(1.0 - np.arange(n) / n, 6),
            "strategy_score": rng.uniform(0, 1, n),
            "batch": 1,
            "image": [f"data/tiles/images/{t}.jpg" for t in ids],
            "width": W,
            "height": H,
            "model_version": "bench-1",
        }
    )
    per_tile = rng.integers(0, 4, n)
    tile_col = np.repeat(ids, per_tile)
    m = len(tile_col)
    x1, y1 = rng.uniform(0, W - 60, m), rng.uniform(0, H - 60, m)
    boxes = pd.DataFrame(
        {
            "tile_id": tile_col,
            "class_id": 0,
            "confidence": rng.uniform(0, 1, m),
            "x1": x1,
            "y1": y1,
            "x2": x1 + rng.uniform(5, 60, m),
            "y2": y1 + rng.uniform(5, 60, m),
        }
    )
    truth = {t: g.drop(columns=["tile_id", "confidence"]) for t, g in boxes.groupby("tile_id")}
    return queue, boxes, truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10_000, help="tasks (default 10000)")
    ap.add_argument("--own-server", action="store_true", help="start a throwaway local server")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark project")
    ap.add_argument("--chunk", type=int, default=1000, help="tasks per import request / page")
    ap.add_argument("--workers", type=int, default=8, help="parallel annotation requests")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    queue, boxes, truth = make_queue(args.n, rng)
    with tempfile.TemporaryDirectory(prefix="acorn-ls-bench-") as tmp:
        root = Path(tmp)
        server = None
        options: dict = {"repo_root": root, "storage_path": None, "document_root": root}
        if args.own_server:
            server = LocalServer.scratch(root, REPO / ".acorn" / "labelstudio" / "venv", document_root=root)
            t0 = time.perf_counter()
            server.start()
            print(f"server up at {server.url} in {time.perf_counter() - t0:.1f} s")
            conn = server.connection()
            options.update(url=conn.url, api_key=conn.api_key)
        else:
            options["repo_root"] = REPO
            options["document_root"] = REPO
        try:
            truth_dir = root / "truth"
            truth_dir.mkdir()
            for tid in queue["tile_id"]:
                t = truth.get(tid)
                (truth_dir / f"{tid}.txt").write_text("" if t is None else format_yolo(t, W, H))
            title = f"acorn-bench-{int(time.time())}"
            backend = LabelStudioBackend(
                ["squirrel"], title=title, chunk_size=args.chunk, workers=args.workers, **options
            )
            backend.setup()
            n = args.n
            print(f"{n} tasks, {len(boxes)} predicted boxes, project {title!r} at {backend.connection.url}")

            t0 = time.perf_counter()
            pushed = backend.push(queue, boxes)
            dt = time.perf_counter() - t0
            print(f"push:      {dt:7.1f} s  {n / dt:8.0f} tasks/s  {pushed}")

            t0 = time.perf_counter()
            again = backend.push(queue, boxes)
            dt = time.perf_counter() - t0
            print(f"re-push:   {dt:7.1f} s  {n / dt:8.0f} tasks/s  {again}")

            t0 = time.perf_counter()
            done = simulate_annotations(backend, truth_dir)
            dt = time.perf_counter() - t0
            print(f"annotate:  {dt:7.1f} s  {done.created / dt:8.0f} tasks/s  ({done.created} answered)")

            t0 = time.perf_counter()
            pulled = backend.pull()
            dt = time.perf_counter() - t0
            print(
                f"pull:      {dt:7.1f} s  {len(pulled.annotations) / dt:8.0f} tasks/s  "
                f"({len(pulled.annotations)} annotations, {len(pulled.boxes)} boxes, {len(pulled.problems)} problems)"
            )
            if not args.keep:
                backend.client.projects.delete(backend.project_id())
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
