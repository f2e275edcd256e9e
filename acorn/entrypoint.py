"""What every entry point shares: logging, and the line between a user's mistake and a bug.

An ``AcornError`` is shown as one line (it names the file or key to fix) and exits 1; anything
else is a bug and keeps its traceback. ``--verbose`` (or ``ACORN_VERBOSE=1``) logs at DEBUG and
shows the traceback of user errors too. Kept free of typer, FastAPI and the Label Studio SDK so
that a stage script imports only what it uses.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from acorn.errors import AcornError

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
    with user_errors(stage.__module__ if stage.__module__ != "__main__" else stage.__name__, verbose):
        stage(load_params())
