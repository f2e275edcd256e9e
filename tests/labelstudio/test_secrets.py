"""Secrets stay out of every artifact (issue 10, item 5; issue 27, items 4 and 5).

Known, distinctive token values are put where a user keeps them: the environment and the
git-ignored ``.env`` (mode 0600). The shell that runs `acorn labelstudio start` holds all of them,
and more (a tracking URI with a password, another server's Label Studio key). A cycle then runs
through that Label Studio and a real ``acorn serve`` (``dvc repro``, the simulated annotator, the
labels export and snapshot, a commit and ``dvc push``, ``/predict`` calls with a good and a bad
token), and every file the repository and its outputs hold is searched for the values: dvc.lock,
params, metrics, reports, logs, MLflow's database and artifacts, the registry record, the labels
snapshot, the DVC remote, git's objects (decompressed), the serve log, what Label Studio holds (the
tasks and predictions pushed, its database, its log, pid and credentials files), the server's
process environments, and the files the system temp folder gained during the test. Also
searched: the values base64-encoded (as in a basic-auth header) and inside zip archives (.pt
weights, MLflow models), gzip files and Parquet tables (whose compression would hide a raw value).

Label Studio's local-files serving (``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` is the
repository, as ``acorn labelstudio start`` sets it) must not hand out ``.env`` or anything
outside the tiles folder: the last test asks the real server for it in every way that
comes to mind.

It lives in tests/labelstudio for that folder's server venv and shared server.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from acorn.labeling.labelstudio.server import LocalServer, free_port
from tests.conftest import tool_env, write_params

from .conftest import VENV, Workspace, no_predictions

# distinctive fake values: found anywhere, they were written by acorn or a tool it drives. Each is
# put together at run time, so that this file (copied into the test repository) does not hold it.
SWEEP = "acorn" + "sweep"
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIA" + SWEEP.upper() + "7Q3ZXW",
    "AWS_SECRET_ACCESS_KEY": SWEEP + "AwsSecret9vKd2LmQ81xTzR4",
    "ACORN_SERVE_TOKEN": SWEEP + "ServeToken5Hc8Wq",
}
FAKE_DOTENV = {
    "MLFLOW_TRACKING_PASSWORD": SWEEP + "MlflowPassword3Jr6Ny",
    "DAGSHUB_USER_TOKEN": SWEEP + "DagshubToken8Pf1Ub",
}
# Not a secret: MLflow records the tracking username as each run's author (tag ``mlflow.user``),
# by design. It is set, so that a run sees the full set of credentials, and not searched for.
USERNAME = {"MLFLOW_TRACKING_USERNAME": SWEEP + "MlflowUser7Q3Z"}
# What the shell that starts Label Studio holds besides: a tracking URI with a password in it and
# the key of some other Label Studio. acorn's own commands do not get these (the URI names no server).
SHELL_ONLY = [SWEEP + "UriPassword2Kd7Vb", SWEEP + "OtherLabelStudioKey6Rm1"]
SHELL = {
    **FAKE_DOTENV,
    "MLFLOW_TRACKING_URI": f"http://{USERNAME['MLFLOW_TRACKING_USERNAME']}:{SHELL_ONLY[0]}@127.0.0.1:9/",
    "LABEL_STUDIO_API_KEY": SHELL_ONLY[1],
}


# --- the search ---------------------------------------------------------------------------


def needles(secrets: Iterable[str]) -> dict[bytes, str]:
    """Each secret as bytes, and base64-encoded at each of the three offsets (mod 3) it can
    start at inside a longer encoded string: the characters made of its bits only."""
    found: dict[bytes, str] = {}
    for secret in secrets:
        raw = secret.encode()
        found[raw] = secret
        for pad in range(3):
            encoded = base64.b64encode(b"\0" * pad + raw)
            found[encoded[-(-8 * pad // 6) : 8 * (pad + len(raw)) // 6]] = secret
    return found


def readable(path: Path) -> Iterator[tuple[str, bytes]]:
    """The file's bytes, plus what its compression hides (zip members, gzip, Parquet rows)."""
    data = path.read_bytes()
    yield str(path), data
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name in archive.namelist():
                yield f"{path}!{name}", archive.read(name)
    if data[:2] == b"\x1f\x8b":
        yield f"{path}!gunzip", gzip.decompress(data)
    if data[:4] == b"PAR1":
        import pyarrow.parquet as pq

        yield f"{path}!rows", pq.read_table(path).to_pandas().to_csv().encode()


def search(paths: Iterable[Path], secrets: Iterable[str]) -> dict[str, list[str]]:
    """Where each secret appears: ``{place: [secret, ...]}``."""
    wanted = needles(secrets)
    hits: dict[str, list[str]] = {}
    for path in paths:
        if path.is_symlink() or not path.is_file():
            continue
        for place, data in readable(path):
            found = sorted({secret for needle, secret in wanted.items() if needle in data})
            if found:
                hits[place] = found
    return hits


def git_objects(root: Path) -> bytes:
    """Every object in the repository's git database, decompressed."""
    return subprocess.run(
        ["git", "cat-file", "--batch-all-objects", "--batch"], cwd=root, capture_output=True, check=True
    ).stdout


def test_the_search_finds_a_secret_however_it_was_stored(tmp_path):
    """The search itself can fail: a secret planted in each kind of file is found."""
    secret = SWEEP + "Planted4Tx9Lq"
    (tmp_path / "plain.log").write_text(f"token={secret}\n")
    header = base64.b64encode(f"user:{secret}".encode()).decode()
    (tmp_path / "header.txt").write_text(f"Authorization: Basic {header}\n")
    with zipfile.ZipFile(tmp_path / "weights.pt", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", f"args {secret} " * 50)
    (tmp_path / "log.gz").write_bytes(gzip.compress(f"{secret}\n".encode() * 50))
    with sqlite3.connect(tmp_path / "store.db") as db:
        db.execute("create table tags (key text, value text)")
        db.execute("insert into tags values ('env', ?)", (f"AWS={secret}",))
    import pandas as pd

    pd.DataFrame({"note": [f"x{secret}y"] * 100}).to_parquet(tmp_path / "t.parquet", compression="zstd")
    (tmp_path / "clean.txt").write_text("nothing to see\n")
    hits = search(sorted(tmp_path.iterdir()), [secret])
    assert sorted({Path(p.split("!")[0]).name for p in hits}) == [
        "header.txt",
        "log.gz",
        "plain.log",
        "store.db",
        "t.parquet",
        "weights.pt",
    ]


# --- a cycle through Label Studio and acorn serve ------------------------------------------


def _serve(root: Path, env: dict[str, str], data_root: Path, log: Path) -> tuple[subprocess.Popen, str]:
    acorn = Path(sys.executable).parent / "acorn"
    cmd = [str(acorn), "serve", "--port", "0", "--data-root", str(data_root)]
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_text())
        if found:
            return proc, found.group(1)
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"acorn serve did not start:\n{log.read_text()[-3000:]}")


def server_environments(server: LocalServer) -> list[Path]:
    """Where the kernel keeps the environment of the running server and of each process it spawned:
    what a crash report, a debug page or a child process would hand on."""
    pid = server.status().pid
    assert pid is not None, "the server runs"
    family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return [Path(f"/proc/{p.pid}/environ") for p in family]


def temp_files_since(started: float, basetemp: Path, skip: Path) -> list[Path]:
    """Files of the system temp folder written since ``started``, but for ``skip`` and ``.env`` files.

    Other pytest sessions' folders beside ``basetemp`` are left out: they belong to other test runs
    on this machine. A ``.env`` is the user's own secret store, planted on purpose by these tests.
    """
    found = []
    for folder, dirs, files in os.walk(tempfile.gettempdir()):
        here = Path(folder)
        dirs[:] = [d for d in dirs if here / d != skip and (here != basetemp.parent or d == basetemp.name)]
        for name in files:
            path = here / name
            with contextlib.suppress(OSError):  # a file another process removed meanwhile
                if name != ".env" and not path.is_symlink() and path.stat().st_mtime >= started:
                    found.append(path)
    return found


def token_home(place: str, server: LocalServer, environments: list[Path]) -> bool:
    """Label Studio's own API token and password belong in its credentials file, its database (with
    the database's WAL or journal beside it) and, on the first start, the server's own environment:
    Label Studio 1.23.2 makes its admin user headless only from ``LABEL_STUDIO_USERNAME``,
    ``LABEL_STUDIO_PASSWORD`` and ``LABEL_STUDIO_USER_TOKEN``. Nowhere else."""
    path = Path(place.split("!")[0])
    return (
        path == server.credentials_file
        or path in environments
        or (path.parent == server.data_dir and path.name.startswith("label_studio.sqlite3"))
    )


def test_the_temp_search_lists_what_was_written_during_the_test(tmp_path, tmp_path_factory):
    """The temp folder search can fail too: a file written now is listed; one older than the test,
    a ``.env`` and the folder searched on its own (the test repository) are not."""
    started = time.time() - 1
    (tmp_path / "new.log").write_text("x")
    old = tmp_path / "old.log"
    old.write_text("x")
    os.utime(old, (started - 60, started - 60))
    (tmp_path / ".env").write_text("x")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "file").write_text("x")
    found = set(temp_files_since(started, tmp_path_factory.getbasetemp(), skip=repo))
    assert tmp_path / "new.log" in found
    assert not {old, tmp_path / ".env", repo / "file"} & found


@pytest.mark.slow
@pytest.mark.labelstudio
def test_no_secret_in_any_file_after_a_cycle_through_label_studio_and_serve(tiny_template, tmp_path_factory):
    """`acorn labelstudio start` runs from a shell that holds every secret (the MLflow password in
    the tracking URI too, and a Label Studio key of another server); a cycle then runs through that
    server and `acorn serve`. Searched: the repository (with Label Studio's data and state folders,
    its log and pid file), the running server's process environments, and the files the system temp
    folder gained meanwhile. Label Studio's own API token and admin password are searched for too:
    they are expected in its credentials file, its database and the server's own environment (see
    ``token_home``), and the token in the repository's ``.env`` (where `start` writes it for acorn);
    the output of `acorn labelstudio start` holds neither."""
    started = time.time() - 1  # file times have a coarse grain on some filesystems
    root = tmp_path_factory.mktemp("secrets") / "repo"
    shutil.copytree(tiny_template, root, symlinks=True)
    for args in (["config", "user.email", "t@example.com"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=root, check=True)
    title = "secrets sweep"
    write_params(root, {"labeling": {"backend": "label-studio", "project": title}})
    (root / ".env").write_text("".join(f"{k}={v}\n" for k, v in FAKE_DOTENV.items()))
    (root / ".env").chmod(0o600)
    server = LocalServer.for_repo(root, port=free_port())
    server.state_dir.mkdir(parents=True, exist_ok=True)
    server.venv.symlink_to(VENV)  # the tests' server venv, built once
    env = {
        **tool_env(root),
        **FAKE_ENV,
        **USERNAME,
    }  # the Label Studio key only in .env: acorn reads it there
    logs = root / "logs"
    logs.mkdir()

    def run(name: str, *cmd: str, shell: dict[str, str] | None = None) -> None:
        proc = subprocess.run(cmd, cwd=root, env={**env, **(shell or {})}, capture_output=True, text=True)
        (logs / f"{name}.log").write_text(proc.stdout + proc.stderr)
        assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"

    run("labelstudio-start", "acorn", "labelstudio", "start", "--port", str(server.port), shell=SHELL)
    try:
        conn = server.connection()
        own = {conn.api_key, server.credentials()["password"]}
        secrets = [*FAKE_ENV.values(), *FAKE_DOTENV.values(), *SHELL_ONLY, *own]
        environments = server_environments(server)
        in_server = search(environments, secrets)
        assert (root / ".env").read_text().count(conn.api_key) == 1, "start wrote the key for acorn"

        run("cycle-0", "acorn", "cycle", "--push")  # dvc repro (push to Label Studio), commit, dvc push
        run("annotate", "acorn", "annotate")
        run("export", "dvc", "repro", "export-labels")  # labels and the raw snapshot of the project
        run("push", "dvc", "push")
        assert (root / "data/label-snapshot/tasks.jsonl").read_text().count('"annotations"') == 4

        # acorn serve: the Label Studio key (to fetch uploads) and its own token from the environment
        serve_env = {**env, "LABEL_STUDIO_URL": conn.url, "LABEL_STUDIO_API_KEY": conn.api_key}
        proc, url = _serve(root, serve_env, root, logs / "serve.log")
        from acorn.labeling.labelstudio.backend import LabelStudioBackend

        backend = LabelStudioBackend(["squirrel"], repo_root=root, title=title)
        tasks = [
            {"id": t.id, "data": t.data}
            for t in backend.client.tasks.list(project=backend.project_id(create=False), fields="all")
        ]
        tasks.append({"id": 0, "data": {"image": "/data/upload/1/missing.jpg"}})  # fetched with the key: 404
        answers = []
        try:
            with httpx.Client(base_url=url, timeout=300) as http:
                bad = http.post("/predict", json={"tasks": tasks}, headers={"Authorization": "Bearer wrong"})
                assert bad.status_code == 401
                good = {"Authorization": f"Bearer {FAKE_ENV['ACORN_SERVE_TOKEN']}"}
                for path, body in (("/setup", {"project": "1"}), ("/predict", {"tasks": tasks})):
                    answers.append(http.post(path, json=body, headers=good))
                    assert answers[-1].status_code == 200, answers[-1].text
                assert http.get("/health", headers=good).status_code == 200
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        results = answers[-1].json()["results"]
        assert len(results) == len(tasks) and "error" in results[-1] and "error" not in results[0]
        (logs / "serve-answers.json").write_text(json.dumps([a.json() for a in answers] + [bad.json()]))

        # what Label Studio holds: every task and prediction pushed, as its API gives them
        pushed = [
            t.model_dump(mode="json")
            for t in backend.client.tasks.list(project=backend.project_id(), fields="all")
        ]
        assert len(pushed) == 4 and all(t["predictions"] for t in pushed)
        (logs / "label-studio-tasks.json").write_text(json.dumps(pushed))
        (logs / "git-objects.bin").write_bytes(git_objects(root))
    finally:
        run("labelstudio-stop", "acorn", "labelstudio", "stop")

    written = [p for p in root.rglob("*") if p != root / ".env"]
    names = {p.name for p in written}
    expected = {
        "dvc.lock",
        "params.yaml",
        "mlflow.db",
        "registry.json",
        "queue.csv",
        "tasks.jsonl",
        "MLmodel",
        "label_studio.sqlite3",
        "acorn-credentials.json",
        "server.log",
        "labelstudio-start.log",
    }
    assert expected <= names, expected - names
    assert any(".dvcstore" in p.parts for p in written) and any("mlartifacts" in p.parts for p in written)
    in_temp = temp_files_since(started, tmp_path_factory.getbasetemp(), skip=root)
    hits = {**in_server, **search([*written, *in_temp], secrets)}
    at_home = {
        place
        for place, found in hits.items()
        if set(found) <= own and token_home(place, server, environments)
    }
    assert str(server.credentials_file) in at_home, "control: the search reads the server's own files"
    assert {place: found for place, found in hits.items() if place not in at_home} == {}, "a secret leaked"
    assert stat.S_IMODE((root / ".env").stat().st_mode) == 0o600
    assert (
        ".env"
        in subprocess.run(["git", "check-ignore", ".env"], cwd=root, capture_output=True, text=True).stdout
    )


# --- Label Studio's local-files serving and .env ----------------------------------------------


@pytest.mark.labelstudio
def test_label_studio_local_files_serve_tiles_and_refuse_dotenv(ls_server, workspace: Workspace):  # noqa: F811
    """The document root is the repository (as `acorn labelstudio start` sets it); the project's
    local storage covers data/tiles. Only files under it are served, to a logged-in user."""
    backend = workspace.backend()
    backend.push(workspace.tiles(["a"]), no_predictions())
    secret = FAKE_DOTENV["DAGSHUB_USER_TOKEN"]
    docroot = Path(ls_server.document_root)
    repo = workspace.root.relative_to(docroot)
    for folder in (docroot, workspace.root, workspace.root / "data", workspace.root / "data/tiles-private"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".env").write_text(f"DAGSHUB_USER_TOKEN={secret}\n")
        (folder / ".env").chmod(0o600)
    (workspace.root / "params.yaml").write_text(f"# {secret}\n")
    conn = ls_server.connection()
    http = httpx.Client(base_url=conn.url, headers={"Authorization": f"Token {conn.api_key}"}, timeout=30)
    [task] = workspace.tasks(backend).values()
    tile = http.get(task.data["image"])
    assert tile.status_code == 200 and tile.content[:2] == b"\xff\xd8", "control: a tile is served"

    asked = [
        ".env",
        "../.env",
        "/.env",
        f"{repo}/.env",
        f"{repo}/data/.env",
        f"{repo}/params.yaml",
        f"{repo}/data/tiles/../.env",
        f"{repo}/data/tiles/../../.env",
        f"{repo}/data/tiles/images/../../../.env",
        f"{repo}/data/tiles/%2e%2e/%2e%2e/.env",
        f"{repo}/data/tiles-private/.env",  # beside the tiles folder, its name starting alike
        str(workspace.root / ".env"),
        f"{repo}/data/tiles/../../../{docroot.name}/{repo}/.env",
    ]
    served = {}
    for d in asked:
        answer = http.get("/data/local-files/", params={"d": d})
        if answer.status_code == 200 or secret.encode() in answer.content:
            served[d] = answer.status_code
    anonymous = httpx.get(conn.url + task.data["image"], timeout=30)
    http.close()
    assert served == {}, f"Label Studio served a file outside the tiles folder: {served}"
    assert secret.encode() not in anonymous.content and anonymous.status_code != 200
