"""rank: data/predictions -> data/queue.csv, pushed to the labeling backend.

The query strategy scores tiles, the batch selection picks the budget (acorn.selection.strategies); the
whole pool is ranked so that tiles still waiting from earlier batches get fresh predictions.
"""

import logging
import os
from collections.abc import Mapping

import numpy as np
import pandas as pd

from acorn import paths
from acorn.labeling.backends import get_backend
from acorn.labeling.base import PushResult
from acorn.labeling.export import read_manifest
from acorn.params import Params
from acorn.runtime.atomic import write_csv, write_json
from acorn.runtime.entrypoint import run_stage
from acorn.selection.labeling_queue import build_queue

log = logging.getLogger("acorn")


def push_held_back(backend: str, env: Mapping[str, str]) -> bool:
    """An experiment's batch (DVC sets DVC_EXP_NAME in `dvc exp run`, queued or not) is for comparing
    runs: pushed to Label Studio it would put tiles of every variant in front of the labelers.
    ACORN_PUSH_IN_EXPERIMENTS=1 pushes anyway; the oracle, a simulation, is always pushed to."""
    return (
        backend == "label-studio"
        and bool(env.get("DVC_EXP_NAME"))
        and env.get("ACORN_PUSH_IN_EXPERIMENTS") != "1"
    )


def rank(p: Params) -> None:
    boxes = pd.read_parquet(paths.PRED_BOXES)
    pool = pd.read_parquet(paths.PRED_TILES)
    labeled = pd.read_parquet(paths.PRED_LABELED)
    labels = read_manifest(paths.LABELS)
    batch = int(labels["batch"].max()) + 1 if not labels.empty else 1
    covered = np.stack(labeled["embedding"].to_numpy()) if len(labeled) else None
    queue, waiting, summary = build_queue(boxes, pool, p, batch, labeled_embeddings=covered)
    for table in (queue, waiting):
        table["image"] = [str(paths.TILES / i) for i in table["image"]]
    if push_held_back(p.labeling.backend, os.environ):
        log.info(
            "experiment %s: batch not pushed to Label Studio (ACORN_PUSH_IN_EXPERIMENTS=1 pushes it)",
            os.environ["DVC_EXP_NAME"],
        )
        result = PushResult()
    else:
        result = get_backend(p).push(queue, boxes, waiting)
    write_csv(queue, paths.QUEUE)
    write_json(paths.RANK_METRICS, summary)
    log.info(
        "batch %d: %d tiles queued by %s (%d new, %d refreshed)",
        batch,
        len(queue),
        p.rank.strategy,
        result.created,
        result.updated,
    )


if __name__ == "__main__":
    run_stage(rank)
