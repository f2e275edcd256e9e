"""The README's "Your own data", followed to the letter on real photos: no demo, no data/source.

Ordinary photos with YOLO labels (../shared/data/raccoon) become the frames, the class list goes
in params.yaml, a base model at model.base, a test set at test.data and a validation set at
val.data (other photos again); then two cycles run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from acorn.runtime.atomic import copy_file
from tests.conftest import (
    SHARED_DATA,
    STAGES,
    copy_repo,
    run,
    save_detector,
    stages_run,
    tool_env,
    write_params,
)

pytestmark = pytest.mark.slow

RACCOON = SHARED_DATA / "raccoon"
FRAMES, TEST_IMAGES, VAL_IMAGES, BASE_IMAGES = 24, 8, 8, 8
OWN_PARAMS = {
    "classes": ["raccoon"],
    "tile": {"rows": 2, "cols": 2, "workers": 1},
    "model": {"base": "models/raccoon.pt", "imgsz": 96},
    "predict": {"max_det": 50},
    "rank": {"budget": 4},
    "train": {"epochs": 1, "batch": 8},
}


def copy_photos(images: list[Path], dest: Path) -> None:
    """Photos and their YOLO labels into ``dest/images`` and ``dest/labels``."""
    for sub in ("images", "labels"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    for image in images:
        shutil.copy(image, dest / "images" / image.name)
        shutil.copy(RACCOON / "labels" / f"{image.stem}.txt", dest / "labels" / f"{image.stem}.txt")


@pytest.fixture
def own_repo(tmp_path) -> Path:
    if not (RACCOON / "images").is_dir():
        pytest.skip(f"{RACCOON} not present")
    photos = sorted((RACCOON / "images").glob("*.jpg"))
    assert len(photos) >= FRAMES + TEST_IMAGES + VAL_IMAGES + BASE_IMAGES
    root = copy_repo(tmp_path / "repo")
    assert not (root / "data/source").exists() and not (root / "data/raw").exists()
    copy_photos(photos[:FRAMES], root / "data/raw")
    shutil.copy(RACCOON / "classes.txt", root / "data/raw/classes.txt")
    copy_photos(photos[FRAMES : FRAMES + TEST_IMAGES], root / "data/testset")
    copy_photos(photos[FRAMES + TEST_IMAGES : FRAMES + TEST_IMAGES + VAL_IMAGES], root / "data/valset")
    copy_photos(photos[-BASE_IMAGES:], tmp_path / "base-photos")
    write_params(root, OWN_PARAMS)
    return root


def train_base_model(root: Path, photos: Path) -> None:
    """The detector a user brings: one epoch from yolov8n.yaml on a few photos, at model.base."""
    from acorn.model import training
    from acorn.params import load_params

    p = load_params(root / "params.yaml")
    work = root / ".acorn/work/base"
    data = training.labeled_dataset(
        [i.stem for i in sorted((photos / "images").glob("*.jpg"))],
        lambda i: (photos / "images" / f"{i}.jpg", photos / "labels" / f"{i}.txt"),
        p.classes,
        0.25,
        work / "data",
    )
    weights = training.train("yolov8n.yaml", data, training.TrainConfig.from_params(p, freeze=0), work)
    copy_file(weights, root / p.model.base)


def test_two_cycles_on_own_photos(own_repo, tmp_path):
    root = own_repo
    train_base_model(root, tmp_path / "base-photos")
    run(["dvc", "add", "data/raw"], root)

    first = run(["dvc", "repro"], root)
    assert stages_run(first) == STAGES
    tiles = pd.read_parquet(root / "data/tiles/manifest.parquet")
    assert len(tiles) == FRAMES * 4 and tiles["frame_id"].nunique() == FRAMES
    assert (tiles["n_truth"] >= 0).all(), "every frame has a label file: every tile has truth"
    assert json.loads((root / "metrics/train.json").read_text())["cycle"] == 0
    queue = pd.read_csv(root / "data/queue.csv")
    assert len(queue) == 4

    run(["acorn", "annotate"], root)
    second = run(["dvc", "repro"], root)
    assert stages_run(second) == [s for s in STAGES if s != "tile"]
    labels = pd.read_csv(root / "data/labels/manifest.csv")
    assert sorted(labels["tile_id"]) == sorted(queue["tile_id"])
    for t in labels["tile_id"]:
        assert (root / "data/labels" / f"{t}.txt").read_text() == (
            root / "data/tiles/truth" / f"{t}.txt"
        ).read_text()
    metrics = json.loads((root / "metrics/train.json").read_text())
    assert metrics["cycle"] == 1 and metrics["labeled_tiles"] == 4
    assert json.loads((root / "models/registry.json").read_text())["version"] == 2
    new_queue = pd.read_csv(root / "data/queue.csv")
    assert len(new_queue) == 4 and (new_queue["batch"] == 2).all()
    assert not set(new_queue["tile_id"]) & set(labels["tile_id"])


def test_base_model_of_other_classes_stops_train_with_one_line(own_repo):
    save_detector(own_repo / "models/raccoon.pt", ["squirrel"])
    proc = subprocess.run(
        ["dvc", "repro", "train"], cwd=own_repo, env=tool_env(own_repo), capture_output=True, text=True
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    (line,) = [line for line in out.splitlines() if "squirrel" in line]
    for part in ("models/raccoon.pt", "['squirrel']", "['raccoon']"):
        assert part in line, (part, line)
    assert not (own_repo / "models/model.pt").exists()
