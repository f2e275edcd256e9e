"""Fine-tune and evaluate with ultralytics' own trainer and validator.

acorn only decides *what* to train on (every labeled tile, validated on a fixed set of its own)
and *where* results go; epochs, augmentation, NMS and mAP are ultralytics'. Every run works in a
scratch folder so that nothing half-written ever lands in models/ or metrics/.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd
import yaml

from acorn.model.detection import use_cpu_threads
from acorn.runtime.atomic import copy_file, pause_point, replace_dir, write_json
from acorn.runtime.env import configure_ultralytics
from acorn.runtime.errors import InputError

if TYPE_CHECKING:
    from acorn.params import Params

log = logging.getLogger("acorn")


@dataclass(frozen=True)
class TrainConfig:
    """What ultralytics' trainer is given; built from params (``from_params``), never defaulted here."""

    epochs: int
    batch: int
    imgsz: int
    lr0: float
    optimizer: str
    freeze: int
    warmup_epochs: float
    patience: int  # epochs without a better validation score before stopping (0: never)
    seed: int
    workers: int
    device: str
    threads: int  # model.threads: torch threads when device is the CPU

    @classmethod
    def from_params(cls, p: Params, **changes) -> TrainConfig:
        """The train stage's fine-tuning settings; ``changes`` for what a caller varies (seed, epochs)."""
        from acorn.model.detection import resolve_device

        t = p.train
        config = cls(
            epochs=t.epochs,
            batch=t.batch,
            imgsz=p.model.imgsz,
            lr0=t.lr0,
            optimizer=t.optimizer,
            freeze=t.freeze,
            warmup_epochs=t.warmup_epochs,
            patience=t.patience,
            seed=t.seed,
            workers=t.workers,
            device=resolve_device(p.model.device),
            threads=p.model.threads,
        )
        return replace(config, **changes)


@dataclass(frozen=True)
class EvalMetrics:
    map50: float
    map50_95: float
    precision: float
    recall: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 6) for k, v in self.__dict__.items()}


def held_out(ids: pd.Series, fraction: float, salt: str = "") -> pd.Series:
    """Stable share of ``ids`` by a hash of the id: an item never moves between the two sides.

    ``salt`` keeps two splits of one set independent: the same hash and fraction for a test and a
    validation holdout would make one the other (an item could never fall into the second).
    """
    buckets = ids.map(lambda t: int(hashlib.sha1(f"{salt}{t}".encode()).hexdigest()[:8], 16) % 10_000)
    return buckets < round(fraction * 10_000)


def split_labeled(ids: Sequence[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """(train, val) by a stable hash of the id, with one val item at least, for a labeled set with
    no validation set of its own (the base model's close-ups; never a cycle's paid labels).

    ultralytics needs a validation split; with no val item one is borrowed, and with no train
    item the val items train too.
    """
    ids = list(ids)
    if not ids:
        raise InputError("nothing to train on: no labeled items")
    val = held_out(pd.Series(ids, dtype=str), val_fraction).to_numpy(copy=True)
    if not val.any():
        val[0] = True
    val_ids = [t for t, v in zip(ids, val, strict=True) if v]
    return [t for t, v in zip(ids, val, strict=True) if not v] or val_ids, val_ids


def write_dataset(
    workdir: Path,
    classes: list[str],
    train: Sequence[tuple[Path, Path | None]],
    val: Sequence[tuple[Path, Path | None]],
) -> Path:
    """Lay out (image, label) pairs the way ultralytics expects, by symlink, and write data.yaml.
    A label of None is an image without objects (YOLO: no label file)."""
    for split, pairs in (("train", train), ("val", val)):
        (workdir / split / "images").mkdir(parents=True, exist_ok=True)
        (workdir / split / "labels").mkdir(parents=True, exist_ok=True)
        for image, label in pairs:
            name = image.name
            os.symlink(image.resolve(), workdir / split / "images" / name)
            if label is not None:
                os.symlink(label.resolve(), workdir / split / "labels" / f"{Path(name).stem}.txt")
    return _data_yaml(workdir, classes, train="train/images", val="val/images")


def labeled_dataset(
    ids: Sequence[str],
    pair_of: Callable[[str], tuple[Path, Path]],
    classes: list[str],
    val_fraction: float,
    workdir: Path,
    replay: Sequence[tuple[Path, Path]] = (),
) -> Path:
    """A labeled set split into train / val by ``split_labeled``, ``replay`` pairs added to train
    only; returns data.yaml. For sets without a validation set of their own (the base model's
    close-ups): a cycle's fine-tune uses ``fine_tune_dataset``, where every label trains."""
    train_ids, val_ids = split_labeled(ids, val_fraction)
    train_pairs = [pair_of(i) for i in train_ids] + list(replay)
    return write_dataset(workdir, classes, train_pairs, [pair_of(i) for i in val_ids])


def fine_tune_dataset(
    ids: Sequence[str],
    pair_of: Callable[[str], tuple[Path, Path]],
    classes: list[str],
    val: Sequence[tuple[Path, Path | None]],
    workdir: Path,
    replay: Sequence[tuple[Path, Path]] = (),
) -> Path:
    """The one way a cycle's training set is laid out (acorn.cycle_step.fine_tune): every labeled item
    and the ``replay`` pairs train; ``val`` (a fixed labeled set of its own, ``yolo_pairs`` of
    val.data) validates, so early stopping and the epoch kept never cost a paid label."""
    ids = list(ids)
    if not ids:
        raise InputError("nothing to train on: no labeled items")
    if not val:
        raise InputError("no validation images: val.data must hold a labeled set (YOLO layout)")
    return write_dataset(workdir, classes, [pair_of(i) for i in ids] + list(replay), val)


def yolo_pairs(folder: str | Path) -> list[tuple[Path, Path | None]]:
    """(image, label file or None) for every image of a YOLO folder (``images/``, ``labels/``,
    subfolders allowed); None: no label file, an image without objects."""
    configure_ultralytics()
    from ultralytics.data.utils import IMG_FORMATS  # what ultralytics would read from the folder

    folder = Path(folder)
    images = sorted(f for f in (folder / "images").rglob("*") if f.suffix.lower()[1:] in IMG_FORMATS)
    labels = [(folder / "labels" / i.relative_to(folder / "images")).with_suffix(".txt") for i in images]
    return [(i, label if label.is_file() else None) for i, label in zip(images, labels, strict=True)]


FETCH_CHUNK = 500  # paths per `dvc pull`: far below any command-line limit


def fetch_missing(files: Sequence[Path], root: Path = Path(), what: str = "training data") -> list[Path]:
    """Pull from DVC (its cache, else the default remote) those of ``files`` that are not here.

    Only the files named are fetched and checked out, even inside a tracked folder: ``dvc pull
    data/tiles/images/t.jpg`` downloads the folder's listing and that one file, not the pool
    (DVC 3 pulls paths inside a tracked directory granularly). So a clone that trains needs only
    the labeled tiles of a pool of any size. Returns the files fetched; raises ``InputError``
    naming the first missing file when DVC cannot get them (no remote, not pushed, not tracked).
    """
    missing = [Path(f) for f in files if not (root / f).exists()]
    for start in range(0, len(missing), FETCH_CHUNK):
        chunk = missing[start : start + FETCH_CHUNK]
        log.info("fetching %d of %d missing %s from DVC", len(chunk), len(missing), what)
        proc = subprocess.run(
            [sys.executable, "-m", "dvc", "pull", "--quiet", *map(str, chunk)],
            cwd=root,
            capture_output=True,
            text=True,
        )
        still = [f for f in chunk if not (root / f).exists()]
        detail = " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:]) or "no message"
        if still:
            raise InputError(
                f"{still[0]}: missing, and `dvc pull` could not get {len(still)} {what} file(s) ({detail}); "
                "check `dvc remote list` and that the data was pushed (`dvc push`)"
            )
        if proc.returncode != 0:
            log.warning("dvc pull got the %s but said: %s", what, detail)
    return missing


def replay_pairs(folder: str | Path, count: int) -> list[tuple[Path, Path]]:
    """A fixed subset of the base model's own domain, mixed into every fine-tune.

    A cycle's labels are a few dozen tiles, mostly empty: alone they teach the detector that
    nothing is a squirrel. Replaying what it already knew makes fine-tuning add, not replace.
    Optional: a missing folder, or one with no images (the default data/replay holds only a
    README), means no replay; so does ``train.replay_images: 0``.
    """
    if count <= 0 or not str(folder):
        return []
    folder = Path(folder)
    images = sorted((folder / "images").glob("*")) if (folder / "images").is_dir() else []
    if not images:
        log.info("no replay images in %s/images: fine-tuning on the labeled tiles alone", folder)
        return []
    pairs = []
    for image in images[:count]:
        label = folder / "labels" / f"{image.stem}.txt"
        if not label.exists():
            raise InputError(f"{label}: replay image {image.name} has no label file (train.replay_data)")
        pairs.append((image, label))
    return pairs


def folder_dataset(folder: Path, classes: list[str], workdir: Path) -> Path:
    """data.yaml for an existing YOLO folder (images/, labels/) used as the validation set."""
    return _data_yaml(
        workdir,
        classes,
        train=str(Path(folder).resolve() / "images"),
        val=str(Path(folder).resolve() / "images"),
    )


def _data_yaml(workdir: Path, classes: list[str], train: str, val: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "data.yaml"
    spec = {"path": str(workdir.resolve()), "train": train, "val": val, "names": dict(enumerate(classes))}
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def train(
    start: str | Path,
    data_yaml: Path,
    config: TrainConfig,
    workdir: Path,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    resume: bool = False,
    **overrides,
) -> Path:
    """Train from ``start`` (a .pt to fine-tune or a .yaml for random init); return the weights of
    the epoch that scored best on ``data_yaml``'s val split (ultralytics' fitness, 0.1 map50 + 0.9
    map50-95), stopping after ``config.patience`` epochs without a better one (0: never).

    The val split is a fixed labeled set of its own (``fine_tune_dataset``), large enough to choose
    an epoch on, so the epoch kept is the one that generalises, not whichever came last.
    ``on_epoch`` gets each epoch's losses and validation scores (``epoch_metrics``): the train
    stage's per-epoch curves (dvclive), kept out of here so that other callers need no tracker.

    ``resume`` is for runs of hours (the whole-pool reference, the base model): ``workdir`` then
    outlives a kill, a run stopped before its last epoch goes on from its ``last.pt`` (optimizer,
    EMA and early-stopping state included, the random state not: a resumed run is not the
    bit-identical twin of an unbroken one; ``on_epoch`` hears only the epochs trained now) and a
    finished one is not trained again. ultralytics writes ``last.pt`` in place, so a kill while
    it is written leaves it torn: each saved checkpoint is also copied atomically to
    ``*-whole.pt``, and a torn one is mended from there (``_mend_torn_checkpoints``) instead of
    starting over. The caller keeps one ``workdir`` per set of
    settings: ultralytics resumes with the checkpoint's own. ``epoch_history`` reads the epochs
    of all the attempts.
    """
    configure_ultralytics()
    from ultralytics import YOLO

    weights = workdir / "train" / "weights" / "best.pt"
    last = workdir / "train" / "weights" / "last.pt"
    if resume:
        _mend_torn_checkpoints(last.parent)
    stage = checkpoint_stage(last) if resume else None
    if stage == "finished" and _load_checkpoint(weights) is not None:
        log.info("%s: training finished before; not trained again", weights)
        return weights
    if stage != "unfinished":
        shutil.rmtree(workdir / "train", ignore_errors=True)  # no stale results.csv rows
    model = YOLO(str(last if stage == "unfinished" else start))
    model.add_callback("on_fit_epoch_end", partial(_epoch_end, state={}, on_epoch=on_epoch))
    if resume:
        model.add_callback("on_model_save", _keep_whole_copies)
    _use_threads(model, config.threads)
    if stage == "unfinished":
        log.info("resuming the training stopped in %s", workdir)
        model.train(  # save_dir: the checkpoint's own is where the folder was, maybe another machine
            resume=str(last),
            data=str(data_yaml),
            device=config.device,
            workers=config.workers,
            save_dir=str((workdir / "train").resolve()),
        )
    else:
        _train_new(model, data_yaml, config, workdir, **overrides)
    if not weights.exists():
        raise RuntimeError(f"ultralytics finished without writing {weights}")
    return weights


def _keep_whole_copies(trainer) -> None:
    """After ultralytics saved an epoch: atomic copies of the checkpoints it just wrote in place."""
    copy_file(trainer.last, trainer.last.with_name("last-whole.pt"))
    if trainer.best_fitness == trainer.fitness:  # ultralytics' own test for writing best.pt
        copy_file(trainer.best, trainer.best.with_name("best-whole.pt"))


def _mend_torn_checkpoints(weights: Path) -> None:
    """Put back a checkpoint that a kill tore while ultralytics wrote it. A torn last.pt goes back
    to the epoch before (its whole copy), else the run would start over; a torn best.pt to last.pt
    when that was the best epoch (the same bytes), else to the previous best, else the final
    validation of best.pt would fail after hours of training."""
    last, best = weights / "last.pt", weights / "best.pt"
    if last.exists() and _load_checkpoint(last) is None:
        _put_back(last, [weights / "last-whole.pt"])
    if best.exists() and _load_checkpoint(best) is None:
        latest = _load_checkpoint(last) or {}
        fitness = (latest.get("train_metrics") or {}).get("fitness")
        was_best = fitness is not None and latest.get("best_fitness") == fitness
        _put_back(best, ([last] if was_best else []) + [weights / "best-whole.pt"])


def _put_back(torn: Path, sources: list[Path]) -> None:
    for source in sources:
        if _load_checkpoint(source) is not None:
            log.warning("%s is torn (a kill while it was written); put back from %s", torn, source.name)
            copy_file(source, torn)
            return
    log.warning("%s is torn (a kill while it was written) and has no whole copy: removed", torn)
    torn.unlink()


def resumable_workdir(work: Path, spec: dict, what: str) -> Path:
    """A training folder for ``train(..., resume=True)``, kept across a kill: reused while ``spec``
    (what the run trains) is the one it was made for, else emptied and started over, since
    ultralytics resumes with the checkpoint's own settings."""
    stored = work / "spec.json"
    if stored.is_file() and json.loads(stored.read_text(encoding="utf-8")) == json.loads(json.dumps(spec)):
        log.info("resuming %s in %s", what, work)
        return work
    shutil.rmtree(work, ignore_errors=True)
    write_json(stored, spec)
    return work


def _train_new(model, data_yaml: Path, config: TrainConfig, workdir: Path, **overrides) -> None:
    model.train(
        data=str(data_yaml),
        epochs=config.epochs,
        batch=config.batch,
        imgsz=config.imgsz,
        lr0=config.lr0,
        optimizer=config.optimizer,
        freeze=config.freeze or None,
        warmup_epochs=config.warmup_epochs,
        patience=config.patience,  # 0: ultralytics never stops early either
        seed=config.seed,
        deterministic=True,
        workers=config.workers,
        device=config.device,
        project=str(workdir.resolve()),
        name="train",
        exist_ok=True,
        plots=False,
        verbose=False,
        amp=False,
        **overrides,
    )


def checkpoint_stage(last: Path) -> Literal["finished", "unfinished"] | None:
    """``last.pt`` of a run: "unfinished" (an epoch's checkpoint, resumable), "finished" or None
    (no checkpoint, or unreadable: a kill while it was written).

    Finished: ultralytics strips the optimizer and sets epoch -1 when a run ends; also the
    checkpoint of the last epoch, or of the one early stopping ended on, when a kill came before
    that: ultralytics refuses to resume it and there is nothing left to train."""
    ckpt = _load_checkpoint(last)
    if ckpt is None:
        return None
    epoch = ckpt.get("epoch", -1)
    if epoch == -1:
        return "finished"
    args, stopper = ckpt.get("train_args") or {}, ckpt.get("stopper") or {}
    done = epoch + 1
    stalled = done - stopper.get("best_epoch", 0) >= (args.get("patience") or math.inf)
    return "finished" if done >= args.get("epochs", math.inf) or stalled else "unfinished"


def _load_checkpoint(path: Path) -> dict | None:
    if not path.is_file():
        return None
    from ultralytics.utils.patches import torch_load

    try:
        return torch_load(path, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint means: start again
        log.warning("%s: unreadable (%s)", path, exc)
        return None


def epoch_history(workdir: Path) -> pd.DataFrame:
    """Every epoch of a run in ``workdir`` from ultralytics' results.csv, across resumes: one row
    per epoch (one redone after a kill is logged twice; the last counts), scores named as
    ``epoch_metrics`` names them."""
    raw = pd.read_csv(workdir / "train" / "results.csv")
    raw.columns = [c.strip() for c in raw.columns]
    raw = raw.drop_duplicates("epoch", keep="last").reset_index(drop=True)
    return raw.rename(columns=_EPOCH_NAMES).astype({"epoch": int})


def _use_threads(model, threads: int) -> None:
    """``model.threads`` for the trainer and every validation (the final one of a training run
    loads best.pt anew): these events come after ultralytics picked the device, which resets
    torch's thread count (acorn.model.detection.use_cpu_threads)."""
    for event in ("on_pretrain_routine_start", "on_val_start"):
        model.add_callback(event, lambda owner: use_cpu_threads(threads, owner.device))


# ultralytics' validation keys -> names that read as file names in dvclive's plots folder
_EPOCH_NAMES = {
    "metrics/mAP50(B)": "val/map50",
    "metrics/mAP50-95(B)": "val/map50_95",
    "metrics/precision(B)": "val/precision",
    "metrics/recall(B)": "val/recall",
}


def epoch_metrics(trainer) -> dict[str, float]:
    """One epoch's training losses, validation losses and validation scores."""
    losses = trainer.label_loss_items(trainer.tloss, prefix="train") if trainer.tloss is not None else {}
    values = {**losses, **(trainer.metrics or {})}
    return {_EPOCH_NAMES.get(k, k): float(v) for k, v in values.items()}


def _epoch_end(trainer, state: dict, on_epoch: Callable[[dict[str, float]], None] | None = None) -> None:
    """ultralytics is silenced (verbose=False); one line per epoch keeps long training visible.

    ultralytics calls this once more after the last epoch, for its validation of best.pt: that is
    not an epoch. It comes after the epoch that set ``trainer.stop`` (``state`` remembers), which is
    the last of ``epochs`` or, with early stopping, an earlier one."""
    if state.get("stopped"):
        return
    state["stopped"] = bool(trainer.stop)
    metrics = epoch_metrics(trainer)
    log.info(
        "epoch %d/%d  val map50 %.3f",
        trainer.epoch + 1,
        trainer.epochs,
        metrics.get("val/map50", float("nan")),
    )
    if on_epoch is not None:
        on_epoch(metrics)
    pause_point("train.epoch_end")  # test-only: this epoch's checkpoint is whole on disk


def evaluate(
    weights: str | Path,
    data_yaml: Path,
    imgsz: int,
    workdir: Path,
    device: str = "cpu",
    threads: int = 0,
    boxes_out: Path | None = None,
) -> EvalMetrics:
    """mAP, precision and recall on ``data_yaml``'s val split; ``threads``: model.threads.

    ``boxes_out``: a folder that receives every box the score was computed from (``BOXES``:
    ``tile_id, class_id, confidence, x1..y2`` in the image's pixels; ``IMAGES``: ``tile_id, width,
    height`` of every image), written atomically: the report draws the very boxes the test score
    counts, and the test set is predicted once per model, not once to score and once to draw."""
    configure_ultralytics()
    from ultralytics import YOLO

    model = YOLO(str(weights))
    _use_threads(model, threads)
    kept: list = []

    def keeping_validator(**kwargs):
        validator = _box_keeping_validator()(**kwargs)
        kept.append(validator)
        return validator

    results = model.val(
        data=str(data_yaml),
        split="val",
        imgsz=imgsz,
        batch=16,
        device=device,
        project=str(workdir.resolve()),
        name="val",
        exist_ok=True,
        plots=False,
        verbose=False,
        workers=0,
        **({"validator": keeping_validator} if boxes_out is not None else {}),
    )
    if boxes_out is not None:
        _write_kept_boxes(kept[0], Path(boxes_out))
    box = results.box
    return EvalMetrics(map50=box.map50, map50_95=box.map, precision=box.mp, recall=box.mr)


BOXES, IMAGES = "boxes.parquet", "images.parquet"  # what ``evaluate(boxes_out=...)`` writes


def scored_boxes_dir(weights: str | Path, test_folder: Path, imgsz: int, cache: Path) -> Path:
    """Where ``weights``' scored boxes on ``test_folder`` are kept under ``cache``: one folder per
    weights (their hash), test folder (path and each file's name, size and time) and input size.
    The train stage writes it while scoring; the report draws from it, and scores the test set
    only when a clone or a cleared cache lacks it."""
    with open(weights, "rb") as fh:
        weights_sha = hashlib.file_digest(fh, "sha256").hexdigest()
    folder = Path(test_folder)
    listing = sorted(  # not ultralytics' labels.cache, which scoring itself writes into the folder
        (str(f.relative_to(folder)), s.st_size, s.st_mtime_ns)
        for f in folder.rglob("*")
        if f.is_file() and f.suffix != ".cache" and (s := f.stat())
    )
    described = {"weights": weights_sha, "test": str(folder.resolve()), "imgsz": imgsz, "files": listing}
    return cache / hashlib.sha1(json.dumps(described).encode()).hexdigest()[:16]


def _box_keeping_validator() -> type:
    """ultralytics' detection validator, keeping each image's size and scored boxes as it goes."""
    from ultralytics.models.yolo.detect import DetectionValidator

    class BoxKeepingValidator(DetectionValidator):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.kept_images: list[tuple[str, int, int]] = []
            self.kept_boxes: list[pd.DataFrame] = []

        def update_metrics(self, preds, batch) -> None:
            super().update_metrics(preds, batch)
            for si, pred in enumerate(preds):
                pbatch = self._prepare_batch(si, batch)
                height, width = (int(v) for v in pbatch["ori_shape"])
                tile_id = Path(pbatch["im_file"]).stem
                self.kept_images.append((tile_id, width, height))
                if len(pred["cls"]):
                    scaled = self.scale_preds(pred, pbatch)
                    xyxy = scaled["bboxes"].cpu().numpy()
                    self.kept_boxes.append(
                        pd.DataFrame(
                            {
                                "tile_id": tile_id,
                                "class_id": scaled["cls"].cpu().numpy().astype("int64"),
                                "confidence": scaled["conf"].cpu().numpy().astype("float64"),
                                **{
                                    c: xyxy[:, i].astype("float64")
                                    for i, c in enumerate(("x1", "y1", "x2", "y2"))
                                },
                            }
                        )
                    )

    return BoxKeepingValidator


def _write_kept_boxes(validator, out: Path) -> None:
    columns = ["tile_id", "class_id", "confidence", "x1", "y1", "x2", "y2"]
    boxes = (
        pd.concat(validator.kept_boxes, ignore_index=True)
        if validator.kept_boxes
        else pd.DataFrame({c: pd.Series(dtype="str" if c == "tile_id" else "float64") for c in columns})
    )
    images = pd.DataFrame(validator.kept_images, columns=["tile_id", "width", "height"])
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    boxes.astype({"class_id": "int64"}).to_parquet(staging / BOXES, index=False)
    images.to_parquet(staging / IMAGES, index=False)
    replace_dir(staging, out)
