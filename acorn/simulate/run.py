"""``acorn simulate``: learning curves per query strategy, measured with an oracle instead of assumed.

Whether uncertainty sampling beats random labeling on *your* data is an empirical question: the
answer depends on the pool, the base model and the budget. This module answers it the only honest
way, by running the loop: every cycle the current model predicts on the pool, a strategy picks
``rank.budget`` items, the oracle labels them from ground truth, a model is fine-tuned from the
base on all labels so far (``train.*``, the same for every strategy) and scored on a fixed test
set. Several seeds give the spread, so a difference smaller than the noise is visible as such.

The loop is the pipeline's own: settings are one ``Params`` (params.yaml plus overrides), the
strategy is built by ``queue.strategy_for``, prediction is ``detection.predict_files``, the
training set is ``training.fine_tune_dataset`` with the same replay (every label trains; the pool's
fixed validation set chooses the epoch, as val.data does in the train stage; the test set only
scores); so the benchmark measures what ``dvc repro`` would do. Results are written after every cycle and a re-run resumes: finished rows
are skipped and the labeled sets are rebuilt by replaying the recorded selections (acorn.simulate
.curves), never re-selected.

The comparison is paired: in seed ``s`` every strategy starts from the same base model with no
labels, fine-tunes with seed ``s`` and breaks ties with the same seeded order (``selection_seed``),
so within a seed the strategy is the only thing that differs; with ``pool_share`` below 1 each
seed also chooses from its own seeded share of the pool's frames (the same for every strategy of
the seed), so that seeds vary what can be chosen, not only the training noise. Runs go seed by
seed (every strategy of seed 0, then of seed 1, ...), so a long simulation stopped early holds
complete pairs. Seeds are independent, so one simulation can be split across processes or
machines (``first_seed``, one output folder each) and gathered into one folder (``merge``) for the
summary.

``predict.candidates: N`` is honoured as the predict and rank stages honour it (acorn.candidates):
a strategy that needs predictions predicts and ranks only N unlabeled items per cycle, the previous
cycle's most undecided ones (``top_tiles``, at most ``predict.carry_over`` of N) plus a sample
stratified by frame and ``rank.balance_by`` drawn with ``selection_seed``; the labeled items are
predicted only for the strategies that read their embeddings (diversity, hybrid). What a run
carries from one cycle to the next is kept in ``carry-over/`` so that a resumed run selects what an
uninterrupted one would. There is no labeling backlog here (the oracle labels every batch at once),
so nothing is ever "waiting". Random needs no predictions and draws from the whole pool.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from acorn import detection, training
from acorn.atomic import copy_file, no_writer, sole_writer, write_csv, write_json, write_text
from acorn.candidates import carry_count, check_size, select_candidates, top_tiles
from acorn.errors import InputError, ParamsError
from acorn.params import Params
from acorn.queue import strategy_for
from acorn.simulate import report
from acorn.simulate.curves import (
    CURVE_COLUMNS,
    CURVES,
    SELECTION_COLUMNS,
    SELECTIONS,
    Replay,
    comparison_table,
    false_alarm_rate,
    hit_rate_by_cycle,
    hit_rates,
    replay_run,
    run_table,
    strategy_table,
    summarize_curves,
)
from acorn.simulate.pools import Pool
from acorn.strategies import Diversity, Hybrid, Random, Strategy, StrategyError, cold_start

if TYPE_CHECKING:
    from tqdm import tqdm

log = logging.getLogger("acorn")

DEFAULT_STRATEGIES = ("random", "positive", "least_confidence", "entropy", "fn_aware", "hybrid")
# Every strategy at the reductions it is meant for: cheap to screen (no training), so screen them all.
SCREEN_STRATEGIES = (
    "random",
    "positive",
    "least_confidence:min",
    "least_confidence:mean",
    "entropy:max",
    "entropy:mean",
    "margin:max",
    "fn_aware",
    "disagreement",
    "diversity",
    "hybrid",
)
# Files of one output folder besides curves.csv and selections.csv; models/ and work/ are resume
# state and scratch, not results.
SUMMARY, STRATEGY_TABLE, COMPARISON, HIT_RATES = (
    "summary.csv",
    "strategies.csv",
    "comparison.csv",
    "hit_rates.csv",
)
CONFIG, REFERENCE, SCREEN = "config.json", "reference.json", "screen.csv"
REFERENCE_EPOCHS = "reference_epochs.csv"  # the reference's validation scores, epoch by epoch
CARRY_OVER = "carry-over"  # per run, the tiles each cycle carries from the last (predict.candidates)
# Sections of params the simulation reads, less what it replaces: the strategy list replaces
# rank.strategy, and the seeds 0..n-1 replace rank.seed and train.seed (selection_seed, train_config).
_IDENTITY_SECTIONS = {"model", "predict", "rank", "train"}
_NOT_READ = {"rank.strategy", "rank.seed", "train.seed"}
_SPEED_ONLY = {"model.threads"}  # how fast, not what is measured: a resume may run with more threads


def _file_stem(name: str) -> str:
    """A strategy entry as a file name: ``hybrid/least_confidence:min`` -> ``hybrid+least_confidence-min``."""
    return name.replace(":", "-").replace("/", "+")


def convergence(curve: pd.DataFrame, epochs: int, patience: int) -> dict:
    """Did the reference level off? ``best_epoch`` by ultralytics' own fitness (0.1 map50 + 0.9
    map50-95, what early stopping and best.pt use); ``converged`` only when early stopping ended it
    before ``epochs``: a run that used every epoch may still have been improving."""
    if curve.empty or "val/map50_95" not in curve:
        return {"epochs_run": len(curve), "best_epoch": None, "converged": False}
    fitness = 0.1 * curve["val/map50"] + 0.9 * curve["val/map50_95"]
    return {
        "epochs_run": len(curve),
        "best_epoch": int(curve.loc[fitness.idxmax(), "epoch"]),
        "converged": bool(patience and len(curve) < epochs),
    }


def selection_seed(seed: int, cycle: int) -> int:
    """The seed ``Strategy.select`` gets in run ``seed``, cycle ``cycle``: one value for every
    strategy, so random's order and every tie-break are shared within a seed (paired runs)."""
    return seed * 1000 + cycle


@dataclass(frozen=True)
class SimulateConfig:
    """What a simulation runs: the pipeline's settings (``params``) plus what only a benchmark has.

    Everything the loop shares with ``dvc repro`` comes from ``params`` and nowhere else: the
    budget is ``rank.budget``, the fine-tune ``train.*`` with ``model.imgsz``, prediction
    ``predict.*``, the strategies' knobs ``rank.*``. Not read: ``rank.strategy`` (``strategies``
    replaces it), ``rank.seed`` and ``train.seed`` (run ``s`` selects with ``selection_seed`` and
    fine-tunes with seed ``s``, whatever the strategy).
    """

    params: Params
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    seeds: int = 3
    cycles: int = 5
    first_seed: int = 0  # the runs are seeds first_seed .. first_seed + seeds - 1
    target: float = 0.95  # fraction of the whole-pool model's map50
    full_epochs: int | None = None  # whole-pool reference; None: train.epochs; 0: none
    full_patience: int = 0  # reference: stop after this many epochs without a better val score; 0: never
    pool_share: float = 1.0  # each seed's runs choose from a seeded share of the pool's frames

    def __post_init__(self) -> None:
        for name in ("seeds", "cycles"):
            if getattr(self, name) < 1:
                raise ParamsError(f"--{name} must be at least 1; got {getattr(self, name)}")
        if self.first_seed < 0:
            raise ParamsError(f"--first-seed must be 0 or more; got {self.first_seed}")
        if self.full_epochs is not None and self.full_epochs < 0:
            raise ParamsError(f"--full-epochs must be 0 (no reference) or more; got {self.full_epochs}")
        if self.full_patience < 0:
            raise ParamsError(
                f"--full-patience must be 0 (run every epoch) or more; got {self.full_patience}"
            )
        if self.full_patience and self.full_epochs == 0:
            raise ParamsError(
                "--full-patience stops the whole-pool reference early, but --full-epochs 0 trains none"
            )
        if not self.strategies or len(set(self.strategies)) != len(self.strategies):
            raise ParamsError(f"--strategies must be a non-empty list without repeats; got {self.strategies}")
        for name in self.strategies:
            try:
                self.strategy(name)
            except StrategyError as exc:  # it names rank.*, but the entry came from --strategies
                raise StrategyError(f"--strategies entry {name!r}: {exc}") from None
        if not 0.0 < self.target <= 1.0:
            raise ParamsError(f"--target must be in (0, 1]; got {self.target}")
        if not 0.0 < self.pool_share <= 1.0:
            raise ParamsError(f"--pool-share must be in (0, 1]; got {self.pool_share}")
        check_size(self.params.predict.candidates, self.budget)

    @property
    def seed_numbers(self) -> range:
        return range(self.first_seed, self.first_seed + self.seeds)

    @property
    def budget(self) -> int:
        return self.params.rank.budget

    @property
    def base(self) -> str:
        return self.params.model.base

    @property
    def cold(self) -> bool:
        """No trained base: nothing predicts before the first batch, which ``cold_start`` picks."""
        return Path(self.base).suffix in (".yaml", ".yml")

    def strategy(self, name: str) -> Strategy:
        """Built as the rank stage builds it; ``name:aggregate`` overrides ``rank.aggregate`` for one
        entry, so one simulation can compare strategies at the reductions each is meant for."""
        return strategy_for(self.params, name)

    def train_config(self, seed: int, epochs: int | None = None) -> training.TrainConfig:
        """The train stage's fine-tune with run ``seed`` as its seed (the same for every strategy)."""
        return training.TrainConfig.from_params(
            self.params, seed=seed, epochs=epochs or self.params.train.epochs
        )

    def identity(self) -> dict:
        """The settings every row of one output folder shares, as ``section.key`` (and the pool
        share, when not the whole pool): a resume refuses a change. The strategy list, seeds,
        cycles, target and reference epochs may change."""
        read = self.params.model_dump(include=_IDENTITY_SECTIONS)
        flat = {f"{s}.{k}": v for s, section in read.items() for k, v in section.items()}
        flat |= {"pool_share": self.pool_share} if self.pool_share < 1.0 else {}
        return {k: v for k, v in sorted(flat.items()) if k not in _NOT_READ | _SPEED_ONLY}


@dataclass
class Result:
    """What a simulation produced (also written to the output folder)."""

    curves: pd.DataFrame
    summary: pd.DataFrame
    strategies: pd.DataFrame
    comparison: pd.DataFrame
    hit_rates: pd.DataFrame
    reference: dict | None  # None: not trained (--full-epochs 0)
    target: float | None
    out: Path


@dataclass
class Screen:
    """First batches only: per (strategy, seed) ``runs`` and per strategy ``table``, with the pool's
    base rate (the hit rate random labeling has on average)."""

    runs: pd.DataFrame
    table: pd.DataFrame
    base_rate: float
    out: Path


def simulate(pool: Pool, config: SimulateConfig, out: Path, merge: Sequence[Path] = ()) -> Result:
    """Run (or resume) every (strategy, seed) run for ``config.cycles`` cycles, then summarise.

    ``merge``: output folders of the same settings (runs split with ``first_seed``) whose runs are
    added to ``out`` first, so only what none of them finished is run here.
    """
    with sole_writer(Path(out) / "work", "acorn simulate"):
        simulation = _Simulation(pool, config, Path(out))
        if merge:
            simulation.merge([Path(m) for m in merge])
        return simulation.run()


def score_batches(
    pool: Pool, config: SimulateConfig, batches: Mapping[str, Sequence[str]], seed: int, out: Path
) -> Iterator[dict]:
    """Fine-tune from the base on each named batch of pool items with the train stage's recipe and
    seed ``seed``, and score each on the test set as a cycle is scored (map50, map50-95, false
    alarms on empty test images): what a batch's make-up buys, with no strategy in between.
    One row per batch, with its size and how many of its items hold an object, yielded as soon as
    it is scored so that a caller can save it before the next fine-tune."""
    with sole_writer(Path(out) / "work", "a fine-tune of batches"):
        yield from _Simulation(pool, config, out).score(batches, seed)


def mixed_batches(items: pd.DataFrame, size: int, shares: Sequence[float], seed: int) -> dict[str, list[str]]:
    """For each share, ``size`` items of which round(share x size) hold an object, the rest empty,
    each part a seeded draw; a batch with more of one kind than the pool has is refused. Batches of
    one seed are nested (a larger share adds positives and drops empties), so they differ only in
    their mix."""
    rng = np.random.default_rng(seed)
    holding = items.loc[items["objects"] > 0, "tile_id"].astype(str).to_numpy()
    empty = items.loc[items["objects"] == 0, "tile_id"].astype(str).to_numpy()
    holding, empty = rng.permutation(holding), rng.permutation(empty)
    batches = {}
    for share in shares:
        if not 0.0 <= share <= 1.0:
            raise InputError(f"share of items with an object must be in [0, 1], got {share}")
        k = round(share * size)
        if k > len(holding) or size - k > len(empty):
            raise InputError(
                f"a batch of {size} with {k} holding an object needs {k} such items and {size - k} empty "
                f"ones; the pool has {len(holding)} and {len(empty)}"
            )
        batches[f"share{share:g}"] = [*holding[:k], *empty[: size - k]]
    return batches


def screen(pool: Pool, config: SimulateConfig, out: Path) -> Screen:
    """Each strategy's first batch from the base model's predictions, and the share of it holding an
    object, for every seed: no training, so all strategies can be screened before simulating a few.

    Always recomputed in full (one predict pass over the pool; with ``predict.candidates`` over
    each seed's candidates), so it has no resume state and leaves the folder's config.json alone.
    """
    with sole_writer(Path(out) / "work", "acorn simulate --screen"):
        return _Simulation(pool, config, Path(out)).screen()


def screen_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: mean, min and max of the first batch's hit rate over seeds, best first."""
    table = (
        runs.groupby("strategy", sort=False)
        .agg(
            seeds=("seed", "nunique"),
            hit_rate_mean=("hit_rate", "mean"),
            hit_rate_min=("hit_rate", "min"),
            hit_rate_max=("hit_rate", "max"),
        )
        .reset_index()
    )
    return table.sort_values("hit_rate_mean", ascending=False, kind="stable", ignore_index=True)


class _Simulation:
    def __init__(self, pool: Pool, config: SimulateConfig, out: Path) -> None:
        self.pool, self.config, self.out = pool, config, out
        self.p = config.params
        self.ids = pool.items["tile_id"].astype(str).tolist()
        self.items = pool.items.assign(tile_id=self.ids).set_index("tile_id", drop=False).rename_axis(None)
        base = Path(config.base)
        if not config.cold and not base.is_file():
            raise InputError(f"{base}: base model missing (model.base: a .pt, or a .yaml for a cold start)")
        self.identity = folder_identity(pool, config)
        self.curves = _read_csv(out / CURVES, CURVE_COLUMNS)
        self.selections = _read_csv(out / SELECTIONS, SELECTION_COLUMNS)
        self._base_predictions: detection.Detections | None = None
        self.work = out / "work"  # replaced by a scratch folder inside it while running
        self._replay: list[tuple[Path, Path]] = []  # set once the run starts (replay_pairs)
        self._val = [
            (Path(i), Path(t) if t else None)
            for i, t in zip(pool.val["image"], pool.val["truth"], strict=True)
        ]
        self._test_yaml = self.work / "test" / "data.yaml"
        self._val_yaml = self.work / "val" / "data.yaml"

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

    def run(self) -> Result:
        from tqdm import tqdm

        self._check_config()
        c = self.config
        runs = [(s, seed) for seed in c.seed_numbers for s in c.strategies]  # seed-major: pairs first
        replays = {run: replay_run(self.curves, self.selections, *run) for run in runs}
        todo = sum(1 for run in runs for cycle in range(1, c.cycles + 1) if cycle not in replays[run].done)
        with self._workspace(), tqdm(total=todo, desc="simulate", unit="cycle") as bar:
            for run in runs:
                self._run(*run, replays[run], bar)
            reference = self._reference(bar)
        return self._summarise(reference)

    @contextlib.contextmanager
    def _workspace(self) -> Iterator[None]:
        """A scratch folder for training and evaluation, the replay close-ups and the test set.
        Those of earlier runs are stale (the caller holds the folder's lock): a SIGKILL left them."""
        (self.out / "work").mkdir(parents=True, exist_ok=True)
        write_text(self.out / ".gitignore", "models/\nwork/\n")
        for stale in (self.out / "work").glob("tmp*"):
            log.info("removing %s, the scratch folder of a run that was killed", stale)
            shutil.rmtree(stale, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=self.out / "work") as tmp:
            self.work = Path(tmp)
            self._replay = training.replay_pairs(self.p.train.replay_data, self.p.train.replay_images)
            test = [
                (Path(image), self._label(truth))
                for image, truth in zip(self.pool.test["image"], self.pool.test["truth"], strict=True)
            ]
            self._test_yaml = training.write_dataset(self.work / "test", self.pool.classes, test, test)
            self._val_yaml = training.write_dataset(
                self.work / "val", self.pool.classes, self._val, self._val
            )
            yield

    def score(self, batches: Mapping[str, Sequence[str]], seed: int) -> Iterator[dict]:
        """One fine-tune from the base per named batch (run ``seed``), scored as a cycle is. A
        fine-tune stopped by a kill goes on from its last epoch when asked again (a recipe of 100
        epochs on 500 labels is an hour on a CPU); its folder goes once the caller has the row."""
        with self._workspace():
            for name, ids in batches.items():
                ids = list(ids)
                # the pool, the base model's bytes and every setting but speed: another is another
                # fine-tune, whose checkpoint this one must not go on from
                spec = {"batch": name, "seed": seed, "tiles": ids, "settings": self.identity}
                folder = training.resumable_workdir(
                    self.out / "work" / "batches" / hashlib.sha1(name.encode()).hexdigest()[:12],
                    spec,
                    f"the fine-tune of {name}",
                )
                keep = self.out / "models" / f"{name}-s{seed}-c1.pt"
                weights = self._train_model(ids, seed, None, keep, resume_in=folder)
                holding = int((self.items.loc[ids, "objects"] > 0).sum())
                row = {"batch": name, "seed": seed, "tiles": len(ids), "with_objects": holding}
                row |= self._evaluate(weights)
                # gone before the caller saves the row: a kill between the two redoes this batch,
                # while a folder kept after its row was saved would never be asked for again
                shutil.rmtree(folder, ignore_errors=True)
                with contextlib.suppress(OSError):
                    folder.parent.rmdir()  # once the last batch's is gone
                yield row

    def merge(self, folders: list[Path]) -> None:
        """Add the runs recorded in ``folders`` to this one, with their models and carried tiles so
        that a later resume can extend them. A run is taken whole from one folder: one that two
        folders (or this one and another) both hold, with different records, is refused, since
        which is right cannot be told; identical copies (a folder merged twice) are fine."""
        parts = [f for f in folders if f.resolve() != self.out.resolve()]
        with contextlib.ExitStack() as reading:  # every part first: a refusal leaves this folder as it was
            for folder in parts:
                reading.enter_context(no_writer(folder / "work", "merge it once that run has ended"))
            self._check_config()
            owner = {run: self.out for run in _runs(self.curves, self.selections)}
            for folder in parts:
                self._merge_one(folder, owner)
        self.curves, self.selections = _sorted(self.curves), _sorted(self.selections, "rank")
        write_csv(self.curves, self.out / CURVES)
        write_csv(self.selections, self.out / SELECTIONS)

    def _merge_one(self, folder: Path, owner: dict[tuple[str, int], Path]) -> None:
        """One part folder's runs, models and reference (see ``merge``)."""
        config = folder / CONFIG
        if not config.is_file():
            raise InputError(f"{config}: not found (--merge takes output folders of acorn simulate)")
        changed = settings_differ(json.loads(config.read_text(encoding="utf-8")), self.identity)
        if changed:
            raise ParamsError(f"{config}: made with other settings ({', '.join(changed)} differ); not merged")
        theirs = (
            _read_csv(folder / CURVES, CURVE_COLUMNS),
            _read_csv(folder / SELECTIONS, SELECTION_COLUMNS),
        )
        for run in _runs(*theirs):
            if run not in owner:
                owner[run] = folder
                self.curves = pd.concat([self.curves, _of_run(theirs[0], run)])
                self.selections = pd.concat([self.selections, _of_run(theirs[1], run)])
                self._copy_run_state(folder, *run)
            elif not _same_run(run, (self.curves, self.selections), theirs):
                raise InputError(
                    f"{folder}: {run[0]} seed {run[1]} is also in {owner[run]} with other results; "
                    "merge folders that hold different seeds (--first-seed)"
                )
        reference = folder / REFERENCE
        if reference.is_file() and not (self.out / REFERENCE).is_file():
            copy_file(reference, self.out / REFERENCE)
            if (folder / REFERENCE_EPOCHS).is_file():
                copy_file(folder / REFERENCE_EPOCHS, self.out / REFERENCE_EPOCHS)

    def _copy_run_state(self, folder: Path, name: str, seed: int) -> None:
        """The run's latest model and carried tiles, which a resume with more cycles reads."""
        stem = f"{_file_stem(name)}-s{seed}"
        for model in (folder / "models").glob(f"{stem}-c*.pt"):
            copy_file(model, self.out / "models" / model.name)
        carried = folder / CARRY_OVER / f"{stem}.json"
        if carried.is_file():
            copy_file(carried, self._carry_path(name, seed))

    def screen(self) -> Screen:
        c = self.config
        if c.cold:
            raise ParamsError(f"model.base {c.base}: screening needs a trained base model to predict with")
        picks = []
        for name in c.strategies:
            for seed in c.seed_numbers:
                batch, _ = self._select(name, seed, 1, [], self.available(seed))
                picks.append(pd.DataFrame({"strategy": name, "seed": seed, "cycle": 1, "tile_id": batch}))
        runs = hit_rates(pd.concat(picks, ignore_index=True), self.pool.objects).drop(columns="cycle")
        base_rate = self.pool.base_rate
        table = screen_table(runs)
        self.out.mkdir(parents=True, exist_ok=True)
        write_csv(runs, self.out / SCREEN)
        write_text(
            self.out / report.SCREEN_REPORT, report.screen_markdown(table, base_rate, self._settings())
        )
        return Screen(runs=runs, table=table, base_rate=base_rate, out=self.out)

    # -- one (strategy, seed) run --------------------------------------------------------------

    def _run(self, name: str, seed: int, replay: Replay, bar: tqdm) -> None:
        c = self.config
        if not c.cold and 0 not in replay.done:
            self._append_row(name, seed, 0, 0, self._base_metrics())
        available = self.available(seed)
        for cycle in range(1, c.cycles + 1):
            if cycle in replay.done:
                continue
            labeled = replay.labeled_before(cycle)
            taken = set(labeled)
            unlabeled = [t for t in available if t not in taken]
            if not unlabeled:
                log.info("%s seed %d: the pool is exhausted after cycle %d", name, seed, cycle - 1)
                return
            bar.set_description(f"{name} seed {seed} cycle {cycle}")
            if cycle not in replay.batches:
                bar.set_postfix_str("predict + select")
                batch, carried = self._select(name, seed, cycle, labeled, unlabeled)
                if carried is not None:  # before the selection: a resume must find what it carried
                    self._write_carried(name, seed, cycle + 1, carried)
                replay.batches[cycle] = batch
                self._record_selection(name, seed, cycle, batch)
            labeled = labeled + replay.batches[cycle]
            bar.set_postfix_str(f"train on {len(labeled)}")
            weights = self._train_model(labeled, seed, None, self._model_path(name, seed, cycle))
            bar.set_postfix_str("evaluate")
            self._append_row(name, seed, cycle, len(labeled), self._evaluate(weights))
            bar.update()

    def _select(
        self, name: str, seed: int, cycle: int, labeled: list[str], unlabeled: list[str]
    ) -> tuple[list[str], list[str] | None]:
        """The strategy's batch from the previous model's predictions, as the rank stage makes it:
        boxes and embeddings of the unlabeled items, and the embeddings of the labeled ones (by the
        same model) so that diversity and hybrid know what is already covered.

        With ``predict.candidates`` the batch is chosen among this cycle's candidates only, and the
        second value is what the next cycle carries over (``top_tiles`` of this cycle's
        predictions, as the predict stage leaves it); None without candidates.
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
                carried = top_tiles(predicted, carry_count(size, self.p.predict.carry_over))
            if labeled and (uses_labeled or not size):
                covered = np.stack(by_id["embedding"].loc[labeled].to_numpy())
        tiles = self.items.loc[unlabeled].reset_index(drop=True)
        balance = self.p.rank.balance_by
        groups = tiles.set_index("tile_id")[balance] if balance and balance in tiles else None
        batch = strategy.select(
            boxes,
            tiles,
            self.config.budget,
            selection_seed(seed, cycle),
            groups=groups,
            embeddings=embeddings,
            labeled_embeddings=covered,
        )
        return batch, carried

    def _candidates(self, name: str, seed: int, cycle: int, unlabeled: list[str]) -> list[str]:
        """This cycle's candidates, as the predict stage chooses them (acorn.candidates), in pool
        order: a stratified sample seeded with ``selection_seed`` plus what the last cycle carried."""
        p = self.p
        carried = self._read_carried(name, seed, cycle)
        chosen = select_candidates(
            self.items.loc[unlabeled].reset_index(drop=True),
            p.predict.candidates,
            seed=selection_seed(seed, cycle),
            carried=carried,
            carry_over=p.predict.carry_over,
            balance_by=p.rank.balance_by,
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
        weights = self._model_path(name, seed, cycle)
        if not weights.is_file():  # resumed from a folder whose model files were removed
            log.info("%s seed %d: retraining the cycle %d model (its file is missing)", name, seed, cycle)
            self._train_model(labeled, seed, None, weights)
        return self._predict(weights, self.items.loc[ids, "image"], ids)

    def _base_on(self, ids: list[str]) -> detection.Detections:
        """The base model's predictions, holding at least ``ids``: only items never predicted by it
        are predicted (with candidates each seed's sample adds some)."""
        known = self._base_predictions
        done = set() if known is None else set(known.tiles["tile_id"])
        missing = [t for t in ids if t not in done]
        if missing:
            new = self._predict(Path(self.config.base), self.items.loc[missing, "image"], missing)
            if known is not None:
                new = detection.Detections(
                    boxes=pd.concat([known.boxes, new.boxes], ignore_index=True),
                    tiles=pd.concat([known.tiles, new.tiles], ignore_index=True),
                )
            self._base_predictions = new
        assert self._base_predictions is not None
        return self._base_predictions

    def _predict(self, weights: Path, images: Sequence[str], ids: Sequence[str]) -> detection.Detections:
        detector = detection.Detector(detection.DetectorConfig.from_params(self.p, weights))
        parts = list(detection.predict_files(detector, [Path(i) for i in images], list(ids)))
        return detection.Detections(
            boxes=pd.concat([d.boxes for d in parts], ignore_index=True),
            tiles=pd.concat([d.tiles for d in parts], ignore_index=True),
        )

    # -- training, evaluation, the whole-pool reference ------------------------------------------

    def _train_model(
        self,
        ids: list[str],
        seed: int,
        epochs: int | None,
        keep: Path,
        patience: int | None = None,
        resume_in: Path | None = None,
    ) -> Path:
        """Fine-tune from the base on ``ids`` (a fresh start every cycle, as the train stage does);
        the weights go to ``keep`` and replace the run's earlier models, the scratch is removed.
        Every item trains; the epoch kept is the best on the pool's validation set, stopping after
        ``patience`` epochs without a better one (None: ``train.patience``, as the train stage).
        ``resume_in``: a folder that outlives a kill, where a stopped training goes on (the
        reference, hours on a CPU); the caller removes it once the result is stored."""
        work = resume_in or Path(tempfile.mkdtemp(dir=self.work, prefix="train-"))
        shutil.rmtree(work / "data", ignore_errors=True)  # its empty-label links point into self.work
        data = training.fine_tune_dataset(
            ids,
            lambda t: (Path(self.items.at[t, "image"]), self._label(self.items.at[t, "truth"])),
            self.pool.classes,
            self._val,
            work / "data",
            replay=self._replay,
        )
        config = self.config.train_config(seed, epochs)
        if patience is not None:
            config = replace(config, patience=patience)
        trained = training.train(self.config.base, data, config, work, resume=resume_in is not None)
        copy_file(trained, keep)
        if resume_in is None:
            shutil.rmtree(work, ignore_errors=True)
        prefix = keep.name.rsplit("-c", 1)[0]
        for old in keep.parent.glob(f"{prefix}-c*.pt"):
            if old != keep:
                old.unlink()
        return keep

    def _evaluate(self, weights: Path) -> dict[str, float]:
        """Test map50 and map50-95, the false-alarm rate on the test set's empty images at the
        decision threshold (``rank.threshold``, the one pre-annotations are shown at), and the
        validation map50 (what the train stage's champion gate reads, and what a choice between
        strategies is made on)."""
        device = detection.resolve_device(self.p.model.device)
        scores = {}
        for name, data in (("test", self._test_yaml), ("val", self._val_yaml)):
            work = Path(tempfile.mkdtemp(dir=self.work, prefix="eval-"))
            scores[name] = training.evaluate(
                weights, data, self.p.model.imgsz, work, device=device, threads=self.p.model.threads
            )
            shutil.rmtree(work, ignore_errors=True)
        empty = self.pool.test.loc[self.pool.test["objects"] == 0, "image"].tolist()
        alarms = float("nan")
        if empty:
            found = self._predict(weights, empty, empty)
            alarms = false_alarm_rate(found.boxes, empty, self.p.rank.threshold)
        test = scores["test"]
        return {
            "map50": test.map50,
            "map50_95": test.map50_95,
            "false_alarm_rate": alarms,
            "val_map50": scores["val"].map50,
        }

    def _base_metrics(self) -> dict[str, float]:
        """The base model on the test set: the cycle-0 point of every run, evaluated once."""
        zero = self.curves[self.curves["cycle"] == 0]
        if not zero.empty:
            return (
                zero[["map50", "map50_95", "false_alarm_rate", "val_map50"]].iloc[0].astype(float).to_dict()
            )
        return self._evaluate(Path(self.config.base))

    def _reference(self, bar: tqdm) -> dict | None:
        """The whole pool labeled and trained once (seed 0): the map50 the curves are measured against.

        None with ``full_epochs`` 0: on a CPU it can cost more than the curves (every epoch reads the
        whole pool), and a reference trained elsewhere (a GPU, to convergence) is the better yardstick.
        """
        if self.config.full_epochs == 0:
            return None
        epochs, patience = self.config.full_epochs or self.p.train.epochs, self.config.full_patience
        path = self.out / REFERENCE
        if path.is_file():
            stored = json.loads(path.read_text(encoding="utf-8"))
            if stored.get("epochs") == epochs and stored.get("patience", 0) == patience:
                return stored
        bar.set_description("whole-pool reference")
        bar.set_postfix_str(f"train on {len(self.ids)} for {'up to ' if patience else ''}{epochs} epochs")
        # kept across a kill; other --full-epochs / --full-patience start over (the folder's other
        # settings are config.json's, checked before any run)
        spec = {"epochs": epochs, "patience": patience}
        folder = training.resumable_workdir(self.out / "work" / "reference", spec, "the whole-pool reference")
        weights = self._train_model(self.ids, 0, epochs, self.work / "reference-c0.pt", patience, folder)
        curve = training.epoch_history(folder)
        reference = {
            "labeled_tiles": len(self.ids),
            "epochs": epochs,
            "patience": patience,
            "seed": 0,
            **self._evaluate(weights),
            **convergence(curve, epochs, patience),
        }
        write_csv(curve, self.out / REFERENCE_EPOCHS)
        write_json(path, reference)
        shutil.rmtree(folder, ignore_errors=True)
        if not reference["converged"]:
            log.warning(
                "the whole-pool reference ran all %d epochs without its validation score levelling off "
                "(best at epoch %s): its map50 %.3f is a lower bound on the ceiling; for a converged one "
                "raise --full-epochs and set --full-patience (e.g. 10)",
                epochs,
                reference["best_epoch"],
                reference["map50"],
            )
        return reference

    def _label(self, truth: str) -> Path:
        """An item's label file; one shared empty file stands for every image without objects."""
        if truth:
            return Path(truth)
        empty = self.work / "empty.txt"
        empty.touch()
        return empty

    # -- output files --------------------------------------------------------------------------

    def _check_config(self) -> None:
        path = self.out / CONFIG
        if path.is_file():
            changed = settings_differ(json.loads(path.read_text(encoding="utf-8")), self.identity)
            if changed:
                raise ParamsError(
                    f"{path}: this folder holds results for other settings ({', '.join(changed)} differ); "
                    "choose another --out, or delete the folder to start over"
                )
        else:
            write_json(path, self.identity)

    def _carry_path(self, name: str, seed: int) -> Path:
        return self.out / CARRY_OVER / f"{_file_stem(name)}-s{seed}.json"

    def _read_carried(self, name: str, seed: int, cycle: int) -> list[str]:
        """What the run's previous cycle left for ``cycle`` (nothing for the first). A missing entry
        cannot be made again (the model that ranked it is gone), so a resume refuses to guess."""
        if cycle == 1 or carry_count(self.p.predict.candidates, self.p.predict.carry_over) == 0:
            return []
        path = self._carry_path(name, seed)
        stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if str(cycle) not in stored:
            raise InputError(
                f"{path}: no carried tiles for {name} seed {seed} cycle {cycle}, so its selection "
                "could not be repeated (predict.candidates); choose another --out or delete the folder"
            )
        return [str(t) for t in stored[str(cycle)]]

    def _write_carried(self, name: str, seed: int, cycle: int, tiles: list[str]) -> None:
        path = self._carry_path(name, seed)
        stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        stored[str(cycle)] = tiles
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, stored)

    def _model_path(self, name: str, seed: int, cycle: int) -> Path:
        """Where a run keeps its latest model: the next cycle (also after a resume) predicts with it."""
        return self.out / "models" / f"{_file_stem(name)}-s{seed}-c{cycle}.pt"

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

    def _summarise(self, reference: dict | None) -> Result:
        c = self.config

        def this_config(df: pd.DataFrame) -> pd.DataFrame:
            keep = (
                df["strategy"].isin(c.strategies)
                & df["seed"].isin(c.seed_numbers)
                & (df["cycle"] <= c.cycles)
            )
            order = {s: i for i, s in enumerate(c.strategies)}
            return df[keep].sort_values(
                ["strategy", "seed", "cycle"], key=lambda s: s.map(order) if s.name == "strategy" else s
            )

        curves = this_config(self.curves).reset_index(drop=True)
        hits = hit_rates(this_config(self.selections), self.pool.objects)
        target = c.target * reference["map50"] if reference and reference["map50"] > 0 else None
        runs = run_table(curves, target, hits)
        result = Result(
            curves=curves,
            summary=summarize_curves(curves),
            strategies=strategy_table(runs),
            comparison=comparison_table(runs).round(4),
            hit_rates=hits,
            reference=reference,
            target=target,
            out=self.out,
        )
        write_csv(result.summary, self.out / SUMMARY)
        write_csv(result.strategies, self.out / STRATEGY_TABLE)
        write_csv(result.comparison, self.out / COMPARISON)
        write_csv(hits, self.out / HIT_RATES)
        settings = self._settings()
        report.plot_curves(result.summary, reference, target, self.out / report.PLOT, settings["title"])
        by_cycle = hit_rate_by_cycle(hits)
        write_text(self.out / report.REPORT, report.markdown(result, by_cycle, settings))
        return result

    def _settings(self) -> dict:
        """What a reader of the report needs to know about the run, in words."""
        c, d = self.config, self.pool.description
        return {
            "title": (
                f"{d['pool']}: {d['items']} items, budget {c.budget}/cycle, {self.p.train.epochs} epochs, "
                f"imgsz {self.p.model.imgsz}, {_seed_words(c.seed_numbers)}"
                + (f", {self.p.predict.candidates} candidates/cycle" if self.p.predict.candidates else "")
                + (f", each seed {c.pool_share:.0%} of the pool's frames" if c.pool_share < 1.0 else "")
            ),
            "test": f"{d['test']} ({d['test_items']} images, {int((self.pool.test['objects'] == 0).sum())} empty)",
            "val": f"{d['val']} ({d['val_items']} images)",
            "base": c.base,
            "target": c.target,
            "threshold": self.p.rank.threshold,
            "base_rate": self.pool.base_rate,
        }


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(
            {c: pd.Series(dtype=str if c in ("strategy", "tile_id") else "int64") for c in columns}
        )
    df = pd.read_csv(path, dtype={"strategy": str, "tile_id": str})
    missing = [c for c in columns if c not in df]
    if missing:
        raise InputError(
            f"{path}: missing columns {', '.join(missing)} (made by an older acorn: use another --out)"
        )
    return df[columns]


def folder_identity(pool: Pool, config: SimulateConfig) -> dict:
    """What every row of one output folder shares (its config.json): the pool, the base model's
    bytes and the settings, as they read back from JSON."""
    base = Path(config.base)
    identity = {
        "pool": pool.description,
        "base_sha1": _sha1(base) if base.is_file() else "",
        **config.identity(),
    }
    return json.loads(json.dumps(identity))


def settings_differ(stored: dict, identity: dict) -> list[str]:
    """The keys on which a folder's config.json and this simulation (``folder_identity``) disagree."""
    return sorted(k for k in identity.keys() | stored.keys() if stored.get(k) != identity.get(k))


def _runs(curves: pd.DataFrame, selections: pd.DataFrame) -> list[tuple[str, int]]:
    both = pd.concat([curves[["strategy", "seed"]], selections[["strategy", "seed"]]])
    return [(str(s), int(n)) for s, n in both.drop_duplicates().itertuples(index=False)]


def _of_run(df: pd.DataFrame, run: tuple[str, int]) -> pd.DataFrame:
    return df[(df["strategy"] == run[0]) & (df["seed"] == run[1])]


def _same_run(run: tuple[str, int], ours: tuple[pd.DataFrame, ...], theirs: tuple[pd.DataFrame, ...]) -> bool:
    def rows(df: pd.DataFrame) -> pd.DataFrame:
        return _of_run(df, run).sort_values(list(df.columns), ignore_index=True).round(9)

    return all(rows(a).equals(rows(b)) for a, b in zip(ours, theirs, strict=True))


def _seed_words(seeds: range) -> str:
    if len(seeds) == 1:
        return f"seed {seeds.start}"
    return f"{len(seeds)} seeds" if seeds.start == 0 else f"seeds {seeds.start}-{seeds[-1]}"


def _sorted(df: pd.DataFrame, *extra: str) -> pd.DataFrame:
    return df.sort_values(["strategy", "seed", "cycle", *extra], ignore_index=True)


def _sha1(path: Path) -> str:
    from acorn.tiling import file_sha1

    return file_sha1(path)
