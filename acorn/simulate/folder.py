"""One output folder of ``acorn simulate``: its files, what a resume reads back, and ``merge``.

Results are written after every cycle (curves.csv, selections.csv) and a re-run resumes from them:
finished rows are skipped and the labeled sets rebuilt by replaying the recorded selections
(acorn.simulate.curves), never re-selected. What a run carries from one cycle to the next
(``predict.candidates``) is kept in ``carry-over/`` and its latest model in ``models/``, so that a
resumed run selects what an uninterrupted one would. config.json holds the settings every row
shares: a resume or a merge with other settings is refused.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from acorn.cycle_step import candidates
from acorn.runtime.atomic import copy_file, no_writer, write_csv, write_json
from acorn.runtime.errors import InputError, ParamsError
from acorn.simulate.config import SimulateConfig
from acorn.simulate.curves import CURVE_COLUMNS, CURVES, SELECTION_COLUMNS, SELECTIONS
from acorn.simulate.pools import Pool

# Files of one output folder besides curves.csv and selections.csv; models/ and work/ are resume
# state and scratch, not results.
SUMMARY, STRATEGY_TABLE, COMPARISON, HIT_RATES = (
    "summary.csv",
    "strategies.csv",
    "comparison.csv",
    "hit_rates.csv",
)
CONFIG, REFERENCE, SCREEN = "config.json", "reference.json", "screen.csv"
REFERENCE_EPOCHS = "reference_epochs.csv"  # the reference's validation scores, epoch by epoch
CARRY_OVER = "carry-over"  # per run, the tiles each cycle carries from the last (predict.candidates)


@dataclass
class Result:
    """What a simulation produced (also written to the output folder)."""

    curves: pd.DataFrame
    summary: pd.DataFrame
    strategies: pd.DataFrame
    comparison: pd.DataFrame
    hit_rates: pd.DataFrame
    reference: dict | None  # None: not trained (--full-epochs 0)
    target: float | None
    out: Path


@dataclass
class Screen:
    """First batches only: per (strategy, seed) ``runs`` and per strategy ``table``, with the pool's
    base rate (the hit rate random labeling has on average)."""

    runs: pd.DataFrame
    table: pd.DataFrame
    base_rate: float
    out: Path


def file_stem(name: str) -> str:
    """A strategy entry as a file name: ``hybrid/least_confidence:min`` -> ``hybrid+least_confidence-min``."""
    return name.replace(":", "-").replace("/", "+")


def folder_identity(pool: Pool, config: SimulateConfig) -> dict:
    """What every row of one output folder shares (its config.json): the pool, the base model's
    bytes and the settings, as they read back from JSON."""
    base = Path(config.base)
    identity = {
        "pool": pool.description,
        "base_sha1": _sha1(base) if base.is_file() else "",
        **config.identity(),
    }
    return json.loads(json.dumps(identity))


def settings_differ(stored: dict, identity: dict) -> list[str]:
    """The keys on which a folder's config.json and this simulation (``folder_identity``) disagree."""
    return sorted(k for k in identity.keys() | stored.keys() if stored.get(k) != identity.get(k))


class OutputFolder:
    """The rows recorded so far (``curves``, ``selections``) and each run's resume state."""

    def __init__(self, pool: Pool, config: SimulateConfig, out: Path) -> None:
        self.config, self.out = config, out
        self.identity = folder_identity(pool, config)
        self.curves = _read_csv(out / CURVES, CURVE_COLUMNS)
        self.selections = _read_csv(out / SELECTIONS, SELECTION_COLUMNS)

    def check_config(self) -> None:
        """Refuse a folder made with other settings; write config.json into a new one."""
        path = self.out / CONFIG
        if path.is_file():
            changed = settings_differ(json.loads(path.read_text(encoding="utf-8")), self.identity)
            if changed:
                raise ParamsError(
                    f"{path}: this folder holds results for other settings ({', '.join(changed)} differ); "
                    "choose another --out, or delete the folder to start over"
                )
        else:
            write_json(path, self.identity)

    def carry_path(self, name: str, seed: int) -> Path:
        return self.out / CARRY_OVER / f"{file_stem(name)}-s{seed}.json"

    def read_carried(self, name: str, seed: int, cycle: int) -> list[str]:
        """What the run's previous cycle left for ``cycle`` (nothing for the first). A missing entry
        cannot be made again (the model that ranked it is gone), so a resume refuses to guess."""
        if cycle == 1 or candidates.carry_size(self.config.params) == 0:
            return []
        path = self.carry_path(name, seed)
        stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if str(cycle) not in stored:
            raise InputError(
                f"{path}: no carried tiles for {name} seed {seed} cycle {cycle}, so its selection "
                "could not be repeated (predict.candidates); choose another --out or delete the folder"
            )
        return [str(t) for t in stored[str(cycle)]]

    def write_carried(self, name: str, seed: int, cycle: int, tiles: list[str]) -> None:
        path = self.carry_path(name, seed)
        stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        stored[str(cycle)] = tiles
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, stored)

    def model_path(self, name: str, seed: int, cycle: int) -> Path:
        """Where a run keeps its latest model: the next cycle (also after a resume) predicts with it."""
        return self.out / "models" / f"{file_stem(name)}-s{seed}-c{cycle}.pt"

    def record_selection(self, name: str, seed: int, cycle: int, batch: list[str]) -> None:
        new = pd.DataFrame(
            {
                "strategy": name,
                "seed": seed,
                "cycle": cycle,
                "rank": range(1, len(batch) + 1),
                "tile_id": batch,
            },
            columns=SELECTION_COLUMNS,
        )
        self.selections = _sorted(pd.concat([self.selections, new], ignore_index=True), "rank")
        write_csv(self.selections, self.out / SELECTIONS)

    def append_row(self, name: str, seed: int, cycle: int, labeled: int, metrics: dict[str, float]) -> None:
        row = pd.DataFrame(
            [{"strategy": name, "seed": seed, "cycle": cycle, "labeled_tiles": labeled, **metrics}]
        )
        self.curves = _sorted(pd.concat([self.curves, row[CURVE_COLUMNS]], ignore_index=True))
        write_csv(self.curves, self.out / CURVES)

    def merge(self, folders: list[Path]) -> None:
        """Add the runs recorded in ``folders`` to this one, with their models and carried tiles so
        that a later resume can extend them. A run is taken whole from one folder: one that two
        folders (or this one and another) both hold, with different records, is refused, since
        which is right cannot be told; identical copies (a folder merged twice) are fine."""
        parts = [f for f in folders if f.resolve() != self.out.resolve()]
        with contextlib.ExitStack() as reading:  # every part first: a refusal leaves this folder as it was
            for folder in parts:
                reading.enter_context(no_writer(folder / "work", "merge it once that run has ended"))
            self.check_config()
            owner = {run: self.out for run in _runs(self.curves, self.selections)}
            for folder in parts:
                self._merge_one(folder, owner)
        self.curves, self.selections = _sorted(self.curves), _sorted(self.selections, "rank")
        write_csv(self.curves, self.out / CURVES)
        write_csv(self.selections, self.out / SELECTIONS)

    def _merge_one(self, folder: Path, owner: dict[tuple[str, int], Path]) -> None:
        """One part folder's runs, models and reference (see ``merge``)."""
        config = folder / CONFIG
        if not config.is_file():
            raise InputError(f"{config}: not found (--merge takes output folders of acorn simulate)")
        changed = settings_differ(json.loads(config.read_text(encoding="utf-8")), self.identity)
        if changed:
            raise ParamsError(f"{config}: made with other settings ({', '.join(changed)} differ); not merged")
        theirs = (
            _read_csv(folder / CURVES, CURVE_COLUMNS),
            _read_csv(folder / SELECTIONS, SELECTION_COLUMNS),
        )
        for run in _runs(*theirs):
            if run not in owner:
                owner[run] = folder
                self.curves = pd.concat([self.curves, _of_run(theirs[0], run)])
                self.selections = pd.concat([self.selections, _of_run(theirs[1], run)])
                self._copy_run_state(folder, *run)
            elif not _same_run(run, (self.curves, self.selections), theirs):
                raise InputError(
                    f"{folder}: {run[0]} seed {run[1]} is also in {owner[run]} with other results; "
                    "merge folders that hold different seeds (--first-seed)"
                )
        reference = folder / REFERENCE
        if reference.is_file() and not (self.out / REFERENCE).is_file():
            copy_file(reference, self.out / REFERENCE)
            if (folder / REFERENCE_EPOCHS).is_file():
                copy_file(folder / REFERENCE_EPOCHS, self.out / REFERENCE_EPOCHS)

    def _copy_run_state(self, folder: Path, name: str, seed: int) -> None:
        """The run's latest model and carried tiles, which a resume with more cycles reads."""
        stem = f"{file_stem(name)}-s{seed}"
        for model in (folder / "models").glob(f"{stem}-c*.pt"):
            copy_file(model, self.out / "models" / model.name)
        carried = folder / CARRY_OVER / f"{stem}.json"
        if carried.is_file():
            copy_file(carried, self.carry_path(name, seed))


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(
            {c: pd.Series(dtype=str if c in ("strategy", "tile_id") else "int64") for c in columns}
        )
    df = pd.read_csv(path, dtype={"strategy": str, "tile_id": str})
    missing = [c for c in columns if c not in df]
    if missing:
        raise InputError(
            f"{path}: missing columns {', '.join(missing)} (made by an older acorn: use another --out)"
        )
    return df[columns]


def _runs(curves: pd.DataFrame, selections: pd.DataFrame) -> list[tuple[str, int]]:
    both = pd.concat([curves[["strategy", "seed"]], selections[["strategy", "seed"]]])
    return [(str(s), int(n)) for s, n in both.drop_duplicates().itertuples(index=False)]


def _of_run(df: pd.DataFrame, run: tuple[str, int]) -> pd.DataFrame:
    return df[(df["strategy"] == run[0]) & (df["seed"] == run[1])]


def _same_run(run: tuple[str, int], ours: tuple[pd.DataFrame, ...], theirs: tuple[pd.DataFrame, ...]) -> bool:
    def rows(df: pd.DataFrame) -> pd.DataFrame:
        return _of_run(df, run).sort_values(list(df.columns), ignore_index=True).round(9)

    return all(rows(a).equals(rows(b)) for a, b in zip(ours, theirs, strict=True))


def _sorted(df: pd.DataFrame, *extra: str) -> pd.DataFrame:
    return df.sort_values(["strategy", "seed", "cycle", *extra], ignore_index=True)


def _sha1(path: Path) -> str:
    from acorn.data.tiling import file_sha1

    return file_sha1(path)
