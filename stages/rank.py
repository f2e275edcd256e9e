"""rank: data/predictions -> data/queue.csv, pushed to the labeling backend.

The query strategy scores tiles, the batch selection picks the budget (acorn.strategies); the
whole pool is ranked so that tiles still waiting from earlier batches get fresh predictions.
"""

import logging

import numpy as np
import pandas as pd

from acorn import paths
from acorn.atomic import write_csv, write_json
from acorn.entrypoint import run_stage
from acorn.labeling.backends import get_backend
from acorn.labeling.export import read_manifest
from acorn.params import Params
from acorn.queue import build_queue

log = logging.getLogger("acorn")


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
