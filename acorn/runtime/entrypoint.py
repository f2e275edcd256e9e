"""What every entry point shares: logging, and the line between a user's mistake and a bug.

An ``AcornError`` is shown as one line (it names the file or key to fix) and exits 1; anything
else is a bug and keeps its traceback. ``--verbose`` (or ``ACORN_VERBOSE=1``) logs at DEBUG and
shows the traceback of user errors too. SIGTERM unwinds the program as an exception does, so
that scratch folders are removed. Kept free of typer, FastAPI and the Label Studio SDK so
that a stage script imports only what it uses.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from acorn.runtime.errors import AcornError

log = logging.getLogger("acorn")
_NOISY = ("mlflow", "alembic", "urllib3", "httpx", "matplotlib", "PIL", "httpcore", "filelock")


def verbose_requested(argv: list[str] | None = None) -> bool:
    argv = sys.argv[1:] if argv is None else argv
    return "--verbose" in argv or "-v" in argv or os.environ.get("ACORN_VERBOSE", "") not in ("", "0")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def unwind_on_sigterm() -> None:
    """Make SIGTERM (``kill PID``, a batch scheduler's preemption or time limit) end this process
    through ``SystemExit``, so that ``finally`` blocks and temporary folders clean up; its default
    action kills the process where it stands and leaves scratch folders behind. The exit status is
    the shell's for a process SIGTERM killed, 143. A second SIGTERM, or one to a process forked
    from this one (data loader or tiling workers), acts as by default: a hung cleanup can still
    be stopped, and workers do not raise in their parent's code."""
    if threading.current_thread() is not threading.main_thread():
        return  # Python runs signal handlers in the main thread only; signal.signal refuses others
    owner = os.getpid()

    def unwind(signum: int, _frame: object) -> None:
        signal.signal(signum, signal.SIG_DFL)
        if os.getpid() != owner:
            os.kill(os.getpid(), signum)
            return
        # PyTorch's data-loader watchdog would turn the workers' own SIGTERM deaths, reported
        # while this unwinds, into a RuntimeError that replaces the exit
        signal.signal(signal.SIGCHLD, lambda *_: None)
        log.warning("stopped by SIGTERM: cleaning up; what was saved is kept for the next run")
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, unwind)


def run_supervised(cmd: list[str], **popen: Any) -> None:
    """Run ``cmd`` (``dvc repro``) to its end, raising ``CalledProcessError`` as ``check=True``
    does. It runs in a process group of its own, and when this process stops (SIGTERM unwinding,
    Ctrl-C) that group gets the same signal: DVC does not pass SIGTERM on to the stage it runs, so
    stopping only DVC would leave the stage running unwatched, beside the next ``dvc repro``."""
    proc = subprocess.Popen(cmd, process_group=0, **popen)
    try:
        code = proc.wait()
    except BaseException as stopped:
        sent = signal.SIGINT if isinstance(stopped, KeyboardInterrupt) else signal.SIGTERM
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, sent)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise
    if code:
        raise subprocess.CalledProcessError(code, cmd)


@contextmanager
def user_errors(what: str, verbose: bool = False) -> Iterator[None]:
    """Show an ``AcornError`` as one actionable line and exit 1; let every other exception through."""
    try:
        yield
    except AcornError as exc:
        if verbose:
            log.exception("%s failed", what)
        else:
            log.error("%s failed: %s", what, exc)
        sys.exit(1)


def run_stage(stage: Callable) -> None:
    """Entry point of ``stages/*.py``: params.yaml in the working directory, ``--verbose`` honoured."""
    from acorn.params import load_params

    verbose = verbose_requested()
    setup_logging(verbose)
    unwind_on_sigterm()
    with user_errors(stage.__module__ if stage.__module__ != "__main__" else stage.__name__, verbose):
        stage(load_params())
