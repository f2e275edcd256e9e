"""Connection settings, the .env file, the retry schedule, and a server that is down (no server needed)."""

from __future__ import annotations

import time
from email.utils import format_datetime

import httpx
import pandas as pd
import pytest
from label_studio_sdk.core.api_error import ApiError

from acorn.labeling.base import QUEUE_COLUMNS
from acorn.labeling.labelstudio.backend import LabelStudioBackend
from acorn.labeling.labelstudio.client import (
    LabelStudioAuthError,
    LabelStudioUnavailable,
    RetryPolicy,
    is_retryable,
    read_dotenv,
    resolve_connection,
    retry_after,
    update_dotenv,
)
from acorn.labeling.labelstudio.project import local_files_url
from acorn.labeling.labelstudio.server import free_port


def test_update_dotenv_keeps_other_lines_and_the_owner_only(tmp_path):
    env = tmp_path / ".env"
    env.write_text("# mine\nFOO=1\nLABEL_STUDIO_URL=http://old\n\nexport BAR='two words'\n")
    env.chmod(0o644)
    update_dotenv(env, {"LABEL_STUDIO_URL": "http://127.0.0.1:9", "LABEL_STUDIO_API_KEY": "k"})
    lines = env.read_text().splitlines()
    assert lines[:2] == ["# mine", "FOO=1"] and lines[3:5] == ["", "export BAR='two words'"]
    assert read_dotenv(env) == {
        "FOO": "1",
        "LABEL_STUDIO_URL": "http://127.0.0.1:9",
        "BAR": "two words",
        "LABEL_STUDIO_API_KEY": "k",
    }
    assert env.stat().st_mode & 0o777 == 0o600, "an existing, world-readable .env is narrowed"
    fresh = tmp_path / "new" / ".env"
    fresh.parent.mkdir()
    update_dotenv(fresh, {"LABEL_STUDIO_API_KEY": "k$HOME"})
    assert fresh.stat().st_mode & 0o777 == 0o600
    assert read_dotenv(fresh) == {"LABEL_STUDIO_API_KEY": "k$HOME"}, "values are literal"


def test_environment_wins_over_dotenv(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("LABEL_STUDIO_URL=http://from-file:1/\nLABEL_STUDIO_API_KEY=file-key\n")
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    conn = resolve_connection(repo_root=tmp_path)
    assert (conn.url, conn.api_key) == ("http://from-file:1", "file-key")
    assert "file-key" not in repr(conn)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "env-key")
    assert resolve_connection(repo_root=tmp_path).api_key == "env-key"


def test_missing_key_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(LabelStudioAuthError, match="LABEL_STUDIO_API_KEY"):
        resolve_connection(url="http://127.0.0.1:1", repo_root=tmp_path)


def test_local_files_url_is_relative_to_document_root(tmp_path):
    img = tmp_path / "data" / "tiles" / "images" / "a b.jpg"
    assert local_files_url(img, tmp_path) == "/data/local-files/?d=data/tiles/images/a%20b.jpg"
    with pytest.raises(Exception, match="document root"):
        local_files_url("/elsewhere/x.jpg", tmp_path)


def test_server_down_is_retried_a_bounded_number_of_times_then_named(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    policy = RetryPolicy(tries=4, backoff=0.05)
    backend = LabelStudioBackend(["squirrel"], repo_root=tmp_path, url=url, api_key="x" * 40, retry=policy)
    queue = pd.DataFrame(
        [["t1", 0, 1.0, 0.5, 1, "data/tiles/images/t1.jpg", 640, 540, "m1"]],
        columns=QUEUE_COLUMNS,
    )
    started = time.monotonic()
    with pytest.raises(LabelStudioUnavailable) as error:
        backend.push(
            queue, pd.DataFrame(columns=["tile_id", "class_id", "confidence", "x1", "y1", "x2", "y2"])
        )
    assert time.monotonic() - started < 5, "0.05 + 0.1 + 0.2 s of backoff, no more"
    message = str(error.value)
    assert message.startswith(
        f"cannot reach Label Studio at {url} while pushing 1 tasks to project 'acorn' (4 tries over"
    ), message
    assert "ConnectError" in message and "acorn labelstudio start" in message
    with pytest.raises(LabelStudioUnavailable, match=f"{url} while pulling annotations from project 'acorn'"):
        backend.pull()
    assert list(tmp_path.iterdir()) == []


def api_error(status: int, **headers: str) -> ApiError:
    return ApiError(status_code=status, headers=headers, body={"detail": "x"})


def test_what_is_retried():
    request = httpx.Request("GET", "http://127.0.0.1:1/")
    for exc in (
        httpx.ConnectError("refused", request=request),
        httpx.ReadTimeout("slow", request=request),
        httpx.RemoteProtocolError("dropped", request=request),
        *(api_error(s) for s in (408, 429, 500, 502, 503, 504)),
    ):
        assert is_retryable(exc), exc
    for exc in (httpx.UnsupportedProtocol("ftp://"), *(api_error(s) for s in (400, 401, 403, 404, 409))):
        assert not is_retryable(exc), exc


def test_backoff_doubles_honours_retry_after_and_is_capped():
    policy = RetryPolicy(backoff=1.0, max_wait=30.0)
    assert [policy.delay(n, api_error(503)) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 16, 30]
    assert policy.delay(1, api_error(429, **{"Retry-After": "7"})) == 7
    assert policy.delay(1, api_error(429, **{"retry-after": "3600"})) == 30, "capped"
    in_a_minute = format_datetime(
        pd.Timestamp.now(tz="UTC").to_pydatetime() + pd.Timedelta(seconds=20), usegmt=True
    )
    assert 15 < retry_after(api_error(503, **{"Retry-After": in_a_minute})) <= 20
    assert retry_after(api_error(503, **{"Retry-After": "soon"})) is None


@pytest.mark.parametrize("verbose", [False, True])
def test_cli_leaves_label_studio_errors_to_the_top_level_handler(tmp_path, verbose):
    """``acorn labelstudio ...`` raises; ``acorn``'s handler shows one line and exits 1, or the
    traceback with ``--verbose``, as for every other user error."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import tool_env

    (tmp_path / "params.yaml").write_text("classes: [squirrel]\n")
    url = f"http://127.0.0.1:{free_port()}"
    env = {**tool_env(tmp_path), "LABEL_STUDIO_URL": url, "LABEL_STUDIO_API_KEY": "secret-" + "0" * 33}
    cmd = [str(Path(sys.executable).parent / "acorn"), *(["-v"] if verbose else []), "labelstudio", "setup"]
    proc = subprocess.run([*cmd, "--no-storage"], cwd=tmp_path, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    message = f"cannot reach Label Studio at {url}"
    if verbose:
        assert "Traceback" in out and f"LabelStudioUnavailable: {message}" in out
    else:
        assert f"acorn failed: {message}" in out and "Traceback" not in out
    assert "secret-" not in out


def test_stale_pid_file_never_signals_another_process(tmp_path):
    """A pid file whose number now belongs to some other process: not our server, left alone."""
    import subprocess

    from acorn.labeling.labelstudio.server import LocalServer

    server = LocalServer(venv=tmp_path / "venv", data_dir=tmp_path / "data", state_dir=tmp_path / "state")
    server.state_dir.mkdir()
    other = subprocess.Popen(["sleep", "60"])
    try:
        server.pid_file.write_text(f"{other.pid}\n")
        status = server.status()
        assert not status.running and f"pid {other.pid}" in status.detail
        assert server.stop() is False
        assert other.poll() is None, "the other process is still running"
        assert not server.pid_file.exists()
    finally:
        other.kill()
        other.wait()
