"""Task image references: what is read from disk, what is fetched, what is refused."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from acorn.data import repo_uris
from acorn.serve.images import (
    ImageError,
    ImageLimits,
    LocalRef,
    RemoteRef,
    RepoRef,
    _is_jwt,
    decode_image,
    parse_reference,
    resolve_local,
)
from tests.test_dagshub import OWNER, REPO, fake_dagshub
from tests.test_dagshub import TOKEN as DAGSHUB_TOKEN


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height``: what a decompression bomb looks like to a header reader."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def jpeg_bytes(width: int = 32, height: int = 24) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("/data/local-files/?d=data/tiles/images/a%20b.jpg", LocalRef("data/tiles/images/a b.jpg")),
        ("data/tiles/a.jpg", LocalRef("data/tiles/a.jpg")),
        ("/abs/a.jpg", LocalRef("/abs/a.jpg")),
        ("https://example.org/a.jpg?sig=1", RemoteRef("https://example.org/a.jpg?sig=1")),
        ("/data/upload/3/abc.jpg", RemoteRef("http://ls:8080/data/upload/3/abc.jpg")),
    ],
)
def test_references(reference, expected):
    assert parse_reference(reference, "http://ls:8080/") == expected


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("/data/upload/3/abc.jpg", "set LABEL_STUDIO_URL"),
        ("s3://bucket/a.jpg", "unsupported URL scheme"),
        ("/data/local-files/?x=1", r"without \?d="),
        ("", "non-empty string"),
        (None, "non-empty string"),
    ],
)
def test_unusable_references(reference, message):
    with pytest.raises(ImageError, match=message):
        parse_reference(reference, "")


def test_local_files_stay_inside_the_data_root(tmp_path):
    root = tmp_path / "root"
    (root / "tiles").mkdir(parents=True)
    (root / "tiles" / "ok.jpg").write_bytes(jpeg_bytes())
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(jpeg_bytes())
    (root / "tiles" / "link.jpg").symlink_to(outside)
    (root / "tiles" / "inner.jpg").symlink_to(root / "tiles" / "ok.jpg")

    assert resolve_local("tiles/ok.jpg", root) == (root / "tiles" / "ok.jpg").resolve()
    assert resolve_local(str(root / "tiles" / "ok.jpg"), root).name == "ok.jpg"  # absolute, inside
    assert resolve_local("tiles/inner.jpg", root).name == "ok.jpg"  # a symlink that stays inside
    for escape in ("../secret.jpg", "tiles/../../secret.jpg", str(outside), "tiles/link.jpg", "/etc/passwd"):
        with pytest.raises(ImageError, match="outside the data root"):
            resolve_local(escape, root)
    with pytest.raises(ImageError, match="no such file"):
        resolve_local("tiles/missing.jpg", root)
    with pytest.raises(ImageError, match="not a usable path"):
        resolve_local("tiles/a\0.jpg", root)


def test_decode_matches_the_predict_stage(tmp_path):
    from acorn.model.detection import load_images

    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg_bytes(40, 30))
    image = decode_image(path.read_bytes(), ImageLimits())
    assert image.mode == "RGB" and image.size == (40, 30)
    assert image.tobytes() == load_images([path])[0].tobytes()


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    ("data", "limits", "message"),
    [
        (b"GIF89a but not really", ImageLimits(), "not an image"),
        (b"", ImageLimits(), "not an image"),
        (png_header(20_000, 20_000), ImageLimits(), "decompression bomb"),  # PIL refuses at open
        (png_header(10_000, 10_000), ImageLimits(), "pixel limit"),  # PIL only warns; we refuse
        (jpeg_bytes(200, 200), ImageLimits(max_pixels=10_000), "pixel limit"),
        (jpeg_bytes()[:60], ImageLimits(), "cannot decode|not an image"),  # truncated
    ],
)
def test_bad_images_are_refused(data, limits, message):
    with pytest.raises(ImageError, match=message):
        decode_image(data, limits, "x.jpg")


def test_personal_access_tokens_are_told_from_legacy_tokens():
    import base64
    import json

    header = (
        base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()).decode().rstrip("=")
    )
    assert _is_jwt(f"{header}.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.sig")
    assert not _is_jwt("0123456789abcdef0123456789abcdef01234567")
    assert not _is_jwt("a.b.c")


# --- repo:// images through the real app, a local server on 127.0.0.1 standing in for DagsHub ---


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("repo://squirrel-lab/backyard", "expected repo://<owner>/<repo>"),
        ("repo://squirrel-lab/backyard/main:../x.jpg", "no '..'"),
    ],
)
def test_malformed_repo_uris_are_refused_per_task(reference, message):
    with pytest.raises(ImageError, match=message):
        parse_reference(reference, "")


def test_repo_uris_are_their_own_kind_of_reference():
    ref = parse_reference("repo://squirrel-lab/backyard/main:data/tiles/a.jpg", "http://ls:8080")
    assert isinstance(ref, RepoRef)
    assert (ref.uri.owner, ref.uri.repo, ref.uri.revision, ref.uri.path) == (
        "squirrel-lab",
        "backyard",
        "main",
        "data/tiles/a.jpg",
    )


@pytest.fixture(scope="module")
def dagshub():
    """tests/test_dagshub.py's stand-in for DagsHub on 127.0.0.1, serving a tile of the data root."""
    with fake_dagshub() as fake:
        yield fake


@pytest.fixture
def serve(champion, config_for, dagshub, monkeypatch):
    """``acorn serve``'s app, reading repo:// files from the stand-in (DAGSHUB_CLIENT_HOST) with
    the token in ``DAGSHUB_USER_TOKEN`` when ``token`` is given; returns /predict's results."""
    from fastapi.testclient import TestClient

    from acorn.serve.app import create_app

    def predict(references: list[str], token: str | None = DAGSHUB_TOKEN) -> list[dict]:
        monkeypatch.setenv(repo_uris.HOST_VAR, dagshub.url)
        if token is None:
            monkeypatch.delenv(repo_uris.TOKEN_VAR, raising=False)
        else:
            monkeypatch.setenv(repo_uris.TOKEN_VAR, token)
        tasks = [{"id": i + 1, "data": {"image": ref}} for i, ref in enumerate(references)]
        with TestClient(create_app(config_for(), champion=champion), base_url="http://127.0.0.1") as client:
            resp = client.post("/predict", json={"tasks": tasks, "project": "1.1", "params": {}})
        assert resp.status_code == 200, resp.text
        results = resp.json()["results"]
        assert len(results) == len(tasks)
        return results

    return predict


def test_predict_reads_repo_uris_from_the_dagshub_host_with_its_token(serve, data_root, dagshub):
    image = (data_root / "tiles" / "a.jpg").read_bytes()
    dagshub.files[("main", "data/tiles/a.jpg")] = image
    dagshub.files[("trunk", "data/tiles/a.jpg")] = image  # trunk: the default branch
    repo = f"repo://{OWNER}/{REPO}"
    dagshub.authorizations.clear()
    results = serve(
        [
            "/data/local-files/?d=tiles/a.jpg",
            f"{repo}/main:data/tiles/a.jpg",
            f"{repo}/data/tiles/a.jpg",  # no revision: the repository's default branch
            f"{repo}/main:data/tiles/missing.jpg",
            f"repo://{OWNER}/other/main:data/tiles/a.jpg",
        ]
    )

    local = results[0]
    assert "error" not in local and len(local["result"]) > 0, "the toy model finds boxes on this image"
    for result in results[1:3]:
        assert "error" not in result, result
        assert result["result"] == local["result"] and result["score"] == local["score"]
    assert "HTTP 404" in results[3]["error"] and "/raw/main/data/tiles/missing.jpg" in results[3]["error"]
    assert "HTTP 404" in results[4]["error"] and results[4]["result"] == []
    assert dagshub.authorizations and set(dagshub.authorizations) == {f"Bearer {DAGSHUB_TOKEN}"}


def test_repo_images_without_the_token_name_the_variable(serve):
    (result,) = serve([f"repo://{OWNER}/{REPO}/main:data/tiles/a.jpg"], token=None)
    assert "HTTP 401" in result["error"] and repo_uris.TOKEN_VAR in result["error"]
    assert result["result"] == []
