"""Turn predictions into the ordered batch that goes to the labelers.

The strategy (acorn.strategies) scores and selects; this module only adds what the labeling
backend needs: queue order, a ``score`` that decreases along the queue (Label Studio sorts by
it), the strategy's raw score, image paths and sizes, and the model version that predicted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from acorn.labeling.base import QUEUE_COLUMNS
from acorn.params import Params
from acorn.strategies import get_strategy


def build_queue(boxes: pd.DataFrame, pool: pd.DataFrame, p: Params, batch: int) -> tuple[pd.DataFrame, dict]:
    """Rank the unlabeled ``pool`` and return (queue, summary for metrics/rank.json)."""
    strategy = get_strategy(
        p.rank.strategy,
        aggregate=p.rank.aggregate,
        threshold=p.rank.threshold,
        conf_floor=p.predict.conf_floor,
    )
    embeddings = np.stack(pool["embedding"].to_numpy()) if "embedding" in pool and len(pool) else None
    by_id = pool.set_index("tile_id")
    groups = by_id[p.rank.balance_by] if p.rank.balance_by and p.rank.balance_by in by_id else None
    selected = strategy.select(boxes, pool, p.rank.budget, p.rank.seed, groups=groups, embeddings=embeddings)
    raw = strategy.score(boxes, pool, embeddings)
    chosen = by_id.loc[selected]
    n = len(selected)
    queue = pd.DataFrame(
        {
            "tile_id": selected,
            "rank": np.arange(1, n + 1),
            "score": np.round(1.0 - np.arange(n) / max(n, 1), 6),
            "strategy_score": raw.loc[selected].round(6).to_numpy(),
            "batch": batch,
            "image": chosen["image"].to_numpy(),
            "width": chosen["width"].to_numpy(),
            "height": chosen["height"].to_numpy(),
            "model_version": chosen["model_version"].to_numpy(),
        },
        columns=QUEUE_COLUMNS,
    )
    summary = {
        "batch": batch,
        "strategy": p.rank.strategy,
        "pool_tiles": len(pool),
        "queued_tiles": n,
        # the pool's mean uncertainty: falling towards the queue's means little is left to learn
        "pool_mean_score": round(float(raw.mean()), 6) if len(raw) else 0.0,
        "queue_mean_score": round(float(raw.loc[selected].mean()), 6) if n else 0.0,
        "queued_without_detections": int((chosen["n_boxes"] == 0).sum()) if "n_boxes" in chosen else 0,
    }
    return queue, summary
