"""``repo://`` URIs: files in a DagsHub repository, read through its raw-content API.

The tutorial this project grew from names images ``repo://owner/repo/rev:prefix/path`` (the
dagshub client's data-engine form). Label Studio tasks and the ML backend need bytes, not a
URI: ``raw_url`` maps one to ``<host>/api/v1/repos/<owner>/<repo>/raw/<rev>/<prefix>/<path>``
(a pure function, the same mapping as the client's ``RepoAPI.raw_api_url``), and
``RepoFiles`` fetches it with the DagsHub token, within a size and a time limit, so that one
huge or stalled file cannot hang a batch of predictions.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import quote, unquote

import httpx

from acorn.runtime.errors import AcornError

SCHEME = "repo://"
HOST_VAR = "DAGSHUB_CLIENT_HOST"  # the dagshub client's own variable, so both agree on the host
DEFAULT_HOST = "https://dagshub.com"
TOKEN_VAR = "DAGSHUB_USER_TOKEN"
MAX_BYTES = 50 * 1024 * 1024  # far above any tile or frame; a larger file is a wrong URI
TIMEOUT_S = 30.0  # the whole download, not one read: a server that trickles bytes is cut off too

# owner and repository names as the dagshub client accepts them
_URI = re.compile(r"repo://(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+)(?P<rest>/.*)?")


class RepoUriError(AcornError):
    """A ``repo://`` URI is malformed, or its file cannot be read (the message names the URI)."""


@dataclass(frozen=True)
class RepoUri:
    owner: str
    repo: str
    revision: str | None  # None: the repository's default branch
    path: str  # inside the repository, no leading slash


def dagshub_host(env: Mapping[str, str] | None = None) -> str:
    """The DagsHub instance: ``DAGSHUB_CLIENT_HOST`` (as for the dagshub client), else dagshub.com."""
    env = os.environ if env is None else env
    return (env.get(HOST_VAR) or DEFAULT_HOST).rstrip("/")


def is_repo_uri(value: str) -> bool:
    return value.startswith(SCHEME)


def parse_repo_uri(uri: str) -> RepoUri:
    """Split ``repo://owner/repo[/rev:]path``; the revision ends at the first colon, as in the client."""
    match = _URI.fullmatch(uri)
    if match is None or not match["rest"]:
        raise RepoUriError(f"{uri!r}: expected repo://<owner>/<repo>/[<revision>:]<path to a file>")
    revision, path = None, match["rest"]
    if ":" in path:
        revision, path = path.split(":", 1)
        revision = revision.strip("/") or None
    path = path.strip("/")
    if not path or not _plain_segments(path):
        raise RepoUriError(f"{uri!r}: the path must name a file inside the repository (no '..', no '//')")
    # a dot segment in the owner, repository or revision would be normalised away by the HTTP
    # client, sending the DagsHub token to another API path than the file's
    if not _plain_segments(match["owner"]) or not _plain_segments(match["repo"]):
        raise RepoUriError(f"{uri!r}: owner and repository must be names, not '.' or '..'")
    if revision is not None and not _plain_segments(revision):
        raise RepoUriError(f"{uri!r}: the revision must be a branch, tag or commit (no '..', no '//')")
    return RepoUri(match["owner"], match["repo"], revision, path)


def _plain_segments(value: str) -> bool:
    """No empty, ``.`` or ``..`` segment, also not percent-encoded or with backslashes."""
    segments = unquote(value).replace("\\", "/").split("/")
    return all(s not in ("", ".", "..") for s in segments)


def under(root: str, path: str) -> str:
    """The ``repo://`` URI of ``path`` (relative, ``/``-separated) under ``root``.

    ``root`` names a repository and, optionally, a revision and a folder:
    ``repo://owner/repo/main:`` (the repository's root at ``main``), ``repo://owner/repo/main:data``
    or ``repo://owner/repo`` (the default branch). The result is checked as any URI is.
    """
    if not is_repo_uri(root):
        raise RepoUriError(f"{root!r}: expected repo://<owner>/<repo>[/<revision>:][<folder>]")
    sep = "" if root.endswith((":", "/")) else "/"
    uri = f"{root}{sep}{path.lstrip('/')}"
    parse_repo_uri(uri)
    return uri


def repo_api_url(host: str, owner: str, repo: str) -> str:
    """The repository's description in DagsHub's API (it names the default branch)."""
    return f"{host.rstrip('/')}/api/v1/repos/{owner}/{repo}"


def parse_default_branch(body: bytes, url: str) -> str:
    """The default branch from the description ``url`` answered; ``RepoUriError`` if it has none."""
    try:
        return str(json.loads(body)["default_branch"])
    except (ValueError, KeyError, TypeError):
        raise RepoUriError(
            f"{url}: answered without a default_branch; name the revision in the repo:// URI"
        ) from None


def raw_url(uri: str | RepoUri, host: str, default_revision: str = "main") -> str:
    """The raw-content URL of ``uri`` on ``host``; ``default_revision`` is used when it names none."""
    ref = parse_repo_uri(uri) if isinstance(uri, str) else uri
    revision = ref.revision or default_revision
    return "/".join(
        (
            host.rstrip("/"),
            "api/v1/repos",
            ref.owner,
            ref.repo,
            "raw",
            quote(revision, safe="/"),
            quote(ref.path, safe="/"),
        )
    )


class RepoFiles:
    """Reads ``repo://`` files from one DagsHub host with one HTTP client (reuse it for a batch).

    The token (``DAGSHUB_USER_TOKEN`` unless given) is sent as ``Authorization: Bearer``, as the
    dagshub client does; public repositories need none. Redirects (to storage) are followed, and
    httpx drops the token on a redirect to another host. A URI without a revision reads the
    repository's default branch, looked up once per repository.
    """

    def __init__(
        self,
        host: str | None = None,
        token: str | None = None,
        *,
        max_bytes: int = MAX_BYTES,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.host = (host or dagshub_host()).rstrip("/")
        token = token if token is not None else os.environ.get(TOKEN_VAR)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._client = httpx.Client(headers=headers, timeout=timeout_s, follow_redirects=True)
        self._default_branches: dict[tuple[str, str], str] = {}

    def url(self, uri: str) -> str:
        ref = parse_repo_uri(uri)
        if ref.revision is not None:
            return raw_url(ref, self.host)
        return raw_url(ref, self.host, self.default_branch(ref.owner, ref.repo))

    def default_branch(self, owner: str, repo: str) -> str:
        key = (owner, repo)
        if key not in self._default_branches:
            url = repo_api_url(self.host, owner, repo)
            self._default_branches[key] = parse_default_branch(self._get(url, f"repo://{owner}/{repo}"), url)
        return self._default_branches[key]

    def read(self, uri: str) -> bytes:
        """The bytes of the file ``uri`` names; ``RepoUriError`` if missing, refused, too large or slow."""
        return self._get(self.url(uri), uri)

    def _get(self, url: str, uri: str) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        try:
            with self._client.stream("GET", url) as response:
                if response.status_code in (401, 403):
                    raise RepoUriError(
                        f"{uri}: {self.host} refused access (HTTP {response.status_code}); "
                        f"set {TOKEN_VAR} to a token that can read {url.split('/raw/')[0]}"
                    )
                if response.status_code != 200:
                    raise RepoUriError(f"{uri}: {url} answered HTTP {response.status_code}")
                declared = int(response.headers.get("content-length") or 0)
                if declared > self.max_bytes:
                    raise RepoUriError(f"{uri}: {declared} bytes, over the limit of {self.max_bytes}")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise RepoUriError(f"{uri}: over the limit of {self.max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise RepoUriError(f"{uri}: {url} took over {self.timeout_s:g} s")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.TimeoutException:
            raise RepoUriError(f"{uri}: {url} did not answer within {self.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise RepoUriError(f"{uri}: cannot reach {self.host} ({type(exc).__name__})") from None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RepoFiles:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def fetch(uri: str, host: str | None = None, token: str | None = None) -> bytes:
    """One file, with a client of its own; for many files keep one ``RepoFiles`` open."""
    with RepoFiles(host, token) as files:
        return files.read(uri)
