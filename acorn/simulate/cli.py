"""``acorn simulate``: the command line of the learning-curve benchmark (acorn.simulate.run).

Settings are params.yaml's, as ``dvc repro`` reads them: the convenience flags (--budget, --epochs,
--imgsz, --base, --test) and ``-S section.key=value`` (as ``dvc exp run -S``) override sections of
it; the other flags (--pool, --strategies, --seeds, --cycles, ...) are what only a benchmark has.

Only the options' defaults (acorn.simulate.config) are imported with this module: every ``acorn``
command, ``acorn --help`` included, loads it, and the simulation itself (pandas, ultralytics) is
loaded when the command runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from acorn.simulate.config import DEFAULT_STRATEGIES, SCREEN_STRATEGIES, SimulateConfig

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("acorn")


def simulate_command(
    params: Annotated[Path, typer.Option("--params", help="params.yaml to read")] = Path("params.yaml"),
    pool: Annotated[
        Path,
        typer.Option(
            help="a tiled pool (manifest.parquet, images/, truth/) or a YOLO folder (images/, labels/)"
        ),
    ] = Path("data/tiles"),
    test: Annotated[
        Path | None,
        typer.Option(
            help="YOLO test folder: sets test.data (a YOLO-folder pool holds out a share without it)"
        ),
    ] = None,
    test_fraction: Annotated[float, typer.Option(help="share of a YOLO folder held out as test set")] = 0.2,
    strategies: Annotated[
        str | None,
        typer.Option(
            help="comma-separated; name:aggregate overrides rank.aggregate for one, "
            "hybrid/<strategy>[:aggregate] rank.uncertainty (hybrid/least_confidence:min) "
            f"(default: {','.join(DEFAULT_STRATEGIES)}; with --screen: {','.join(SCREEN_STRATEGIES)})"
        ),
    ] = None,
    seeds: Annotated[int, typer.Option(help="runs per strategy (seeds 0..n-1)")] = SimulateConfig.seeds,
    first_seed: Annotated[
        int, typer.Option(help="start the seeds here (first..first+n-1): one share of a split simulation")
    ] = SimulateConfig.first_seed,
    cycles: Annotated[int, typer.Option(help="labeling cycles per run")] = SimulateConfig.cycles,
    budget: Annotated[int | None, typer.Option(help="items labeled per cycle: sets rank.budget")] = None,
    epochs: Annotated[
        int | None, typer.Option(help="fine-tuning epochs per cycle: sets train.epochs")
    ] = None,
    full_epochs: Annotated[
        int | None,
        typer.Option(help="epochs of the whole-pool reference model (default train.epochs; 0: none)"),
    ] = SimulateConfig.full_epochs,
    full_patience: Annotated[
        int,
        typer.Option(
            help="stop the reference after this many epochs without a better validation score and keep "
            "its best epoch: a converged ceiling (0: every epoch, the last kept)"
        ),
    ] = SimulateConfig.full_patience,
    pool_share: Annotated[
        float,
        typer.Option(
            help="each seed chooses from its own seeded share of the pool's frames (the same for every "
            "strategy of the seed): seeds then vary the pool, not only the training noise (1: the whole pool)"
        ),
    ] = SimulateConfig.pool_share,
    imgsz: Annotated[int | None, typer.Option(help="train / predict / test size: sets model.imgsz")] = None,
    base: Annotated[
        str | None, typer.Option(help="base .pt, or a .yaml for a cold start: sets model.base")
    ] = None,
    target: Annotated[
        float, typer.Option(help="fraction of the whole-pool map50 to reach")
    ] = SimulateConfig.target,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", "-S", help="section.key=value over params.yaml (repeatable), as dvc exp run -S"
        ),
    ] = None,
    screen_only: Annotated[
        bool,
        typer.Option(
            "--screen", help="only each strategy's first-batch hit rate from the base model (no training)"
        ),
    ] = False,
    out: Annotated[Path, typer.Option(help="output folder; a re-run resumes it")] = Path("reports/simulate"),
    merge: Annotated[
        list[Path] | None,
        typer.Option(
            help="output folder of the same settings whose runs are added to --out first (repeatable)"
        ),
    ] = None,
) -> None:
    """Learning curves per strategy with an oracle: N cycles x seeds, resumable; tables, plot, report."""
    from acorn.simulate.curves import format_comparison
    from acorn.simulate.report import PLOT, REPORT, SCREEN_REPORT
    from acorn.simulate.run import simulate
    from acorn.simulate.screen import screen
    from acorn.simulate.settings import load_settings, open_simulation_pool

    flags = {"budget": budget, "epochs": epochs, "imgsz": imgsz, "base": base, "test": test and str(test)}
    p, overrides = load_settings(params, flags, set_ or [])
    names = strategies.split(",") if strategies else SCREEN_STRATEGIES if screen_only else DEFAULT_STRATEGIES
    config = SimulateConfig(
        params=p,
        strategies=tuple(s.strip() for s in names if s.strip()),
        seeds=seeds,
        first_seed=first_seed,
        cycles=cycles,
        target=target,
        full_epochs=full_epochs,
        full_patience=full_patience,
        pool_share=pool_share,
    )
    source = open_simulation_pool(pool, p, overrides, test_fraction)
    if screen_only:
        found = screen(source, config, out)
        _print(found.table, f"first batch hit rate; the pool's base rate {found.base_rate:.3f}")
        log.info("screen.csv and %s in %s", SCREEN_REPORT, found.out)
        return
    result = simulate(source, config, out, merge or ())
    target_map50 = "no target" if result.target is None else f"target {result.target:.3f}"
    reference = result.reference
    whole_pool = (
        "no whole-pool reference" if reference is None else f"whole pool map50 {reference['map50']:.3f}"
    )
    _print(format_comparison(result.comparison, result.target is not None), f"{whole_pool}; {target_map50}")
    log.info("curves, summaries, %s and %s in %s", PLOT, REPORT, result.out)


def _print(table: pd.DataFrame, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    shown = Table(title=title)
    for column in table.columns:
        shown.add_column(str(column))
    for row in table.itertuples(index=False):
        shown.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    Console().print(shown)
