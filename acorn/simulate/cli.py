"""``acorn simulate``: the command line of the learning-curve benchmark (acorn.simulate.run)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Annotated

import typer

from acorn.simulate.run import (
    DEFAULT_STRATEGIES,
    PLOT,
    REPORT,
    SimulateConfig,
    format_strategy_table,
    open_pool,
    simulate,
)

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
            help="YOLO test folder (default: test.data for a tiled pool; held out of a YOLO folder)"
        ),
    ] = None,
    test_fraction: Annotated[float, typer.Option(help="share of a YOLO folder held out as test set")] = 0.2,
    strategies: Annotated[
        str, typer.Option(help="comma-separated; name:aggregate overrides rank.aggregate for one")
    ] = ",".join(DEFAULT_STRATEGIES),
    seeds: Annotated[int, typer.Option(help="runs per strategy (seeds 0..n-1)")] = 3,
    cycles: Annotated[int, typer.Option(help="labeling cycles per run")] = 5,
    budget: Annotated[int | None, typer.Option(help="items labeled per cycle (default rank.budget)")] = None,
    epochs: Annotated[
        int | None, typer.Option(help="fine-tuning epochs per cycle (default train.epochs)")
    ] = None,
    full_epochs: Annotated[
        int | None, typer.Option(help="epochs of the whole-pool reference model (default: --epochs)")
    ] = None,
    imgsz: Annotated[
        int | None, typer.Option(help="train / predict / test size (default model.imgsz)")
    ] = None,
    base: Annotated[
        str | None, typer.Option(help="base .pt, or a .yaml for a cold start (default model.base)")
    ] = None,
    target: Annotated[float, typer.Option(help="fraction of the whole-pool map50 to reach")] = 0.95,
    out: Annotated[Path, typer.Option(help="output folder; a re-run resumes it")] = Path("reports/simulate"),
) -> None:
    """Learning curves per strategy with an oracle: N cycles x seeds, resumable; tables, plot, report."""
    from rich.console import Console
    from rich.table import Table

    from acorn.params import load_params
    from acorn.training import TrainConfig

    p = load_params(params)
    t = p.train
    config = SimulateConfig(
        strategies=tuple(s.strip() for s in strategies.split(",") if s.strip()),
        seeds=seeds,
        cycles=cycles,
        target=target,
        full_epochs=full_epochs,
        base=base or p.model.base,
        budget=p.rank.budget if budget is None else budget,
        train=dataclasses.replace(
            TrainConfig.from_params(p),
            epochs=t.epochs if epochs is None else epochs,
            imgsz=p.model.imgsz if imgsz is None else imgsz,
        ),
        val_fraction=t.val_fraction,
        replay_data=t.replay_data,
        replay_images=t.replay_images,
        conf_floor=p.predict.conf_floor,
        iou=p.predict.iou,
        max_det=p.predict.max_det,
        predict_batch=p.predict.batch,
        aggregate=p.rank.aggregate,
        threshold=p.rank.threshold,
        balance_by=p.rank.balance_by,
    )
    tiled = (pool / "manifest.parquet").is_file()
    source = open_pool(pool, p.classes, test or (Path(p.test.data) if tiled else None), test_fraction)
    result = simulate(source, config, out)

    has_target = result.reference["map50"] > 0
    table = Table(title=f"whole pool map50 {result.reference['map50']:.3f}; target {target:.0%} of it")
    shown = format_strategy_table(result.strategies, has_target)
    for column in shown.columns:
        table.add_column(column)
    for row in shown.itertuples(index=False):
        table.add_row(*row)
    Console().print(table)
    log.info("curves, summaries, %s and %s in %s", PLOT, REPORT, result.out)
