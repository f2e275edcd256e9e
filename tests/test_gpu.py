"""Training on a GPU (``model.device: auto``), with the batch size ultralytics finds fits it.

Predict on a GPU is tested in test_predict.py, the Ray engine's GPU actors in test_ray_engine.py.
A CPU-only machine (CI) skips these and says why; they ran on an H200 (docs/scale.md, "GPU").
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import write_params

from acorn import paths
from acorn.model import training
from acorn.params import load_params

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="CPU-only machine: no CUDA GPU, so training on cuda is not exercised here",
)


def test_training_runs_on_the_gpu_with_the_largest_batch_that_fits(tiny_repo: Path, tmp_path: Path) -> None:
    """train.batch -1 on a GPU: AutoBatch measures the card and picks more than the CPU default 16."""
    write_params(tiny_repo, {"model": {"device": "auto"}, "train": {"batch": -1, "freeze": 0}})
    p = load_params(tiny_repo / "params.yaml")
    config = training.TrainConfig.from_params(p, epochs=1)
    assert config.device == "cuda:0"
    source, copies = tiny_repo / paths.SOURCE, tmp_path / "copies"
    # AutoBatch never picks more images than the training set holds (ultralytics caps it there),
    # so the close-ups are copied under new names: a set of ~70 can show a pick above 16
    (copies / "images").mkdir(parents=True)
    (copies / "labels").mkdir()
    for image in sorted((source / "images").glob("*.jpg")):
        for k in range(6):
            shutil.copyfile(image, copies / "images" / f"{image.stem}-{k}.jpg")
            shutil.copyfile(
                source / "labels" / f"{image.stem}.txt", copies / "labels" / f"{image.stem}-{k}.txt"
            )
    ids = [i.stem for i in sorted((copies / "images").glob("*.jpg"))]
    data = training.labeled_dataset(
        ids,
        lambda i: (copies / "images" / f"{i}.jpg", copies / "labels" / f"{i}.txt"),
        p.classes,
        0.2,
        tmp_path / "data",
    )
    weights = training.train(tiny_repo / p.model.base, data, config, tmp_path / "work")
    args = torch.load(weights, map_location="cpu", weights_only=False)["train_args"]
    assert str(args["device"]) in ("cuda:0", "0")
    assert 16 < args["batch"] <= len(ids), args["batch"]  # AutoBatch's pick, kept in the run's args
