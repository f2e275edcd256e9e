"""Paired differences of a finished ``acorn simulate`` folder against any strategy, not only random.

The report compares every strategy with random; choosing between two good ones (is the candidate
better than the default?) needs the same paired seeds read against the default instead. This reads
``<folder>/curves.csv`` and prints the report's comparison table with ``baseline`` in random's
place: the mean AUC difference per strategy over the seeds both ran, with its t 90% interval, the
bootstrap interval beside it, the exact paired sign-flip p, the verdict ("not shown" when the t
interval holds zero), and the last model's false-alarm difference. A run that is incomplete (e.g.
stopped after its cycle-0 row) or on another label grid is refused by name, not scored. Nothing
is trained.

``--metric val_map50`` reads the validation set's curve instead of the test set's: a choice between
strategies (the default, a candidate) is made on it, so that the test set only reports what was
chosen. Folders made before the validation set have no such curve.

    python benchmarks/paired.py benchmarks/results/learning_curve_raccoon hybrid
    python benchmarks/paired.py benchmarks/results/learning_curve_demo hybrid --strategies random,least_confidence:min
    python benchmarks/paired.py <folder> random --metric val_map50
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from acorn.runtime.errors import InputError
from acorn.simulate.curves import CURVES, METRICS, comparison_table, format_comparison, run_table
from acorn.simulate.report import markdown_table


def paired_against(
    curves: pd.DataFrame, baseline: str, strategies: list[str] | None = None, metric: str = "map50"
) -> pd.DataFrame:
    """The comparison table of ``curves`` (rows of one simulation) with ``baseline`` as reference,
    read from the ``metric`` curve (test ``map50`` or validation ``val_map50``)."""
    names = list(curves["strategy"].unique())
    for name in [baseline, *(strategies or [])]:
        if name not in names:
            raise InputError(f"strategy {name!r} is not in these curves (they hold: {', '.join(names)})")
    if strategies:
        curves = curves[curves["strategy"].isin([baseline, *strategies])]
    comparison = comparison_table(run_table(curves, None, metric=metric), baseline=baseline)
    table = format_comparison(comparison, has_target=False, baseline=baseline, metric=metric)
    return table.drop(columns=["labels to target", "hit rate"], errors="ignore")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="an acorn simulate output folder")
    parser.add_argument("baseline", help="the strategy every other one is compared with, e.g. hybrid")
    parser.add_argument("--strategies", default="", help="comma-separated: only these (default: all)")
    parser.add_argument(
        "--metric",
        choices=METRICS,
        default="map50",
        help="the curve compared: test map50 or validation val_map50",
    )
    args = parser.parse_args()
    path = args.folder / CURVES
    if not path.is_file():
        raise SystemExit(f"{path}: no such file (run acorn simulate --out {args.folder} first)")
    chosen = [s for s in args.strategies.split(",") if s]
    try:
        print(markdown_table(paired_against(pd.read_csv(path), args.baseline, chosen, args.metric)))
    except InputError as exc:
        raise SystemExit(f"{path}: {exc}") from None


if __name__ == "__main__":
    main()
