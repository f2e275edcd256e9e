"""Turn the image reference in a task into a decoded image, safely and concurrently.

A task's image is whatever Label Studio stored: ``/data/local-files/?d=<path>`` (local files
served by Label Studio), a plain path, ``/data/upload/...`` (resolved against
``LABEL_STUDIO_URL``), an http(s) URL, or a ``repo://owner/repo/rev:path`` URI (a file in a
DagsHub repository, read through its raw-content API on ``DAGSHUB_CLIENT_HOST`` with
``DAGSHUB_USER_TOKEN``: acorn.uris). Local files are read straight from the data root
(no HTTP round trip); URLs are fetched concurrently. Every failure is an :class:`ImageError`
for that task only, so one bad task never fails the request Label Studio is waiting on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from acorn import uris
from acorn.detection import load_images

log = logging.getLogger("acorn.serve")

LOCAL_FILES_PREFIX = "/data/local-files/"
# relative URLs that belong to Label Studio itself (uploads, storages, its API), not to the disk
LABEL_STUDIO_PREFIXES = ("/data/", "/storage-data/", "/tasks/", "/api/")


class ImageError(Exception):
    """The image of one task cannot be used; the message is shown in that task's prediction."""


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 40_000_000  # 8K frames pass; far above a tile, far below a decompression bomb


@dataclass(frozen=True)
class LocalRef:
    path: str  # as written in the task, checked against the data root when read


@dataclass(frozen=True)
class RemoteRef:
    url: str


@dataclass(frozen=True)
class RepoRef:
    uri: uris.RepoUri  # a file in a DagsHub repository (``repo://``), checked when parsed


def parse_reference(reference: str | None, label_studio_url: str = "") -> LocalRef | RemoteRef | RepoRef:
    """Classify a task's image reference; a Label Studio relative URL needs ``LABEL_STUDIO_URL``."""
    if not isinstance(reference, str) or not reference.strip():
        raise ImageError(f"image reference must be a non-empty string, got {reference!r}")
    if uris.is_repo_uri(reference):
        try:
            return RepoRef(uris.parse_repo_uri(reference))
        except uris.RepoUriError as exc:
            raise ImageError(str(exc)) from None
    parts = urlsplit(reference)
    if parts.scheme in ("http", "https"):
        return RemoteRef(reference)
    if parts.scheme and len(parts.scheme) > 1:  # one letter: a Windows drive, not a scheme
        raise ImageError(f"unsupported URL scheme {parts.scheme!r} in {_shown(reference)}")
    if parts.path.startswith(LOCAL_FILES_PREFIX):
        d = parse_qs(parts.query).get("d")
        if not d:
            raise ImageError(f"{_shown(reference)}: local-files URL without ?d=<path>")
        return LocalRef(d[0])
    if parts.path.startswith(LABEL_STUDIO_PREFIXES):
        if not label_studio_url:
            raise ImageError(
                f"{_shown(reference)} is a Label Studio URL: set LABEL_STUDIO_URL (and LABEL_STUDIO_API_KEY)"
            )
        return RemoteRef(urljoin(label_studio_url.rstrip("/") + "/", reference.lstrip("/")))
    return LocalRef(reference)


def resolve_local(reference: str, data_root: Path) -> Path:
    """The file a local reference names, refused unless it resolves (symlinks followed) inside ``data_root``."""
    root = data_root.resolve()
    try:
        path = (root / reference).resolve()  # an absolute reference replaces root: checked below
    except (OSError, ValueError) as exc:  # a NUL byte, a symlink loop
        raise ImageError(f"{reference!r}: not a usable path ({exc})") from exc
    if not path.is_relative_to(root):
        raise ImageError(f"{reference}: outside the data root; only files under --data-root are served")
    if not path.is_file():
        raise ImageError(f"{reference}: no such file under the data root")
    return path


def read_local(path: Path, limits: ImageLimits) -> bytes:
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ImageError(f"{path.name}: {size} bytes is over the {limits.max_bytes}-byte image limit")
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path.name}: cannot read ({exc.strerror})") from exc


def decode_image(data: bytes, limits: ImageLimits, name: str = "image"):
    """Bytes -> RGB PIL image, decoded exactly as the predict stage decodes tiles.

    The size is checked from the header before any pixel is decoded, so a small file that
    expands to gigabytes (a decompression bomb) costs nothing.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: refused as a decompression bomb ({exc})") from exc
    except Exception as exc:  # PIL raises many types; ultralytics' Image.open patch adds ImportError
        raise ImageError(f"{name}: not an image PIL can read ({len(data)} bytes)") from exc
    if width * height > limits.max_pixels:
        raise ImageError(
            f"{name}: {width}x{height} is over the {limits.max_pixels}-pixel limit (decompression bomb?)"
        )
    try:
        return load_images([io.BytesIO(data)])[0]
    except Exception as exc:  # truncated or corrupt pixel data
        raise ImageError(f"{name}: cannot decode ({type(exc).__name__}: {exc})") from exc


class LabelStudioAuth:
    """Credentials for Label Studio's own URLs, never sent to any other host.

    A legacy token goes as ``Authorization: Token <key>``. A personal access token is a JWT
    refresh token: it is exchanged at ``/api/token/refresh`` for a short-lived access token
    (``Bearer``), which is refreshed again when Label Studio answers 401.
    """

    def __init__(self, url: str, api_key: str) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self._origin = _origin(url) if url else None
        self._access: str | None = None
        self._lock = asyncio.Lock()

    @property
    def is_personal_token(self) -> bool:
        return _is_jwt(self.api_key)

    def applies_to(self, url: str) -> bool:
        return bool(self.api_key) and self._origin is not None and _origin(url) == self._origin

    async def headers(self, client: httpx.AsyncClient, url: str) -> dict[str, str]:
        if not self.applies_to(url):
            return {}
        if not self.is_personal_token:
            return {"Authorization": f"Token {self.api_key}"}
        async with self._lock:
            if self._access is None:
                self._access = await self._exchange(client)
            return {"Authorization": f"Bearer {self._access}"}

    async def expire(self, rejected: dict[str, str]) -> None:
        """Forget the access token Label Studio ``rejected`` (unless a concurrent fetch already did)."""
        async with self._lock:
            if rejected.get("Authorization") == f"Bearer {self._access}":
                self._access = None

    async def _exchange(self, client: httpx.AsyncClient) -> str:
        try:
            resp = await client.post(f"{self.url}/api/token/refresh", json={"refresh": self.api_key})
            resp.raise_for_status()
            return resp.json()["access"]
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise ImageError(
                f"LABEL_STUDIO_API_KEY looks like a personal access token but {self.url}/api/token/refresh "
                f"did not exchange it ({exc}); check the token, or use a legacy token"
            ) from exc


class DagsHubFiles:
    """Where ``repo://`` files are read from: a DagsHub host and its token, sent to that host only.

    The host is ``DAGSHUB_CLIENT_HOST`` (else dagshub.com) and the token ``DAGSHUB_USER_TOKEN``
    (public repositories need none), as for the dagshub client. A URI without a revision names
    the repository's default branch, looked up once per repository.
    """

    def __init__(self, host: str | None = None, token: str | None = None) -> None:
        self.host = (host or uris.dagshub_host()).rstrip("/")
        self.token = token if token is not None else os.environ.get(uris.TOKEN_VAR, "")
        self._origin = _origin(self.host)
        self._branches: dict[tuple[str, str], str] = {}
        self._lock = asyncio.Lock()

    def applies_to(self, url: str) -> bool:
        return _origin(url) == self._origin

    def headers(self, url: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token and self.applies_to(url) else {}

    async def url(self, ref: uris.RepoUri, get: Callable[[str], Awaitable[bytes]]) -> str:
        """The raw-content URL of ``ref``; ``get`` fetches the repository's description when needed."""
        if ref.revision is not None:
            return uris.raw_url(ref, self.host)
        key = (ref.owner, ref.repo)
        async with self._lock:  # one look-up per repository, however many tasks ask at once
            if key not in self._branches:
                api = uris.repo_api_url(self.host, ref.owner, ref.repo)
                try:
                    self._branches[key] = uris.parse_default_branch(await get(api), api)
                except uris.RepoUriError as exc:
                    raise ImageError(str(exc)) from None
        return uris.raw_url(ref, self.host, self._branches[key])


class ImageSource:
    """Loads many tasks' images at once: local reads and decodes in threads, URLs over one client."""

    def __init__(
        self,
        data_root: Path,
        limits: ImageLimits,
        client: httpx.AsyncClient,
        auth: LabelStudioAuth,
        concurrency: int = 16,
        dagshub: DagsHubFiles | None = None,
    ) -> None:
        self.data_root = data_root
        self.limits = limits
        self.client = client
        self.auth = auth
        self.dagshub = dagshub or DagsHubFiles()
        self._slots = asyncio.Semaphore(concurrency)

    async def load(self, references: Sequence[str | None]) -> list:
        """One decoded image or :class:`ImageError` per reference, in order; never raises."""
        return await asyncio.gather(*(self._load_one(r) for r in references))

    async def _load_one(self, reference: str | None):
        try:
            ref = parse_reference(reference, self.auth.url)
            async with self._slots:
                if isinstance(ref, RepoRef):
                    url = await self.dagshub.url(ref.uri, self._fetch_from_dagshub)
                    data, name = await self._fetch_from_dagshub(url), _shown(url)
                elif isinstance(ref, RemoteRef):
                    data, name = await self._fetch(ref.url), _shown(ref.url)
                else:
                    path = resolve_local(ref.path, self.data_root)
                    data, name = await asyncio.to_thread(read_local, path, self.limits), ref.path
            return await asyncio.to_thread(decode_image, data, self.limits, name)
        except ImageError as exc:
            log.warning("task image skipped: %s", exc)
            return exc

    async def _fetch_from_dagshub(self, url: str) -> bytes:
        """A ``repo://`` file's raw URL (or its repository's description) with the DagsHub token."""
        try:
            data, status = await self._get(url, self.dagshub.headers(url))
        except httpx.HTTPError as exc:
            raise ImageError(f"cannot fetch {_shown(url)}: {type(exc).__name__} {exc}") from exc
        if status in (401, 403):
            raise ImageError(
                f"{_shown(url)}: HTTP {status}; set {uris.TOKEN_VAR} to a DagsHub token that can read "
                "this repository"
            )
        if status >= 400:
            raise ImageError(f"{_shown(url)}: HTTP {status}")
        return data

    async def _fetch(self, url: str) -> bytes:
        try:
            headers = await self.auth.headers(self.client, url)
            resp_bytes, status = await self._get(url, headers)
            if status == 401 and self.auth.is_personal_token and self.auth.applies_to(url):
                await self.auth.expire(headers)  # the access token expired: exchange the PAT again, once
                resp_bytes, status = await self._get(url, await self.auth.headers(self.client, url))
        except httpx.HTTPError as exc:
            raise ImageError(f"cannot fetch {_shown(url)}: {type(exc).__name__} {exc}") from exc
        if status == 401 or status == 403:
            raise ImageError(
                f"{_shown(url)}: HTTP {status}; set LABEL_STUDIO_API_KEY to a token that can read this project"
            )
        if status >= 400:
            raise ImageError(f"{_shown(url)}: HTTP {status}")
        return resp_bytes

    async def _get(self, url: str, headers: dict[str, str]) -> tuple[bytes, int]:
        async with self.client.stream("GET", url, headers=headers) as resp:
            if resp.status_code >= 400:
                return b"", resp.status_code
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.limits.max_bytes:
                raise ImageError(
                    f"{_shown(url)}: {declared} bytes is over the {self.limits.max_bytes}-byte image limit"
                )
            buf = bytearray()
            async for chunk in resp.aiter_bytes():
                buf += chunk
                if len(buf) > self.limits.max_bytes:
                    raise ImageError(f"{_shown(url)}: over the {self.limits.max_bytes}-byte image limit")
            return bytes(buf), resp.status_code


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _is_jwt(token: str) -> bool:
    """A personal access token is a JWT (header.payload.signature); legacy tokens are hex."""
    pieces = token.split(".")
    if len(pieces) != 3:
        return False
    try:
        header = json.loads(base64.urlsafe_b64decode(pieces[0] + "=" * (-len(pieces[0]) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(header, dict) and "alg" in header


def _shown(url: str) -> str:
    """A URL for messages and logs: without its query, which may hold a presigned credential."""
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl() if parts.query else url
