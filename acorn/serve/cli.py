"""The ``acorn serve`` command (registered in ``acorn.cli``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def serve(
    params: Annotated[Path, typer.Option("--params", help="params.yaml to read")] = Path("params.yaml"),
    host: Annotated[
        str, typer.Option(help="address to bind; a non-loopback one needs auth or --insecure-public")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Label Studio's ML backend URL points here")] = 9090,
    data_root: Annotated[
        Path | None,
        typer.Option(help="the only folder local task images are read from (default: data/tiles)"),
    ] = None,
    refresh: Annotated[
        float | None, typer.Option(help="seconds between reads of the champion alias (default 30)")
    ] = None,
    max_tasks: Annotated[
        int | None, typer.Option(help="tasks per /predict request, 413 above (default 1000)")
    ] = None,
    max_pending: Annotated[
        int | None, typer.Option(help="/predict requests in flight, 503 above (default 4)")
    ] = None,
    max_image_pixels: Annotated[
        int | None, typer.Option(help="pixels of one image, read from its header (default 40 M)")
    ] = None,
    max_request_pixels: Annotated[
        int | None, typer.Option(help="pixels all images of one request may decode (default 400 M)")
    ] = None,
    max_process_pixels: Annotated[
        int | None,
        typer.Option(help="decoded pixels all requests may hold at once, 4 bytes each (default 120 M)"),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            help="an image host besides Label Studio and DagsHub (repeat; *.example.org for subdomains)"
        ),
    ] = None,
    allow_private_hosts: Annotated[
        bool, typer.Option(help="let allowed hosts resolve to loopback, private or link-local addresses")
    ] = False,
    public_name: Annotated[
        list[str] | None,
        typer.Option(help="a name clients use to reach serve besides loopback (the Host header; repeat)"),
    ] = None,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(help="a browser origin allowed to call serve (repeat; none by default)"),
    ] = None,
    insecure_public: Annotated[
        bool, typer.Option(help="serve a non-loopback address without authentication (refused otherwise)")
    ] = False,
) -> None:
    """Label Studio ML backend: pre-annotate tasks with the registry's champion, many tasks per batch.

    Reads models:/<register.model_name>@champion from MLFLOW_TRACKING_URI (default: mlflow.db here)
    and follows the alias without a restart. Env: LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY (to fetch
    uploaded images), ACORN_SERVE_TOKEN or ACORN_SERVE_BASIC_AUTH=user:pass (to require auth).
    Images come only from the data root, Label Studio's media, repo:// files on the DagsHub host
    and hosts named with --allow-host (docs/security.md).
    """
    from acorn.params import load_params
    from acorn.serve.app import create_app
    from acorn.serve.config import ServeConfig
    from acorn.serve.server import is_loopback, run

    names = list(public_name or [])
    if not is_loopback(host) and host not in ("0.0.0.0", "::"):
        names.append(host)  # bound to one address: clients name it in the Host header
    config = ServeConfig.from_params(
        load_params(params),
        Path(),
        data_root=data_root,
        refresh_s=refresh,
        max_tasks=max_tasks,
        max_pending=max_pending,
        max_image_pixels=max_image_pixels,
        max_request_pixels=max_request_pixels,
        max_process_pixels=max_process_pixels,
        allow_hosts=tuple(allow_host or ()),
        allow_private_hosts=allow_private_hosts,
        public_names=tuple(names),
        allow_origins=tuple(allow_origin or ()),
    )
    run(create_app(config), host, port, authenticated=config.authenticated, insecure_public=insecure_public)
