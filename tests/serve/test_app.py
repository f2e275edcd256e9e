"""``acorn serve`` over HTTP: the Label Studio ML backend protocol, limits, auth and safety."""

from __future__ import annotations

import threading
import time

import httpx
import pandas as pd
import pytest
from fastapi import FastAPI, Header, Response
from fastapi.testclient import TestClient

from acorn.labeling.labelstudio.server import free_port
from acorn.model.detection import load_images
from acorn.model.registry import tracking_uri
from acorn.serve.app import create_app
from acorn.serve.champion import Champion, served_model_version
from acorn.serve.server import ServerThread

from .conftest import LOCAL, MODEL, noise_image
from .test_images import png_header

LABEL_CONFIG = """<View>
  <Image name="frame" value="$img"/>
  <RectangleLabels name="boxes" toName="frame"><Label value="squirrel"/></RectangleLabels>
</View>"""
V1, V2 = served_model_version(MODEL, 1), served_model_version(MODEL, 2)


def local(rel: str) -> str:
    return f"/data/local-files/?d={rel}"


def tasks_for(*references: str | None, key: str = "image") -> list[dict]:
    return [{"id": i + 1, "data": {key: ref}} for i, ref in enumerate(references)]


def predict(client: TestClient, tasks: list[dict], **extra) -> list[dict]:
    resp = client.post("/predict", json={"tasks": tasks, "project": "1.1", "params": {}, **extra})
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert len(results) == len(tasks)
    return results


def pixel_boxes(result: dict) -> pd.DataFrame:
    """Percent rectangles back to pixel corners, to compare with Detector output."""
    rows = []
    for item in result["result"]:
        v, w, h = item["value"], item["original_width"], item["original_height"]
        rows.append(
            {
                "confidence": item["score"],
                "x1": v["x"] * w / 100,
                "y1": v["y"] * h / 100,
                "x2": (v["x"] + v["width"]) * w / 100,
                "y2": (v["y"] + v["height"]) * h / 100,
            }
        )
    return pd.DataFrame(rows, columns=["confidence", "x1", "y1", "x2", "y2"])


def sorted_boxes(df: pd.DataFrame) -> pd.DataFrame:
    cols = ["confidence", "x1", "y1", "x2", "y2"]
    return df[cols].round(3).sort_values(cols).reset_index(drop=True)


def test_predict_matches_the_detector_one_result_per_task_in_order(client_for, champion, data_root):
    client = client_for(chunk_tasks=2)  # three tasks: two chunks, the second fetched while the first runs
    names = ["tiles/a.jpg", "tiles/c.png", "tiles/b.jpg"]  # two sizes, mixed in one request
    tasks = tasks_for(local(names[0]), names[1], local(names[2]), key="img")
    results = predict(client, tasks, label_config=LABEL_CONFIG)

    detector = champion.current(timeout=0).detector
    for name, result in zip(names, results, strict=True):
        image = load_images([data_root / name])[0]
        expected = detector.predict([image], ["t"]).boxes
        shown = expected[expected["confidence"] >= 0.25]
        assert 0 < len(shown) < len(expected), "the toy model should find boxes on both sides of 0.25"
        got = pixel_boxes(result)
        pd.testing.assert_frame_equal(sorted_boxes(got), sorted_boxes(shown), atol=1e-3)
        assert result["model_version"] == V1 and "error" not in result
        assert result["score"] == pytest.approx(shown["confidence"].mean())
        item = result["result"][0]
        assert (item["from_name"], item["to_name"], item["type"]) == ("boxes", "frame", "rectanglelabels")
        assert (item["original_width"], item["original_height"]) == image.size
        assert item["value"]["rectanglelabels"] == ["squirrel"]


def test_display_threshold_is_a_setting(client_for):
    strict = predict(client_for(threshold=0.9), tasks_for(local("tiles/a.jpg")))[0]
    assert strict["result"] == [] and strict["score"] == 0.0 and "error" not in strict
    everything = predict(client_for(threshold=0.0), tasks_for(local("tiles/a.jpg")))[0]
    assert min(r["score"] for r in everything["result"]) < 0.25


def test_health_setup_webhook(client_for):
    client = client_for()
    health = client.get("/health").json()
    assert health["status"] == "UP" and health["model_class"] == "acorn.serve"
    assert health["model_version"] == V1 and health["state"] == "ready"
    assert client.post("/setup", json={"project": "1.1", "schema": LABEL_CONFIG}).json() == {
        "model_version": V1
    }
    resp = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 1}})
    assert resp.status_code == 200


class GatedChampion(Champion):
    """A champion whose model load waits for the test to open a gate: a slow load, on demand."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()

    def _detector(self, version: int):
        assert self.gate.wait(60)
        return super()._detector(version)


def test_setup_answers_fast_while_the_model_loads(registry_root, config_for):
    champion = GatedChampion(MODEL, tracking_uri(registry_root), refresh_s=3600)
    try:
        with TestClient(create_app(config_for(), champion=champion), base_url=LOCAL) as client:
            start = time.perf_counter()
            health = client.get("/health").json()
            setup = client.post("/setup", json={"project": "1.1", "schema": LABEL_CONFIG})
            elapsed = time.perf_counter() - start
            assert setup.status_code == 200 and setup.json() == {"model_version": V1}
            assert elapsed < 3.0
            assert health["status"] == "UP" and health["model_version"] is None
            assert client.get("/health").json()["state"] == "loading"
            champion.gate.set()  # the load finishes; a predict waits for it instead of failing
            assert predict(client, tasks_for(local("tiles/a.jpg")))[0]["model_version"] == V1
    finally:
        champion.gate.set()
        champion.stop()


def test_no_champion_is_a_clear_503(tmp_path, config_for):
    with TestClient(create_app(config_for(root=tmp_path)), base_url=LOCAL) as client:
        setup = client.post("/setup", json={})
        assert setup.status_code == 503 and f"no {MODEL}@champion" in setup.json()["detail"]
        assert client.get("/health").json()["state"] == "error"
        resp = client.post("/predict", json={"tasks": tasks_for(local("tiles/a.jpg"))})
        assert resp.status_code == 503 and "register a model" in resp.json()["detail"]


def test_task_urls_cannot_leave_the_data_root(client_for, data_root, tmp_path):
    outside = noise_image(tmp_path / "outside.jpg", 32, 32, seed=9)
    escape = data_root / "tiles" / f"escape-{tmp_path.name}.jpg"
    escape.symlink_to(outside)
    references = [
        local("tiles/a.jpg"),
        local("../" * 12 + str(outside).lstrip("/")),
        local(str(outside)),
        str(outside),
        local(f"tiles/{escape.name}"),
        "tiles/../../outside.jpg",
        local("tiles/b.jpg"),
    ]
    results = predict(client_for(), tasks_for(*references))
    assert "error" not in results[0] and "error" not in results[-1]
    for result in results[1:-1]:
        assert result["result"] == [] and "outside the data root" in result["error"]
        assert result["model_version"] == V1


def test_bad_images_give_per_task_errors(client_for, data_root, tmp_path):
    (data_root / "tiles" / "bomb.png").write_bytes(png_header(20_000, 20_000))
    (data_root / "tiles" / "big.png").write_bytes(png_header(8_000, 8_000))
    unreachable = f"http://127.0.0.1:{free_port()}/x.jpg"
    tasks = tasks_for(
        local("tiles/text.jpg"),
        local("tiles/bomb.png"),
        local("tiles/big.png"),
        local("tiles/a.jpg"),
        unreachable,
        local("tiles/missing.jpg"),
        None,
    )
    tasks.append({"id": 99, "data": {"other": "x"}})
    results = predict(client_for(max_image_pixels=1_000_000), tasks)
    errors = [r.get("error", "") for r in results]
    assert "not an image" in errors[0]
    assert "decompression bomb" in errors[1]
    assert "pixel limit" in errors[2]
    assert errors[3] == "" and results[3]["result"]
    assert "not an allowed image host" in errors[4]
    assert "no such file" in errors[5]
    assert "non-empty string" in errors[6]
    assert "task 99 has no data.image" in errors[7]

    oversize = predict(client_for(max_image_bytes=1000), tasks_for(local("tiles/a.jpg")))[0]
    assert "byte image limit" in oversize["error"]


def test_request_limits(client_for):
    client = client_for(max_tasks=2, max_body_bytes=4000)
    too_many = client.post("/predict", json={"tasks": tasks_for("a", "b", "c")})
    assert too_many.status_code == 413 and "at most 2" in too_many.json()["detail"]
    too_big = client.post("/predict", json={"tasks": tasks_for("x" * 5000)})
    assert too_big.status_code == 413
    json_type = {"Content-Type": "application/json"}
    chunked = client.post("/predict", content=iter([b'{"tasks": [', b" " * 5000, b"]}"]), headers=json_type)
    assert chunked.status_code == 413
    assert client.post("/predict", content=b"{not json", headers=json_type).status_code == 400
    assert client.post("/predict", json={"tasks": {"id": 1}}).status_code == 400
    assert client.post("/predict", json=[1, 2]).status_code == 400
    assert predict(client, []) == []


def test_busy_server_answers_503(client_for, champion):
    client = client_for(max_pending=1)
    model = champion.current(timeout=0)
    first: list = []
    with model.lock:  # inference blocks on the model: the first request stays in flight
        worker = threading.Thread(
            target=lambda: first.append(predict(client, tasks_for(local("tiles/a.jpg"))))
        )
        worker.start()
        time.sleep(0.5)
        busy = client.post("/predict", json={"tasks": tasks_for(local("tiles/a.jpg"))})
        assert busy.status_code == 503 and busy.headers["retry-after"]
    worker.join(30)
    assert first and "error" not in first[0][0]


@pytest.mark.parametrize("kind", ["token", "basic"])
def test_auth(client_for, kind):
    if kind == "token":
        client, good = client_for(token="s3cret"), {"headers": {"Authorization": "Bearer s3cret"}}
        bad = {"headers": {"Authorization": "Bearer nope"}}
    else:
        client, good, bad = client_for(basic_auth="ls:pw"), {"auth": ("ls", "pw")}, {"auth": ("ls", "no")}
    assert client.get("/health").status_code == 401
    assert client.get("/health", **bad).status_code == 401
    assert client.post("/predict", json={"tasks": []}).status_code == 401
    assert client.get("/health", **good).status_code == 200
    assert client.post("/predict", json={"tasks": []}, **good).status_code == 200


def test_auth_is_off_by_default(client_for):
    assert client_for().get("/health").status_code == 200


def fake_label_studio(image: bytes, legacy: str, calls: dict) -> FastAPI:
    """Serves /data/upload/ files to the right token; hands out access tokens that expire once."""
    fake = FastAPI()

    @fake.post("/api/token/refresh")
    def refresh(body: dict) -> dict:
        calls["refresh"] = calls.get("refresh", 0) + 1
        return {"access": f"access-{calls['refresh']}"}

    @fake.get("/data/upload/1/{name}")
    def upload(name: str, authorization: str = Header("")) -> Response:
        calls.setdefault("auth", []).append(authorization)
        if authorization not in (f"Token {legacy}", "Bearer access-2"):  # access-1 has "expired"
            return Response(status_code=401)
        if name == "huge.jpg":
            return Response(b"x" * 50_000, media_type="image/jpeg")
        return Response(image, media_type="image/jpeg")

    return fake


def pat() -> str:
    import base64
    import json

    head = base64.urlsafe_b64encode(json.dumps({"alg": "HS256"}).encode()).decode().rstrip("=")
    return f"{head}.eyJ0eXAiOiJyZWZyZXNoIn0.c2ln"


@pytest.mark.parametrize("token", ["legacy-0123", pat()])
def test_label_studio_images_are_fetched_with_its_token(client_for, data_root, token):
    image = (data_root / "tiles" / "a.jpg").read_bytes()
    ls_calls: dict = {}
    elsewhere_calls: dict = {}
    with (
        ServerThread(fake_label_studio(image, "legacy-0123", ls_calls)) as ls,
        ServerThread(fake_label_studio(image, "other", elsewhere_calls)) as elsewhere,
    ):
        client = client_for(label_studio_url=ls.url, label_studio_api_key=token, max_image_bytes=20_000)
        references = [
            "/data/upload/1/a.jpg",
            f"{ls.url}/data/upload/1/a.jpg",
            local("tiles/a.jpg"),
            f"{elsewhere.url}/data/upload/1/a.jpg",
            "/data/upload/1/huge.jpg",
        ]
        results = predict(client, tasks_for(*references))
    local_boxes = sorted_boxes(pixel_boxes(results[2]))
    for result in results[:2]:
        assert "error" not in result
        pd.testing.assert_frame_equal(sorted_boxes(pixel_boxes(result)), local_boxes)
    assert "not an allowed image host" in results[3]["error"]
    assert elsewhere_calls == {}, "another host, even on 127.0.0.1, gets no request (nor the token)"
    assert "byte image limit" in results[4]["error"]
    if token.startswith("legacy"):
        assert "refresh" not in ls_calls
    else:  # exchanged once, rejected as expired, exchanged again, then reused
        assert ls_calls["refresh"] == 2 and ls_calls["auth"][-1] == "Bearer access-2"


@pytest.mark.slow  # registers a second version: ~2-7 s
def test_moved_alias_is_served_without_restart(tmp_path, weights, toy_store, config_for, data_root):
    root = tmp_path / "store"
    toy_store.register_version(root, weights, 0.1)
    with ServerThread(create_app(config_for(root=root, refresh_s=0.2))) as server:
        tasks = {"tasks": tasks_for(local("tiles/a.jpg"))}
        first = httpx.post(f"{server.url}/predict", json=tasks, timeout=120).json()
        assert first["results"][0]["model_version"] == V1
        assert toy_store.register_version(root, weights, 0.2) == 2  # better: register moves champion
        deadline = time.monotonic() + 60
        while httpx.get(f"{server.url}/health").json()["model_version"] != V2:
            assert time.monotonic() < deadline, httpx.get(f"{server.url}/health").json()
            time.sleep(0.1)
        second = httpx.post(f"{server.url}/predict", json=tasks, timeout=120).json()
        assert second["results"][0]["model_version"] == V2
        assert httpx.post(f"{server.url}/setup", json={}).json() == {"model_version": V2}
