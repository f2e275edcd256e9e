"""``acorn serve`` probed as an attacker would (issue 27): by a task, a web page, a neighbour.

Each test is one of the issue's probes, and each failed on the code before the fix: the
listener on 127.0.0.1 got the request, the text/plain POST was answered, the Host and Origin
were not looked at, deeply nested JSON was a 500, ``/docs`` answered, a busy server read the
body before refusing it. The slow ones run ``acorn serve`` as a process: a pixel bomb whose
peak memory is measured, and an MLflow URI with a password whose server answers 500.
"""

from __future__ import annotations

import asyncio
import http.server
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi import FastAPI
from fastapi.responses import RedirectResponse, Response
from fastapi.testclient import TestClient

from acorn.labeling.labelstudio.server import free_port
from acorn.serve.app import create_app
from acorn.serve.images import (
    FetchPolicy,
    ImageError,
    ImageLimits,
    ImageSource,
    LabelStudioAuth,
    PixelBudget,
    RequestPixels,
    decode_image,
    guarded_client,
    parse_reference,
)
from acorn.serve.redaction import scrub
from acorn.serve.server import ServerThread

from .conftest import LOCAL, MODEL, clean_env, noise_image, register_version, start_serve, stop
from .test_app import local, predict, tasks_for
from .test_images import jpeg_bytes


class Listener:
    """A TCP listener on 127.0.0.1 that records every connection it gets and what was sent."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[bytes] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.seen.append(conn.recv(4096))
                    body = jpeg_bytes()
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                except OSError:
                    self.seen.append(b"")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    probe = Listener()
    yield probe
    probe.close()


def errors_of(results: list[dict]) -> list[str]:
    return [r.get("error", "") for r in results]


# --- what a task can make serve fetch ----------------------------------------------------------


def test_task_urls_reach_no_local_listener(client_for, listener, monkeypatch):
    """The SSRF probe: task URLs naming a listener on 127.0.0.1 in every spelling, and Label
    Studio's API paths on its own origin (the listener stands in for Label Studio and DagsHub),
    get an error each, and the listener sees no connection at all."""
    at = f"127.0.0.1:{listener.port}"
    monkeypatch.setenv("DAGSHUB_CLIENT_HOST", f"http://{at}")
    client = client_for(label_studio_url=f"http://{at}", label_studio_api_key="ls-key-0123")
    references = [
        f"http://{at}/x.jpg",
        f"http://localhost:{listener.port}/x.jpg",
        f"http://2130706433:{listener.port}/x.jpg",  # 127.0.0.1 as one number
        f"http://127.1:{listener.port}/x.jpg",
        f"http://0x7f000001:{listener.port}/x.jpg",
        f"http://user:pw@{at}/data/upload/1/a.jpg",
        "/api/projects",
        f"http://{at}/api/current-user/whoami",
        "/data/upload/../../api/projects",
        "/data/upload/%2e%2e/%2E%2E/api/projects",
        "/tasks/1/../../api/projects",
        "repo://../../main:x.jpg",
        "repo://owner/../main:x.jpg",
        "repo://owner/repo/..:x.jpg",
        "repo://owner/repo/main/../../..:x.jpg",
        "repo://owner/repo/%2e%2e:x.jpg",
    ]
    results = predict(client, tasks_for(*references))
    assert all(errors_of(results)), results
    assert all(r["result"] == [] for r in results)
    assert listener.seen == [], f"serve connected to the listener: {listener.seen}"


def test_allowed_names_are_checked_by_address(client_for, listener):
    """A host allowed by name that resolves to loopback is still refused unless private addresses
    are allowed too; allowing them (the control) does reach the listener."""
    at = f"127.0.0.1:{listener.port}"
    refused = predict(
        client_for(allow_hosts=("localhost", "127.0.0.1")),
        tasks_for(f"http://localhost:{listener.port}/x.jpg", f"http://{at}/x.jpg"),
    )
    assert all("could not fetch image" in e for e in errors_of(refused)), refused
    assert listener.seen == []
    allowed = predict(
        client_for(allow_hosts=("127.0.0.1",), allow_private_hosts=True), tasks_for(f"http://{at}/x.jpg")
    )
    assert "error" not in allowed[0] and len(listener.seen) == 1


def test_redirects_are_checked_like_task_urls(client_for, listener):
    """Label Studio's media path redirecting to another host, or to its own API, is refused
    before the redirect is followed."""
    api_calls: list[str] = []
    fake = FastAPI()

    @fake.get("/data/upload/1/{name}")
    def upload(name: str) -> Response:
        target = {"away.jpg": f"http://127.0.0.1:{listener.port}/x.jpg", "api.jpg": "/api/projects"}[name]
        return RedirectResponse(target, status_code=302)

    @fake.get("/api/projects")
    def projects() -> Response:
        api_calls.append("projects")
        return Response(jpeg_bytes(), media_type="image/jpeg")

    with ServerThread(fake) as ls:
        client = client_for(label_studio_url=ls.url, label_studio_api_key="ls-key-0123")
        results = predict(client, tasks_for("/data/upload/1/away.jpg", "/data/upload/1/api.jpg"))
    assert "not an allowed image host" in results[0]["error"]
    assert "not its API" in results[1]["error"]
    assert listener.seen == [] and api_calls == []


def test_open_and_closed_ports_give_the_same_error(client_for):
    """On an allowed host, a port that answers 404 and a closed port read the same to the task."""
    closed = free_port()
    with ServerThread(FastAPI()) as server:  # answers 404 to every path
        results = predict(
            client_for(allow_hosts=("127.0.0.1",), allow_private_hosts=True),
            tasks_for(f"http://127.0.0.1:{server.port}/x.jpg", f"http://127.0.0.1:{closed}/x.jpg"),
        )
        port = server.port
    open_error, closed_error = errors_of(results)
    assert open_error.replace(str(port), "P") == closed_error.replace(str(closed), "P")
    assert open_error.startswith("could not fetch image")


def test_every_address_of_a_name_is_checked_and_the_checked_one_is_connected(data_root):
    """Resolved once, checked whole, connected by address: a name with one loopback address among
    public ones is refused; a name that resolves nowhere but through the checked answer (here
    a stand-in resolver) reaches the address that was checked, with its own name as Host."""
    hosts_seen: list[str] = []
    fake = FastAPI()

    @fake.get("/a.jpg")
    def image() -> Response:
        return Response(jpeg_bytes(), media_type="image/jpeg")

    @fake.middleware("http")
    async def record_host(request, call_next):
        hosts_seen.append(request.headers["host"])
        return await call_next(request)

    answers = {"mixed.example.test": ["93.184.216.34", "127.0.0.1"], "tiles.example.test": ["127.0.0.1"]}
    resolved: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        resolved.append(host)
        return answers[host]

    async def load(references: list[str], allow_private: bool) -> list:
        policy = FetchPolicy(allow_hosts=("*.example.test",), allow_private=allow_private)
        async with guarded_client(policy, 10, 4, resolve) as client:
            source = ImageSource(data_root, ImageLimits(), client, policy, LabelStudioAuth("", ""))
            return await source.load(references)

    with ServerThread(fake) as server:
        mixed, strict = asyncio.run(
            load(
                [
                    f"http://mixed.example.test:{server.port}/a.jpg",
                    f"http://tiles.example.test:{server.port}/a.jpg",
                ],
                False,
            )
        )
        assert isinstance(mixed, ImageError) and isinstance(strict, ImageError) and hosts_seen == []
        (image,) = asyncio.run(load([f"http://tiles.example.test:{server.port}/a.jpg"], True))
    assert not isinstance(image, ImageError) and image.size == (32, 24)
    assert hosts_seen == [f"tiles.example.test:{server.port}"]
    assert resolved.count("tiles.example.test") == 2, "one look-up per connection, none by the client"


def test_malformed_references_are_errors_of_their_task(client_for):
    """A reference Python's URL parser refuses fails its task only, not the request (before: 500)."""
    broken = [
        "http://[::1/x.jpg",
        "http://h:99999/x.jpg",
        "https://u:p@[fe80::1/a.jpg",
        "/data/local-files/?d=a%00b",
    ]
    results = predict(client_for(), tasks_for(*broken, local("tiles/a.jpg")))
    assert all(errors_of(results)[:-1]) and "error" not in results[-1]
    assert not any("u:p" in e for e in errors_of(results))


def test_the_fetch_policy_by_url():
    """What each kind of URL is, and what is refused, with Label Studio under a path on the
    DagsHub host's own origin (as DagsHub serves it)."""
    ls = "https://dagshub.com/squirrel-lab/backyard/annotations/de"
    policy = FetchPolicy(ls, "https://dagshub.com", ("images.example.org", "*.cdn.example"))
    assert policy.kind(f"{ls}/data/upload/3/a.jpg") == "label-studio"
    assert policy.kind(f"{ls}/tasks/17/presign/?fileuri=czM6Ly9i") == "label-studio"
    assert policy.kind("https://dagshub.com/api/v1/repos/o/r/raw/main/a.jpg") == "dagshub"
    assert policy.kind("https://images.example.org/a.jpg") == "allowed"
    assert policy.kind("https://eu.cdn.example/a.jpg") == "allowed"
    for url in (
        f"{ls}/api/projects",
        f"{ls}/data/upload/../../api/projects",
        "https://dagshub.com/api/v1/user",
        "https://dagshub.com/squirrel-lab/backyard/annotations/de2/data/upload/a.jpg",
        "https://cdn.example/a.jpg",
        "https://evilcdn.example/a.jpg",
        "https://images.example.org.evil.test/a.jpg",
        "https://user:pw@images.example.org/a.jpg",
        "ftp://images.example.org/a.jpg",
        "http://169.254.169.254/latest/meta-data/",
    ):
        with pytest.raises(ImageError):
            policy.kind(url)


@pytest.mark.parametrize(
    "uri",
    [
        "repo://../backyard/main:a.jpg",
        "repo://squirrel-lab/../main:a.jpg",
        "repo://squirrel-lab/./main:a.jpg",
        "repo://squirrel-lab/backyard/..:a.jpg",
        "repo://squirrel-lab/backyard/main/../../x:a.jpg",
        "repo://squirrel-lab/backyard/main//x:a.jpg",
        "repo://squirrel-lab/backyard/%2e%2e:a.jpg",
        "repo://squirrel-lab/backyard/main:a/%2e%2e/b.jpg",
    ],
)
def test_repo_uris_with_dot_or_empty_segments_are_refused(uri):
    with pytest.raises(ImageError, match="repo://"):
        parse_reference(uri)


def test_the_default_data_root_is_the_tiles_folder(tmp_path, champion):
    """With the defaults (from params, as the command builds them) a task cannot read the
    repository's .env or mlflow.db, nor learn whether they exist."""
    from acorn.params import load_params
    from acorn.serve.config import ServeConfig

    (tmp_path / "params.yaml").write_text(f"register:\n  model_name: {MODEL}\n")
    (tmp_path / ".env").write_text("LABEL_STUDIO_API_KEY=secret\n")
    (tmp_path / "data" / "tiles").mkdir(parents=True)
    noise_image(tmp_path / "data" / "tiles" / "a.jpg", 64, 64, seed=1)
    config = ServeConfig.from_params(load_params(tmp_path / "params.yaml"), tmp_path)
    with TestClient(create_app(config, champion=champion), base_url=LOCAL) as client:
        results = predict(client, tasks_for(local(".env"), local("mlflow.db"), local("data/tiles/a.jpg")))
    assert errors_of(results)[0] == errors_of(results)[1].replace("mlflow.db", ".env")
    assert "outside the data root" in results[0]["error"] and "error" not in results[2]


# --- what a web page can make serve do -------------------------------------------------------


def test_web_pages_cannot_drive_serve(client_for):
    """text/plain needs no CORS preflight, so any page could POST it to 127.0.0.1:9090: refused.
    So are a browser Origin and a Host other than loopback (DNS rebinding)."""
    client = client_for()
    body = '{"tasks": [{"id": 1, "data": {"image": "/data/local-files/?d=tiles/a.jpg"}}]}'
    plain = client.post("/predict", content=body, headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415
    assert client.post("/predict", content=body).status_code == 415  # no Content-Type at all
    for path in ("/predict", "/setup", "/webhook"):
        page = client.post(
            path, content=body, headers={"Content-Type": "application/json", "Origin": "https://evil.example"}
        )
        assert page.status_code == 403, path
    assert client.get("/health", headers={"Origin": "null"}).status_code == 403
    rebound = client.get("/health", headers={"Host": "evil.example:9090"})
    assert rebound.status_code == 400
    assert client.get("/health", headers={"Host": "localhost:9090"}).status_code == 200
    assert client.get("/health", headers={"Host": "[::1]:9090"}).status_code == 200
    allowed = client_for(allow_origins=("https://ls.example",), public_names=("gpu-box.lan",))
    assert (
        allowed.get("/health", headers={"Origin": "https://ls.example", "Host": "gpu-box.lan"}).status_code
        == 200
    )


def test_bad_json_is_400_and_there_are_no_api_pages(client_for):
    client = client_for(token="s3cret")
    auth = {"Authorization": "Bearer s3cret", "Content-Type": "application/json"}
    deep = "[" * 100_000 + "]" * 100_000
    assert client.post("/predict", content=deep, headers=auth).status_code == 400
    assert (
        client.post("/predict", json={"tasks": [], "label_config": {"a": [1]}}, headers=auth).status_code
        == 400
    )
    assert client.post("/setup", content='{"project": ' + deep + "}", headers=auth).status_code == 400
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code in (401, 404), path
        assert client.get(path, headers=auth).status_code == 404, path


def test_a_busy_server_refuses_before_reading_the_body(champion, config_for):
    """With max_pending requests in flight, the next one is answered 503 at once, from its
    headers alone: the body it declared is never waited for."""
    model = champion.current(timeout=0)
    with ServerThread(create_app(config_for(max_pending=1), champion=champion)) as server:
        with model.lock:  # inference waits: the first request stays in flight
            first = threading.Thread(
                target=httpx.post,
                args=(f"{server.url}/predict",),
                kwargs={"json": {"tasks": tasks_for(local("tiles/a.jpg"))}, "timeout": 60},
            )
            first.start()
            time.sleep(0.5)
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(
                    b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000000\r\n\r\n"
                )
                sock.settimeout(5)
                answer = sock.recv(4096)
        first.join(60)
    assert answer.startswith(b"HTTP/1.1 503"), answer[:200]


# --- decoded pixels ---------------------------------------------------------------------------


def test_pixel_budgets_refuse_before_decoding_and_give_back(client_for):
    process = PixelBudget(4000)
    request = RequestPixels(process, 3000)
    image = jpeg_bytes(40, 30)  # 1200 pixels
    assert decode_image(image, ImageLimits(), "a", request).size == (40, 30)
    assert decode_image(image, ImageLimits(), "b", request).size == (40, 30) and process.held == 2400
    with pytest.raises(ImageError, match="request's budget"):
        decode_image(image, ImageLimits(), "c", request)
    other = RequestPixels(process, 10_000)
    decode_image(image, ImageLimits(), "d", other)
    with pytest.raises(ImageError, match="server busy"):
        decode_image(image, ImageLimits(), "e", other)
    request.close()
    other.close()
    assert process.held == 0
    with pytest.raises(ImageError, match="request ended"):
        decode_image(image, ImageLimits(), "f", request)

    # through the app: tiles/a.jpg is 96x80 (7680 pixels), so two fit in 16000 and the third does not
    client = client_for(max_request_pixels=16_000)
    results = predict(client, tasks_for(*[local("tiles/a.jpg")] * 3))
    assert [("error" in r) for r in results].count(True) == 1
    assert "request's budget" in [e for e in errors_of(results) if e][0]
    assert client.app.state.pixels.held == 0, "every pixel a request took is given back"


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A black RGB PNG of ``width`` x ``height``: ~100 KB on disk, 4 bytes a pixel once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


BOMB_TASKS = 24
BOMB_SIDE = (6400, 6250)  # 40 MP: at the per-image limit, so only the budgets stand in the way
BOMB_MB = BOMB_SIDE[0] * BOMB_SIDE[1] * 4 / 2**20  # 153 MB decoded (PIL: 4 bytes an RGB pixel)
# serve's budget here: one bomb decoded at a time (the defaults would allow three)
BUDGET = ["--max-image-pixels", "40000000", "--max-process-pixels", "45000000"]
# What one admitted bomb costs at its peak: decoding holds two copies (2 x 153 MB), inference a
# numpy copy (115 MB) and the letterboxed input (small): ~420 MB; with allocator slack, 700 MB.
# A server that kept the request's images would hold 24 x 153 MB = 3.7 GB: the bound is a fifth
# of that, and below what five decoded bombs alone take.
BOMB_GROWTH_BOUND_MB = 700


@pytest.mark.slow  # a serve process: ~15 s
def test_a_pixel_bomb_does_not_grow_memory(tmp_path, weights):
    """The issue's probe: 24 tasks naming one small 40 MP PNG. Refused beyond the budget, and
    serve's peak resident memory, sampled every 20 ms, stays below the bound above."""
    root = tmp_path / "repo"
    tiles = root / "data" / "tiles"
    tiles.mkdir(parents=True)
    (root / "params.yaml").write_text(f"register:\n  model_name: {MODEL}\nrank:\n  threshold: 0.25\n")
    noise_image(tiles / "a.jpg", 96, 80, seed=1)
    png_bomb(tiles / "bomb.png", *BOMB_SIDE)
    register_version(root, weights, 0.1)
    proc, url = start_serve(root, BUDGET, clean_env(), tmp_path / "serve.log")
    server = psutil.Process(proc.pid)
    try:
        with httpx.Client(base_url=url, timeout=300) as http:
            warm = http.post("/predict", json={"tasks": tasks_for(local("data/tiles/a.jpg"))})
            assert warm.status_code == 200 and "error" not in warm.json()["results"][0], warm.text
            baseline = server.memory_info().rss
            peak = [baseline]
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], server.memory_info().rss)
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            try:
                bomb = http.post(
                    "/predict", json={"tasks": tasks_for(*[local("data/tiles/bomb.png")] * BOMB_TASKS)}
                )
            finally:
                done.set()
                sampler.join()
    finally:
        stop(proc)
    assert bomb.status_code == 200, bomb.text
    errors = errors_of(bomb.json()["results"])
    refused = [e for e in errors if "pixel" in e]
    growth_mb = (peak[0] - baseline) / 2**20
    print(f"\npixel bomb: {len(refused)} of {BOMB_TASKS} refused, resident memory +{growth_mb:.0f} MB")
    assert len(refused) >= BOMB_TASKS - 1, errors
    assert growth_mb < BOMB_GROWTH_BOUND_MB, f"serve grew {growth_mb:.0f} MB under the pixel bomb"


class FailingMlflow(http.server.BaseHTTPRequestHandler):
    """An MLflow tracking server that answers every request with 500."""

    calls: list[str] = []

    def do_GET(self) -> None:
        FailingMlflow.calls.append(self.path)
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        """Quiet: the test reads serve's log, not this one."""


def test_scrub_removes_credentials_from_any_text():
    env = {
        "MLFLOW_TRACKING_URI": "https://acorn:uri-pw-123@mlflow.example/",
        "LABEL_STUDIO_API_KEY": "ls-key-0123456",
        "ACORN_SERVE_BASIC_AUTH": "ls:basic-pw-9",
    }
    text = (
        "API request to https://acorn:uri-pw-123@mlflow.example/api/2.0/x failed; "
        "'s3://key:secret@bucket/a' Token ls-key-0123456 basic-pw-9 http://plain.example/ok"
    )
    scrubbed = scrub(text, env)
    for secret in ("uri-pw-123", "secret@", "ls-key-0123456", "basic-pw-9", "acorn:"):
        assert secret not in scrubbed, scrubbed
    assert "https://mlflow.example/api/2.0/x" in scrubbed and "http://plain.example/ok" in scrubbed


@pytest.mark.slow  # a serve process: ~10 s
def test_mlflow_credentials_never_reach_health_setup_or_the_log(tmp_path):
    """MLFLOW_TRACKING_URI with user:password@ whose server answers 500: the error shows in
    /health and /setup (naming the server) without the password, and the log never has it."""
    secret = "pw-SECRET-4d2f9"
    mlflow_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FailingMlflow)
    threading.Thread(target=mlflow_server.serve_forever, daemon=True).start()
    port = mlflow_server.server_address[1]
    root = tmp_path / "repo"
    (root / "data" / "tiles").mkdir(parents=True)
    (root / "params.yaml").write_text(f"register:\n  model_name: {MODEL}\n")
    env = clean_env() | {
        "MLFLOW_TRACKING_URI": f"http://acorn:{secret}@127.0.0.1:{port}",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    }
    log = tmp_path / "serve.log"
    proc, url = start_serve(root, [], env, log)
    try:
        deadline = time.monotonic() + 60
        while (health := httpx.get(f"{url}/health").json())["state"] != "error":
            assert time.monotonic() < deadline, health
            time.sleep(0.2)
        setup = httpx.post(f"{url}/setup", json={})
    finally:
        stop(proc)
        mlflow_server.shutdown()
    assert FailingMlflow.calls, "serve asked the MLflow server"
    assert f"127.0.0.1:{port}" in health["error"], health  # the error names the server...
    assert secret not in str(health)  # ...without its password
    assert setup.status_code == 503 and secret not in setup.text and f"127.0.0.1:{port}" in setup.text
    assert secret not in log.read_text(), "the password reached the log"
