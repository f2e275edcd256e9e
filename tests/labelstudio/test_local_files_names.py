"""Tiles whose names hold ``+ # & % ? =`` or a space, end to end through a real Label Studio: the
task's local-files URL loads the tile from the server (as the browser does), decodes to the same
file in ``acorn serve``, and the annotation comes back as that tile's label."""

from __future__ import annotations

import httpx
import pytest

from acorn.labeling.export import read_manifest, write_labels
from acorn.serve.images import LocalRef, parse_reference

from .conftest import CLASSES, H, W, Workspace, no_predictions

pytestmark = pytest.mark.labelstudio

NAMES = ["sq+1", "a#b", "c&d=e", "p%41q", "s p", "why?"]


def box(x: float, y: float) -> dict:
    value = {"x": x, "y": y, "width": 10, "height": 10, "rotation": 0, "rectanglelabels": ["squirrel"]}
    return {
        "id": "r",
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "value": value,
    }


def test_url_special_tile_names_load_in_label_studio_and_come_back_as_labels(workspace: Workspace, tmp_path):
    backend = workspace.backend()
    backend.push(workspace.tiles(NAMES), no_predictions())
    tasks = workspace.tasks(backend)
    assert sorted(tasks) == sorted(NAMES)
    conn = workspace.server.connection()
    folder = workspace.root.relative_to(workspace.server.document_root) / "data" / "tiles" / "images"
    with httpx.Client(base_url=conn.url, headers={"Authorization": f"Token {conn.api_key}"}) as http:
        for name in NAMES:
            url = tasks[name].data["image"]
            answer = http.get(url)
            jpeg = (workspace.root / "data" / "tiles" / "images" / f"{name}.jpg").read_bytes()
            assert (answer.status_code, answer.content == jpeg) == (200, True), f"{name}: {url}"
            assert parse_reference(url) == LocalRef(f"{folder.as_posix()}/{name}.jpg"), url
    for i, name in enumerate(NAMES):
        backend.client.annotations.create(tasks[name].id, result=[box(5 * i, 10)])
    pulled = backend.pull()
    assert not pulled.problems
    labels = tmp_path / "labels"
    write_labels(pulled, labels, n_classes=len(CLASSES))
    assert sorted(read_manifest(labels)["tile_id"]) == sorted(NAMES)
    assert all(len((labels / f"{n}.txt").read_text().splitlines()) == 1 for n in NAMES)
