"""A local Label Studio server, started and stopped by the project.

Label Studio pins versions that clash with ultralytics, so it lives in its own virtual
environment (``.acorn/labelstudio/venv``, made on first use) and runs as a separate process
bound to 127.0.0.1. The first start creates the admin user and a random API token headless;
the token is kept next to the server's database (both git-ignored) and written to the
repository's ``.env`` as ``LABEL_STUDIO_API_KEY`` so every acorn command finds it. The
process id goes to a pid file and the server is stopped by that id only (with whatever it
spawned), after psutil confirms that the id still belongs to this server.

The database holds the API token and every label, so the data and state folders are the
owner's alone (0700, files 0600): they are made so, and put right on every start, and the
server runs under umask 077 so that what it creates later (exports, media folders, the
database's journal) is private too. Django's uploads are the one exception (see ``_make_private``).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from acorn.labeling.labelstudio.client import (
    KEY_VAR,
    URL_VAR,
    Connection,
    LabelStudioError,
    connect,
    health_problem,
    update_dotenv,
)
from acorn.runtime.atomic import atomic_path, write_text

# every package of the server's venv, exact versions and hashes (`make lock` refreshes it)
LOCK_FILE = Path(__file__).resolve().parents[3] / "requirements-labelstudio.txt"
DEFAULT_PORT = 8080
DEFAULT_USERNAME = "admin@acorn.local"
_READY_MARKER = ".acorn-ready"
# what a process needs from the caller's environment; the rest (credentials above all) stays out
_PASSED_ON = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SSL_CERT_FILE")
_CREDENTIALS = "acorn-credentials.json"
_DB_NAME = "label_studio.sqlite3"
# group and others get nothing of what the server or acorn writes for it
_PRIVATE_UMASK = 0o077
# Label Studio 1.23.2's SSRF deny list (``validate_ip`` in label_studio/core/utils/io.py) but for
# loopback, which ``ssrf_subnets`` puts back less the one address `acorn serve` listens on
LS_DEFAULT_BANNED_SUBNETS = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "233.252.0.0/24",
    "240.0.0.0/4",
    "255.255.255.255/32",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "::ffff:0:0:0/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001:0000::/32",
    "2001:20::/28",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
)
ML_BACKEND_HOST = "127.0.0.1"


@dataclass
class ServerStatus:
    running: bool
    url: str
    pid: int | None = None
    healthy: bool = False
    detail: str = ""


@dataclass
class LocalServer:
    """One local Label Studio: its venv, data dir, state dir (pid + log) and port.

    ``env_file`` (the repository's ``.env``) receives the URL and API key on start; tests
    pass ``None`` so that a throwaway server never touches the developer's ``.env``.
    """

    venv: Path
    data_dir: Path
    state_dir: Path
    port: int = DEFAULT_PORT
    document_root: Path = field(default_factory=Path.cwd)
    env_file: Path | None = None
    username: str = DEFAULT_USERNAME
    lock_file: Path = LOCK_FILE
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def for_repo(cls, repo_root: str | os.PathLike[str] = ".", port: int | None = None) -> LocalServer:
        """The project's server: everything under ``<repo>/.acorn/labelstudio``, images served from the repo."""
        root = Path(repo_root).resolve()
        state = root / ".acorn" / "labelstudio"
        server = cls(
            venv=state / "venv",
            data_dir=state / "data",
            state_dir=state,
            document_root=root,
            env_file=root / ".env",
        )
        server.port = port if port is not None else server._recorded_port() or DEFAULT_PORT
        return server

    @classmethod
    def scratch(cls, folder: Path, venv: Path, document_root: Path) -> LocalServer:
        """A throw-away server (tests, benchmarks): its data and state under ``folder``, a free
        port, and no ``.env`` to write, so it never touches the project's own server or settings."""
        return cls(
            venv=venv,
            data_dir=folder / "ls-data",
            state_dir=folder / "ls-state",
            port=free_port(),
            document_root=document_root,
            env_file=None,
        )

    # ---- paths and recorded state -------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "server.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "server.log"

    @property
    def credentials_file(self) -> Path:
        return self.data_dir / _CREDENTIALS

    @property
    def executable(self) -> Path:
        return self.venv / "bin" / "label-studio"

    def _recorded_port(self) -> int | None:
        state = self.state_dir / "server.json"
        if state.exists():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                return int(json.loads(state.read_text(encoding="utf-8"))["port"])
        return None

    def credentials(self) -> dict[str, str]:
        """Username, password and API token of the admin user made on first start."""
        if not self.credentials_file.exists():
            return {}
        return json.loads(self.credentials_file.read_text(encoding="utf-8"))

    def connection(self) -> Connection:
        token = self.credentials().get("token")
        if not token:
            raise LabelStudioError(f"no credentials in {self.credentials_file}: start the server first")
        return Connection(url=self.url, api_key=token)

    # ---- lifecycle ----------------------------------------------------------------------
    def _lock_digest(self) -> str:
        if not self.lock_file.is_file():
            raise LabelStudioError(
                f"the Label Studio lock {self.lock_file} is missing: run `make lock` to write it"
            )
        return hashlib.sha256(self.lock_file.read_bytes()).hexdigest()

    def needs_install(self) -> bool:
        """True when the venv is missing, half-made, or built from another version of the lock."""
        marker = self.venv / _READY_MARKER
        if not (marker.exists() and self.executable.exists()):
            return True
        return marker.read_text(encoding="utf-8").strip() != self._lock_digest()

    def ensure_venv(self, quiet: bool = True) -> Path:
        """Install the server's own venv from its lock (once, ~1 min), and again when the lock changed.

        The marker holds the sha256 of the lock the venv was built from; it is written only after
        pip succeeded, so an interrupted install is redone by the next call instead of leaving a
        half-made venv that looks ready. A venv built from another lock is removed and built anew
        (upgrading in place would keep packages the new lock no longer has).
        """
        lock = self.lock_file
        if not self.needs_install():
            return self.executable
        wanted = self._lock_digest()
        marker = self.venv / _READY_MARKER
        built_from = marker.read_text(encoding="utf-8").strip() if marker.exists() else None
        if built_from is not None:
            shutil.rmtree(self.venv)
        if not (self.venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        cmd = [str(self.venv / "bin" / "python"), "-m", "pip", "install", "-r", str(lock)]
        if quiet:
            cmd.insert(4, "-q")
        result = subprocess.run(cmd, capture_output=quiet, text=True)
        if result.returncode != 0:
            tail = (result.stderr or "")[-2000:] if quiet else ""
            raise LabelStudioError(f"installing {lock.name} into {self.venv} failed:\n{tail}")
        write_text(marker, wanted + "\n")
        return self.executable

    def status(self) -> ServerStatus:
        pid = self._read_pid()
        if pid is None:
            return ServerStatus(False, self.url, detail="not started (no pid file)")
        if _our_server(pid, self.data_dir) is None:
            return ServerStatus(
                False, self.url, pid=pid, detail=f"pid {pid} from {self.pid_file} is not running"
            )
        problem = health_problem(self.url, timeout=2.0)
        detail = "up" if problem is None else f"process running, /health not answering ({problem}; starting?)"
        return ServerStatus(True, self.url, pid=pid, healthy=problem is None, detail=detail)

    def start(self, timeout: float = 240.0, install: bool = True) -> ServerStatus:
        """Start the server (no-op if it already runs) and wait until it answers and accepts the token."""
        current = self.status()
        recorded = self._recorded_port()
        if current.running and recorded is not None and recorded != self.port:
            raise LabelStudioError(
                f"Label Studio already runs on port {recorded} (pid {current.pid}); stop it first to use {self.port}"
            )
        if current.running:
            if not current.healthy:
                self._wait_healthy(timeout)
            self._publish()
            return self.status()
        if install:
            self.ensure_venv()
        elif not self.executable.exists():
            raise LabelStudioError(f"Label Studio is not installed in {self.venv}")
        if _port_in_use(self.port):
            raise LabelStudioError(
                f"port {self.port} on 127.0.0.1 is already in use; choose another with --port "
                "(Label Studio would silently move to the next free port)"
            )
        self._make_private()
        env = self._server_env()
        cmd = [
            str(self.executable),
            "start",
            "--no-browser",
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        log_fd = os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with open(log_fd, "ab") as log:
            # own session: the server and anything it spawns form one process group we can stop
            self._proc = subprocess.Popen(
                cmd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.state_dir,
                start_new_session=True,
                umask=_PRIVATE_UMASK,
            )
        _write_private(self.pid_file, f"{self._proc.pid}\n")
        _write_private(
            self.state_dir / "server.json", json.dumps({"port": self.port, "url": self.url}) + "\n"
        )
        try:
            self._wait_healthy(timeout)
            connect(self.connection())
        except BaseException:
            self.stop()
            raise
        self._publish()
        return self.status()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the server and what it spawned, by the pid in its pid file; False if it was not running.

        SIGTERM first (Label Studio closes its database cleanly), SIGKILL for what is left after
        ``timeout`` seconds. psutil reaps the processes that are this one's children, so none
        lingers as a zombie.
        """
        pid = self._read_pid()
        if pid is None:
            return False
        server = _our_server(pid, self.data_dir)
        if server is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                family = [server, *server.children(recursive=True)]
                for proc in family:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        proc.terminate()
                _, alive = psutil.wait_procs(family, timeout=timeout)
                for proc in alive:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        proc.kill()
                psutil.wait_procs(alive, timeout=10)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None
        self.pid_file.unlink(missing_ok=True)
        return server is not None

    # ---- helpers ------------------------------------------------------------------------
    def _make_private(self) -> None:
        """Make the data and state folders 0700 and take group and other bits off what they hold.

        Folders made by an older acorn (0755, database 0644) are put right here too. The whole
        data folder is walked: Django chmods each uploaded file to 0644 whatever the umask (no
        Label Studio variable sets FILE_UPLOAD_PERMISSIONS), so uploads since the last start are
        closed here; until then the 0700 data folder keeps them from others. The
        state folder's own files (log, pid) are enough: in the repository's layout it also holds
        the server's venv, which needs no change once its parent is closed.
        """
        for folder in (self.state_dir, self.data_dir):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.chmod(0o700)
        for path in [*self.data_dir.rglob("*"), *self.state_dir.iterdir()]:
            if not path.is_symlink():
                mode = stat.S_IMODE(path.stat().st_mode)
                if mode & _PRIVATE_UMASK:
                    path.chmod(mode & ~_PRIVATE_UMASK)

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text(encoding="utf-8").strip())
        except (FileNotFoundError, ValueError):
            return None

    def _server_env(self) -> dict[str, str]:
        """The server's whole environment: the few variables a process needs, and its own settings.

        Nothing else of acorn's environment reaches it (AWS keys, MLflow or DagsHub credentials,
        serve's token), and error reporting is off: Label Studio 1.23.2 sends errors to its
        vendor's Sentry unless ``SENTRY_DSN`` is empty (``LABEL_STUDIO_`` prefixed names are
        read first), and an empty DSN also keeps it from calling the reporting client at all.
        """
        env = {key: os.environ[key] for key in _PASSED_ON if key in os.environ}
        env.update({key: value for key, value in os.environ.items() if key.startswith("LC_")})
        env.update(
            {
                "LATEST_VERSION_CHECK": "false",
                "COLLECT_ANALYTICS": "false",
                "LABEL_STUDIO_SENTRY_DSN": "",
                "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
                # the SSRF guard on for every fetch, the ML backend's included; see ssrf_subnets
                "SSRF_PROTECTION_ENABLED": "true",
                "ML_BLOCK_LOCAL_IP": "true",
                "USE_DEFAULT_BANNED_SUBNETS": "false",
                "USER_ADDITIONAL_BANNED_SUBNETS": ",".join(ssrf_subnets()),
                "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
                "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(Path(self.document_root).resolve()),
                "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            }
        )
        first_start = not (self.data_dir / _DB_NAME).exists()
        if first_start:
            creds = {
                "username": self.username,
                "password": secrets.token_urlsafe(12),
                "token": secrets.token_hex(20),
            }
            _write_private(self.credentials_file, json.dumps(creds, indent=2) + "\n")
            env.update(
                {
                    "LABEL_STUDIO_USERNAME": creds["username"],
                    "LABEL_STUDIO_PASSWORD": creds["password"],
                    "LABEL_STUDIO_USER_TOKEN": creds["token"],
                    "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
                }
            )
        elif not self.credentials():
            raise LabelStudioError(
                f"{self.data_dir} holds a Label Studio database but no {_CREDENTIALS}: its API token is "
                f"unknown. Set {KEY_VAR} yourself, or remove {self.data_dir} to start afresh."
            )
        return env

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        problem = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise LabelStudioError(
                    f"Label Studio exited with code {self._proc.returncode} while starting on {self.url}: "
                    f"{last_error_line(self.log_file)} (full log: {self.log_file})"
                )
            problem = health_problem(self.url, timeout=2.0)
            if problem is None:
                return
            time.sleep(0.5)
        raise LabelStudioError(
            f"Label Studio did not answer {self.url}/health within {timeout:.0f} s ({problem}); "
            f"see {self.log_file}"
        )

    def _publish(self) -> None:
        if self.env_file is not None:
            update_dotenv(self.env_file, {URL_VAR: self.url, KEY_VAR: self.connection().api_key})


def ssrf_subnets(allowed: str = ML_BACKEND_HOST) -> list[str]:
    """Label Studio's own SSRF deny list with one hole: the address of `acorn serve`.

    Label Studio 1.23.2 has one deny list for every server-side fetch (task imports by URL,
    webhooks, cloud-storage endpoints, media downloaded for exports, the ML backend). Connecting
    an ML backend also makes a webhook to ``<backend>/webhook`` (``create_ml_webhook`` in
    label_studio/ml/models.py), checked against that list whenever ``SSRF_PROTECTION_ENABLED``
    is on, and ``ML_BLOCK_LOCAL_IP`` does not reach it. So a backend on 127.0.0.1 needs
    127.0.0.1 off the list for every fetch: the narrowest setting there is. Private networks,
    link-local (cloud metadata), the other loopback addresses and IPv6 loopback stay refused.
    """
    hole = ipaddress.ip_network(allowed)
    subnets: list[str] = []
    for subnet in map(ipaddress.ip_network, LS_DEFAULT_BANNED_SUBNETS):
        if subnet.version == hole.version and hole.subnet_of(subnet):
            subnets += [str(net) for net in sorted(subnet.address_exclude(hole))]
        else:
            subnets.append(str(subnet))
    return subnets


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to a file only its owner can read."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o600)


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now (a second server, tests, benchmarks).

    The port is free when asked, not reserved: a server that can bind port 0 itself (as
    ``acorn.serve.ServerThread`` does) avoids the window. Label Studio's command line cannot.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _our_server(pid: int, data_dir: Path) -> psutil.Process | None:
    """The live label-studio process on ``data_dir`` with this pid, or ``None``.

    Checking the command line guards against a stale pid file whose number now belongs to
    another process: that one must never be signalled. An exited process that its parent
    has not reaped yet (a zombie) is dead for our purposes.
    """
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        args = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    if any("label-studio" in a for a in args) and str(data_dir) in args:
        return proc
    return None


def last_error_line(log: Path) -> str:
    """The line of a start-up log that says what went wrong: the last exception line, else the last line.

    A Python traceback ends with ``SomeError: message``; printing only that keeps a failed start
    to one line a user can act on, with the log named for the rest.
    """
    try:
        lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    except FileNotFoundError:
        return "(no log)"
    lines = [line for line in lines if line]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception", "Exit", "Interrupt")) and " " not in head:
            return line
    return lines[-1] if lines else "(empty log)"
