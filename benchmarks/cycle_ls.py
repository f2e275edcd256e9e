"""One active-learning cycle as a user runs it: ``dvc repro`` with Label Studio, against pool size.

For each pool size a throw-away repository with the pipeline (this checkout's dvc.yaml, stages/
and acorn/, params.yaml with the overrides below) is built under ``--work``, which is also the
document root of a real Label Studio server started for the run (``LocalServer``: its own data dir,
a free port on 127.0.0.1, the venv at .acorn/labelstudio/venv; stopped by its pid at the end).

Set-up (not timed, run at ``nice 10``): ``data/tiles`` holds ``N`` tile files (hard links of the
tiles of ``--frames`` synthetic 4K frames, repeated under new frame and tile ids with distinct
frame hashes: benchmarks/predict_floor.py's ``make_pool``) and ``manifest.parquet`` with a
``condition`` column (day / dusk / night, 80 / 10 / 10 % of frames); ``data/raw`` the matching
``N / 24`` frames (hard links); ``data/testset`` the demo's test set (``demo.test_frames`` frames,
tiled); ``data/replay`` the demo's replay set (the first ``train.replay_images`` close-ups of the
demo generator); ``models/base.pt`` this checkout's base model. ``dvc commit -f tile`` records
the pool (DVC hashes every file once), then a first ``dvc repro`` (cycle 0: the base model scored
and registered as champion, predict, rank pushing batch 1 to Label Studio; ``dvc repro rank``: the
report stage first runs in the timed repro, after the queue). Batches 2 .. K are
then pushed to the same project directly (stratified seeded draws, the cycle-0 champion's boxes as
pre-annotations; not ranked by a retrained model: that would cost a full cycle each) and the
simulated annotator (acorn.labeling.labelstudio.annotator.simulate_annotations, answers from the synthetic
truth through the API) labels ``--labeled`` tasks. The prediction cache is emptied (carry-over
kept): the timed predict is the worst case, every candidate predicted by the new champion.

Timed (normal priority): ``dvc repro`` from its start to the moment the rank stage has pushed the
next batch to Label Studio (DVC's "Running stage 'report'" line); the report stage, which runs
after, is shown apart. Per stage: the DVC segment (from its "Running stage" line to the next, so
DVC's own hashing and lock writing are inside), the stage process's life, its CPU seconds (user +
system, all threads: what a busy shared machine does not inflate) and its peak RSS (VmHWM, sampled
every 0.25 s from /proc), DVC's own CPU seconds and peak RSS. Before the first
stage DVC checks the tile stage (the hash of data/tiles, i.e. a stat of every tile). Afterwards the
new batch is read back from Label Studio (tasks of batch K + 1, with pre-annotations), and a
no-op ``dvc status`` is timed.

Usage (one command; heavy set-up niced, the timed repro not)::

    .venv/bin/python benchmarks/cycle_ls.py [--tiles 3000,300000] [--labeled 150] [--epochs 8]
        [--replay 100] [--candidates 1500] [--imgsz 320] [--test-frames 100] [--work DIR]

Defaults are the demo's (params.yaml: train.epochs, train.replay_images, rank.budget,
demo.test_frames, model.imgsz). Disk: hard links only (the DVC cache holds the few distinct tile
contents); the work folder is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import acorn  # noqa: F401  (offline settings first)
from acorn import paths
from acorn.params import load_params

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "benchmarks"))
from cycle_cost import conditioned_pool, link_tree  # noqa: E402
from predict_floor import base_weights, source_tiles  # noqa: E402

CYCLE = ("export-labels", "train", "register", "predict", "rank")
CLK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def remove(folder: Path) -> None:
    """``rm -rf``: shutil.rmtree took >20 min for 300,000 hard links here (rm: under a minute)."""
    subprocess.run(["rm", "-rf", "--", str(folder)], check=False)


def niced() -> None:
    os.setpriority(os.PRIO_PROCESS, 0, 10)


def normal() -> None:
    os.setpriority(os.PRIO_PROCESS, 0, 0)  # needs CAP_SYS_NICE when the parent is niced


def run(cmd: list[str], cwd: Path, env: dict, nice: bool = True, log_file: Path | None = None) -> float:
    start = time.perf_counter()
    with open(log_file or os.devnull, "a") as out:
        done = subprocess.run(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=niced if nice else normal
        )
    if done.returncode != 0:
        tail = log_file.read_text()[-3000:] if log_file else ""
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{tail}")
    return time.perf_counter() - start


# -- shared inputs: source tiles, the demo's test set and replay set ------------------------------


def make_inputs(work: Path, p, test_frames: int, replay: int) -> tuple[Path, pd.DataFrame]:
    from acorn.data.tiling import TileGrid, tile_dataset
    from acorn.demo.synth import make_closeup_set, make_webcam_set

    source = work / "source"
    manifest = source_tiles(source, FRAMES, p)
    grid = TileGrid(p.tile.rows, p.tile.cols, p.tile.overlap)
    make_webcam_set(
        work / "testframes",
        test_frames,
        p.demo.width,
        p.demo.height,
        seed=p.demo.seed + 10_000,
        prefix="test",
    )
    tile_dataset(work / "testframes", work / "testtiles", grid, p.classes, p.tile.min_visibility, workers=2)
    test = work / "testset"
    (test / "images").parent.mkdir(parents=True)
    shutil.move(work / "testtiles" / "images", test / "images")
    shutil.move(work / "testtiles" / "truth", test / "labels")
    (test / "classes.txt").write_text("\n".join(p.classes) + "\n")
    shutil.rmtree(work / "testframes")
    shutil.rmtree(work / "testtiles")
    closeups = work / "closeups"
    make_closeup_set(closeups, replay, seed=p.demo.seed + 20_000, prefix="closeup", workers=2)
    for sub in ("images", "labels"):
        (work / "replay" / sub).mkdir(parents=True)
    for image in sorted((closeups / "images").glob("*.jpg"))[:replay]:
        os.link(image, work / "replay" / "images" / image.name)
        os.link(closeups / "labels" / f"{image.stem}.txt", work / "replay" / "labels" / f"{image.stem}.txt")
    return source, manifest


def build_repo(work: Path, n: int, source: Path, manifest: pd.DataFrame, params: dict, weights: Path) -> Path:
    root, pool = conditioned_pool(work / f"repo{n}", n, source, manifest, params, weights)
    raw = root / paths.RAW / "images"
    raw.mkdir(parents=True)
    for fid in pool["frame_id"].unique():
        os.link(source / "raw" / "images" / f"{fid.split('__', 1)[1]}.jpg", raw / f"{fid}.jpg")
    frames = pool.drop_duplicates("frame_id")[["frame_id", "condition"]]
    frames.to_csv(root / paths.RAW / "metadata.csv", index=False)
    for name in ("testset", "replay"):
        for sub in ("images", "labels"):
            link_tree(work / name / sub, root / "data" / name / sub)
    shutil.copyfile(work / "testset" / "classes.txt", root / "data" / "testset" / "classes.txt")
    shutil.copyfile(REPO / "dvc.yaml", root / "dvc.yaml")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "stages", root / "stages", ignore=ignore)
    shutil.copytree(REPO / "acorn", root / "acorn", ignore=ignore)
    (root / ".gitignore").write_text("/.acorn\n/.env\n/mlflow.db\n/mlruns\n/dvc-*.log\n")
    return root


# -- the timed repro: DVC's output lines and the stage processes, watched -------------------------


class Watcher(threading.Thread):
    """Every 0.25 s: each stage process (``stages/<name>.py`` run in ``root``) and the DVC process:
    peak RSS (VmHWM), start (from /proc/<pid>/stat) and last time seen."""

    def __init__(self, root: Path, dvc_pid: int) -> None:
        super().__init__(daemon=True)
        self.root, self.dvc_pid = str(root), dvc_pid
        self.procs: dict[int, dict] = {}
        self.stop = threading.Event()
        with open("/proc/uptime") as f:
            self.boot = time.time() - float(f.read().split()[0])

    def sample(self) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                if pid != self.dvc_pid:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    script = next((c.decode() for c in cmd if c.startswith(b"stages/")), None)
                    if script is None or os.readlink(f"/proc/{pid}/cwd") != self.root:
                        continue
                    name = Path(script).stem.replace("_", "-")
                else:
                    name = "dvc"
                status = Path(f"/proc/{pid}/status").read_text()
                hwm = int(re.search(r"VmHWM:\s+(\d+)", status)[1]) / 1024
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                if pid not in self.procs:
                    self.procs[pid] = {"name": name, "start": self.boot + int(stat[19]) / CLK, "rss": 0.0}
                rec = self.procs[pid]
                rec["rss"], rec["last"] = max(rec["rss"], hwm), time.time()
                rec["cpu"] = (int(stat[11]) + int(stat[12])) / CLK  # user + system, all its threads
            except (OSError, TypeError, IndexError, ValueError):
                continue

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            time.sleep(0.25)

    def by_stage(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for rec in self.procs.values():
            cur = out.setdefault(
                rec["name"], {"rss": 0.0, "start": rec["start"], "last": rec["last"], "cpu": 0.0}
            )
            cur["rss"], cur["cpu"] = max(cur["rss"], rec["rss"]), cur["cpu"] + rec.get("cpu", 0.0)
            cur["start"], cur["last"] = min(cur["start"], rec["start"]), max(cur["last"], rec["last"])
        return out


def timed_repro(root: Path, env: dict, log_file: Path) -> dict:
    """``dvc repro`` at normal priority: each line of its output time-stamped, stages watched."""
    marks: list[tuple[float, str]] = []
    start = time.time()
    proc = subprocess.Popen(
        [str(BIN / "dvc"), "repro"],
        cwd=root,
        env={**env, "PYTHONUNBUFFERED": "1"},  # DVC's "Running stage" lines as they happen
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        preexec_fn=normal,
    )
    watcher = Watcher(root, proc.pid)
    watcher.start()
    with open(log_file, "w") as out:
        for line in proc.stdout:
            now = time.time()
            out.write(f"{now - start:8.2f} {line}")
            found = re.match(r"Running stage '([\w-]+)'", line)
            if found:
                marks.append((now, found[1]))
    rc = proc.wait()
    end = time.time()
    watcher.stop.set()
    watcher.join()
    if rc != 0:
        raise SystemExit(f"dvc repro failed in {root}:\n{log_file.read_text()[-3000:]}")
    segments = {}
    for i, (t, name) in enumerate(marks):
        segments[name] = (t - start, (marks[i + 1][0] if i + 1 < len(marks) else end) - start)
    return {
        "start": start,
        "end": end,
        "first": marks[0][0] - start,
        "segments": segments,
        "procs": watcher.by_stage(),
    }


# -- one pool size ----------------------------------------------------------------------------


def measure(work: Path, n: int, source, manifest, params: dict, weights: Path, server, args, env0) -> dict:
    from acorn.labeling.labelstudio import LabelStudioBackend
    from acorn.labeling.labelstudio.annotator import simulate_annotations
    from acorn.selection.candidates import stratified_order
    from acorn.selection.labeling_queue import queue_scores

    res: dict = {"tiles": n}
    t = time.perf_counter()
    params = json.loads(json.dumps(params))
    params["labeling"]["project"] = f"bench {n}"
    root = build_repo(work, n, source, manifest, params, weights)
    res["build_s"] = time.perf_counter() - t
    # the stages import the repository's copy of acorn/ (the code DVC hashed), not the checkout's
    env = {**env0, "DVC_SITE_CACHE_DIR": str(work / f"dvc-site{n}"), "PYTHONPATH": str(root)}
    logs = work / "logs"
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    run(["git", "init", "-q"], root, env)
    run([str(BIN / "dvc"), "init", "-q"], root, env)
    run(
        [*git, "add", "dvc.yaml", "params.yaml", "stages", "acorn", ".gitignore", ".dvc"],
        root,
        env,
    )
    run([*git, "commit", "-q", "-m", "pipeline"], root, env)
    log(f"{n}: dvc commit -f tile (DVC hashes the pool once)")
    res["commit_s"] = run(
        [str(BIN / "dvc"), "commit", "-f", "tile"], root, env, log_file=logs / f"commit{n}.log"
    )
    log(f"{n}: cycle 0 (dvc repro, niced)")
    res["cycle0_s"] = run([str(BIN / "dvc"), "repro", "rank"], root, env, log_file=logs / f"cycle0-{n}.log")

    # batches 2..K pushed directly, then the simulated annotator labels --labeled tasks
    p = load_params(root / "params.yaml")
    backend = LabelStudioBackend.from_params(
        p,
        root,
        title=p.labeling.project,
        document_root=server.document_root,
        url=env["LABEL_STUDIO_URL"],
        api_key=env["LABEL_STUDIO_API_KEY"],
    )
    pool = pd.read_parquet(root / paths.TILE_MANIFEST)
    boxes = pd.read_parquet(root / paths.PRED_BOXES)
    champion = json.loads((root / paths.REGISTRY).read_text())["champion_model_version"]
    queued = set(pd.read_csv(root / paths.QUEUE)["tile_id"])
    batches = -(-args.labeled // p.rank.budget)
    for b in range(2, batches + 1):
        rest = pool[~pool["tile_id"].isin(queued)]
        picked = stratified_order(rest, p.rank.seed + 100 + b, "condition")[: p.rank.budget]
        rows = rest.set_index("tile_id").loc[picked]
        queue = pd.DataFrame(
            {
                "tile_id": picked,
                "rank": np.arange(1, len(picked) + 1),
                "score": queue_scores(len(picked)),
                "strategy_score": np.linspace(0.9, 0.1, len(picked)),
                "batch": b,
                "image": [str(paths.TILES / i) for i in rows["image"]],
                "width": rows["width"].to_numpy(),
                "height": rows["height"].to_numpy(),
                "model_version": champion,
            }
        )
        backend.push(queue, boxes)
        queued |= set(picked)
    truth = work / f"truth{n}"
    truth.mkdir()
    for tid in queued:
        os.link(source / "tiles" / "truth" / f"{tid.split('__', 1)[1]}.txt", truth / f"{tid}.txt")
    done = simulate_annotations(backend, truth, limit=args.labeled)
    if done.created != args.labeled or done.problems:
        raise SystemExit(f"{n}: annotator made {done.created} annotations: {done.problems}")
    res["labeled"] = done.created
    cache = root / ".acorn" / "cache" / "predict"
    for entry in cache.iterdir() if cache.is_dir() else []:
        if entry.name != "carry-over":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    log(f"{n}: timed dvc repro (normal priority), load average {os.getloadavg()[0]:.1f}")
    res["load_start"] = os.getloadavg()
    res["repro"] = timed_repro(root, env, logs / f"timed-{n}.log")
    res["load_end"] = os.getloadavg()

    tasks = backend._list_tasks(backend.client, backend.project_id(), fields="all")
    new = [t for t in tasks if int((t.data or {}).get("batch", 0)) == batches + 1]
    res["new_tasks"] = len(new)
    res["new_with_pred"] = sum(1 for t in new if t.total_predictions or t.predictions)
    res["annotated"] = sum(1 for t in tasks if t.total_annotations)
    res["train"] = json.loads((root / paths.TRAIN_METRICS).read_text())
    res["registry"] = json.loads((root / paths.REGISTRY).read_text())
    timed_log = (logs / f"timed-{n}.log").read_text(errors="replace")
    found = re.search(r"(\d+) tiles predicted, (\d+) from the cache", timed_log)
    res["predicted"] = f"{found[1]} tiles predicted, {found[2]} from the cache" if found else ""
    res["pulled"] = len(pd.read_csv(root / paths.LABELS / "manifest.csv"))
    (logs / f"result{n}.json").write_text(json.dumps(res, default=str, indent=1))
    res["status_s"] = run(
        [str(BIN / "dvc"), "status"], root, env, nice=False, log_file=logs / f"status{n}.log"
    )
    shutil.copytree(logs, work.parent / f"{work.name}-logs", dirs_exist_ok=True)
    return res


FRAMES = 4


def print_rows(r: dict) -> None:
    n, rep = f"{r['tiles']:,}", r["repro"]
    procs, segs = rep["procs"], rep["segments"]
    print(
        f"| {n} | set-up: `dvc commit -f tile` (the pool hashed once) | {r['commit_s']:.0f} | | | | niced |"
    )
    print(f"| {n} | set-up: cycle 0 `dvc repro rank` | {r['cycle0_s']:.0f} | | | | niced |")
    print(f"| {n} | dvc repro start -> first stage | {rep['first']:.1f} | | | | tile stage checked |")
    for name in (*CYCLE, "report"):
        if name not in segs:
            print(f"| {n} | {name} | not run | | | | |")
            continue
        a, b = segs[name]
        pr = procs.get(name)
        cells = f"{pr['last'] - pr['start']:.1f} | {pr['cpu']:.0f} | {pr['rss']:.0f}" if pr else " | | "
        what = {
            "export-labels": f"{r['pulled']} labeled tiles pulled",
            "predict": r["predicted"],
            "train": f"{r['train'].get('labeled_tiles')} labeled tiles, map50 {r['train'].get('map50', 0):.3f}",
            "register": f"version {r['registry'].get('version')}, champion {r['registry'].get('champion_version')}",
            "rank": f"{r['new_tasks']} new tasks in Label Studio, {r['new_with_pred']} with pre-annotations",
            "report": "runs after the queue is in Label Studio",
        }[name]
        print(f"| {n} | {name} | {b - a:.1f} | {cells} | {what} |")
    total, dvc = segs["rank"][1], procs.get("dvc", {"cpu": 0.0, "rss": 0.0})
    print(
        f"| {n} | **labels in Label Studio -> new queue in Label Studio** | **{total:.0f} s = "
        f"{total / 60:.1f} min** | | {dvc['cpu']:.0f} (dvc itself) | {dvc['rss']:.0f} (dvc) | load average "
        f"{r['load_start'][0]:.1f} at start, {r['load_end'][0]:.1f} at end |"
    )
    print(f"| {n} | whole `dvc repro` (with report) | {rep['end'] - rep['start']:.0f} | | | | |")
    print(f"| {n} | `dvc status` after | {r['status_s']:.1f} | | | | |")
    sys.stdout.flush()


def main() -> None:
    global FRAMES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", default="3000,300000", help="pool sizes, comma-separated")
    parser.add_argument(
        "--labeled", type=int, default=150, help="labels in Label Studio (rank.budget per batch)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="train.epochs (default params.yaml)")
    parser.add_argument("--replay", type=int, default=None, help="train.replay_images (default params.yaml)")
    parser.add_argument("--candidates", type=int, default=1500, help="predict.candidates")
    parser.add_argument("--imgsz", type=int, default=None, help="model.imgsz (default params.yaml)")
    parser.add_argument(
        "--test-frames", type=int, default=None, help="test set frames (default demo.test_frames)"
    )
    parser.add_argument("--frames", type=int, default=4, help="distinct synthetic frames the pool repeats")
    parser.add_argument("--weights", type=Path, default=None, help="default: models/base.pt")
    parser.add_argument("--work", type=Path, default=Path("/work/tmp-bench-cycle-ls"))
    args = parser.parse_args()
    FRAMES = args.frames
    sizes = [int(x) for x in args.tiles.split(",")]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    over = {
        "model.imgsz": args.imgsz or params["model"]["imgsz"],
        "train.epochs": args.epochs or params["train"]["epochs"],
        "train.replay_images": params["train"]["replay_images"] if args.replay is None else args.replay,
        "predict.candidates": args.candidates,
    }
    params["model"].update({"imgsz": over["model.imgsz"], "base": "models/base.pt", "device": "cpu"})
    params["predict"].update({"candidates": args.candidates, "engine": "local"})
    params["rank"]["balance_by"] = "condition"
    params["train"].update(
        {
            "epochs": over["train.epochs"],
            "replay_images": over["train.replay_images"],
            "replay_data": "data/replay",
        }
    )
    params["test"]["data"] = "data/testset"
    p = load_params(REPO / "params.yaml").with_overrides(over)
    test_frames = args.test_frames if args.test_frames is not None else p.demo.test_frames
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    status = ["git", "-C", str(REPO), "status", "--porcelain", "--", "acorn", "stages", "dvc.yaml"]
    dirty = subprocess.run(status, capture_output=True, text=True).stdout.strip()

    from acorn.labeling.labelstudio.server import LocalServer

    work = args.work.resolve()
    if work.exists():
        raise SystemExit(f"{work} exists: delete it or pass another --work")
    (work / "logs").mkdir(parents=True)
    server = LocalServer.scratch(work, REPO / ".acorn" / "labelstudio" / "venv", document_root=work)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = []
    try:
        niced()  # set-up in this process at nice 10; the timed repro resets its own priority
        log("Label Studio server starting")
        server.start(timeout=300)
        conn = server.connection()
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the repo's own sqlite
        env.update(
            {
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                "LABEL_STUDIO_URL": conn.url,
                "LABEL_STUDIO_API_KEY": conn.api_key,
                "DVC_NO_ANALYTICS": "1",
            }
        )
        params["labeling"].update({"backend": "label-studio", "document_root": str(work)})
        weights = base_weights(args.weights, work)
        log(
            f"inputs: {args.frames} frames, test set of {test_frames} frames, {over['train.replay_images']} close-ups"
        )
        source, manifest = make_inputs(work, p, test_frames, max(over["train.replay_images"], 1))
        print(
            f"\none cycle under `dvc repro`, Label Studio backend (a local server): {args.labeled} labels in "
            f"Label Studio, train {over['train.epochs']} epochs + {over['train.replay_images']} replay images, "
            f"imgsz {over['model.imgsz']}, predict.candidates {args.candidates} (empty prediction cache), "
            f"rank.budget {p.rank.budget}, test set {test_frames} frames ({test_frames * p.tile.rows * p.tile.cols} "
            f"tiles), {weights.name}; code {commit.stdout.strip()}{' + uncommitted changes' if dirty else ''}; "
            f"model.threads {params['model'].get('threads', 'n/a')}; "
            f"{os.cpu_count()} CPUs shared with niced (19) background jobs and other users\n"
        )
        print("| pool tiles | step | DVC segment s | process s | process CPU s | peak RSS MiB | what |")
        print("|---:|---|---:|---:|---:|---:|---|")
        for n in sizes:
            results.append(measure(work, n, source, manifest, params, weights, server, args, env))
            print_rows(results[-1])
            remove(work / f"repo{n}")  # after the rows: 300,000 files
    finally:
        server.stop()
        os.setpriority(os.PRIO_PROCESS, 0, 10)
        remove(work)


if __name__ == "__main__":
    main()
