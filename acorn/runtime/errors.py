"""Errors a user can act on.

Every ``AcornError`` names the file, key or server it is about and says what to do; the
command line shows it as one line. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class AcornError(Exception):
    """A mistake in the user's input or set-up, with a message that says how to fix it."""


class ParamsError(AcornError):
    """A params.yaml value is missing, mistyped or out of range (the message names the key)."""


class InputError(AcornError):
    """A data file (frame, label, metadata, model) cannot be used (the message names the file)."""
