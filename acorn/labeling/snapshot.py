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

The stage also compares the new pull with the previous snapshot before writing anything
(``check_nothing_lost``): if Label Studio lost labels since (a database deleted or replaced by
an older copy, annotations deleted in bulk, turned into skips or emptied, another project behind
the same title) it stops, names the tiles and says how to restore them, instead of exporting a
labels folder, and a snapshot, that silently lost them. A change of project, and a missing
previous snapshot where this repository has exported before (a clone without
``dvc pull data/label-snapshot``), stop it too: there is nothing to compare with. An explicit
``ACORN_ALLOW_LABEL_LOSS=1`` lets an export through that is meant.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from acorn.labeling.base import Snapshot
from acorn.labeling.export import MANIFEST
from acorn.labeling.labelstudio.convert import latest_finished
from acorn.paths import LABEL_SNAPSHOT as SNAPSHOT_DIR
from acorn.runtime.atomic import replace_dir, write_json
from acorn.runtime.errors import AcornError

TASKS = "tasks.jsonl"
PROJECT = "project.json"


# the override: set it (to 1) for one run to export a loss that is meant; the stage logs what it let through
ALLOW_VAR = "ACORN_ALLOW_LABEL_LOSS"
_SHOWN = 5  # tiles named in a message; the rest are counted


class LabelsLostError(AcornError):
    """The labeling backend no longer holds labels that the last snapshot holds, or there is no
    last snapshot to compare with where there should be one."""


@dataclass(frozen=True)
class LabelLoss:
    """Labeled tiles of the previous snapshot that the new pull lost, by how they were lost."""

    task_gone: list[str] = field(default_factory=list)  # no task for the tile any more
    deleted: list[str] = field(default_factory=list)  # the task is there, its annotations are not
    cancelled: list[str] = field(default_factory=list)  # only skipped (cancelled) annotations left
    emptied: list[str] = field(default_factory=list)  # it had boxes, its annotation now has none

    @property
    def tiles(self) -> list[str]:
        return sorted(self.task_gone + self.deleted + self.cancelled + self.emptied)

    def describe(self) -> str:
        """How the tiles were lost, for the error: ``2 tasks gone (a, b), 1 annotation deleted (c)``."""
        kinds = (
            (self.task_gone, "task gone", "tasks gone"),
            (self.deleted, "annotation deleted", "annotations deleted"),
            (self.cancelled, "annotation turned into a skip", "annotations turned into skips"),
            (
                self.emptied,
                "annotation emptied: it had boxes, now none",
                "annotations emptied: they had boxes, now none",
            ),
        )
        return ", ".join(
            f"{len(tiles)} {one if len(tiles) == 1 else many} ({_names(tiles)})"
            for tiles, one, many in kinds
            if tiles
        )


def label_states(snapshot: Snapshot) -> dict[str, bool]:
    """Labeled tile -> whether its label has regions (boxes), for every tile whose annotation
    counts (``latest_finished``: the newest not cancelled); a tile with an empty one is a
    reviewed negative (``False``)."""
    states = {}
    for task in snapshot.tasks:
        annotation = latest_finished(task.get("annotations", []))
        if annotation is not None:
            states[task["tile_id"]] = bool(annotation.get("result"))
    return states


def find_loss(previous: Snapshot, current: Snapshot) -> LabelLoss:
    """Labeled tiles of ``previous`` that ``current`` no longer has as labels: task gone,
    annotations deleted, only skips left, or boxes gone (a negative that stays a negative, and
    boxes that change, are edits, not losses)."""
    before, now = label_states(previous), label_states(current)
    tasks = {t["tile_id"]: t for t in current.tasks}
    loss: dict[str, list[str]] = {"task_gone": [], "deleted": [], "cancelled": [], "emptied": []}
    for tile, had_boxes in sorted(before.items()):
        if tile in now:
            if had_boxes and not now[tile]:
                loss["emptied"].append(tile)
        elif tile not in tasks:
            loss["task_gone"].append(tile)
        elif tasks[tile].get("annotations"):
            loss["cancelled"].append(tile)
        else:
            loss["deleted"].append(tile)
    return LabelLoss(**loss)


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


def exported_before(
    labels_dir: str | Path, lock_file: str | Path = "dvc.lock", snapshot_dir: str | Path = SNAPSHOT_DIR
) -> str | None:
    """What shows that this repository exported labels before, or ``None`` for a first export:
    a labels manifest that lists tiles (a run outside DVC; ``dvc repro`` removes ``data/labels``
    before the stage runs), or a ``dvc.lock`` that records the snapshot (a clone that did not
    ``dvc pull`` it). A repository with neither has never had labels to lose."""
    manifest = Path(labels_dir) / MANIFEST
    if manifest.exists():
        with manifest.open(encoding="utf-8") as rows:
            if sum(1 for _ in rows) > 1:  # a header and at least one tile
                return f"{manifest} lists labeled tiles"
    lock_file = Path(lock_file)
    if not lock_file.exists():
        return None
    try:
        lock = yaml.safe_load(lock_file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise AcornError(
            f"{lock_file}: not valid YAML ({exc}); `git checkout {lock_file}` restores it"
        ) from exc
    stages = lock.get("stages") if isinstance(lock, dict) else None
    wanted = Path(snapshot_dir).as_posix()
    for stage in (stages or {}).values():
        outs = stage.get("outs") if isinstance(stage, dict) else None
        if any(isinstance(out, dict) and str(out.get("path")) == wanted for out in outs or []):
            return f"{lock_file} records {wanted} (exported here before)"
    return None


def check_nothing_lost(
    previous: Snapshot | None,
    current: Snapshot,
    snapshot_dir: str | Path = SNAPSHOT_DIR,
    *,
    evidence: str | None = None,
    allow: bool = False,
) -> list[str]:
    """Stop the export (``LabelsLostError``) if it would drop labels of people's work; with
    ``allow`` (``ACORN_ALLOW_LABEL_LOSS``), say what it lets through instead (the returned
    lines, for the log). Nothing to say is ``[]``.

    Refused:

    - labeled tiles of the previous Label Studio snapshot of this project that the pull lost
      (``find_loss``): gone, deleted, skipped or emptied;
    - a previous Label Studio snapshot with labels of another project (``labeling.project``
      changed, or another backend): exporting would replace those labels with this one's;
    - no previous snapshot in a repository that exported before (``evidence``, from
      ``exported_before``) when Label Studio is read: a loss could not be seen.

    The oracle is a simulation whose state the demo resets at will: its snapshots protect
    nothing, and a pull from it is checked only against a Label Studio snapshot.
    """
    snapshot_dir = Path(snapshot_dir)
    found = _what_is_lost(previous, current, snapshot_dir, evidence)
    if found is None:
        return []
    what, remedy = found
    if allow:
        return [f"{ALLOW_VAR} is set: exporting although {what}"]
    raise LabelsLostError(
        f"{what}. {remedy}; if the change is meant, re-run with {ALLOW_VAR}=1 (for that run only) and the "
        "labels and the snapshot follow the server. Nothing was written"
    )


def _what_is_lost(
    previous: Snapshot | None, current: Snapshot, snapshot_dir: Path, evidence: str | None
) -> tuple[str, str] | None:
    """What ``check_nothing_lost`` refuses, and how to put it right; ``None`` when nothing is lost."""
    if previous is None:
        if evidence is None or current.project.get("backend") != "label-studio":
            return None
        return (
            f"there is no previous labels snapshot ({snapshot_dir}) to compare Label Studio with, but {evidence}",
            f"Fetch it (`dvc pull {snapshot_dir}` in a clone, else `dvc checkout {snapshot_dir}`) and re-run",
        )
    if previous.project.get("backend") != "label-studio":
        return None
    held = label_states(previous)
    if any(previous.project.get(k) != current.project.get(k) for k in ("backend", "project")):
        if not held:
            return None  # nothing labeled there: a new start loses nothing
        return (
            f"the last snapshot ({snapshot_dir}) holds {len(held)} labeled tiles of Label Studio project "
            f"{previous.project.get('project')!r}, and this export, which reads {_project_name(current)}, "
            "would replace them",
            "If labeling.project (params.yaml) was changed by mistake, set it back",
        )
    loss = find_loss(previous, current)
    if not loss.tiles:
        return None
    return (
        f"Label Studio project {current.project.get('project')!r} no longer has {len(loss.tiles)} labeled tiles "
        f"that the last snapshot ({snapshot_dir / TASKS}) holds: {loss.describe()}",
        "Its database replaced by an older copy, or annotations deleted, skipped or emptied? Put them back "
        "with `acorn labelstudio restore` and re-run",
    )


def _project_name(snapshot: Snapshot) -> str:
    backend = snapshot.project.get("backend")
    if backend == "label-studio":
        return f"Label Studio project {snapshot.project.get('project')!r}"
    return f"the {backend} backend"


def _names(tiles: list[str]) -> str:
    return ", ".join(tiles[:_SHOWN]) + (f", ... {len(tiles) - _SHOWN} more" if len(tiles) > _SHOWN else "")
