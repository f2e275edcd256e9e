"""The strategy ``rank.*`` names and the batch it picks: what the rank stage (through
acorn.selection.labeling_queue) and ``acorn simulate`` both rank with.

The strategies themselves are acorn.selection.strategies; this is where params.yaml meets them. The seed is
the caller's: the rank stage's is ``rank.seed``, a simulation's one per run and cycle.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from acorn.data.near_copies import GROUP_COLUMN, POSITION_COLUMNS
from acorn.params import Params
from acorn.selection.strategies import STRATEGIES, Strategy, StrategyError, get_strategy, order_by_score


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


def embeddings_of(tiles: pd.DataFrame) -> np.ndarray | None:
    """The tiles' embeddings as one (n, d) array, in row order; None when they have none."""
    return np.stack(tiles["embedding"].to_numpy()) if "embedding" in tiles and len(tiles) else None


def first_near_copies(tiles: pd.DataFrame, per_slot: int, order: list[str]) -> np.ndarray:
    """Which rows of ``tiles`` a batch may take: the first ``per_slot`` of each (near-copy group,
    tile position) in ``order`` (tile ids, the strategy's ranking); tiles without a group (a
    manifest from before the hash) always. Near-copy frames show the same patch at one position,
    so two of those tiles would pay twice for one lesson (acorn.data.near_copies)."""
    keys = [GROUP_COLUMN, *POSITION_COLUMNS]
    place = pd.Series(np.arange(len(order)), index=order)
    ranked = tiles.assign(_place=place.reindex(tiles["tile_id"]).to_numpy()).sort_values(
        "_place", kind="stable"
    )
    seen = ranked.groupby(keys, sort=False, dropna=False).cumcount().reindex(tiles.index).to_numpy()
    return (seen < per_slot) | tiles[keys].isna().any(axis=1).to_numpy()


def select_batch(
    p: Params,
    strategy: Strategy,
    boxes: pd.DataFrame | None,
    tiles: pd.DataFrame,
    seed: int,
    *,
    embeddings: np.ndarray | None = None,
    labeled_embeddings: np.ndarray | None = None,
    scores: pd.Series | None = None,
) -> list[str]:
    """The ``rank.budget`` tiles of ``tiles`` (the unlabeled ones ranked this cycle) to label next,
    in rank order, balanced over ``rank.balance_by`` when the tiles have that column, and taking
    at most ``rank.near_copies`` tiles per place of a near-copy group, the ones the strategy
    scores highest (``first_near_copies``; the others only when the rest cannot fill the batch).

    ``boxes``: the model's boxes (those of other tiles are ignored; None for a strategy that needs
    none); ``embeddings``: one row per tile (``embeddings_of``); ``labeled_embeddings``: what is
    labeled already, so that diversity and hybrid know what is covered; ``scores``: the strategy's
    scores of ``tiles`` when the caller has them already (a diversity score over a large pool is
    not cheap), else computed here when the near-copy limit needs them."""
    keys = {GROUP_COLUMN, *POSITION_COLUMNS}
    if p.rank.near_copies and keys <= set(tiles.columns):
        if scores is None:
            scores = strategy.score(boxes, tiles, embeddings, labeled_embeddings)
        order = order_by_score(scores, seed)
        allowed = first_near_copies(tiles, p.rank.near_copies, order)
    else:
        allowed = np.ones(len(tiles), dtype=bool)
    picks = _select(p, strategy, boxes, tiles, seed, p.rank.budget, allowed, embeddings, labeled_embeddings)
    short = p.rank.budget - len(picks)
    if short > 0 and not allowed.all():
        picks += _select(p, strategy, boxes, tiles, seed, short, ~allowed, embeddings, labeled_embeddings)
    return picks


def _select(
    p: Params,
    strategy: Strategy,
    boxes: pd.DataFrame | None,
    tiles: pd.DataFrame,
    seed: int,
    budget: int,
    rows: np.ndarray,
    embeddings: np.ndarray | None,
    labeled_embeddings: np.ndarray | None,
) -> list[str]:
    """The strategy's ``budget`` picks among the ``rows`` of ``tiles``."""
    if rows.all():
        subset, subset_embeddings = tiles, embeddings
    else:
        subset = tiles[rows].reset_index(drop=True)
        subset_embeddings = None if embeddings is None else embeddings[rows]
    if subset.empty:
        return []
    balance = p.rank.balance_by
    groups = subset.set_index("tile_id")[balance] if balance and balance in subset else None
    return strategy.select(
        boxes,
        subset,
        budget,
        seed,
        groups=groups,
        embeddings=subset_embeddings,
        labeled_embeddings=labeled_embeddings,
    )
