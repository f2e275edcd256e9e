"""The pure part of the benchmark: recorded runs in, curve metrics and paired comparisons out.

No model, no file: DataFrames of the rows a simulation wrote (``curves.csv``, ``selections.csv``)
and the pool's ground-truth counts. Replaying the recorded selections is what makes a run
resumable; the rest turns learning curves into numbers that rank strategies, and says whether a
difference is larger than what the seeds alone would give.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from acorn.runtime.errors import InputError

# map50 / map50_95 / false_alarm_rate: the test set's (what is reported); val_map50: the validation
# set's (what a design decision, e.g. the default strategy, is chosen on: paired.py --metric)
CURVE_COLUMNS = [
    "strategy",
    "seed",
    "cycle",
    "labeled_tiles",
    "map50",
    "map50_95",
    "false_alarm_rate",
    "val_map50",
]
METRICS = ("map50", "val_map50")  # what a run's AUC, gain and labels to target may be read from
SELECTION_COLUMNS = ["strategy", "seed", "cycle", "rank", "tile_id"]
CURVES, SELECTIONS = "curves.csv", "selections.csv"
BASELINE = "random"
LEVEL = 0.9  # two-sided coverage of the bootstrap interval of a paired difference
RESAMPLES = 10_000


# ---------------------------------------------------------------------------------------------
# Replaying selections (resume)


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
        raise InputError(
            f"{SELECTIONS}: {where} has batches for cycles {sorted(batches)}, expected 1, 2, ..."
        )
    every = pd.Series([t for b in batches.values() for t in b], dtype=str)
    if every.duplicated().any():
        raise InputError(f"{SELECTIONS}: {where} selects {every[every.duplicated()].iloc[0]!r} twice")
    if rows["cycle"].duplicated().any():
        raise InputError(f"{CURVES}: {where} has a cycle twice")
    replay = Replay(done=frozenset(int(c) for c in rows["cycle"]), batches=batches)
    for cycle, labeled in zip(rows["cycle"], rows["labeled_tiles"], strict=True):
        if cycle and cycle not in batches:
            raise InputError(f"{CURVES}: {where} cycle {cycle} has a row but no batch in {SELECTIONS}")
        if len(replay.labeled_before(int(cycle) + 1)) != labeled:
            raise InputError(
                f"{CURVES}: {where} cycle {cycle} says {labeled} labeled tiles; {SELECTIONS} replays "
                f"{len(replay.labeled_before(int(cycle) + 1))}"
            )
    return replay


# ---------------------------------------------------------------------------------------------
# One learning curve


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


# ---------------------------------------------------------------------------------------------
# What a batch holds, what a model flags: measured from ground truth and predictions, no training


def hit_rates(selections: pd.DataFrame, objects: pd.Series) -> pd.DataFrame:
    """Per (strategy, seed, cycle): items picked, ``hits`` (picked items holding at least one
    ground-truth object) and ``hit_rate`` = hits / picked.

    With ~10% of tiles holding an object, a batch that finds more of them is the first thing a
    strategy can buy, and it is known the moment the batch is picked: no model needs training.
    ``objects`` is the number of ground-truth boxes per item, indexed by ``tile_id``.
    """
    counts = selections["tile_id"].astype(str).map(objects)
    if counts.isna().any():
        missing = selections["tile_id"][counts.isna()].iloc[0]
        raise InputError(f"{SELECTIONS}: {missing!r} is not an item of this pool")
    table = (
        selections.assign(hit=counts.to_numpy() > 0)
        .groupby(["strategy", "seed", "cycle"], sort=False)
        .agg(picked=("tile_id", "size"), hits=("hit", "sum"))
        .reset_index()
    )
    return table.assign(hit_rate=table["hits"] / table["picked"])


def hit_rate_by_cycle(hits: pd.DataFrame) -> pd.DataFrame:
    """Mean hit rate over seeds, one row per strategy and one column per cycle (input order kept)."""
    mean = hits.groupby(["strategy", "cycle"], sort=False)["hit_rate"].mean().unstack("cycle")
    mean.columns = [f"cycle {c}" for c in mean.columns]
    return mean.reindex(hits["strategy"].unique()).rename_axis("strategy").reset_index()


def false_alarm_rate(boxes: pd.DataFrame, empty_ids: Sequence[str], threshold: float) -> float:
    """Share of ``empty_ids`` (images without any object) with a detection at or above ``threshold``.

    The test set is mostly background, and a strategy that hunts positives can teach the detector
    to fire everywhere: each flagged empty image is one a person opens for nothing. NaN when there
    is no empty image to measure on.
    """
    if not len(empty_ids):
        return float("nan")
    flagged = boxes.loc[boxes["confidence"] >= threshold, "tile_id"].unique()
    return float(pd.Index(empty_ids).isin(flagged).mean())


# ---------------------------------------------------------------------------------------------
# Summaries over seeds


def summarize_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Per strategy and cycle: labeled tiles; map50 mean, std (over seeds), min and max; mean
    map50-95 and mean false-alarm rate on empty test images; mean validation map50."""
    grouped = curves.groupby(["strategy", "cycle"], sort=False)
    summary = grouped.agg(
        labeled_tiles=("labeled_tiles", "max"),
        seeds=("seed", "nunique"),
        map50_mean=("map50", "mean"),
        map50_std=("map50", "std"),
        map50_min=("map50", "min"),
        map50_max=("map50", "max"),
        map50_95_mean=("map50_95", "mean"),
        false_alarm_mean=("false_alarm_rate", "mean"),
        val_map50_mean=("val_map50", "mean"),
    ).reset_index()
    return summary.round(4)


RUN_COLUMNS = ["strategy", "seed", "auc", "gain", "labels", "hit_rate", "false_alarm"]


def check_same_grid(curves: pd.DataFrame) -> None:
    """Refuse runs that were not measured at the same labeled counts, naming the first such run.

    An AUC is a mean over the labeling budget: a run stopped after cycle 0, or one with another
    budget, has another budget, and its AUC compared with the others' reads as a strategy's
    verdict (a cycle-0-only run once printed "worse"). The grid expected is the one with the most
    cycles (the most common among those); every run must have exactly it.
    """
    ordered = curves.sort_values(["strategy", "seed", "cycle"], kind="stable")
    points = ordered["cycle"].astype(str) + ":" + ordered["labeled_tiles"].astype(str)
    grids = points.groupby([ordered["strategy"], ordered["seed"]], sort=False).agg(" ".join)
    if grids.nunique() <= 1:
        return
    sizes = grids.str.count(" ") + 1
    expected = grids[sizes == sizes.max()].value_counts().index[0]
    (strategy, seed), grid = next((k, g) for k, g in grids.items() if g != expected)
    raise InputError(
        f"{strategy} seed {seed} is incomplete or on another label grid: (cycle:labeled tiles) {grid}, "
        f"the other runs {expected}; finish it (resume its simulation) or leave it out"
    )


def run_table(
    curves: pd.DataFrame,
    target_map50: float | None,
    hits: pd.DataFrame | None = None,
    metric: str = "map50",
) -> pd.DataFrame:
    """One row per (strategy, seed) run: the numbers strategies are compared on; runs on different
    label grids are refused (``check_same_grid``).

    ``auc`` (area_under_curve), ``gain`` (the last model's map50 minus cycle 0's: what the labels
    added to the base model; NaN without a cycle 0, i.e. a cold start), ``labels`` (labels_to_reach
    the target; NaN when never or without a target), ``hit_rate`` (all hits over all picked items of the run, from ``hit_rates``; NaN
    without) and ``false_alarm`` (the false-alarm rate of the run's last model: the one a user
    would keep). ``metric``: the curve these are read from, the test set's ``map50`` (what a
    report says) or the validation set's ``val_map50`` (what a choice between strategies is made
    on, so that the test set does not choose what it then reports).
    """
    if metric not in METRICS or metric not in curves:
        raise InputError(f"no {metric!r} curve to compare on (curves hold: {', '.join(curves.columns)})")
    check_same_grid(curves)
    rows = []
    for (strategy, seed), run in curves.groupby(["strategy", "seed"], sort=False):
        reach = None
        if target_map50 is not None:
            reach = labels_to_reach(run["labeled_tiles"], run[metric], target_map50)
        by_cycle = run.set_index("cycle")[metric]
        rows.append(
            {
                "strategy": strategy,
                "seed": seed,
                "auc": area_under_curve(run["labeled_tiles"], run[metric]),
                "gain": float(by_cycle[by_cycle.index.max()] - by_cycle[0]) if 0 in by_cycle else np.nan,
                "labels": np.nan if reach is None else float(reach),
                "false_alarm": float(run.loc[run["cycle"].idxmax(), "false_alarm_rate"]),
            }
        )
    runs = pd.DataFrame(rows, columns=[c for c in RUN_COLUMNS if c != "hit_rate"])
    if hits is None or hits.empty:
        return runs.assign(hit_rate=np.nan)[RUN_COLUMNS]
    pooled = hits.groupby(["strategy", "seed"])[["hits", "picked"]].sum()
    rate = (pooled["hits"] / pooled["picked"]).rename("hit_rate").reset_index()
    return runs.merge(rate, on=["strategy", "seed"], how="left")[RUN_COLUMNS]


def strategy_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: area under the learning curve and labels to reach the target, over seeds.

    ``reached`` counts the seeds that got there; the label statistics are over those seeds only, so
    read them together with ``reached`` (they are NaN when no seed did, or without a target).
    """
    table = (
        runs.groupby("strategy", sort=False)
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

    return pd.DataFrame(
        {
            "strategy": table["strategy"],
            "seeds": table["seeds"].astype(str),
            "AUC map50 mean ± std [min, max]": table.apply(auc, axis=1).astype(str),
            "labels to target mean [min, max]": _labels_cells(table, has_target, detailed=True),
        }
    )


def _labels_cells(table: pd.DataFrame, has_target: bool, detailed: bool) -> list[str]:
    def cell(r: pd.Series) -> str:
        if not has_target:
            return "n/a (no target)"
        if r["reached"] == 0:
            return "not reached"
        text = f"{r['labels_mean']:.0f}"
        if detailed:
            text += f" [{r['labels_min']:.0f}, {r['labels_max']:.0f}]"
        return text if r["reached"] == r["seeds"] else f"{text} in {r['reached']:.0f}/{r['seeds']:.0f} seeds"

    return [cell(r) for _, r in table.iterrows()]


# ---------------------------------------------------------------------------------------------
# Paired comparison against the baseline


def t_quantile(level: float, df: int) -> float:
    """The ``q`` with P(|T| <= q) = ``level`` for Student's t with ``df`` (integer) degrees of freedom.

    No statistics library is a dependency of acorn, so the closed form for integer ``df``
    (Abramowitz & Stegun 26.7.3-4: with theta = atan(q / sqrt(df)), a finite series in sin theta and
    cos theta) is inverted by bisection; exact to ~1e-12, and cheap for the few seeds a benchmark has.
    """
    if df < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need df >= 1 and a level in (0, 1); got df={df}, level={level}")
    low, high = 0.0, 1.0
    while _t_coverage(high, df) < level:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if _t_coverage(mid, df) < level else (low, mid)
    return 0.5 * (low + high)


def _t_coverage(q: float, df: int) -> float:
    """P(|T| <= q) for Student's t with integer ``df`` (Abramowitz & Stegun 26.7.3 odd, 26.7.4 even)."""
    theta = math.atan(q / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2:
        term, total = math.cos(theta), 0.0  # cos theta, then x (2k / (2k + 1)) cos^2 theta each step
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= c2 * 2 * k / (2 * k + 1)
        return (2.0 / math.pi) * (theta + s * total)  # df = 1: no series, 2 theta / pi
    term, total = 1.0, 0.0  # 1, then x ((2k - 1) / 2k) cos^2 theta each step
    for k in range(1, df // 2 + 1):
        total += term
        term *= c2 * (2 * k - 1) / (2 * k)
    return s * total


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval of the mean of ``values``: mean +- t(level, n - 1) x sd / sqrt(n).

    The interval a reader can trust at 5-10 seeds: the percentile bootstrap uses the plug-in spread
    and normal-like quantiles, so at n = 5 it is ~30% narrower and covers well below ``level``.
    Fewer than two values carry no spread: (NaN, NaN).
    """
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return float("nan"), float("nan")
    half = t_quantile(level, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


EXACT_FLIPS = 20  # up to this many differences every sign flip is enumerated (2^20 sums, 8 MB)


def sign_flip_p(values: Sequence[float], resamples: int = 100_000, seed: int = 0) -> float:
    """Two-sided paired sign-flip (permutation) p-value of "the mean difference is zero".

    Under no effect each per-seed difference is as likely to have the other sign, so the observed
    |sum| is compared with the |sum| of every sign assignment: exact for up to ``EXACT_FLIPS``
    values (all 2^n, built by doubling a vector of partial sums), else ``resamples`` seeded random
    assignments with the usual (hits + 1) / (resamples + 1). No distribution is assumed; its floor
    is 2 / 2^n (0.0625 at 5 seeds, 0.002 at 10), so few seeds cannot give a small p. NaN for none.
    """
    x = np.asarray(values, dtype=np.float64)
    if not len(x):
        return float("nan")
    observed = abs(x.sum()) - 1e-12 * max(1.0, float(np.abs(x).sum()))  # ties count as extreme
    if len(x) <= EXACT_FLIPS:
        sums = np.zeros(1)
        for v in x:
            sums = np.concatenate([sums + v, sums - v])
        return float((np.abs(sums) >= observed).mean())
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(resamples, len(x)))
    hits = int((np.abs(signs @ x) >= observed).sum())
    return (hits + 1) / (resamples + 1)


def bootstrap_interval(
    values: Sequence[float], level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (seeded, so a report is reproducible).

    Fewer than two values carry no spread: (NaN, NaN) rather than a zero-width interval that would
    look decisive. With few values the interval is narrower than the truth (it cannot leave the
    values' range): shown beside ``t_interval`` and ``sign_flip_p``, never alone.
    """
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


PAIRED_COLUMNS = ["strategy", "paired", "diff", "low", "high", "boot_low", "boot_high", "p"]


def paired_difference(
    runs: pd.DataFrame,
    value: str,
    baseline: str = BASELINE,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """Per strategy: ``value`` minus the baseline's in the same seed, over the seeds both ran.

    The runs of one seed share their starting model, fine-tune seed and tie-break order, so the
    per-seed difference removes what the seed alone does (a lucky split, a lucky init) and the
    interval is about the strategy. Columns ``paired`` (seeds compared), ``diff`` (mean difference),
    ``low`` and ``high`` (``t_interval``: what the verdict reads), ``boot_low`` and ``boot_high``
    (``bootstrap_interval``, beside it) and ``p`` (``sign_flip_p``); NaN for the baseline itself and
    without a baseline.
    """
    wide = runs.pivot(index="seed", columns="strategy", values=value)
    rows = []
    for strategy in runs["strategy"].unique():
        diffs = np.array([])
        if baseline in wide and strategy != baseline:
            diffs = (wide[strategy] - wide[baseline]).dropna().to_numpy()
        low, high = t_interval(diffs, level)
        boot_low, boot_high = bootstrap_interval(diffs, level, resamples, seed)
        rows.append(
            {
                "strategy": strategy,
                "paired": len(diffs),
                "diff": float(diffs.mean()) if len(diffs) else np.nan,
                "low": low,
                "high": high,
                "boot_low": boot_low,
                "boot_high": boot_high,
                "p": sign_flip_p(diffs, seed=seed),
            }
        )
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def comparison_table(runs: pd.DataFrame, baseline: str = BASELINE, seed: int = 0) -> pd.DataFrame:
    """Per strategy: means over seeds of the run numbers, the gain over cycle 0 with a t interval
    over seeds (what labels add, whatever the strategy), and the paired differences to the baseline
    of the AUC and of the last model's false-alarm rate on empty test images (``paired_difference``
    columns, prefixed ``auc_`` and ``false_alarm_``)."""
    means = (
        runs.groupby("strategy", sort=False)
        .agg(
            seeds=("seed", "nunique"),
            auc=("auc", "mean"),
            gain=("gain", "mean"),
            reached=("labels", "count"),
            labels_mean=("labels", "mean"),
            hit_rate=("hit_rate", "mean"),
            false_alarm=("false_alarm", "mean"),
        )
        .reset_index()
    )
    spread = [t_interval(runs.loc[runs["strategy"] == s, "gain"].dropna()) for s in means["strategy"]]
    means["gain_low"], means["gain_high"] = [lo for lo, _ in spread], [hi for _, hi in spread]
    for value in ("auc", "false_alarm"):
        paired = paired_difference(runs, value, baseline, seed=seed).drop(columns="paired")
        means = means.merge(paired.add_prefix(f"{value}_").rename(columns={f"{value}_strategy": "strategy"}))
    return means


NOT_SHOWN = "not shown"


def verdict(low: pd.Series, high: pd.Series, higher_is_better: bool = True) -> pd.Series:
    """'better' / 'worse' when the whole (t) interval is on one side of zero, else 'not shown': a
    difference whose interval holds zero is not evidence either way; '' where there is no interval
    (the baseline, one seed)."""
    above, below = low > 0, high < 0
    good, bad = (above, below) if higher_is_better else (below, above)
    text = np.select([low.isna() | high.isna(), good, bad], ["", "better", "worse"], NOT_SHOWN)
    return pd.Series(text, index=low.index)


def format_comparison(
    comparison: pd.DataFrame, has_target: bool, baseline: str = BASELINE, metric: str = "map50"
) -> pd.DataFrame:
    """Human-readable cells of ``comparison_table`` for the report and the console: the paired AUC
    difference with its t interval, the bootstrap interval beside it and the exact sign-flip p;
    ``metric`` names the curve the runs were read from (``run_table``)."""
    ci = f"{LEVEL:.0%} CI"

    def interval(lo: float, hi: float) -> str:
        return f"[{lo:+.3f}, {hi:+.3f}]"

    def diff(prefix: str) -> list[str]:
        cells = []
        for d, lo, hi in comparison[[f"{prefix}_diff", f"{prefix}_low", f"{prefix}_high"]].itertuples(
            index=False
        ):
            if np.isnan(d):
                cells.append("")
            elif np.isnan(lo):
                cells.append(f"{d:+.3f} (1 seed: no interval)")
            else:
                cells.append(f"{d:+.3f} {interval(lo, hi)}")
        return cells

    def boot(r: pd.Series) -> str:
        return "" if np.isnan(r["auc_boot_low"]) else interval(r["auc_boot_low"], r["auc_boot_high"])

    def gain(r: pd.Series) -> str:
        if np.isnan(r["gain"]):
            return "n/a (no cycle 0)"
        spread = "" if np.isnan(r["gain_low"]) else f" {interval(r['gain_low'], r['gain_high'])}"
        return f"{r['gain']:+.3f}{spread}"

    fewer = verdict(comparison["false_alarm_low"], comparison["false_alarm_high"], higher_is_better=False)
    alarm_words = fewer.map({"better": " (fewer)", "worse": " (more)", NOT_SHOWN: f" ({NOT_SHOWN})"}).fillna(
        ""
    )
    return pd.DataFrame(
        {
            "strategy": comparison["strategy"],
            "seeds": comparison["seeds"].astype(str),
            f"AUC {metric}": comparison["auc"].map(lambda v: f"{v:.3f}"),
            f"{metric} gain over cycle 0 [t {ci}]": comparison.apply(gain, axis=1).astype(str),
            f"AUC − {baseline} [t {ci}]": diff("auc"),
            f"bootstrap {ci}": comparison.apply(boot, axis=1).astype(str),
            "sign-flip p": comparison["auc_p"].map(lambda v: "" if np.isnan(v) else f"{v:.3g}"),
            "verdict": verdict(comparison["auc_low"], comparison["auc_high"]),
            "labels to target": _labels_cells(comparison, has_target, detailed=False),
            "hit rate": comparison["hit_rate"].map(lambda v: "" if np.isnan(v) else f"{v:.2f}"),
            "false alarms, last model": comparison["false_alarm"].map(
                lambda v: "n/a" if np.isnan(v) else f"{v:.2f}"
            ),
            f"false alarms − {baseline} [t {ci}]": [
                cell + word for cell, word in zip(diff("false_alarm"), alarm_words, strict=True)
            ],
        }
    )
