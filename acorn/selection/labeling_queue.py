"""Turn predictions into the ordered batch that goes to the labelers.

The strategy scores and selects the batch as ``acorn simulate`` does (acorn.cycle_step.ranking);
this module only adds what the labeling backend needs: queue order, a ``score`` that rises along
the queue (Label Studio serves the lowest first), the strategy's raw score, image paths and
sizes, and the model version that predicted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from acorn.cycle_step.ranking import embeddings_of, select_batch, strategy_for
from acorn.labeling.base import QUEUE_COLUMNS
from acorn.params import Params
from acorn.selection.strategies import order_by_score


def queue_scores(n: int) -> np.ndarray:
    """The ``score`` of each position of a ranked pool of ``n`` tiles: 0 for rank 1, rising by 1/n.

    Label Studio's labeling stream ("Label All Tasks", uncertainty sampling) serves the task
    whose prediction has the *lowest* score first, as it would the prediction a model is least
    sure of; scores rising along the queue make it serve rank 1, then rank 2, and so on, and a
    Data Manager sorted by prediction score ascending shows the same order. Nine decimals keep
    the scores distinct for pools of up to 10^8 tiles.
    """
    return np.round(np.arange(n) / max(n, 1), 9)


def build_queue(
    boxes: pd.DataFrame,
    pool: pd.DataFrame,
    p: Params,
    batch: int,
    labeled_embeddings: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Rank the unlabeled ``pool``: (queue, the rest of the pool ranked after it, summary).

    ``score`` (:func:`queue_scores`) rises from 0 along the whole pool order (the batch first,
    then the rest by the strategy's score), so a labeling tool serving the lowest score first
    serves this batch in rank order, then tiles still waiting from earlier batches.
    """
    strategy = strategy_for(p)
    embeddings = embeddings_of(pool)
    by_id = pool.set_index("tile_id")
    raw = strategy.score(boxes, pool, embeddings, labeled_embeddings)
    selected = select_batch(
        p,
        strategy,
        boxes,
        pool,
        p.rank.seed,
        embeddings=embeddings,
        labeled_embeddings=labeled_embeddings,
        scores=raw,
    )
    chosen = set(selected)
    rest = [t for t in order_by_score(raw, p.rank.seed) if t not in chosen]
    order = [*selected, *rest]
    table = pd.DataFrame(
        {
            "tile_id": order,
            "rank": np.arange(1, len(order) + 1),
            "score": queue_scores(len(order)),
            "strategy_score": raw.loc[order].round(6).to_numpy(),
            "batch": batch,
            "image": by_id.loc[order, "image"].to_numpy(),
            "width": by_id.loc[order, "width"].to_numpy(),
            "height": by_id.loc[order, "height"].to_numpy(),
            "model_version": by_id.loc[order, "model_version"].to_numpy(),
        },
        columns=QUEUE_COLUMNS,
    )
    n = len(selected)
    queue, waiting = table.iloc[:n].reset_index(drop=True), table.iloc[n:].reset_index(drop=True)
    summary = {
        "batch": batch,
        "strategy": p.rank.strategy,
        "pool_tiles": len(pool),
        "queued_tiles": n,
        # the pool's mean uncertainty: falling towards the queue's means little is left to learn
        "pool_mean_score": round(float(raw.mean()), 6) if len(raw) else 0.0,
        "queue_mean_score": round(float(raw.loc[selected].mean()), 6) if n else 0.0,
        "queued_without_detections": int((by_id.loc[selected, "n_boxes"] == 0).sum())
        if "n_boxes" in by_id
        else 0,
    }
    return queue, waiting, summary
