"""Settings of ``acorn serve``: params.yaml for what must match the pipeline, env for secrets."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from acorn.errors import AcornError
from acorn.params import Params


class ServeConfigError(AcornError):
    """A setting of ``acorn serve`` (option or environment variable) that cannot work; the message names it."""


@dataclass(frozen=True)
class ServeConfig:
    # from params.yaml (from_params): declared there, with their defaults, and nowhere else
    model_name: str  # register.model_name
    threshold: float  # rank.threshold: boxes below it are kept by predict, not shown
    root: Path = Path()  # the repository: its mlflow.db unless MLFLOW_TRACKING_URI is set
    data_root: Path = Path()  # local image references must resolve inside this folder
    refresh_s: float = 30.0  # how often the champion alias is re-read
    load_timeout_s: float = 120.0  # how long a /predict waits for the first model load
    max_tasks: int = 1000  # tasks per /predict request (413 above)
    max_body_bytes: int = 32 * 1024 * 1024  # request body (413 above)
    max_image_bytes: int = 32 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_pending: int = 4  # /predict requests in flight before answering 503
    chunk_tasks: int = 64  # images decoded and held in memory at once per request
    fetch_concurrency: int = 16
    fetch_timeout_s: float = 30.0
    label_studio_url: str = ""  # LABEL_STUDIO_URL: base for /data/upload/... task URLs
    label_studio_api_key: str = ""  # LABEL_STUDIO_API_KEY: legacy token or personal access token
    token: str = ""  # ACORN_SERVE_TOKEN: require "Authorization: Bearer <token>"
    basic_auth: str = ""  # ACORN_SERVE_BASIC_AUTH=user:pass: require HTTP basic auth

    @classmethod
    def from_params(cls, p: Params, root: Path = Path(), **overrides) -> ServeConfig:
        """What the pipeline decides (model name, display threshold) from params, secrets from env."""
        env = os.environ
        config = cls(
            model_name=p.register.model_name,
            root=Path(root),
            data_root=Path(root),
            threshold=p.rank.threshold,
            label_studio_url=env.get("LABEL_STUDIO_URL", ""),
            label_studio_api_key=env.get("LABEL_STUDIO_API_KEY", ""),
            token=env.get("ACORN_SERVE_TOKEN", ""),
            basic_auth=env.get("ACORN_SERVE_BASIC_AUTH", ""),
        )
        return replace(config, **{k: v for k, v in overrides.items() if v is not None})

    def __post_init__(self) -> None:
        if self.basic_auth and ":" not in self.basic_auth:
            raise ServeConfigError("ACORN_SERVE_BASIC_AUTH must be user:password (it has no colon)")
        if not 0.0 <= self.threshold <= 1.0:
            raise ServeConfigError(
                f"display threshold (rank.threshold) must be in [0, 1], got {self.threshold}"
            )
        for name in ("max_tasks", "max_pending", "chunk_tasks", "fetch_concurrency"):
            if getattr(self, name) < 1:
                option = f" (--{name.replace('_', '-')})" if name in ("max_tasks", "max_pending") else ""
                raise ServeConfigError(f"acorn serve: {name}{option} must be >= 1, got {getattr(self, name)}")
