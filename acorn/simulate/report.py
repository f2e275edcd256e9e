"""What a simulation says, for a person: report.md (tables to paste into a README) and the plot.

Everything here formats numbers already computed (acorn.simulate.curves); nothing is measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from acorn.runtime.atomic import atomic_path
from acorn.simulate.curves import BASELINE, LEVEL, RESAMPLES, format_comparison, format_strategy_table

if TYPE_CHECKING:
    from acorn.simulate.config import SimulateConfig
    from acorn.simulate.folder import Result
    from acorn.simulate.pools import Pool

PLOT, REPORT, SCREEN_REPORT = "learning_curve.png", "report.md", "screen.md"


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-markdown table, floats to 3 decimals, NaN as an empty cell, text cells as written.

    ``DataFrame.to_markdown`` (tabulate) pads the columns, so the raw report.md reads as a table
    too. Floats are formatted here and tabulate's number parsing is off: it would otherwise round
    text that looks like a number (a p-value of "0.0625" printed as 0.062).
    """
    cells = df.astype(object).map(lambda v: "" if pd.isna(v) else f"{v:.3f}" if isinstance(v, float) else v)
    return cells.to_markdown(index=False, disable_numparse=True) + "\n"


def settings_text(pool: Pool, config: SimulateConfig) -> dict:
    """What a reader of the report needs to know about the run, in words."""
    c, p, d = config, config.params, pool.description
    return {
        "title": (
            f"{d['pool']}: {d['items']} items, budget {c.budget}/cycle, {p.train.epochs} epochs, "
            f"imgsz {p.model.imgsz}, {_seed_words(c.seed_numbers)}"
            + (f", {p.predict.candidates} candidates/cycle" if p.predict.candidates else "")
            + (f", each seed {c.pool_share:.0%} of the pool's frames" if c.pool_share < 1.0 else "")
        ),
        "test": f"{d['test']} ({d['test_items']} images, {int((pool.test['objects'] == 0).sum())} empty)",
        "val": f"{d['val']} ({d['val_items']} images)",
        "base": c.base,
        "target": c.target,
        "threshold": p.rank.threshold,
        "base_rate": pool.base_rate,
    }


def _seed_words(seeds: range) -> str:
    if len(seeds) == 1:
        return f"seed {seeds.start}"
    return f"{len(seeds)} seeds" if seeds.start == 0 else f"seeds {seeds.start}-{seeds[-1]}"


def markdown(result: Result, hits_by_cycle: pd.DataFrame, settings: dict) -> str:
    """report.md: settings, the paired comparison against random, hit rates, the curves' spread."""
    reference, target = result.reference, result.target
    if reference is None:
        whole_pool = "Whole pool: not trained (--full-epochs 0), so no target."
    else:
        goal = (
            f"target ({settings['target']:.0%} of it) {target:.3f}"
            if target is not None
            else "no target (map50 0)"
        )
        whole_pool = (
            f"Whole pool ({reference['labeled_tiles']} items, {_reference_epochs(reference)}): map50 "
            f"{reference['map50']:.3f}; {goal}."
        )
    has_baseline = BASELINE in set(result.comparison["strategy"])
    paired = (
        f"Each strategy's AUC and false-alarm rate minus {BASELINE}'s in the same seed, averaged over "
        f"seeds, with a {LEVEL:.0%} Student-t interval of that mean, the percentile bootstrap interval "
        f"beside it ({RESAMPLES:,} seeded resamples of the per-seed differences; at few seeds it is "
        "narrower than the t interval and covers less than it says) and the exact two-sided paired "
        "sign-flip p (every assignment of signs to the per-seed differences; its floor is 2 / 2^seeds, "
        "0.0625 at 5 seeds). The runs of one seed start from the same base model with no labels, "
        "fine-tune with the same seed and break ties in the same seeded order, so within a seed only "
        "the strategy differs. *better* / *worse*: the whole t interval is on one side of zero; *not "
        "shown*: it holds zero, so these seeds do not show a difference either way."
        if has_baseline
        else f"{BASELINE} was not simulated: no paired differences (add it to --strategies)."
    )
    return (
        f"# Learning curves: {settings['title']}\n\n"
        f"Test set (scores only): {settings['test']}. Validation set (chooses each fine-tune's epoch): "
        f"{settings['val']}. Base: {settings['base']}. Every cycle fine-tunes from the base on all "
        "labels so far, every one of them in training.\n"
        f"{whole_pool}\n\n"
        f"## Per strategy, paired against {BASELINE}\n\n"
        f"{paired}\n\n"
        "- AUC map50: area under test map50 over labeled tiles divided by their range (the curve's mean).\n"
        "- Every number here is the test set's, which reports. The validation set's map50 per cycle is "
        "in curves.csv and summary.csv (val_map50): a choice between strategies is made on it "
        "(`python benchmarks/paired.py <folder> <baseline> --metric val_map50`), not on these.\n"
        "- map50 gain over cycle 0: the last model's test map50 minus the base model's (what the labels "
        f"added), mean over seeds with a {LEVEL:.0%} t interval over the seeds (not paired).\n"
        "- Labels to target: the fewest labeled tiles at which test map50 reached the target (mean over "
        "the seeds that reached it).\n"
        "- Hit rate: share of the labeled items that hold at least one ground-truth object, over all "
        f"cycles (the pool's base rate, what {BASELINE} finds on average: {settings['base_rate']:.2f}).\n"
        "- False alarms: share of the test set's empty images on which the run's last model detects "
        f"anything at confidence ≥ {settings['threshold']:g} (rank.threshold); lower is better; n/a "
        "without empty test images.\n\n"
        f"{markdown_table(format_comparison(result.comparison, target is not None))}\n"
        "## Hit rate per cycle (mean over seeds)\n\n"
        f"{markdown_table(hits_by_cycle)}\n"
        "## AUC spread over seeds\n\n"
        f"{markdown_table(format_strategy_table(result.strategies, target is not None))}\n"
        "## Per cycle: test map50 over seeds\n\n"
        f"{markdown_table(result.summary)}\n"
        f"![learning curves]({PLOT})\n"
    )


def _reference_epochs(reference: dict) -> str:
    """How far the reference trained, and whether that is a ceiling or a lower bound on it."""
    if reference.get("converged"):
        return (
            f"stopped at epoch {reference['epochs_run']} of up to {reference['epochs']}, no better validation "
            f"score in {reference['patience']} epochs; best epoch {reference['best_epoch']}: converged"
        )
    if "epochs_run" in reference:
        return f"{reference['epochs']} epochs, not levelled off: a lower bound on the ceiling"
    return f"{reference['epochs']} epochs"


def screen_markdown(table: pd.DataFrame, base_rate: float, settings: dict) -> str:
    """screen.md: the first batch's hit rate per strategy, best first, against the pool's base rate."""
    return (
        f"# First-batch screen: {settings['title']}\n\n"
        f"Base: {settings['base']}. Each strategy picks its first batch from the base model's "
        "predictions, once per seed; hit rate: share of the batch holding at least one ground-truth "
        f"object. No model is trained. The pool's base rate (random's expected hit rate): {base_rate:.3f}.\n\n"
        f"{markdown_table(table)}"
    )


def plot_curves(
    summary: pd.DataFrame, reference: dict | None, target: float | None, path: Path, title: str
) -> None:
    """Labeled tiles vs test map50: mean line and min-max band per strategy, reference and target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for strategy, group in summary.groupby("strategy", sort=False):
        x = group["labeled_tiles"]
        (line,) = ax.plot(x, group["map50_mean"], marker="o", label=strategy)
        ax.fill_between(x, group["map50_min"], group["map50_max"], color=line.get_color(), alpha=0.15)
    if reference is not None:
        whole = f"whole pool ({reference['labeled_tiles']})"
        ax.axhline(reference["map50"], color="black", linestyle=":", label=whole)
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
