"""The demo's base model: a detector trained from random init on close-up "web photos".

It stands for the detector a team already has: good on clean photos, poor on webcam tiles.
Nothing is downloaded: ``yolov8n.yaml`` is the architecture, the close-ups are synthetic.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from acorn import paths
from acorn.params import Params
from acorn.runtime.atomic import copy_file, write_csv
from acorn.runtime.errors import InputError

log = logging.getLogger("acorn")
BASE_REPORT = Path("reports/base-model")  # the base model's training curve, kept in git
_RESUME_MAY_CHANGE = {"device", "workers", "threads"}  # how it runs, not what it trains


def train_base_model(
    p: Params,
    root: Path = Path(),
    epochs: int | None = None,
    patience: int | None = None,
    out: Path | None = None,
) -> Path:
    """Random init (``yolov8n.yaml``) -> a detector good on close-ups, trained until its close-up
    validation score stops improving (``patience`` epochs), so cycle 0 shows what it knows."""
    from acorn.model import training

    source = root / paths.SOURCE
    if not (source / "images").is_dir():
        raise InputError(f"{source}/images: no close-up set; run `acorn demo-data` first")
    out = root / (out or Path(p.model.base))
    images = sorted((source / "images").glob("*.jpg"))
    stop_after = patience or p.demo.base_patience
    config = training.TrainConfig.from_params(
        p, epochs=epochs or p.demo.base_epochs, lr0=0.02, freeze=0, seed=p.demo.seed, patience=stop_after
    )
    work = training.resumable_workdir(
        root / paths.WORK / "base-model",
        {
            **{k: v for k, v in asdict(config).items() if k not in _RESUME_MAY_CHANGE},
            "classes": p.classes,
            "close_ups": _close_ups_digest(images, source / "labels"),
        },
        "the base model's training",
    )
    shutil.rmtree(work / "data", ignore_errors=True)
    data = training.labeled_dataset(
        [i.stem for i in images],
        lambda i: (source / "images" / f"{i}.jpg", source / "labels" / f"{i}.txt"),
        p.classes,
        0.2,
        work / "data",
    )
    best = training.train(
        "yolov8n.yaml",
        data,
        config,
        work,
        resume=True,
        mosaic=0.0,
        close_mosaic=0,
        cache=True,
    )
    copy_file(best, out)
    history = training.epoch_history(work)
    curve = pd.DataFrame(
        {
            "epoch": history["epoch"],
            "val_map50": history["val/map50"].round(4),
            "val_map50_95": history["val/map50_95"].round(4),
        }
    )
    write_csv(curve, root / BASE_REPORT / "curve.csv")
    plot_curve(curve, root / BASE_REPORT / "curve.png")
    log.info(
        "base model written to %s after %d epochs (best close-up val map50 %.3f); curve in %s",
        out,
        len(curve),
        curve["val_map50"].max(),
        BASE_REPORT,
    )
    shutil.rmtree(work, ignore_errors=True)
    return out


def _close_ups_digest(images: list[Path], labels: Path) -> str:
    """The close-ups' bytes and labels: regenerated or relabeled ones make another model."""
    digest = hashlib.sha1()
    for image in images:
        label = labels / f"{image.stem}.txt"
        digest.update(image.name.encode() + image.read_bytes())
        digest.update(label.read_bytes() if label.is_file() else b"-")
    return digest.hexdigest()


def plot_curve(curve: pd.DataFrame, path: Path) -> None:
    """Close-up validation map50 per epoch: shows the base model trained until it plateaued."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from acorn.runtime.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(curve["epoch"], curve["val_map50"], label="map50")
    ax.plot(curve["epoch"], curve["val_map50_95"], label="map50-95")
    ax.set_xlabel("epoch")
    ax.set_ylabel("close-up validation score")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("base model from random init (yolov8n.yaml) on the close-ups")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
