"""Label Studio as acorn's labeling backend: a local server, project set-up, push/pull/restore with
bounded retries, a simulated annotator."""

from acorn.labeling.labelstudio.annotator import AnnotateResult, simulate_annotations
from acorn.labeling.labelstudio.backend import LabelStudioBackend, RestoreResult
from acorn.labeling.labelstudio.client import (
    Connection,
    LabelStudioAuthError,
    LabelStudioError,
    LabelStudioUnavailable,
    RetryPolicy,
    connect,
    resolve_connection,
)
from acorn.labeling.labelstudio.project import ProjectSetup, ProjectSpec, ensure_project
from acorn.labeling.labelstudio.server import LocalServer, ServerStatus

__all__ = [
    "AnnotateResult",
    "Connection",
    "LabelStudioAuthError",
    "LabelStudioBackend",
    "LabelStudioError",
    "LabelStudioUnavailable",
    "LocalServer",
    "ProjectSetup",
    "ProjectSpec",
    "RestoreResult",
    "RetryPolicy",
    "ServerStatus",
    "connect",
    "ensure_project",
    "resolve_connection",
    "simulate_annotations",
]
