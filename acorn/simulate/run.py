"""``acorn simulate``: learning curves per query strategy, measured with an oracle instead of assumed.

Whether uncertainty sampling beats random labeling on *your* data is an empirical question: the
answer depends on the pool, the base model and the budget. This module answers it the only honest
way, by running the loop: every cycle the current model predicts on the pool, a strategy picks
``rank.budget`` items, the oracle labels them from ground truth, a model is fine-tuned from the
base on all labels so far (``train.*``, the same for every strategy) and scored on a fixed test
set. Several seeds give the spread, so a difference smaller than the noise is visible as such.

The loop is the pipeline's own: settings are one ``Params`` (params.yaml plus overrides), and each
cycle is the stages' own step (acorn.cycle_step, called by acorn.simulate.step), so the benchmark
measures what ``dvc repro`` would do. Results are written after every cycle and a re-run resumes
(acorn.simulate.folder).

The comparison is paired: in seed ``s`` every strategy starts from the same base model with no
labels, fine-tunes with seed ``s`` and breaks ties with the same seeded order (``selection_seed``),
so within a seed the strategy is the only thing that differs; with ``pool_share`` below 1 each
seed also chooses from its own seeded share of the pool's frames (the same for every strategy of
the seed), so that seeds vary what can be chosen, not only the training noise. Runs go seed by
seed (every strategy of seed 0, then of seed 1, ...), so a long simulation stopped early holds
complete pairs. Seeds are independent, so one simulation can be split across processes or
machines (``first_seed``, one output folder each) and gathered into one folder (``merge``) for the
summary.

``predict.candidates: N`` is honoured as the predict and rank stages honour it: a strategy that
needs predictions predicts and ranks only N unlabeled items per cycle, the previous cycle's most
undecided ones (at most ``predict.carry_over`` of N) plus a sample stratified by frame and
``rank.balance_by`` drawn with ``selection_seed``; the labeled items are predicted only for the
strategies that read their embeddings (diversity, hybrid). Random needs no predictions and draws
from the whole pool.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from acorn.model import training
from acorn.runtime.atomic import sole_writer, write_csv, write_json, write_text
from acorn.simulate import report
from acorn.simulate.config import SimulateConfig
from acorn.simulate.curves import (
    Replay,
    comparison_table,
    hit_rate_by_cycle,
    hit_rates,
    replay_run,
    run_table,
    strategy_table,
    summarize_curves,
)
from acorn.simulate.folder import (
    COMPARISON,
    HIT_RATES,
    REFERENCE,
    REFERENCE_EPOCHS,
    STRATEGY_TABLE,
    SUMMARY,
    OutputFolder,
    Result,
)
from acorn.simulate.pools import Pool
from acorn.simulate.step import OracleStep

if TYPE_CHECKING:
    from tqdm import tqdm

log = logging.getLogger("acorn")


def simulate(pool: Pool, config: SimulateConfig, out: Path, merge: Sequence[Path] = ()) -> Result:
    """Run (or resume) every (strategy, seed) run for ``config.cycles`` cycles, then summarise.

    ``merge``: output folders of the same settings (runs split with ``first_seed``) whose runs are
    added to ``out`` first, so only what none of them finished is run here.
    """
    out = Path(out)
    with sole_writer(out / "work", "acorn simulate"):
        folder = OutputFolder(pool, config, out)
        simulation = _Simulation(pool, config, folder, OracleStep(pool, config, folder))
        if merge:
            folder.merge([Path(m) for m in merge])
        return simulation.run()


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


class _Simulation:
    """The run loop: every (strategy, seed) run cycle by cycle, the whole-pool reference, the summary."""

    def __init__(self, pool: Pool, config: SimulateConfig, folder: OutputFolder, step: OracleStep) -> None:
        self.pool, self.config, self.folder, self.step = pool, config, folder, step
        self.p = config.params
        self.out = folder.out

    def run(self) -> Result:
        from tqdm import tqdm

        self.folder.check_config()
        c, f = self.config, self.folder
        runs = [(s, seed) for seed in c.seed_numbers for s in c.strategies]  # seed-major: pairs first
        replays = {run: replay_run(f.curves, f.selections, *run) for run in runs}
        todo = sum(1 for run in runs for cycle in range(1, c.cycles + 1) if cycle not in replays[run].done)
        with self.step.scratch(), tqdm(total=todo, desc="simulate", unit="cycle") as bar:
            for run in runs:
                self._run(*run, replays[run], bar)
            reference = self._reference(bar)
        return self._summarise(reference)

    def _run(self, name: str, seed: int, replay: Replay, bar: tqdm) -> None:
        c, f, step = self.config, self.folder, self.step
        if not c.cold and 0 not in replay.done:
            f.append_row(name, seed, 0, 0, self._base_metrics())
        available = step.available(seed)
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
                batch, carried = step.select(name, seed, cycle, labeled, unlabeled)
                if carried is not None:  # before the selection: a resume must find what it carried
                    f.write_carried(name, seed, cycle + 1, carried)
                replay.batches[cycle] = batch
                f.record_selection(name, seed, cycle, batch)
            labeled = labeled + replay.batches[cycle]
            bar.set_postfix_str(f"train on {len(labeled)}")
            weights = step.train(labeled, seed, f.model_path(name, seed, cycle))
            bar.set_postfix_str("evaluate")
            f.append_row(name, seed, cycle, len(labeled), step.evaluate(weights))
            bar.update()

    def _base_metrics(self) -> dict[str, float]:
        """The base model on the test set: the cycle-0 point of every run, evaluated once."""
        zero = self.folder.curves[self.folder.curves["cycle"] == 0]
        if not zero.empty:
            return (
                zero[["map50", "map50_95", "false_alarm_rate", "val_map50"]].iloc[0].astype(float).to_dict()
            )
        return self.step.evaluate(Path(self.config.base))

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
        ids = self.step.ids
        bar.set_description("whole-pool reference")
        bar.set_postfix_str(f"train on {len(ids)} for {'up to ' if patience else ''}{epochs} epochs")
        # kept across a kill; other --full-epochs / --full-patience start over (the folder's other
        # settings are config.json's, checked before any run)
        spec = {"epochs": epochs, "patience": patience}
        folder = training.resumable_workdir(self.out / "work" / "reference", spec, "the whole-pool reference")
        weights = self.step.train(ids, 0, self.step.work / "reference-c0.pt", epochs, patience, folder)
        curve = training.epoch_history(folder)
        reference = {
            "labeled_tiles": len(ids),
            "epochs": epochs,
            "patience": patience,
            "seed": 0,
            **self.step.evaluate(weights),
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

        curves = this_config(self.folder.curves).reset_index(drop=True)
        hits = hit_rates(this_config(self.folder.selections), self.pool.objects)
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
        settings = report.settings_text(self.pool, c)
        report.plot_curves(result.summary, reference, target, self.out / report.PLOT, settings["title"])
        by_cycle = hit_rate_by_cycle(hits)
        write_text(self.out / report.REPORT, report.markdown(result, by_cycle, settings))
        return result
