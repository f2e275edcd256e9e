"""What durable writes cost: acorn's atomic writes and folder swaps with fsync, and without.

``acorn.runtime.atomic`` fsyncs every written file before its rename and the folder after it, and a
folder swap fsyncs every file of the new folder before the swap (a power cut then leaves the old
or the complete new output, never an empty one). This times the writes the pipeline makes, each
with fsync as shipped and with ``os.fsync`` and ``syncfs`` made no-ops (what the code did before), and prints
the times and their ratio:

- ``write_json``: one small JSON file (metrics, registry.json), ``--files`` times;
- ``tiles``: one frame's 24 tiles (67 KB each) and 24 truth files as the tile stage writes them
  (``sync=False``), then its one ``sync_folder`` before the manifest; and the same files each
  fsynced (``sync=True``), to show what the bulk path saves;
- ``export-labels``: ``write_labels`` + ``write_snapshot`` of ``--tiles`` labeled tiles (one YOLO
  file per tile, the manifest, problems and report; the snapshot's tasks), what the stage writes.

Runs alternate between the two modes (``--repeat`` rounds) and the median of each is shown. The
folder is a temporary one under ``--dir`` (default: the system's temp folder): give a folder on
the disk the repository lives on, since fsync's cost is the disk's.

Usage: ``python benchmarks/fsync_cost.py [--dir .] [--files 200] [--tiles 150,1000,5000] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from acorn.labeling.base import ANNOTATION_COLUMNS, LABEL_BOX_COLUMNS, Pulled, Snapshot
from acorn.labeling.export import write_labels
from acorn.labeling.snapshot import write_snapshot
from acorn.runtime import atomic
from acorn.runtime.atomic import sync_folder, write_bytes, write_json, write_text


def pulled(n_tiles: int) -> Pulled:
    """``n_tiles`` labeled tiles, one box each, and their snapshot: what a pull of that size returns."""
    ids = [f"frame{i // 24:05d}_r{i % 24 // 6}c{i % 6}" for i in range(n_tiles)]
    annotations = pd.DataFrame(
        [(t, i + 1, "ann@lab.org", "2026-01-01T00:00:00Z", 1, 640, 540) for i, t in enumerate(ids)],
        columns=ANNOTATION_COLUMNS,
    )
    boxes = pd.DataFrame([(t, 0, 10.0, 20.0, 110.0, 220.0) for t in ids], columns=LABEL_BOX_COLUMNS)
    tasks = [
        {
            "tile_id": t,
            "data": {"tile_id": t, "image": f"/data/local-files/?d=data/tiles/images/{t}.jpg"},
            "predictions": [],
            "annotations": [{"id": i + 1, "was_cancelled": False, "result": [{"id": "r"}]}],
        }
        for i, t in enumerate(ids)
    ]
    snapshot = Snapshot(project={"backend": "label-studio", "project": "acorn"}, tasks=tasks)
    return Pulled(annotations=annotations, boxes=boxes, snapshot=snapshot)


def timed(work: Callable[[], None], durable: bool) -> float:
    """Seconds ``work`` takes, with fsync and syncfs as shipped or made no-ops."""
    real_fsync, real_syncfs = os.fsync, atomic._syncfs
    if not durable:
        os.fsync, atomic._syncfs = (lambda fd: None), (lambda path: True)
    try:
        start = time.perf_counter()
        work()
        return time.perf_counter() - start
    finally:
        os.fsync, atomic._syncfs = real_fsync, real_syncfs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="where to write (the disk that matters)")
    parser.add_argument("--files", type=int, default=200, help="small JSON files per write_json run")
    parser.add_argument("--tiles", default="150,1000,5000", help="labeled tiles per export run")
    parser.add_argument("--repeat", type=int, default=5, help="rounds per mode (median shown)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="fsync-cost-") as tmp:
        root = Path(tmp)

        def small_files() -> None:
            for i in range(args.files):
                write_json(root / "json" / f"{i}.json", {"i": i})

        cases: list[tuple[str, Callable[[], None]]] = [(f"write_json x{args.files}", small_files)]
        jpeg = os.urandom(67_000)

        def frame(sync: bool) -> None:
            for i in range(24):
                write_bytes(root / "tiles" / "images" / f"t{i}.jpg", jpeg, sync=sync)
                write_text(root / "tiles" / "truth" / f"t{i}.txt", "0 0.5 0.5 0.1 0.1\n", sync=sync)
            if not sync:
                sync_folder(root / "tiles")

        cases.append(("tiles of 1 frame, as shipped", lambda: frame(sync=False)))
        cases.append(("tiles of 1 frame, each synced", lambda: frame(sync=True)))
        for n in (int(x) for x in args.tiles.split(",")):
            data = pulled(n)

            def export(data: Pulled = data) -> None:
                write_snapshot(data.snapshot, root / "label-snapshot")
                write_labels(data, root / "labels", n_classes=1)

            cases.append((f"export-labels, {n} tiles", export))
        print(f"folder: {root} ({args.repeat} rounds per mode, median)")
        print(f"{'write':<32} {'no fsync':>10} {'fsync':>10} {'ratio':>7}")
        for name, work in cases:
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.repeat):
                for durable in (False, True):
                    times[durable].append(timed(work, durable))
            before, after = statistics.median(times[False]), statistics.median(times[True])
            print(f"{name:<32} {before * 1000:>8.1f}ms {after * 1000:>8.1f}ms {after / before:>6.1f}x")


if __name__ == "__main__":
    main()
