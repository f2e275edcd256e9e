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

The oracle also records how long a person would have taken, so that the cost columns of the
cycle report (acorn.labeling.cost) have numbers in a demo. This is a model, not a measurement;
its numbers are round guesses, and it is deterministic so that a demo repeats itself:

    seconds = TASK_S + DRAW_S * added + MOVE_S * moved + KEEP_S * kept + DELETE_S * deleted

where kept / moved / deleted / added compare the boxes shown as pre-annotation (the pushed
model's boxes at ``display_threshold``, as Label Studio shows them) with the truth it answers,
by acorn.labeling.cost's IoU rule: a tile costs a look, a box drawn from scratch costs the most,
fixing a shown box less, accepting or deleting one little.

The answer is the truth, unless ``labeling.noise`` sets error rates: then the oracle answers as a
careless labeler would (missed boxes, small ones first; spurious, shifted boxes; tiles with
objects answered as empty: acorn.labeling.noise), the same for the same tile and seed, and keeps
each error it made in ``noise.csv`` next to its state, with the pool's statistics the errors were
drawn against in ``noise.json``: the truth a review queue of suspect labels is measured against.

The oracle answers reviews too (``push_review``, ``answer_reviews``): a tile the review queue
suspects (acorn.labeling.review) is looked at again and, where its label differs from the
truth, labeled anew; the answer it replaces is kept in the annotation's history, and the
snapshot keeps both, the correction last (the one export-labels exports).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from acorn.data.formats import read_yolo_labels
from acorn.labeling.base import ANNOTATION_COLUMNS, LABEL_BOX_COLUMNS, Pulled, PushResult, Snapshot
from acorn.labeling.cost import BOX_KEYS, ORACLE, preannotation_outcomes
from acorn.labeling.noise import RECORD_COLUMNS, PoolReference, active, corrupt, records_table
from acorn.params import NoiseParams
from acorn.paths import ORACLE_STATE as DEFAULT_STATE_DIR
from acorn.paths import TRUTH
from acorn.runtime.atomic import write_csv, write_json

# the modelled seconds of a task (module docstring): a look at the tile, then per box
TASK_S = 4.0
DRAW_S = 8.0
MOVE_S = 5.0
KEEP_S = 1.0
DELETE_S = 2.0
NOISE_RECORD = "noise.csv"  # one row per injected error (acorn.labeling.noise.RECORD_COLUMNS)
NOISE_REFERENCE = "noise.json"  # the pool's statistics the errors are drawn against
REVIEWS = "reviews.json"  # {tile_id: the review of one of its annotations}


def modelled_seconds(outcomes: pd.DataFrame) -> pd.Series:
    """Seconds a task takes in the oracle's time model, per row of kept / moved / deleted / added counts."""
    return (
        TASK_S
        + DRAW_S * outcomes["added"]
        + MOVE_S * outcomes["moved"]
        + KEEP_S * outcomes["kept"]
        + DELETE_S * outcomes["deleted"]
    ).astype("float64")


class OracleBackend:
    def __init__(
        self,
        state_dir: Path = DEFAULT_STATE_DIR,
        truth_dir: Path = TRUTH,
        snapshot_dir: Path | None = None,
        display_threshold: float = 0.25,
        noise: NoiseParams | None = None,
    ) -> None:
        """``display_threshold``: the confidence from which a pushed box is shown as a
        pre-annotation (``rank.threshold``, as for Label Studio); ``noise``: the errors its
        answers carry (``labeling.noise``; None or all rates 0: none)."""
        self.state_dir = Path(state_dir)
        self.truth_dir = Path(truth_dir)
        self.snapshot_dir = None if snapshot_dir is None else Path(snapshot_dir)
        self.display_threshold = display_threshold
        self.noise = noise

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
        tasks = {t["tile_id"]: _state_task(t) for t in snapshot.tasks}
        answers = {
            t["tile_id"]: _state_annotation(t["annotations"][-1], t["annotations"][:-1])
            for t in snapshot.tasks
            if t["annotations"]
        }
        path = self.state_dir / "annotations.json"
        answers |= json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        write_json(self.state_dir / "annotations.json", answers)
        write_json(self.state_dir / "tasks.json", tasks)

    def push(
        self, queue: pd.DataFrame, predictions: pd.DataFrame, waiting: pd.DataFrame | None = None
    ) -> PushResult:
        """``waiting`` is accepted for the contract; a tile waiting there keeps the pre-annotation it
        was queued with (one queued again gets the new model's). A task keeps the boxes it shows
        (``preannotation``: ``class_id, x1..y2`` at ``display_threshold`` or above) for the time
        model and the snapshot."""
        tasks = self._load("tasks.json")
        result = PushResult()
        n_pred = predictions.groupby("tile_id").size() if not predictions.empty else pd.Series(dtype=int)
        shown = (
            predictions[predictions["confidence"] >= self.display_threshold]
            if not predictions.empty
            else None
        )
        by_tile = {} if shown is None else {str(k): g for k, g in shown.groupby("tile_id", sort=False)}
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
                "preannotation": _box_lists(by_tile.get(str(row["tile_id"]))),
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
        answers = {}
        for tile_id in todo:
            task = tasks[tile_id]
            truth = self.truth_dir / f"{tile_id}.txt"
            if not truth.exists():
                raise FileNotFoundError(f"{truth}: the oracle has no ground truth for queued tile {tile_id}")
            answers[tile_id] = read_yolo_labels(truth, task["width"], task["height"])[LABEL_BOX_COLUMNS[1:]]
        if active(self.noise) and answers:
            answers = self._corrupt(answers, tasks)
        seconds = modelled_seconds(
            preannotation_outcomes(
                _keyed({t: tasks[t].get("preannotation") or [] for t in todo}),
                _keyed({t: b.to_numpy().tolist() for t, b in answers.items()}),
            ).reindex(todo, fill_value=0)
        )
        for tile_id, boxes in answers.items():
            annotations[tile_id] = {
                "annotation_id": next_id,
                "annotator": ORACLE,
                "updated_at": now,
                "lead_time": float(seconds[tile_id]),
                "boxes": boxes.to_numpy().tolist(),
            }
            next_id += 1
        write_json(self.state_dir / "annotations.json", annotations)
        return len(todo)

    def push_review(self, suspects: pd.DataFrame) -> int:
        """Queue ``suspects`` (acorn.labeling.review's rows: ``tile_id, annotation_id, cycle,
        reason, score``) for review; return how many are new. A tile already queued for the same
        annotation is not queued again (a repeated ``dvc repro``), one whose label changed is."""
        reviews = self._load(REVIEWS)
        new = 0
        for row in suspects.itertuples(index=False):
            if reviews.get(row.tile_id, {}).get("annotation_id") == int(row.annotation_id):
                continue
            reviews[row.tile_id] = {
                "annotation_id": int(row.annotation_id),
                "cycle": int(row.cycle),
                "reason": str(row.reason),
                "score": float(row.score),
                "answer": None,
            }
            new += 1
        write_json(self.state_dir / REVIEWS, reviews)
        return new

    def answer_reviews(self, limit: int | None = None) -> dict[str, int]:
        """Review the queued tiles whose label is still the one queued, most suspect first: a label
        that differs from the truth is replaced by the truth (a reviewer told what to look for
        gets it right; no noise), the old answer kept in the new one's ``history``; a label that
        matches is confirmed and left as it is (a new annotation would retrain for nothing).
        Returns ``{"confirmed": n, "corrected": n}``; the modelled time of each look is kept in
        ``reviews.json`` and a correction's on its annotation (``lead_time``)."""
        reviews, annotations, tasks = (
            self._load(REVIEWS),
            self._load("annotations.json"),
            self._load("tasks.json"),
        )
        pending = sorted(
            (
                t
                for t, r in reviews.items()
                if r["answer"] is None and annotations.get(t, {}).get("annotation_id") == r["annotation_id"]
            ),
            key=lambda t: (reviews[t]["cycle"], reviews[t]["score"], t),
        )[:limit]
        if not pending:
            return {"confirmed": 0, "corrected": 0}
        truths = {
            t: read_yolo_labels(self.truth_dir / f"{t}.txt", tasks[t]["width"], tasks[t]["height"])[
                LABEL_BOX_COLUMNS[1:]
            ]
            for t in pending
        }
        outcomes = preannotation_outcomes(
            _keyed({t: annotations[t]["boxes"] for t in pending}),
            _keyed({t: b.to_numpy().tolist() for t, b in truths.items()}),
        ).reindex(pending, fill_value=0)
        seconds = modelled_seconds(outcomes)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        next_id = 1 + max((a["annotation_id"] for a in annotations.values()), default=0)
        counts = {"confirmed": 0, "corrected": 0}
        for tile_id in pending:
            row = outcomes.loc[tile_id]
            confirmed = row["moved"] == row["deleted"] == row["added"] == 0
            answer = "confirmed" if confirmed else "corrected"
            reviews[tile_id] |= {"answer": answer, "seconds": float(seconds[tile_id])}
            counts[answer] += 1
            if confirmed:
                continue
            old = annotations[tile_id]
            annotations[tile_id] = {
                "annotation_id": next_id,
                "annotator": ORACLE,
                "updated_at": now,
                "lead_time": float(seconds[tile_id]),
                "boxes": truths[tile_id].to_numpy().tolist(),
                "history": [*old.get("history", []), {k: v for k, v in old.items() if k != "history"}],
            }
            next_id += 1
        write_json(self.state_dir / "annotations.json", annotations)
        write_json(self.state_dir / REVIEWS, reviews)
        return counts

    def _corrupt(self, answers: dict[str, pd.DataFrame], tasks: dict) -> dict[str, pd.DataFrame]:
        """The answers with ``noise``'s errors, each error added to ``noise.csv`` (a tile labeled
        again replaces its rows)."""
        reference = self.noise_reference()
        noisy, records = {}, []
        for tile_id, truth in answers.items():
            task = tasks[tile_id]
            boxes, errors = corrupt(
                tile_id, truth.to_numpy(dtype="float64"), task["width"], task["height"], self.noise, reference
            )
            noisy[tile_id] = pd.DataFrame(boxes, columns=truth.columns).astype({"class_id": "int64"})
            records += errors
        before = read_noise_record(self.state_dir)
        frames = [f for f in (before[~before["tile_id"].isin(answers)], records_table(records)) if len(f)]
        table = pd.concat(frames, ignore_index=True) if frames else before.iloc[:0]
        write_csv(
            table.sort_values(["tile_id", "kind"], ignore_index=True, kind="stable"),
            self.state_dir / NOISE_RECORD,
        )
        return noisy

    def noise_reference(self) -> PoolReference:
        """The pool's statistics the errors are drawn against: read from the truth folder the first
        time, then kept (``noise.json``), so that tiles added to the pool later change no error."""
        path = self.state_dir / NOISE_REFERENCE
        if path.exists():
            return PoolReference.from_dict(json.loads(path.read_text(encoding="utf-8")))
        reference = PoolReference.from_truth(self.truth_dir)
        write_json(path, reference.to_dict())
        return reference

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
                "data": {k: v for k, v in tasks[tile_id].items() if k != "preannotation"},
                "predictions": _snapshot_predictions(tasks[tile_id]),
                "annotations": [
                    *map(_snapshot_annotation, annotations[tile_id].get("history", [])),
                    _snapshot_annotation(annotations[tile_id]),
                ],
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


def read_noise_record(state_dir: Path) -> pd.DataFrame:
    """The errors the oracle injected (``RECORD_COLUMNS``), none if it never labeled with noise."""
    path = Path(state_dir) / NOISE_RECORD
    if not path.exists():
        return pd.DataFrame(columns=RECORD_COLUMNS)
    return pd.read_csv(path, dtype={"tile_id": str, "kind": str})


def _box_lists(boxes: pd.DataFrame | None) -> list[list[float]]:
    """Boxes as the oracle keeps them: ``[class_id, x1, y1, x2, y2]`` lists."""
    if boxes is None:
        return []
    return [[int(c), *map(float, xy)] for c, *xy in boxes[LABEL_BOX_COLUMNS[1:]].itertuples(index=False)]


def _keyed(boxes: dict[str, list]) -> pd.DataFrame:
    """``{tile_id: [[class_id, x1..y2], ...]}`` as rows of acorn.labeling.cost's ``BOX_KEYS``."""
    return pd.DataFrame(
        [(t, int(b[0]), *b[1:5]) for t, rows in boxes.items() for b in rows], columns=BOX_KEYS
    )


def _snapshot_predictions(task: dict) -> list[dict]:
    """The pre-annotation a task showed, in the snapshot's terms; none for a task pushed before
    the oracle kept it."""
    if "preannotation" not in task:
        return []
    return [{"model_version": task["model_version"], "boxes": task["preannotation"]}]


def _state_task(record: dict) -> dict:
    """A snapshot's task back in the oracle's state (the inverse of ``pull``'s record)."""
    task = dict(record["data"])
    if record.get("predictions"):
        task["preannotation"] = record["predictions"][-1]["boxes"]
    return task


def _state_annotation(ann: dict, history: list[dict] = ()) -> dict:
    """A snapshot's answer back in the oracle's state (the inverse of ``_snapshot_annotation``),
    with the answers a review replaced (``history``, oldest first)."""
    state = {
        "annotation_id": int(ann["id"]),
        "annotator": str(ann["completed_by"]),
        "updated_at": str(ann["updated_at"]),
        "boxes": ann["boxes"],
    }
    if "lead_time" in ann:
        state["lead_time"] = ann["lead_time"]
    if history:
        state["history"] = [_state_annotation(a) for a in history]
    return state


def _snapshot_annotation(ann: dict) -> dict:
    """An oracle answer in the snapshot's terms (the fields a Label Studio annotation has, and its boxes)."""
    return {
        "id": ann["annotation_id"],
        "completed_by": ann["annotator"],
        "updated_at": ann["updated_at"],
        "was_cancelled": False,
        "boxes": ann["boxes"],
        **({"lead_time": ann["lead_time"]} if "lead_time" in ann else {}),
    }
