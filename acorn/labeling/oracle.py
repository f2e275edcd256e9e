"""A simulated annotator that labels queued tiles from ground truth.

It stands in for a person in demos, tests and strategy benchmarks. Its state (what was
queued, what was labeled) lives in a folder outside the DVC DAG, exactly as a Label Studio
database would, and labeling happens in a separate step (``acorn annotate``) between two
``dvc repro`` runs, as a person would label between two cycles.

A repository that has the labels' snapshot (``data/label-snapshot``, a DVC output) but no
oracle state (a fresh clone after ``dvc pull``, or a queued experiment, which runs in a copy of
the last commit without the git-ignored ``.acorn/``) starts from the snapshot's answers when it
is given ``snapshot_dir``: so the copy exports the labels the commit was trained on, instead of
none.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from acorn.atomic import write_json
from acorn.formats import read_yolo_labels
from acorn.labeling.base import ANNOTATION_COLUMNS, LABEL_BOX_COLUMNS, Pulled, PushResult, Snapshot

DEFAULT_STATE_DIR = Path(".acorn/oracle")


class OracleBackend:
    def __init__(
        self,
        state_dir: Path = DEFAULT_STATE_DIR,
        truth_dir: Path = Path("data/tiles/truth"),
        snapshot_dir: Path | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.truth_dir = Path(truth_dir)
        self.snapshot_dir = None if snapshot_dir is None else Path(snapshot_dir)

    # state: tasks.json {tile_id: task}, annotations.json {tile_id: annotation}
    def _load(self, name: str) -> dict:
        self._seed()
        path = self.state_dir / name
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def _seed(self) -> None:
        """No state yet (no tasks.json) but an oracle snapshot in ``snapshot_dir``: start from its
        answered tasks (answers already in annotations.json win)."""
        if self.snapshot_dir is None or (self.state_dir / "tasks.json").exists():
            return
        from acorn.labeling.snapshot import read_snapshot

        snapshot = read_snapshot(self.snapshot_dir)
        if snapshot is None or snapshot.project.get("backend") != "oracle" or not snapshot.tasks:
            return
        tasks = {t["tile_id"]: dict(t["data"]) for t in snapshot.tasks}
        answers = {
            t["tile_id"]: _state_annotation(t["annotations"][-1]) for t in snapshot.tasks if t["annotations"]
        }
        path = self.state_dir / "annotations.json"
        answers |= json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        write_json(self.state_dir / "annotations.json", answers)
        write_json(self.state_dir / "tasks.json", tasks)

    def push(
        self, queue: pd.DataFrame, predictions: pd.DataFrame, waiting: pd.DataFrame | None = None
    ) -> PushResult:
        """``waiting`` is accepted for the contract; the oracle shows no pre-annotations to refresh."""
        tasks = self._load("tasks.json")
        result = PushResult()
        n_pred = predictions.groupby("tile_id").size() if not predictions.empty else pd.Series(dtype=int)
        for row in queue.to_dict("records"):
            task = {
                "batch": int(row["batch"]),
                "rank": int(row["rank"]),
                "score": float(row["score"]),
                "image": str(row["image"]),
                "width": int(row["width"]),
                "height": int(row["height"]),
                "model_version": str(row["model_version"]),
                "n_predictions": int(n_pred.get(row["tile_id"], 0)),
            }
            old = tasks.get(row["tile_id"])
            if old is None:
                result.created += 1
                tasks[row["tile_id"]] = task
            elif old["model_version"] != task["model_version"]:
                # re-queued: keep the batch it was first queued in, refresh the pre-annotation
                result.updated += 1
                tasks[row["tile_id"]] = {**task, "batch": old["batch"]}
            else:
                result.unchanged += 1
        write_json(self.state_dir / "tasks.json", tasks)
        return result

    def annotate(self, limit: int | None = None) -> int:
        """Label queued, unlabeled tiles from their truth files, in queue order; return how many."""
        tasks = self._load("tasks.json")
        annotations = self._load("annotations.json")
        todo = sorted(
            (t for t in tasks if t not in annotations), key=lambda t: (tasks[t]["batch"], tasks[t]["rank"])
        )
        if limit is not None:
            todo = todo[:limit]
        now = datetime.now(UTC).isoformat(timespec="seconds")
        next_id = 1 + max((a["annotation_id"] for a in annotations.values()), default=0)
        for tile_id in todo:
            task = tasks[tile_id]
            truth = self.truth_dir / f"{tile_id}.txt"
            if not truth.exists():
                raise FileNotFoundError(f"{truth}: the oracle has no ground truth for queued tile {tile_id}")
            boxes = read_yolo_labels(truth, task["width"], task["height"])
            annotations[tile_id] = {
                "annotation_id": next_id,
                "annotator": "oracle",
                "updated_at": now,
                "boxes": boxes[LABEL_BOX_COLUMNS[1:]].to_numpy().tolist(),
            }
            next_id += 1
        write_json(self.state_dir / "annotations.json", annotations)
        return len(todo)

    def pull(self) -> Pulled:
        """Every labeled tile; the snapshot holds the answered tiles with their task and answer.

        Unlike Label Studio's, the oracle's snapshot leaves out tiles still waiting: they hold
        no work, the next rank re-queues them, and so a repeated ``dvc repro`` after a push
        changes nothing (Label Studio's snapshot keeps them for ``acorn labelstudio restore``).
        """
        tasks = self._load("tasks.json")
        annotations = self._load("annotations.json")
        records = [
            {
                "tile_id": tile_id,
                "data": tasks[tile_id],
                "predictions": [],
                "annotations": [_snapshot_annotation(annotations[tile_id])],
            }
            for tile_id in sorted(annotations)
        ]
        project = {
            "backend": "oracle",
            "project": "oracle",
            "tasks": len(records),
            "annotations": len(annotations),
        }
        rows, boxes = [], []
        for tile_id, ann in annotations.items():
            task = tasks[tile_id]
            rows.append(
                {
                    "tile_id": tile_id,
                    "annotation_id": ann["annotation_id"],
                    "annotator": ann["annotator"],
                    "updated_at": ann["updated_at"],
                    "batch": task["batch"],
                    "width": task["width"],
                    "height": task["height"],
                }
            )
            boxes.extend([tile_id, int(b[0]), *b[1:]] for b in ann["boxes"])
        return Pulled(
            annotations=pd.DataFrame(rows, columns=ANNOTATION_COLUMNS),
            boxes=pd.DataFrame(boxes, columns=LABEL_BOX_COLUMNS),
            snapshot=Snapshot(project=project, tasks=records),
        )


def _state_annotation(ann: dict) -> dict:
    """A snapshot's answer back in the oracle's state (the inverse of ``_snapshot_annotation``)."""
    return {
        "annotation_id": int(ann["id"]),
        "annotator": str(ann["completed_by"]),
        "updated_at": str(ann["updated_at"]),
        "boxes": ann["boxes"],
    }


def _snapshot_annotation(ann: dict) -> dict:
    """An oracle answer in the snapshot's terms (the fields a Label Studio annotation has, and its boxes)."""
    return {
        "id": ann["annotation_id"],
        "completed_by": ann["annotator"],
        "updated_at": ann["updated_at"],
        "was_cancelled": False,
        "boxes": ann["boxes"],
    }
