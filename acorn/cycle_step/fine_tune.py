"""A cycle's model: the training set, the fine-tune from ``model.base`` and its scores, with the
knobs of ``train.*`` and ``model.*``: what the train stage and ``acorn simulate`` both train with.

Every labeled item trains (with the replay set); a fixed validation set of its own chooses the
epoch kept, so choosing never costs a paid label; the test set only scores. The caller says where
the labels and the fixed sets are (the stage: data/labels, val.data and test.data; a simulation:
the oracle's truth and its pool's sets) and, for a simulation, the run's seed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from acorn.model import detection, training
from acorn.params import Params

PairOf = Callable[[str], tuple[Path, Path]]  # a labeled item's (image, label file)


def replay_set(p: Params) -> list[tuple[Path, Path]]:
    """The replay pairs ``train.replay_*`` names (none without them), mixed into every fine-tune."""
    return training.replay_pairs(p.train.replay_data, p.train.replay_images)


def train_config(
    p: Params, *, seed: int | None = None, epochs: int | None = None, patience: int | None = None
) -> training.TrainConfig:
    """``train.*`` with what a caller varies: a simulation's run seed, the whole-pool reference's
    epochs and patience (None: params.yaml's)."""
    changes = {"seed": seed, "epochs": epochs, "patience": patience}
    return training.TrainConfig.from_params(p, **{k: v for k, v in changes.items() if v is not None})


def fine_tune(
    p: Params,
    ids: Sequence[str],
    pair_of: PairOf,
    val: Sequence[tuple[Path, Path | None]],
    workdir: Path,
    *,
    replay: Sequence[tuple[Path, Path]],
    classes: list[str] | None = None,
    config: training.TrainConfig | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    resume: bool = False,
) -> Path:
    """Fine-tune ``model.base`` on every item of ``ids`` plus ``replay`` (``replay_set``), keeping
    the epoch that scores best on ``val`` (a fixed labeled set: ``training.yolo_pairs`` of
    val.data); returns the weights, inside ``workdir``.

    ``classes``: the label files' class names (None: ``classes``); ``config``: ``train_config``
    (None: params.yaml's); ``on_epoch`` and ``resume`` as ``training.train`` takes them."""
    shutil.rmtree(workdir / "data", ignore_errors=True)  # a resumed folder's links may be stale
    data = training.fine_tune_dataset(
        ids, pair_of, classes or p.classes, val, workdir / "data", replay=replay
    )
    return training.train(
        p.model.base, data, config or train_config(p), workdir, on_epoch=on_epoch, resume=resume
    )


def score(
    p: Params,
    weights: str | Path,
    datasets: Mapping[str, Path],
    workdir: Path,
    boxes_out: Mapping[str, Path] | None = None,
) -> dict[str, training.EvalMetrics]:
    """``weights`` scored on each named data.yaml (its val split) at ``model.imgsz`` on
    ``model.device``: the validation set (what the champion gate and a choice between strategies
    read) and the test set (what is reported). Each set's scratch goes to ``workdir/<name>``;
    ``boxes_out``: by name, where a set's scored boxes are kept (``training.evaluate``)."""
    device = detection.resolve_device(p.model.device)
    keep = boxes_out or {}
    return {
        name: training.evaluate(
            weights,
            data,
            p.model.imgsz,
            workdir / name,
            device=device,
            threads=p.model.threads,
            boxes_out=keep.get(name),
        )
        for name, data in datasets.items()
    }
