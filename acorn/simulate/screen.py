"""``acorn simulate --screen``: each strategy's first batch from the base model, no training.

The hit rate of a first batch (the share of it holding an object) costs one predict pass over the
pool, where a learning curve costs a fine-tune per cycle: screen every strategy, then simulate the
few that find objects.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from acorn.runtime.atomic import sole_writer, write_csv, write_text
from acorn.runtime.errors import ParamsError
from acorn.simulate import report
from acorn.simulate.config import SimulateConfig
from acorn.simulate.curves import hit_rates
from acorn.simulate.folder import SCREEN, OutputFolder, Screen
from acorn.simulate.pools import Pool
from acorn.simulate.step import OracleStep


def screen(pool: Pool, config: SimulateConfig, out: Path) -> Screen:
    """Each strategy's first batch from the base model's predictions, and the share of it holding an
    object, for every seed: no training, so all strategies can be screened before simulating a few.

    Always recomputed in full (one predict pass over the pool; with ``predict.candidates`` over
    each seed's candidates), so it has no resume state and leaves the folder's config.json alone.
    """
    out = Path(out)
    with sole_writer(out / "work", "acorn simulate --screen"):
        if config.cold:
            raise ParamsError(
                f"model.base {config.base}: screening needs a trained base model to predict with"
            )
        step = OracleStep(pool, config, OutputFolder(pool, config, out))
        picks = []
        for name in config.strategies:
            for seed in config.seed_numbers:
                batch, _ = step.select(name, seed, 1, [], step.available(seed))
                picks.append(pd.DataFrame({"strategy": name, "seed": seed, "cycle": 1, "tile_id": batch}))
        runs = hit_rates(pd.concat(picks, ignore_index=True), pool.objects).drop(columns="cycle")
        table = screen_table(runs)
        out.mkdir(parents=True, exist_ok=True)
        write_csv(runs, out / SCREEN)
        settings = report.settings_text(pool, config)
        write_text(out / report.SCREEN_REPORT, report.screen_markdown(table, pool.base_rate, settings))
        return Screen(runs=runs, table=table, base_rate=pool.base_rate, out=out)


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
