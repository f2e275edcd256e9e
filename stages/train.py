"""train: data/labels + data/tiles + the base model -> models/model.pt, metrics/train.json.

Fine-tunes the base model on every labeled tile (plus the replay set, if any), keeping the epoch
that scores best on the fixed validation set (val.data), then scores the model on the validation
set (``val_*`` in metrics/train.json: what the champion gate reads) and on the fixed test set
(what is reported, never what chooses); cycle 0, with no labels, scores the base model itself.
The fine-tune and the scores are acorn.cycle_step.fine_tune, what ``acorn simulate`` trains a
cycle with. Each epoch's losses and validation scores go to metrics/train-epochs (dvclive),
which dvc.yaml plots.

It reads only the labeled tiles of the pool. Those not here (a clone that pulled no tiles) are
pulled from DVC one by one (acorn.model.training.fetch_missing), with the tiles manifest, the test set
the validation set and the replay set if they are missing too: a training machine never
downloads the whole pool.
"""

import logging
import shutil
import tempfile
from functools import partial
from pathlib import Path

import pandas as pd
from dvclive import Live

from acorn import paths
from acorn.cycle_step import fine_tune
from acorn.frames.evaluate import score_frames_from_tiles
from acorn.labeling.export import read_manifest
from acorn.model import training
from acorn.model.detection import check_model_classes
from acorn.params import Params
from acorn.runtime.atomic import copy_file, write_json
from acorn.runtime.entrypoint import run_stage
from acorn.runtime.errors import InputError

log = logging.getLogger("acorn")

LIVE = paths.TRAIN_EPOCHS  # a stage output, plotted by dvc.yaml


class FilesOnlyLive(Live):
    """dvclive writing its files and nothing else: DVC already tracks the folder (an output of this
    stage) and the experiment, and dvclive's own hook-up to DVC would re-open the repository, could
    write a dvc.yaml or save an experiment, and fails in a repository with no commit yet."""

    def _init_dvc(self) -> None:
        pass


def log_epoch(live: Live, metrics: dict[str, float]) -> None:
    for name, value in metrics.items():
        live.log_metric(name, value)
    live.next_step()


def labeled_tiles(labels: pd.DataFrame) -> dict[str, Path]:
    """tile id -> image file of every labeled tile, pulled from DVC (with the tiles manifest) when
    missing here; the rest of the pool is never read."""
    if labels.empty:
        return {}
    training.fetch_missing([paths.TILE_MANIFEST], what="tiles manifest")
    images = pd.read_parquet(paths.TILE_MANIFEST, columns=["tile_id", "image"]).set_index("tile_id")
    unknown = labels.loc[~labels["tile_id"].isin(images.index), "tile_id"]
    if not unknown.empty:
        raise InputError(
            f"{paths.LABELS}/manifest.csv: tile {unknown.iloc[0]} is not in {paths.TILE_MANIFEST}"
        )
    files = {t: paths.TILES / images.at[t, "image"] for t in labels["tile_id"]}
    fetched = training.fetch_missing(list(files.values()), what="labeled tiles")
    if fetched:
        log.info("pulled %d of %d labeled tiles from DVC (the rest were here)", len(fetched), len(files))
    return files


def fetch_fixed_sets(p: Params) -> None:
    """The test and validation sets (and the replay set, when used) from DVC if they are tracked
    and missing here."""
    wanted = [Path(p.test.data), Path(p.val.data)]
    if p.train.replay_images:
        wanted += [Path(p.train.replay_data) / "images", Path(p.train.replay_data) / "labels"]
    tracked = [f for f in wanted if f.with_name(f.name + ".dvc").exists()]
    training.fetch_missing(tracked, what="test and replay sets")


def check_fixed_set(folder: Path, key: str, role: str) -> None:
    """A fixed labeled set must be there before minutes of training, not fail after them."""
    if not (folder / "images").is_dir():
        raise InputError(f"{folder}/images: {role} missing ({key}; YOLO layout images/, labels/)")


def frame_scores(p: Params, scored: Path) -> dict[str, float | int]:
    """Whole-frame scores (``frame_*``) from the test tiles' scored boxes, merged across tile edges,
    when ``test.frames`` holds the test set's whole frames; none without them."""
    frames = Path(p.test.frames) if p.test.frames else None
    if frames is None or not (frames / "images").is_dir():
        return {}
    names = dict(enumerate(p.classes))
    try:
        found = score_frames_from_tiles(pd.read_parquet(scored / training.BOXES), frames, p, names)
    except InputError as exc:  # the model is trained and scored on tiles: never lose it to frames
        log.warning("no whole-frame scores: %s", exc)
        return {}
    return found.metrics()


def train(p: Params) -> None:
    labels = read_manifest(paths.LABELS)
    base, test_dir, val_dir = Path(p.model.base), Path(p.test.data), Path(p.val.data)
    check_model_classes(base, p.classes)
    fetch_fixed_sets(p)
    check_fixed_set(test_dir, "test.data", "test set")
    check_fixed_set(val_dir, "val.data", "validation set")
    paths.WORK.mkdir(parents=True, exist_ok=True)
    for stale in paths.WORK.glob("train-*"):  # left by a killed run (DVC's lock keeps runs apart)
        shutil.rmtree(stale, ignore_errors=True)
    with (
        tempfile.TemporaryDirectory(dir=paths.WORK, prefix="train-") as tmp,
        FilesOnlyLive(str(LIVE), dvcyaml=None, save_dvc_exp=False) as live,
    ):
        work = Path(tmp)
        weights = base
        if labels.empty:
            log.info("cycle 0: no labels yet, scoring the base model %s", base)
        else:
            tiles = labeled_tiles(labels)
            weights = fine_tune.fine_tune(
                p,
                labels["tile_id"],
                lambda t: (tiles[t], paths.LABELS / f"{t}.txt"),
                training.yolo_pairs(val_dir),
                work,
                replay=fine_tune.replay_set(p),
                on_epoch=partial(log_epoch, live),
            )
        sets = {
            name: training.folder_dataset(folder, p.classes, work / f"{name}_set")
            for name, folder in (("val", val_dir), ("test", test_dir))
        }
        # the test set's boxes are kept: the report draws the very boxes this score counts
        kept = {"test": training.scored_boxes_dir(weights, test_dir, p.model.imgsz, paths.SCORED_TEST_BOXES)}
        found = fine_tune.score(p, weights, sets, work / "score", boxes_out=kept)
        # the test set's scores unprefixed: what the report and the learning curve read
        scores = {f"val_{k}": v for k, v in found["val"].as_dict().items()} | found["test"].as_dict()
        scores |= frame_scores(p, kept["test"])
        copy_file(weights, paths.MODEL)
    cycle = int(labels["batch"].max()) if not labels.empty else 0
    write_json(
        paths.TRAIN_METRICS,
        {
            "cycle": cycle,
            "labeled_tiles": len(labels),
            "labeled_boxes": int(labels["n_boxes"].sum()),
            "labeled_tiles_with_objects": int((labels["n_boxes"] > 0).sum()),
            **scores,
        },
    )
    log.info(
        "cycle %d: map50 %.3f on %s (validation %.3f%s) with %d labeled tiles",
        cycle,
        scores["map50"],
        test_dir,
        scores["val_map50"],
        f"; whole frames {scores['frame_map50']:.3f}" if "frame_map50" in scores else "",
        len(labels),
    )


if __name__ == "__main__":
    run_stage(train)
