"""Atomic file writes: a reader (or a killed stage) never sees half a file.

Every output is written to a temporary sibling and moved into place with ``os.replace``,
which is atomic on POSIX within one filesystem. A failed write (a full disk included) removes
its temporary file and leaves the previous output as it was. A rename is atomic for a process
kill but not for a power cut: the kernel may write the rename to disk before the file's data,
so a machine that loses power seconds later can come back with an empty file under the new
name (and, for a folder swap, the old folder already deleted). So every write fsyncs the new
file before the rename and its folder after it, and a folder swap flushes the whole new folder
before it is swapped in and fsyncs the parent after, before the old one is removed. A writer of
thousands of files whose index is written last (the tile stage: tiles, then the manifest) writes
them with ``sync=False`` and calls ``sync_folder`` once before the index: one flush of the
filesystem costs what a few fsyncs do (``benchmarks/fsync_cost.py`` measures both).

A folder that a long job writes to over hours (``acorn simulate``'s) has one writer at a time
(``sole_writer``), and is not read for merging while it is written (``no_writer``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import re
import shutil
import stat
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from acorn.runtime.errors import AcornError

# test-only (tests/test_faults.py): the name of a pause_point() at which a stage stops for good,
# so that a test can SIGKILL it at a known moment; never set it in normal use
PAUSE_VAR = "ACORN_TEST_PAUSE_AT"


class DiskFullError(AcornError):
    """An output could not be written for lack of space (the message names the file)."""


class FolderBusyError(AcornError):
    """Another process is writing to the folder (the message names the folder and that process)."""


@contextlib.contextmanager
def sole_writer(folder: Path, what: str) -> Iterator[None]:
    """Hold ``folder``'s lock or refuse at once: two writers of one folder would overwrite each
    other's records. The lock is an flock on ``folder/.lock``, which the kernel releases when its
    holder dies, SIGKILL included, so what a killed writer left is stale once the lock is held."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _holder(handle.read())
            raise FolderBusyError(
                f"{folder}: in use by {holder}; wait for it to end, or use another folder"
            ) from None
        except OSError as exc:  # ENOLCK, ENOSYS: a filesystem mounted without file locks
            raise FolderBusyError(
                f"{folder}: cannot be locked on this filesystem ({exc.strerror}); use a folder on a local disk"
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"{what} (pid {os.getpid()})")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holder(recorded: str) -> str:
    """Who holds a lock, from what its taker wrote. Its forked workers (data loaders, tiling) share
    the lock and may outlive it for a moment (an OOM kill of the parent), and a merge reading the
    folder (``no_writer``) records nothing: then the pid recorded is gone, and saying so spares
    the user a search for a process that is not there."""
    recorded = recorded.strip()
    found = re.search(r"\(pid (\d+)\)", recorded)
    if found is None:
        return recorded or "another process"
    try:
        os.kill(int(found.group(1)), 0)
    except ProcessLookupError:
        return (
            f"processes that {recorded} started, which has ended (they end on their own), or by a "
            "merge reading the folder; wait a few seconds"
        )
    except PermissionError:  # alive, another user's
        pass
    return recorded


@contextlib.contextmanager
def no_writer(folder: Path, why: str) -> Iterator[None]:
    """Refuse to read ``folder`` while a ``sole_writer`` holds it, and keep one from starting while
    it is read: records copied halfway through a writer's cycle would be half a run. A folder that
    never had a writer (no ``.lock``) is read as it is, and nothing is written to it (it may be
    read-only)."""
    try:
        handle = (folder / ".lock").open("r", encoding="utf-8")
    except FileNotFoundError:
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusyError(f"{folder}: in use by {_holder(handle.read())}; {why}") from None
        except OSError:  # a filesystem without locks: sole_writer refuses to write there anyway
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _disk_full_is_the_users(target: Path) -> Iterator[None]:
    """A full disk or quota is the user's to fix, not a bug: say which file and what to do."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(exc):
            raise DiskFullError(
                f"{target}: no space left on the device (or quota) while writing it; it was left as it "
                "was before. Free space there, then re-run"
            ) from exc
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], sync: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on disk (fsynced)
    unless ``sync`` is False: then the caller flushes it later with ``sync_folder``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # a unique sibling name (not mkstemp, whose 0600 mode would stick to the output)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with _disk_full_is_the_users(target):
            yield tmp
            if sync:
                fsync_path(tmp)
            os.replace(tmp, target)
            if sync:
                fsync_path(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a folder's entries (names created, renamed or removed in it), to
    the disk. Any descriptor of a file flushes it, so files written by other code (pandas, PIL)
    are synced after they are closed, by path."""
    fd = os.open(path, os.O_RDONLY)  # a folder opens read-only too, and its fsync is its entries
    try:
        os.fsync(fd)
    except OSError as exc:
        # some filesystems (FUSE and network mounts) cannot fsync a folder: its files' fsyncs still hold
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP) or not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise
    finally:
        os.close(fd)


def sync_folder(folder: Path) -> None:
    """Put everything written under ``folder`` on disk: what a folder swap needs before the swap,
    and a bulk writer before it writes its index. On Linux one ``syncfs`` of its filesystem (1,000
    small files: ~15-250 ms here, against ~3-4 s for 1,000 fsyncs); elsewhere every file and
    folder is fsynced."""
    if not _syncfs(folder):
        fsync_tree(folder)


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under ``folder`` (itself included), folders after their contents."""
    for parent, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            fsync_path(Path(parent, name))
        fsync_path(Path(parent))


def _syncfs(path: Path) -> bool:
    """Flush the filesystem that holds ``path`` (Linux syncfs, which Python does not wrap, and
    which waits for the writes and reports their errors since Linux 5.8); False where the C
    library lacks it."""
    if not sys.platform.startswith("linux"):
        return False
    syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
    if syncfs is None:
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)
    return True


def write_bytes(path: str | os.PathLike[str], data: bytes, sync: bool = True) -> None:
    with atomic_path(path, sync) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str, sync: bool = True) -> None:
    write_bytes(path, text.encode("utf-8"), sync)


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
    """Swap a fully written staging folder into place; the old one is removed only after.

    On Linux the two folders trade places in one atomic step (renameat2 RENAME_EXCHANGE), so a
    reader or a killed run never finds ``target`` missing. Elsewhere it takes two renames, and
    between them the previous folder waits at ``.<name>.old``: a run killed there leaves it, and
    the next call for the same target puts it back first; a failed rename puts it back at once.
    ``staging`` is consumed either way: moved into place, or removed.

    Durable too: ``staging`` is flushed to disk (``sync_folder``) before the swap and the parent
    folder fsynced after it, before the previous folder is removed, so a power cut at any
    moment leaves the old folder or the complete new one, never an empty or half-written one.
    """
    staging, target = Path(staging), Path(target)
    old = target.with_name(f".{target.name}.old")
    try:
        with _disk_full_is_the_users(target):
            if old.exists() and not target.exists():  # a two-rename swap was killed between its renames
                os.replace(old, target)
            shutil.rmtree(old, ignore_errors=True)
            pause_point(f"replace_dir:{target.name}")
            sync_folder(staging)
            if not (target.exists() and _exchange(staging, target)):
                _swap_by_renames(staging, target, old)
            fsync_path(target.parent)  # the swap is on disk before the previous folder goes
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after an exchange: the previous folder
    shutil.rmtree(old, ignore_errors=True)


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux renameat2 RENAME_EXCHANGE, which Python
    does not wrap); False where the C library or the filesystem lacks it (macOS, NFS)."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_by_renames(staging: Path, target: Path, old: Path) -> None:
    if target.exists():
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except OSError:
        if old.exists() and not target.exists():
            os.replace(old, target)
        raise


def pause_point(name: str) -> None:
    """Test-only: stop here for good when ACORN_TEST_PAUSE_AT is ``name`` (tests/test_faults.py
    SIGKILLs the stage there, at a moment a sleep or a poll could not hit reliably). The line on
    stderr tells the test it got here. A no-op unless that variable is set."""
    if os.environ.get(PAUSE_VAR) != name:
        return
    print(f"acorn: paused at {name} ({PAUSE_VAR}, test only)", file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)
