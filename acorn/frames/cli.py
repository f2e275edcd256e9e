"""The ``acorn detect`` command (registered in ``acorn.cli``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Literal

import typer

log = logging.getLogger("acorn")


def detect(
    sources: Annotated[
        list[Path], typer.Argument(help="frame files or folders of frames (searched recursively)")
    ],
    out: Annotated[Path, typer.Option(help="where the YOLO txt, COCO JSON and Parquet results go")] = Path(
        "detections"
    ),
    model: Annotated[
        Path | None,
        typer.Option(help="weights (.pt) to detect with (default: the registry's champion, as acorn serve)"),
    ] = None,
    overlap: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=0.95, help="share of a slice its neighbours also see (default: tile.overlap)"
        ),
    ] = None,
    conf: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="lowest confidence kept (default: rank.threshold)")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, auto, cuda, cuda:N (default: model.device)")
    ] = None,
    chunk: Annotated[int, typer.Option(min=1, help="slices decoded and held per predict call")] = 64,
    on_bad_frame: Annotated[
        Literal["skip", "stop"] | None,
        typer.Option(
            help="an unreadable frame: skip it (listed in bad_frames.csv) or stop (default: tile.on_bad_frame)"
        ),
    ] = None,
    params: Annotated[Path, typer.Option("--params", help="params.yaml to read")] = Path("params.yaml"),
) -> None:
    """Detect on whole frames: cut each into overlapping slices the size of the tile stage's tiles,
    detect in batches, merge the boxes an object leaves in several slices, and write one box per
    object in frame pixels: labels/FRAME.txt (YOLO), detections.json (COCO) and boxes.parquet.

    Grid from params.yaml's tile section; imgsz, batch, iou, max_det and threads as the predict
    stage uses them.
    """
    from acorn.data.tiling import TileGrid
    from acorn.frames.detect import Slicing, detect_frames, find_frames, write_results
    from acorn.model.detection import Detector, DetectorConfig, resolve_device
    from acorn.params import load_params
    from acorn.runtime.errors import InputError

    p = load_params(params)
    frames, frame_ids = find_frames(sources)
    if model is not None and not model.is_file():
        raise InputError(f"{model}: model weights not found (--model)")
    weights = (
        nullcontext((model, model.stem)) if model is not None else champion_weights(p.register.model_name)
    )
    with weights as (path, label):
        config = replace(
            DetectorConfig.from_params(p, path),
            conf_floor=p.rank.threshold if conf is None else conf,
            device=resolve_device(device or p.model.device),
        )
        detector = Detector(config)
    slicing = Slicing(
        grid=TileGrid(p.tile.rows, p.tile.cols, p.tile.overlap),
        overlap=p.tile.overlap if overlap is None else overlap,
    )
    result = detect_frames(
        detector,
        frames,
        frame_ids,
        slicing,
        chunk=chunk,
        on_bad_frame=on_bad_frame or p.tile.on_bad_frame,
        max_pixels=p.tile.max_frame_pixels,
    )
    write_results(result, out, detector.class_names, label)
    bad = int((result.frames["error"] != "").sum())
    log.info(
        "%d frames, %d boxes (%d joined from pieces) -> %s%s",
        len(result.frames) - bad,
        len(result.boxes),
        int((result.boxes["pieces"] > 1).sum()),
        out,
        f"; {bad} unreadable frames skipped, listed in {out / 'bad_frames.csv'}" if bad else "",
    )


@contextmanager
def champion_weights(model_name: str, root: Path = Path()) -> Iterator[tuple[Path, str]]:
    """The registry's champion as ``acorn serve`` finds it (``<model_name>@champion`` in the
    store ``acorn.model.registry.tracking_uri`` names), downloaded to a temporary folder that lives
    as long as the context: (weights path, its label, e.g. acorn-detector-v3)."""
    import tempfile

    import mlflow

    from acorn.model.registry import (
        champion_version,
        download_weights,
        model_version_label,
        redacted,
        store_errors,
        tracking_uri,
    )
    from acorn.runtime.errors import InputError

    uri = tracking_uri(root)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise InputError(
            f"{uri.removeprefix('sqlite:///')}: no model registry here; register a model first "
            "(`dvc repro register`), point MLFLOW_TRACKING_URI at yours, or pass --model weights.pt"
        )
    with store_errors(uri):
        version = champion_version(mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri), model_name)
    if version is None:
        raise InputError(
            f"no {model_name}@champion in {redacted(uri)}: register a model first (`dvc repro register`) "
            "or pass --model weights.pt"
        )
    with tempfile.TemporaryDirectory(prefix="acorn-detect-") as tmp:
        weights = download_weights(model_name, version, Path(tmp) / "champion.pt", root)
        yield weights, model_version_label(model_name, version)
