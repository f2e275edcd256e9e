"""Load a detector and run batched inference over tiles.

One code path for the predict stage, the ML backend (``acorn serve``) and, later, a Ray actor:
``Detector`` holds no global state, takes images in memory and returns tables, so the caller
decides where images come from and where results go.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import pandas as pd

from acorn.runtime.env import configure_ultralytics
from acorn.runtime.errors import InputError

if TYPE_CHECKING:
    from acorn.params import Params

BOX_TABLE_COLUMNS = ["tile_id", "class_id", "confidence", "x1", "y1", "x2", "y2"]


@dataclass(frozen=True)
class DetectorConfig:
    """How the predict stage, ``acorn serve`` and ``acorn simulate`` detect: built from params."""

    weights: str
    imgsz: int
    device: str
    conf_floor: float
    iou: float
    max_det: int
    batch: int
    threads: int = 0  # model.threads (0 also for models registered before it existed)

    @classmethod
    def from_params(cls, p: Params, weights: str | Path) -> DetectorConfig:
        return cls(weights=str(weights), **detector_settings(p))


def detector_settings(p: Params) -> dict:
    """Everything but the weights: what a registered model needs to predict as the predict stage does."""
    return {
        "imgsz": p.model.imgsz,
        "device": resolve_device(p.model.device),
        "conf_floor": p.predict.conf_floor,
        "iou": p.predict.iou,
        "max_det": p.predict.max_det,
        "batch": p.predict.batch,
        "threads": p.model.threads,
    }


def resolve_device(device: str) -> str:
    """``auto``: the first GPU when torch sees one, else the CPU; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def cpu_threads(threads: int) -> int:
    """``model.threads`` -> torch's thread count. 0 is ultralytics' own rule, one core left to the
    rest of the machine (at most 8), but counting the cores this process may run on (its affinity,
    which ``taskset`` and container cpusets narrow) rather than the host's ``os.cpu_count()``: on a
    2-core machine 1 thread, which measured 4-7x faster than 2 while other processes kept the cores
    busy, and 1.2-1.4x slower when they did not (benchmarks/cpu_threads.py)."""
    if threads:
        return threads
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(8, max(1, usable - 1))


def use_cpu_threads(threads: int, device) -> None:
    """Give torch ``cpu_threads(threads)`` threads when ``device`` is the CPU; nothing on a GPU.

    Call it after ultralytics has picked the device: its ``select_device`` sets torch to
    ``min(8, os.cpu_count() - 1)`` threads whatever acorn asked. The setting is process-wide, as
    every torch thread count is.
    """
    import torch

    if torch.device(device).type != "cpu":
        return
    wanted = cpu_threads(threads)
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


def check_model_classes(weights: str | Path, classes: list[str], where: str = "model.base") -> None:
    """A model trained on other classes would train or pre-annotate under the wrong names."""
    configure_ultralytics()
    from ultralytics import YOLO

    path = Path(weights)
    if not path.is_file():
        raise InputError(f"{path}: model weights not found ({where})")
    names = [str(n) for _, n in sorted(YOLO(str(path)).names.items())]
    if names != list(classes):
        raise InputError(
            f"{path}: the model's classes {names} differ from params.yaml classes {list(classes)} "
            f"({where}); set classes to the model's names, in order, or give a model trained on yours"
        )


@dataclass
class Detections:
    """Per-box rows and per-tile rows (with a backbone embedding for diversity sampling)."""

    boxes: pd.DataFrame
    tiles: pd.DataFrame


class Detector:
    def __init__(self, config: DetectorConfig) -> None:
        configure_ultralytics()
        from ultralytics import YOLO

        if not Path(config.weights).is_file():
            raise InputError(f"{config.weights}: model weights not found")
        self.config = config
        self.model = YOLO(config.weights)
        self.class_names: dict[int, str] = dict(self.model.names)
        self._embeddings: list[np.ndarray] = []
        # ultralytics deep-copies the model into its predictor on first use: warm it up, then
        # hook the copy that actually runs. The hook stays for the detector's lifetime.
        from PIL import Image

        self._run([Image.new("RGB", (32, 32))])
        predictor_layers = self.model.predictor.model.model.model
        _embedding_layer(predictor_layers).register_forward_hook(self._capture)

    def predict(self, images: list, tile_ids: list[str], fixed_batch: bool = False) -> Detections:
        """Detect on PIL images (RGB), ``batch`` at a time; rows come back in input order.

        ultralytics runs one batch of everything it is given (it ignores ``batch`` for lists),
        which is slower per tile on a CPU: the list is chunked here.

        ``fixed_batch``: a tile's result depends (at the 1e-7 level) on the size of the forward
        pass it was in, and its letterbox on the sizes of its batch-mates. With ``fixed_batch``
        images are batched by size and every pass is padded to ``batch`` with blank images, so
        a tile's result is the same whichever tiles it is predicted with: what a cache and a
        resumed run need to give byte-identical outputs. Padding costs up to ``batch - 1``
        blank images per call, so callers that predict one image per call leave it off.
        """
        if len(images) != len(tile_ids):
            raise ValueError(f"{len(images)} images but {len(tile_ids)} tile ids")
        n = len(images)
        # filled per input index as the passes come back (a pass may hold any subset)
        xyxy: list[np.ndarray] = [np.zeros((0, 4))] * n
        conf: list[np.ndarray] = [np.zeros(0)] * n
        cls: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * n
        embeddings: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * n
        shapes = np.zeros((n, 2), dtype=np.int64)
        for indices in self._batches(images, fixed_batch):
            chunk = [images[i] for i in indices]
            if fixed_batch:
                chunk += [_blank(chunk[0].size)] * (self.config.batch - len(chunk))
            self._embeddings.clear()
            results = self._run(chunk)
            pooled = np.concatenate(self._embeddings)[-len(chunk) :]
            for j, i in enumerate(indices):
                boxes = results[j].boxes
                xyxy[i] = boxes.xyxy.cpu().numpy().astype(np.float64)
                conf[i] = boxes.conf.cpu().numpy().astype(np.float64)
                cls[i] = boxes.cls.cpu().numpy().astype(np.int64)
                shapes[i] = results[j].orig_shape
                embeddings[i] = pooled[j]
        counts = np.array([len(c) for c in conf], dtype=np.int64)
        corners = np.concatenate([np.zeros((0, 4)), *xyxy])  # the empty head: n may be 0
        boxes = pd.DataFrame(
            {
                "tile_id": np.repeat(np.asarray(tile_ids, dtype=object), counts),
                "class_id": np.concatenate([np.zeros(0, dtype=np.int64), *cls]),
                "confidence": np.concatenate([np.zeros(0), *conf]),
                "x1": corners[:, 0],
                "y1": corners[:, 1],
                "x2": corners[:, 2],
                "y2": corners[:, 3],
            }
        ).astype({"tile_id": str, "class_id": "int64", "confidence": "float64"})
        tiles = pd.DataFrame(
            {
                "tile_id": pd.Series(list(tile_ids), dtype=str),
                "width": shapes[:, 1],
                "height": shapes[:, 0],
                "n_boxes": counts,
                "max_confidence": [float(c.max()) if len(c) else 0.0 for c in conf],
                "embedding": [e.astype(np.float32) for e in embeddings],
            }
        )
        return Detections(boxes=boxes, tiles=tiles)

    def _batches(self, images: list, by_size: bool) -> Iterator[list[int]]:
        """Indices of each forward pass: in input order, or grouped by image size first."""
        step = self.config.batch
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(image.size if by_size else (0, 0), []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), step):
                yield indices[start : start + step]

    def _run(self, images: list) -> list:
        cfg = self.config
        predictor = self.model.predictor
        if predictor is not None:  # set up (the warm-up): training or another detector in this
            use_cpu_threads(cfg.threads, predictor.device)  # process may have reset the count since
        return self.model.predict(
            images,
            imgsz=cfg.imgsz,
            conf=cfg.conf_floor,
            iou=cfg.iou,
            max_det=cfg.max_det,
            device=cfg.device,
            verbose=False,
        )

    def _capture(self, _module, _inputs, output) -> None:
        """Global-average-pool the last backbone feature map: a cheap image embedding."""
        self._embeddings.append(output.detach().float().mean(dim=(2, 3)).cpu().numpy())


def _blank(size: tuple[int, int]):
    """A black image that pads a forward pass to its full batch (see ``Detector.predict``)."""
    from PIL import Image

    return Image.new("RGB", size)


def _embedding_layer(layers):
    """The layer just before the neck's first upsample: the end of the backbone."""
    for i, layer in enumerate(layers):
        if type(layer).__name__ == "Upsample":
            return layers[i - 1]
    raise ValueError("model has no Upsample layer: cannot find the end of its backbone")


def empty_box_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            c: pd.Series(dtype={"tile_id": str, "class_id": "int64"}.get(c, "float64"))
            for c in BOX_TABLE_COLUMNS
        }
    )


def predict_files(
    detector: Detector, images: Sequence[Path], tile_ids: Sequence[str], chunk: int = 64
) -> Iterator[Detections]:
    """The one predict loop (predict stage, simulate): decode ``chunk`` images, detect, yield.

    Memory holds one chunk of decoded images whatever the number of tiles, and the caller
    decides where each part goes (a Parquet part file, a list).
    """
    if len(images) != len(tile_ids):
        raise ValueError(f"{len(images)} images but {len(tile_ids)} tile ids")
    chunk = max(chunk, detector.config.batch)
    for start in range(0, len(images), chunk):
        ids = list(tile_ids[start : start + chunk])
        yield detector.predict(load_images(list(images[start : start + chunk])), ids)


def load_images(paths: list[Path | BinaryIO]) -> list:
    """Open tiles as RGB PIL images (EXIF orientation applied, as ultralytics does in training)."""
    from PIL import Image, ImageOps

    images = []
    for path in paths:
        with Image.open(path) as img:
            images.append(ImageOps.exif_transpose(img).convert("RGB"))
    return images
