"""``acorn labelstudio ...``: run a local Label Studio, set up the project, simulate an annotator.

Mount with ``app.add_typer(labelstudio_app, name="labelstudio")``. Every command runs from
the repository root (it reads ``params.yaml`` and writes ``.env`` there). A failure the user
can act on is a ``LabelStudioError`` (an ``AcornError``), shown as one line by the top-level
handler of ``acorn`` (``acorn.runtime.entrypoint.user_errors``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from acorn.paths import LABEL_SNAPSHOT, TRUTH

labelstudio_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Run a local Label Studio, set up the project, simulate an annotator.",
)

ParamsOption = Annotated[Path, typer.Option("--params", help="params.yaml to read (classes)")]
PortOption = Annotated[int | None, typer.Option(help="port on 127.0.0.1 (default: last used, else 8080)")]


@labelstudio_app.command()
def start(
    port: PortOption = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for /health")] = 240.0,
) -> None:
    """Start the local server (installing it into .acorn/labelstudio/venv on first use); writes .env."""
    from acorn.labeling.labelstudio.server import LocalServer

    server = LocalServer.for_repo(Path(), port)
    if server.needs_install():
        typer.echo(
            f"installing Label Studio into {server.venv} from {server.lock_file.name} (about a minute)..."
        )
    status = server.start(timeout=timeout)
    creds = server.credentials()
    typer.echo(f"Label Studio is up at {status.url} (pid {status.pid}); LABEL_STUDIO_URL/API_KEY are in .env")
    typer.echo(
        f"log in as {creds.get('username')}; `acorn labelstudio credentials` shows the password "
        f"(kept in {server.credentials_file}, readable by you only)"
    )


@labelstudio_app.command()
def credentials() -> None:
    """Show the local server's admin login (kept out of logs: start does not print the password)."""
    from acorn.labeling.labelstudio.client import LabelStudioError
    from acorn.labeling.labelstudio.server import LocalServer

    server = LocalServer.for_repo(Path())
    creds = server.credentials()
    if not creds:
        raise LabelStudioError(f"no {server.credentials_file}: run `acorn labelstudio start` first")
    typer.echo(f"username: {creds.get('username')}\npassword: {creds.get('password')}")


@labelstudio_app.command()
def stop() -> None:
    """Stop the local server by the pid in .acorn/labelstudio/server.pid."""
    from acorn.labeling.labelstudio.server import LocalServer

    server = LocalServer.for_repo(Path())
    typer.echo("stopped" if server.stop() else "not running")


@labelstudio_app.command()
def status() -> None:
    """Is the local server running and answering? Exit code 0 only if it is."""
    from acorn.labeling.labelstudio.server import LocalServer

    server = LocalServer.for_repo(Path())
    st = server.status()
    typer.echo(f"{st.url}: {st.detail}" + (f" (pid {st.pid})" if st.pid else ""))
    if st.running:
        creds = server.credentials()
        typer.echo(f"login: {creds.get('username')} (password in {server.credentials_file})")
    if not (st.running and st.healthy):
        sys.exit(1)


@labelstudio_app.command()
def setup(
    params: ParamsOption = Path("params.yaml"),
    title: Annotated[str, typer.Option(help="project title (the key that finds it again)")] = "acorn",
    storage: Annotated[
        str | None, typer.Option(help="tiles folder served to the browser, relative to the repo")
    ] = "data/tiles",
    no_storage: Annotated[bool, typer.Option(help="no local-files storage (a remote server)")] = False,
    ml_backend: Annotated[
        str | None, typer.Option(help="ML backend URL to connect, e.g. acorn serve")
    ] = None,
) -> None:
    """Create or align the project (labels from params classes, storage, ML backend); safe to re-run."""
    from acorn.labeling.labelstudio.backend import LabelStudioBackend
    from acorn.params import load_params

    p = load_params(params)
    backend = LabelStudioBackend.from_params(
        p, Path(), title=title, storage_path=None if no_storage else storage, ml_backend_url=ml_backend
    )
    result = backend.setup()
    what = ", ".join(result.changed) if result.changed else "nothing (already set up)"
    typer.echo(f"project {title!r} (id {result.project_id}) at {backend.connection.url}: changed {what}")
    for warning in result.warnings:
        typer.echo(f"note: {warning}", err=True)


@labelstudio_app.command()
def annotate(
    params: ParamsOption = Path("params.yaml"),
    truth: Annotated[Path, typer.Option(help="YOLO truth files, <tile_id>.txt")] = TRUTH,
    limit: Annotated[int | None, typer.Option(help="answer at most this many waiting tasks")] = None,
    title: Annotated[str, typer.Option(help="project title")] = "acorn",
) -> None:
    """Simulated annotator: answer waiting tasks from ground truth through the API, as the admin user."""
    from acorn.labeling.labelstudio.annotator import simulate_annotations
    from acorn.labeling.labelstudio.backend import LabelStudioBackend
    from acorn.params import load_params

    p = load_params(params)
    backend = LabelStudioBackend.from_params(p, Path(), title=title)
    result = simulate_annotations(backend, truth, limit=limit)
    for problem in result.problems:
        typer.echo(f"skipped: {problem}", err=True)
    typer.echo(f"answered {result.created} tasks ({result.negatives} negatives), skipped {result.skipped}")


@labelstudio_app.command()
def restore(
    params: ParamsOption = Path("params.yaml"),
    snapshot: Annotated[Path, typer.Option(help="labels snapshot written by export-labels")] = LABEL_SNAPSHOT,
    title: Annotated[str | None, typer.Option(help="project title (default: the snapshot's project)")] = None,
) -> None:
    """Rebuild the project from the last labels snapshot (a fresh server, a lost database): every
    task with its annotations and predictions, the model version; safe to re-run."""
    from acorn.labeling.labelstudio.backend import LabelStudioBackend
    from acorn.labeling.snapshot import read_snapshot
    from acorn.params import load_params
    from acorn.runtime.errors import AcornError

    p = load_params(params)
    snap = read_snapshot(snapshot)
    if snap is None:
        raise AcornError(
            f"no labels snapshot in {snapshot}: `dvc pull {snapshot}` fetches the last one from the "
            f"DVC remote (`dvc checkout {snapshot}` from the local cache)"
        )
    if snap.project.get("backend") != "label-studio":
        raise AcornError(
            f"{snapshot} holds a snapshot of the {snap.project.get('backend')!r} backend, not of Label Studio"
        )
    lab = p.labeling
    backend = LabelStudioBackend.from_params(
        p,
        Path(),
        title=title or str(snap.project.get("project") or lab.project),
        document_root=lab.document_root or None,
        ml_backend_url=lab.ml_backend_url or None,
    )
    result = backend.restore(snap)
    version = f"model version set to {result.model_version}" if result.model_version else "model version kept"
    typer.echo(
        f"project {backend.spec.title!r} at {backend.connection.url}: {result.created} tasks restored, "
        f"{result.existing} were there already ({result.annotations_added} annotations added to them); {version}"
    )
