"""Frame names with characters that mean something in a URL (``+ # & % ? =``, a space) are legal
file names: their tiles go through the oracle, the labels folder and the snapshot as they are,
and the local-files URL a Label Studio task names decodes back to the file (acorn serve's way).
The same names through a real Label Studio: tests/labelstudio/test_local_files_names.py."""

from __future__ import annotations

import pandas as pd

from acorn.data.tiling import tile_id
from acorn.labeling.export import read_manifest, write_labels
from acorn.labeling.labelstudio.project import local_files_url
from acorn.labeling.oracle import OracleBackend
from acorn.labeling.snapshot import read_snapshot, write_snapshot
from acorn.serve.images import LocalRef, parse_reference

FRAMES = ["sq+1", "a#b", "c&d=e", "p%41q", "s p", "why?", "ü,x"]
TILES = [tile_id(f, 0, 1) for f in FRAMES]
NO_PREDICTIONS = pd.DataFrame(columns=["tile_id", "class_id", "confidence", "x1", "y1", "x2", "y2"])


def test_local_files_urls_decode_back_to_the_file(tmp_path):
    """Unquoted, ``+`` came back as a space, ``#`` cut the path, ``&`` ended it, ``%41`` became ``A``."""
    for tile in TILES:
        url = local_files_url(tmp_path / "data" / "tiles" / "images" / f"{tile}.jpg", tmp_path)
        assert url.startswith("/data/local-files/?d=data/tiles/images/")
        assert not set(url.removeprefix("/data/local-files/?d=")) & set("+#& ?=,"), url
        assert parse_reference(url) == LocalRef(f"data/tiles/images/{tile}.jpg")


def test_such_names_go_through_the_oracle_labels_and_snapshot(tmp_path):
    truth = tmp_path / "truth"
    truth.mkdir()
    for i, tile in enumerate(TILES):
        (truth / f"{tile}.txt").write_text(f"0 0.5 0.5 0.{i + 1} 0.1\n" if i % 2 else "", encoding="utf-8")
    oracle = OracleBackend(tmp_path / "state", truth)
    n = len(TILES)
    queue = pd.DataFrame(
        {
            "tile_id": TILES,
            "rank": range(1, n + 1),
            "score": [i / n for i in range(n)],
            "strategy_score": 0.5,
            "batch": 1,
            "image": [f"data/tiles/images/{t}.jpg" for t in TILES],
            "width": 640,
            "height": 540,
            "model_version": "m1",
        }
    )
    assert oracle.push(queue, NO_PREDICTIONS).created == n
    assert oracle.annotate() == n
    pulled = oracle.pull()
    labels = tmp_path / "labels"
    write_labels(pulled, labels, n_classes=1)
    assert sorted(read_manifest(labels)["tile_id"]) == sorted(TILES)
    for i, tile in enumerate(TILES):
        assert len((labels / f"{tile}.txt").read_text(encoding="utf-8").splitlines()) == i % 2
    write_snapshot(pulled.snapshot, tmp_path / "snapshot")
    assert read_snapshot(tmp_path / "snapshot") == pulled.snapshot
