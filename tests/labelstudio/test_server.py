"""The local server's venv follows its lock, a failed start is one line, and the server's
environment holds nothing of acorn's secrets. The venvs here are tiny stand-ins (installing Label
Studio takes a minute); the real server's venv is checked against its lock at the end."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from acorn.labeling.labelstudio.client import LabelStudioError
from acorn.labeling.labelstudio.server import LOCK_FILE, LocalServer, free_port, last_error_line

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
        seen = psutil.Process(proc.pid).environ()
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
