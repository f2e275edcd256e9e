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

import email.utils
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import httpx
from dotenv import dotenv_values, set_key

from acorn.runtime.errors import AcornError

if TYPE_CHECKING:
    from label_studio_sdk import LabelStudio

log = logging.getLogger(__name__)
T = TypeVar("T")

URL_VAR = "LABEL_STUDIO_URL"
KEY_VAR = "LABEL_STUDIO_API_KEY"
DEFAULT_URL = "http://127.0.0.1:8080"


class LabelStudioError(AcornError):
    """A Label Studio call failed; the message names the server and what to do."""


class LabelStudioUnavailable(LabelStudioError):
    """The server cannot be reached: nothing was read or written."""


class LabelStudioAuthError(LabelStudioError):
    """The server answered but refused the API key."""


def describe(exc: BaseException, limit: int = 300) -> str:
    """A short reason for a failed call: the status and body of an API error, never its headers
    (they carry session cookies); a long body (a proxy's HTML page) is cut to ``limit`` characters."""
    status = getattr(exc, "status_code", None)
    if status is not None:
        body = getattr(exc, "body", None)
        if isinstance(body, dict):
            body = body.get("validation_errors") or body.get("detail") or body
        text = " ".join(str(body).split())
        return f"HTTP {status}: {text[:limit]}{'...' if len(text) > limit else ''}"
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

    The local server polls it while starting and reports it in ``status``.
    """
    try:
        response = httpx.get(f"{url.rstrip('/')}/health", timeout=timeout)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if response.status_code != 200:
        return f"GET /health answered {response.status_code}"
    return None


# ---- retries ------------------------------------------------------------------------------------
# Statuses that say "not now" rather than "no": a timeout at a proxy, a rate limit, a server error
# or a gateway with no server behind it. Anything else (400, 401, 404, ...) will not change on retry.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How long acorn keeps trying a Label Studio call before it gives up with a clear error.

    ``tries`` attempts in all; between two, it waits what the server's ``Retry-After`` asks, or
    ``backoff`` seconds doubled after every try, never more than ``max_wait``. ``timeout`` bounds
    each HTTP request. The longest a call can take before its error is therefore
    ``tries * timeout`` plus the waits (defaults: 4 x 60 s + 1 + 2 + 4 s).

    The SDK's own retries are switched off (``max_retries=0``): they would resend a bulk import
    after a timeout without checking what the first one did. acorn retries whole operations
    instead, each of which reads the project's state first and only does what is missing.
    """

    tries: int = 4
    backoff: float = 1.0
    max_wait: float = 30.0
    timeout: float = 60.0

    def delay(self, failed_tries: int, exc: BaseException) -> float:
        """Seconds to wait after the ``failed_tries``-th failure."""
        asked = retry_after(exc)
        wait = asked if asked is not None else self.backoff * 2 ** (failed_tries - 1)
        return min(max(wait, 0.0), self.max_wait)


def retry_after(exc: BaseException) -> float | None:
    """The wait a 429/503 answer asks for in its ``Retry-After`` header (seconds or an HTTP date)."""
    headers = getattr(exc, "headers", None)
    if not isinstance(headers, Mapping):
        return None
    value = next((str(v) for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()


def is_retryable(exc: BaseException) -> bool:
    """A failure that may go away: no connection, a timeout, a dropped connection, or an API
    error with a ``RETRY_STATUSES`` status. A bad URL, a refused key or a rejected request will not."""
    if isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError):
        return True
    from label_studio_sdk.core.api_error import ApiError

    return isinstance(exc, ApiError) and exc.status_code in RETRY_STATUSES


def with_retries(
    url: str,
    what: str,
    attempt: Callable[[], T],
    policy: RetryPolicy,
) -> T:
    """``attempt()`` until it succeeds, a failure is not retryable, or ``policy.tries`` are spent.

    ``attempt`` must be safe to run again from the start after any failure, including one
    where the server did the work and only its answer was lost: acorn's operations re-read
    the project's state and do only what is missing. ``what`` says what was being done, for
    the error: "Label Studio at <url> did not answer pushing 50 tasks to project 'acorn'
    after 4 tries ...".
    """
    from label_studio_sdk.core.api_error import ApiError

    started = time.monotonic()
    last: BaseException | None = None
    for tries in range(1, policy.tries + 1):
        try:
            return attempt()
        except (httpx.TransportError, ApiError) as exc:
            if not is_retryable(exc):
                raise _refused(url, what, exc) from exc
            last = exc
        if tries < policy.tries:
            wait = policy.delay(tries, last)
            log.warning(
                "Label Studio at %s: %s failed (%s); try %d of %d in %.1f s",
                url,
                what,
                describe(last),
                tries + 1,
                policy.tries,
                wait,
            )
            time.sleep(wait)
    assert last is not None
    spent = time.monotonic() - started
    if isinstance(last, httpx.ConnectError):
        message = (
            f"cannot reach Label Studio at {url} while {what} ({policy.tries} tries over {spent:.0f} s; "
            f"{describe(last)}): start it with `acorn labelstudio start` or set {URL_VAR}"
        )
    else:
        message = (
            f"Label Studio at {url} did not answer {what} after {policy.tries} tries over {spent:.0f} s "
            f"({describe(last)})"
        )
    raise LabelStudioUnavailable(
        f"{message}; re-run when it answers: what was done is keyed by tile id and is not done twice"
    ) from last


def _refused(url: str, what: str, exc: BaseException) -> LabelStudioError:
    status = getattr(exc, "status_code", None)
    if status in (401, 403):
        return LabelStudioAuthError(
            f"Label Studio at {url} refused the API key ({status}) while {what}: check {KEY_VAR} "
            "(a legacy token or a personal access token from Account & Settings)"
        )
    if status is None:
        return LabelStudioUnavailable(f"cannot reach Label Studio at {url} while {what}: {describe(exc)}")
    return LabelStudioError(f"Label Studio at {url} rejected a request while {what}: {describe(exc)}")


def open_client(connection: Connection, timeout: float) -> LabelStudio:
    """One try at an SDK client: ``/health`` answers, then the server accepts the key.

    Failures are left raw for ``with_retries`` to judge. Checking first turns a refused
    connection deep inside a bulk call into one clear error before anything is written.
    """
    from label_studio_sdk import LabelStudio
    from label_studio_sdk.core.api_error import ApiError

    response = httpx.get(f"{connection.url}/health", timeout=timeout)
    if response.status_code != 200:
        raise ApiError(
            status_code=response.status_code,
            headers=dict(response.headers),
            body=f"GET /health answered {response.status_code}",
        )
    client = LabelStudio(base_url=connection.url, api_key=connection.api_key, timeout=timeout, max_retries=0)
    client.users.whoami()
    return client


def connect(connection: Connection, retry: RetryPolicy | None = None) -> LabelStudio:
    """An SDK client after checking that the server is up and accepts the key, retrying under ``retry``."""
    policy = retry or RetryPolicy()
    return with_retries(connection.url, "connecting", lambda: open_client(connection, policy.timeout), policy)
