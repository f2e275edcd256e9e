"""Turn predictions into the ordered batch that goes to the labelers.

The strategy (acorn.strategies) scores and selects; this module only adds what the labeling
backend needs: queue order, a ``score`` that rises along the queue (Label Studio serves the
lowest first), the strategy's raw score, image paths and sizes, and the model version that
predicted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from acorn.labeling.base import QUEUE_COLUMNS
from acorn.params import Params
from acorn.strategies import STRATEGIES, Strategy, StrategyError, get_strategy, order_by_score


def strategy_for(p: Params, name: str | None = None) -> Strategy:
    """The strategy ``rank.*`` describes; ``name`` overrides ``rank.strategy`` for one comparison
    entry of ``acorn simulate``: ``entropy``, ``entropy:mean`` (after a colon, ``rank.aggregate``)
    or ``hybrid/least_confidence:min`` (after a slash, hybrid's shortlist ``rank.uncertainty``), so
    one simulation, paired seed by seed, can hold hybrids over different shortlists."""
    r = p.rank
    entry, _, aggregate = (name or r.strategy).partition(":")
    strategy, slash, shortlist = entry.partition("/")
    if slash and strategy != "hybrid":
        raise StrategyError(f"strategy {name!r}: only hybrid takes a shortlist strategy after '/'")
    if slash and not shortlist:
        raise StrategyError(f"strategy {name!r}: name the shortlist strategy after '/', e.g. hybrid/entropy")
    uncertainty = shortlist or r.uncertainty
    if strategy == "hybrid" and aggregate:  # the entry's reduction is its shortlist's
        uncertainty = f"{uncertainty.partition(':')[0]}:{aggregate}"
    if (
        aggregate
        and strategy in STRATEGIES
        and strategy != "hybrid"
        and not hasattr(STRATEGIES[strategy], "aggregate")
    ):
        raise StrategyError(f"strategy {name!r}: {strategy} has no aggregate to set")
    return get_strategy(
        strategy,
        aggregate=aggregate or r.aggregate,
        threshold=r.threshold,
        conf_floor=p.predict.conf_floor,
        band=r.band,
        t_low=r.t_low,
        t_high=r.t_high,
        uncertainty=uncertainty,
        shortlist_factor=r.shortlist_factor,
    )


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
    embeddings = np.stack(pool["embedding"].to_numpy()) if "embedding" in pool and len(pool) else None
    by_id = pool.set_index("tile_id")
    groups = by_id[p.rank.balance_by] if p.rank.balance_by and p.rank.balance_by in by_id else None
    selected = strategy.select(
        boxes,
        pool,
        p.rank.budget,
        p.rank.seed,
        groups=groups,
        embeddings=embeddings,
        labeled_embeddings=labeled_embeddings,
    )
    raw = strategy.score(boxes, pool, embeddings, labeled_embeddings)
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
