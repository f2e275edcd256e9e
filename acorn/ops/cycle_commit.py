"""One commit per labeling cycle, with a message that says what the cycle added and bought.

``git log --oneline`` then reads as the project's labeling history, and ``dvc metrics diff
HEAD~1`` compares two cycles. Only the files a cycle produces are committed (dvc.lock, params,
metrics, the queue, the registry record, cycle reports); anything else the user has staged or
changed is left alone.
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

from acorn import paths
from acorn.runtime.errors import AcornError

log = logging.getLogger("acorn")

# what one `dvc repro` leaves that belongs in the cycle's commit (data itself goes to the DVC remote)
CYCLE_FILES = (
    Path("dvc.lock"),
    Path("params.yaml"),
    paths.TRAIN_METRICS,
    paths.RANK_METRICS,
    paths.QUEUE,
    paths.REGISTRY,
    paths.CYCLE_REPORTS,
)


def summary(before: dict | None, after: dict, record: dict | None, object_name: str) -> str:
    """``cycle 3: +50 labels (12 with squirrels), map50 0.061 -> 0.092, champion v3``."""
    added = after["labeled_tiles"] - (before or {}).get("labeled_tiles", 0)
    positives = after.get("labeled_tiles_with_objects", 0) - (before or {}).get(
        "labeled_tiles_with_objects", 0
    )
    parts = [f"cycle {after['cycle']}: +{added} labels ({positives} with {object_name}s)"]
    if before is None:
        parts = [f"cycle {after['cycle']}: {after['labeled_tiles']} labels"]
    score = f"map50 {after['map50']:.3f}"
    if before is not None:
        score = f"map50 {before['map50']:.3f} -> {after['map50']:.3f}"
    parts.append(score)
    if record:
        parts.append(f"champion v{record['champion_version']}")
    return ", ".join(parts)


def commit_cycle(root: Path, object_name: str, push: bool = False, if_changed: bool = False) -> str | None:
    """Commit the cycle's files with a summary message; ``push`` also runs ``dvc push``.

    ``if_changed``: a cycle that is already committed is skipped (None) instead of an error, so
    a resumed demo does not stop on the cycles it committed before.
    """
    after = _read(root / paths.TRAIN_METRICS)
    if after is None:
        raise AcornError(f"{paths.TRAIN_METRICS}: no cycle to commit; run `dvc repro` first")
    before = _committed_json(root, paths.TRAIN_METRICS)
    message = summary(before, after, _read(root / paths.REGISTRY), object_name)
    files = [str(f) for f in CYCLE_FILES if (root / f).exists()]
    _git(root, "add", "--", *files)
    if not _git(root, "diff", "--cached", "--name-only", "--", *files).strip():
        if if_changed:
            return None
        raise AcornError("nothing new to commit: this cycle's files are already committed")
    _git(root, "commit", "-m", message, "--", *files)
    log.info("committed: %s", message)
    if push:
        subprocess.run(["dvc", "push"], cwd=root, check=True)
    return message


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _committed_json(root: Path, path: Path) -> dict | None:
    proc = subprocess.run(
        ["git", "show", f"HEAD:{path.as_posix()}"], cwd=root, capture_output=True, text=True
    )
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AcornError(f"git {args[0]} failed in {root}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout
