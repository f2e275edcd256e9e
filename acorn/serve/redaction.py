"""Credentials out of everything serve shows or writes: ``/health``, error details, its log.

MLflow's errors quote the request URL, so a tracking URI with ``user:password@`` puts the
password into an exception's text, and from there into ``/health`` (which answers without
auth) and the log. ``register`` strips such URIs with ``acorn.model.registry.redacted``; serve
applies the same to every URL in a text, and also masks the known secret values themselves
(a token can appear without a URL around it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from acorn.model.registry import redacted

MASK = "***"
# variables whose values are secrets wherever they show up
SECRET_VARS = (
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "LABEL_STUDIO_API_KEY",
    "DAGSHUB_USER_TOKEN",
    "ACORN_SERVE_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)
MIN_SECRET_CHARS = 4  # shorter values would mask ordinary words
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """The secret values in ``env``: the variables above, the basic-auth password, the password in
    ``MLFLOW_TRACKING_URI``; longest first, so a secret inside another is masked whole."""
    env = os.environ if env is None else env
    found = [env.get(name, "") for name in SECRET_VARS]
    found.append(env.get("ACORN_SERVE_BASIC_AUTH", "").partition(":")[2])
    with contextlib.suppress(ValueError):  # a malformed URI: nothing to take from it
        found.append(urlsplit(env.get("MLFLOW_TRACKING_URI", "")).password or "")
    return sorted({v for v in found if len(v) >= MIN_SECRET_CHARS}, key=len, reverse=True)


def scrub(text: str, env: Mapping[str, str] | None = None) -> str:
    """``text`` with every URL's credentials removed and every known secret masked."""
    text = _URL.sub(lambda m: _redacted(m.group(0)), text)
    for value in secret_values(env):
        text = text.replace(value, MASK)
    return text


def _redacted(url: str) -> str:
    try:
        return redacted(url)
    except ValueError:  # urlsplit refuses some malformed netlocs: drop everything before the host
        return re.sub(r"://[^/@\s]*@", "://", url)


class ScrubFilter(logging.Filter):
    """A handler filter that scrubs each record's message and traceback before it is written.

    On handlers, not loggers: a logger's filter does not see records of other libraries'
    loggers (MLflow, urllib3, uvicorn) that reach the same handler.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = scrub(message)
        if scrubbed != message:  # only then: uvicorn's access formatter reads the args themselves
            record.msg, record.args = scrubbed, None
        if record.exc_info:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def scrub_log_handlers(loggers: tuple[str, ...] = ("", "uvicorn", "uvicorn.error", "uvicorn.access")) -> None:
    """Add :class:`ScrubFilter` to every handler of ``loggers`` (the root logger and uvicorn's)."""
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, ScrubFilter) for f in handler.filters):
                handler.addFilter(ScrubFilter())
