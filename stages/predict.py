"""predict: the registry's champion + data/tiles -> data/predictions (per-box and per-tile Parquet).

The champion (models/champion.pt), not necessarily the model trained this cycle, predicts every
unlabeled tile at a low confidence floor: the labelers get the better model's boxes. Labeled
tiles get an embedding only, so diversity sampling knows what is already covered (acorn.detection).
"""

import json
import logging

import pandas as pd
from tqdm import tqdm

from acorn import paths
from acorn.atomic import write_parquet
from acorn.detection import Detector, DetectorConfig, predict_files
from acorn.entrypoint import run_stage
from acorn.labeling.export import read_manifest
from acorn.params import Params

log = logging.getLogger("acorn")


def predict(p: Params) -> None:
    champion = json.loads(paths.REGISTRY.read_text(encoding="utf-8"))["champion_model_version"]
    tiles = pd.read_parquet(paths.TILE_MANIFEST)
    labeled = set(read_manifest(paths.LABELS)["tile_id"])
    detector = Detector(DetectorConfig.from_params(p, paths.CHAMPION))
    images = [paths.TILES / i for i in tiles["image"]]
    boxes, per_tile = [], []
    with tqdm(total=len(tiles), desc="predict", unit="tile") as bar:
        for found in predict_files(detector, images, list(tiles["tile_id"])):
            boxes.append(found.boxes[~found.boxes["tile_id"].isin(labeled)])
            per_tile.append(found.tiles)
            bar.update(len(found.tiles))
    per_tile = pd.concat(per_tile, ignore_index=True)
    is_labeled = per_tile["tile_id"].isin(labeled)
    pool = tiles.drop(columns=["width", "height"]).merge(per_tile[~is_labeled], on="tile_id")
    embedded = per_tile.loc[is_labeled, ["tile_id", "embedding"]].reset_index(drop=True)
    boxes = pd.concat(boxes, ignore_index=True)
    for table in (boxes, pool, embedded):
        table["model_version"] = champion
    write_parquet(boxes, paths.PRED_BOXES)
    write_parquet(pool, paths.PRED_TILES)
    write_parquet(embedded, paths.PRED_LABELED)
    log.info("%d candidate boxes on %d unlabeled tiles by %s", len(boxes), len(pool), champion)


if __name__ == "__main__":
    run_stage(predict)
