"""What a batch's mix of empty and positive tiles buys, apart from any strategy.

From the shipped base model, one fine-tune per batch with the train stage's recipe (params.yaml,
as ``acorn simulate`` reads it), each batch ``--size`` pool tiles of which a given share holds a
squirrel (``--shares``; the demo pool's own share is 0.11, so 0.11 is what random labeling gets),
the rest empty; batches of one seed are nested draws (acorn.simulate.batches.mixed_batches), and all
use that seed's fine-tune, so within a seed only the mix differs. Each is scored as a simulation's
cycle is: test map50 and the false-alarm rate on the test set's empty tiles.

Resumable: rows are appended to ``<out>/mix.csv`` after each fine-tune and a re-run skips them.
Run in a repository after ``make demo`` (data/tiles, data/testset, data/replay, models/base.pt):

    python benchmarks/batch_mix.py --size 150 --shares 0,0.11,0.5,1 --seeds 2 --out benchmarks/results/batch_mix_demo

On 2 CPU cores each fine-tune and its scoring take ~5 min (imgsz 320, 8 epochs, 150 + 100 replay).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import acorn  # noqa: F401  (offline settings first)
from acorn.runtime.atomic import write_csv
from acorn.runtime.entrypoint import setup_logging, unwind_on_sigterm
from acorn.simulate.batches import mixed_batches, score_batches
from acorn.simulate.config import SimulateConfig
from acorn.simulate.pools import open_pool
from acorn.simulate.report import markdown_table
from acorn.simulate.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, default=Path("data/tiles"))
    parser.add_argument("--size", type=int, default=150, help="tiles per batch")
    parser.add_argument("--shares", default="0,0.11,0.5,1", help="shares of tiles holding an object")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("reports/batch-mix"))
    parser.add_argument("-S", "--set", dest="sets", action="append", default=[], help="section.key=value")
    args = parser.parse_args()

    p, _ = load_settings(Path("params.yaml"), {}, args.sets)
    config = SimulateConfig(params=p, strategies=("random",), seeds=args.seeds, cycles=1)
    pool = open_pool(args.pool, p.classes, Path(p.test.data), 0.2, Path(p.val.data))
    shares = [float(s) for s in args.shares.split(",")]
    table = args.out / "mix.csv"
    rows = pd.read_csv(table).to_dict("records") if table.is_file() else []
    for seed in range(args.seeds):
        finished = {r["batch"] for r in rows if r["seed"] == seed}
        batches = mixed_batches(pool.items, args.size, shares, seed)
        todo = {name: ids for name, ids in batches.items() if name not in finished}
        if not todo:
            continue
        for row in score_batches(pool, config, todo, seed, args.out):  # one workspace per seed
            rows.append(row)
            write_csv(pd.DataFrame(rows), table)
            print(row, flush=True)

    done = pd.DataFrame(rows)
    summary = (
        done.groupby("batch", sort=False)
        .agg(
            seeds=("seed", "nunique"),
            with_objects=("with_objects", "mean"),
            map50=("map50", "mean"),
            map50_sd=("map50", "std"),
            false_alarms=("false_alarm_rate", "mean"),
        )
        .reset_index()
    )
    print(
        f"\n{args.size} tiles per batch, fine-tuned from {p.model.base} (train.epochs {p.train.epochs}, "
        f"imgsz {p.model.imgsz}, {p.train.replay_images} replay close-ups)\n"
    )
    print(markdown_table(summary))


if __name__ == "__main__":
    setup_logging()  # the fine-tunes' epochs, a resume, what was removed
    unwind_on_sigterm()  # a stop (kill PID) removes the scratch folder
    main()
