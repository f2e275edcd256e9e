"""Atomic file writes: a reader (or a killed stage) never sees half a file.

Every output is written to a temporary sibling and moved into place with ``os.replace``,
which is atomic on POSIX within one filesystem.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # a unique sibling name (not mkstemp, whose 0600 mode would stick to the output)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Sorted keys and a trailing newline: identical content gives identical bytes (DVC skips)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_parquet(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_csv(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n")


def copy_file(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def replace_dir(staging: Path, target: Path) -> None:
    """Swap a fully written staging folder into place; the old one is removed only after."""
    target = Path(target)
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
