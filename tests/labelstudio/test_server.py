"""The local server's venv follows its lock, a failed start is one line, and the server's
environment holds nothing of acorn's secrets. The venvs here are tiny stand-ins (installing Label
Studio takes a minute); the real server's venv is checked against its lock at the end."""

from __future__ import annotations

import ast
import contextlib
import hashlib
import http.server
import ipaddress
import os
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from acorn.labeling.labelstudio.client import LabelStudioError
from acorn.labeling.labelstudio.server import (
    LOCK_FILE,
    LS_DEFAULT_BANNED_SUBNETS,
    ML_BACKEND_HOST,
    LocalServer,
    free_port,
    last_error_line,
    ssrf_subnets,
)

from .conftest import VENV

TRACEBACK = """Starting Label Studio
Traceback (most recent call last):
  File "label_studio/core/utils/sentry.py", line 80, in init_sentry
    sentry_sdk.init(
TypeError: Unknown option 'send_default_pii'
"""


def fake_server(tmp_path: Path, script: str, lock_text: str = "six==1.17.0\n") -> LocalServer:
    """A LocalServer whose 'label-studio' is ``script`` in a venv marked as built from its lock."""
    lock = tmp_path / "lock.txt"
    lock.write_text(lock_text)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    exe = venv / "bin" / "label-studio"
    exe.write_text(f"#!{sys.executable}\n{script}")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    (venv / ".acorn-ready").write_text(hashlib.sha256(lock.read_bytes()).hexdigest() + "\n")
    return LocalServer(
        venv=venv,
        data_dir=tmp_path / "data",
        state_dir=tmp_path / "state",
        port=free_port(),
        document_root=tmp_path,
        lock_file=lock,
    )


def test_a_venv_built_from_another_lock_needs_a_new_install(tmp_path):
    server = fake_server(tmp_path, "")
    assert not server.needs_install()
    server.lock_file.write_text("six==1.16.0\n")
    assert server.needs_install()
    (server.venv / ".acorn-ready").unlink()
    assert server.needs_install()


@pytest.mark.slow
def test_a_changed_lock_rebuilds_the_venv_from_scratch(tmp_path):
    """A real (tiny) install: the old venv, built from another lock, is removed, not patched."""
    text = LOCK_FILE.read_text()
    start = text.index("six==")
    entry = text[start : text.index("\n", text.index("--hash", start))] + "\n"
    server = fake_server(tmp_path, "", lock_text="six==0.0.0\n")
    server.lock_file.write_text(entry)
    leftover = server.venv / "left-over-from-the-old-lock"
    leftover.write_text("x")
    server.ensure_venv()
    assert not leftover.exists()
    assert (server.venv / ".acorn-ready").read_text().strip() == hashlib.sha256(entry.encode()).hexdigest()
    out = subprocess.run(
        [server.venv / "bin" / "python", "-c", "import six; print(six.__version__)"],
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "1.17.0"


def test_a_server_that_dies_while_starting_is_one_line_naming_the_log_and_the_error(tmp_path):
    script = f"import sys\nsys.stdout.write({TRACEBACK!r})\nsys.exit(3)\n"
    server = fake_server(tmp_path, script)
    with pytest.raises(LabelStudioError) as failure:
        server.start(timeout=30, install=False)
    message = str(failure.value)
    assert "\n" not in message
    assert "exited with code 3" in message
    assert "TypeError: Unknown option 'send_default_pii'" in message
    assert str(server.log_file) in message


def test_the_cli_shows_a_failed_start_as_one_line_and_exits_1(tmp_path):
    from tests.conftest import tool_env

    root = tmp_path / "repo"
    state = root / ".acorn" / "labelstudio"
    state.mkdir(parents=True)
    script = f"import sys\nsys.stdout.write({TRACEBACK!r})\nsys.exit(1)\n"
    server = fake_server(state, script, lock_text=LOCK_FILE.read_text())
    server.lock_file.unlink()  # the CLI's server reads the project's lock, which the marker matches
    acorn = Path(sys.executable).parent / "acorn"
    proc = subprocess.run(
        [acorn, "labelstudio", "start", "--port", str(free_port()), "--timeout", "30"],
        cwd=root,
        env=tool_env(root),
        capture_output=True,
        text=True,
    )
    out = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 1, out
    assert "Traceback" not in "\n".join(out)
    assert len(out) == 1 and "acorn failed: Label Studio exited with code 1" in out[0], out
    assert "TypeError: Unknown option 'send_default_pii'" in out[-1] and "server.log" in out[-1]


def test_last_error_line_prefers_the_exception_line(tmp_path):
    log = tmp_path / "server.log"
    log.write_text(TRACEBACK + "\n\n")
    assert last_error_line(log) == "TypeError: Unknown option 'send_default_pii'"
    log.write_text("Starting\nport 8080 is taken, giving up\n")
    assert last_error_line(log) == "port 8080 is taken, giving up"
    assert last_error_line(tmp_path / "missing.log") == "(no log)"


SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "aws-secret-for-the-test",
    "MLFLOW_TRACKING_PASSWORD": "mlflow-secret-for-the-test",
    "DAGSHUB_USER_TOKEN": "dagshub-secret-for-the-test",
    "ACORN_SERVE_TOKEN": "serve-secret-for-the-test",
    "LABEL_STUDIO_API_KEY": "ls-key-for-the-test",
    "SENTRY_DSN": "https://key@sentry.example.invalid/1",
    "LABEL_STUDIO_SENTRY_DSN": "https://key@sentry.example.invalid/2",
}


def environ_after_exec(pid: int, timeout: float = 10.0) -> dict[str, str]:
    """The process's environment once exec has laid it out: Popen returns as soon as the child's
    exec has begun (its close-on-exec pipe closed), and in the short window before the kernel
    writes the new environment /proc/PID/environ reads empty (seen once on a loaded CI machine)."""
    deadline = time.monotonic() + timeout
    while not (seen := psutil.Process(pid).environ()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return seen


def test_the_server_gets_no_secret_and_error_reporting_off(tmp_path, monkeypatch):
    """What the started process really has in its environment, read back from the OS."""
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    server = fake_server(tmp_path, "import time\ntime.sleep(60)\n")
    server.data_dir.mkdir()
    server.state_dir.mkdir()
    env = server._server_env()
    proc = subprocess.Popen([server.executable, "--data-dir", str(server.data_dir)], env=env)
    try:
        seen = environ_after_exec(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    leaked = [key for key, value in seen.items() if any(secret in value for secret in SECRETS.values())]
    assert leaked == []
    assert seen["LABEL_STUDIO_SENTRY_DSN"] == "" and seen["LABEL_STUDIO_FRONTEND_SENTRY_DSN"] == ""
    assert "SENTRY_DSN" not in seen and "AWS_SECRET_ACCESS_KEY" not in seen
    assert seen["PATH"] == os.environ["PATH"]


@pytest.mark.labelstudio
def test_the_real_server_venv_matches_its_lock(ls_server):
    from tests.test_locks import lock

    assert lock.drift(ls_server.venv / "bin" / "python", LOCK_FILE) == []
    seen = psutil.Process(ls_server.status().pid).environ()
    assert seen["LABEL_STUDIO_SENTRY_DSN"] == ""


def modes(*folders: Path) -> dict[str, str]:
    """Octal mode of each folder and of everything under it (symlinks aside)."""
    found = {}
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            if not path.is_symlink():
                found[str(path)] = oct(stat.S_IMODE(path.stat().st_mode))
    return found


def open_to_others(found: dict[str, str]) -> dict[str, str]:
    return {path: mode for path, mode in found.items() if int(mode, 8) & 0o077}


def test_a_start_makes_the_data_and_state_folders_private_and_the_server_writes_private_files(tmp_path):
    """Folders left by an older acorn (0755, database and log 0644) are closed on start, and what
    the server writes itself (here a stand-in writes an export) is 0600 under its umask 077."""
    script = (
        "import pathlib, sys\n"
        "data = pathlib.Path(sys.argv[sys.argv.index('--data-dir') + 1])\n"
        "(data / 'export').mkdir()\n"
        "(data / 'export' / 'new.json').write_text('{}')\n"
        "sys.exit(3)\n"
    )
    server = fake_server(tmp_path, script)
    old = os.umask(0o022)  # what an older acorn left, whatever this test runner's umask
    try:
        (server.data_dir / "media" / "upload").mkdir(parents=True)
        (server.data_dir / "label_studio.sqlite3").write_text("db")
        (server.data_dir / "media" / "upload" / "a.jpg").write_text("jpg")
        (server.data_dir / "acorn-credentials.json").write_text('{"token": "t"}')
        server.state_dir.mkdir()
        server.log_file.write_text("old log\n")
    finally:
        os.umask(old)
    assert open_to_others(modes(server.data_dir, server.state_dir)), "control: the folders start open"

    with pytest.raises(LabelStudioError, match="exited with code 3"):
        server.start(timeout=30, install=False)

    found = modes(server.data_dir, server.state_dir)
    assert (
        str(server.data_dir / "export" / "new.json") in found
        and str(server.state_dir / "server.json") in found
    )
    assert open_to_others(found) == {}
    assert found[str(server.data_dir)] == found[str(server.state_dir)] == "0o700"
    assert found[str(server.data_dir / "export" / "new.json")] == "0o600"


@pytest.mark.labelstudio
def test_the_real_servers_folders_and_files_are_its_owners_only(ls_server):
    """Label Studio's database (which holds the API token), its media and export folders, the log,
    the pid file and the credentials: nothing for group or others. One exception, inside the closed
    data folder: Django chmods an uploaded file to 0644 whatever the umask (its default
    FILE_UPLOAD_PERMISSIONS, which no Label Studio variable sets; a settings module of acorn's own
    cannot wrap Label Studio's, which reads the settings while it is half imported). The next start
    takes those bits off, as the stand-in test above shows."""
    conn = ls_server.connection()
    with httpx.Client(
        base_url=conn.url, headers={"Authorization": f"Token {conn.api_key}"}, timeout=60
    ) as ls:
        project = ls.post("/api/projects", json={"title": "private upload"}).raise_for_status().json()["id"]
        upload = ("tasks.json", b'[{"image": "private.jpg"}]', "application/json")
        ls.post(f"/api/projects/{project}/import", files={"file": upload}).raise_for_status()
    found = modes(ls_server.data_dir, ls_server.state_dir)
    assert str(ls_server.data_dir / "label_studio.sqlite3") in found and str(ls_server.log_file) in found
    uploads = {path for path in found if "/media/upload/" in path and Path(path).is_file()}
    assert uploads, sorted(found)
    assert open_to_others({path: mode for path, mode in found.items() if path not in uploads}) == {}
    assert found[str(ls_server.data_dir)] == found[str(ls_server.state_dir)] == "0o700"
    status = Path(f"/proc/{ls_server.status().pid}/status").read_text()
    assert "Umask:\t0077" in status, "what the server makes from now on is private too"


class _Listener(http.server.BaseHTTPRequestHandler):
    """Hands out a task list and takes webhooks, noting each request in its server's ``hits``."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._answer(b'[{"image": "probe.jpg", "tile_id": "ssrf-probe"}]')

    def do_POST(self) -> None:  # noqa: N802
        self._answer(b"{}")

    def _answer(self, body: bytes) -> None:
        self.server.hits.append(f"{self.command} {self.path}")  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def listener(host: str) -> Iterator[tuple[str, list[str]]]:
    """A web server on ``host`` (any port): its URL and the requests it received."""
    server = http.server.ThreadingHTTPServer((host, 0), _Listener)
    server.hits = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{host}:{server.server_address[1]}", server.hits  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.labelstudio
def test_label_studio_refuses_to_fetch_from_local_and_private_addresses_but_acorn_serves(ls_server):
    """Label Studio's SSRF guard is on. A task import by URL and a webhook aimed at a listener on
    127.0.0.2 (loopback, like 127.0.0.1) are refused before any request reaches it, and so are
    imports from a private and a link-local (cloud metadata) address; with the guard off, as acorn
    set it before, the import fetched the listener's tasks. The one address let through is
    127.0.0.1, where `acorn serve` listens: Label Studio 1.23.2 checks the webhook it makes for an
    ML backend against the same list as every other fetch (``acorn...server.ssrf_subnets``), so an
    import from 127.0.0.1 is fetched too. The ML backend's connection itself is shown by the tests
    that connect `acorn serve` (test_serve_ls.py, test_repo_uris.py)."""
    conn = ls_server.connection()
    with (
        httpx.Client(base_url=conn.url, headers={"Authorization": f"Token {conn.api_key}"}, timeout=60) as ls,
        listener("127.0.0.2") as (other_loopback, refused_hits),
        listener(ML_BACKEND_HOST) as (serve_address, allowed_hits),
    ):
        project = ls.post("/api/projects", json={"title": "ssrf probe"}).raise_for_status().json()["id"]
        refused = {
            url: ls.post(f"/api/projects/{project}/import", data={"url": url})
            for url in (
                f"{other_loopback}/tasks.json",
                "http://10.0.0.1/t.json",
                "http://169.254.169.254/t.json",
            )
        }
        hook = ls.post("/api/webhooks", json={"url": f"{other_loopback}/hook", "project": project})
        assert ls.get("/api/tasks", params={"project": project}).json()["total"] == 0
        allowed = ls.post(f"/api/projects/{project}/import", data={"url": f"{serve_address}/tasks.json"})
    for url, answer in refused.items():
        assert answer.status_code == 400 and "reserved network address" in answer.text, (url, answer.text)
    assert hook.status_code == 403 and "reserved network address" in hook.text, hook.text
    assert refused_hits == []
    assert allowed.status_code == 201 and allowed_hits == ["GET /tasks.json"], allowed.text


@pytest.mark.labelstudio
def test_the_ssrf_deny_list_is_label_studios_own_but_for_one_address():
    """The copy of Label Studio's default deny list in acorn matches the installed version's, so
    that only 127.0.0.1 is let through, and no subnet a new version adds is lost."""
    source = (VENV / "lib").glob("python3*/site-packages/label_studio/core/utils/io.py")
    text = next(source).read_text(encoding="utf-8")
    listed = re.search(r"default_banned_subnets = (\[.*?\])", text, re.S)
    assert listed is not None
    assert tuple(ast.literal_eval(listed.group(1))) == LS_DEFAULT_BANNED_SUBNETS
    allowed = [ip for ip in ("127.0.0.1", "127.0.0.2", "10.0.0.1", "::1") if not banned(ip)]
    assert allowed == [ML_BACKEND_HOST]


def banned(ip: str) -> bool:
    return any(ipaddress.ip_address(ip) in ipaddress.ip_network(net) for net in ssrf_subnets())
