"""Pools: what the oracle knows. Items to label with their ground truth, a fixed validation set
and a fixed test set.

Two sources: the tile stage's output (``data/tiles``: manifest, images, truth of every tile whose
frame had labels) with separate test and validation folders, or any YOLO folder (``images/``,
``labels/``), of which stable shares are held out as the test set and as the validation set
unless folders are given for them. The two shares use differently salted hashes, so they are
independent and disjoint. Each item and held-out image carries ``objects``, its number of
ground-truth boxes, so that what a batch found (hit rate) and how a model does on empty images can
be measured without training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from acorn.data.tiling import list_frames
from acorn.runtime.errors import InputError, ParamsError

log = logging.getLogger("acorn")


@dataclass(frozen=True)
class Pool:
    """Pool items (``tile_id``, ``image``, ``truth`` paths, ``objects``, metadata such as
    ``condition``), a validation set and a test set (``image``, ``truth``, ``objects``) and class
    names. An empty ``truth`` is an image without objects. The validation set chooses each
    fine-tune's epoch (as val.data does in the train stage); the test set only scores."""

    items: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    classes: list[str]
    description: dict

    def __post_init__(self) -> None:
        if self.items.empty:
            raise InputError(f"{self.description.get('pool')}: the pool has no items with ground truth")
        if self.test.empty:
            raise InputError(f"{self.description.get('test')}: the test set is empty")
        if self.val.empty:
            raise InputError(f"{self.description.get('val')}: the validation set is empty")
        if not self.items["tile_id"].is_unique:
            raise InputError(f"{self.description.get('pool')}: item ids repeat")

    @property
    def objects(self) -> pd.Series:
        """Ground-truth boxes per item, indexed by ``tile_id``: what the hit rate is measured on."""
        return self.items.set_index("tile_id")["objects"]

    @property
    def base_rate(self) -> float:
        """Share of items holding an object: the hit rate random labeling has on average."""
        return float((self.items["objects"] > 0).mean())


def count_objects(truth: pd.Series) -> np.ndarray:
    """Boxes per YOLO label file (its non-blank lines); '' (no file) is an image without objects."""
    return np.array(
        [
            sum(1 for line in Path(t).read_text(encoding="utf-8").splitlines() if line.strip()) if t else 0
            for t in truth
        ],
        dtype=np.int64,
    )


def _yolo_folder(folder: Path) -> pd.DataFrame:
    """Every image of a YOLO folder with its label file ('' when there is none: no objects)."""
    images_dir = folder / "images"
    if not images_dir.is_dir():
        raise InputError(f"{images_dir}: no images folder (expected YOLO layout: images/, labels/)")
    images, ids = list_frames(images_dir)
    if not images:
        raise InputError(f"{images_dir}: no images")
    names = pd.Series([p.name for p in images])
    if names.duplicated().any():  # the training folders are flat: one name, one image
        raise InputError(f"{images_dir}: two images are called {names[names.duplicated()].iloc[0]!r}")
    truth = [folder / "labels" / p.relative_to(images_dir).with_suffix(".txt") for p in images]
    table = pd.DataFrame(
        {
            "tile_id": ids,
            "image": [str(p) for p in images],
            "truth": [str(t) if t.is_file() else "" for t in truth],
        }
    )
    return table.assign(objects=count_objects(table["truth"]))


def _folder_classes(folder: Path, default: list[str]) -> list[str]:
    from acorn.data.formats import read_classes

    names = folder / "classes.txt"
    return read_classes(names) if names.is_file() else default


HELD = ["image", "truth", "objects"]
VAL_SALT = "val:"  # the validation share's hash, independent of the (unsalted) test share's


def tiled_pool(tiles_dir: Path, test_dir: Path, val_dir: Path, classes: list[str]) -> Pool:
    """The tile stage's output as a pool: tiles whose frame had labels, truth from ``truth/``."""
    manifest_path = tiles_dir / "manifest.parquet"
    if not manifest_path.is_file():
        raise InputError(f"{manifest_path}: no tile manifest (run the tile stage: `dvc repro tile`)")
    manifest = pd.read_parquet(manifest_path)
    known = manifest[manifest["n_truth"] >= 0].reset_index(drop=True)
    items = known.drop(columns=["image"]).assign(
        image=[str(tiles_dir / i) for i in known["image"]],
        truth=[str(tiles_dir / "truth" / f"{t}.txt") for t in known["tile_id"]],
        objects=known["n_truth"].astype("int64"),
    )
    test, val = _yolo_folder(test_dir), _yolo_folder(val_dir)
    return Pool(
        items=items,
        val=val[HELD],
        test=test[HELD],
        classes=classes,
        description={
            "pool": str(tiles_dir),
            "classes": classes,
            "test": str(test_dir),
            "val": str(val_dir),
            "items": len(items),
            "val_items": len(val),
            "test_items": len(test),
        },
    )


def folder_pool(
    folder: Path,
    classes: list[str],
    test_fraction: float,
    test_dir: Path | None = None,
    val_dir: Path | None = None,
    near_copy_bits: int = 0,
) -> Pool:
    """A YOLO folder as a pool: each image is an item; the test set is ``test_dir`` if given, else a
    stable ``test_fraction`` of the images (``training.held_out``), and the validation set
    ``val_dir`` if given, else another ``test_fraction`` of the images, by a salted hash (a share of
    what is left once the test set is out, so that no image is in both).

    ``near_copy_bits`` (``tile.near_copy_bits``; 0: off): the hash that holds an image out is its
    near-copy group's (acorn.data.near_copies), so near-copies fall on one side together and the
    test set never scores the model on a near-copy of what it trained on (the raccoon photos hold 8
    such pairs)."""
    from acorn.model.training import held_out

    items = _yolo_folder(folder)
    items = items.assign(split_key=_near_copy_keys(items, near_copy_bits))
    classes = _folder_classes(folder, classes)
    if (test_dir is None or val_dir is None) and not 0.0 < test_fraction < 0.5:
        raise ParamsError(
            f"--test-fraction must be in (0, 0.5) (held out twice: test, val); got {test_fraction}"
        )
    description = {"pool": str(folder), "classes": classes}
    if test_dir is not None:
        test = _yolo_folder(test_dir)
        description["test"] = str(test_dir)
    else:
        held = held_out(items["split_key"], test_fraction)
        test, items = items[held], items[~held].reset_index(drop=True)
        description["test"] = f"{folder} (held out: {test_fraction:g})"
    if val_dir is not None:
        val = _yolo_folder(val_dir)
        description["val"] = str(val_dir)
    else:
        # test_fraction of the whole folder: of the rest, test_fraction / (1 - test_fraction)
        share = test_fraction if test_dir is not None else test_fraction / (1.0 - test_fraction)
        held = held_out(items["split_key"], share, salt=VAL_SALT)
        val, items = items[held], items[~held].reset_index(drop=True)
        description["val"] = f"{folder} (held out: {test_fraction:g}, salted)"
    description |= {"items": len(items), "val_items": len(val), "test_items": len(test)}
    if near_copy_bits and (test_dir is None or val_dir is None):  # a folder made before keeps apart
        description["held_out_by"] = f"near-copy group ({near_copy_bits} bits)"
    items = items.drop(columns="split_key")
    return Pool(items=items, val=val[HELD], test=test[HELD], classes=classes, description=description)


def _near_copy_keys(items: pd.DataFrame, max_bits: int) -> pd.Series:
    """Each item's split key: its own id, or with ``max_bits`` the id leading its near-copy group."""
    if not max_bits:
        return items["tile_id"]
    from PIL import Image

    from acorn.data.near_copies import image_hash, near_copy_groups

    order = items.sort_values("tile_id")
    hashes = []
    for path in order["image"]:
        with Image.open(path) as im:
            hashes.append(image_hash(im))
    groups = pd.Series(
        near_copy_groups(order["tile_id"].tolist(), hashes, max_bits), index=order["tile_id"].to_numpy()
    )
    sizes = groups.value_counts()
    if sizes.iloc[0] > max(2, len(items) // 10):  # a group this large goes to one side whole
        log.warning(
            "%d of the %d images are near-copies of %s (tile.near_copy_bits %d): they are held out or kept "
            "together, so the test and validation shares may be far from asked; low-contrast or flat images "
            "hash alike (tile.near_copy_bits 0: hold out image by image)",
            sizes.iloc[0],
            len(items),
            sizes.index[0],
            max_bits,
        )
    return items["tile_id"].map(groups)


def open_pool(
    path: Path,
    classes: list[str],
    test_dir: Path | None,
    test_fraction: float,
    val_dir: Path | None = None,
    near_copy_bits: int = 0,
) -> Pool:
    """A tiled pool when ``path`` holds manifest.parquet (test and validation sets required), else
    a YOLO folder (its held-out shares kept apart from their near-copies: ``folder_pool``)."""
    if (path / "manifest.parquet").is_file():
        if test_dir is None or val_dir is None:
            raise InputError(
                f"{path} is a tiled pool: give its test set and its validation set (YOLO folders, "
                "test.data and val.data)"
            )
        return tiled_pool(path, test_dir, val_dir, classes)
    return folder_pool(path, classes, test_fraction, test_dir, val_dir, near_copy_bits)
