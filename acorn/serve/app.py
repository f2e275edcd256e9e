"""``acorn serve``: a Label Studio ML backend that pre-annotates with the registry's champion.

Endpoints (what Label Studio calls): ``GET /health``, ``POST /setup`` (answers at once; the
model loads in the background), ``POST /predict`` (one prediction per task, in order, always:
a task whose image cannot be used gets an empty prediction with an ``error``), ``POST /webhook``
(logged only: training belongs to the DVC pipeline).

Batch-first: all tasks of a request are fetched concurrently and go through the same
``Detector.predict`` as the predict stage, ``batch`` tiles per forward pass, so pre-annotating
a thousand tasks costs about what the predict stage costs for them.

Safe by default, since a web page the user opens can send requests to 127.0.0.1 too: a request
must name a loopback or configured Host (no DNS rebinding), carry no browser Origin that is not
allowed, and POST ``application/json`` (a page can send ``text/plain`` without a CORS
preflight; it cannot send JSON). What task images may be fetched is acorn.serve.images' part.
No OpenAPI pages: they would describe the service to anyone who can reach it, token or not.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from acorn.model.registry import tracking_uri
from acorn.serve.champion import Champion, LoadedModel, ModelUnavailable
from acorn.serve.config import ServeConfig
from acorn.serve.images import (
    DagsHubFiles,
    FetchPolicy,
    ImageError,
    ImageLimits,
    ImageSource,
    LabelStudioAuth,
    PixelBudget,
    RequestPixels,
    guarded_client,
)
from acorn.serve.protocol import (
    LabelTarget,
    error_prediction,
    parse_label_config,
    prediction,
    rectangle_results,
)
from acorn.serve.redaction import scrub

log = logging.getLogger("acorn.serve")

MODEL_CLASS = "acorn.serve"
SETUP_WAIT_S = 2.0  # Label Studio gives /setup 3 s


def create_app(config: ServeConfig, champion: Champion | None = None) -> FastAPI:
    """The ASGI app; the HTTP client, and the champion watcher unless one is given, live as long as it runs.

    A given ``champion`` belongs to the caller (several apps may share one loaded model).
    """
    owned = champion is None
    champion = champion or Champion(config.model_name, tracking_uri(config.root), config.refresh_s)
    busy = {"pending": 0}

    pixels = PixelBudget(config.max_process_pixels)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        champion.start()
        dagshub = DagsHubFiles()
        policy = FetchPolicy(
            config.label_studio_url, dagshub.host, config.allow_hosts, config.allow_private_hosts
        )
        async with guarded_client(policy, config.fetch_timeout_s, config.fetch_concurrency) as client:
            app.state.images = ImageSource(
                config.data_root,
                ImageLimits(config.max_image_bytes, config.max_image_pixels),
                client,
                policy,
                LabelStudioAuth(config.label_studio_url, config.label_studio_api_key),
                config.fetch_concurrency,
                dagshub,
                config.document_root,
            )
            yield
        if owned:
            champion.stop()

    app = FastAPI(
        title="acorn ML backend",
        lifespan=lifespan,
        dependencies=[Depends(_auth_check(config))],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(RequestGuard, hosts=config.host_names, origins=frozenset(config.allow_origins))
    app.state.champion = champion
    app.state.pixels = pixels

    @app.get("/health")
    async def health() -> dict:
        return {"status": "UP", "model_class": MODEL_CLASS, **champion.status()}

    @app.post("/setup")
    async def setup(request: Request) -> dict:
        body = await _read_json(request, config.max_body_bytes)
        try:
            model = champion.current(timeout=0)
            label = model.label
        except ModelUnavailable:
            try:
                label = await asyncio.to_thread(champion.target_label, SETUP_WAIT_S)
            except ModelUnavailable as exc:
                raise HTTPException(503, str(exc)) from exc
        log.info("setup from project %s: model_version %s", body.get("project"), label)
        return {"model_version": label}

    def check_busy() -> None:
        if busy["pending"] >= config.max_pending:
            raise HTTPException(
                503,
                f"{busy['pending']} predict requests already in flight; retry later",
                headers={"Retry-After": "5"},
            )

    @app.post("/predict")
    async def predict(request: Request) -> dict:
        # checked before the body is read (a busy server reads no more bodies) and again after:
        # counting from the start would let clients that send slowly hold every slot
        check_busy()
        body = await _read_json(request, config.max_body_bytes)
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise HTTPException(400, "body must have 'tasks': a list of Label Studio tasks")
        label_config = body.get("label_config")
        if label_config is not None and not isinstance(label_config, str):
            raise HTTPException(400, "'label_config' must be the project's label config, a string")
        if len(tasks) > config.max_tasks:
            raise HTTPException(
                413,
                f"{len(tasks)} tasks in one request; at most {config.max_tasks} (acorn serve --max-tasks)",
            )
        check_busy()
        busy["pending"] += 1
        budget = RequestPixels(pixels, config.max_request_pixels)
        try:
            try:
                model = await asyncio.to_thread(champion.current, config.load_timeout_s)
            except ModelUnavailable as exc:
                raise HTTPException(503, str(exc)) from exc
            target = parse_label_config(label_config)
            start = time.perf_counter()
            results = await _predict_tasks(tasks, target, model, request.app.state.images, config, budget)
        finally:
            budget.close()
            busy["pending"] -= 1
        errors = sum("error" in r for r in results)
        seconds = time.perf_counter() - start
        log.info(
            "predicted %d tasks with %s in %.2f s (%.1f tasks/s)%s",
            len(tasks),
            model.label,
            seconds,
            len(tasks) / seconds if seconds else 0.0,
            f"; {errors} with an error instead of boxes (see the warnings above)" if errors else "",
        )
        return {"results": results, "model_version": model.label}

    @app.post("/webhook")
    async def webhook(request: Request) -> dict:
        body = await _read_json(request, config.max_body_bytes)
        project = body.get("project")
        log.info(
            "webhook %s from project %s noted; training runs in the DVC pipeline (`dvc repro`), not here",
            body.get("action"),
            project.get("id") if isinstance(project, dict) else project,
        )
        return {"status": "ok"}

    return app


async def _predict_tasks(
    tasks: list,
    target: LabelTarget,
    model: LoadedModel,
    images: ImageSource,
    config: ServeConfig,
    budget: RequestPixels,
) -> list[dict]:
    """One prediction per task, in order; chunks of tasks are fetched while the previous one runs.

    A chunk's pixels go back to the process budget once it is predicted, so a request holds
    two chunks of decoded images at most.
    """
    references = [_reference(task, target.value_key) for task in tasks]
    chunks = [
        range(i, min(i + config.chunk_tasks, len(tasks))) for i in range(0, len(tasks), config.chunk_tasks)
    ]
    results: list[dict] = []
    if not chunks:
        return results
    loading = asyncio.create_task(_load(images, references, chunks[0], budget))
    try:
        for n in range(len(chunks)):
            loaded = await loading
            if n + 1 < len(chunks):
                loading = asyncio.create_task(_load(images, references, chunks[n + 1], budget))
            results += await _predict_chunk(loaded, target, model, config)
            budget.release(sum(img.width * img.height for img in loaded if not isinstance(img, ImageError)))
            del loaded  # not held while the next chunk is awaited: two chunks at most, as budgeted
    finally:
        loading.cancel()  # a cancelled request (client gone) stops fetching the next chunk
    return results


async def _predict_chunk(
    loaded: list, target: LabelTarget, model: LoadedModel, config: ServeConfig
) -> list[dict]:
    """Predictions for one chunk of tasks whose images are loaded (or :class:`ImageError`)."""
    usable = [(i, img) for i, img in enumerate(loaded) if not isinstance(img, ImageError)]
    try:
        found = await asyncio.to_thread(_infer, model, [img for _, img in usable])
    except Exception as exc:  # a model failure: report it on these tasks, keep the count right
        log.exception("inference failed on %d tasks", len(usable))
        failure = ImageError(scrub(f"inference failed: {type(exc).__name__}: {exc}"))
        loaded = [failure if not isinstance(img, ImageError) else img for img in loaded]
        found = []
    results: list[dict] = []
    by_position = dict(zip((i for i, _ in usable), found, strict=False))
    for i, img in enumerate(loaded):
        if isinstance(img, ImageError):
            results.append(error_prediction(str(img), model.label))
            continue
        boxes, width, height = by_position[i]
        shown = boxes[boxes["confidence"] >= config.threshold]
        names = model.detector.class_names
        _warn_unknown_labels(shown, names, target)
        results.append(prediction(rectangle_results(shown, width, height, names, target), model.label))
    return results


def _reference(task: object, key: str) -> str | ImageError:
    data = task.get("data") if isinstance(task, dict) else None
    if not isinstance(data, dict) or key not in data:
        task_id = task.get("id") if isinstance(task, dict) else None
        return ImageError(
            f"task {task_id} has no data.{key} (the field the label config's Image tag reads as ${key})"
        )
    return data[key]


async def _load(images: ImageSource, references: list, chunk: range, budget: RequestPixels) -> list:
    wanted = [references[i] for i in chunk]
    to_load = [r for r in wanted if not isinstance(r, ImageError)]
    loaded = iter(await images.load(to_load, budget))
    return [r if isinstance(r, ImageError) else next(loaded) for r in wanted]


def _infer(model: LoadedModel, images: list) -> list[tuple[pd.DataFrame, int, int]]:
    """Detect on each image: ``(boxes, width, height)`` per image, in order.

    Images of one size go through ``Detector.predict`` together: ultralytics letterboxes a
    batch of mixed sizes differently from one of a single size, and grouping keeps every
    tile's boxes identical to what the predict stage (whose tiles share one size) finds.
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(img.size, []).append(i)
    out: list = [None] * len(images)
    with model.lock:
        for members in groups.values():
            found = model.detector.predict([images[i] for i in members], [str(i) for i in members])
            per_tile = dict(tuple(found.boxes.groupby("tile_id")))
            for row in found.tiles.itertuples(index=False):
                boxes = per_tile.get(row.tile_id, found.boxes.iloc[:0])
                out[int(row.tile_id)] = (boxes, int(row.width), int(row.height))
    return out


_warned_labels: set[str] = set()


def _warn_unknown_labels(boxes: pd.DataFrame, names: dict[int, str], target: LabelTarget) -> None:
    if not target.labels:
        return
    for class_id in boxes["class_id"].unique():
        name = names.get(int(class_id), str(class_id))
        if name not in target.labels and name not in _warned_labels:
            _warned_labels.add(name)
            log.warning(
                "model class %r is not a <Label> of %s in the project's label config (%s): "
                "Label Studio will show it as an unknown label; add it or rename the class",
                name,
                target.from_name,
                ", ".join(target.labels),
            )


async def _read_json(request: Request, limit: int) -> dict:
    """The JSON object body, refused with 413 once it passes ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body of {declared} bytes; at most {limit} (--max-body-bytes)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"request body over {limit} bytes (--max-body-bytes)")
    try:
        data = json.loads(body) if body else {}
    except ValueError as exc:
        raise HTTPException(400, f"body is not JSON: {exc}") from exc
    except RecursionError as exc:  # nested deeper than the parser's stack
        raise HTTPException(400, "body is JSON nested too deeply") from exc
    if not isinstance(data, dict):
        raise HTTPException(400, "body must be a JSON object")
    return data


class RequestGuard:
    """Host, Origin and Content-Type checked before any route runs or any body is read.

    - Host: a loopback name or a configured public name (``--public-name``). A page on
      ``evil.example`` whose name is re-pointed at 127.0.0.1 (DNS rebinding) sends
      ``Host: evil.example`` and is refused.
    - Origin: browsers send it on every cross-site POST; Label Studio's server-side calls send
      none. A present Origin must be allowed (``--allow-origin``), else 403.
    - Content-Type: a POST must say ``application/json``, which a page cannot send across
      origins without a CORS preflight that serve never answers, else 415.
    """

    def __init__(self, app: ASGIApp, hosts: frozenset[str], origins: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts
        self.origins = frozenset(o.rstrip("/").lower() for o in origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope["method"], headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, detail = refusal
        log.warning("refused %s %s: %s", scope["method"], scope["path"], detail)
        await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)

    def _refusal(self, method: str, headers: dict[str, str]) -> tuple[int, str] | None:
        if _host_name(headers.get("host", "")) not in self.hosts:
            return 400, "unexpected Host header; serve answers to loopback names and --public-name"
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/").lower() not in self.origins:
            return 403, "requests from web pages are refused (Origin not allowed; see --allow-origin)"
        if method == "POST":
            mime = headers.get("content-type", "").split(";")[0].strip().lower()
            if mime != "application/json":
                return 415, "the body must be JSON, sent as Content-Type: application/json"
        return None


def _host_name(host: str) -> str:
    """The name in a Host header, without its port: ``[::1]:9090`` -> ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _auth_check(config: ServeConfig):
    """A dependency that requires the configured bearer token or basic credentials (if any)."""
    token = config.token.encode()
    basic = config.basic_auth.encode()

    async def check(request: Request) -> None:
        if not token and not basic:
            return
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        credentials = credentials.strip()
        if token and scheme.lower() == "bearer" and secrets.compare_digest(credentials.encode(), token):
            return
        if basic and scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True)
            except (binascii.Error, ValueError):
                decoded = b""
            if secrets.compare_digest(decoded, basic):
                return
        challenge = 'Basic realm="acorn"' if basic else "Bearer"
        raise HTTPException(
            401,
            "authentication required: set the ML backend's basic auth in Label Studio, or send the token",
            headers={"WWW-Authenticate": challenge},
        )

    return check
