"""The ``acorn serve`` command (registered in ``acorn.cli``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def serve(
    params: Annotated[Path, typer.Option("--params", help="params.yaml to read")] = Path("params.yaml"),
    host: Annotated[
        str, typer.Option(help="address to bind; keep loopback unless auth is set")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Label Studio's ML backend URL points here")] = 9090,
    data_root: Annotated[
        Path | None, typer.Option(help="folder local task images must lie in (default: the repository)")
    ] = None,
    refresh: Annotated[float, typer.Option(help="seconds between reads of the champion alias")] = 30.0,
    max_tasks: Annotated[int, typer.Option(help="tasks per /predict request (413 above)")] = 1000,
    max_pending: Annotated[int, typer.Option(help="/predict requests in flight (503 above)")] = 4,
) -> None:
    """Label Studio ML backend: pre-annotate tasks with the registry's champion, many tasks per batch.

    Reads models:/<register.model_name>@champion from MLFLOW_TRACKING_URI (default: mlflow.db here)
    and follows the alias without a restart. Env: LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY (to fetch
    uploaded images), ACORN_SERVE_TOKEN or ACORN_SERVE_BASIC_AUTH=user:pass (to require auth).
    """
    from acorn.params import load_params
    from acorn.serve.app import create_app
    from acorn.serve.config import ServeConfig
    from acorn.serve.server import run

    config = ServeConfig.from_params(
        load_params(params),
        Path(),
        data_root=data_root,
        refresh_s=refresh,
        max_tasks=max_tasks,
        max_pending=max_pending,
    )
    run(create_app(config), host, port, authenticated=bool(config.token or config.basic_auth))
