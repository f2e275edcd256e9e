"""predict: the registry's champion + data/tiles -> data/predictions (per-box and per-tile Parquet).

The champion (models/champion.pt), not necessarily the model trained this cycle, predicts every
unlabeled tile at a low confidence floor: the labelers get the better model's boxes. Labeled
tiles get an embedding only, so diversity sampling knows what is already covered (acorn.detection).
Predictions are cached per frame outside the DAG and the outputs are streamed in parts, so an
unchanged champion costs almost nothing, new frames cost only their tiles and a killed run
resumes where it stopped (acorn.prediction_store).
"""

import json
import logging

from acorn import paths
from acorn.detection import Detector, DetectorConfig
from acorn.entrypoint import run_stage
from acorn.errors import InputError
from acorn.labeling.export import read_manifest
from acorn.params import Params
from acorn.prediction_store import CACHE_ROOT, predict_pool

log = logging.getLogger("acorn")


def champion_version() -> str:
    try:
        return str(json.loads(paths.REGISTRY.read_text(encoding="utf-8"))["champion_model_version"])
    except FileNotFoundError:
        raise InputError(f"{paths.REGISTRY}: not found; run the register stage first") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise InputError(f"{paths.REGISTRY}: no champion_model_version; re-run the register stage") from None


def predict(p: Params) -> None:
    champion = champion_version()
    config = DetectorConfig.from_params(p, paths.CHAMPION)
    if not paths.CHAMPION.is_file():
        raise InputError(f"{paths.CHAMPION}: the champion's weights are missing; re-run the register stage")
    stats = predict_pool(
        paths.TILE_MANIFEST,
        paths.TILES,
        set(read_manifest(paths.LABELS)["tile_id"]),
        lambda: Detector(config),
        config,
        champion,
        {"boxes": paths.PRED_BOXES, "tiles": paths.PRED_TILES, "labeled": paths.PRED_LABELED},
    )
    log.info(
        "%d tiles predicted, %d from the cache (%s); %d candidate boxes on %d unlabeled tiles by %s",
        stats.predicted_tiles,
        stats.cached_tiles,
        CACHE_ROOT,
        stats.boxes,
        stats.unlabeled_tiles,
        champion,
    )


if __name__ == "__main__":
    run_stage(predict)
