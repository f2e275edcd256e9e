"""Settings of ``acorn serve``: params.yaml for what must match the pipeline, env for secrets."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from acorn.data import repo_uris
from acorn.params import Params
from acorn.runtime.errors import AcornError

DATA_ROOT = Path("data") / "tiles"  # where the tile stage writes: the only local images serve reads
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


class ServeConfigError(AcornError):
    """A setting of ``acorn serve`` (option or environment variable) that cannot work; the message names it."""


@dataclass(frozen=True)
class ServeConfig:
    # from params.yaml (from_params): declared there, with their defaults, and nowhere else
    model_name: str  # register.model_name
    threshold: float  # rank.threshold: boxes below it are kept by predict, not shown
    root: Path = Path()  # the repository: its mlflow.db unless MLFLOW_TRACKING_URI is set
    data_root: Path = DATA_ROOT  # local image references must resolve inside this folder
    # relative local references are relative to this (Label Studio's document root); None: data_root
    document_root: Path | None = None
    refresh_s: float = 30.0  # how often the champion alias is re-read
    load_timeout_s: float = 120.0  # how long a /predict waits for the first model load
    max_tasks: int = 1000  # tasks per /predict request (413 above)
    max_body_bytes: int = 32 * 1024 * 1024  # request body (413 above)
    max_image_bytes: int = 32 * 1024 * 1024
    max_image_pixels: int = 40_000_000  # one image, read from its header before decoding
    # all images one request decodes: 1000 tiles of 640x540 (346 MP) pass
    max_request_pixels: int = 400_000_000
    # decoded images all requests hold at once, 4 bytes a pixel in PIL: 480 MB. A request holds
    # two chunks (one inferred, one prefetched): 64-tile chunks of 640x540 tiles are 44 MP
    max_process_pixels: int = 120_000_000
    max_pending: int = 4  # /predict requests in flight before answering 503
    chunk_tasks: int = 64  # images decoded and held in memory at once per request
    fetch_concurrency: int = 16
    fetch_timeout_s: float = 30.0
    allow_hosts: tuple[str, ...] = ()  # --allow-host: image hosts beyond Label Studio and DagsHub
    allow_private_hosts: bool = False  # --allow-private-hosts: allowed hosts may resolve to private addresses
    public_names: tuple[str, ...] = ()  # --public-name: Host headers accepted besides loopback ones
    allow_origins: tuple[str, ...] = ()  # --allow-origin: browser origins that may call serve
    label_studio_url: str = ""  # LABEL_STUDIO_URL: base for /data/upload/... task URLs
    # secrets: never in a repr (a log line or traceback that prints the config shows none)
    label_studio_api_key: str = field(default="", repr=False)  # LABEL_STUDIO_API_KEY
    token: str = field(default="", repr=False)  # ACORN_SERVE_TOKEN: require "Authorization: Bearer <token>"
    basic_auth: str = field(default="", repr=False)  # ACORN_SERVE_BASIC_AUTH=user:pass: require basic auth

    @classmethod
    def from_params(cls, p: Params, root: Path = Path(), **overrides) -> ServeConfig:
        """What the pipeline decides (model name, display threshold, Label Studio's document root)
        from params, secrets from env."""
        env = os.environ
        root = Path(root)
        document_root = p.labeling.document_root
        config = cls(
            model_name=p.register.model_name,
            root=root,
            data_root=root / DATA_ROOT,
            document_root=root / document_root
            if document_root and not repo_uris.is_repo_uri(document_root)
            else root,
            threshold=p.rank.threshold,
            label_studio_url=env.get("LABEL_STUDIO_URL", ""),
            label_studio_api_key=env.get("LABEL_STUDIO_API_KEY", ""),
            token=env.get("ACORN_SERVE_TOKEN", ""),
            basic_auth=env.get("ACORN_SERVE_BASIC_AUTH", ""),
        )
        return replace(config, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def authenticated(self) -> bool:
        return bool(self.token or self.basic_auth)

    @property
    def host_names(self) -> frozenset[str]:
        """The names a request's Host header may carry: a page on another name cannot reach serve
        by pointing that name at 127.0.0.1 (DNS rebinding)."""
        return frozenset(n.lower().strip("[]") for n in (*LOOPBACK_NAMES, *self.public_names))

    def __post_init__(self) -> None:
        if self.basic_auth and ":" not in self.basic_auth:
            raise ServeConfigError("ACORN_SERVE_BASIC_AUTH must be user:password (it has no colon)")
        if not 0.0 <= self.threshold <= 1.0:
            raise ServeConfigError(
                f"display threshold (rank.threshold) must be in [0, 1], got {self.threshold}"
            )
        options = ("max_tasks", "max_pending", "max_image_pixels", "max_request_pixels", "max_process_pixels")
        for name in (*options, "chunk_tasks", "fetch_concurrency"):
            if getattr(self, name) < 1:
                option = f" (--{name.replace('_', '-')})" if name in options else ""
                raise ServeConfigError(f"acorn serve: {name}{option} must be >= 1, got {getattr(self, name)}")
