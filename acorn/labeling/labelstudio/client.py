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

from acorn.atomic import atomic_path
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
    """``KEY=VALUE`` lines of a ``.env`` file (comments, blanks and ``export`` allowed)."""
    path = Path(path)
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        key, value = _parse_line(line)
        if key:
            values[key] = value
    return values


def _parse_line(line: str) -> tuple[str | None, str]:
    text = line.strip()
    if not text or text.startswith("#") or "=" not in text:
        return None, ""
    if text.startswith("export "):
        text = text[len("export ") :].lstrip()
    key, value = text.split("=", 1)
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return key.strip(), value


def update_dotenv(path: str | os.PathLike[str], values: dict[str, str]) -> None:
    """Set ``values`` in a ``.env`` file, keeping every other line (and its order) as it was.

    Written atomically and readable only by the owner: it holds an API key.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    pending = dict(values)
    out: list[str] = []
    for line in lines:
        key, _ = _parse_line(line)
        if key in pending:
            out.append(f"{key}={pending.pop(key)}")
        else:
            out.append(line)
    out.extend(f"{k}={v}" for k, v in pending.items())
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(out) + "\n", encoding="utf-8")
        tmp.chmod(0o600)


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


def check_health(url: str, timeout: float = 5.0) -> None:
    """Raise ``LabelStudioUnavailable`` naming ``url`` unless ``/health`` answers."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/health", timeout=timeout)
    except httpx.HTTPError as exc:
        raise LabelStudioUnavailable(
            f"cannot reach Label Studio at {url} ({type(exc).__name__}: {exc}); "
            "start it with `acorn labelstudio start` or set LABEL_STUDIO_URL"
        ) from exc
    if response.status_code != 200:
        raise LabelStudioUnavailable(
            f"Label Studio at {url} is not healthy: GET /health answered {response.status_code}"
        )


def connect(connection: Connection, timeout: float = 300.0) -> LabelStudio:
    """An SDK client after checking that the server is up and accepts the key.

    Checking first turns a refused connection deep inside a bulk call into one clear error
    before anything is written.
    """
    from label_studio_sdk import LabelStudio
    from label_studio_sdk.core.api_error import ApiError

    check_health(connection.url)
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
