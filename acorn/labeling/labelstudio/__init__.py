"""Label Studio as acorn's labeling backend: a local server, project set-up, push/pull/restore with
bounded retries, a simulated annotator.

Names are imported on first use (PEP 562): every ``acorn`` command loads this package for
``acorn labelstudio``'s sub-commands, and only those that talk to Label Studio need the SDK.
The local server (``.server``) and the simulated annotator (``.annotator``) are imported from their
modules, not from here: the stages that push and pull never run them, so editing them must not
re-run those stages.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
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
}
__all__ = [
    "Connection",
    "LabelStudioAuthError",
    "LabelStudioBackend",
    "LabelStudioError",
    "LabelStudioUnavailable",
    "ProjectSetup",
    "ProjectSpec",
    "RestoreResult",
    "RetryPolicy",
    "connect",
    "ensure_project",
    "resolve_connection",
]

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
