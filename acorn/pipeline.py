"""The body of each DVC stage, one function per stage.

``stages/*.py`` are thin wrappers around these so that dvc.yaml stays readable and tests can
call a stage in-process. Every function reads params, reads its declared deps, and writes
its declared outs atomically (a stage killed midway leaves the previous outputs intact).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import pandas as pd

from acorn import paths
from acorn.atomic import copy_file, write_csv, write_json, write_parquet
from acorn.params import Params

log = logging.getLogger("acorn")


def tile(p: Params, root: Path = Path()) -> pd.DataFrame:
    from acorn.tiling import TileGrid, tile_dataset

    grid = TileGrid(p.tile.rows, p.tile.cols, p.tile.overlap)
    manifest = tile_dataset(
        root / paths.RAW,
        root / paths.TILES,
        grid,
        p.classes,
        min_visibility=p.tile.min_visibility,
        jpeg_quality=p.tile.jpeg_quality,
        workers=p.tile.workers,
    )
    log.info("%d tiles from %d frames in %s", len(manifest), manifest["frame_id"].nunique(), paths.TILES)
    return manifest


def export_labels(p: Params, root: Path = Path()) -> pd.DataFrame:
    from acorn.labeling import get_backend
    from acorn.labels import write_labels

    pulled = get_backend(p, root).pull()
    manifest = write_labels(pulled, root / paths.LABELS, n_classes=len(p.classes))
    log.info("%d labeled tiles (%d boxes) in %s", len(manifest), int(manifest["n_boxes"].sum()), paths.LABELS)
    return manifest


def train(p: Params, root: Path = Path()) -> dict:
    from acorn import training
    from acorn.labels import read_manifest

    labels = read_manifest(root / paths.LABELS)
    cycle = int(labels["batch"].max()) if not labels.empty else 0
    base = root / p.model.base
    if not base.is_file():
        raise FileNotFoundError(
            f"{base}: base model missing (params model.base); make one with `acorn train-base`"
        )
    test_dir = root / p.test.data
    if not (test_dir / "images").is_dir():
        raise FileNotFoundError(f"{test_dir}/images: test set missing (params test.data)")
    (root / paths.WORK).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root / paths.WORK, prefix="train-") as tmp:
        work = Path(tmp)
        if labels.empty:
            log.info("cycle 0: no labels yet, evaluating the base model %s", base)
            weights = base
        else:
            weights = training.train(
                str(base), _labeled_dataset(p, labels, root, work), train_config(p), work
            )
        test_yaml = training.folder_dataset(test_dir, p.classes, work / "test")
        scores = training.evaluate(weights, test_yaml, p.model.imgsz, work, device=p.model.device)
        copy_file(weights, root / paths.MODEL)
    metrics = {
        "cycle": cycle,
        "labeled_tiles": len(labels),
        "labeled_boxes": int(labels["n_boxes"].sum()) if not labels.empty else 0,
        **scores.as_dict(),
    }
    write_json(root / paths.TRAIN_METRICS, metrics)
    log.info(
        "cycle %d: map50 %.3f on %s with %d labeled tiles", cycle, scores.map50, p.test.data, len(labels)
    )
    return metrics


def train_config(p: Params):
    """The fine-tuning settings of the train stage (acorn simulate trains with the same)."""
    from acorn.training import TrainConfig

    t = p.train
    return TrainConfig(
        epochs=t.epochs,
        batch=t.batch,
        imgsz=p.model.imgsz,
        lr0=t.lr0,
        optimizer=t.optimizer,
        freeze=t.freeze,
        warmup_epochs=t.warmup_epochs,
        seed=t.seed,
        workers=t.workers,
        device=p.model.device,
    )


def _labeled_dataset(p: Params, labels: pd.DataFrame, root: Path, work: Path) -> Path:
    from acorn.training import replay_pairs, split_labeled, write_dataset

    manifest = pd.read_parquet(root / paths.TILE_MANIFEST, columns=["tile_id", "image"])
    images = manifest.set_index("tile_id")["image"]
    missing = labels.loc[~labels["tile_id"].isin(images.index), "tile_id"]
    if not missing.empty:
        raise ValueError(
            f"{paths.LABELS}/manifest.csv: tile {missing.iloc[0]} is not in {paths.TILE_MANIFEST}"
        )
    train_ids, val_ids = split_labeled(list(labels["tile_id"]), p.train.val_fraction)

    def pairs(ids: list[str]) -> list[tuple[Path, Path]]:
        return [(root / paths.TILES / images[t], root / paths.LABELS / f"{t}.txt") for t in ids]

    train_pairs = pairs(train_ids) + replay_pairs(root / p.train.replay_data, p.train.replay_images)
    val_pairs = pairs(val_ids)
    return write_dataset(work / "data", p.classes, train_pairs, val_pairs)


def detector_settings(p: Params) -> dict:
    """What a loaded model needs to predict exactly as the predict stage does."""
    return {
        "imgsz": p.model.imgsz,
        "device": p.model.device,
        "conf_floor": p.predict.conf_floor,
        "iou": p.predict.iou,
        "max_det": p.predict.max_det,
        "batch": p.predict.batch,
    }


def register(p: Params, root: Path = Path()) -> dict:
    from acorn.registry import record_dict
    from acorn.registry import register as register_model

    metrics = json.loads((root / paths.TRAIN_METRICS).read_text(encoding="utf-8"))
    record = register_model(
        root / paths.MODEL, metrics, p.register.model_name, p.register.metric, detector_settings(p), root
    )
    write_json(root / paths.REGISTRY, record_dict(record))
    log.info(
        "registered %s version %d (%s %.3f); champion is version %d",
        record.name,
        record.version,
        record.metric,
        record.value,
        record.champion_version,
    )
    return record_dict(record)


def predict(p: Params, root: Path = Path()) -> pd.DataFrame:
    from tqdm import tqdm

    from acorn.detection import Detector, DetectorConfig, load_images
    from acorn.labels import read_manifest

    record = json.loads((root / paths.REGISTRY).read_text(encoding="utf-8"))
    tiles = pd.read_parquet(root / paths.TILE_MANIFEST)
    labeled = set(read_manifest(root / paths.LABELS)["tile_id"])
    pool = tiles[~tiles["tile_id"].isin(labeled)].reset_index(drop=True)
    detector = Detector(DetectorConfig(weights=str(root / paths.MODEL), **detector_settings(p)))
    box_parts, tile_parts = [], []
    chunk = max(p.predict.batch, 64)  # images held in memory at once
    with tqdm(total=len(pool), desc="predict", unit="tile") as bar:
        for start in range(0, len(pool), chunk):
            part = pool.iloc[start : start + chunk]
            images = load_images([root / paths.TILES / i for i in part["image"]])
            found = detector.predict(images, list(part["tile_id"]))
            box_parts.append(found.boxes)
            tile_parts.append(found.tiles)
            bar.update(len(part))
    boxes = pd.concat(box_parts, ignore_index=True) if box_parts else pd.DataFrame()
    per_tile = pd.concat(tile_parts, ignore_index=True) if tile_parts else pd.DataFrame()
    meta = pool.drop(columns=["width", "height"])
    per_tile = meta.merge(per_tile, on="tile_id", how="left")
    for table in (boxes, per_tile):
        table["model_version"] = record["model_version"]
    write_parquet(boxes, root / paths.PRED_BOXES)
    write_parquet(per_tile, root / paths.PRED_TILES)
    log.info(
        "%d candidate boxes on %d unlabeled tiles (%s)", len(boxes), len(per_tile), record["model_version"]
    )
    return per_tile


def rank(p: Params, root: Path = Path()) -> pd.DataFrame:
    from acorn.labeling import get_backend
    from acorn.labels import read_manifest
    from acorn.ranking import build_queue

    boxes = pd.read_parquet(root / paths.PRED_BOXES)
    pool = pd.read_parquet(root / paths.PRED_TILES)
    labels = read_manifest(root / paths.LABELS)
    batch = int(labels["batch"].max()) + 1 if not labels.empty else 1
    queue, waiting, summary = build_queue(boxes, pool, p, batch)
    for table in (queue, waiting):
        table["image"] = [str(paths.TILES / i) for i in table["image"]]
    result = get_backend(p, root).push(queue, boxes, waiting)
    write_csv(queue, root / paths.QUEUE)
    write_json(root / paths.RANK_METRICS, summary)
    log.info(
        "batch %d: %d tiles queued by %s (%d new, %d refreshed)",
        batch,
        len(queue),
        p.rank.strategy,
        result.created,
        result.updated,
    )
    return queue
