"""Fine-tunes of given batches, with no strategy in between: what a batch's make-up buys.

For the benchmark scripts that re-score labels (``benchmarks/refit.py``: a finished run's labels
with another recipe; ``benchmarks/batch_mix.py``: batches of a chosen mix of empty and positive
items). Each batch is trained and scored as a simulated cycle is (acorn.simulate.step, which
calls the train stage's step).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from acorn.model import training
from acorn.runtime.atomic import sole_writer
from acorn.runtime.errors import InputError
from acorn.simulate.config import SimulateConfig
from acorn.simulate.folder import OutputFolder
from acorn.simulate.pools import Pool
from acorn.simulate.step import OracleStep


def score_batches(
    pool: Pool, config: SimulateConfig, batches: Mapping[str, Sequence[str]], seed: int, out: Path
) -> Iterator[dict]:
    """Fine-tune from the base on each named batch of pool items with the train stage's recipe and
    seed ``seed``, and score each on the test set as a cycle is scored (map50, map50-95, false
    alarms on empty test images): what a batch's make-up buys, with no strategy in between.
    One row per batch, with its size and how many of its items hold an object, yielded as soon as
    it is scored so that a caller can save it before the next fine-tune.

    A fine-tune stopped by a kill goes on from its last epoch when asked again (a recipe of 100
    epochs on 500 labels is an hour on a CPU); its folder goes once the caller has the row."""
    out = Path(out)
    with sole_writer(out / "work", "a fine-tune of batches"):
        folder = OutputFolder(pool, config, out)
        step = OracleStep(pool, config, folder)
        with step.scratch():
            for name, ids in batches.items():
                ids = list(ids)
                # the pool, the base model's bytes and every setting but speed: another is another
                # fine-tune, whose checkpoint this one must not go on from
                spec = {"batch": name, "seed": seed, "tiles": ids, "settings": folder.identity}
                work = training.resumable_workdir(
                    out / "work" / "batches" / hashlib.sha1(name.encode()).hexdigest()[:12],
                    spec,
                    f"the fine-tune of {name}",
                )
                weights = step.train(ids, seed, out / "models" / f"{name}-s{seed}-c1.pt", resume_in=work)
                holding = int((step.items.loc[ids, "objects"] > 0).sum())
                row = {"batch": name, "seed": seed, "tiles": len(ids), "with_objects": holding}
                row |= step.evaluate(weights)
                # gone before the caller saves the row: a kill between the two redoes this batch,
                # while a folder kept after its row was saved would never be asked for again
                shutil.rmtree(work, ignore_errors=True)
                with contextlib.suppress(OSError):
                    work.parent.rmdir()  # once the last batch's is gone
                yield row


def mixed_batches(items: pd.DataFrame, size: int, shares: Sequence[float], seed: int) -> dict[str, list[str]]:
    """For each share, ``size`` items of which round(share x size) hold an object, the rest empty,
    each part a seeded draw; a batch with more of one kind than the pool has is refused. Batches of
    one seed are nested (a larger share adds positives and drops empties), so they differ only in
    their mix."""
    rng = np.random.default_rng(seed)
    holding = items.loc[items["objects"] > 0, "tile_id"].astype(str).to_numpy()
    empty = items.loc[items["objects"] == 0, "tile_id"].astype(str).to_numpy()
    holding, empty = rng.permutation(holding), rng.permutation(empty)
    batches = {}
    for share in shares:
        if not 0.0 <= share <= 1.0:
            raise InputError(f"share of items with an object must be in [0, 1], got {share}")
        k = round(share * size)
        if k > len(holding) or size - k > len(empty):
            raise InputError(
                f"a batch of {size} with {k} holding an object needs {k} such items and {size - k} empty "
                f"ones; the pool has {len(holding)} and {len(empty)}"
            )
        batches[f"share{share:g}"] = [*holding[:k], *empty[: size - k]]
    return batches
