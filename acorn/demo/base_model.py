"""The demo's base model: a detector trained from random init on close-up "web photos".

It stands for the detector a team already has: good on clean photos, poor on webcam tiles.
Nothing is downloaded: ``yolov8n.yaml`` is the architecture, the close-ups are synthetic.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from acorn import paths
from acorn.atomic import copy_file
from acorn.errors import InputError
from acorn.params import Params

log = logging.getLogger("acorn")


def train_base_model(
    p: Params,
    root: Path = Path(),
    epochs: int | None = None,
    patience: int | None = None,
    out: Path | None = None,
) -> Path:
    """Random init (``yolov8n.yaml``) -> a detector good on close-ups, trained until its close-up
    validation score stops improving (``patience`` epochs), so cycle 0 shows what it knows."""
    from acorn import training

    source = root / paths.SOURCE
    if not (source / "images").is_dir():
        raise InputError(f"{source}/images: no close-up set; run `acorn demo-data` first")
    out = root / (out or Path(p.model.base))
    (root / paths.WORK).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root / paths.WORK, prefix="base-") as tmp:
        work = Path(tmp)
        data = training.labeled_dataset(
            [i.stem for i in sorted((source / "images").glob("*.jpg"))],
            lambda i: (source / "images" / f"{i}.jpg", source / "labels" / f"{i}.txt"),
            p.classes,
            0.2,
            work / "data",
        )
        config = training.TrainConfig.from_params(
            p, epochs=epochs or p.demo.base_epochs, lr0=0.02, freeze=0, seed=p.demo.seed
        )
        best = training.train(
            "yolov8n.yaml",
            data,
            config,
            work,
            keep="best",
            mosaic=0.0,
            close_mosaic=0,
            cache=True,
            patience=patience or p.demo.base_patience,
        )
        copy_file(best, out)
    log.info("base model written to %s", out)
    return out
