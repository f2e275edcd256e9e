"""A fault-injecting HTTP proxy on 127.0.0.1 in front of a real Label Studio (tests only).

Requests pass through to the server unless a ``Fault`` matches them (method and a path
regex), for its next ``times`` matching requests:

- ``status``: answer ``status`` (with ``headers``, e.g. ``Retry-After``) without asking the
  server: a 500 from the server, a 502/503 from a gateway with no server behind it, a 429;
- ``hang``: say nothing for ``seconds``, then close: a server slow past the client's timeout
  (the request never reaches the server);
- ``stall``: pass the request to the server, which does the work, then hold the answer for
  ``seconds`` before sending it: a timeout on a request that in fact succeeded;
- ``late``: hold the request for ``seconds`` and only then pass it on: a request stuck on
  the way that reaches the server after the client gave up (and maybe after its retry);
- ``reset``: close the connection without an answer.

Every request is logged (``hits``) with the time it arrived and what was done with it, so a
test can check how many tries were made and how long the client waited between them.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


@dataclass
class Fault:
    kind: str  # status | hang | stall | late | reset
    method: str = "*"
    path: str = ".*"  # a regex searched in the path with its query
    times: int = 1_000_000
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and self.method in ("*", method) and re.search(self.path, path) is not None


@dataclass
class Hit:
    at: float  # time.monotonic() when the request arrived
    method: str
    path: str
    fault: str  # the fault's kind, or "" when passed through


class FaultProxy:
    """``with FaultProxy(upstream) as proxy:`` point the client at ``proxy.url``, ``proxy.add(Fault(...))``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults: list[Fault] = []
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._http = httpx.Client(base_url=self.upstream, timeout=120.0)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = proxy._take(self.command, self.path)
                if fault is None or fault.kind in ("stall", "late"):
                    if fault is not None and fault.kind == "late":
                        time.sleep(fault.seconds)
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                    answer = proxy._http.request(self.command, self.path, content=body, headers=headers)
                    if fault is not None and fault.kind == "stall":
                        time.sleep(fault.seconds)
                    self._answer(answer.status_code, dict(answer.headers), answer.content)
                elif fault.kind == "status":
                    self._answer(fault.status, fault.headers, b'{"detail": "injected by the test proxy"}')
                elif fault.kind == "hang":
                    time.sleep(fault.seconds)
                    self.close_connection = True
                else:  # reset
                    self.close_connection = True

            def _answer(self, status: int, headers: dict[str, str], content: bytes) -> None:
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        if key.lower() not in _HOP_HEADERS:
                            self.send_header(key, value)
                    if not any(k.lower() == "content-type" for k in headers):
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up waiting

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.hits.clear()

    def faulted(self, kind: str | None = None) -> list[Hit]:
        """The requests a fault (of ``kind``) was applied to."""
        return [h for h in self.hits if h.fault and (kind is None or h.fault == kind)]

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            fault = next((f for f in self.faults if f.matches(method, path)), None)
            if fault is not None:
                fault.times -= 1
            self.hits.append(Hit(time.monotonic(), method, path, fault.kind if fault else ""))
            return fault

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()
