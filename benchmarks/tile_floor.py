"""The tile stage against its decode + encode floor: new frames arriving in a pool already tiled.

For each pool size (``--tiles``, tiles already there) and each batch of new frames
(``--new-frames``; 400 is a day of a webcam that keeps one frame every ~3.5 minutes, past 48 the
generated frames repeat under new names), a generated repository (benchmarks/cycle_cost.py's ``make_raw_pool``: data/raw
of hard-linked synthetic 4K frames, data/tiles as the tile stage left it, and the frame-hash cache
as the previous run left it) gets the new frames, then, alternately, ``--repeat`` times each:

- ``stage``: ``python stages/tile.py`` as DVC runs it (a child process timed from start to exit,
  imports included), with ``tile.workers: 0`` (one process per core). It lists and stats every raw
  frame, reads only the new ones to hash them, tiles them (tiles, truth files, atomic writes),
  joins metadata.csv and writes the manifest. Between repeats the repository is put back as it was
  before the new frames were tiled (manifest, metadata, hash cache, the new tiles removed).
- ``floor``: benchmarks/cycle_cost.py's ``TILE_FLOOR`` on the same new frames: a fresh process
  that decodes each frame with PIL and JPEG-encodes its tiles (same grid and quality, as many
  processes as cores), writing nothing. Its imports (acorn.data.tiling: pandas) count too.

Also timed: the stage with nothing new (its fixed cost at that pool size) and the floor with no
frames (a process start, the imports and a process pool). Each cell is the best of ``--repeat``
(a shared machine: the least disturbed run, by wall time); the ratio is stage / floor of those.
CPU seconds (user + system, the pool's workers included) are less swayed by other load.

Usage: ``python benchmarks/tile_floor.py [--tiles 3000,30000] [--new-frames 12,48,400] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
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
from cycle_cost import TILE_FLOOR, add_frames, make_raw_pool  # noqa: E402
from predict_floor import source_tiles  # noqa: E402

STAGE = REPO / "stages" / "tile.py"
DISTINCT_NEW = 48  # new frames generated (~4 a second); larger batches repeat them under new names


def subset(new: Path, dst: Path, k: int) -> Path:
    """``k`` new frames (hard links of the generated ones, repeated under new names past the
    first ``DISTINCT_NEW``), with their labels and metadata rows."""
    images = sorted((new / "images").glob("*.jpg"))
    for folder in ("images", "labels"):
        (dst / folder).mkdir(parents=True)
    meta = pd.read_csv(new / "metadata.csv", dtype=str, keep_default_na=False).set_index("frame_id")
    rows = []
    for i in range(k):
        image = images[i % len(images)]
        name = image.stem if i < len(images) else f"r{i // len(images):03d}__{image.stem}"
        os.link(image, dst / "images" / f"{name}.jpg")
        os.link(new / "labels" / f"{image.stem}.txt", dst / "labels" / f"{name}.txt")
        rows.append({"frame_id": name, **meta.loc[image.stem].to_dict()})
    pd.DataFrame(rows).to_csv(dst / "metadata.csv", index=False)
    return dst


class Pool:
    """A repository of ``n`` tiles, its state saved so that each timed run starts from it."""

    def __init__(self, root: Path, source: Path, manifest: pd.DataFrame, n: int, params: dict) -> None:
        from acorn.data.tiling import IMAGE_SUFFIXES, frame_hashes

        self.root = root
        self.frames = make_raw_pool(root, source, manifest, n, params)
        self.tiles = len(pd.read_parquet(root / paths.TILE_MANIFEST, columns=["tile_id"]))
        # the hash cache as the previous tile run leaves it (paths as the stage sees them)
        raw = sorted(p for p in (root / paths.RAW / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        cwd = os.getcwd()
        os.chdir(root)
        try:
            frame_hashes([p.relative_to(root) for p in raw], paths.FRAME_HASHES)
        finally:
            os.chdir(cwd)
        self.saved = root / "saved"
        self.saved.mkdir()
        for f in (paths.TILE_MANIFEST, paths.RAW / "metadata.csv", paths.FRAME_HASHES):
            shutil.copy2(root / f, self.saved / f.name)

    def restore(self, added: list[str]) -> None:
        """Back to the pool before ``added`` frames arrived and were tiled."""
        for f in (paths.TILE_MANIFEST, paths.RAW / "metadata.csv", paths.FRAME_HASHES):
            shutil.copy2(self.saved / f.name, self.root / f)
        raw, tiles = self.root / paths.RAW, self.root / paths.TILES
        for stem in added:
            (raw / "images" / f"{stem}.jpg").unlink(missing_ok=True)
            (raw / "labels" / f"{stem}.txt").unlink(missing_ok=True)
            for folder in ("images", "truth"):
                for t in (tiles / folder).glob(f"{stem}_r*"):
                    t.unlink()

    def add(self, new: Path) -> list[Path]:
        """cycle_cost.add_frames: the new frames, labels and metadata rows arrive in data/raw."""
        return add_frames(self.root, new)


def child(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one child process and the processes it waited for (its pool)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed in {cwd}:\n{err.decode()[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def floor(frames: list[Path], p, workers: int, root: Path) -> tuple[float, float]:
    cfg = {
        "rows": p.tile.rows,
        "cols": p.tile.cols,
        "overlap": p.tile.overlap,
        "quality": p.tile.jpeg_quality,
        "workers": workers,
        "frames": [str(f) for f in frames],
    }
    return child([sys.executable, "-c", TILE_FLOOR, json.dumps(cfg)], root)


def stage(root: Path) -> tuple[float, float]:
    return child([sys.executable, str(STAGE)], root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", default="3000,30000", help="pool sizes already tiled, comma-separated")
    parser.add_argument("--new-frames", default="12,48,400", help="batches of new 4K frames, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each (best is kept)")
    parser.add_argument("--frames", type=int, default=4, help="distinct synthetic frames the pool repeats")
    args = parser.parse_args()
    sizes = [int(n) for n in args.tiles.split(",")]
    batches = [int(k) for k in args.new_frames.split(",")]

    p = load_params(REPO / "params.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tile"]["workers"] = 0  # one process per core, as the floor
    workers = os.cpu_count() or 1
    load = os.getloadavg()
    results, fixed = [], []
    with tempfile.TemporaryDirectory(prefix="acorn-bench-tile-", dir=REPO.parent) as tmp:
        work = Path(tmp)
        from acorn.demo.synth import make_webcam_set

        source = work / "source"
        manifest = source_tiles(source, args.frames, p)
        new = work / "new"
        distinct = min(max(batches), DISTINCT_NEW)
        make_webcam_set(new, distinct, p.demo.width, p.demo.height, seed=p.demo.seed + 500, prefix="new")
        for n in sizes:
            print(f"pool of {n:,} tiles ...", file=sys.stderr, flush=True)
            pool = Pool(work / f"pool{n}", source, manifest, n, params)
            noop = min(stage(pool.root) for _ in range(args.repeat))
            start = min(floor([], p, workers, pool.root) for _ in range(args.repeat))
            fixed.append((n, pool.tiles, noop, start))
            for k in batches:
                arriving = subset(new, work / f"new{n}-{k}", k)
                stems = [f.stem for f in (arriving / "images").glob("*.jpg")]
                runs, floors = [], []
                for _ in range(args.repeat):
                    added = pool.add(arriving)
                    runs.append(stage(pool.root))
                    got = len(pd.read_parquet(pool.root / paths.TILE_MANIFEST, columns=["tile_id"]))
                    if got != pool.tiles + k * p.tile.rows * p.tile.cols:
                        raise SystemExit(f"{pool.root}: {pool.tiles} -> {got} tiles after {k} new frames")
                    floors.append(floor(added, p, workers, pool.root))
                    pool.restore(stems)
                results.append((n, pool.tiles, k, runs, floors))
                shutil.rmtree(arriving)
            shutil.rmtree(pool.root)
    end = os.getloadavg()
    print(
        f"\ntile stage vs decode + encode floor: {workers} CPUs, both with {workers} worker processes; "
        f"4K synthetic frames ({p.tile.rows}x{p.tile.cols} tiles, JPEG q{p.tile.jpeg_quality}); best of "
        f"{args.repeat} runs each; load average {load[0]:.1f} at start, {end[0]:.1f} at end (shared machine)\n"
    )
    print(
        "| new frames | pool tiles already tiled | stage s | floor s | stage / floor | stage CPU s | floor CPU s "
        "| CPU stage / floor | stage runs s | floor runs s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for _n, tiles, k, runs, floors in results:
        s, f = min(runs), min(floors)
        print(
            f"| {k} | {tiles:,} | {s[0]:.2f} | {f[0]:.2f} | **{s[0] / f[0]:.2f}** | {s[1]:.2f} | {f[1]:.2f} | "
            f"{s[1] / f[1]:.2f} | {', '.join(f'{r[0]:.2f}' for r in runs)} | "
            f"{', '.join(f'{r[0]:.2f}' for r in floors)} |"
        )
    print("\nfixed costs: the stage with nothing new, the floor with no frames (process, imports, pool)\n")
    print("| pool tiles | stage, nothing new: s (CPU s) | floor, no frames: s (CPU s) |")
    print("|---:|---:|---:|")
    for _n, tiles, noop, start in fixed:
        print(f"| {tiles:,} | {noop[0]:.2f} ({noop[1]:.2f}) | {start[0]:.2f} ({start[1]:.2f}) |")


if __name__ == "__main__":
    main()
