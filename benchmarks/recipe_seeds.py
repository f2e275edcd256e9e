"""Which fine-tune recipe to ship, chosen on the validation set with paired seeds.

Each seed draws its own uniform random set of N labeled tiles from a demo pool (the oracle's truth)
and trains every variant on that same set, with the product's own fine-tune and scoring
(``acorn.cycle_step.fine_tune``, what the train stage and ``acorn simulate`` run). A variant is
``name:epochs:freeze:patience``. One row per (seed, variant) is appended to ``OUT/results.csv`` as
it finishes, so a killed run resumes where it stopped. The summary compares each variant with the
first on ``val_map50`` (what chooses) and ``map50`` (the test set, what reports): the mean paired
difference, its t interval, the exact sign-flip p, and "not shown" where the interval holds zero;
and how often the champion gate's choice between two of these models (validation map50 higher by a
margin) disagrees with the test set (``gate.csv``).

    python benchmarks/recipe_seeds.py --repo /path/to/demo --labels 150 --seeds 10 \\
        --out benchmarks/results/recipe_seeds_150 e8_f10:8:10:0 e24_f0:24:0:0

``--repo`` is a repository after ``make demo`` (data/tiles with its truth, data/valset,
data/testset, data/replay, models/base.pt). ``--summary`` prints the table of what is there.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from acorn import paths
from acorn.cycle_step import fine_tune
from acorn.model import training
from acorn.params import Params, load_params
from acorn.simulate.curves import sign_flip_p, t_interval

LEVEL = 0.90
COLUMNS = ["seed", "variant", "labels", "epochs", "freeze", "patience", "seconds", "val_map50", "map50"]


def variant_params(p: Params, spec: str) -> tuple[str, Params]:
    name, epochs, freeze, patience = spec.split(":")
    changes = {"train.epochs": int(epochs), "train.freeze": int(freeze), "train.patience": int(patience)}
    return name, p.with_overrides(changes, f"variant {name}")


def draw_labels(pool: pd.DataFrame, count: int, seed: int) -> list[str]:
    """A seed's labeled set: ``count`` tiles drawn uniformly from the whole pool."""
    order = np.random.default_rng(seed).permutation(len(pool))[:count]
    return sorted(pool["tile_id"].iloc[order])


def run_one(p: Params, ids: list[str], seed: int, images: pd.Series, work: Path) -> tuple[dict, float]:
    started = time.monotonic()
    weights = fine_tune.fine_tune(
        p,
        ids,
        lambda t: (paths.TILES / images[t], paths.TRUTH / f"{t}.txt"),
        training.yolo_pairs(Path(p.val.data)),
        work / "train",
        replay=fine_tune.replay_set(p),
        config=fine_tune.train_config(p, seed=seed),
    )
    sets = {
        name: training.folder_dataset(Path(folder), p.classes, work / f"{name}_set")
        for name, folder in (("val", p.val.data), ("test", p.test.data))
    }
    found = fine_tune.score(p, weights, sets, work / "score")
    return {"val_map50": found["val"].map50, "map50": found["test"].map50}, time.monotonic() - started


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Each variant against the first, paired by seed, over the seeds both have finished."""
    wide = {m: results.pivot(index="seed", columns="variant", values=m) for m in ("val_map50", "map50")}
    variants = list(dict.fromkeys(results["variant"]))
    baseline = variants[0]
    rows = []
    for v in variants[1:]:
        row = {"variant": v, "against": baseline}
        for metric, table in wide.items():
            diff = (table[v] - table[baseline]).dropna()
            low, high = t_interval(diff, LEVEL)
            row |= {
                f"{metric}_seeds": len(diff),
                f"{metric}_diff": diff.mean(),
                f"{metric}_t90_low": low,
                f"{metric}_t90_high": high,
                f"{metric}_sign_flip_p": sign_flip_p(diff),
                f"{metric}_verdict": "not shown"
                if not low > 0 and not high < 0
                else ("better" if low > 0 else "worse"),
            }
        rows.append(row)
    means = results.groupby("variant", sort=False)[["val_map50", "map50", "seconds"]].mean()
    print(means.round(3).to_string())
    return pd.DataFrame(rows)


def gate_agreement(
    results: pd.DataFrame, margins: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05)
) -> pd.DataFrame:
    """How often the champion gate's choice (validation map50 higher by more than a margin) agrees
    with the test set, over every pair of models trained on the same labels (one seed, two
    variants, in both orders): a pair the gate promotes whose test score is lower is a wrong
    promotion; one it holds back whose test score is higher, a better model held back."""
    pairs = results.merge(results, on="seed", suffixes=("_new", "_champion"))
    pairs = pairs[pairs["variant_new"] != pairs["variant_champion"]]
    val_gain = pairs["val_map50_new"] - pairs["val_map50_champion"]
    test_gain = pairs["map50_new"] - pairs["map50_champion"]
    rows = []
    for margin in margins:
        promoted = val_gain > margin
        rows.append(
            {
                "margin": margin,
                "pairs": len(pairs),
                "promoted": int(promoted.sum()),
                "promoted_but_worse_on_test": int((promoted & (test_gain < 0)).sum()),
                "held_back_but_better_on_test": int((~promoted & (test_gain > 0)).sum()),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--labels", type=int, default=150)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--summary", action="store_true", help="only print the summary of what is there")
    ap.add_argument("variants", nargs="*", default=["e8_f10:8:10:0", "e24_f0:24:0:0"])
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    table = out / "results.csv"
    os.chdir(args.repo)
    base = load_params("params.yaml")
    pool = pd.read_parquet(paths.TILE_MANIFEST, columns=["tile_id", "image"])
    images = pool.set_index("tile_id")["image"]
    for seed in range(args.seeds if not args.summary else 0):
        ids = draw_labels(pool, args.labels, seed)
        for spec in args.variants:
            name, p = variant_params(base, spec)
            done = pd.read_csv(table) if table.exists() else pd.DataFrame(columns=COLUMNS)
            if ((done["seed"] == seed) & (done["variant"] == name)).any():
                continue
            with tempfile.TemporaryDirectory(prefix="recipe-") as tmp:
                scores, seconds = run_one(p, ids, seed, images, Path(tmp))
            row = [seed, name, args.labels, p.train.epochs, p.train.freeze, p.train.patience, round(seconds)]
            line = ",".join(map(str, row + [f"{scores['val_map50']:.6f}", f"{scores['map50']:.6f}"]))
            with table.open("a") as f:  # one line per finished run: a killed run loses only its own
                f.write(("" if table.stat().st_size else ",".join(COLUMNS) + "\n") + line + "\n")
            print(line, flush=True)
    if table.exists():
        result = summary(pd.read_csv(table))
        result.to_csv(out / "summary.csv", index=False, float_format="%.4f")
        print(result.T.to_string())
        gate = gate_agreement(pd.read_csv(table))
        gate.to_csv(out / "gate.csv", index=False)
        print(gate.to_string(index=False))


if __name__ == "__main__":
    main()
