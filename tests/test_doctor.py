"""`acorn doctor` on small repositories: a good one passes, each broken set-up fails its own check
with a line that names the file or setting to fix."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from acorn.ops.doctor import FAIL, OK, WARN, Check, checks, run_checks
from tests.conftest import save_detector

CLASSES = ["raccoon"]


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "raccoon": save_detector(folder / "raccoon.pt", CLASSES),
        "squirrel": save_detector(folder / "squirrel.pt", ["squirrel"]),
    }


def write_images(folder: Path, names: list[str], label: str | None = "0 0.5 0.5 0.2 0.2\n") -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
            folder / "images" / f"{name}.jpg"
        )
        if label is not None:
            (folder / "labels").mkdir(exist_ok=True)
            (folder / "labels" / f"{name}.txt").write_text(label)


def set_params(root: Path, **sections: dict) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for name, values in sections.items():
        params[name] = {**params.get(name, {}), **values}
    path.write_text(yaml.safe_dump(params))


@pytest.fixture
def repo(tmp_path, models) -> Path:
    """What "Your own data" asks for: frames (+ labels), classes, a base model, a test set and a
    validation set."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump({"classes": CLASSES}))
    write_images(root / "data/raw", ["a", "b", "c"])
    (root / "data/raw/classes.txt").write_text("raccoon\n")
    write_images(root / "data/testset", ["t1", "t2"])
    write_images(root / "data/valset", ["v1", "v2", "v3"])
    (root / "data/replay").mkdir()
    (root / "data/replay/README.md").write_text("no replay\n")
    (root / "models").mkdir()
    shutil.copy(models["raccoon"], root / "models/base.pt")
    return root


def results(root: Path) -> dict[str, Check]:
    return {c.name: c for c in checks(root / "params.yaml", root)}


def test_a_good_repository_passes_every_check(repo, capsys):
    assert run_checks(Path("params.yaml"), repo) is True
    lines = capsys.readouterr().out.splitlines()
    names = ["params", "frames", "classes", "model", "test set", "leaks", "val set", "replay", "labeling"]
    assert [line.split()[0] for line in lines] == [OK] * len(names)
    assert [c.name for c in checks(repo / "params.yaml", repo)] == names
    assert "3 frames" in lines[1] and "2 images, 2 with a label file" in lines[4]
    assert "data/valset: 3 images, 3 with a label file" in lines[6]
    assert "no whole test frames" in lines[5] and "test.frames" in lines[5]


def test_invalid_params_stop_the_checks(repo, capsys):
    (repo / "params.yaml").write_text("rank:\n  strategy: nope\n")
    assert run_checks(Path("params.yaml"), repo) is False
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{FAIL} params") and "rank.strategy" in line


def _remove(rel: str) -> Callable[[Path], None]:
    return lambda root: shutil.rmtree(root / rel) if (root / rel).is_dir() else (root / rel).unlink()


def _empty_images(root: Path) -> None:
    for image in (root / "data/raw/images").iterdir():
        image.unlink()


def _corrupt_frame(root: Path) -> None:
    (root / "data/raw/images/b.jpg").write_bytes(b"not a jpeg")


def _other_classes_txt(root: Path) -> None:
    (root / "data/raw/classes.txt").write_text("squirrel\n")


def _garbage_model(root: Path) -> None:
    (root / "models/base.pt").write_bytes(b"not a model")


def _replay_without_labels(root: Path) -> None:
    write_images(root / "data/replay", ["r1"], label=None)


def _val_is_test(root: Path) -> None:
    set_params(root, val={"data": "data/testset/"})


BROKEN: dict[str, tuple[Callable[[Path], None], str, list[str]]] = {
    "no frames folder": (_remove("data/raw/images"), "frames", ["data/raw/images", "no such folder"]),
    "no frames": (_empty_images, "frames", ["data/raw/images", "no images"]),
    "unreadable frame": (_corrupt_frame, "frames", ["b.jpg", "cannot read"]),
    "classes.txt disagrees": (_other_classes_txt, "classes", ["classes.txt", "'squirrel'", "['raccoon']"]),
    "no base model": (_remove("models/base.pt"), "model", ["models/base.pt", "not found", "model.base"]),
    "not a model": (_garbage_model, "model", ["models/base.pt", "cannot load"]),
    "no test set": (_remove("data/testset"), "test set", ["data/testset/images", "test.data"]),
    "test set without labels": (
        _remove("data/testset/labels"),
        "test set",
        ["data/testset/labels", "no label"],
    ),
    "no val set": (_remove("data/valset"), "val set", ["data/valset/images", "val.data", "test set"]),
    "val set without labels": (_remove("data/valset/labels"), "val set", ["data/valset/labels", "no label"]),
    "val set is the test set": (_val_is_test, "val set", ["val.data is the test set", "frames of its own"]),
    "no replay folder": (_remove("data/replay"), "replay", ["data/replay", "train.replay_data"]),
    "replay image without label": (_replay_without_labels, "replay", ["r1.txt", "train.replay_data"]),
}


@pytest.mark.parametrize("case", BROKEN)
def test_each_broken_set_up_fails_its_check(repo, capsys, case):
    breaks, name, words = BROKEN[case]
    breaks(repo)
    found = results(repo)
    assert found[name].status == FAIL, found[name]
    for word in words:
        assert word in found[name].detail, (word, found[name].detail)
    assert [c.name for c in found.values() if c.status == FAIL] == [name], "one cause, one failing check"
    assert run_checks(Path("params.yaml"), repo) is False
    assert f"{FAIL} {name}" in capsys.readouterr().out


def test_a_base_model_of_other_classes_fails(repo, models):
    shutil.copy(models["squirrel"], repo / "models/base.pt")
    detail = results(repo)["model"].detail
    assert results(repo)["model"].status == FAIL
    assert "models/base.pt" in detail and "['squirrel']" in detail and "['raccoon']" in detail


def test_replay_images_with_labels_are_counted(repo):
    write_images(repo / "data/replay", ["r1", "r2"])
    check = results(repo)["replay"]
    assert check.status == OK and "2 images" in check.detail


def test_oracle_without_frame_labels_warns_but_passes(repo, capsys):
    shutil.rmtree(repo / "data/raw/labels")
    check = results(repo)["labeling"]
    assert check.status == WARN and "data/raw/labels" in check.detail
    assert run_checks(Path("params.yaml"), repo) is True


@pytest.fixture
def health_server() -> Iterator[str]:
    """A server that answers GET /health like Label Studio does."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b'{"status": "UP"}')

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def free_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def label_studio_repo(repo, monkeypatch) -> Path:
    set_params(repo, labeling={"backend": "label-studio"})
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    return repo


def test_label_studio_that_answers_passes(label_studio_repo, health_server, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", health_server)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "token")
    found = results(label_studio_repo)
    assert found["labeling"].status == OK and health_server in found["labeling"].detail
    assert found["doc root"].status == OK
    assert all(c.status == OK for c in found.values())


def test_label_studio_key_from_dotenv(label_studio_repo, health_server):
    (label_studio_repo / ".env").write_text(f"LABEL_STUDIO_URL={health_server}\nLABEL_STUDIO_API_KEY=token\n")
    assert results(label_studio_repo)["labeling"].status == OK


def test_label_studio_without_a_key_fails(label_studio_repo, health_server, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", health_server)
    check = results(label_studio_repo)["labeling"]
    assert check.status == FAIL and "LABEL_STUDIO_API_KEY" in check.detail


def test_label_studio_that_is_down_fails_fast(label_studio_repo, monkeypatch):
    url = free_port_url()
    monkeypatch.setenv("LABEL_STUDIO_URL", url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "token")
    check = results(label_studio_repo)["labeling"]
    assert check.status == FAIL and url in check.detail and "acorn labelstudio start" in check.detail


@pytest.mark.parametrize(
    "document_root,status",
    [("data", OK), ("models", FAIL), ("{outside}", FAIL), ("repo://owner/repo/main:", OK)],
)
def test_label_studio_document_root_must_cover_the_tiles(
    label_studio_repo, health_server, monkeypatch, tmp_path, document_root, status
):
    monkeypatch.setenv("LABEL_STUDIO_URL", health_server)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "token")
    set_params(label_studio_repo, labeling={"document_root": document_root.format(outside=tmp_path / "x")})
    check = results(label_studio_repo)["doc root"]
    assert check.status == status, check
    if status == FAIL:
        assert "labeling.document_root" in check.detail and "data/tiles" in check.detail


def test_balance_by_must_name_a_metadata_column(repo):
    assert "balance" not in results(repo)  # off by default: nothing to check
    set_params(repo, rank={"balance_by": "condition"})
    found = results(repo)["balance"]
    assert found.status == FAIL and "no such file" in found.detail and "rank.balance_by: ''" in found.detail
    (repo / "data/raw/metadata.csv").write_text("frame_id,weather\na,sun\n")
    found = results(repo)["balance"]
    assert found.status == FAIL and "its columns: frame_id, weather" in found.detail
    set_params(repo, rank={"balance_by": "weather"})
    assert results(repo)["balance"].status == OK


def test_test_frames_that_are_near_copies_of_pool_frames_are_named(repo, capsys):
    """A leak: a test frame a minute away from a pool frame. Doctor names both files; a distinct
    test frame, and the same pool frame hashed from the tile stage's manifest, change nothing."""
    from acorn.data.tiling import TileGrid, tile_dataset
    from tests.test_duplicates import a_minute_later, scene

    for name, seed in (("a", 0), ("b", 1), ("c", 2)):
        scene(seed).save(repo / f"data/raw/images/{name}.jpg", quality=90)
    write_images(repo / "data/testset-frames", ["t1", "t2"])
    a_minute_later(scene(1), 3).save(repo / "data/testset-frames/images/t1.jpg", quality=90)
    scene(9).save(repo / "data/testset-frames/images/t2.jpg", quality=90)
    check = results(repo)["leaks"]
    assert check.status == WARN, check
    assert "1 of 2 test frames" in check.detail
    assert f"{repo}/data/testset-frames/images/t1.jpg ~ {repo}/data/raw/images/b.jpg (" in check.detail
    assert "t2.jpg" not in check.detail

    tile_dataset(repo / "data/raw", repo / "data/tiles", TileGrid(1, 2), CLASSES, workers=1)
    assert results(repo)["leaks"] == check

    (repo / "data/testset-frames/images/t1.jpg").unlink()
    check = results(repo)["leaks"]
    assert check.status == OK and "none of 1 test frames" in check.detail and "3 pool frames" in check.detail
