"""Turn the image reference in a task into a decoded image, safely and concurrently.

A task's image is whatever Label Studio stored: ``/data/local-files/?d=<path>`` (local files
served by Label Studio), a plain path, ``/data/upload/...`` (resolved against
``LABEL_STUDIO_URL``), an http(s) URL, or a ``repo://owner/repo/rev:path`` URI (a file in a
DagsHub repository, read through its raw-content API on ``DAGSHUB_CLIENT_HOST`` with
``DAGSHUB_USER_TOKEN``: acorn.data.repo_uris). Every failure is an :class:`ImageError` for that task
only, so one bad task never fails the request Label Studio is waiting on.

Anyone who can create a task names what serve reads, so what it may read is narrow by default:

- local files only under the data root (default ``data/tiles``), symlinks resolved first;
- Label Studio's own media paths (uploads, local files, storage proxies; never ``/api``) on
  ``LABEL_STUDIO_URL``'s origin, ``repo://`` files on the DagsHub host, and any other host only
  when it is allowed by name (``--allow-host``);
- an allowed name is resolved and every address it has must be public (not loopback, private,
  link-local, reserved) unless ``--allow-private-hosts``; the connection goes to the address
  that was checked, so a DNS answer that changes between check and connect (DNS rebinding)
  cannot reach another address; redirects are followed only to URLs that pass the same checks;
- a failed fetch says "could not fetch image" whatever the cause, so tasks cannot tell an open
  port from a closed one (the cause goes to the server's log);
- decoded pixels are budgeted: per image and per request (counted from the header before any
  pixel is decoded) and for the whole process (the images every request holds at once).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import ipaddress
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urljoin, urlsplit

import httpcore
import httpx

from acorn.data import repo_uris
from acorn.model.registry import redacted

log = logging.getLogger("acorn.serve")

LOCAL_FILES_PREFIX = "/data/local-files/"
# relative URLs that name Label Studio's media (uploads, local files, storage proxies)
LABEL_STUDIO_PREFIXES = ("/data/", "/storage-data/", "/tasks/")
# the only paths fetched from Label Studio's origin, with its key: its media, never its API
_LABEL_STUDIO_MEDIA = re.compile(
    r"/data/(upload|local-files)/.*|/storage-data/.*|/tasks/\d+/(resolve|presign)/?"
)
_DAGSHUB_PATHS = re.compile(r"/api/v1/repos/[^/]+/[^/]+(/raw/.+)?")
MAX_REDIRECTS = 3
FETCH_FAILED = "could not fetch image"


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
    uri: repo_uris.RepoUri  # a file in a DagsHub repository (``repo://``), checked when parsed


def parse_reference(reference: str | None, label_studio_url: str = "") -> LocalRef | RemoteRef | RepoRef:
    """Classify a task's image reference; a Label Studio relative URL needs ``LABEL_STUDIO_URL``."""
    if not isinstance(reference, str) or not reference.strip():
        raise ImageError(f"image reference must be a non-empty string, got {type(reference).__name__}")
    if repo_uris.is_repo_uri(reference):
        try:
            return RepoRef(repo_uris.parse_repo_uri(reference))
        except repo_uris.RepoUriError as exc:
            raise ImageError(str(exc)) from None
    parts = _parsed(reference)
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


def resolve_local(reference: str, data_root: Path, base: Path | None = None) -> Path:
    """The file a local reference names, refused unless it resolves (symlinks followed) inside ``data_root``.

    A relative reference is relative to ``base`` (Label Studio's document root: local-files
    URLs are relative to it), else to ``data_root``; either way only ``data_root`` may be read.
    """
    root = data_root.resolve()
    try:
        path = ((base or data_root).resolve() / reference).resolve()  # absolute replaces: checked below
    except (OSError, ValueError) as exc:  # a NUL byte, a symlink loop
        raise ImageError(f"{reference!r}: not a usable path ({type(exc).__name__})") from exc
    if not path.is_relative_to(root):
        raise ImageError(f"{reference}: outside the data root; only files under --data-root are served")
    if not path.is_file():
        raise ImageError(f"{reference}: no such file under the data root")
    return path


def read_local(path: Path, limits: ImageLimits) -> bytes:
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ImageError(f"{path.name}: over the {limits.max_bytes}-byte image limit")
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path.name}: cannot read ({exc.strerror})") from exc


class PixelBudget:
    """Decoded pixels held at once by every request of the process: what decoded images may cost.

    PIL keeps an RGB pixel in 4 bytes, so the limit times 4 bounds the memory of the images
    that requests hold between decoding and inference. Taking is all-or-nothing and never
    waits: an image that does not fit is refused (its task gets an error), so no request can
    hold part of the budget while waiting for another's.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def take(self, pixels: int) -> bool:
        with self._lock:
            if self.held + pixels > self.limit:
                return False
            self.held += pixels
            return True

    def give(self, pixels: int) -> None:
        with self._lock:
            self.held -= pixels


class RequestPixels:
    """One request's pixels: a cap on all it decodes, and its share of the process budget.

    Decoding happens in threads, so every change is under a lock; ``close`` (when the request
    ends, answered or cancelled) gives back whatever the request still holds, and an image
    decoded after that is refused instead of taking budget nobody would give back.
    """

    def __init__(self, process: PixelBudget, limit: int) -> None:
        self.process = process
        self.limit = limit
        self.decoded = 0
        self.held = 0
        self._closed = False
        self._lock = threading.Lock()

    def reserve(self, pixels: int, name: str) -> None:
        with self._lock:
            if self._closed:
                raise ImageError(f"{name}: the request ended before it was decoded")
            if self.decoded + pixels > self.limit:
                raise ImageError(
                    f"{name}: over this request's budget of {self.limit} decoded pixels "
                    "(--max-request-pixels); send fewer or smaller images per request"
                )
            if not self.process.take(pixels):
                raise ImageError(
                    f"{name}: server busy: the images of requests in flight fill its budget of "
                    f"{self.process.limit} decoded pixels (--max-process-pixels); retry later"
                )
            self.decoded += pixels
            self.held += pixels

    def release(self, pixels: int) -> None:
        with self._lock:
            pixels = min(pixels, self.held)
            self.held -= pixels
        self.process.give(pixels)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pixels, self.held = self.held, 0
        self.process.give(pixels)


def decode_image(data: bytes, limits: ImageLimits, name: str = "image", pixels: RequestPixels | None = None):
    """Bytes -> RGB PIL image, the same pixels as the predict stage's ``load_images``.

    The size is read from the header and checked against the per-image limit and the
    budgets (``pixels``) before any pixel is decoded, so a small file that expands to
    gigabytes (a decompression bomb) costs nothing. The image is transposed in place, so
    decoding holds two copies at most (``load_images`` makes three) and one once done.
    """
    from PIL import Image, ImageOps

    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: refused as a decompression bomb ({exc})") from exc
    except Exception as exc:  # PIL raises many types; ultralytics' Image.open patch adds ImportError
        raise ImageError(f"{name}: not an image PIL can read") from exc
    with img:
        if width * height > limits.max_pixels:
            raise ImageError(
                f"{name}: {width}x{height} is over the {limits.max_pixels}-pixel limit (decompression bomb?)"
            )
        if pixels is not None:
            pixels.reserve(width * height, name)
        try:
            ImageOps.exif_transpose(img, in_place=True)
            return img.convert("RGB")
        except Exception as exc:  # truncated or corrupt pixel data
            if pixels is not None:
                pixels.release(width * height)
            raise ImageError(f"{name}: cannot decode ({type(exc).__name__})") from exc


# --- where images may be fetched from -------------------------------------------------------


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def public_address(address: str) -> bool:
    """Whether ``address`` is on the public internet: not loopback, private, link-local, reserved,
    multicast or unspecified, also when an IPv4 address hides inside an IPv6 one."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in ipaddress.IPv6Network("64:ff9b::/96"):  # NAT64
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast


class FetchPolicy:
    """Which URLs serve may fetch: checked on every task URL and every redirect, before connecting.

    The configured origins (Label Studio's, the DagsHub host) are trusted whatever their
    address (a local Label Studio is on 127.0.0.1), but only on their media paths. Any other
    host must be named in ``allow_hosts`` (``images.example.org``, or ``*.example.org`` for
    its subdomains); its addresses are checked when connecting (:class:`GuardedBackend`).
    """

    def __init__(
        self,
        label_studio_url: str = "",
        dagshub_host: str = "",
        allow_hosts: Iterable[str] = (),
        allow_private: bool = False,
    ) -> None:
        self.label_studio = _origin(label_studio_url) if label_studio_url else None
        # Label Studio may live under a path (DagsHub's: /<owner>/<repo>/annotations/de)
        self.label_studio_path = urlsplit(label_studio_url).path.rstrip("/")
        self.dagshub = _origin(dagshub_host) if dagshub_host else None
        self.allow_hosts = tuple(h.strip().lower().rstrip(".") for h in allow_hosts if h.strip())
        self.allow_private = allow_private

    def kind(self, url: str) -> str:
        """``label-studio``, ``dagshub`` or ``allowed``; :class:`ImageError` for a URL not to fetch."""
        parts = _parsed(url)
        shown = _shown(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ImageError(f"{shown}: only http(s) URLs with a host are fetched")
        if parts.username is not None or parts.password is not None:
            raise ImageError(f"{shown}: URLs with credentials in them are not fetched")
        if not _plain_path(parts.path):
            raise ImageError(f"{shown}: '.', '..' or empty segments in the path are not fetched")
        origin = _origin(url)
        path = unquote(parts.path)
        inside = (
            path.removeprefix(self.label_studio_path) if path.startswith(self.label_studio_path + "/") else ""
        )
        if origin == self.label_studio and _LABEL_STUDIO_MEDIA.fullmatch(inside):
            return "label-studio"
        if origin == self.dagshub and _DAGSHUB_PATHS.fullmatch(parts.path):
            return "dagshub"
        if origin == self.label_studio:  # Label Studio's origin, but not its media
            raise ImageError(f"{shown}: only Label Studio's media paths are fetched, not its API")
        if self.named(origin[1]):
            return "allowed"
        raise ImageError(
            f"{shown}: {origin[1]} is not an allowed image host; serve fetches from Label Studio, "
            "the DagsHub host and hosts named with --allow-host"
        )

    def trusted(self, host: str, port: int) -> bool:
        """A configured origin: connected to whatever its address (its paths are checked by ``kind``)."""
        return any(o is not None and o[1:] == (host.lower(), port) for o in (self.label_studio, self.dagshub))

    def named(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for allowed in self.allow_hosts:
            if host == allowed or (allowed.startswith("*.") and host.endswith(allowed[1:])):
                return True
        return False

    def address_allowed(self, address: str) -> bool:
        return self.allow_private or public_address(address)


def _plain_path(path: str) -> bool:
    """No dot or empty segment (also percent-encoded): the HTTP client would normalise them away."""
    segments = unquote(path).replace("\\", "/").split("/")[1:]
    return all(s not in (".", "..") for s in segments) and "" not in segments[:-1]


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Every TCP connection the fetch client opens, checked where it is made.

    A host allowed by name is resolved here, every address checked, and the connection made to
    a checked address (TLS still verifies the name): the address connected to is the one that
    was checked. Hosts that are neither configured nor allowed get no connection at all, so a
    redirect cannot reach them either.
    """

    def __init__(self, policy: FetchPolicy, resolve: Resolver = _getaddrinfo) -> None:
        self.policy = policy
        self.resolve = resolve
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable | None = None,
    ) -> httpcore.AsyncNetworkStream:
        options = {"timeout": timeout, "local_address": local_address, "socket_options": socket_options}
        if self.policy.trusted(host, port):
            return await self._inner.connect_tcp(host, port, **options)
        if not self.policy.named(host):
            raise httpcore.ConnectError(f"{host} is not an allowed image host")
        try:
            addresses = await self.resolve(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve ({exc})") from exc
        refused = [a for a in addresses if not self.policy.address_allowed(a)]
        if not addresses or refused:
            raise httpcore.ConnectError(
                f"{host} resolves to {', '.join(refused) or 'nothing'}: not a public address "
                "(--allow-private-hosts allows it)"
            )
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, **options)
            except httpcore.ConnectError as exc:
                failure = exc
        raise httpcore.ConnectError(str(failure))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_client(
    policy: FetchPolicy, timeout_s: float, max_connections: int, resolve: Resolver = _getaddrinfo
) -> httpx.AsyncClient:
    """The HTTP client for task images: every connection through :class:`GuardedBackend`.

    Redirects are followed by :class:`ImageSource` (each target checked by the policy), and
    proxies from the environment are ignored: a proxy would connect where no check could see.
    """
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx has no public way to give its pool a network backend; the pool is all it holds
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=max_connections,
        network_backend=GuardedBackend(policy, resolve),
    )
    return httpx.AsyncClient(
        transport=transport, timeout=httpx.Timeout(timeout_s), follow_redirects=False, trust_env=False
    )


class LabelStudioAuth:
    """Credentials for Label Studio's media URLs, never sent to any other host or path.

    A legacy token goes as ``Authorization: Token <key>``. A personal access token is a JWT
    refresh token: it is exchanged at ``/api/token/refresh`` for a short-lived access token
    (``Bearer``), which is refreshed again when Label Studio answers 401.
    """

    def __init__(self, url: str, api_key: str) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self._access: str | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"LabelStudioAuth({self.url!r}, key={'set' if self.api_key else 'unset'})"

    @property
    def is_personal_token(self) -> bool:
        return _is_jwt(self.api_key)

    async def headers(self, client: httpx.AsyncClient) -> dict[str, str]:
        if not self.api_key:
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
            log.warning("exchanging the personal access token at %s failed: %s", self.url, exc)
            raise ImageError(
                f"LABEL_STUDIO_API_KEY looks like a personal access token but {self.url}/api/token/refresh "
                "did not exchange it; check the token, or use a legacy token"
            ) from exc


class DagsHubFiles:
    """Where ``repo://`` files are read from: a DagsHub host and its token, sent to that host only.

    The host is ``DAGSHUB_CLIENT_HOST`` (else dagshub.com) and the token ``DAGSHUB_USER_TOKEN``
    (public repositories need none), as for the dagshub client. A URI without a revision names
    the repository's default branch, looked up once per repository.
    """

    def __init__(self, host: str | None = None, token: str | None = None) -> None:
        self.host = (host or repo_uris.dagshub_host()).rstrip("/")
        self.token = token if token is not None else os.environ.get(repo_uris.TOKEN_VAR, "")
        self._branches: dict[tuple[str, str], str] = {}
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"DagsHubFiles({self.host!r}, token={'set' if self.token else 'unset'})"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def url(self, ref: repo_uris.RepoUri, get: Callable[[str], Awaitable[bytes]]) -> str:
        """The raw-content URL of ``ref``; ``get`` fetches the repository's description when needed."""
        if ref.revision is not None:
            return repo_uris.raw_url(ref, self.host)
        key = (ref.owner, ref.repo)
        async with self._lock:  # one look-up per repository, however many tasks ask at once
            if key not in self._branches:
                api = repo_uris.repo_api_url(self.host, ref.owner, ref.repo)
                try:
                    self._branches[key] = repo_uris.parse_default_branch(await get(api), api)
                except repo_uris.RepoUriError as exc:
                    raise ImageError(str(exc)) from None
        return repo_uris.raw_url(ref, self.host, self._branches[key])


class ImageSource:
    """Loads many tasks' images at once: local reads and decodes in threads, URLs over one client.

    At most ``concurrency`` images are read or fetched and decoded at once (across requests), so
    the bytes waiting to be decoded are bounded too.
    """

    def __init__(
        self,
        data_root: Path,
        limits: ImageLimits,
        client: httpx.AsyncClient,
        policy: FetchPolicy,
        auth: LabelStudioAuth,
        concurrency: int = 16,
        dagshub: DagsHubFiles | None = None,
        document_root: Path | None = None,
    ) -> None:
        self.data_root = data_root
        self.document_root = document_root
        self.limits = limits
        self.client = client
        self.policy = policy
        self.auth = auth
        self.dagshub = dagshub or DagsHubFiles()
        self._slots = asyncio.Semaphore(concurrency)

    async def load(self, references: Sequence[str | None], pixels: RequestPixels | None = None) -> list:
        """One decoded image or :class:`ImageError` per reference, in order; never raises."""
        return await asyncio.gather(*(self._load_one(r, pixels) for r in references))

    async def _load_one(self, reference: str | None, pixels: RequestPixels | None):
        try:
            ref = parse_reference(reference, self.auth.url)
            async with self._slots:
                if isinstance(ref, RepoRef):
                    url = await self.dagshub.url(ref.uri, self._get)
                    data, name = await self._get(url), _shown(url)
                elif isinstance(ref, RemoteRef):
                    data, name = await self._get(ref.url), _shown(ref.url)
                else:
                    path = resolve_local(ref.path, self.data_root, self.document_root)
                    data, name = await asyncio.to_thread(read_local, path, self.limits), ref.path
                return await asyncio.to_thread(decode_image, data, self.limits, name, pixels)
        except ImageError as exc:
            log.warning("task image skipped: %s", exc)
            return exc

    async def _get(self, url: str) -> bytes:
        """GET ``url`` under the policy, following at most MAX_REDIRECTS redirects, each checked anew.

        Credentials go only with a URL whose own kind calls for them: Label Studio's key to its
        media paths, the DagsHub token to the DagsHub host's repository paths.
        """
        for _ in range(MAX_REDIRECTS + 1):
            kind = self.policy.kind(url)
            headers = await self._headers(kind)
            try:
                status, location, data = await self._get_once(url, headers)
                if status == 401 and kind == "label-studio" and self.auth.is_personal_token:
                    await self.auth.expire(headers)  # the access token expired: exchange the PAT again, once
                    status, location, data = await self._get_once(url, await self._headers(kind))
            except httpx.HTTPError as exc:
                raise _fetch_failed(url, kind, f"{type(exc).__name__}: {exc}") from None
            if location is None:
                if status >= 400:
                    raise _fetch_failed(url, kind, f"HTTP {status}", status)
                return data
            url = urljoin(url, location)
        raise _fetch_failed(url, "allowed", f"more than {MAX_REDIRECTS} redirects")

    async def _headers(self, kind: str) -> dict[str, str]:
        if kind == "label-studio":
            return await self.auth.headers(self.client)
        if kind == "dagshub":
            return self.dagshub.headers()
        return {}

    async def _get_once(self, url: str, headers: dict[str, str]) -> tuple[int, str | None, bytes]:
        """``(status, redirect location or None, body)``; a body over the byte limit is an ImageError."""
        async with self.client.stream("GET", url, headers=headers) as resp:
            if resp.is_redirect:
                return resp.status_code, resp.headers["location"], b""
            if resp.status_code >= 400:
                return resp.status_code, None, b""
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.limits.max_bytes:
                raise ImageError(f"{_shown(url)}: over the {self.limits.max_bytes}-byte image limit")
            buf = bytearray()
            async for chunk in resp.aiter_bytes():
                buf += chunk
                if len(buf) > self.limits.max_bytes:
                    raise ImageError(f"{_shown(url)}: over the {self.limits.max_bytes}-byte image limit")
            return resp.status_code, None, bytes(buf)


def _fetch_failed(url: str, kind: str, cause: str, status: int | None = None) -> ImageError:
    """The task's error for a failed fetch: the same words for a closed port, a refused address,
    a timeout or an error status, so tasks cannot map the network; the cause goes to the log.

    Only the configured origins (whose ports are no secret) add the status and what to set.
    """
    log.warning("fetching %s failed: %s", _shown(url), cause)
    hint = ""
    if kind == "label-studio" and status is not None:
        hint = f" (HTTP {status})" + (
            "; set LABEL_STUDIO_API_KEY to a token that can read this project" if status in (401, 403) else ""
        )
    elif kind == "dagshub" and status is not None:
        hint = f" (HTTP {status})" + (
            f"; set {repo_uris.TOKEN_VAR} to a DagsHub token that can read this repository"
            if status in (401, 403)
            else ""
        )
    return ImageError(f"{FETCH_FAILED} {_shown(url)}{hint}")


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


def _parsed(url: str):
    """``urlsplit(url)``, its port checked: a malformed URL (an unclosed IPv6 bracket, a port out of
    range) is the task's error, not an exception that would fail the whole request."""
    try:
        parts = urlsplit(url)
        if parts.port == 0:  # reading the port checks it: ValueError out of range
            raise ValueError("port 0")
    except ValueError:
        raise ImageError(f"{_shown(url)}: not a valid URL") from None
    return parts


def _shown(url: str) -> str:
    """A URL for messages and logs: without credentials, nor its query (a presigned credential)."""
    try:
        parts = urlsplit(redacted(url))
    except ValueError:
        return "(a malformed URL)"
    return parts._replace(query="", fragment="").geturl() if parts.query or parts.fragment else parts.geturl()
