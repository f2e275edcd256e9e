"""``LabelStudioBackend``: the labeling contract (``push`` / ``pull``) on a real Label Studio.

One task per tile, keyed by ``data.tile_id``: a tile is never queued twice, however many
cycles push it. Each push imports new tiles in bulk with the model's boxes as
pre-annotations, gives tiles that are still waiting the new model's prediction, and sets the
project's ``model_version`` so the prediction score column and the labeling stream follow
the new queue. ``pull`` reads every task, page by page, turns the latest finished annotation
of each tile into pixel boxes (anything it cannot trust is a ``Problem``, handled by the
policy in ``convert.results_to_boxes``) and keeps everything it read as a ``Snapshot``, which
``restore`` puts back on a fresh server.

Every operation runs under a ``RetryPolicy`` (client.py): a server that is down, slow, or
answers 5xx/429 is retried with backoff, then named in a clear error. An operation is retried
whole and reads the project's state first, so a retry after a request that in fact succeeded
does only what is still missing: no task, prediction or annotation is made twice.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
from label_studio_sdk.core.api_error import ApiError

from acorn.data.repo_uris import is_repo_uri, under
from acorn.labeling.base import (
    ANNOTATION_COLUMNS,
    LABEL_BOX_COLUMNS,
    QUEUE_COLUMNS,
    SKIPPED_ANNOTATION,
    Problem,
    Pulled,
    PushResult,
    Snapshot,
)
from acorn.labeling.labelstudio.client import (
    Connection,
    LabelStudioError,
    LabelStudioUnavailable,
    RetryPolicy,
    connect,
    open_client,
    resolve_connection,
    with_retries,
)
from acorn.labeling.labelstudio.convert import (
    RESTORED_KEY,
    boxes_to_results,
    import_task,
    latest_finished,
    restored_meta,
    results_to_boxes,
    snapshot_annotation,
    snapshot_task,
)
from acorn.labeling.labelstudio.project import (
    DEFAULT_TITLE,
    ProjectSetup,
    ProjectSpec,
    ensure_project,
    find_project,
    local_files_url,
)
from acorn.runtime.atomic import pause_point

if TYPE_CHECKING:
    from label_studio_sdk import LabelStudio

    from acorn.params import Params

T = TypeVar("T")
log = logging.getLogger(__name__)

REVIEW_VIEW = "Suspect labels"  # the Data Manager tab of tasks to review
_URL_PREFIXES = ("http://", "https://", "s3://", "gs://", "azure-blob://", "/data/")
# annotations that restore adds to a task that already exists get a unique_id derived from this,
# so that Label Studio refuses (409) a second copy sent by a retry
_RESTORE_NAMESPACE = uuid.UUID("6f1c3a52-6d0e-4c55-9a4f-0b8a1d7e2c11")


@dataclass
class ExistingTask:
    """What push needs to know about a task already in the project."""

    id: int
    finished: int
    model_versions: set[str] = field(default_factory=set)


@dataclass
class RestoreResult:
    """What ``restore`` did: tasks created, tasks that were there already and the annotations
    added to them (those put back over a skipped or emptied copy included), and the model
    version it gave the project ("" when it kept its own)."""

    created: int = 0
    annotations_added: int = 0
    existing: int = 0
    model_version: str = ""


class LabelStudioBackend:
    """The labeling backend on a Label Studio server (local or remote).

    ``classes``: names in class-id order (``params.yaml`` ``classes``). ``display_threshold``:
    the lowest confidence shown as a pre-annotation. ``storage_path``: tiles folder served to
    the browser (relative paths are from ``repo_root``; ``None`` for a server that cannot
    see this machine's files). ``document_root``: that server's
    ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` (default the repository root, as
    ``acorn labelstudio start`` sets it); or a ``repo://owner/repo/rev:`` URI for a server
    that reads images from a DagsHub repository (DagsHub's hosted Label Studio): tasks then
    name each tile ``repo://owner/repo/rev:data/tiles/...`` (its path in this repository, as
    pushed there with git and DVC), no local-files storage is set up, and ``acorn serve``
    resolves the same URIs for pre-annotations. ``url``/``api_key`` default to
    ``LABEL_STUDIO_URL``/``LABEL_STUDIO_API_KEY`` from the environment or ``.env``.
    ``retry``: timeouts and retries of every call (``RetryPolicy``'s defaults if ``None``).
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
        retry: RetryPolicy | None = None,
    ) -> None:
        self.repo_root = Path(repo_root).resolve()
        self.connection: Connection = resolve_connection(url, api_key, self.repo_root)
        self.classes = tuple(classes)
        self.class_ids = {name: i for i, name in enumerate(self.classes)}
        # a repo:// root: images are read from a DagsHub repository, not from this machine's disk
        self.image_root = str(document_root) if document_root and is_repo_uri(str(document_root)) else None
        if self.image_root is not None:
            under(self.image_root, "x.jpg")  # a malformed root fails here, not at the first push
            document_root, storage_path = None, None
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
        self.retry = retry or RetryPolicy()
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
            self._client = connect(self.connection, self.retry)
        return self._client

    def run(self, what: str, op: Callable[[LabelStudio], T]) -> T:
        """``op(client)`` under the retry policy; ``what`` names it in the error if it fails.

        ``op`` must be safe to run again from its start after any failure (see
        ``client.with_retries``): every operation here re-reads what the project holds and
        does only what is missing.
        """

        def attempt() -> T:
            if self._client is None:
                self._client = open_client(self.connection, self.retry.timeout)
            return op(self._client)

        return with_retries(self.connection.url, what, attempt, self.retry)

    def setup(self) -> ProjectSetup:
        """Create or align the project; says what changed. Idempotent (see ``ensure_project``)."""
        return self.run(f"setting up project {self.spec.title!r}", self._setup)

    def _setup(self, client: LabelStudio) -> ProjectSetup:
        report = ensure_project(client, self.spec)
        self._project_id = report.project_id
        return report

    def project_id(self, create: bool = True) -> int | None:
        """The project's id (made first when ``create``); ``None`` if there is none."""
        return self.run(f"finding project {self.spec.title!r}", lambda client: self._project(client, create))

    def _project(self, client: LabelStudio, create: bool) -> int | None:
        if self._project_id is None:
            if create:
                self._setup(client)
            else:
                project = find_project(client, self.spec.title)
                self._project_id = None if project is None else int(project.id)
        return self._project_id

    # ---- push ---------------------------------------------------------------------------
    def push(
        self, queue: pd.DataFrame, predictions: pd.DataFrame, waiting: pd.DataFrame | None = None
    ) -> PushResult:
        """Queue tiles with pre-annotations; tiles already queued get the new prediction, never a second task.

        ``waiting``: the rest of the pool, ranked below the queue (same columns). Only tiles that
        already have an unlabeled task use it: they get the new model's pre-annotation and a
        score that places them after this batch. Re-running a push with the same queue changes
        nothing (all ``unchanged``), and so does a retry after a try whose answer was lost.
        The counts compare with the project as it was before the push.
        """
        missing = [c for c in QUEUE_COLUMNS if c not in queue.columns]
        if missing:
            raise ValueError(f"queue lacks columns {missing} (expected {QUEUE_COLUMNS})")
        if queue.empty:
            return PushResult()
        if queue["tile_id"].duplicated().any():
            dup = queue.loc[queue["tile_id"].duplicated(), "tile_id"].iloc[0]
            raise ValueError(f"queue lists tile {dup!r} twice")
        versions = queue["model_version"].astype(str).unique()
        if len(versions) != 1:
            raise ValueError(
                f"queue mixes model versions {sorted(versions)}; push one model's queue at a time"
            )
        model_version = str(versions[0])
        boxes_by_tile = _group_boxes(predictions)
        rows = [(row, True) for row in queue.itertuples(index=False)]
        if waiting is not None:
            rows += [(row, False) for row in waiting.itertuples(index=False)]
        prepared: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

        def prepare(row: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            """The task and the prediction for a row (made once, whatever the number of tries)."""
            tile_id = str(row.tile_id)
            if tile_id not in prepared:
                width, height = int(row.width), int(row.height)
                tile_boxes = boxes_by_tile.get(tile_id)
                results = (
                    []
                    if tile_boxes is None
                    else boxes_to_results(tile_boxes, width, height, self.classes, self.display_threshold)
                )
                # the queue's score rises along the queue (acorn.selection.labeling_queue.queue_scores): the labeling
                # stream serves the lowest score of the project's model_version first, so rank 1
                # comes first, and the Data Manager sorted by prediction score ascending shows the order
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
                prepared[tile_id] = ({"data": data, "predictions": [prediction]}, prediction)
            return prepared[tile_id]

        before: dict[str, ExistingTask] | None = None  # the project before the first try

        def op(client: LabelStudio) -> None:
            nonlocal before
            pid = self._project(client, create=True)
            assert pid is not None
            existing = self._existing_tasks(client, pid, model_version)
            if before is None:
                before = existing
            new_tasks: list[dict[str, Any]] = []
            new_predictions: list[dict[str, Any]] = []
            for row, queued in rows:
                task = existing.get(str(row.tile_id))
                if task is None:
                    if queued:
                        new_tasks.append(prepare(row)[0])
                elif not task.finished and model_version not in task.model_versions:
                    # re-queued while waiting: keep the task (and the batch it was first queued in,
                    # as the oracle does) and add the new model's pre-annotation and score
                    new_predictions.append({"task": task.id, **prepare(row)[1]})
            for chunk in _chunks(new_tasks, self.chunk_size):
                client.projects.import_tasks(pid, request=chunk, return_task_ids=False)
            pause_point("labelstudio.push.after_tasks")  # test-only (tests/labelstudio/test_faults_ls.py)
            for chunk in _chunks(new_predictions, self.chunk_size):
                client.projects.import_predictions(pid, request=chunk)
            if client.projects.get(pid).model_version != model_version:
                # the score column and uncertainty sampling use predictions of this version only
                client.projects.update(pid, model_version=model_version)

        self.run(f"pushing {len(queue)} tasks to project {self.spec.title!r}", op)
        result = PushResult()
        assert before is not None
        for row, queued in rows:
            task = before.get(str(row.tile_id))
            if task is None:
                result.created += 1 if queued else 0
            elif task.finished or model_version in task.model_versions:
                result.unchanged += 1  # labeled already (the next pull brings it in), or pushed already
            else:
                result.updated += 1
        return result

    def _image_url(self, image: str) -> str:
        """What the task's ``image`` names: a URL or ``repo://`` URI as it is; a file of this
        repository under the ``repo://`` root, or else as a local-files URL."""
        if image.startswith(_URL_PREFIXES) or is_repo_uri(image):
            return image
        if self.image_root is not None:
            path = (self.repo_root / image).resolve()
            if not path.is_relative_to(self.repo_root):
                raise LabelStudioError(f"{image}: outside the repository; it has no repo:// URI")
            return under(self.image_root, path.relative_to(self.repo_root).as_posix())
        return local_files_url(self.repo_root / image, self.document_root)

    def _existing_tasks(
        self, client: LabelStudio, project_id: int, model_version: str
    ) -> dict[str, ExistingTask]:
        """Every task of the project by tile id, and whether it has a prediction of ``model_version``.

        Two paginated listings without annotation or prediction bodies: all tasks, then those
        whose predictions' versions contain ``model_version`` (a substring filter on the
        server, checked exactly here, since "m1" is inside "m10"). A second task of a tile
        that nobody has touched (no annotation, not skipped) is deleted: it comes from an import
        that reached the server after its retry (a request stuck past its timeout), or from a
        tile imported twice by hand.
        """
        by_tile: dict[str, list[Any]] = {}
        for task in self._list_tasks(client, project_id, fields="task_only"):
            tile_id = (task.data or {}).get("tile_id")
            if tile_id is not None:  # else not ours
                by_tile.setdefault(str(tile_id), []).append(task)
        found: dict[str, ExistingTask] = {}
        by_id: dict[int, ExistingTask] = {}
        for tile_id, tasks in by_tile.items():
            touched = [t for t in tasks if t.total_annotations or t.cancelled_annotations]
            keep = (touched or tasks)[0]  # the tile's task: the first one with work in it
            for extra in tasks:
                if extra is not keep and extra not in touched:
                    log.warning(
                        "tile %s: deleting task %s, an untouched second task of the tile", tile_id, extra.id
                    )
                    _delete_task(client, extra.id)
            found[tile_id] = by_id[int(keep.id)] = ExistingTask(
                id=int(keep.id), finished=int(keep.total_annotations or 0)
            )
        if not any(not t.finished for t in found.values()):
            return found  # nothing waiting: no task can need the new model's prediction
        query = _filter_query("filter:tasks:predictions_model_versions", "contains", "List", [model_version])
        for task in self._list_tasks(client, project_id, fields="task_only", query=query):
            known = by_id.get(int(task.id))
            if known is not None:
                known.model_versions.update(
                    v for v in str(task.predictions_model_versions or "").split(",") if v
                )
        return found

    def _list_tasks(
        self,
        client: LabelStudio,
        project_id: int,
        fields: str,
        query: str | None = None,
        resolve_uri: bool | None = None,
    ) -> Iterator[Any]:
        kwargs: dict[str, Any] = {"project": project_id, "fields": fields, "page_size": self.chunk_size}
        if query is not None:
            kwargs["query"] = query
        if resolve_uri is not None:
            kwargs["resolve_uri"] = resolve_uri
        yield from client.tasks.list(**kwargs)

    # ---- review -------------------------------------------------------------------------
    def push_review(self, suspects: pd.DataFrame) -> int:
        """Mark ``suspects``' tasks for review (acorn.labeling.review's rows: ``tile_id,
        annotation_id, cycle, rank, reason, score``) and keep the project's review tab; return how
        many tasks are newly marked.

        The review happens where the label was made, so a correction needs no path of its own: a
        suspect's task gets ``review_cycle``, ``review_rank``, ``review_reason``, ``review_score``
        and ``review_annotation`` in its data, and the tab ``REVIEW_VIEW`` lists the tasks with a
        ``review_cycle``, most suspect first, with the reason as a column. The reviewer sees the
        label beside the model's boxes (the task's pre-annotation), then fixes the label or
        submits it again; the newest annotation counts (``latest_finished``), so the next
        export-labels brings the correction back, and the label it replaced stays in the
        project's history and in the snapshot of the cycle that pulled it. A task already marked
        for the same annotation is left as it is (a repeated ``dvc repro``); a task that is not
        in the project (deleted by hand) is named in the log and skipped.
        """
        if suspects.empty:
            return 0
        marked: set[str] = set()

        def op(client: LabelStudio) -> None:
            pid = self._project(client, create=False)
            if pid is None:
                return
            tasks = {
                str((task.data or {}).get("tile_id")): task
                # unresolved: the data written back must hold the task's own image URI, not the
                # storage link Label Studio resolves it to for a browser
                for task in self._list_tasks(client, pid, fields="task_only", resolve_uri=False)
                if (task.data or {}).get("tile_id") is not None
            }
            for row in suspects.itertuples(index=False):
                task = tasks.get(str(row.tile_id))
                if task is None:
                    log.warning(
                        "suspect label of tile %s: no task in the project; not queued for review", row.tile_id
                    )
                    continue
                data = dict(task.data or {})
                if data.get("review_annotation") == int(row.annotation_id):
                    continue
                data |= {
                    "review_cycle": int(row.cycle),
                    "review_rank": int(row.rank),
                    "review_reason": str(row.reason),
                    "review_score": round(float(row.score), 4),
                    "review_annotation": int(row.annotation_id),
                }
                client.tasks.update(str(task.id), data=data)
                marked.add(str(row.tile_id))
            _ensure_review_view(client, pid)

        self.run(f"queueing {len(suspects)} suspect labels for review in {self.spec.title!r}", op)
        return len(marked)

    # ---- pull ---------------------------------------------------------------------------
    def pull(self) -> Pulled:
        """Every finished annotation, the latest one per tile, as pixel boxes; bad regions are
        ``problems``; everything the project holds is the ``snapshot``."""
        return self.run(f"pulling annotations from project {self.spec.title!r}", self._pull)

    def _pull(self, client: LabelStudio) -> Pulled:
        project_info: dict[str, Any] = {
            "backend": "label-studio",
            "project": self.spec.title,
            "model_version": "",
        }
        pid = self._project(client, create=False)
        if pid is None:
            note = f"no project {self.spec.title!r} at {self.connection.url} (yet): nothing to pull"
            return _pulled([], [], [], Snapshot(project=project_info), [note])
        project_info["model_version"] = str(client.projects.get(pid).model_version or "")
        users = self._user_names(client)
        records: dict[str, dict[str, Any]] = {}
        task_ids: dict[str, list[int]] = {}
        notes: list[str] = []
        for task in self._list_tasks(client, pid, fields="all"):
            data = dict(task.data or {})
            annotations = [snapshot_annotation(dict(a), task.meta, users) for a in task.annotations or []]
            tile_id = data.get("tile_id")
            if tile_id is None:
                if annotations:
                    notes.append(
                        f"task {task.id}: no tile_id in its data (not imported by acorn); not exported"
                    )
                continue
            tile_id = str(tile_id)
            predictions = [dict(p) for p in task.predictions or []]
            meta = dict(task.meta or {})
            if tile_id in records:  # several tasks of one tile: taken together, the latest annotation counts
                first = records[tile_id]
                predictions += first["predictions"]
                annotations += first["annotations"]
                data, meta = first["data"], {**first.get("meta", {}), **meta}
                notes.append(
                    f"tile {tile_id} has several tasks ({task_ids[tile_id][0]}, {task.id}); taken together"
                )
            records[tile_id] = snapshot_task(tile_id, data, meta, predictions, annotations)
            task_ids.setdefault(tile_id, []).append(int(task.id))
        tasks = [records[t] for t in sorted(records)]
        project_info["tasks"] = len(tasks)
        project_info["annotations"] = sum(len(t["annotations"]) for t in tasks)
        snapshot = Snapshot(project=project_info, tasks=tasks)

        annotations_rows: list[dict[str, Any]] = []
        boxes: list[tuple[Any, ...]] = []
        problems: list[Problem] = []
        for record in tasks:
            ann = latest_finished(record["annotations"])
            if ann is None:
                continue
            tile_id, data = record["tile_id"], record["data"]
            where = "task " + ", ".join(map(str, task_ids[tile_id]))
            try:
                width, height = int(data["width"]), int(data["height"])
            except (KeyError, TypeError, ValueError):
                problems.append(
                    Problem(
                        tile_id,
                        ann["id"],
                        "",
                        "no_size",
                        SKIPPED_ANNOTATION,
                        "no width/height in its task data",
                        where,
                    )
                )
                continue
            parsed = results_to_boxes(
                ann.get("result"),
                width,
                height,
                self.class_ids,
                tile_id=tile_id,
                annotation_id=ann["id"],
                where=where,
            )
            problems.extend(parsed.problems)
            if parsed.skip_annotation:
                continue
            boxes.extend((tile_id, *b) for b in parsed.boxes)
            annotations_rows.append(
                {
                    "tile_id": tile_id,
                    "annotation_id": int(ann["id"]),
                    "annotator": str(ann["completed_by"]),
                    "updated_at": str(ann["updated_at"]),
                    "batch": int(data.get("batch", -1)),
                    "width": width,
                    "height": height,
                }
            )
        return _pulled(annotations_rows, boxes, problems, snapshot, notes)

    def _user_names(self, client: LabelStudio) -> dict[Any, str]:
        """User id -> email (the same person on any server), for the annotator column."""
        try:
            return {u.id: (u.email or u.username or str(u.id)) for u in client.users.list()}
        except ApiError as exc:
            if exc.status_code in (401, 403):  # listing users may be forbidden to a non-admin key
                return {}
            raise

    # ---- restore ------------------------------------------------------------------------
    def restore(self, snapshot: Snapshot) -> RestoreResult:
        """Put a snapshot's tasks back: every tile without a task gets one, with its annotations
        and predictions, imported in bulk; a tile that has a task already (a push reached the
        project before the restore, or the database lost only some annotations) gets the
        snapshot's task data back (the batch and rank it was first queued with) and the
        snapshot's annotations it lacks. An annotation that is still there but lost its label
        since the snapshot (skipped, or emptied of its boxes: what export-labels refuses, see
        ``acorn.labeling.snapshot``) is replaced by the snapshot's. A project without a model
        version gets the snapshot's; one that has one (a newer push) keeps it.

        Safe to run again, and to retry: what is there already is not made twice. Annotations
        keep their identity (id, author, times) for the pull while nobody edits them
        (``convert.snapshot_annotation``), so an export after a restore gives the same labels.
        """
        wanted_version = str(snapshot.project.get("model_version") or "")
        result = RestoreResult()
        first = True

        def op(client: LabelStudio) -> None:
            nonlocal first
            pid = self._project(client, create=True)
            assert pid is not None
            members = {u.email: int(u.id) for u in client.users.list() if u.email}
            existing: dict[str, Any] = {}
            for task in self._list_tasks(client, pid, fields="all"):
                tile_id = (task.data or {}).get("tile_id")
                if tile_id is not None:
                    existing.setdefault(str(tile_id), task)
            new = [import_task(t, members) for t in snapshot.tasks if t["tile_id"] not in existing]
            removed: set[int] = set()  # the server's copies of annotations that lost their label
            for record in snapshot.tasks:
                task = existing.get(record["tile_id"])
                for server_id, original in [] if task is None else _undone_annotations(task, record):
                    log.warning(
                        "tile %s: annotation %s lost its label since the snapshot (skipped or emptied); "
                        "putting back the snapshot's",
                        record["tile_id"],
                        original["id"],
                    )
                    _delete_annotation(client, server_id)
                    removed.add(server_id)
            missing = {
                t["tile_id"]: _missing_annotations(existing[t["tile_id"]], t, removed)
                for t in snapshot.tasks
                if t["tile_id"] in existing
            }
            if first:  # what this restore does, counted against the project before it
                first = False
                result.created, result.existing = len(new), len(missing)
                result.annotations_added = sum(map(len, missing.values()))
                # the import sets an empty model version to its last prediction's: decide before it
                result.model_version = "" if client.projects.get(pid).model_version else wanted_version
            for chunk in _chunks(new, self.chunk_size):
                client.projects.import_tasks(pid, request=chunk, return_task_ids=False)
            for record in snapshot.tasks:
                task = existing.get(record["tile_id"])
                if task is not None:
                    _complete_task(client, task, record, missing[record["tile_id"]], members)
            if result.model_version and client.projects.get(pid).model_version != result.model_version:
                client.projects.update(pid, model_version=result.model_version)

        self.run(f"restoring {len(snapshot.tasks)} tasks to project {self.spec.title!r}", op)
        return result


def _missing_annotations(task: Any, record: dict[str, Any], removed: set[int]) -> list[dict[str, Any]]:
    """The snapshot annotations of a tile that its task on the server lacks (the server's
    annotations of ids in ``removed`` were just deleted).

    An annotation on the server is the snapshot's of the same id: restored ones carry it as
    ``import_id``, the others have it as their own id (a restore into the project the
    snapshot was taken from finds them all).
    """
    present = {
        a.get("import_id") if a.get("import_id") is not None else a.get("id")
        for a in task.annotations or []
        if a.get("id") not in removed
    }
    return [a for a in record.get("annotations", []) if a["id"] not in present]


def _undone_annotations(task: Any, record: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """(server id, snapshot annotation) of the snapshot's annotations that the task still holds
    but without their label: a finished one now skipped (cancelled) or without a result, one
    with boxes now empty. A box moved or added is an edit, and stays."""
    originals = {a["id"]: a for a in record.get("annotations", [])}
    undone = []
    for ann in task.annotations or []:
        original = originals.get(ann.get("import_id") if ann.get("import_id") is not None else ann.get("id"))
        if original is None or original.get("was_cancelled") or original.get("result") is None:
            continue
        skipped = bool(ann.get("was_cancelled")) or ann.get("result") is None
        if skipped or (original["result"] and not ann.get("result")):
            undone.append((int(ann["id"]), original))
    return undone


def _complete_task(
    client: LabelStudio,
    task: Any,
    record: dict[str, Any],
    wanted: list[dict[str, Any]],
    members: dict[str, int],
) -> None:
    """Bring a task that exists up to its snapshot record: its data, then the annotations it lacks.

    The task's meta gets the annotations' original identity before they are made (one without
    it would look new); each create carries a ``unique_id`` derived from the task and the
    original id, so a second copy sent by a retry is refused (409) instead of made.
    """
    changes: dict[str, Any] = {}
    if dict(task.data or {}) != record["data"]:
        changes["data"] = record["data"]
    if wanted:
        meta = dict(task.meta or {})
        changes["meta"] = {**meta, RESTORED_KEY: {**(meta.get(RESTORED_KEY) or {}), **restored_meta(wanted)}}
    if changes:
        client.tasks.update(str(task.id), **changes)
    for a in wanted:
        author = members.get(str(a.get("completed_by")))
        try:
            client.annotations.create(
                int(task.id),
                result=a.get("result"),
                was_cancelled=bool(a.get("was_cancelled")),
                ground_truth=bool(a.get("ground_truth")),
                lead_time=a.get("lead_time"),
                import_id=int(a["id"]),
                unique_id=str(uuid.uuid5(_RESTORE_NAMESPACE, f"{task.id}/{a['id']}")),
                **({} if author is None else {"completed_by": author}),
            )
        except ApiError as exc:
            if exc.status_code != 409:  # 409: made by an earlier try whose answer was lost
                raise


def _delete_annotation(client: LabelStudio, annotation_id: int) -> None:
    try:
        client.annotations.delete(annotation_id)
    except ApiError as exc:
        if exc.status_code != 404:  # 404: gone already (an earlier try)
            raise


def _delete_task(client: LabelStudio, task_id: int) -> None:
    try:
        client.tasks.delete(str(task_id))
    except ApiError as exc:
        if exc.status_code != 404:  # 404: gone already (an earlier try, or a person)
            raise


def _ensure_review_view(client: LabelStudio, project_id: int) -> None:
    """The project's ``REVIEW_VIEW`` tab: tasks marked for review, most suspect first (made once)."""
    if any((view.data or {}).get("title") == REVIEW_VIEW for view in client.views.list(project=project_id)):
        return
    item = {"filter": "filter:tasks:data.review_cycle", "operator": "greater", "type": "Number", "value": 0}
    client.views.create(
        project=project_id,
        data={
            "title": REVIEW_VIEW,
            "filters": {"conjunction": "and", "items": [item]},
            "ordering": ["tasks:data.review_score"],  # Label Studio sorts by one key; lowest is most suspect
        },
    )


def _filter_query(name: str, operator: str, kind: str, value: Any) -> str:
    """A Data Manager query with one filter, for ``tasks.list(query=...)``."""
    item = {"filter": name, "operator": operator, "type": kind, "value": value}
    return json.dumps({"filters": {"conjunction": "and", "items": [item]}})


def _group_boxes(predictions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    if predictions is None or predictions.empty:
        return {}
    return {str(k): g for k, g in predictions.groupby("tile_id", sort=False)}


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _pulled(
    annotations: list[dict[str, Any]],
    boxes: list[tuple[Any, ...]],
    problems: list[Problem],
    snapshot: Snapshot,
    notes: list[str],
) -> Pulled:
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
    return Pulled(annotations=ann, boxes=box, problems=problems, snapshot=snapshot, notes=notes)


__all__ = ["LabelStudioBackend", "LabelStudioError", "LabelStudioUnavailable"]
