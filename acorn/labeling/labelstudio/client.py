"""Where the Label Studio server is, how to authenticate, and a client that fails clearly.

The same backend talks to the local server started by ``acorn labelstudio start`` or to any
other Label Studio (a team server, a hosted one): only ``LABEL_STUDIO_URL`` and
``LABEL_STUDIO_API_KEY`` differ. They come from the environment first, then from the
git-ignored ``.env`` in the repository root, so a token is never in a tracked file.
label-studio-sdk 2.x takes both token kinds in ``api_key``: a legacy token is sent as
``Authorization: Token ...``, a personal access token (a JWT refresh token) is exchanged
for short-lived access tokens as needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from dotenv import dotenv_values, set_key

from acorn.errors import AcornError

if TYPE_CHECKING:
    from label_studio_sdk import LabelStudio

URL_VAR = "LABEL_STUDIO_URL"
KEY_VAR = "LABEL_STUDIO_API_KEY"
DEFAULT_URL = "http://127.0.0.1:8080"


class LabelStudioError(AcornError):
    """A Label Studio call failed; the message names the server and what to do."""


class LabelStudioUnavailable(LabelStudioError):
    """The server cannot be reached: nothing was read or written."""


class LabelStudioAuthError(LabelStudioError):
    """The server answered but refused the API key."""


def describe(exc: BaseException) -> str:
    """A short reason for a failed call: the status and body of an API error, never its headers
    (they carry session cookies)."""
    status = getattr(exc, "status_code", None)
    if status is not None:
        body = getattr(exc, "body", None)
        if isinstance(body, dict):
            body = body.get("validation_errors") or body.get("detail") or body
        return f"HTTP {status}: {body}"
    return f"{type(exc).__name__}: {exc}"


def read_dotenv(path: str | os.PathLike[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs of a ``.env`` file (python-dotenv's syntax: comments, quotes, ``export``).

    Values are taken literally (no ``${VAR}`` expansion): an API key is what it says. Keys
    with no value are left out. A missing file is an empty mapping.
    """
    values = dotenv_values(path, interpolate=False)
    return {key: value for key, value in values.items() if value is not None}


def update_dotenv(path: str | os.PathLike[str], values: dict[str, str]) -> None:
    """Set ``values`` in a ``.env`` file, keeping every other line (and its order) as it was.

    The file holds an API key, so it is readable by its owner only: python-dotenv rewrites
    through a temporary file that keeps the mode of the file it replaces, so an existing
    file is narrowed to 0600 before the key is written (a new one is made 0600 already).
    """
    path = Path(path)
    if path.exists():
        path.chmod(0o600)
    for key, value in values.items():
        set_key(path, key, value, quote_mode="auto")


@dataclass(frozen=True)
class Connection:
    """A server address and its API key (never printed: see ``__repr__``)."""

    url: str
    api_key: str

    def __repr__(self) -> str:
        return f"Connection(url={self.url!r}, api_key=<{len(self.api_key)} chars>)"


def resolve_connection(
    url: str | None = None, api_key: str | None = None, repo_root: str | os.PathLike[str] = "."
) -> Connection:
    """Arguments, then the environment, then ``<repo_root>/.env``; the URL defaults to the local server."""
    dotenv = read_dotenv(Path(repo_root) / ".env")
    url = url or os.environ.get(URL_VAR) or dotenv.get(URL_VAR) or DEFAULT_URL
    api_key = api_key or os.environ.get(KEY_VAR) or dotenv.get(KEY_VAR)
    if not api_key:
        raise LabelStudioAuthError(
            f"no API key for Label Studio at {url}: set {KEY_VAR} (environment or .env), "
            "or run `acorn labelstudio start` to start a local server that writes it"
        )
    return Connection(url=url.rstrip("/"), api_key=api_key)


def health_problem(url: str, timeout: float = 5.0) -> str | None:
    """Why ``GET <url>/health`` does not answer 200, or ``None`` when it does.

    The one health check of a Label Studio server: ``connect`` raises with its reason, the
    local server polls it while starting and reports it in ``status``.
    """
    try:
        response = httpx.get(f"{url.rstrip('/')}/health", timeout=timeout)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if response.status_code != 200:
        return f"GET /health answered {response.status_code}"
    return None


def connect(connection: Connection, timeout: float = 300.0) -> LabelStudio:
    """An SDK client after checking that the server is up and accepts the key.

    Checking first turns a refused connection deep inside a bulk call into one clear error
    before anything is written.
    """
    from label_studio_sdk import LabelStudio
    from label_studio_sdk.core.api_error import ApiError

    problem = health_problem(connection.url)
    if problem is not None:
        raise LabelStudioUnavailable(
            f"cannot reach Label Studio at {connection.url} ({problem}); "
            "start it with `acorn labelstudio start` or set LABEL_STUDIO_URL"
        )
    try:
        client = LabelStudio(base_url=connection.url, api_key=connection.api_key, timeout=timeout)
        client.users.whoami()
    except ApiError as exc:
        if exc.status_code in (401, 403):
            raise LabelStudioAuthError(
                f"Label Studio at {connection.url} refused the API key ({exc.status_code}): check "
                f"{KEY_VAR} (a legacy token or a personal access token from Account & Settings)"
            ) from exc
        raise LabelStudioError(f"Label Studio at {connection.url}: {describe(exc)}") from exc
    except httpx.HTTPError as exc:
        raise LabelStudioUnavailable(f"cannot reach Label Studio at {connection.url} ({exc})") from exc
    return client
