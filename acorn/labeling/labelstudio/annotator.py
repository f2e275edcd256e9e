"""A simulated annotator that answers queued Label Studio tasks from ground truth.

The loop (push -> label -> pull -> train) should run through a real server with no human:
in demos, in tests and when benchmarking query strategies on data whose truth is known.
This plays the person: for each waiting task it reads ``<truth_dir>/<tile_id>.txt`` (YOLO,
as the tile stage writes it) and submits an annotation through the API as the admin user,
exactly the kind of object a human's submit creates.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acorn.formats import LabelFileError, read_yolo_labels
from acorn.labeling.labelstudio.backend import LabelStudioBackend, _translate_errors
from acorn.labeling.labelstudio.convert import boxes_to_results


@dataclass
class AnnotateResult:
    """What the simulated annotator did; ``problems`` name each task it could not answer."""

    created: int = 0
    negatives: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


@_translate_errors
def simulate_annotations(
    backend: LabelStudioBackend,
    truth_dir: str | os.PathLike[str] = "data/tiles/truth",
    limit: int | None = None,
    workers: int | None = None,
) -> AnnotateResult:
    """Answer up to ``limit`` waiting tasks (newest batch first, then by rank) from truth files.

    A task whose truth file is missing is reported and left waiting: the tile stage writes a
    (possibly empty) file for every tile of a labeled frame, so "no file" means "truth
    unknown", and answering it as "nothing here" would teach the model a lie. An empty file
    is a real negative and becomes an annotation with no boxes.
    """
    truth_dir = Path(truth_dir)
    if not truth_dir.is_absolute():
        truth_dir = backend.repo_root / truth_dir
    result = AnnotateResult()
    client = backend.client
    pid = backend.project_id()
    assert pid is not None
    me = client.users.whoami()
    waiting = [t for t in backend._iter_tasks(pid, fields="task_only") if not int(t.total_annotations or 0)]
    waiting = [t for t in waiting if (t.data or {}).get("tile_id") is not None]
    waiting.sort(key=lambda t: (-int(t.data.get("batch", 0)), int(t.data.get("rank", 0)), int(t.id)))
    if limit is not None:
        waiting = waiting[:limit]

    jobs: list[tuple[int, list[dict[str, Any]]]] = []
    for task in waiting:
        data = task.data
        tile_id = str(data["tile_id"])
        where = f"task {task.id} (tile {tile_id})"
        path = truth_dir / f"{tile_id}.txt"
        try:
            width, height = int(data["width"]), int(data["height"])
        except (KeyError, TypeError, ValueError):
            result.skipped += 1
            result.problems.append(f"{where}: no width/height in task data; not answered")
            continue
        if not path.exists():
            result.skipped += 1
            result.problems.append(f"{where}: no truth file {path}; not answered")
            continue
        try:
            boxes = read_yolo_labels(path, width, height)
            results = boxes_to_results(boxes, width, height, backend.classes)
        except (LabelFileError, ValueError) as exc:
            result.skipped += 1
            result.problems.append(f"{where}: {exc}; not answered")
            continue
        jobs.append((int(task.id), results))

    def submit(job: tuple[int, list[dict[str, Any]]]) -> None:
        task_id, results = job
        client.annotations.create(
            task_id, result=results, completed_by=me.id, was_cancelled=False, lead_time=0.0
        )

    with ThreadPoolExecutor(workers or backend.workers) as pool:
        list(pool.map(submit, jobs))
    result.created = len(jobs)
    result.negatives = sum(1 for _, r in jobs if not r)
    return result
