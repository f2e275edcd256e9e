"""Query strategies: which unlabeled tiles are most worth a human's time.

Pure and vectorised, in the style of baal's heuristics: no I/O, no model. Inputs are

- ``boxes``: one row per candidate box kept above the predict-time ``conf_floor``, columns at least
  ``tile_id`` and ``confidence`` (``class_id, x1, y1, x2, y2`` are carried but unused here). Boxes of
  tiles that are not in ``tiles`` (already labeled, outside the candidate subset) are ignored.
- ``tiles``: the candidate pool, one row per tile, unique ``tile_id``; many tiles have no boxes.
- ``embeddings``: optional ``(len(tiles), d)`` array aligned row for row with ``tiles``, and
  ``labeled_embeddings``: optional ``(m, d)`` array for the tiles already labeled.

A strategy's ``score`` returns one float per pool tile (indexed by ``tile_id``, higher = more worth
labeling); a tile without boxes always gets the deliberate score its class docstring states. The
shared rule for the uncertainty scorers: the model keeps every candidate at or above ``conf_floor``,
so an empty tile is one virtual "background" decision made with confidence ``1 - conf_floor``
(for the symmetric entropy and margin this equals one candidate at ``conf_floor``): a low but
defined score, not a dropped row. ``select`` turns scores into a batch; diversity and hybrid
override it because their batch is built greedily, not from a fixed score.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from acorn.params import AGGREGATES, PredictParams, RankParams
from acorn.runtime.errors import AcornError

# Defaults are the schema's (acorn.params), so a strategy built here without a knob behaves as
# params.yaml left at its default would: one place declares them.
_RANK, _PREDICT = RankParams(), PredictParams()
# Where each parameter lives in params.yaml, so an error names the knob the user can edit.
_FIELDS = {"conf_floor": "predict.conf_floor"}
# Elements of one (pool x chunk) distance block: bounds memory on 300k-tile pools.
_DIST_BLOCK = 1 << 24


class StrategyError(AcornError):
    """A bad strategy parameter or input table; the message names the offending field."""


def _field(name: str) -> str:
    return _FIELDS.get(name, f"rank.{name}")


def _check_range(
    name: str, value: object, low: float, high: float, *, low_open: bool, high_open: bool
) -> None:
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    ok = isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        raise StrategyError(f"{_field(name)} must be a number in {interval}; got {value!r}")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise StrategyError(f"{_field(name)} must be one of {', '.join(choices)}; got {value!r}")


def _check_count(name: str, value: object) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 0:
        raise StrategyError(f"{_field(name)} must be a non-negative integer; got {value!r}")


# ---------------------------------------------------------------------------------------------
# Input checks and vectorised per-tile reductions


def _pool_index(tiles: pd.DataFrame) -> pd.Index:
    if "tile_id" not in tiles.columns:
        raise StrategyError("tiles is missing column tile_id")
    index = pd.Index(tiles["tile_id"], name="tile_id")
    if not index.is_unique:
        dup = index[index.duplicated()][0]
        raise StrategyError(f"tiles.tile_id must be unique; {dup!r} repeats")
    return index


def _box_codes(boxes: pd.DataFrame | None, index: pd.Index, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """(tile position, confidence) per box of a pool tile; boxes of other tiles are dropped."""
    if boxes is None:
        raise StrategyError(
            f"boxes are required by the {strategy} strategy (no predictions yet: use cold_start)"
        )
    missing = [c for c in ("tile_id", "confidence") if c not in boxes.columns]
    if missing:
        raise StrategyError(f"boxes is missing columns: {', '.join(missing)}")
    box_codes, uniques = pd.factorize(boxes["tile_id"])  # hash each distinct id once, not per box
    codes = np.where(box_codes >= 0, index.get_indexer(uniques)[box_codes], -1)
    conf = boxes["confidence"].to_numpy(dtype=np.float64)
    keep = codes >= 0
    codes, conf = codes[keep], conf[keep]
    if conf.size and not (conf.min() >= 0.0 and conf.max() <= 1.0):  # also catches NaN
        raise StrategyError("boxes.confidence must be in [0, 1] (no NaN)")
    return codes, conf


def _reduce(codes: np.ndarray, values: np.ndarray, n: int, how: str, empty: float) -> np.ndarray:
    """Reduce per-box ``values`` to one value per tile position; tiles without boxes get ``empty``."""
    counts = np.bincount(codes, minlength=n)
    if how in ("sum", "mean"):
        out = np.bincount(codes, weights=values, minlength=n)
        if how == "mean":
            out = out / np.maximum(counts, 1)
    else:
        out = np.full(n, np.inf if how == "min" else -np.inf)
        (np.minimum if how == "min" else np.maximum).at(out, codes, values)
    out[counts == 0] = empty
    return out


def _matrix(name: str, value: object, rows: int | None = None) -> np.ndarray:
    if value is None:
        raise StrategyError(f"{name} is required (one row per tile)")
    x = np.asarray(value)
    if x.ndim != 2 or (rows is not None and x.shape[0] != rows):
        want = f"({rows}, d)" if rows is not None else "(m, d)"
        raise StrategyError(f"{name} must have shape {want}; got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise StrategyError(f"{name} must be finite")
    return x


def _min_sq_dist(x: np.ndarray, x_sq: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance from each row of ``x`` to its nearest row of ``centers``."""
    out = np.full(len(x), np.inf)
    step = max(1, _DIST_BLOCK // max(len(x), 1))
    for start in range(0, len(centers), step):  # loops over center blocks, not tiles
        c = centers[start : start + step]
        d = x_sq[:, None] - 2.0 * (x @ c.T) + np.einsum("ij,ij->i", c, c)[None, :]
        np.minimum(out, d.min(axis=1), out=out)
    return np.maximum(out, 0.0)


def _groups_array(groups: pd.Series | None, tile_ids: pd.Index) -> np.ndarray | None:
    if groups is None:
        return None
    if not groups.index.is_unique:
        raise StrategyError("groups must be indexed by unique tile_id")
    missing = tile_ids.difference(groups.index)
    if len(missing):
        raise StrategyError(f"groups has no value for tile {missing[0]!r} (one group per pool tile)")
    return groups.reindex(tile_ids).to_numpy()


# ---------------------------------------------------------------------------------------------
# Ranking and batch selection


def order_by_score(scores: pd.Series, seed: int) -> list[str]:
    """Tile ids by score, highest first; equal scores in a seeded random order, not tile-id order."""
    if not scores.index.is_unique:
        raise StrategyError("scores must be indexed by unique tile_id")
    values = scores.to_numpy(dtype=np.float64)
    if np.isnan(values).any():
        raise StrategyError(f"scores must not be NaN (tile {scores.index[np.isnan(values)][0]!r})")
    tiebreak = np.random.default_rng(seed).permutation(len(values))
    return scores.index[np.lexsort((tiebreak, -values))].tolist()


def select_batch(scores: pd.Series, budget: int, seed: int, groups: pd.Series | None = None) -> list[str]:
    """The ``budget`` best tiles (all of them if the pool is smaller), in ranked order.

    With ``groups`` (a value per tile id, e.g. its condition) the groups take turns, each giving its
    next best tile, so a rare condition gets its share instead of being crowded out; the group
    holding the overall best tile goes first, and an exhausted group drops out of the rotation.
    """
    _check_count("budget", budget)
    order = pd.Index(order_by_score(scores, seed))
    group = _groups_array(groups, order)
    if group is None:
        return order[:budget].tolist()
    codes, _ = pd.factorize(group, use_na_sentinel=False)  # codes follow first appearance: turn order
    turn = pd.Series(codes).groupby(codes).cumcount().to_numpy()
    return order[np.lexsort((codes, turn))[:budget]].tolist()


def k_center_greedy(
    pool: np.ndarray,
    budget: int,
    seed: int,
    labeled: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Row positions of ``pool`` picked by greedy k-center (core-set), in pick order.

    Each pick is the tile farthest (Euclidean) from every labeled tile and every earlier pick; the
    distances are updated with one vectorised pass per pick. Equal distances (e.g. nothing labeled
    yet: all infinitely far) go to the tile nearest the pool mean, then by a seeded permutation, so
    with no labels the first pick is the most typical tile. With ``groups`` (one value per row) the
    groups take turns as in ``select_batch``, starting with the group holding the first pick.
    """
    _check_count("budget", budget)
    x = _matrix("embeddings", pool)
    n = len(x)
    x_sq = np.einsum("ij,ij->i", x, x)
    gap = np.full(n, np.inf)
    if labeled is not None:
        centers = _matrix("labeled_embeddings", labeled)
        if centers.shape[1] != x.shape[1]:
            raise StrategyError(
                f"labeled_embeddings has {centers.shape[1]} columns; embeddings have {x.shape[1]}"
            )
        if len(centers):
            gap = _min_sq_dist(x, x_sq, centers.astype(x.dtype))
    to_mean = _min_sq_dist(x, x_sq, x.mean(axis=0, keepdims=True)) if n else np.zeros(0)
    priority = np.empty(n, dtype=np.int64)  # lower wins a tie
    priority[np.lexsort((np.random.default_rng(seed).permutation(n), to_mean))] = np.arange(n)

    group = np.zeros(n, dtype=np.int64) if groups is None else np.asarray(groups)
    if len(group) != n:
        raise StrategyError(f"groups has {len(group)} values; embeddings have {n} rows")
    start = np.lexsort((priority, -gap))
    codes, _ = pd.factorize(group[start], use_na_sentinel=False)
    code = np.empty(n, dtype=np.int64)
    code[start] = codes
    left = np.bincount(codes)
    turns = deque(range(len(left)))

    picks: list[int] = []
    while len(picks) < min(budget, n):
        g = turns.popleft()
        masked = np.where(code == g, gap, -np.inf)
        tied = np.flatnonzero(masked == masked.max())
        pick = int(tied[np.argmin(priority[tied])])
        picks.append(pick)
        left[g] -= 1
        if left[g]:
            turns.append(g)
        d = np.maximum(x_sq - 2.0 * (x @ x[pick]) + x_sq[pick], 0.0)
        np.minimum(gap, d, out=gap)
        gap[pick] = -np.inf
    return np.asarray(picks, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Strategies


class Strategy(ABC):
    """Scores every pool tile (higher = more worth labeling) and selects a batch from the scores."""

    name: ClassVar[str]

    @abstractmethod
    def score(
        self,
        boxes: pd.DataFrame | None,
        tiles: pd.DataFrame,
        embeddings: np.ndarray | None = None,
        labeled_embeddings: np.ndarray | None = None,
    ) -> pd.Series:
        """One float per row of ``tiles``, indexed by ``tile_id``."""

    def select(
        self,
        boxes: pd.DataFrame | None,
        tiles: pd.DataFrame,
        budget: int,
        seed: int,
        *,
        groups: pd.Series | None = None,
        embeddings: np.ndarray | None = None,
        labeled_embeddings: np.ndarray | None = None,
    ) -> list[str]:
        """The batch to label: ``select_batch`` over ``score`` unless the strategy builds it itself."""
        scores = self.score(boxes, tiles, embeddings, labeled_embeddings)
        return select_batch(scores, budget, seed, groups)

    def _series(self, index: pd.Index, values: np.ndarray) -> pd.Series:
        return pd.Series(values, index=index, name=self.name, dtype=np.float64)


@dataclass(frozen=True)
class Random(Strategy):
    """score = 0 for every tile; ``rank``'s seeded tie-break makes the order a random permutation.

    Boxes are ignored (they may be None), so empty tiles are treated like any other.
    """

    name: ClassVar[str] = "random"

    def score(
        self,
        boxes: pd.DataFrame | None,
        tiles: pd.DataFrame,
        embeddings: np.ndarray | None = None,
        labeled_embeddings: np.ndarray | None = None,
    ) -> pd.Series:
        index = _pool_index(tiles)
        return self._series(index, np.zeros(len(index)))


@dataclass(frozen=True)
class _PerBox(Strategy):
    """A per-box uncertainty reduced over each tile's boxes with ``aggregate``."""

    aggregate: str = _RANK.aggregate
    conf_floor: float = _PREDICT.conf_floor
    aggregates: ClassVar[tuple[str, ...]] = AGGREGATES

    def __post_init__(self) -> None:
        _check_choice("aggregate", self.aggregate, self.aggregates)
        _check_range("conf_floor", self.conf_floor, 0.0, 1.0, low_open=False, high_open=True)

    @abstractmethod
    def per_box(self, conf: np.ndarray) -> np.ndarray:
        """The per-box value that ``aggregate`` reduces; an empty tile reduces ``1 - conf_floor``."""

    def finish(self, reduced: np.ndarray) -> np.ndarray:
        return reduced

    def score(
        self,
        boxes: pd.DataFrame | None,
        tiles: pd.DataFrame,
        embeddings: np.ndarray | None = None,
        labeled_embeddings: np.ndarray | None = None,
    ) -> pd.Series:
        index = _pool_index(tiles)
        codes, conf = _box_codes(boxes, index, self.name)
        empty = float(self.per_box(np.array([1.0 - self.conf_floor]))[0])
        reduced = _reduce(codes, self.per_box(conf), len(index), self.aggregate, empty)
        return self._series(index, self.finish(reduced))


@dataclass(frozen=True)
class LeastConfidence(_PerBox):
    """score = 1 - aggregate(confidence), aggregate in min | mean | max (the tutorial: 1 - min).

    Empty tile: conf_floor (a virtual background decision at confidence 1 - conf_floor), low.
    Note a box at the floor itself scores 1 - conf_floor, the highest: faint candidates dominate ``min``.
    """

    name: ClassVar[str] = "least_confidence"
    aggregates: ClassVar[tuple[str, ...]] = ("min", "mean", "max")

    def per_box(self, conf: np.ndarray) -> np.ndarray:
        return conf

    def finish(self, reduced: np.ndarray) -> np.ndarray:
        return 1.0 - reduced


@dataclass(frozen=True)
class Entropy(_PerBox):
    """score = aggregate over boxes of H(p) = -p ln p - (1 - p) ln(1 - p) (0 ln 0 = 0; max ln 2 at 0.5).

    Empty tile: H(conf_floor), one virtual candidate at the floor, low (0.056 at 0.01).
    """

    name: ClassVar[str] = "entropy"

    def per_box(self, conf: np.ndarray) -> np.ndarray:
        q = 1.0 - conf
        with np.errstate(divide="ignore", invalid="ignore"):
            return -(np.where(conf > 0, conf * np.log(conf), 0.0) + np.where(q > 0, q * np.log(q), 0.0))


@dataclass(frozen=True)
class Margin(_PerBox):
    """score = aggregate over boxes of 1 - |2p - 1| (1 at p = 0.5, 0 at p = 0 or 1).

    Empty tile: 2 * conf_floor, one virtual candidate at the floor, low.
    """

    name: ClassVar[str] = "margin"

    def per_box(self, conf: np.ndarray) -> np.ndarray:
        return 1.0 - np.abs(2.0 * conf - 1.0)


@dataclass(frozen=True)
class FalseNegativeAware(Strategy):
    """score = sum over boxes with band * threshold <= p < threshold of p / threshold.

    Candidates just below the decision threshold are the objects the model would miss: each counts
    with a weight rising towards 1 as it nears the threshold, so "empty-looking" tiles (nothing
    shown at the threshold) with faint candidates rise. Empty tile (and no candidate in the band): 0.
    """

    name: ClassVar[str] = "fn_aware"
    threshold: float = _RANK.threshold
    band: float = _RANK.band

    def __post_init__(self) -> None:
        _check_range("threshold", self.threshold, 0.0, 1.0, low_open=True, high_open=False)
        _check_range("band", self.band, 0.0, 1.0, low_open=True, high_open=True)

    def score(
        self,
        boxes: pd.DataFrame | None,
        tiles: pd.DataFrame,
        embeddings: np.ndarray | None = None,
        labeled_embeddings: np.ndarray | None = None,
    ) -> pd.Series:
        index = _pool_index(tiles)
        codes, conf = _box_codes(boxes, index, self.name)
        in_band = (conf >= self.band * self.threshold) & (conf < self.threshold)
        weights = np.where(in_band, conf / self.threshold, 0.0)
        return self._series(index, np.bincount(codes, weights=weights, minlength=len(index)))


@dataclass(frozen=True)
class Disagreement(Strategy):
    """score = (n(p >= t_low) - n(p >= t_high)) / n(p >= t_low), 0 when n(p >= t_low) = 0.

    The share of a tile's candidates whose existence depends on where the threshold sits between
    t_low and t_high, in [0, 1]. Empty tile: 0.
    """

    name: ClassVar[str] = "disagreement"
    t_low: float = _RANK.t_low
    t_high: float = _RANK.t_high

    def __post_init__(self) -> None:
        _check_range("t_low", self.t_low, 0.0, 1.0, low_open=True, high_open=False)
        _check_range("t_high", self.t_high, 0.0, 1.0, low_open=True, high_open=False)
        if self.t_low >= self.t_high:
            raise StrategyError(f"rank.t_low must be below rank.t_high; got {self.t_low} >= {self.t_high}")

    def score(
        self,
        boxes: pd.DataFrame | None,
        tiles: pd.DataFrame,
        embeddings: np.ndarray | None = None,
        labeled_embeddings: np.ndarray | None = None,
    ) -> pd.Series:
        index = _pool_index(tiles)
        codes, conf = _box_codes(boxes, index, self.name)
        n_low = np.bincount(codes, weights=conf >= self.t_low, minlength=len(index))
        n_high = np.bincount(codes, weights=conf >= self.t_high, minlength=len(index))
        return self._series(index, (n_low - n_high) / np.maximum(n_low, 1.0))


@dataclass(frozen=True)
class Positive(Strategy):
    """Positive mining: score = the tile's top confidence, max over its boxes. Empty tile: 0.

    The baseline an uncertainty strategy must beat besides random: with objects on ~10% of the
    tiles, labeling what the model already half-sees finds many objects per batch (a high hit rate)
    but teaches little the model does not know, and can teach it to fire more on empty tiles. An
    empty tile (nothing above ``predict.conf_floor``) is the least likely to hold an object: 0.
    No ``aggregate``: the top confidence is what defines it.
    """

    name: ClassVar[str] = "positive"

    def score(
        self,
        boxes: pd.DataFrame | None,
        tiles: pd.DataFrame,
        embeddings: np.ndarray | None = None,
        labeled_embeddings: np.ndarray | None = None,
    ) -> pd.Series:
        index = _pool_index(tiles)
        codes, conf = _box_codes(boxes, index, self.name)
        return self._series(index, _reduce(codes, conf, len(index), "max", 0.0))


@dataclass(frozen=True)
class Diversity(Strategy):
    """Greedy k-center (core-set) on embeddings; boxes are ignored (they may be None).

    score = Euclidean distance to the nearest labeled tile (to the pool mean when none is labeled):
    how uncovered a tile is. The batch is not the top scores but ``k_center_greedy``: each pick is
    the tile farthest from all labeled tiles and earlier picks. Empty tiles are like any other.
    """

    name: ClassVar[str] = "diversity"

    def score(
        self,
        boxes: pd.DataFrame | None,
        tiles: pd.DataFrame,
        embeddings: np.ndarray | None = None,
        labeled_embeddings: np.ndarray | None = None,
    ) -> pd.Series:
        index = _pool_index(tiles)
        x = _matrix("embeddings", embeddings, len(index))
        x_sq = np.einsum("ij,ij->i", x, x)
        centers = None if labeled_embeddings is None else _matrix("labeled_embeddings", labeled_embeddings)
        if centers is None or not len(centers):
            centers = x.mean(axis=0, keepdims=True)
        elif centers.shape[1] != x.shape[1]:
            raise StrategyError(
                f"labeled_embeddings has {centers.shape[1]} columns; embeddings have {x.shape[1]}"
            )
        return self._series(index, np.sqrt(_min_sq_dist(x, x_sq, centers.astype(x.dtype))))

    def select(
        self,
        boxes: pd.DataFrame | None,
        tiles: pd.DataFrame,
        budget: int,
        seed: int,
        *,
        groups: pd.Series | None = None,
        embeddings: np.ndarray | None = None,
        labeled_embeddings: np.ndarray | None = None,
    ) -> list[str]:
        index = _pool_index(tiles)
        x = _matrix("embeddings", embeddings, len(index))
        picks = k_center_greedy(x, budget, seed, labeled_embeddings, _groups_array(groups, index))
        return index[picks].tolist()


_UNCERTAINTY: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (LeastConfidence, Entropy, Margin, FalseNegativeAware, Disagreement)
}


@dataclass(frozen=True)
class Hybrid(Strategy):
    """Uncertainty shortlist, then diversity: ``select_batch`` of ceil(shortlist_factor * budget)
    tiles by ``uncertainty``'s score, then ``k_center_greedy`` within the shortlist.

    score = ``uncertainty``'s score, with its empty-tile rule.
    """

    name: ClassVar[str] = "hybrid"
    uncertainty: Strategy = dataclasses.field(
        default_factory=lambda: get_strategy(_RANK.shortlist[0], aggregate=_RANK.shortlist[1])
    )
    shortlist_factor: float = _RANK.shortlist_factor

    def __post_init__(self) -> None:
        if not isinstance(self.uncertainty, tuple(_UNCERTAINTY.values())):
            raise StrategyError(
                f"rank.uncertainty must be one of {', '.join(_UNCERTAINTY)}; got {self.uncertainty!r}"
            )
        _check_range("shortlist_factor", self.shortlist_factor, 1.0, math.inf, low_open=False, high_open=True)

    def score(
        self,
        boxes: pd.DataFrame | None,
        tiles: pd.DataFrame,
        embeddings: np.ndarray | None = None,
        labeled_embeddings: np.ndarray | None = None,
    ) -> pd.Series:
        return self.uncertainty.score(boxes, tiles, embeddings, labeled_embeddings).rename(self.name)

    def select(
        self,
        boxes: pd.DataFrame | None,
        tiles: pd.DataFrame,
        budget: int,
        seed: int,
        *,
        groups: pd.Series | None = None,
        embeddings: np.ndarray | None = None,
        labeled_embeddings: np.ndarray | None = None,
    ) -> list[str]:
        _check_count("budget", budget)
        index = _pool_index(tiles)
        x = _matrix("embeddings", embeddings, len(index))
        scores = self.score(boxes, tiles, embeddings, labeled_embeddings)
        shortlist = pd.Index(select_batch(scores, math.ceil(self.shortlist_factor * budget), seed, groups))
        rows = index.get_indexer(shortlist)
        picks = k_center_greedy(x[rows], budget, seed, labeled_embeddings, _groups_array(groups, shortlist))
        return shortlist[picks].tolist()


# ---------------------------------------------------------------------------------------------
# Factory


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (Random, Positive, *_UNCERTAINTY.values(), Diversity, Hybrid)
}
_PARAMS = {f.name for cls in STRATEGIES.values() for f in dataclasses.fields(cls)}


def get_strategy(name: str, **params: object) -> Strategy:
    """The strategy called ``name`` built from ``params`` (e.g. the ``rank`` section of params.yaml).

    A parameter no strategy knows is an error (a misspelt knob); one that only another strategy uses
    (``threshold`` for entropy) is ignored, so one shared ``rank`` section serves every strategy.
    For ``hybrid``, ``uncertainty`` names the shortlist strategy, built from the same params; after a
    colon (``least_confidence:min``) its own reduction, in place of ``aggregate``.
    """
    _check_choice("strategy", name, tuple(STRATEGIES))
    unknown = sorted(set(params) - _PARAMS)
    if unknown:
        raise StrategyError(
            f"{_field(unknown[0])} is not a strategy parameter (known: {', '.join(sorted(_PARAMS))})"
        )
    cls = STRATEGIES[name]
    accepted = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in params.items() if k in accepted}
    if cls is Hybrid:
        inner, _, aggregate = str(params.get("uncertainty", _RANK.uncertainty)).partition(":")
        _check_choice("uncertainty", inner, tuple(_UNCERTAINTY))
        shared = {k: v for k, v in params.items() if k != "uncertainty"}
        kwargs["uncertainty"] = get_strategy(
            inner, **shared | ({"aggregate": aggregate} if aggregate else {})
        )
    return cls(**kwargs)


def cold_start(embeddings: np.ndarray | None) -> Strategy:
    """The strategy for a pool with no model predictions yet: diversity with embeddings, else random."""
    return Random() if embeddings is None else Diversity()
