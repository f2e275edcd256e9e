"""What the same labels buy with another fine-tune: a simulation's batches, retrained.

A learning curve mixes two limits: which tiles were labeled, and how the fine-tune uses them
(``train.*``: 8 epochs with a frozen backbone suit 50-150 labels, perhaps not 500). This takes
the tiles one run of a finished ``acorn simulate`` folder had labeled after ``--cycle`` cycles and
fine-tunes them again from the base model under each variant of the recipe (``--variant``,
repeatable: comma-separated ``section.key=value`` over params.yaml), with the run's own seed, and
scores each as a cycle is scored. The simulation's own row is the recipe as is, printed beside.

Resumable: rows are appended to ``<out>/refit.csv`` after each fine-tune and a re-run skips them.
Run where the simulation ran, with the pool flags and ``-S`` settings it was given (--budget N
is -S rank.budget=N, --epochs -S train.epochs, --imgsz -S model.imgsz, --base -S model.base):
the pool, the base model and the settings must match the folder's config.json. E.g. after
`make demo`:

    python benchmarks/refit.py benchmarks/results/learning_curve_demo_long --strategy hybrid --seed 4 \
        --cycle 10 -S rank.uncertainty=entropy --variant train.epochs=24 \
        --variant train.epochs=24,train.freeze=0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

import acorn  # noqa: F401  (offline settings first)
from acorn.params import parse_override
from acorn.runtime.atomic import write_csv
from acorn.runtime.entrypoint import setup_logging, unwind_on_sigterm
from acorn.runtime.errors import AcornError, InputError
from acorn.simulate.batches import score_batches
from acorn.simulate.config import SimulateConfig
from acorn.simulate.curves import CURVES, SELECTIONS
from acorn.simulate.folder import CONFIG, folder_identity, settings_differ
from acorn.simulate.report import markdown_table
from acorn.simulate.settings import load_settings, open_simulation_pool


def labeled_after(selections: pd.DataFrame, strategy: str, seed: int, cycle: int) -> list[str]:
    """Every tile the run had labeled by the end of ``cycle``, in the order it picked them."""
    run = selections[(selections["strategy"] == strategy) & (selections["seed"] == seed)]
    if run.empty or run["cycle"].max() < cycle:
        done = 0 if run.empty else int(run["cycle"].max())
        raise InputError(
            f"{strategy} seed {seed} has {done} cycles of selections; --cycle {cycle} asks for more"
        )
    return run[run["cycle"] <= cycle].sort_values(["cycle", "rank"])["tile_id"].astype(str).tolist()


def variant_overrides(text: str) -> dict:
    return dict(parse_override(part) for part in text.split(",") if part)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a finished acorn simulate output folder")
    parser.add_argument("--strategy", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--cycle", type=int, required=True, help="the labels after this many cycles")
    parser.add_argument("--variant", action="append", required=True, help="section.key=value[,...]")
    parser.add_argument("--pool", type=Path, default=Path("data/tiles"), help="as acorn simulate's")
    parser.add_argument("--test", type=Path, help="as acorn simulate's --test")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="as acorn simulate's")
    parser.add_argument("-S", "--set", dest="sets", action="append", default=[], help="as acorn simulate's")
    parser.add_argument("--out", type=Path, default=Path("reports/refit"))
    args = parser.parse_args()

    try:
        p, overrides = load_settings(Path("params.yaml"), {"test": args.test and str(args.test)}, args.sets)
        pool = open_simulation_pool(args.pool, p, overrides, args.test_fraction)
    except AcornError as exc:
        raise SystemExit(str(exc)) from None
    stored = json.loads((args.folder / CONFIG).read_text(encoding="utf-8"))
    differ = settings_differ(stored, folder_identity(pool, SimulateConfig(params=p)))
    if differ:
        raise SystemExit(
            f"{args.folder / CONFIG}: made with another pool or settings ({', '.join(differ)} differ); "
            "give the pool flags and -S settings the simulation was run with"
        )
    curves = pd.read_csv(args.folder / CURVES)
    try:
        ids = labeled_after(pd.read_csv(args.folder / SELECTIONS), args.strategy, args.seed, args.cycle)
    except InputError as exc:
        raise SystemExit(f"{args.folder}: {exc}") from None
    table = args.out / "refit.csv"
    rows = pd.read_csv(table).to_dict("records") if table.is_file() else []
    done = {r["batch"] for r in rows}
    name = f"{args.strategy}-s{args.seed}-c{args.cycle}"
    for variant in args.variant:
        batch = f"{name} {variant}"
        if batch in done:
            continue
        config = SimulateConfig(params=p.with_overrides(variant_overrides(variant)), strategies=("random",))
        for row in score_batches(pool, config, {batch: ids}, args.seed, args.out):
            rows.append(row)
            write_csv(pd.DataFrame(rows), table)
            print(row, flush=True)

    row = curves[
        (curves["strategy"] == args.strategy)
        & (curves["seed"] == args.seed)
        & (curves["cycle"] == args.cycle)
    ]
    as_is = [
        {"batch": f"{name} (the simulation's recipe)", "tiles": len(ids), **r}
        for r in row[["map50", "false_alarm_rate"]].to_dict("records")
    ]
    shown = pd.DataFrame([*as_is, *rows])
    print(markdown_table(shown[["batch", "tiles", "map50", "false_alarm_rate"]]))


if __name__ == "__main__":
    setup_logging()  # the fine-tunes' epochs, a resume, what was removed
    unwind_on_sigterm()  # a stop (kill PID) removes the scratch folder
    main()
