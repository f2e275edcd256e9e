"""One cycle of a simulated run: the product's cycle step (acorn.cycle_step) with the oracle's labels.

What is the pipeline's here is called, not copied: the candidates are chosen by
``cycle_step.candidates``, the batch by ``cycle_step.ranking`` (the strategy ``rank.*`` builds),
the model trained and scored by ``cycle_step.fine_tune`` (every label trains, the pool's fixed
validation set chooses the epoch, as val.data does in the train stage; the test set only scores).
What is a simulation's own stays here: the oracle's truth as labels, each run's seed and share of
the pool, predictions held in memory (the base model's computed once and shared by every run)
instead of the predict stage's cache, and the false-alarm rate on the test set's empty images.

Prediction is ``detection.predict_files`` with the predict stage's detector settings; a strategy
that needs no predictions (random) predicts nothing. There is no labeling backlog (the oracle
labels every batch at once), so nothing is ever "waiting".
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from acorn.cycle_step import candidates, fine_tune, ranking
from acorn.labeling import noise
from acorn.labeling.noise import PoolReference
from acorn.model import detection, training
from acorn.runtime.atomic import copy_file, write_text
from acorn.runtime.errors import InputError
from acorn.selection.strategies import Diversity, Hybrid, Random, cold_start
from acorn.simulate.config import SimulateConfig, selection_seed
from acorn.simulate.curves import false_alarm_rate
from acorn.simulate.folder import OutputFolder
from acorn.simulate.pools import Pool

log = logging.getLogger("acorn")


class OracleStep:
    """Selection, fine-tune and scores of any (strategy, seed, cycle) of one simulation."""

    def __init__(self, pool: Pool, config: SimulateConfig, folder: OutputFolder) -> None:
        self.pool, self.config, self.folder = pool, config, folder
        self.p = config.params
        self.ids = pool.items["tile_id"].astype(str).tolist()
        self.items = pool.items.assign(tile_id=self.ids).set_index("tile_id", drop=False).rename_axis(None)
        base = Path(config.base)
        if not config.cold and not base.is_file():
            raise InputError(f"{base}: base model missing (model.base: a .pt, or a .yaml for a cold start)")
        self._base_predictions: detection.Detections | None = None
        self.work = folder.out / "work"  # replaced by a scratch folder inside it while running
        self._replay: list[tuple[Path, Path]] = []  # set once the run starts (replay_set)
        self._val = [
            (Path(i), Path(t) if t else None)
            for i, t in zip(pool.val["image"], pool.val["truth"], strict=True)
        ]
        self._test_yaml = self.work / "test" / "data.yaml"
        self._val_yaml = self.work / "val" / "data.yaml"
        # labeling.noise: the oracle labels as a careless labeler would (acorn.labeling.noise), each
        # item's errors the ones `dvc repro`'s oracle makes for the same id and noise seed
        self._noise_reference = (
            PoolReference.from_files([Path(f) for f in pool.items["truth"] if f], len(pool.items))
            if noise.active(self.p.labeling.noise)
            else None
        )

    def available(self, seed: int) -> list[str]:
        """The pool items run ``seed`` may choose from, in pool order: those of a seeded share
        (``pool_share``) of the pool's frames (``frame_id``; each item is its own frame without
        one), the same for every strategy of the seed, so the runs stay paired while each seed
        sees another pool. Without it every seed of a deterministic strategy picks the same first
        batch, and the seeds vary the training noise only."""
        if self.config.pool_share >= 1.0:
            return self.ids
        frames = self.items["frame_id"].astype(str) if "frame_id" in self.items else self.items["tile_id"]
        unique = np.sort(frames.unique())
        keep = np.random.default_rng(seed).permutation(unique)[
            : max(1, round(self.config.pool_share * len(unique)))
        ]
        return self.items.loc[frames.isin(keep), "tile_id"].tolist()

    @contextlib.contextmanager
    def scratch(self) -> Iterator[None]:
        """A scratch folder for training and evaluation, the replay close-ups and the test set.
        Those of earlier runs are stale (the caller holds the folder's lock): a SIGKILL left them."""
        out = self.folder.out
        (out / "work").mkdir(parents=True, exist_ok=True)
        write_text(out / ".gitignore", "models/\nwork/\n")
        for stale in (out / "work").glob("tmp*"):
            log.info("removing %s, the scratch folder of a run that was killed", stale)
            shutil.rmtree(stale, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=out / "work") as tmp:
            self.work = Path(tmp)
            self._replay = fine_tune.replay_set(self.p)
            test = [
                (Path(image), self._truth_file(truth))  # the test set's truth: never noisy
                for image, truth in zip(self.pool.test["image"], self.pool.test["truth"], strict=True)
            ]
            self._test_yaml = training.write_dataset(self.work / "test", self.pool.classes, test, test)
            self._val_yaml = training.write_dataset(
                self.work / "val", self.pool.classes, self._val, self._val
            )
            yield

    # -- selection ----------------------------------------------------------------------------

    def select(
        self, name: str, seed: int, cycle: int, labeled: list[str], unlabeled: list[str]
    ) -> tuple[list[str], list[str] | None]:
        """The strategy's batch from the previous model's predictions (cycle_step.ranking): boxes
        and embeddings of the unlabeled items, and the embeddings of the labeled ones (by the same
        model) so that diversity and hybrid know what is already covered.

        With ``predict.candidates`` the batch is chosen among this cycle's candidates only
        (cycle_step.candidates), and the second value is what the next cycle carries over; None
        without candidates.
        """
        strategy = cold_start(None) if cycle == 1 and self.config.cold else self.config.strategy(name)
        size = self.p.predict.candidates
        carried: list[str] | None = [] if size else None
        boxes = embeddings = covered = None
        if not isinstance(strategy, Random):  # random ignores predictions: skip the inference
            uses_labeled = isinstance(strategy, Diversity | Hybrid)  # their k-center starts from them
            if size:
                unlabeled = self._candidates(name, seed, cycle, unlabeled)
                wanted = unlabeled + (labeled if uses_labeled else [])
            else:
                wanted = self.ids  # the whole pool, as the predict stage without candidates
            found = self._predictions(name, seed, cycle - 1, labeled, wanted)
            by_id = found.tiles.set_index("tile_id")
            boxes, embeddings = found.boxes, np.stack(by_id["embedding"].loc[unlabeled].to_numpy())
            if size:
                boxes = boxes[boxes["tile_id"].isin(unlabeled)]  # rank sees the candidates' boxes only
                predicted = by_id.loc[unlabeled, ["max_confidence"]].reset_index()
                carried = candidates.carried_over(self.p, predicted)
            if labeled and (uses_labeled or not size):
                covered = np.stack(by_id["embedding"].loc[labeled].to_numpy())
        batch = ranking.select_batch(
            self.p,
            strategy,
            boxes,
            self.items.loc[unlabeled].reset_index(drop=True),
            selection_seed(seed, cycle),
            embeddings=embeddings,
            labeled_embeddings=covered,
        )
        return batch, carried

    def _candidates(self, name: str, seed: int, cycle: int, unlabeled: list[str]) -> list[str]:
        """This cycle's candidates (cycle_step.candidates), in pool order: a stratified sample
        seeded with ``selection_seed`` plus what the last cycle carried."""
        chosen = candidates.choose(
            self.p,
            self.items.loc[unlabeled].reset_index(drop=True),
            selection_seed(seed, cycle),
            carried=self.folder.read_carried(name, seed, cycle),
        )
        keep = set(chosen["tile_id"])
        return [t for t in unlabeled if t in keep]

    def _predictions(
        self, name: str, seed: int, cycle: int, labeled: list[str], ids: list[str]
    ) -> detection.Detections:
        """The model after ``cycle`` on ``ids`` (the whole pool without candidates: labeled items
        too, for their embeddings); the base model's are computed once per item and shared by
        every run."""
        if cycle == 0:
            return self._base_on(ids)
        weights = self.folder.model_path(name, seed, cycle)
        if not weights.is_file():  # resumed from a folder whose model files were removed
            log.info("%s seed %d: retraining the cycle %d model (its file is missing)", name, seed, cycle)
            self.train(labeled, seed, weights)
        return self.predict(weights, self.items.loc[ids, "image"], ids)

    def _base_on(self, ids: list[str]) -> detection.Detections:
        """The base model's predictions, holding at least ``ids``: only items never predicted by it
        are predicted (with candidates each seed's sample adds some)."""
        known = self._base_predictions
        done = set() if known is None else set(known.tiles["tile_id"])
        missing = [t for t in ids if t not in done]
        if missing:
            new = self.predict(Path(self.config.base), self.items.loc[missing, "image"], missing)
            if known is not None:
                new = detection.Detections(
                    boxes=pd.concat([known.boxes, new.boxes], ignore_index=True),
                    tiles=pd.concat([known.tiles, new.tiles], ignore_index=True),
                )
            self._base_predictions = new
        assert self._base_predictions is not None
        return self._base_predictions

    def predict(self, weights: Path, images: Sequence[str], ids: Sequence[str]) -> detection.Detections:
        """Boxes and per-item embeddings of ``weights`` with the predict stage's detector settings."""
        detector = detection.Detector(detection.DetectorConfig.from_params(self.p, weights))
        parts = list(detection.predict_files(detector, [Path(i) for i in images], list(ids)))
        return detection.Detections(
            boxes=pd.concat([d.boxes for d in parts], ignore_index=True),
            tiles=pd.concat([d.tiles for d in parts], ignore_index=True),
        )

    # -- the fine-tune and its scores ---------------------------------------------------------

    def train(
        self,
        ids: list[str],
        seed: int,
        keep: Path,
        epochs: int | None = None,
        patience: int | None = None,
        resume_in: Path | None = None,
    ) -> Path:
        """Fine-tune from the base on ``ids`` with run ``seed`` (cycle_step.fine_tune: a fresh start
        every cycle, as the train stage); the weights go to ``keep`` and replace the run's earlier
        models, the scratch is removed. ``epochs``, ``patience``: None for ``train.*``'s.
        ``resume_in``: a folder that outlives a kill, where a stopped training goes on (the
        reference, hours on a CPU); the caller removes it once the result is stored."""
        work = resume_in or Path(tempfile.mkdtemp(dir=self.work, prefix="train-"))
        trained = fine_tune.fine_tune(
            self.p,
            ids,
            lambda t: (Path(self.items.at[t, "image"]), self._label(t)),
            self._val,
            work,
            replay=self._replay,
            classes=self.pool.classes,
            config=fine_tune.train_config(self.p, seed=seed, epochs=epochs, patience=patience),
            resume=resume_in is not None,
        )
        copy_file(trained, keep)
        if resume_in is None:
            shutil.rmtree(work, ignore_errors=True)
        prefix = keep.name.rsplit("-c", 1)[0]
        for old in keep.parent.glob(f"{prefix}-c*.pt"):
            if old != keep:
                old.unlink()
        return keep

    def evaluate(self, weights: Path) -> dict[str, float]:
        """Test map50 and map50-95 (cycle_step.fine_tune.score), the false-alarm rate on the test
        set's empty images at the decision threshold (``rank.threshold``, the one pre-annotations
        are shown at), and the validation map50 (what the train stage's champion gate reads, and
        what a choice between strategies is made on)."""
        work = Path(tempfile.mkdtemp(dir=self.work, prefix="eval-"))
        scores = fine_tune.score(self.p, weights, {"test": self._test_yaml, "val": self._val_yaml}, work)
        shutil.rmtree(work, ignore_errors=True)
        empty = self.pool.test.loc[self.pool.test["objects"] == 0, "image"].tolist()
        alarms = float("nan")
        if empty:
            found = self.predict(weights, empty, empty)
            alarms = false_alarm_rate(found.boxes, empty, self.p.rank.threshold)
        test = scores["test"]
        return {
            "map50": test.map50,
            "map50_95": test.map50_95,
            "false_alarm_rate": alarms,
            "val_map50": scores["val"].map50,
        }

    def _label(self, tile_id: str) -> Path:
        """An item's label file as the oracle answers it: its truth or, with ``labeling.noise``, the
        noisy answer, written once."""
        truth = self.items.at[tile_id, "truth"]
        if self._noise_reference is not None:
            image = Path(self.items.at[tile_id, "image"])
            answer = self.work / "noisy" / f"{image.stem}.txt"  # ultralytics pairs labels by stem
            if not answer.exists():
                with Image.open(image) as im:
                    width, height = im.size
                text, _ = noise.noisy_label_text(
                    tile_id,
                    Path(truth) if truth else None,
                    width,
                    height,
                    self.p.labeling.noise,
                    self._noise_reference,
                )
                write_text(answer, text)
            return answer
        return self._truth_file(truth)

    def _truth_file(self, truth: str) -> Path:
        """A truth label file; one shared empty file stands for every image without objects."""
        if truth:
            return Path(truth)
        empty = self.work / "empty.txt"
        empty.touch()
        return empty
