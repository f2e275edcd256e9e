"""Run the backend with uvicorn: in the foreground (``acorn serve``) or in a thread (tests, benchmarks).

The thread form is what a test with a real Label Studio needs: a server on a known port that
Label Studio can call, started and stopped inside one process.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time

import uvicorn
from fastapi import FastAPI

from acorn.serve.config import ServeConfigError
from acorn.serve.redaction import scrub_log_handlers

log = logging.getLogger("acorn.serve")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServerThread:
    """A uvicorn server in a daemon thread: ``with ServerThread(app) as s: httpx.get(s.url + "/health")``.

    Without a ``port`` the operating system picks a free one when uvicorn binds (port 0), and
    ``port`` is read back from the socket once started: no window in which another process
    could take a port chosen beforehand.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or 0
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=self.host, port=self.port, log_level="warning", lifespan="on")
        )
        self._thread = threading.Thread(target=self.server.run, name="acorn-serve", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"acorn serve did not start on {self.url} (port taken?)")
            time.sleep(0.02)
        self.port = int(self.server.servers[0].sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def check_bind(host: str, authenticated: bool, insecure_public: bool = False) -> None:
    """Refuse to serve a non-loopback address without authentication unless told to explicitly.

    Anyone who can reach such an address could run the model and make serve fetch images; a
    warning scrolls by unread, so the default is to refuse (``--insecure-public`` overrides).
    """
    if is_loopback(host) or authenticated:
        return
    if not insecure_public:
        raise ServeConfigError(
            f"refusing to serve on {host} without authentication: anyone who can reach it could use it; "
            "set ACORN_SERVE_TOKEN or ACORN_SERVE_BASIC_AUTH=user:pass (and the same in Label Studio), "
            "or pass --insecure-public to serve it open anyway"
        )
    log.warning(
        "serving on %s without authentication (--insecure-public): anyone who can reach it can use it", host
    )


def run(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 9090,
    authenticated: bool = False,
    insecure_public: bool = False,
) -> None:
    """Serve until interrupted, with every log handler scrubbing credentials from what it writes."""
    check_bind(host, authenticated, insecure_public)
    config = uvicorn.Config(app, host=host, port=port, log_level="info", lifespan="on")  # sets up logging
    scrub_log_handlers()
    uvicorn.Server(config).run()
