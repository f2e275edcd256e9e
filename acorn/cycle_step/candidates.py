"""Which unlabeled tiles a cycle predicts and ranks, with the knobs of ``predict.*`` and ``rank.*``.

The choice itself is acorn.selection.candidates (pure, deterministic); this is where params.yaml meets it,
so the predict stage and ``acorn simulate`` choose with the same settings. The seed and what is
waiting or carried are the caller's: the stage seeds with ``rank.seed`` + the cycle and reads its
backlog and carry-over from files, a simulation seeds per run and has no backlog.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from acorn.params import Params
from acorn.selection.candidates import carry_count, check_size, select_candidates, top_tiles


def check(p: Params) -> None:
    """A candidate set below the batch size is refused before any prediction."""
    check_size(p.predict.candidates, p.rank.budget)


def carry_size(p: Params) -> int:
    """How many of a cycle's most undecided tiles the next cycle looks at again (0: none)."""
    return carry_count(p.predict.candidates, p.predict.carry_over)


def columns(p: Params, available: Iterable[str]) -> list[str]:
    """The tile columns the choice reads, of those ``available``: the frame, and the balance
    column (``rank.balance_by``) when the tiles have one."""
    have = set(available)
    wanted = ["tile_id", "frame_id"]
    balance = p.rank.balance_by
    return wanted + ([balance] if balance and balance in have and balance not in wanted else [])


def choose(
    p: Params, unlabeled: pd.DataFrame, seed: int, *, waiting: Iterable[str] = (), carried: Iterable[str] = ()
) -> pd.DataFrame:
    """This cycle's ``predict.candidates`` tiles of ``unlabeled`` (``tile_id``, ``source``):
    ``waiting`` first, then ``carried`` (at most ``carry_size``), then a sample seeded with
    ``seed`` and stratified by frame and ``rank.balance_by`` (acorn.selection.candidates.select_candidates)."""
    return select_candidates(
        unlabeled,
        p.predict.candidates,
        seed=seed,
        waiting=waiting,
        carried=carried,
        carry_over=p.predict.carry_over,
        balance_by=p.rank.balance_by,
    )


def carried_over(p: Params, predicted: pd.DataFrame, waiting: Iterable[str] = ()) -> list[str]:
    """What the next cycle carries from this one's predictions (``tile_id``, ``max_confidence``):
    the ``carry_size`` most undecided tiles, best first, leaving out those ``waiting`` to be
    labeled (they come back as waiting anyway)."""
    skip = pd.Index([str(t) for t in waiting])
    return top_tiles(predicted[~predicted["tile_id"].astype(str).isin(skip)], carry_size(p))
