"""predict: the registry's champion + data/tiles -> data/predictions (per-box and per-tile Parquet).

The champion (models/champion.pt), not necessarily the model trained this cycle, predicts the
unlabeled tiles at a low confidence floor: the labelers get the better model's boxes. Labeled
tiles get an embedding only, so diversity sampling knows what is already covered (acorn.model.detection).
Predictions are cached per frame outside the DAG and the outputs are streamed in parts, so an
unchanged champion costs almost nothing, new frames cost only their tiles and a killed run
resumes where it stopped (acorn.model.predict_cache).

``predict.candidates: N`` predicts only N unlabeled tiles per cycle (acorn.cycle_step.candidates,
as ``acorn simulate`` chooses them): the tiles
waiting in the labeling queue, last cycle's most undecided tiles and a fresh stratified sample
seeded with ``rank.seed`` + the cycle; rank then ranks those. What the previous cycle left (its
top tiles, the backlog) is kept in a file outside the DAG (``.acorn/cache/predict/carry-over/``)
and the last batch is read from data/queue.csv: both come from later in the loop (data/queue.csv
is rank's output), so declaring them as deps would make a cycle in the DAG. They act like the
labeling backend's state: a record of what happened, read as it is. Candidates are chosen per
cycle (the labels' next batch number) and a re-run of the same cycle reads the same carry-over.

``predict.engine: ray`` runs the detector through Ray Data (acorn.model.ray_engine); ray is imported
only then.
"""

import json
import logging
from contextlib import AbstractContextManager, nullcontext

import pandas as pd
import pyarrow.parquet as pq

from acorn import paths
from acorn.cycle_step import candidates
from acorn.labeling.export import read_manifest
from acorn.model.detection import Detector, DetectorConfig
from acorn.model.predict_cache import CACHE_ROOT, Engine, LocalEngine, predict_pool
from acorn.params import Params
from acorn.runtime.entrypoint import run_stage
from acorn.runtime.errors import InputError
from acorn.selection.candidates import read_carry_over, write_carry_over

log = logging.getLogger("acorn")


def champion_version() -> str:
    try:
        return str(json.loads(paths.REGISTRY.read_text(encoding="utf-8"))["champion_model_version"])
    except FileNotFoundError:
        raise InputError(f"{paths.REGISTRY}: not found; run the register stage first") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise InputError(f"{paths.REGISTRY}: no champion_model_version; re-run the register stage") from None


def engine_for(p: Params, config: DetectorConfig) -> AbstractContextManager[Engine]:
    """The engine ``predict.engine`` names; Ray is imported (and started) only for ``ray``."""
    if p.predict.engine == "ray":
        from acorn.model.ray_engine import RayEngine

        return RayEngine(config, p.model.device, p.predict.ray_actors)
    return nullcontext(LocalEngine(lambda: Detector(config), config.batch))


def queued_tiles() -> list[str]:
    """The tiles of the last batch rank queued (data/queue.csv); none before the first."""
    if not paths.QUEUE.is_file():
        return []
    try:
        return pd.read_csv(paths.QUEUE, usecols=["tile_id"], dtype={"tile_id": str})["tile_id"].tolist()
    except ValueError:
        raise InputError(f"{paths.QUEUE}: no tile_id column; re-run the rank stage") from None


def choose_candidates(p: Params, labeled: set[str], cycle: int) -> tuple[pd.DataFrame, list[str]]:
    """This cycle's candidates (acorn.cycle_step.candidates) and the backlog among them."""
    wanted = candidates.columns(p, pq.read_schema(paths.TILE_MANIFEST).names)
    tiles = pd.read_parquet(paths.TILE_MANIFEST, columns=wanted)
    pool = tiles[~tiles["tile_id"].isin(labeled)]
    waiting, top = read_carry_over(CACHE_ROOT, cycle)
    chosen = candidates.choose(p, pool, p.rank.seed + cycle, waiting=[*waiting, *queued_tiles()], carried=top)
    counts = chosen["source"].value_counts()
    log.info(
        "cycle %d: %d candidates of %d unlabeled tiles (%d waiting to be labeled, %d carried over, "
        "%d sampled with seed %d)",
        cycle,
        len(chosen),
        len(pool),
        counts.get("waiting", 0),
        counts.get("carried", 0),
        counts.get("sample", 0),
        p.rank.seed + cycle,
    )
    return chosen, chosen.loc[chosen["source"] == "waiting", "tile_id"].tolist()


def predict(p: Params) -> None:
    champion = champion_version()
    config = DetectorConfig.from_params(p, paths.CHAMPION)
    if not paths.CHAMPION.is_file():
        raise InputError(f"{paths.CHAMPION}: the champion's weights are missing; re-run the register stage")
    candidates.check(p)
    labels = read_manifest(paths.LABELS)
    labeled = set(labels["tile_id"])
    cycle = int(labels["batch"].max()) + 1 if not labels.empty else 1  # rank's next batch number
    chosen = waiting = None
    if p.predict.candidates and paths.TILE_MANIFEST.is_file():  # else predict_pool says what is missing
        chosen, waiting = choose_candidates(p, labeled, cycle)
    with engine_for(p, config) as engine:
        stats = predict_pool(
            paths.TILE_MANIFEST,
            paths.TILES,
            labeled,
            engine,
            config,
            champion,
            {"boxes": paths.PRED_BOXES, "tiles": paths.PRED_TILES, "labeled": paths.PRED_LABELED},
            candidates=None if chosen is None else set(chosen["tile_id"]),
        )
    if chosen is not None:
        predicted = pd.read_parquet(paths.PRED_TILES, columns=["tile_id", "max_confidence"])
        top = candidates.carried_over(p, predicted, waiting)
        write_carry_over(CACHE_ROOT, cycle + 1, waiting, top)
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
