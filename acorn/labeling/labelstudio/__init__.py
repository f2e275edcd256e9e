"""Label Studio as acorn's labeling backend: a local server, project set-up, push/pull/restore with
bounded retries, a simulated annotator.

Names are imported on first use (PEP 562): every ``acorn`` command loads this package for
``acorn labelstudio``'s sub-commands, and only those that talk to Label Studio need the SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "AnnotateResult": "annotator",
    "simulate_annotations": "annotator",
    "LabelStudioBackend": "backend",
    "RestoreResult": "backend",
    "Connection": "client",
    "LabelStudioAuthError": "client",
    "LabelStudioError": "client",
    "LabelStudioUnavailable": "client",
    "RetryPolicy": "client",
    "connect": "client",
    "resolve_connection": "client",
    "ProjectSetup": "project",
    "ProjectSpec": "project",
    "ensure_project": "project",
    "LocalServer": "server",
    "ServerStatus": "server",
}
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

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
