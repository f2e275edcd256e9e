"""Label Studio as acorn's labeling backend: a local server, project set-up, push/pull, a simulated annotator."""

from acorn.labeling.labelstudio.annotator import AnnotateResult, simulate_annotations
from acorn.labeling.labelstudio.backend import LabelStudioBackend
from acorn.labeling.labelstudio.client import (
    Connection,
    LabelStudioAuthError,
    LabelStudioError,
    LabelStudioUnavailable,
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
    "ServerStatus",
    "connect",
    "ensure_project",
    "resolve_connection",
    "simulate_annotations",
]
