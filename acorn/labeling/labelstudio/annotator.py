"""A simulated annotator that answers queued Label Studio tasks from ground truth.

The loop (push -> label -> pull -> train) should run through a real server with no human:
in demos, in tests and when benchmarking query strategies on data whose truth is known.
This plays the person: for each waiting task it reads ``<truth_dir>/<tile_id>.txt`` (YOLO,
as the tile stage writes it) and submits an annotation through the API as the admin user,
exactly the kind of object a human's submit creates.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from label_studio_sdk.core.api_error import ApiError

from acorn.data.formats import LabelFileError, read_yolo_labels
from acorn.labeling.labelstudio.backend import LabelStudioBackend
from acorn.labeling.labelstudio.convert import boxes_to_results
from acorn.paths import TRUTH

if TYPE_CHECKING:
    from label_studio_sdk import LabelStudio

_ANSWER_NAMESPACE = uuid.UUID("0d6b8f3e-2a47-4f1e-8c39-5e7a2b9c4d10")


@dataclass
class AnnotateResult:
    """What the simulated annotator did; ``problems`` name each task it could not answer."""

    created: int = 0
    negatives: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


def simulate_annotations(
    backend: LabelStudioBackend,
    truth_dir: str | os.PathLike[str] = TRUTH,
    limit: int | None = None,
    workers: int | None = None,
) -> AnnotateResult:
    """Answer up to ``limit`` waiting tasks (newest batch first, then by rank) from truth files.

    A task whose truth file is missing is reported and left waiting: the tile stage writes a
    (possibly empty) file for every tile of a labeled frame, so "no file" means "truth
    unknown", and answering it as "nothing here" would teach the model a lie. An empty file
    is a real negative and becomes an annotation with no boxes.

    Each answer carries a ``unique_id`` derived from its task, so a retry after an answer that
    reached the server but whose reply was lost is refused (409) rather than made twice.
    """
    truth_dir = Path(truth_dir)
    if not truth_dir.is_absolute():
        truth_dir = backend.repo_root / truth_dir
    result = AnnotateResult()
    answered: dict[int, bool] = {}  # task id -> a negative; across tries (a retry lists what still waits)

    def op(client: LabelStudio) -> None:
        pid = backend._project(client, create=True)
        assert pid is not None
        me = client.users.whoami()
        tasks = backend._list_tasks(client, pid, fields="task_only")
        waiting = [t for t in tasks if not t.total_annotations and (t.data or {}).get("tile_id") is not None]
        waiting.sort(key=lambda t: (-int(t.data.get("batch", 0)), int(t.data.get("rank", 0)), int(t.id)))
        if limit is not None:
            waiting = waiting[: max(limit - len(answered), 0)]
        jobs: list[tuple[int, list[dict[str, Any]]]] = []
        for task in waiting:
            results = _answer(task, truth_dir, backend.classes, result)
            if results is not None:
                jobs.append((int(task.id), results))

        def submit(job: tuple[int, list[dict[str, Any]]]) -> None:
            task_id, results = job
            try:
                client.annotations.create(
                    task_id,
                    result=results,
                    completed_by=me.id,
                    was_cancelled=False,
                    lead_time=0.0,
                    unique_id=str(uuid.uuid5(_ANSWER_NAMESPACE, f"{backend.connection.url}/{task_id}")),
                )
            except ApiError as exc:
                if exc.status_code != 409:  # 409: answered by an earlier try whose reply was lost
                    raise
            answered[task_id] = not results

        with ThreadPoolExecutor(workers or backend.workers) as pool:
            list(pool.map(submit, jobs))

    backend.run(f"answering tasks of project {backend.spec.title!r}", op)
    result.created = len(answered)
    result.negatives = sum(answered.values())
    return result


def _answer(
    task: Any, truth_dir: Path, classes: tuple[str, ...], result: AnnotateResult
) -> list[dict[str, Any]] | None:
    """The regions that answer ``task`` from its truth file, or ``None`` (reported) if it cannot be answered."""
    data = task.data
    tile_id = str(data["tile_id"])
    where = f"task {task.id} (tile {tile_id})"
    path = truth_dir / f"{tile_id}.txt"
    try:
        width, height = int(data["width"]), int(data["height"])
    except (KeyError, TypeError, ValueError):
        problem = f"{where}: no width/height in task data; not answered"
    else:
        if not path.exists():
            problem = f"{where}: no truth file {path}; not answered"
        else:
            try:
                return boxes_to_results(read_yolo_labels(path, width, height), width, height, classes)
            except (LabelFileError, ValueError) as exc:
                problem = f"{where}: {exc}; not answered"
    if problem not in result.problems:  # a retry meets the same tasks again
        result.skipped += 1
        result.problems.append(problem)
    return None
