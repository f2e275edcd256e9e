"""How tiles are stored and tracked, by measurement: one file per tile vs shards, DVC cache types.

For each pool size and each storage layout a throw-away DVC repository is built under ``--work``
(default /work/tmp-bench-storage, outside the project; deleted at the end, also on failure or
SIGTERM) with the pipeline's shape: a ``tile`` stage whose output ``data/tiles`` (``persist:
true``, as in dvc.yaml) holds the tiles and ``manifest.parquet``, and a trivial ``consume`` stage
(``echo``) that depends on ``data/tiles`` as train, predict and report do. Then, each command a
child process timed from start to exit (wall and CPU seconds, CPU from ``os.wait4``):

- ``commit``: ``dvc commit -f tile`` of a freshly written pool: every file hashed and put in the
  cache (what ``dvc repro`` pays after a tile run, or ``dvc add`` of the folder).
- ``status`` / ``no-op repro``: ``dvc status`` and ``dvc repro`` with nothing changed (best of 2).
- ``push``: ``dvc push`` of everything to an empty local remote (a folder on the same disk).
- ``+1 frame``: one new frame (24 tiles) arrives: ``dvc repro tile`` runs the stage, which writes
  only the new tiles (files: 24 new files; shards: one new shard) and DVC commits the folder.
  With a ``hardlink`` cache DVC first "unprotects" a ``persist`` output, i.e. copies every file
  of it out of the cache (dvc/stage/__init__.py ``remove_outs`` -> ``unprotect``), so this is
  where the cache type shows.
- ``push +1``: ``dvc push`` after that frame (the new tiles and the new directory listing).
- ``pull``: ``git clone`` of the repository, then ``dvc pull`` of everything into it (timed: the
  pull).
- ``pull 50``: a fresh clone, then ``dvc pull`` of 50 tiles drawn at random from the pool plus the
  manifest: with one file per tile, the 50 files (a granular pull of files inside the tracked
  folder); with shards, every shard that holds one of them. ``MB`` is what landed in the cache.
- disk: ``du`` of the workspace folder, of the cache, of both together (hard links counted once),
  of the remote and of the full clone (its workspace and cache).

Layouts: ``files`` is what the tile stage writes today (``data/tiles/images/<tile_id>.jpg``);
``shards`` packs whole frames into uncompressed tar files of ~``--shard-tiles`` tiles
(``data/tiles/shards/NNNNN.tar``, the manifest giving each tile's shard, byte offset and size, so
one tile is one seek and read); a tiling run appends new shards and never rewrites one.
Cache types (``--caches``): ``hardlink`` at every size, ``copy`` (DVC's default on ext4, which has
no reflinks) at sizes up to ``--copy-up-to``.

Tiles: ``--frames`` synthetic 4K webcam frames from the demo generator, tiled once by the tile
stage's own code with params.yaml's grid (4 x 6, ~67 KB JPEGs at quality 90); every pool tile is
one of those JPEGs with a few unique bytes appended after its end-of-image marker (still a valid
JPEG, a distinct content hash), so pools are real-sized, all-distinct files for the price of a
copy. ``--tile-bytes small`` makes each source tile a 64 x 54 thumbnail of itself instead (~1.5 KB,
one 4 KiB block on disk): DVC's ``status`` and no-op ``repro`` cost per file (a stat and a state
database lookup), not per byte once hashed, so small tiles measure them at 300,000 files in ~1.5 GB
where real ones need ~40 GB; ``commit`` and ``push`` read and copy every byte, so with small tiles
they are a lower bound. The page cache is warm (files were just written): a cold-disk ``status``
would be slower.

Disk: a size runs only if the free space at ``--work`` is above ~3x its pool (workspace + cache,
the unprotect copy or the clone, the remote) plus ``--reserve-gb``; otherwise it is skipped and
said so. Run it niced on a shared machine::

    nice -n 10 ionice -c3 .venv/bin/python benchmarks/tile_storage.py [--sizes 3000,30000]
        [--layouts files,shards] [--caches copy,hardlink] [--copy-up-to 3000] [--shard-tiles 1000]
        [--frames 4]

``--sizes 3000,30000,300000`` is the target scale (~20 GB per copy of the pool: needs ~70 GB free);
with small tiles it fits in a few GB::

    nice -n 10 ionice -c3 .venv/bin/python benchmarks/tile_storage.py --tile-bytes small \
        --sizes 30000,100000,300000 --layouts files --caches copy --copy-up-to 300000 \
        --steps commit,status,noop,frame

``--steps`` picks what is timed (default: all of ``commit,status,noop,push,frame,push1,pull,pull50``;
``commit`` always runs, the rest need it); a step left out shows ``-``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import acorn  # noqa: F401  (offline settings first)
from acorn.params import load_params

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DVC = str(BIN / "dvc")
GB = 1024**3

# The tile stage of the throw-away repository: frames listed in raw.txt that the manifest does not
# hold yet get their tiles (files: one JPEG each; shards: new tar files of whole frames). Like the
# real stage it only adds what is new and writes files as temp + rename.
MAKE_TILES = r"""
import io, json, os, re, tarfile
import pandas as pd
from pathlib import Path

cfg = json.loads(Path("bench.json").read_text())
src = [Path(cfg["source_dir"], name).read_bytes() for name in cfg["sources"]]
per_frame, layout = cfg["per_frame"], cfg["layout"]
out = Path("data/tiles")
manifest_path = out / "manifest.parquet"
old = pd.read_parquet(manifest_path) if manifest_path.exists() else None
done = set() if old is None else set(old["frame_id"])
new = [f for f in Path("raw.txt").read_text().split() if f not in done]

def tile(frame, k):
    i = int(re.sub(r"\D", "", frame))
    tid = f"{frame}_t{k:02d}"
    # a valid JPEG (bytes after the end-of-image marker are ignored), a distinct content hash
    return tid, src[(i * per_frame + k) % len(src)] + b"\0acorn-bench:" + tid.encode()

rows = []
if layout == "files":
    (out / "images").mkdir(parents=True, exist_ok=True)
    for frame in new:
        for k in range(per_frame):
            tid, data = tile(frame, k)
            path = out / "images" / f"{tid}.jpg"
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            rows.append({"tile_id": tid, "frame_id": frame, "image": f"images/{tid}.jpg"})
else:
    (out / "shards").mkdir(parents=True, exist_ok=True)
    first = len(list((out / "shards").glob("*.tar")))
    step = max(1, round(cfg["shard_tiles"] / per_frame))
    for s, start in enumerate(range(0, len(new), step)):
        path = out / "shards" / f"{first + s:05d}.tar"
        tmp = path.with_name(path.name + ".tmp")
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for frame in new[start : start + step]:
                for k in range(per_frame):
                    tid, data = tile(frame, k)
                    info = tarfile.TarInfo(f"{tid}.jpg")
                    info.size, info.mtime, info.mode = len(data), 0, 0o644
                    tar.addfile(info, io.BytesIO(data))
                    rows.append({"tile_id": tid, "frame_id": frame, "shard": f"shards/{path.name}",
                                 "offset": info.offset_data, "size": len(data)})
        os.replace(tmp, path)
table = pd.DataFrame(rows) if old is None else pd.concat([old, pd.DataFrame(rows)], ignore_index=True)
table.to_parquet(out / "manifest.tmp.parquet", index=False)
os.replace(out / "manifest.tmp.parquet", manifest_path)
"""

DVC_YAML = """stages:
  tile:
    cmd: {python} make_tiles.py
    deps: [raw.txt, make_tiles.py, bench.json]
    outs:
      - data/tiles:
          persist: true
  consume:
    cmd: echo done > consume.txt
    deps: [data/tiles]
    outs:
      - consume.txt:
          cache: false
"""

_current: subprocess.Popen | None = None


def _on_term(signum, _frame):
    raise SystemExit(f"stopped by signal {signum}")


def run(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one child process; its failure stops the benchmark."""
    global _current
    start = time.perf_counter()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}
    _current = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    err = _current.stderr.read()
    _, status, usage = os.wait4(_current.pid, 0)
    _current.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    code, _current = _current.returncode, None
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} (in {cwd}) failed, exit {code}:\n{err.decode()[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def best(cmd: list[str], cwd: Path, times: int = 2) -> tuple[float, float]:
    return min((run(cmd, cwd) for _ in range(times)), key=lambda t: t[0])


def du(*paths: Path) -> float:
    """Disk use in GiB of the paths together (``du -c``: a hard-linked file is counted once)."""
    out = subprocess.run(["du", "-skc", *map(str, paths)], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1].split()[0]) / 1024**2


def source_tiles(work: Path, frames: int, small: bool = False) -> list[Path]:
    """A few synthetic 4K frames tiled by the tile stage's code: the JPEGs every pool repeats
    (``small``: a 64 x 54 thumbnail of each, ~1.5 KB)."""
    from acorn.data.tiling import TileGrid, tile_dataset
    from acorn.demo.synth import make_webcam_set

    p = load_params(REPO / "params.yaml")
    make_webcam_set(work / "raw", frames, p.demo.width, p.demo.height, seed=p.demo.seed)
    grid = TileGrid(p.tile.rows, p.tile.cols, p.tile.overlap)
    manifest = tile_dataset(
        work / "raw", work / "tiles", grid, p.classes, jpeg_quality=p.tile.jpeg_quality, workers=1
    )
    tiles = [work / "tiles" / image for image in manifest.sort_values("tile_id")["image"]]
    if not small:
        return tiles
    from PIL import Image

    (work / "small").mkdir()
    for tile in tiles:
        with Image.open(tile) as img:
            img.resize((64, 54)).save(work / "small" / tile.name, format="JPEG", quality=90)
    return [work / "small" / tile.name for tile in tiles]


def measure(base: Path, layout: str, cache: str, n: int, sources: list[Path], per_frame: int, args) -> dict:
    """Build one repository of ``n`` tiles and time every operation on it; delete it after."""
    root, remote = base / "repo", base / "remote"
    for d in (root, remote):
        d.mkdir(parents=True)
    frames = n // per_frame
    (root / "raw.txt").write_text("".join(f"f{i:06d}\n" for i in range(frames)))
    (root / "make_tiles.py").write_text(MAKE_TILES)
    cfg = {
        "source_dir": str(sources[0].parent),
        "sources": [s.name for s in sources],
        "per_frame": per_frame,
        "layout": layout,
        "shard_tiles": args.shard_tiles,
    }
    (root / "bench.json").write_text(json.dumps(cfg, indent=1))
    (root / "dvc.yaml").write_text(DVC_YAML.format(python=sys.executable))
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    run(["git", "init", "-q", "-b", "main"], root)
    run([DVC, "init", "-q"], root)
    for key, value in (
        ("core.analytics", "false"),
        ("core.check_update", "false"),
        ("core.autostage", "true"),
        ("cache.type", cache),
        ("core.remote", "store"),
    ):
        run([DVC, "config", key, value], root)
    run([DVC, "remote", "add", "store", str(remote)], root)
    steps = args.steps
    r: dict = {"layout": layout, "cache": cache, "tiles": n}
    r["write"] = run([sys.executable, "make_tiles.py"], root)
    r["files"] = sum(len(files) for _, _, files in os.walk(root / "data" / "tiles"))
    r["commit"] = run([DVC, "commit", "-f", "-q", "tile"], root)
    run([DVC, "repro", "-q"], root)  # runs consume once
    run([*git, "add", "-A"], root)
    run([*git, "commit", "-q", "-m", "pool"], root)
    if "status" in steps:
        r["status"] = best([DVC, "status", "-q"], root)
    if "noop" in steps:
        r["noop"] = best([DVC, "repro", "-q"], root)
    if "push" in steps:
        r["push"] = run([DVC, "push", "-q"], root)
    if "frame" in steps:
        with (root / "raw.txt").open("a") as f:
            f.write(f"f{frames:06d}\n")
        r["frame"] = run([DVC, "repro", "-q", "tile"], root)
    if "push1" in steps:
        r["push1"] = run([DVC, "push", "-q"], root)
    run([DVC, "repro", "-q"], root)
    run([*git, "add", "-A"], root)
    run([*git, "commit", "-q", "-m", "one more frame"], root)
    tiles, cachedir = root / "data" / "tiles", root / ".dvc" / "cache"
    r["du_ws"], r["du_cache"], r["du_both"] = du(tiles), du(cachedir), du(tiles, cachedir)
    r["du_remote"] = du(remote) if {"push", "push1"} & steps else None
    # the cache type really in use: a hard-linked workspace file has a second link (the cache's)
    one = next(p for p in tiles.rglob("*") if p.is_file() and p.name != "manifest.parquet")
    r["linked"] = one.stat().st_nlink > 1
    if r["linked"] != (cache == "hardlink"):
        raise RuntimeError(f"{one}: {one.stat().st_nlink} links with cache.type {cache}")
    if not {"pull", "pull50"} & steps:
        shutil.rmtree(base)
        return r
    if not {"push", "push1"} & steps:
        run([DVC, "push", "-q"], root)  # the clones pull from the remote
        r["du_remote"] = du(remote)
    # the clones need only the git history and the remote: drop the pool first (disk)
    shutil.rmtree(tiles)
    shutil.rmtree(cachedir)

    clone = base / "clone"
    if "pull" in steps:
        run(["git", "clone", "-q", str(root), str(clone)], base)
        r["pull"] = run([DVC, "pull", "-q"], clone)
        r["du_clone"] = du(clone / "data" / "tiles", clone / ".dvc" / "cache")
        shutil.rmtree(clone)
    if "pull50" not in steps:
        shutil.rmtree(base)
        return r

    run(["git", "clone", "-q", str(root), str(clone)], base)
    # which tiles: a seeded sample of the pool's ids (tile ids are known from raw.txt and the grid)
    ids = [f"f{i:06d}_t{k:02d}" for i in range(frames) for k in range(per_frame)]
    sample = random.Random(0).sample(ids, args.granular)
    if layout == "files":
        targets = [f"data/tiles/images/{t}.jpg" for t in sample]
    else:
        step = max(1, round(args.shard_tiles / per_frame))
        shards = sorted({int(t[1:7]) // step for t in sample})
        targets = [f"data/tiles/shards/{s:05d}.tar" for s in shards]
    targets.append("data/tiles/manifest.parquet")
    r["pull50"] = run([DVC, "pull", "-q", *targets], clone)
    r["pull50_units"] = len(targets) - 1
    r["pull50_mb"] = 1024 * du(clone / ".dvc" / "cache")
    missing = [t for t in targets if not (clone / t).is_file()]
    if missing:
        raise RuntimeError(f"granular pull left out {missing[:3]}")
    shutil.rmtree(base)
    return r


STEPS = ("commit", "status", "noop", "push", "frame", "push1", "pull", "pull50")


def fmt_time(t: tuple[float, float] | None) -> str:
    return "-" if t is None else f"{t[0]:.1f}"


def fmt_gb(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3000,30000", help="pool sizes in tiles, comma-separated")
    parser.add_argument("--layouts", default="files,shards")
    parser.add_argument("--caches", default="copy,hardlink", help="DVC cache.type values to time")
    parser.add_argument(
        "--copy-up-to", type=int, default=3000, help="time cache.type copy only up to this size"
    )
    parser.add_argument("--shard-tiles", type=int, default=1000, help="tiles per shard (whole frames)")
    parser.add_argument("--granular", type=int, default=50, help="tiles in the granular pull")
    parser.add_argument("--frames", type=int, default=4, help="distinct synthetic frames to repeat")
    parser.add_argument("--work", type=Path, default=Path("/work/tmp-bench-storage"))
    parser.add_argument("--reserve-gb", type=float, default=10.0, help="free space left untouched")
    parser.add_argument(
        "--tile-bytes",
        choices=("real", "small"),
        default="real",
        help="real: the demo's ~67 KB tiles; small: ~1.5 KB thumbnails (per-file costs at 300,000 files)",
    )
    parser.add_argument("--steps", default=",".join(STEPS), help=f"what to time, of {','.join(STEPS)}")
    args = parser.parse_args()
    args.steps = set(args.steps.split(",")) | {"commit"}
    if args.steps - set(STEPS):
        parser.error(f"--steps: unknown {sorted(args.steps - set(STEPS))}; known: {', '.join(STEPS)}")
    sizes = sorted(int(s) for s in args.sizes.split(","))
    layouts = args.layouts.split(",")

    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, _on_term)
    work = args.work.resolve()
    if REPO in work.parents or work == REPO:
        raise SystemExit(f"--work {work} is inside the project: pick a folder outside it")
    work.mkdir(parents=True, exist_ok=False)  # never reuse (or delete) a folder this run did not make
    # DVC's state and index databases (else one folder per repository left in /var/tmp/dvc)
    os.environ["DVC_SITE_CACHE_DIR"] = str(work / "site-cache")
    rows, skipped = [], []
    load = os.getloadavg()
    started = time.time()
    try:
        sources = source_tiles(work / "source", args.frames, small=args.tile_bytes == "small")
        per_frame = len(sources) // args.frames
        tile_bytes = sum(s.stat().st_size for s in sources) / len(sources)
        for n in sizes:
            n -= n % per_frame
            pool_gb = n * (tile_bytes + 4096 / 2) / GB  # half a 4 KiB block of slack per file
            for layout in layouts:
                for cache in args.caches.split(","):
                    if cache == "copy" and n > args.copy_up_to:
                        continue
                    free_gb = shutil.disk_usage(work).free / GB
                    need_gb = 3.2 * pool_gb + args.reserve_gb
                    label = f"{layout}/{cache}/{n}"
                    if free_gb < need_gb:
                        skipped.append(f"{label}: needs ~{need_gb:.0f} GB free, {free_gb:.0f} GB free")
                        print(f"skipped {skipped[-1]}", flush=True)
                        continue
                    print(f"{label}: pool ~{pool_gb:.1f} GB, {free_gb:.0f} GB free ...", flush=True)
                    r = measure(work / label.replace("/", "-"), layout, cache, n, sources, per_frame, args)
                    rows.append(r)
                    done = ", ".join(
                        f"{k} {fmt_time(r.get(k))} s" for k in ("commit", "status", "noop", "frame")
                    )
                    print(f"  done: {done}", flush=True)
    finally:
        if _current is not None and _current.poll() is None:
            _current.terminate()
            _current.wait()
        shutil.rmtree(work, ignore_errors=True)
    end_load = os.getloadavg()

    print(
        f"\nDVC tile storage: {os.cpu_count()} CPUs, shared (load average {load[0]:.1f} at start, "
        f"{end_load[0]:.1f} at end; this run at nice {os.nice(0)}), {(time.time() - started) / 60:.0f} min; "
        f"tiles ~{tile_bytes / 1024:.1f} KB JPEG ({args.tile_bytes}; {args.frames}-frame source), shards of "
        f"~{args.shard_tiles} tiles; local remote on the same disk; wall seconds (CPU seconds in the second "
        f"table); steps: {','.join(s for s in STEPS if s in args.steps)}\n"
    )
    cols = [
        ("layout", "layout"),
        ("cache", "cache"),
        ("tiles", "tiles"),
        ("files", "files"),
        ("commit", "commit"),
        ("status", "status"),
        ("no-op repro", "noop"),
        ("push", "push"),
        ("+1 frame repro", "frame"),
        ("push +1", "push1"),
        ("pull (clone)", "pull"),
        ("pull 50", "pull50"),
    ]
    print("| " + " | ".join(c for c, _ in cols) + " | pull 50: units, MB |")
    print("|" + "---|" * (len(cols) + 1))
    for r in rows:
        cells = [str(r[k]) if isinstance(r[k], str) else f"{r[k]:,}" for _, k in cols[:4]]
        cells += [fmt_time(r.get(k)) for _, k in cols[4:]]
        cells.append(f"{r['pull50_units']}, {r['pull50_mb']:.0f}" if "pull50" in r else "-")
        print("| " + " | ".join(cells) + " |")
    print("\nCPU seconds (user + system of the command and its children)\n")
    print("| layout | cache | tiles | " + " | ".join(c for c, _ in cols[4:]) + " |")
    print("|" + "---|" * (len(cols) - 1))
    for r in rows:
        cells = [r["layout"], r["cache"], f"{r['tiles']:,}"]
        cells += ["-" if r.get(k) is None else f"{r[k][1]:.1f}" for _, k in cols[4:]]
        print("| " + " | ".join(cells) + " |")
    print("\nDisk use, GB (du; workspace + cache counts a hard-linked file once)\n")
    print("| layout | cache | tiles | workspace | cache | workspace + cache | remote | full clone |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['layout']} | {r['cache']} | {r['tiles']:,} | {r['du_ws']:.2f} | {r['du_cache']:.2f} | "
            f"{r['du_both']:.2f} | {fmt_gb(r['du_remote'])} | {fmt_gb(r.get('du_clone'))} |"
        )
    for s in skipped:
        print(f"\nskipped {s}")


if __name__ == "__main__":
    main()
