"""The demo on embedded defaults: synthetic data, a base model trained here, the loop with an oracle.

Everything is made locally and deterministically (seeded), so a fresh clone with no internet
runs the whole active-learning loop and shows what each labeled batch bought.

``acorn demo`` also DVC-tracks what the pipeline reads of that data (``demo_inputs``: frames,
test set, replay set) and commits the ``.dvc`` files with the data's stamp, so that a clone
(``git clone`` + ``dvc pull``) and a queued experiment (a copy of the last commit) have the
same inputs without generating anything.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from acorn import paths
from acorn.params import Params
from acorn.runtime.atomic import replace_dir, write_json
from acorn.runtime.entrypoint import run_supervised
from acorn.runtime.errors import AcornError, InputError

log = logging.getLogger("acorn")
STAMP = Path("data/.demo-data.json")


def demo_inputs(p: Params) -> list[Path]:
    """The demo data the pipeline reads (dvc.yaml: tile reads the frames, train the test,
    validation and replay sets), and the test set's whole frames (frame-level scores,
    ``acorn.frames.evaluate``, and ``acorn doctor``'s check for test frames copied from the pool)."""
    replay = Path(p.train.replay_data)
    frames = [Path(p.test.frames)] if p.test.frames else []
    return [paths.RAW, Path(p.test.data), *frames, Path(p.val.data), replay / "images", replay / "labels"]


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True)


def _dvc_file(target: Path) -> Path:
    return target.with_name(target.name + ".dvc")


def make_demo_data(p: Params, root: Path = Path()) -> None:
    """Write data/raw (unlabeled pool with hidden truth), data/testset and data/valset (tiles),
    data/testset-frames (the test set's frames whole, ``test.frames``) and data/source.

    The pool, the test set and the validation set are webcam frames of three seeds (and three name
    prefixes), so no frame is in two of them: the validation set chooses epochs and champions, the
    test set only reports, and neither was ever a paid label.

    Nothing is done when the stamp says the data matches the params and it is all here; when the
    stamp matches but tracked inputs are missing (a clone), they are pulled from DVC instead.
    """
    from acorn.demo.synth import make_closeup_set, make_webcam_set

    d = p.demo
    wanted = {
        "demo": d.model_dump(exclude={"base_epochs", "base_patience", "cycles"}),
        "tile": p.tile.model_dump(),
        "classes": p.classes,
        "replay": [p.train.replay_data, p.train.replay_images],
    }
    stamp = root / STAMP
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        needed = demo_inputs(p) + ([] if (root / p.model.base).exists() else [paths.SOURCE])
        missing = [t for t in needed if not (root / t).exists()]
        if not missing:
            log.info("demo data already matches params (%s); nothing to do", STAMP)
            return
        if all((root / _dvc_file(t)).exists() for t in missing):
            from acorn.model.training import fetch_missing

            try:
                fetch_missing(missing, root, what="demo data")
                log.info("demo data pulled from DVC: %s", ", ".join(map(str, missing)))
                return
            except InputError as exc:
                log.warning("%s", exc)
        log.info("demo data missing (%s): generating it again", ", ".join(map(str, missing)))
    (root / paths.WORK).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root / paths.WORK, prefix="demo-") as tmp:
        work = Path(tmp)
        log.info("webcam pool: %d frames of %dx%d", d.frames, d.width, d.height)
        make_webcam_set(work / "raw", d.frames, d.width, d.height, seed=d.seed, prefix="frame")
        held_out = (("testset", "test", d.test_frames, 10_000), ("valset", "val", d.val_frames, 30_000))
        for name, prefix, frames, offset in held_out:
            log.info("webcam %s: %d held-out frames, tiled", name, frames)
            _tiled_set(p, work / name, prefix, frames, seed=d.seed + offset)
        log.info("close-up source set: %d images", d.source_images)
        make_closeup_set(work / "source", d.source_images, seed=d.seed + 20_000, prefix="closeup")
        _replay_subset(work / "source", work / "replay", count=p.train.replay_images)
        targets = (
            ("raw", paths.RAW),
            ("testset", Path(p.test.data)),
            *((("testset-frames", Path(p.test.frames)),) if p.test.frames else ()),
            ("valset", Path(p.val.data)),
            ("source", paths.SOURCE),
            ("replay/images", Path(p.train.replay_data) / "images"),
            ("replay/labels", Path(p.train.replay_data) / "labels"),
        )
        for name, target in targets:  # replay's own folder holds a README kept in git
            (root / target).parent.mkdir(parents=True, exist_ok=True)
            replace_dir(work / name, root / target)
    write_json(stamp, wanted)


def _tiled_set(p: Params, out: Path, prefix: str, frames: int, seed: int) -> None:
    """``frames`` webcam frames of their own (``seed``; names start with ``prefix``), tiled into the
    YOLO folder ``out`` (images/, labels/, classes.txt): the test set, the validation set."""
    from acorn.data.tiling import TileGrid, tile_dataset
    from acorn.demo.synth import make_webcam_set

    d, frames_dir, tiles_dir = p.demo, out.with_name(f"{out.name}-frames"), out.with_name(f"{out.name}-tiles")
    make_webcam_set(frames_dir, frames, d.width, d.height, seed=seed, prefix=prefix)
    grid = TileGrid(p.tile.rows, p.tile.cols, p.tile.overlap)
    tile_dataset(frames_dir, tiles_dir, grid, p.classes, p.tile.min_visibility, workers=p.tile.workers)
    out.mkdir()
    shutil.move(tiles_dir / "images", out / "images")
    shutil.move(tiles_dir / "truth", out / "labels")
    (out / "classes.txt").write_text("\n".join(p.classes) + "\n")


def track_demo_inputs(p: Params, root: Path = Path()) -> bool:
    """``dvc add`` the demo's inputs and, in a git work tree, commit their ``.dvc`` files and the
    data's stamp (only those paths). Returns whether a commit was made; nothing outside DVC."""
    if not (root / ".dvc").is_dir():
        return False
    targets = demo_inputs(p)
    added = _dvc(root, "add", "--quiet", *map(str, targets))
    if added.returncode != 0:
        raise AcornError(f"dvc add {' '.join(map(str, targets))} failed: {added.stderr.strip()[-1000:]}")
    if not _in_git_work_tree(root):
        return False
    files = [_dvc_file(t) for t in targets] + [STAMP]
    files += sorted({t.parent / ".gitignore" for t in targets if (root / t.parent / ".gitignore").exists()})
    names = [str(f) for f in files]
    subprocess.run(["git", "add", "-f", "--", *names], cwd=root, check=True)
    unchanged = subprocess.run(["git", "diff", "--cached", "--quiet", "--", *names], cwd=root)
    if unchanged.returncode == 0:
        return False
    d = p.demo
    message = (
        f"demo data: {d.frames} frames, {d.test_frames} test frames, {d.val_frames} validation frames, "
        "replay set (DVC-tracked: "
        "`dvc pull` gets them)"
    )
    subprocess.run(["git", "commit", "-q", "-m", message, "--", *names], cwd=root, check=True)
    return True


def _replay_subset(source: Path, out: Path, count: int) -> None:
    """The first ``count`` close-ups (images + labels), replayed in every fine-tune."""
    for sub in ("images", "labels"):
        (out / sub).mkdir(parents=True)
    for image in sorted((source / "images").glob("*.jpg"))[:count]:
        shutil.copy2(image, out / "images" / image.name)
        shutil.copy2(source / "labels" / f"{image.stem}.txt", out / "labels" / f"{image.stem}.txt")


def run_demo(p: Params, root: Path = Path(), cycles: int | None = None) -> list[dict]:
    """Cycle 0 evaluates the base model; each later cycle labels one batch with the oracle."""
    from rich.console import Console
    from rich.table import Table

    from acorn.demo.base_model import train_base_model
    from acorn.labeling.backends import oracle_backend
    from acorn.ops.cycle_commit import commit_cycle

    make_demo_data(p, root)
    track_demo_inputs(p, root)
    if not (root / p.model.base).exists():
        train_base_model(p, root)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    # labeling.noise (`acorn demo --noise`): the oracle's answers carry errors, recorded beside its state
    oracle = oracle_backend(p, root)
    commits = _in_git_work_tree(root)
    rows = []
    for cycle in range((cycles if cycles is not None else p.demo.cycles) + 1):
        if cycle:
            log.info("oracle labeled %d tiles", oracle.annotate())
            reviewed = oracle.answer_reviews()  # last cycle's suspect labels (acorn.labeling.review)
            log.info(
                "oracle reviewed %d suspect labels: %d corrected",
                sum(reviewed.values()),
                reviewed["corrected"],
            )
        run_supervised(["dvc", "repro"], cwd=root, env=env)
        if commits:
            commit_cycle(root, p.classes[0], if_changed=True)
        metrics = json.loads((root / paths.TRAIN_METRICS).read_text())
        record = json.loads((root / paths.REGISTRY).read_text())
        rows.append({**metrics, "version": record["version"], "champion": record["champion_version"]})
    table = Table(title="acorn demo: what each labeled batch bought (test set scores)")
    columns = (
        "cycle",
        "labeled tiles",
        "with objects",
        "map50",
        "frame map50",
        "map50-95",
        "precision",
        "recall",
    )
    for col in (*columns, "model version", "champion"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["cycle"]),
            str(r["labeled_tiles"]),
            str(r.get("labeled_tiles_with_objects", "")),
            f"{r['map50']:.3f}",
            f"{r['frame_map50']:.3f}" if "frame_map50" in r else "",
            f"{r['map50_95']:.3f}",
            f"{r['precision']:.3f}",
            f"{r['recall']:.3f}",
            str(r["version"]),
            str(r["champion"]),
        )
    Console(width=120).print(table)  # not cut to 80 columns when the output is a log file
    return rows


def _in_git_work_tree(root: Path) -> bool:
    """The demo commits each cycle (``acorn commit``) when it runs in a git repository; a machine
    with no git identity gets the demo's own, so the commit cannot fail on it."""
    inside = subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True, text=True
    )
    if inside.returncode != 0:
        return False
    email = subprocess.run(["git", "config", "user.email"], cwd=root, capture_output=True, text=True)
    if not email.stdout.strip():
        for role in ("AUTHOR", "COMMITTER"):
            os.environ.setdefault(f"GIT_{role}_NAME", "acorn demo")
            os.environ.setdefault(f"GIT_{role}_EMAIL", "acorn-demo@localhost")
    return True
