"""``acorn simulate``: learning curves per query strategy, measured with an oracle instead of assumed.

Whether uncertainty sampling beats random labeling on *your* data is an empirical question: the
answer depends on the pool, the base model and the budget. This module answers it the only honest
way, by running the loop: every cycle the current model predicts on the unlabeled pool, a strategy
picks ``budget`` items, the oracle labels them from ground truth, a model is fine-tuned from the
base on all labels so far (fixed epochs, the same for every strategy) and scored on a fixed test
set. Several seeds give the spread, so a difference smaller than the noise is visible as such.

The loop reuses the pipeline's own pieces (``Detector``, ``get_strategy``, ``training``) with the
settings from params.yaml, so the benchmark measures what ``dvc repro`` would do. Results are
written after every cycle and a re-run resumes: finished rows are skipped and the labeled sets
are rebuilt by replaying the recorded selections, never re-selected.

The pure parts (replay, area under the curve, labels to reach a target, summaries, tables) are
plain functions over DataFrames; the driver around them does the training.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from acorn.atomic import atomic_path, copy_file, write_csv, write_json, write_text
from acorn.tiling import IMAGE_SUFFIXES, frame_id_for
from acorn.training import TrainConfig, split_labeled

if TYPE_CHECKING:
    from tqdm import tqdm

    from acorn.strategies import Strategy

log = logging.getLogger("acorn")

DEFAULT_STRATEGIES = ("random", "least_confidence", "entropy", "fn_aware", "hybrid")
CURVE_COLUMNS = ["strategy", "seed", "cycle", "labeled_tiles", "map50", "map50_95"]
SELECTION_COLUMNS = ["strategy", "seed", "cycle", "rank", "tile_id"]
# Files of one output folder; models/ and work/ are resume state and scratch, not results.
CURVES, SELECTIONS, SUMMARY, STRATEGY_TABLE = "curves.csv", "selections.csv", "summary.csv", "strategies.csv"
CONFIG, REFERENCE, PLOT, REPORT = "config.json", "reference.json", "learning_curve.png", "report.md"


# ---------------------------------------------------------------------------------------------
# Pure logic: replaying selections, curve metrics, summaries


@dataclass
class Replay:
    """One (strategy, seed) run as recorded: finished cycles and the batch picked in each cycle.

    A batch may exist without its row (the run was stopped between selecting and evaluating):
    the resumed run then trains on that recorded batch instead of selecting again. The running
    simulation adds each new batch to ``batches``, so later cycles see every label so far.
    """

    done: frozenset[int]
    batches: dict[int, list[str]]

    def labeled_before(self, cycle: int) -> list[str]:
        """Every item labeled in the cycles before ``cycle``, in selection order."""
        return [t for c in sorted(self.batches) if c < cycle for t in self.batches[c]]


def replay_run(curves: pd.DataFrame, selections: pd.DataFrame, strategy: str, seed: int) -> Replay:
    """Rebuild a run's state from its rows and its recorded selections, checking they agree.

    A hand-edited or mixed-up output folder must fail loudly: a labeled set that does not match its
    row would silently put a wrong point on the learning curve.
    """
    rows = curves[(curves["strategy"] == strategy) & (curves["seed"] == seed)]
    picks = selections[(selections["strategy"] == strategy) & (selections["seed"] == seed)]
    picks = picks.sort_values(["cycle", "rank"])
    batches = {int(c): g["tile_id"].astype(str).tolist() for c, g in picks.groupby("cycle", sort=True)}
    where = f"{strategy} seed {seed}"
    if sorted(batches) != list(range(1, len(batches) + 1)):
        raise ValueError(
            f"{SELECTIONS}: {where} has batches for cycles {sorted(batches)}, expected 1, 2, ..."
        )
    every = [t for b in batches.values() for t in b]
    if len(every) != len(set(every)):
        dup = pd.Series(every)[pd.Series(every).duplicated()].iloc[0]
        raise ValueError(f"{SELECTIONS}: {where} selects {dup!r} twice")
    if rows["cycle"].duplicated().any():
        raise ValueError(f"{CURVES}: {where} has a cycle twice")
    replay = Replay(done=frozenset(int(c) for c in rows["cycle"]), batches=batches)
    for cycle, labeled in zip(rows["cycle"], rows["labeled_tiles"], strict=True):
        if cycle and cycle not in batches:
            raise ValueError(f"{CURVES}: {where} cycle {cycle} has a row but no batch in {SELECTIONS}")
        if len(replay.labeled_before(int(cycle) + 1)) != labeled:
            raise ValueError(
                f"{CURVES}: {where} cycle {cycle} says {labeled} labeled tiles; {SELECTIONS} replays "
                f"{len(replay.labeled_before(int(cycle) + 1))}"
            )
    return replay


def area_under_curve(labeled: Sequence[float], map50: Sequence[float]) -> float:
    """Trapezoid area under map50 over labeled tiles, divided by the range of labeled tiles.

    Normalising makes it the curve's mean map50 over the labeling budget (in [0, 1]), so one number
    ranks strategies by how early they get good, not only where they end. One point: its map50.
    """
    x = np.asarray(labeled, dtype=np.float64)
    y = np.asarray(map50, dtype=np.float64)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"need as many map50 values as labeled counts (> 0); got {len(x)} and {len(y)}")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    width = x[-1] - x[0]
    return float(y.mean()) if width == 0 else float(np.trapezoid(y, x) / width)


def labels_to_reach(labeled: Sequence[float], map50: Sequence[float], target: float) -> int | None:
    """The fewest labeled tiles at which map50 reached ``target``; None when it never did.

    No interpolation between cycles: labels come in batches, so the honest answer is the batch
    boundary at which the target was first met.
    """
    for x, y in sorted(zip(labeled, map50, strict=True)):
        if y >= target:
            return int(x)
    return None


def summarize_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Per strategy and cycle: labeled tiles and map50 mean, std (over seeds), min and max."""
    grouped = curves.groupby(["strategy", "cycle"], sort=False)
    summary = grouped.agg(
        labeled_tiles=("labeled_tiles", "max"),
        seeds=("seed", "nunique"),
        map50_mean=("map50", "mean"),
        map50_std=("map50", "std"),
        map50_min=("map50", "min"),
        map50_max=("map50", "max"),
        map50_95_mean=("map50_95", "mean"),
    ).reset_index()
    return summary.round(4)


def strategy_table(curves: pd.DataFrame, target_map50: float | None) -> pd.DataFrame:
    """Per strategy: area under the learning curve and labels to reach ``target_map50`` over seeds.

    ``reached`` counts the seeds that got there; the label statistics are over those seeds only, so
    read them together with ``reached`` (they are NaN when no seed did, or without a target).
    """
    rows = []
    for (strategy, seed), run in curves.groupby(["strategy", "seed"], sort=False):
        reach = None
        if target_map50 is not None:
            reach = labels_to_reach(run["labeled_tiles"], run["map50"], target_map50)
        rows.append(
            {
                "strategy": strategy,
                "seed": seed,
                "auc": area_under_curve(run["labeled_tiles"], run["map50"]),
                "labels": np.nan if reach is None else float(reach),
            }
        )
    per_run = pd.DataFrame(rows, columns=["strategy", "seed", "auc", "labels"])
    table = (
        per_run.groupby("strategy", sort=False)
        .agg(
            seeds=("seed", "nunique"),
            auc_mean=("auc", "mean"),
            auc_std=("auc", "std"),
            auc_min=("auc", "min"),
            auc_max=("auc", "max"),
            reached=("labels", "count"),
            labels_mean=("labels", "mean"),
            labels_min=("labels", "min"),
            labels_max=("labels", "max"),
        )
        .reset_index()
    )
    return table.round(4)


def format_strategy_table(table: pd.DataFrame, has_target: bool) -> pd.DataFrame:
    """Human-readable cells: AUC as mean ± std [min, max], labels to target or 'not reached'."""

    def auc(r: pd.Series) -> str:
        std = "" if pd.isna(r["auc_std"]) else f" ± {r['auc_std']:.3f}"
        return f"{r['auc_mean']:.3f}{std} [{r['auc_min']:.3f}, {r['auc_max']:.3f}]"

    def labels(r: pd.Series) -> str:
        if not has_target:
            return "n/a (reference map50 is 0)"
        if r["reached"] == 0:
            return "not reached"
        text = f"{r['labels_mean']:.0f} [{r['labels_min']:.0f}, {r['labels_max']:.0f}]"
        return text if r["reached"] == r["seeds"] else f"{text} in {r['reached']}/{r['seeds']} seeds"

    return pd.DataFrame(
        {
            "strategy": table["strategy"],
            "seeds": table["seeds"].astype(str),
            "AUC map50 mean ± std [min, max]": table.apply(auc, axis=1).astype(str),
            "labels to target mean [min, max]": table.apply(labels, axis=1).astype(str),
        }
    )


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-markdown table (floats to 3 decimals), for report.md and pasting into a README."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.3f}"
        return str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Pools: what the oracle knows


@dataclass(frozen=True)
class Pool:
    """Pool items (``tile_id``, ``image``, ``truth`` paths, metadata such as ``condition``), a test set
    (``image``, ``truth``) and class names. An empty ``truth`` is an image without objects."""

    items: pd.DataFrame
    test: pd.DataFrame
    classes: list[str]
    description: dict

    def __post_init__(self) -> None:
        if self.items.empty:
            raise ValueError(f"{self.description.get('pool')}: the pool has no items with ground truth")
        if self.test.empty:
            raise ValueError(f"{self.description.get('test')}: the test set is empty")
        if not self.items["tile_id"].is_unique:
            raise ValueError(f"{self.description.get('pool')}: item ids repeat")


def _yolo_folder(folder: Path) -> pd.DataFrame:
    """Every image of a YOLO folder with its label file ('' when there is none: no objects)."""
    images_dir = folder / "images"
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: no images folder (expected YOLO layout: images/, labels/)")
    images = sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"{images_dir}: no images")
    names = pd.Series([p.name for p in images])
    if names.duplicated().any():  # the training folders are flat: one name, one image
        raise ValueError(f"{images_dir}: two images are called {names[names.duplicated()].iloc[0]!r}")
    truth = [folder / "labels" / p.relative_to(images_dir).with_suffix(".txt") for p in images]
    return pd.DataFrame(
        {
            "tile_id": [frame_id_for(p, images_dir) for p in images],
            "image": [str(p) for p in images],
            "truth": [str(t) if t.is_file() else "" for t in truth],
        }
    )


def _folder_classes(folder: Path, default: list[str]) -> list[str]:
    from acorn.formats import read_classes

    names = folder / "classes.txt"
    return read_classes(names) if names.is_file() else default


def tiled_pool(tiles_dir: Path, test_dir: Path, classes: list[str]) -> Pool:
    """The tile stage's output as a pool: tiles whose frame had labels, truth from ``truth/``."""
    manifest_path = tiles_dir / "manifest.parquet"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path}: no tile manifest (run the tile stage: `dvc repro tile`)")
    manifest = pd.read_parquet(manifest_path)
    known = manifest[manifest["n_truth"] >= 0].reset_index(drop=True)
    items = known.drop(columns=["image"]).assign(
        image=[str(tiles_dir / i) for i in known["image"]],
        truth=[str(tiles_dir / "truth" / f"{t}.txt") for t in known["tile_id"]],
    )
    test = _yolo_folder(test_dir)
    return Pool(
        items=items,
        test=test[["image", "truth"]],
        classes=classes,
        description={
            "pool": str(tiles_dir),
            "classes": classes,
            "test": str(test_dir),
            "items": len(items),
            "test_items": len(test),
        },
    )


def folder_pool(folder: Path, classes: list[str], test_fraction: float, test_dir: Path | None = None) -> Pool:
    """A YOLO folder as a pool: each image is an item; the test set is ``test_dir`` if given, else a
    stable ``test_fraction`` of the images (hash of the image id, as ``training.is_validation``)."""
    from acorn.training import is_validation

    items = _yolo_folder(folder)
    classes = _folder_classes(folder, classes)
    description = {"pool": str(folder), "classes": classes}
    if test_dir is not None:
        test = _yolo_folder(test_dir)
        description["test"] = str(test_dir)
    else:
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test fraction must be in (0, 1); got {test_fraction}")
        held = is_validation(items["tile_id"], test_fraction)
        test, items = items[held], items[~held].reset_index(drop=True)
        description["test"] = f"{folder} (held out: {test_fraction:g})"
    description |= {"items": len(items), "test_items": len(test)}
    return Pool(items=items, test=test[["image", "truth"]], classes=classes, description=description)


def open_pool(path: Path, classes: list[str], test_dir: Path | None, test_fraction: float) -> Pool:
    """A tiled pool when ``path`` holds manifest.parquet (test set required), else a YOLO folder."""
    if (path / "manifest.parquet").is_file():
        if test_dir is None:
            raise ValueError(f"{path} is a tiled pool: give its test set (YOLO folder)")
        return tiled_pool(path, test_dir, classes)
    return folder_pool(path, classes, test_fraction, test_dir)


# ---------------------------------------------------------------------------------------------
# The simulation


@dataclass(frozen=True)
class SimulateConfig:
    """Everything a simulation depends on. All but the first block must stay fixed to resume."""

    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    seeds: int = 3
    cycles: int = 5
    target: float = 0.95  # fraction of the whole-pool model's map50
    full_epochs: int | None = None  # whole-pool reference; None: the per-cycle epochs
    # fixed for a given output folder
    base: str = "models/base.pt"  # a .pt to fine-tune, or a .yaml: cold start from random init
    budget: int = 50
    train: TrainConfig = field(default_factory=TrainConfig)
    val_fraction: float = 0.2
    replay_data: str = ""  # as train.replay_data: the base domain mixed into every fine-tune
    replay_images: int = 0
    conf_floor: float = 0.01
    iou: float = 0.6
    max_det: int = 100
    predict_batch: int = 8
    aggregate: str = "min"
    threshold: float = 0.25
    balance_by: str = ""

    def __post_init__(self) -> None:
        for name in ("seeds", "cycles", "budget"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}")
        if not self.strategies or len(set(self.strategies)) != len(self.strategies):
            raise ValueError(f"strategies must be a non-empty list without repeats; got {self.strategies}")
        for name in self.strategies:
            self.strategy(name)
        if not 0.0 < self.target <= 1.0:
            raise ValueError(f"target must be in (0, 1]; got {self.target}")

    @property
    def cold(self) -> bool:
        """No trained base: nothing predicts before the first batch, which ``cold_start`` picks."""
        return Path(self.base).suffix in (".yaml", ".yml")

    def strategy(self, name: str) -> Strategy:
        """The strategy built exactly as the rank stage builds it (acorn.queue).

        ``name:aggregate`` (e.g. ``least_confidence:min``) overrides the shared ``aggregate`` for
        one entry, so one simulation can compare strategies at the reductions each is meant for.
        """
        from acorn.strategies import STRATEGIES, get_strategy

        base, _, aggregate = name.partition(":")
        if (
            aggregate
            and base in STRATEGIES
            and base != "hybrid"
            and not hasattr(STRATEGIES[base], "aggregate")
        ):
            raise ValueError(f"strategy {name!r}: {base} has no aggregate to set")
        return get_strategy(
            base, aggregate=aggregate or self.aggregate, threshold=self.threshold, conf_floor=self.conf_floor
        )

    def identity(self) -> dict:
        """The settings every row of one output folder shares (resume refuses a change)."""
        fixed = dataclasses.asdict(self)
        for name in ("strategies", "seeds", "cycles", "target", "full_epochs"):
            fixed.pop(name)
        fixed["train"].pop("seed")  # each run trains with its own seed
        return fixed


@dataclass
class Result:
    """What a simulation produced (also written to the output folder)."""

    curves: pd.DataFrame
    summary: pd.DataFrame
    strategies: pd.DataFrame
    reference: dict
    out: Path


def simulate(pool: Pool, config: SimulateConfig, out: Path) -> Result:
    """Run (or resume) every (strategy, seed) run for ``config.cycles`` cycles, then summarise."""
    return _Simulation(pool, config, Path(out)).run()


class _Simulation:
    def __init__(self, pool: Pool, config: SimulateConfig, out: Path) -> None:
        self.pool, self.config, self.out = pool, config, out
        self.ids = pool.items["tile_id"].astype(str).tolist()
        self.items = pool.items.assign(tile_id=self.ids).set_index("tile_id", drop=False).rename_axis(None)
        base = Path(config.base)
        if not config.cold and not base.is_file():
            raise FileNotFoundError(f"{base}: base model missing (a .pt, or a .yaml for a cold start)")
        identity = {
            "pool": pool.description,
            "base_sha1": _sha1(base) if base.is_file() else "",
            **config.identity(),
        }
        self.identity = json.loads(json.dumps(identity))  # as it reads back from config.json
        self.curves = _read_csv(out / CURVES, CURVE_COLUMNS)
        self.selections = _read_csv(out / SELECTIONS, SELECTION_COLUMNS)
        self._base_predictions: tuple[pd.DataFrame, pd.DataFrame] | None = None
        self.work = out / "work"  # replaced by a scratch folder inside it while running
        self.test_yaml = self.work / "test" / "data.yaml"

    def run(self) -> Result:
        from tqdm import tqdm

        self._check_config()
        c = self.config
        runs = [(s, seed) for s in c.strategies for seed in range(c.seeds)]
        replays = {run: replay_run(self.curves, self.selections, *run) for run in runs}
        todo = sum(1 for run in runs for cycle in range(1, c.cycles + 1) if cycle not in replays[run].done)
        (self.out / "work").mkdir(parents=True, exist_ok=True)
        write_text(self.out / ".gitignore", "models/\nwork/\n")
        with (
            tempfile.TemporaryDirectory(dir=self.out / "work") as tmp,
            tqdm(total=todo, desc="simulate", unit="cycle") as bar,
        ):
            self.work = Path(tmp)
            self.test_yaml = self._dataset_yaml(self.pool.test, self.pool.test, self.work / "test")
            for run in runs:
                self._run(*run, replays[run], bar)
            reference = self._reference(bar)
        return self._summarise(reference)

    # -- one (strategy, seed) run --------------------------------------------------------------

    def _run(self, name: str, seed: int, replay: Replay, bar: tqdm) -> None:
        c = self.config
        if not c.cold and 0 not in replay.done:
            self._append_row(name, seed, 0, 0, self._base_metrics())
        for cycle in range(1, c.cycles + 1):
            if cycle in replay.done:
                continue
            labeled = replay.labeled_before(cycle)
            taken = set(labeled)
            unlabeled = [t for t in self.ids if t not in taken]
            if not unlabeled:
                log.info("%s seed %d: the pool is exhausted after cycle %d", name, seed, cycle - 1)
                return
            bar.set_description(f"{name} seed {seed} cycle {cycle}")
            if cycle not in replay.batches:
                bar.set_postfix_str("predict + select")
                replay.batches[cycle] = self._select(name, seed, cycle, labeled, unlabeled)
                self._record_selection(name, seed, cycle, replay.batches[cycle])
            labeled = labeled + replay.batches[cycle]
            bar.set_postfix_str(f"train on {len(labeled)}")
            weights = self._train_model(labeled, seed, c.train.epochs, self._model_path(name, seed, cycle))
            bar.set_postfix_str("evaluate")
            self._append_row(name, seed, cycle, len(labeled), self._evaluate(weights))
            bar.update()

    def _select(
        self, name: str, seed: int, cycle: int, labeled: list[str], unlabeled: list[str]
    ) -> list[str]:
        """The strategy's batch from the previous model's predictions on the unlabeled items."""
        from acorn.strategies import Random, cold_start

        c = self.config
        strategy = c.strategy(name)
        tiles = self.items.loc[unlabeled].reset_index(drop=True)
        boxes = None
        if cycle == 1 and c.cold:
            strategy = cold_start(None)
        elif not isinstance(strategy, Random):  # random ignores predictions: skip the inference
            boxes, predicted = self._predictions(name, seed, cycle - 1, labeled, unlabeled)
            tiles = tiles.merge(predicted[["tile_id", "embedding"]], on="tile_id", how="left")
        embeddings = np.stack(tiles["embedding"].to_numpy()) if "embedding" in tiles else None
        groups = None
        if c.balance_by and c.balance_by in tiles:
            groups = tiles.set_index("tile_id")[c.balance_by]
        return strategy.select(
            boxes, tiles, c.budget, seed * 1000 + cycle, groups=groups, embeddings=embeddings
        )

    def _predictions(
        self, name: str, seed: int, cycle: int, labeled: list[str], unlabeled: list[str]
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(boxes, tiles) of the model after ``cycle`` on ``unlabeled``; the base model's are cached."""
        if cycle == 0:
            if self._base_predictions is None:
                self._base_predictions = self._predict(Path(self.config.base), self.ids)
            boxes, tiles = self._base_predictions
            keep = set(unlabeled)
            return boxes[boxes["tile_id"].isin(keep)], tiles[tiles["tile_id"].isin(keep)]
        weights = self._model_path(name, seed, cycle)
        if not weights.is_file():  # resumed from a folder whose model files were removed
            log.info("%s seed %d: retraining the cycle %d model (its file is missing)", name, seed, cycle)
            self._train_model(labeled, seed, self.config.train.epochs, weights)
        return self._predict(weights, unlabeled)

    def _predict(self, weights: Path, ids: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
        from acorn.detection import Detector, DetectorConfig, load_images

        c = self.config
        detector = Detector(
            DetectorConfig(
                weights=str(weights),
                imgsz=c.train.imgsz,
                device=c.train.device,
                conf_floor=c.conf_floor,
                iou=c.iou,
                max_det=c.max_det,
                batch=c.predict_batch,
            )
        )
        boxes, tiles = [], []
        chunk = max(c.predict_batch, 64)  # images held in memory at once, as the predict stage does
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            found = detector.predict(load_images([Path(p) for p in self.items.loc[part, "image"]]), part)
            boxes.append(found.boxes)
            tiles.append(found.tiles)
        return pd.concat(boxes, ignore_index=True), pd.concat(tiles, ignore_index=True)

    # -- training, evaluation, the whole-pool reference ------------------------------------------

    def _train_model(self, ids: list[str], seed: int, epochs: int, keep: Path) -> Path:
        """Fine-tune from the base on ``ids`` (a fresh start every cycle, as the train stage does);
        the best weights go to ``keep`` and replace the run's earlier models, the scratch is removed."""
        from acorn import training

        train_ids, val_ids = split_labeled(ids, self.config.val_fraction)
        work = Path(tempfile.mkdtemp(dir=self.work, prefix="train-"))
        data = self._dataset_yaml(self.items.loc[train_ids], self.items.loc[val_ids], work / "data")
        config = dataclasses.replace(self.config.train, seed=seed, epochs=epochs)
        copy_file(training.train(self.config.base, data, config, work), keep)
        shutil.rmtree(work, ignore_errors=True)
        prefix = keep.name.rsplit("-c", 1)[0]
        for old in keep.parent.glob(f"{prefix}-c*.pt"):
            if old != keep:
                old.unlink()
        return keep

    def _evaluate(self, weights: Path) -> dict[str, float]:
        from acorn import training

        work = Path(tempfile.mkdtemp(dir=self.work, prefix="eval-"))
        c = self.config.train
        metrics = training.evaluate(weights, self.test_yaml, c.imgsz, work, device=c.device).as_dict()
        shutil.rmtree(work, ignore_errors=True)
        return {"map50": metrics["map50"], "map50_95": metrics["map50_95"]}

    def _base_metrics(self) -> dict[str, float]:
        """The base model on the test set: the cycle-0 point of every run, evaluated once."""
        zero = self.curves[self.curves["cycle"] == 0]
        if not zero.empty:
            return {"map50": float(zero["map50"].iloc[0]), "map50_95": float(zero["map50_95"].iloc[0])}
        return self._evaluate(Path(self.config.base))

    def _reference(self, bar: tqdm) -> dict:
        """The whole pool labeled and trained once (seed 0): the map50 the curves are measured against."""
        c = self.config
        epochs = c.full_epochs or c.train.epochs
        path = self.out / REFERENCE
        if path.is_file():
            stored = json.loads(path.read_text(encoding="utf-8"))
            if stored.get("epochs") == epochs:
                return stored
        bar.set_description("whole-pool reference")
        bar.set_postfix_str(f"train on {len(self.ids)} for {epochs} epochs")
        metrics = self._evaluate(self._train_model(self.ids, 0, epochs, self.work / "reference-c0.pt"))
        reference = {"labeled_tiles": len(self.ids), "epochs": epochs, "seed": 0, **metrics}
        write_json(path, reference)
        return reference

    def _dataset_yaml(self, train: pd.DataFrame, val: pd.DataFrame, workdir: Path) -> Path:
        from acorn.training import replay_pairs, write_dataset

        empty = self.work / "empty.txt"  # the label of every image without objects
        empty.touch()

        def pairs(df: pd.DataFrame) -> list[tuple[Path, Path]]:
            return [(Path(i), Path(t) if t else empty) for i, t in zip(df["image"], df["truth"], strict=True)]

        replay = replay_pairs(Path(self.config.replay_data), self.config.replay_images)
        return write_dataset(workdir, self.pool.classes, pairs(train) + replay, pairs(val))

    # -- output files --------------------------------------------------------------------------

    def _check_config(self) -> None:
        path = self.out / CONFIG
        if path.is_file():
            stored = json.loads(path.read_text(encoding="utf-8"))
            if stored != self.identity:
                changed = sorted(
                    k for k in self.identity.keys() | stored.keys() if stored.get(k) != self.identity.get(k)
                )
                raise ValueError(
                    f"{path}: this folder holds results for other settings ({', '.join(changed)} differ); "
                    "choose another --out, or delete the folder to start over"
                )
        else:
            write_json(path, self.identity)

    def _model_path(self, name: str, seed: int, cycle: int) -> Path:
        """Where a run keeps its latest model: the next cycle (also after a resume) predicts with it."""
        return self.out / "models" / f"{name.replace(':', '-')}-s{seed}-c{cycle}.pt"

    def _record_selection(self, name: str, seed: int, cycle: int, batch: list[str]) -> None:
        new = pd.DataFrame(
            {
                "strategy": name,
                "seed": seed,
                "cycle": cycle,
                "rank": range(1, len(batch) + 1),
                "tile_id": batch,
            },
            columns=SELECTION_COLUMNS,
        )
        self.selections = _sorted(pd.concat([self.selections, new], ignore_index=True), "rank")
        write_csv(self.selections, self.out / SELECTIONS)

    def _append_row(self, name: str, seed: int, cycle: int, labeled: int, metrics: dict[str, float]) -> None:
        row = pd.DataFrame(
            [{"strategy": name, "seed": seed, "cycle": cycle, "labeled_tiles": labeled, **metrics}]
        )
        self.curves = _sorted(pd.concat([self.curves, row[CURVE_COLUMNS]], ignore_index=True))
        write_csv(self.curves, self.out / CURVES)

    def _summarise(self, reference: dict) -> Result:
        c = self.config
        curves = self.curves[
            self.curves["strategy"].isin(c.strategies)
            & (self.curves["seed"] < c.seeds)
            & (self.curves["cycle"] <= c.cycles)
        ]
        order = {s: i for i, s in enumerate(c.strategies)}
        curves = curves.sort_values(
            ["strategy", "seed", "cycle"], key=lambda s: s.map(order) if s.name == "strategy" else s
        )
        target = c.target * reference["map50"] if reference["map50"] > 0 else None
        summary = summarize_curves(curves)
        table = strategy_table(curves, target)
        write_csv(summary, self.out / SUMMARY)
        write_csv(table, self.out / STRATEGY_TABLE)
        plot_curves(summary, reference, target, self.out / PLOT, self._title())
        write_text(self.out / REPORT, self._report(summary, table, reference, target))
        return Result(
            curves=curves.reset_index(drop=True),
            summary=summary,
            strategies=table,
            reference=reference,
            out=self.out,
        )

    def _title(self) -> str:
        c = self.config
        return (
            f"{self.pool.description['pool']}: {self.pool.description['items']} items, budget {c.budget}/cycle, "
            f"{c.train.epochs} epochs, imgsz {c.train.imgsz}, {c.seeds} seeds"
        )

    def _report(
        self, summary: pd.DataFrame, table: pd.DataFrame, reference: dict, target: float | None
    ) -> str:
        c = self.config
        goal = f"target ({c.target:.0%} of it) {target:.3f}" if target is not None else "no target (map50 0)"
        return (
            f"# Learning curves: {self._title()}\n\n"
            f"Test set: {self.pool.description['test']} ({self.pool.description['test_items']} images). "
            f"Base: {c.base}. Every cycle fine-tunes from the base on all labels so far.\n"
            f"Whole pool ({reference['labeled_tiles']} items, {reference['epochs']} epochs): map50 "
            f"{reference['map50']:.3f}; {goal}.\n\n"
            "## Per strategy (over seeds)\n\n"
            "AUC: area under test map50 over labeled tiles, divided by their range (the curve's mean map50). "
            "Labels to target: the fewest labeled tiles at which test map50 reached the target, over the "
            "seeds that reached it.\n\n"
            f"{markdown_table(format_strategy_table(table, target is not None))}\n"
            "## Per cycle: test map50 over seeds\n\n"
            f"{markdown_table(summary)}\n"
            f"![learning curves]({PLOT})\n"
        )


def plot_curves(summary: pd.DataFrame, reference: dict, target: float | None, path: Path, title: str) -> None:
    """Labeled tiles vs test map50: mean line and min-max band per strategy, reference and target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for strategy, group in summary.groupby("strategy", sort=False):
        x = group["labeled_tiles"]
        (line,) = ax.plot(x, group["map50_mean"], marker="o", label=strategy)
        ax.fill_between(x, group["map50_min"], group["map50_max"], color=line.get_color(), alpha=0.15)
    ax.axhline(
        reference["map50"], color="black", linestyle=":", label=f"whole pool ({reference['labeled_tiles']})"
    )
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", label=f"target {target:.3f}")
    ax.set(xlabel="labeled tiles", ylabel="test map50", title=title)
    ax.set_ylim(bottom=0)  # differences read at their true scale
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="mean over seeds, band min-max", title_fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(
            {c: pd.Series(dtype=str if c in ("strategy", "tile_id") else "int64") for c in columns}
        )
    df = pd.read_csv(path, dtype={"strategy": str, "tile_id": str})
    missing = [c for c in columns if c not in df]
    if missing:
        raise ValueError(f"{path}: missing columns {', '.join(missing)}")
    return df[columns]


def _sorted(df: pd.DataFrame, *extra: str) -> pd.DataFrame:
    return df.sort_values(["strategy", "seed", "cycle", *extra], ignore_index=True)


def _sha1(path: Path) -> str:
    from acorn.tiling import file_sha1

    return file_sha1(path)


