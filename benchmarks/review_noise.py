"""How many of the oracle's injected label errors does the review queue put in its top K?

    python benchmarks/review_noise.py --repo /path/to/demo-repo --weights models/base.pt \
        --weights models/champion.pt --out benchmarks/results/review_noise

On a `make demo` repository (its data/tiles and its models), this takes the pool's tiles that
were never labeled (so that no model named here trained on them: the predictions are
out-of-sample, as the champion's are for a new batch), every one with an object and as many
empty ones drawn at random (seed 0): a batch richer in objects than the pool, as an
uncertainty strategy's batches are. Each model predicts them once (the predict stage's
settings, params' defaults). Then, per noise setting (one kind of error at a time, or all four
at once), rate and seed, the oracle's noise model (acorn.labeling.noise) corrupts the truth,
the review (acorn.labeling.review.score_labels) ranks the tiles, and the queue's top K is
compared with the corrupted tiles: precision (share of the K that carry an injected error) and
recall (share of the corrupted tiles found), beside random's precision (the corrupted share).

Writes ``results.csv`` (one row per model, setting, rate, seed and K) and ``summary.csv`` (mean
over seeds) to ``--out``, and prints the summary.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from acorn.data.formats import yolo_to_xyxy
from acorn.labeling.noise import KINDS, PoolReference, corrupt, records_table
from acorn.labeling.review import score_labels
from acorn.model.detection import Detector, DetectorConfig, predict_files
from acorn.params import NoiseParams, Params

LABEL = ["tile_id", "class_id", "x1", "y1", "x2", "y2"]


def batch_tiles(repo: Path, seed: int = 0) -> pd.DataFrame:
    """Unlabeled tiles: all with an object, and as many empty ones at random."""
    tiles = pd.read_parquet(
        repo / "data/tiles/manifest.parquet", columns=["tile_id", "image", "width", "height"]
    )
    labeled_file = repo / "data/labels/manifest.csv"
    labeled = (
        set(pd.read_csv(labeled_file, dtype={"tile_id": str})["tile_id"]) if labeled_file.exists() else set()
    )
    tiles = tiles[~tiles["tile_id"].isin(labeled)]
    n = tiles["tile_id"].map(lambda t: (repo / "data/tiles/truth" / f"{t}.txt").stat().st_size > 0)
    positive, empty = tiles[n], tiles[~n]
    chosen = empty.sample(n=min(len(positive), len(empty)), random_state=seed)
    return pd.concat([positive, chosen]).sort_values("tile_id", ignore_index=True)


def read_truth(repo: Path, tiles: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each tile's true boxes as ``(n, 5)`` class, pixel corners."""
    truth = {}
    for t, w, h in tiles[["tile_id", "width", "height"]].itertuples(index=False):
        rows = np.array((repo / "data/tiles/truth" / f"{t}.txt").read_text().split(), dtype=np.float64)
        rows = rows.reshape(-1, 5)
        truth[t] = np.column_stack([rows[:, 0], yolo_to_xyxy(rows[:, 1:], w, h)])
    return truth


def predict(repo: Path, weights: str, tiles: pd.DataFrame, cache: Path) -> pd.DataFrame:
    """The model's boxes for ``tiles`` (cached in ``cache``: a re-run predicts nothing)."""
    if cache.exists():
        return pd.read_parquet(cache)
    detector = Detector(DetectorConfig.from_params(Params(), repo / weights))
    images = [repo / "data/tiles" / i for i in tiles["image"]]
    parts = [
        d.boxes
        for d in tqdm(
            predict_files(detector, images, tiles["tile_id"].tolist()),
            total=-(-len(tiles) // 64),
            desc=f"predict {weights}",
        )
    ]
    boxes = pd.concat(parts, ignore_index=True)[["tile_id", "class_id", "confidence", "x1", "y1", "x2", "y2"]]
    cache.parent.mkdir(parents=True, exist_ok=True)
    boxes.to_parquet(cache)
    return boxes


def measure(
    tiles: pd.DataFrame,
    truth: dict[str, np.ndarray],
    found: pd.DataFrame,
    reference: PoolReference,
    noise: NoiseParams,
    ks: list[int],
    confidence: float,
) -> list[dict]:
    labels, records = [], []
    for t, w, h in tiles[["tile_id", "width", "height"]].itertuples(index=False):
        answer, errors = corrupt(t, truth[t], w, h, noise, reference)
        labels += [(t, *row) for row in answer]
        records += errors
    labels = pd.DataFrame(labels, columns=LABEL).astype({"class_id": "int64"})
    wrong = set(records_table(records)["tile_id"])
    table = tiles[["tile_id"]].assign(annotation_id=1, batch=1, model_version="")
    ranked = score_labels(labels, found, table, n_classes=1, confidence=confidence)["tile_id"].tolist()
    rows = []
    for k in ks:
        hits = len(set(ranked[:k]) & wrong)
        rows.append(
            {
                "k": k,
                "corrupted": len(wrong),
                "found": hits,
                "precision": hits / k,
                "recall": hits / len(wrong) if wrong else np.nan,
                "random_precision": len(wrong) / len(tiles),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=Path())
    parser.add_argument("--weights", action="append", help="relative to --repo; repeat for several")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 25, 50, 100])
    parser.add_argument("--confidence", type=float, default=Params().review.confidence)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    weights = args.weights or ["models/base.pt"]

    tiles = batch_tiles(args.repo)
    truth = read_truth(args.repo, tiles)
    reference = PoolReference.from_truth(args.repo / "data/tiles/truth")
    print(f"{len(tiles)} tiles ({sum(len(b) > 0 for b in truth.values())} with objects)")
    settings = [(kind, {kind: r}) for kind in KINDS for r in args.rates]
    settings += [("all", dict.fromkeys(KINDS, r)) for r in args.rates]
    rows = []
    for w in weights:
        found = predict(args.repo, w, tiles, args.out / f"predictions-{Path(w).stem}.parquet")
        for (name, rates), seed in tqdm(
            [(s, seed) for s in settings for seed in args.seeds], desc=f"score {w}"
        ):
            noise = NoiseParams(**rates, seed=seed)
            for row in measure(tiles, truth, found, reference, noise, args.ks, args.confidence):
                rate = next(iter(rates.values()))
                rows.append({"weights": w, "noise": name, "rate": rate, "seed": seed, **row})
    results = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    results.to_csv(args.out / "results.csv", index=False)
    summary = (
        results.groupby(["weights", "noise", "rate", "k"], sort=False)[
            ["corrupted", "found", "precision", "recall", "random_precision"]
        ]
        .mean()
        .round(3)
        .reset_index()
    )
    summary.to_csv(args.out / "summary.csv", index=False)
    print(summary.to_string(index=False))


if __name__ == "__main__":
    main()
