"""How many labels a batch spends on near-copies, with and without ``rank.near_copies``.

A pool of demo frames, each with near-copies made as a webcam makes them a minute later
(``benchmarks/near_copies.py``'s ``near_copy``), is tiled by the tile stage's code (which groups
the near-copies), predicted with one model, and ranked by each strategy asked. For the batch of
``rank.budget`` it counts the tiles that repeat a (near-copy group, tile position) already in the
batch: labels spent on a patch the batch already has, with ``rank.near_copies`` 0 and with its
params.yaml value, both through the ranking step the rank stage and ``acorn simulate`` run
(``acorn.cycle_step.ranking.select_batch``).

    python benchmarks/near_copy_batch.py --model models/model.pt --frames 30 --copies 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from near_copies import near_copy  # noqa: E402

from acorn.cycle_step.ranking import select_batch, strategy_for  # noqa: E402
from acorn.data.near_copies import GROUP_COLUMN  # noqa: E402
from acorn.data.tiling import TileGrid, tile_dataset  # noqa: E402
from acorn.demo.synth import make_webcam_set  # noqa: E402
from acorn.model.detection import Detector, DetectorConfig, predict_files  # noqa: E402
from acorn.params import load_params  # noqa: E402


def repeats(batch: pd.DataFrame) -> int:
    """Tiles whose (group, row, col) is already in the batch above them."""
    return int(batch.duplicated([GROUP_COLUMN, "row", "col"]).sum())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=30, help="distinct demo frames")
    parser.add_argument("--copies", type=int, default=2, help="near-copies of each")
    parser.add_argument("--strategies", default="hybrid,entropy,random")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    p = load_params(args.params)
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        make_webcam_set(raw, args.frames, seed=args.seed + 60_000, prefix="nb", workers=2)
        from PIL import Image

        for path in sorted((raw / "images").glob("*.jpg")):
            frame = Image.open(path).convert("RGB")
            for c in range(args.copies):
                near_copy(frame, rng).save(raw / "images" / f"{path.stem}_copy{c}.jpg", quality=90)
                (raw / "labels" / f"{path.stem}_copy{c}.txt").write_text("")  # unused: no truth needed
        grid = TileGrid(p.tile.rows, p.tile.cols, p.tile.overlap)
        start = time.perf_counter()
        manifest = tile_dataset(
            raw, Path(tmp) / "tiles", grid, p.classes, near_copy_bits=p.tile.near_copy_bits
        )
        frames = manifest.drop_duplicates("frame_id")
        truth = frames["frame_id"].str.split("_copy").str[0]
        print(
            f"{len(frames)} frames ({args.frames} x {1 + args.copies}), {len(manifest)} tiles, tiled in "
            f"{time.perf_counter() - start:.0f} s; {frames[GROUP_COLUMN].nunique()} near-copy groups found, "
            f"{truth.nunique()} true; groups that are exactly a true group: "
            f"{int((frames.groupby(GROUP_COLUMN)['frame_id'].apply(lambda s: s.str.split('_copy').str[0].nunique()) == 1).sum())}"
        )
        detector = Detector(DetectorConfig.from_params(p, args.model))
        paths = [Path(tmp) / "tiles" / i for i in manifest["image"]]
        parts = list(predict_files(detector, paths, manifest["tile_id"].tolist()))
    boxes = pd.concat([d.boxes for d in parts], ignore_index=True)
    tiles = pd.concat([d.tiles for d in parts], ignore_index=True)
    embeddings = np.stack(tiles["embedding"].to_numpy()) if "embedding" in tiles else None
    places = manifest.set_index("tile_id")[[GROUP_COLUMN, "row", "col"]]
    tiles = tiles.drop(columns=[c for c in places if c in tiles]).join(places, on="tile_id")
    unlimited = p.with_overrides({"rank.near_copies": 0})
    for name in args.strategies.split(","):
        strategy = strategy_for(p, name)
        picks = select_batch(unlimited, strategy, boxes, tiles, p.rank.seed, embeddings=embeddings)
        limited = select_batch(p, strategy, boxes, tiles, p.rank.seed, embeddings=embeddings)
        print(
            f"{name}: batch of {len(picks)}: {repeats(places.loc[picks])} tiles repeat a (group, position) "
            f"already in it without the limit; {repeats(places.loc[limited])} with rank.near_copies "
            f"{p.rank.near_copies}; {len(set(picks) & set(limited))} tiles in both batches"
        )


if __name__ == "__main__":
    main()
