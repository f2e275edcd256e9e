"""The labels' backup: a raw snapshot of everything the labeling backend held, kept as a DVC output.

Labels are hours of human work, and they live in Label Studio's database, outside the
pipeline. Every ``export-labels`` therefore also writes ``data/label-snapshot/``: every task
(its data: the image reference and the queue fields), every annotation (ids, authors, times,
results, cancelled and empty ones too) and every prediction, as the backend returned them.
DVC caches it, so ``dvc push`` backs it up with the data and each cycle's commit pins the
snapshot it was trained from; ``acorn labelstudio restore`` puts it back on a fresh server.

- ``tasks.jsonl``: one JSON object per tile, sorted by tile id, keys sorted.
- ``project.json``: the backend, the project's title and model version, counts.

Nothing in it records when it was taken, so an unchanged project gives the same bytes.
It is a separate output from ``data/labels`` because it also changes when only new tasks
were pushed, which must not re-run train.

The stage also compares the new pull with the previous snapshot before writing anything:
if Label Studio lost tasks that were labeled (a database deleted, a fresh server, another
project behind the same title) it stops and says to restore, instead of exporting a
labels folder that silently lost them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from acorn.atomic import replace_dir, write_json
from acorn.errors import AcornError
from acorn.labeling.base import Snapshot

SNAPSHOT_DIR = Path("data/label-snapshot")
TASKS = "tasks.jsonl"
PROJECT = "project.json"


class LabelsLostError(AcornError):
    """The labeling backend no longer holds labeled tasks that the last snapshot holds."""


def write_snapshot(snapshot: Snapshot, out_dir: str | Path = SNAPSHOT_DIR) -> None:
    """Replace ``out_dir`` with the snapshot (staged beside it, swapped in whole)."""
    out_dir = Path(out_dir)
    staging = out_dir.with_name(f".{out_dir.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    tasks = sorted(snapshot.tasks, key=lambda t: t["tile_id"])
    lines = (json.dumps(t, sort_keys=True, ensure_ascii=False, separators=(",", ":")) for t in tasks)
    (staging / TASKS).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    write_json(staging / PROJECT, snapshot.project)
    replace_dir(staging, out_dir)


def read_snapshot(snapshot_dir: str | Path = SNAPSHOT_DIR) -> Snapshot | None:
    """The snapshot in ``snapshot_dir``, or ``None`` when there is none."""
    snapshot_dir = Path(snapshot_dir)
    tasks_file, project_file = snapshot_dir / TASKS, snapshot_dir / PROJECT
    if not (tasks_file.exists() and project_file.exists()):
        return None
    tasks = []
    with tasks_file.open(encoding="utf-8") as lines:
        for n, line in enumerate(lines, 1):
            try:
                tasks.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise AcornError(
                    f"{tasks_file}:{n}: not a JSON object ({exc}); is the file complete?"
                ) from exc
    return Snapshot(project=json.loads(project_file.read_text(encoding="utf-8")), tasks=tasks)


def check_nothing_lost(
    previous: Snapshot | None, current: Snapshot, snapshot_dir: str | Path = SNAPSHOT_DIR
) -> None:
    """Stop if Label Studio lost labeled tasks since the last snapshot of the same project.

    Only Label Studio is checked: its database holds people's work. The oracle is a simulation
    whose state the demo resets at will. A tile whose annotation a person deleted still has its
    task and passes; a tile whose task is gone does not.
    """
    if previous is None or current.project.get("backend") != "label-studio":
        return
    same = ("backend", "project")
    if any(previous.project.get(k) != current.project.get(k) for k in same):
        return  # another backend or project: a new start, not a loss
    held = {t["tile_id"] for t in current.tasks}
    lost = sorted(previous.labeled_tiles() - held)
    if not lost:
        return
    examples = ", ".join(lost[:5]) + (", ..." if len(lost) > 5 else "")
    raise LabelsLostError(
        f"Label Studio project {current.project.get('project')!r} no longer has {len(lost)} labeled "
        f"tiles that the last snapshot ({Path(snapshot_dir) / TASKS}) holds ({examples}): its database "
        "was lost or replaced? Nothing was written. Put them back with `acorn labelstudio restore` "
        "(then re-run); if they were deleted on purpose, delete the snapshot folder first"
    )
