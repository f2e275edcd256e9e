"""Which unlabeled tiles a cycle predicts when the pool is too large to predict whole.

Why: at 300,000 tiles a full sweep costs hours on a CPU, so ``predict.candidates: N`` bounds a
cycle to N tiles and rank chooses its batch among them. The literature scores a random subset of
~10x the budget per cycle (MI-AOD, CALD); with ~10% positive tiles a random subset holds few
positives, so the subset here is biased towards tiles that are worth another look:

1. ``waiting``: tiles queued for labeling and still unlabeled. They are always predicted, so the
   labelers' backlog gets the new champion's pre-annotations and rank ranks it with the rest.
2. ``carried``: last cycle's most undecided tiles (:func:`top_tiles`), up to ``carry_over`` of N:
   a tile that stays undecided under the next champion keeps being looked at until it is labeled.
3. ``sample``: the rest is a fresh seeded sample of the unlabeled pool, stratified so that every
   frame and every value of the balance column (``rank.balance_by``) gets its share (see
   :func:`stratified_order`). The seed changes every cycle, so over cycles other tiles get looked at.

Everything here is pure and deterministic (same inputs, same result, whatever the row order);
acorn.cycle_step.candidates applies it with params.yaml's knobs, for the predict stage and
``acorn simulate`` alike. The carry-over state between cycles (:func:`read_carry_over`,
:func:`write_carry_over`) is a small file kept outside the DVC DAG, next to the prediction cache:
see ``stages/predict.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from acorn.runtime.atomic import write_parquet
from acorn.runtime.errors import InputError, ParamsError

SOURCES = ("waiting", "carried", "sample")
CARRY_COLUMNS = ["tile_id", "kind"]  # kind: waiting | top
CARRY_KEPT = 3  # cycles of carry-over files kept (a re-run of a recent cycle reads its own)


def check_size(candidates: int, budget: int) -> None:
    """A candidate set smaller than the batch would leave rank without enough tiles to choose from."""
    if 0 < candidates < budget:
        raise ParamsError(
            f"params.yaml: predict.candidates ({candidates}) is below rank.budget ({budget}); "
            "use 0 (the whole pool) or at least the budget (20-30x the budget keeps enough positives)"
        )


def carry_count(candidates: int, carry_over: float) -> int:
    """How many of last cycle's top tiles a candidate set of ``candidates`` may hold."""
    return int(np.floor(candidates * carry_over + 1e-9))


def select_candidates(
    pool: pd.DataFrame,
    size: int,
    seed: int,
    *,
    waiting: Iterable[str] = (),
    carried: Iterable[str] = (),
    carry_over: float = 0.5,
    balance_by: str = "",
    frame_column: str = "frame_id",
) -> pd.DataFrame:
    """The tiles to predict this cycle: ``tile_id`` and ``source`` (waiting, carried, sample).

    ``pool``: the unlabeled tiles, one row each (``tile_id``; ``frame_column`` and ``balance_by``
    when present: without a frame column each tile is its own frame). ``waiting`` and ``carried``
    outside the pool (labeled since, or gone) are ignored. Rows come waiting first (in the order
    given), then carried (best first, at most :func:`carry_count`), then the sample in its draw
    order; ``size`` rows in all, or the whole pool when it is smaller, or every waiting tile when
    the backlog alone exceeds ``size`` (a backlog is never dropped: raise ``size`` then).
    """
    if size < 1:
        raise ValueError(f"size must be at least 1; got {size}")
    ids = pool["tile_id"].astype(str)
    if not ids.is_unique:
        raise ValueError(f"pool tile ids repeat (e.g. {ids[ids.duplicated()].iloc[0]!r})")
    in_pool = pd.Index(ids)
    waiting_ids = _kept(waiting, in_pool, pd.Index([]))
    room = max(size - len(waiting_ids), 0)
    carried_ids = _kept(carried, in_pool, waiting_ids)[: min(carry_count(size, carry_over), room)]
    taken = waiting_ids.append(carried_ids)
    rest = pool.assign(tile_id=ids)[~ids.isin(taken).to_numpy()]
    sampled = stratified_order(rest, seed, balance_by, frame_column)[: room - len(carried_ids)]
    return pd.DataFrame(
        {
            "tile_id": [*waiting_ids, *carried_ids, *sampled],
            "source": np.repeat(SOURCES, [len(waiting_ids), len(carried_ids), len(sampled)]),
        }
    )


def _kept(wanted: Iterable[str], pool: pd.Index, exclude: pd.Index) -> pd.Index:
    """``wanted`` in its order, once each, restricted to ``pool`` and outside ``exclude``."""
    ids = pd.Index([str(t) for t in wanted]).drop_duplicates()
    return ids[ids.isin(pool) & ~ids.isin(exclude)]


def stratified_order(
    pool: pd.DataFrame, seed: int, balance_by: str = "", frame_column: str = "frame_id"
) -> list:
    """Every tile of ``pool`` in a seeded draw order whose every prefix is stratified.

    The values of ``balance_by`` (when the column exists; a missing value is a value of its own)
    take turns as rank's balanced batch does, each giving its next tile, so a rare condition gets
    as many candidates as a common one until it runs out. Within a value, frames take turns in a
    seeded order, each giving one random tile per round, so the first k tiles spread over as many
    frames as possible. The result depends on the set of rows and the seed, not on row order.
    """
    if pool.empty:
        return []
    table = pool.assign(tile_id=pool["tile_id"].astype(str)).sort_values("tile_id", kind="stable")
    rng = np.random.default_rng(seed)
    n = len(table)
    frames = table[frame_column].astype(str) if frame_column in table else table["tile_id"]
    groups = (
        table[balance_by].astype(str)
        if balance_by and balance_by in table
        else pd.Series("", index=table.index)
    )
    frame_code, frame_names = pd.factorize(frames, sort=True)
    group_code, group_names = pd.factorize(groups, sort=True)
    draw = pd.DataFrame(
        {
            "frame": frame_code,
            "group": group_code,
            "tile": rng.random(n),  # a tile's place within its frame
            "frame_turn": rng.random(len(frame_names))[frame_code],  # a frame's place in each round
            "group_turn": rng.random(len(group_names))[group_code],  # a group's place in each round
        }
    )
    draw = draw.sort_values(["frame", "tile"], kind="stable")
    draw["round"] = draw.groupby("frame").cumcount()  # the tile's round within its frame
    draw = draw.sort_values(["round", "frame_turn"], kind="stable")
    draw["place"] = draw.groupby("group").cumcount()  # its place in its group's sequence
    order = draw.sort_values(["place", "group_turn"], kind="stable").index.to_numpy()
    return table["tile_id"].to_numpy()[order].tolist()


def top_tiles(tiles: pd.DataFrame, count: int) -> list[str]:
    """The ``count`` most undecided tiles of ``tiles`` (``tile_id``, ``max_confidence``), best first.

    The score is the binary entropy of the tile's most confident box: highest where the champion
    half-sees an object (~0.5), low where it sees nothing (a faint floor) or is sure. It is
    strategy-free on purpose: the predict stage would otherwise depend on ``rank.strategy`` and
    re-run when only the strategy changes. Ties go to the smaller tile id.
    """
    if count <= 0 or tiles.empty:
        return []
    p = np.clip(tiles["max_confidence"].to_numpy(np.float64), 1e-12, 1 - 1e-12)
    score = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    ids = tiles["tile_id"].astype(str).to_numpy()
    return ids[np.lexsort((ids, -score))[:count]].tolist()


# -- the carry-over between cycles: a file per cycle, outside the DAG ------------------------------


def carry_over_path(root: Path, cycle: int) -> Path:
    return Path(root) / "carry-over" / f"{cycle:06d}.parquet"


def read_carry_over(root: Path, cycle: int) -> tuple[list[str], list[str]]:
    """(waiting, top) left for ``cycle`` by the previous cycle's predict; empty lists if none."""
    path = carry_over_path(root, cycle)
    if not path.is_file():
        return [], []
    try:
        table = pd.read_parquet(path, columns=CARRY_COLUMNS)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path}: unreadable carry-over list ({exc}); delete it and re-run") from None
    kind = table["kind"].to_numpy()
    ids = table["tile_id"].astype(str).to_numpy()
    return ids[kind == "waiting"].tolist(), ids[kind == "top"].tolist()


def write_carry_over(root: Path, cycle: int, waiting: list[str], top: list[str]) -> Path:
    """Leave ``waiting`` and ``top`` for ``cycle``; keep only the latest ``CARRY_KEPT`` cycles."""
    path = carry_over_path(root, cycle)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(
        {"tile_id": [*waiting, *top], "kind": ["waiting"] * len(waiting) + ["top"] * len(top)},
        columns=CARRY_COLUMNS,
    )
    write_parquet(table, path)
    for old in sorted(path.parent.glob("*.parquet"))[:-CARRY_KEPT]:
        if old != path:
            old.unlink(missing_ok=True)
    return path
