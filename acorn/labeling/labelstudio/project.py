"""The Label Studio project, set up by code and idempotently.

A project made by hand drifts: a renamed label, a missing storage connection and the
pipeline silently pulls nothing. ``ensure_project`` derives everything from the class list
and paths, finds the project by title, and changes only what differs, so it runs on every
push at the cost of a few GETs, and running it twice changes nothing. That also makes it
safe to retry whole: a failure that may pass (``is_retryable``) is left raw for the caller's
retry loop, any other becomes a ``LabelStudioError`` that says what was refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from label_studio_sdk.core.api_error import ApiError

from acorn.labeling.labelstudio.client import LabelStudioError, describe, is_retryable
from acorn.labeling.labelstudio.convert import label_config

if TYPE_CHECKING:
    from label_studio_sdk import LabelStudio

DEFAULT_TITLE = "acorn"
# the stream (Label All Tasks) serves the lowest prediction score of the project's model_version
# first; the queue's score rises along it (acorn.selection.labeling_queue.queue_scores), so it serves rank 1 first.
# "Sequential sampling" would serve by task id: tiles still waiting from an earlier batch first.
SAMPLING = "Uncertainty sampling"


@dataclass(frozen=True)
class ProjectSpec:
    """What the project must look like.

    ``storage_path``: absolute folder served to the browser through a local-files storage
    connection (``None`` for a remote server that cannot see this machine's files; images
    must then be reachable by URL). ``document_root``: the server's
    ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``; task image URLs are relative to it.
    """

    classes: tuple[str, ...]
    title: str = DEFAULT_TITLE
    storage_path: Path | None = None
    document_root: Path | None = None
    ml_backend_url: str | None = None
    description: str = "acorn active learning: tiles the detector is least sure about, in ranking order"

    @property
    def label_config(self) -> str:
        return label_config(self.classes)


@dataclass
class ProjectSetup:
    """What ``ensure_project`` did: the project id, the names of the things it changed, and
    what it could not do yet (e.g. no tiles folder to serve before the first tile stage)."""

    project_id: int
    changed: list[str]
    warnings: list[str] = field(default_factory=list)


def local_files_url(image: str | os.PathLike[str], document_root: str | os.PathLike[str]) -> str:
    """The URL under which Label Studio serves a local file: ``/data/local-files/?d=<relative path>``.

    The path is percent-encoded (all but ``/``): a file name may hold ``+`` (read back as a
    space), ``#`` (the start of a fragment), ``&`` (the next parameter) or ``%``, and Label
    Studio, the browser and ``acorn serve`` all decode the query before they look for the file.
    """
    path = Path(image).resolve()
    root = Path(document_root).resolve()
    try:
        rel = path.relative_to(root)
    except ValueError as exc:
        raise LabelStudioError(
            f"{path} is not under the Label Studio document root {root} "
            "(LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT); the browser could not load it"
        ) from exc
    return f"/data/local-files/?d={quote(rel.as_posix(), safe='/')}"


def find_project(client: LabelStudio, title: str) -> Any | None:
    """The one project with exactly this title, ``None`` if there is none, an error if several."""
    matches = [p for p in client.projects.list(title=title, page_size=100) if p.title == title]
    if len(matches) > 1:
        ids = ", ".join(str(p.id) for p in matches)
        raise LabelStudioError(
            f"{len(matches)} Label Studio projects are titled {title!r} (ids {ids}); rename all but one"
        )
    return matches[0] if matches else None


def ensure_project(client: LabelStudio, spec: ProjectSpec) -> ProjectSetup:
    """Create or align the project (config, settings, storage, ML backend); idempotent."""
    changed: list[str] = []
    warnings: list[str] = []
    wanted = {
        "label_config": spec.label_config,
        "enable_empty_annotation": True,  # submitting no box is how a person says "nothing here"
        "show_collab_predictions": True,  # show the model's boxes as pre-annotations
        "maximum_annotations": 1,
        "sampling": SAMPLING,
    }
    if not 3 <= len(spec.title) <= 50:
        raise ValueError(f"Label Studio project titles have 3 to 50 characters; got {spec.title!r}")
    project = find_project(client, spec.title)
    if project is None:
        try:
            project = client.projects.create(title=spec.title, description=spec.description, **wanted)
        except ApiError as exc:
            if is_retryable(exc):
                raise
            raise LabelStudioError(f"cannot create project {spec.title!r}: {describe(exc)}") from exc
        changed.append("project")
    else:
        full = client.projects.get(project.id)
        diff = {k: v for k, v in wanted.items() if getattr(full, k, None) != v}
        if diff:
            try:
                client.projects.update(project.id, **diff)
            except ApiError as exc:  # the server explains (e.g. a label still used by annotations)
                if is_retryable(exc):
                    raise
                raise LabelStudioError(
                    f"cannot update project {spec.title!r} ({sorted(diff)}): {describe(exc)}"
                ) from exc
            changed.extend(sorted(diff))
    pid = int(project.id)
    if spec.storage_path is not None:
        if not Path(spec.storage_path).is_dir():
            # nothing to serve yet (set-up before the first tile stage); the next push connects it
            warnings.append(f"storage not connected: {spec.storage_path} does not exist yet")
        elif _ensure_storage(client, pid, spec):
            changed.append("storage")
    if spec.ml_backend_url and _ensure_ml_backend(client, pid, spec.ml_backend_url):
        changed.append("ml_backend")
    return ProjectSetup(project_id=pid, changed=changed, warnings=warnings)


def _ensure_storage(client: LabelStudio, project_id: int, spec: ProjectSpec) -> bool:
    path = str(Path(spec.storage_path).resolve())  # type: ignore[arg-type]
    existing = client.import_storage.local.list(project=project_id)
    if any(str(getattr(s, "path", "")).rstrip("/") == path.rstrip("/") for s in existing):
        return False
    try:
        client.import_storage.local.create(
            project=project_id,
            path=path,
            title="acorn tiles",
            description="tiles served to the browser; tasks are imported by acorn, never synced",
            use_blob_urls=True,
            recursive_scan=True,
            regex_filter=r".*\.(jpe?g|png)$",
        )
    except ApiError as exc:
        if is_retryable(exc):
            raise
        raise LabelStudioError(
            f"cannot connect local storage {path} to project {project_id}: {describe(exc)}. The folder must exist "
            "and lie under the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, and the server needs "
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true"
        ) from exc
    return True


def _ensure_ml_backend(client: LabelStudio, project_id: int, url: str) -> bool:
    existing = client.ml.list(project=project_id)
    if any(str(getattr(m, "url", "")).rstrip("/") == url.rstrip("/") for m in existing):
        return False
    try:
        client.ml.create(project=project_id, url=url, title="acorn", is_interactive=False)
    except ApiError as exc:
        if is_retryable(exc):
            raise
        raise LabelStudioError(
            f"cannot connect ML backend {url} to project {project_id}: {describe(exc)}. Label Studio calls its "
            "/health and /setup and refuses local and private addresses: the server `acorn labelstudio start` "
            "runs allows 127.0.0.1 only (run `acorn serve` there); another server needs its own "
            "SSRF settings to allow the backend's address"
        ) from exc
    return True
