"""The DagsHub profile offline: `acorn dagshub setup` and `repo://` URIs against a local HTTP server
on 127.0.0.1 that answers the few DagsHub API calls acorn makes (user, repository, raw file)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from acorn.data import repo_uris
from acorn.model import registry
from acorn.ops import dagshub as dagshub_setup
from tests.conftest import run, tool_env

TOKEN = "fake-dagshub-token-0123456789"
OWNER, REPO = "squirrel-lab", "backyard"


@dataclass
class FakeDagsHub:
    """What the stand-in serves and what it was asked."""

    url: str
    files: dict[tuple[str, str], bytes]  # (revision, path) -> bytes
    authorizations: list[str | None] = field(default_factory=list)


def _user() -> dict:
    return {
        "id": 7,
        "login": "alice",
        "username": "alice",
        "full_name": "Alice",
        "avatar_url": None,
        "public_email": None,
        "website": None,
        "company": None,
        "description": None,
    }


def _repo(host: str) -> dict:
    return {
        "id": 1,
        "owner": _user(),
        "name": REPO,
        "full_name": f"{OWNER}/{REPO}",
        "description": "",
        "private": True,
        "fork": False,
        "parent": None,
        "empty": False,
        "mirror": False,
        "size": 1,
        "html_url": f"{host}/{OWNER}/{REPO}",
        "ssh_url": None,
        "clone_url": f"{host}/{OWNER}/{REPO}.git",
        "website": None,
        "stars_count": 0,
        "forks_count": 0,
        "watchers_count": 0,
        "open_issues_count": 0,
        "default_branch": "trunk",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "permissions": None,
    }


@contextmanager
def fake_dagshub() -> Iterator[FakeDagsHub]:
    """A private repository squirrel-lab/backyard whose default branch is ``trunk``; every call
    needs the token. ``slow.jpg`` trickles its bytes; ``huge.jpg`` is ``big.jpg`` without a length.
    Add files to ``files`` to serve them (tests/serve/test_images.py serves tiles from it)."""
    fake = FakeDagsHub(
        url="", files={("main", "tiles/a b.jpg"): b"\xff\xd8tile", ("trunk", "x.jpg"): b"trunk"}
    )
    fake.files[("main", "huge.jpg")] = fake.files[("main", "big.jpg")] = b"0" * 4096

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            auth = self.headers.get("Authorization")
            fake.authorizations.append(auth)
            if auth != f"Bearer {TOKEN}":
                return self._send(401, b'{"message": "unauthorized"}')
            repo_api = f"/api/v1/repos/{OWNER}/{REPO}"
            if self.path == "/api/v1/user":
                return self._send(200, json.dumps(_user()).encode())
            if self.path == repo_api:
                return self._send(200, json.dumps(_repo(fake.url)).encode())
            if self.path.startswith(f"{repo_api}/raw/"):
                from urllib.parse import unquote

                revision, _, path = unquote(self.path.removeprefix(f"{repo_api}/raw/")).partition("/")
                if path == "slow.jpg":
                    return self._trickle()
                body = fake.files.get((revision, path))
                if body is not None:
                    return self._send(200, body, length=path != "huge.jpg")
            return self._send(404, b'{"message": "not found"}')

        def _send(self, status: int, body: bytes, length: bool = True) -> None:
            self.send_response(status)
            if length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _trickle(self) -> None:
            self.send_response(200)
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"x" * 10)
                self.wfile.flush()
                time.sleep(0.1)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def dagshub() -> Iterator[FakeDagsHub]:
    with fake_dagshub() as fake:
        yield fake


# --- repo:// URIs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri,revision,path",
    [
        ("repo://squirrel-lab/backyard/main:tiles/f1/t0.jpg", "main", "tiles/f1/t0.jpg"),
        ("repo://squirrel-lab/backyard/v1.2:/data/a b#1.jpg", "v1.2", "data/a b#1.jpg"),
        ("repo://squirrel-lab/backyard/feature/new-cam:x.jpg", "feature/new-cam", "x.jpg"),
        ("repo://o_1/r.2/abc123:p/q.png", "abc123", "p/q.png"),
    ],
)
def test_raw_url_is_the_dagshub_clients_raw_url(uri, revision, path):
    from dagshub.auth.token_auth import HTTPBearerAuth
    from dagshub.common.api.repo import RepoAPI

    host = "https://dagshub.example"
    ref = repo_uris.parse_repo_uri(uri)
    assert (ref.revision, ref.path) == (revision, path)
    client = RepoAPI(f"{ref.owner}/{ref.repo}", host=host, auth=HTTPBearerAuth("x"))
    assert repo_uris.raw_url(uri, host) == client.raw_api_url(path, revision)


def test_raw_url_without_revision_uses_the_given_default():
    url = repo_uris.raw_url("repo://squirrel-lab/backyard/data/tiles/t.jpg", "https://h/", "main")
    assert url == "https://h/api/v1/repos/squirrel-lab/backyard/raw/main/data/tiles/t.jpg"


@pytest.mark.parametrize(
    "uri",
    [
        "repo://squirrel-lab",
        "repo://squirrel-lab/backyard",
        "repo://squirrel-lab/backyard/main:",
        "repo://squirrel-lab/backyard/main:tiles/../../other/x.jpg",
        "repo://squirrel-lab/backyard/main:tiles//x.jpg",
        "repo://bad owner/backyard/x.jpg",
        "s3://bucket/x.jpg",
    ],
)
def test_malformed_repo_uris_are_user_errors_naming_the_uri(uri):
    with pytest.raises(repo_uris.RepoUriError, match="repo://|s3://"):
        repo_uris.parse_repo_uri(uri)


def test_host_comes_from_the_dagshub_clients_variable():
    assert repo_uris.dagshub_host({}) == "https://dagshub.com"
    assert repo_uris.dagshub_host({repo_uris.HOST_VAR: "http://127.0.0.1:9/"}) == "http://127.0.0.1:9"


def test_repo_files_read_with_the_token_and_find_the_default_branch(dagshub):
    with repo_uris.RepoFiles(dagshub.url, TOKEN) as files:
        assert files.read(f"repo://{OWNER}/{REPO}/main:tiles/a b.jpg") == b"\xff\xd8tile"
        assert files.read(f"repo://{OWNER}/{REPO}/x.jpg") == b"trunk"  # default branch: trunk
        assert files.url(f"repo://{OWNER}/{REPO}/x.jpg").endswith("/raw/trunk/x.jpg")
    assert dagshub.authorizations[-1] == f"Bearer {TOKEN}"


def test_fetch_takes_host_and_token_from_the_environment(dagshub, monkeypatch):
    monkeypatch.setenv(repo_uris.HOST_VAR, dagshub.url)
    monkeypatch.setenv(repo_uris.TOKEN_VAR, TOKEN)
    assert repo_uris.fetch(f"repo://{OWNER}/{REPO}/main:tiles/a b.jpg") == b"\xff\xd8tile"


@pytest.mark.parametrize(
    "token,uri,limits,message",
    [
        (TOKEN, "main:missing.jpg", {}, "HTTP 404"),
        ("", "main:tiles/a b.jpg", {}, "refused access .*DAGSHUB_USER_TOKEN"),
        ("wrong", "main:tiles/a b.jpg", {}, "HTTP 401"),
        (TOKEN, "main:big.jpg", {"max_bytes": 1024}, "4096 bytes, over the limit of 1024"),
        (TOKEN, "main:huge.jpg", {"max_bytes": 1024}, "over the limit of 1024 bytes"),
        (TOKEN, "main:slow.jpg", {"timeout_s": 0.5}, "took over 0.5 s"),
    ],
)
def test_unreadable_files_are_user_errors_naming_the_uri(dagshub, token, uri, limits, message):
    started = time.monotonic()
    with (
        repo_uris.RepoFiles(dagshub.url, token, **limits) as files,
        pytest.raises(repo_uris.RepoUriError, match=message),
    ):
        files.read(f"repo://{OWNER}/{REPO}/{uri}")
    assert time.monotonic() - started < 5


def test_unreachable_host_is_a_user_error():
    files = repo_uris.RepoFiles("http://127.0.0.1:9", TOKEN, timeout_s=2)
    with files, pytest.raises(repo_uris.RepoUriError, match="cannot reach http://127.0.0.1:9"):
        files.read(f"repo://{OWNER}/{REPO}/main:x.jpg")


# --- acorn dagshub setup --------------------------------------------------------------------


@pytest.fixture
def project(tmp_path) -> Path:
    """A git + DVC repository with acorn's ignore rules for the files that hold secrets."""
    root = tmp_path / "project"
    root.mkdir()
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    (root / ".gitignore").write_text(".env\n")
    return root


def setup_cli(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in tool_env(root).items() if not k.startswith("DAGSHUB_")}
    return subprocess.run(
        ["acorn", "dagshub", "setup", *args],
        cwd=root,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_setup_without_a_token_fails_fast_and_writes_nothing(project):
    started = time.monotonic()
    proc = setup_cli(project, {}, "--repo", f"{OWNER}/{REPO}")
    assert proc.returncode == 1
    assert "DAGSHUB_USER_TOKEN is not set" in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - started < 60
    assert not (project / ".env").exists() and not (project / ".dvc/config.local").exists()


def test_setup_writes_mlflow_dvc_and_label_studio_config_with_no_secret_in_git(project, dagshub, monkeypatch):
    env = {repo_uris.TOKEN_VAR: TOKEN, repo_uris.HOST_VAR: dagshub.url}
    proc = setup_cli(project, env, "--repo", f"{OWNER}/{REPO}", "--label-studio")
    assert proc.returncode == 0, proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr

    repo_url = f"{dagshub.url}/{OWNER}/{REPO}"
    dotenv = dict(line.split("=", 1) for line in (project / ".env").read_text().splitlines())
    assert {k: v.strip("'\"") for k, v in dotenv.items()} == {
        "MLFLOW_TRACKING_URI": f"{repo_url}.mlflow",
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": TOKEN,
        "LABEL_STUDIO_URL": f"{repo_url}/annotations/de",
        "LABEL_STUDIO_API_KEY": TOKEN,
    }
    listed = run(["dvc", "remote", "list"], project).stdout
    assert listed.split()[:3] == ["dagshub", f"s3://{REPO}/dvc", "(default)"]
    config = (project / ".dvc/config").read_text()
    assert f"endpointurl = {dagshub.url}/api/v1/repo-buckets/s3/{OWNER}" in config
    assert "remote = dagshub" in config
    local = (project / ".dvc/config.local").read_text()
    assert f"access_key_id = {TOKEN}" in local and f"secret_access_key = {TOKEN}" in local
    for secret_file in (project / ".env", project / ".dvc/config.local"):
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600, secret_file

    # everything git would commit is free of the token
    run(["git", "add", "-A"], project)
    tracked = run(["git", "ls-files"], project).stdout.split()
    assert ".dvc/config" in tracked and ".env" not in tracked and ".dvc/config.local" not in tracked
    assert subprocess.run(["git", "grep", "--cached", "-q", TOKEN], cwd=project).returncode == 1

    # the pipeline's registry finds the server and the credentials in .env
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    assert registry.tracking_uri(project) == f"{repo_url}.mlflow"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == TOKEN

    again = setup_cli(project, env, "--repo", f"{OWNER}/{REPO}")
    assert again.returncode == 0, again.stderr  # re-running updates in place


@pytest.mark.parametrize(
    "repo,token,message",
    [
        ("squirrel-lab/nope", TOKEN, "no repository squirrel-lab/nope on http"),
        (f"{OWNER}/{REPO}", "revoked", "refused the request .*HTTP status 401.*token in DAGSHUB_USER_TOKEN"),
        ("no-slash", TOKEN, "--repo 'no-slash': expected <owner>/<name>"),
    ],
)
def test_setup_names_the_repository_or_token_it_cannot_use(dagshub, repo, token, message):
    with pytest.raises(dagshub_setup.DagsHubError, match=message):
        dagshub_setup.resolve_profile(repo, token, dagshub.url)


def test_setup_refuses_to_write_the_token_where_git_would_commit_it(project, dagshub):
    (project / ".gitignore").write_text("")
    profile = dagshub_setup.resolve_profile(f"{OWNER}/{REPO}", TOKEN, dagshub.url)
    with pytest.raises(dagshub_setup.DagsHubError, match=r"\.env is not git-ignored"):
        dagshub_setup.write_profile(project, profile, TOKEN)
    assert not (project / ".env").exists()


# --- Label Studio tasks that name their images by repo:// ------------------------------------


@pytest.mark.parametrize(
    "root,path,uri",
    [
        ("repo://o/r/main:", "data/tiles/images/t.jpg", "repo://o/r/main:data/tiles/images/t.jpg"),
        ("repo://o/r/v2:data/", "tiles/t.jpg", "repo://o/r/v2:data/tiles/t.jpg"),
        ("repo://o/r/v2:data", "tiles/t.jpg", "repo://o/r/v2:data/tiles/t.jpg"),
        ("repo://o/r", "data/t.jpg", "repo://o/r/data/t.jpg"),
    ],
)
def test_under_joins_a_repo_root_and_a_path(root, path, uri):
    assert repo_uris.under(root, path) == uri


@pytest.mark.parametrize("root", ["repo://o", "/srv/data", "repo://o/r/main:../up"])
def test_under_refuses_what_is_not_a_repository_root(root):
    with pytest.raises(repo_uris.RepoUriError):
        repo_uris.under(root, "t.jpg")


def test_label_studio_tasks_name_tiles_by_repo_uri_when_the_root_is_a_repository(tmp_path, dagshub):
    """With ``labeling.document_root: repo://...`` (DagsHub's hosted Label Studio) a pushed task
    names its tile by ``repo://`` URI, which resolves to the tile's bytes on the host; no local-files
    storage is asked for. A local root keeps local-files URLs."""
    from acorn.labeling.labelstudio import LabelStudioBackend

    tile = "data/tiles/images/f1_r0_c0.jpg"
    (tmp_path / tile).parent.mkdir(parents=True)
    (tmp_path / tile).write_bytes(b"\xff\xd8tile")
    dagshub.files[("main", tile)] = b"\xff\xd8tile"
    kwargs = {"repo_root": tmp_path, "url": "http://127.0.0.1:9", "api_key": "k"}

    hosted = LabelStudioBackend(["squirrel"], document_root=f"repo://{OWNER}/{REPO}/main:", **kwargs)
    uri = hosted._image_url(tile)
    assert uri == f"repo://{OWNER}/{REPO}/main:{tile}"
    assert hosted.spec.storage_path is None
    assert hosted._image_url("repo://a/b/c:d.jpg") == "repo://a/b/c:d.jpg"  # as given
    with pytest.raises(Exception, match="outside the repository"):
        hosted._image_url("../elsewhere.jpg")
    with repo_uris.RepoFiles(dagshub.url, TOKEN) as files:
        assert files.read(uri) == b"\xff\xd8tile"

    local = LabelStudioBackend(["squirrel"], **kwargs)
    assert local._image_url(tile) == f"/data/local-files/?d={tile}"
    assert local.spec.storage_path == tmp_path / "data/tiles"

    with pytest.raises(repo_uris.RepoUriError):
        LabelStudioBackend(["squirrel"], document_root="repo://owner-only", **kwargs)
