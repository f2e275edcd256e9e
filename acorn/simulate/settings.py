"""The settings and pool of a simulation, as ``acorn simulate`` builds them from its flags.

Kept apart from the typer command (``acorn.simulate.cli``) because the benchmark scripts that
re-score a finished simulation (``benchmarks/refit.py``, ``benchmarks/batch_mix.py``) must build
exactly the same settings and pool from the same flags, without importing a command line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from acorn.params import Params, load_params, parse_override
from acorn.runtime.errors import ParamsError
from acorn.simulate.pools import Pool, open_pool

# The convenience flags and the params key each one sets.
FLAG_KEYS = {
    "budget": "rank.budget",
    "epochs": "train.epochs",
    "imgsz": "model.imgsz",
    "base": "model.base",
    "test": "test.data",
}


def load_settings(params: Path, flags: dict[str, Any], sets: Sequence[str]) -> tuple[Params, dict[str, Any]]:
    """params.yaml with the flags given (``FLAG_KEYS``; None = not given) and ``-S`` overrides
    applied and validated as params.yaml is; also returns the overrides, by key.

    A key set both by its flag and by ``-S`` to another value is an error: which one wins would be
    a guess, and a benchmark that silently ran other settings is worse than none.
    """
    overrides = {FLAG_KEYS[name]: value for name, value in flags.items() if value is not None}
    given_by = {FLAG_KEYS[name]: f"--{name}" for name in flags}
    for text in sets:
        key, value = parse_override(text)
        if key in overrides and overrides[key] != value:
            raise ParamsError(
                f"-S {text} contradicts {given_by.get(key, '-S')} {overrides[key]} (give {key} once)"
            )
        overrides[key] = value
    return load_params(params).with_overrides(overrides), overrides


def open_simulation_pool(pool: Path, p: Params, overrides: dict[str, Any], test_fraction: float) -> Pool:
    """The pool as `acorn simulate` opens it: a tiled pool is tested on test.data and validated on
    val.data; a YOLO folder holds out ``test_fraction`` of itself for each unless test.data or
    val.data was given (--test, -S)."""
    tiled = (pool / "manifest.parquet").is_file()
    test_dir = Path(p.test.data) if tiled or "test.data" in overrides else None
    val_dir = Path(p.val.data) if tiled or "val.data" in overrides else None
    return open_pool(pool, p.classes, test_dir, test_fraction, val_dir, p.tile.near_copy_bits)
