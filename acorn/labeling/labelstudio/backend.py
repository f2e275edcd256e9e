"""``LabelStudioBackend``: the labeling contract (``push`` / ``pull``) on a real Label Studio.

One task per tile, keyed by ``data.tile_id``: a tile is never queued twice, however many
cycles push it. Each push imports new tiles in bulk with the model's boxes as
pre-annotations, gives tiles that are still waiting the new model's prediction, and sets the
project's ``model_version`` so the prediction score column and the labeling stream follow
the new queue. ``pull`` reads every task with a finished annotation, page by page, and turns
the latest annotation of each into pixel boxes; anything it cannot trust is reported in
``problems`` with the task id and skipped.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pandas as pd
from label_studio_sdk.core.api_error import ApiError

from acorn.labeling.base import ANNOTATION_COLUMNS, LABEL_BOX_COLUMNS, QUEUE_COLUMNS, Pulled, PushResult
from acorn.labeling.labelstudio.client import (
    Connection,
    LabelStudioError,
    LabelStudioUnavailable,
    connect,
    describe,
    resolve_connection,
)
from acorn.labeling.labelstudio.convert import (
    annotation_order,
    boxes_to_results,
    latest_finished,
    results_to_boxes,
)
from acorn.labeling.labelstudio.project import (
    DEFAULT_TITLE,
    ProjectSetup,
    ProjectSpec,
    ensure_project,
    find_project,
    local_files_url,
)

if TYPE_CHECKING:
    from label_studio_sdk import LabelStudio

    from acorn.params import Params

T = TypeVar("T")

_FINISHED_QUERY = json.dumps(
    {
        "filters": {
            "conjunction": "and",
            # total_annotations counts finished, not-cancelled annotations
            "items": [
                {
                    "filter": "filter:tasks:total_annotations",
                    "operator": "greater",
                    "type": "Number",
                    "value": 0,
                }
            ],
        }
    }
)
_URL_PREFIXES = ("http://", "https://", "s3://", "gs://", "azure-blob://", "/data/")


@dataclass
class ExistingTask:
    """What push needs to know about a task already in the project."""

    id: int
    data: dict[str, Any]
    finished: int
    model_versions: set[str] = field(default_factory=set)


def _translate_errors(method: Callable[..., T]) -> Callable[..., T]:
    """Turn transport failures mid-call into ``LabelStudioUnavailable`` naming the server."""

    @functools.wraps(method)
    def wrapper(self: LabelStudioBackend, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except ApiError as exc:
            raise LabelStudioError(
                f"Label Studio at {self.connection.url} failed during {method.__name__}: {describe(exc)}"
            ) from exc
        except httpx.TransportError as exc:
            raise LabelStudioUnavailable(
                f"lost Label Studio at {self.connection.url} during {method.__name__} ({exc}); "
                "re-run when it is up: work done so far is keyed by tile id and is not repeated"
            ) from exc

    return wrapper


class LabelStudioBackend:
    """The labeling backend on a Label Studio server (local or remote).

    ``classes``: names in class-id order (``params.yaml`` ``classes``). ``display_threshold``:
    the lowest confidence shown as a pre-annotation. ``storage_path``: tiles folder served to
    the browser (relative paths are from ``repo_root``; ``None`` for a server that cannot
    see this machine's files). ``document_root``: that server's
    ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` (default the repository root, as
    ``acorn labelstudio start`` sets it). ``url``/``api_key`` default to
    ``LABEL_STUDIO_URL``/``LABEL_STUDIO_API_KEY`` from the environment or ``.env``.
    """

    def __init__(
        self,
        classes: list[str] | tuple[str, ...],
        *,
        repo_root: str | os.PathLike[str] = ".",
        url: str | None = None,
        api_key: str | None = None,
        title: str = DEFAULT_TITLE,
        storage_path: str | os.PathLike[str] | None = "data/tiles",
        document_root: str | os.PathLike[str] | None = None,
        ml_backend_url: str | None = None,
        display_threshold: float = 0.25,
        chunk_size: int = 1000,
        workers: int = 8,
        timeout: float = 300.0,
    ) -> None:
        self.repo_root = Path(repo_root).resolve()
        self.connection: Connection = resolve_connection(url, api_key, self.repo_root)
        self.classes = tuple(classes)
        self.class_ids = {name: i for i, name in enumerate(self.classes)}
        self.document_root = Path(document_root).resolve() if document_root else self.repo_root
        storage = None if storage_path is None else self.repo_root / storage_path
        self.spec = ProjectSpec(
            classes=self.classes,
            title=title,
            storage_path=storage,
            document_root=self.document_root,
            ml_backend_url=ml_backend_url,
        )
        self.display_threshold = display_threshold
        self.chunk_size = chunk_size
        self.workers = workers
        self.timeout = timeout
        self._client: LabelStudio | None = None
        self._project_id: int | None = None

    @classmethod
    def from_params(
        cls, p: Params, root: str | os.PathLike[str] = ".", **overrides: Any
    ) -> LabelStudioBackend:
        """The backend for ``labeling.backend: label-studio``: classes from params, pre-annotations
        shown from ``rank.threshold`` (the decision threshold), tiles served from ``data/tiles``.
        """
        kwargs: dict[str, Any] = {"repo_root": root, "display_threshold": p.rank.threshold}
        kwargs.update(overrides)
        return cls(p.classes, **kwargs)

    # ---- connection and project ---------------------------------------------------------
    @property
    def client(self) -> LabelStudio:
        """The SDK client, connected (health and key checked) on first use."""
        if self._client is None:
            self._client = connect(self.connection, timeout=self.timeout)
        return self._client

    @_translate_errors
    def setup(self) -> ProjectSetup:
        """Create or align the project; says what changed. Idempotent (see ``ensure_project``)."""
        report = ensure_project(self.client, self.spec)
        self._project_id = report.project_id
        return report

    def project_id(self, create: bool = True) -> int | None:
        if self._project_id is None:
            if create:
                self.setup()
            else:
                project = find_project(self.client, self.spec.title)
                self._project_id = None if project is None else int(project.id)
        return self._project_id

    # ---- push ---------------------------------------------------------------------------
    @_translate_errors
    def push(
        self, queue: pd.DataFrame, predictions: pd.DataFrame, waiting: pd.DataFrame | None = None
    ) -> PushResult:
        """Queue tiles with pre-annotations; tiles already queued get the new prediction, never a second task.

        ``waiting``: the rest of the pool, ranked below the queue (same columns). Only tiles that
        already have an unlabeled task use it: they get the new model's pre-annotation and a
        score that places them after this batch. Re-running a push with the same queue changes
        nothing (all ``unchanged``).
        """
        missing = [c for c in QUEUE_COLUMNS if c not in queue.columns]
        if missing:
            raise ValueError(f"queue lacks columns {missing} (expected {QUEUE_COLUMNS})")
        result = PushResult()
        if queue.empty:
            return result
        if queue["tile_id"].duplicated().any():
            dup = queue.loc[queue["tile_id"].duplicated(), "tile_id"].iloc[0]
            raise ValueError(f"queue lists tile {dup!r} twice")
        versions = queue["model_version"].astype(str).unique()
        if len(versions) != 1:
            raise ValueError(
                f"queue mixes model versions {sorted(versions)}; push one model's queue at a time"
            )
        model_version = str(versions[0])
        client = self.client
        pid = self.project_id()
        assert pid is not None
        existing = self._existing_tasks(pid, model_version)
        boxes_by_tile = _group_boxes(predictions)

        new_tasks: list[dict[str, Any]] = []
        new_predictions: list[dict[str, Any]] = []
        rows = [(row, True) for row in queue.itertuples(index=False)]
        if waiting is not None:
            rows += [(row, False) for row in waiting.itertuples(index=False) if str(row.tile_id) in existing]
        for row, queued in rows:
            tile_id = str(row.tile_id)
            width, height = int(row.width), int(row.height)
            tile_boxes = boxes_by_tile.get(tile_id)
            results = (
                []
                if tile_boxes is None
                else boxes_to_results(tile_boxes, width, height, self.classes, self.display_threshold)
            )
            # the queue's score rises along the queue (acorn.queue.queue_scores): the labeling stream
            # serves the lowest score of the project's model_version first, so rank 1 comes first,
            # and the Data Manager sorted by prediction score ascending shows the ranking order
            prediction = {"model_version": model_version, "score": float(row.score), "result": results}
            data = {
                "image": self._image_url(str(row.image)),
                "tile_id": tile_id,
                "batch": int(row.batch),
                "rank": int(row.rank),
                "strategy_score": float(row.strategy_score),
                "width": width,
                "height": height,
            }
            task = existing.get(tile_id)
            if task is None:
                if queued:
                    new_tasks.append({"data": data, "predictions": [prediction]})
                continue
            if task.finished:
                result.unchanged += 1  # labeled already; the next pull brings it in
                continue
            if model_version in task.model_versions:
                result.unchanged += 1
            else:
                # re-queued while waiting: keep the task (and the batch it was first queued in, as
                # the oracle does) and add the new model's pre-annotation and score
                new_predictions.append({"task": task.id, **prediction})
                result.updated += 1

        for chunk in _chunks(new_tasks, self.chunk_size):
            client.projects.import_tasks(pid, request=chunk, return_task_ids=False)
            result.created += len(chunk)
        for chunk in _chunks(new_predictions, self.chunk_size):
            client.projects.import_predictions(pid, request=chunk)
        project = client.projects.get(pid)
        if project.model_version != model_version:
            # the score column and uncertainty sampling use predictions of this version only
            client.projects.update(pid, model_version=model_version)
        return result

    def _image_url(self, image: str) -> str:
        if image.startswith(_URL_PREFIXES):
            return image
        return local_files_url(self.repo_root / image, self.document_root)

    def _existing_tasks(self, project_id: int, model_version: str) -> dict[str, ExistingTask]:
        """Every task of the project by tile id, and whether it has a prediction of ``model_version``.

        Two paginated listings without annotation or prediction bodies: all tasks, then those
        whose predictions' versions contain ``model_version`` (a substring filter on the
        server, checked exactly here, since "m1" is inside "m10").
        """
        found: dict[str, ExistingTask] = {}
        by_id: dict[int, ExistingTask] = {}
        for task in self._iter_tasks(project_id, fields="task_only"):
            data = dict(task.data or {})
            tile_id = data.get("tile_id")
            if tile_id is None or str(tile_id) in found:
                continue  # not ours / a duplicate made outside acorn: the first one is the tile's task
            found[str(tile_id)] = by_id[int(task.id)] = ExistingTask(
                id=int(task.id), data=data, finished=int(task.total_annotations or 0)
            )
        query = json.dumps(
            {
                "filters": {
                    "conjunction": "and",
                    "items": [
                        {
                            "filter": "filter:tasks:predictions_model_versions",
                            "operator": "contains",
                            "type": "List",
                            "value": [model_version],
                        }
                    ],
                }
            }
        )
        if not any(not t.finished for t in found.values()):
            return found  # nothing waiting: no task can need the new model's prediction
        for task in self._iter_tasks(project_id, fields="task_only", query=query):
            known = by_id.get(int(task.id))
            if known is not None:
                known.model_versions.update(
                    v for v in str(task.predictions_model_versions or "").split(",") if v
                )
        return found

    def _iter_tasks(self, project_id: int, fields: str, query: str | None = None) -> Iterator[Any]:
        kwargs: dict[str, Any] = {"project": project_id, "fields": fields, "page_size": self.chunk_size}
        if query is not None:
            kwargs["query"] = query
        yield from self.client.tasks.list(**kwargs)

    # ---- pull ---------------------------------------------------------------------------
    @_translate_errors
    def pull(self) -> Pulled:
        """Every finished annotation, the latest one per tile, as pixel boxes; bad regions go to ``problems``."""
        annotations: list[dict[str, Any]] = []
        boxes: list[tuple[str, int, float, float, float, float]] = []
        problems: list[str] = []
        pid = self.project_id(create=False)
        if pid is None:
            return _pulled(annotations, boxes, problems)
        users = self._user_names()
        chosen: dict[str, tuple[dict[str, Any], Any]] = {}
        for task in self._iter_tasks(pid, fields="all", query=_FINISHED_QUERY):
            data = dict(task.data or {})
            tile_id = data.get("tile_id")
            if tile_id is None:
                problems.append(f"task {task.id}: no tile_id in its data (not imported by acorn); skipped")
                continue
            ann = latest_finished([dict(a) for a in (task.annotations or [])])
            if ann is None:
                continue
            tile_id = str(tile_id)
            if tile_id in chosen:
                other_ann, other_task = chosen[tile_id]
                problems.append(
                    f"tile {tile_id} has several tasks ({other_task.id}, {task.id}); the latest annotation is used"
                )
                if annotation_order(ann) <= annotation_order(other_ann):
                    continue
            chosen[tile_id] = (ann, task)
        for tile_id in sorted(chosen):
            ann, task = chosen[tile_id]
            data = dict(task.data or {})
            where = f"task {task.id} (tile {tile_id})"
            try:
                width, height = int(data["width"]), int(data["height"])
            except (KeyError, TypeError, ValueError):
                problems.append(f"{where}: no width/height in its data; skipped")
                continue
            parsed = results_to_boxes(ann.get("result"), width, height, self.class_ids, where)
            problems.extend(parsed.problems)
            boxes.extend((tile_id, *b) for b in parsed.boxes)
            completed_by = ann.get("completed_by")
            annotations.append(
                {
                    "tile_id": tile_id,
                    "annotation_id": int(ann["id"]),
                    "annotator": users.get(completed_by, str(completed_by)),
                    "updated_at": str(ann.get("updated_at") or ann.get("created_at") or ""),
                    "batch": int(data.get("batch", -1)),
                    "width": width,
                    "height": height,
                }
            )
        return _pulled(annotations, boxes, problems)

    def _user_names(self) -> dict[Any, str]:
        try:
            return {u.id: (u.email or u.username or str(u.id)) for u in self.client.users.list()}
        except httpx.TransportError:
            raise
        except Exception:  # listing users may be forbidden to a non-admin key: fall back to ids
            return {}


def _group_boxes(predictions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    if predictions is None or predictions.empty:
        return {}
    return {str(k): g for k, g in predictions.groupby("tile_id", sort=False)}


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _pulled(annotations: list[dict[str, Any]], boxes: list[tuple], problems: list[str]) -> Pulled:
    ann = pd.DataFrame(annotations, columns=ANNOTATION_COLUMNS).astype(
        {
            "tile_id": "str",
            "annotation_id": "int64",
            "annotator": "str",
            "updated_at": "str",
            "batch": "int64",
            "width": "int64",
            "height": "int64",
        }
    )
    box = pd.DataFrame(boxes, columns=LABEL_BOX_COLUMNS).astype(
        {
            "tile_id": "str",
            "class_id": "int64",
            "x1": "float64",
            "y1": "float64",
            "x2": "float64",
            "y2": "float64",
        }
    )
    return Pulled(annotations=ann, boxes=box, problems=problems)


__all__ = ["LabelStudioBackend", "LabelStudioError", "LabelStudioUnavailable"]
