"""The ``acorn`` command line: demo data, the base model, the simulated annotator, the demo loop."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from acorn import paths
from acorn.labelstudio.cli import labelstudio_app
from acorn.labelstudio.client import LabelStudioError
from acorn.params import Params, ParamsError, load_params
from acorn.serve.cli import serve as serve_command
from acorn.simulate import simulate_command

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
log = logging.getLogger("acorn")

# errors a user can act on: shown as one line, not a traceback
USER_ERRORS = (ParamsError, FileNotFoundError, ValueError, KeyError, LabelStudioError)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("mlflow", "alembic", "urllib3", "httpx", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_stage(stage: Callable[[Params], object]) -> None:
    """Entry point of ``stages/*.py``: params.yaml in the working directory, errors as one line."""
    setup_logging()
    try:
        stage(load_params())
    except USER_ERRORS as exc:
        log.error("%s failed: %s", stage.__name__, exc)
        sys.exit(1)


ParamsOption = Annotated[Path, typer.Option("--params", help="params.yaml to read")]


@app.command("demo-data")
def demo_data(params: ParamsOption = Path("params.yaml")) -> None:
    """Write the synthetic webcam pool (data/raw), test set (data/testset) and close-ups (data/source)."""
    from acorn.demo_data import make_demo_data

    setup_logging()
    make_demo_data(load_params(params), Path())


@app.command("train-base")
def train_base(
    params: ParamsOption = Path("params.yaml"),
    epochs: Annotated[int | None, typer.Option(help="default: demo.base_epochs")] = None,
    out: Annotated[Path | None, typer.Option(help="default: model.base")] = None,
) -> None:
    """Train the base detector from random init (yolov8n.yaml) on the close-up set; nothing is downloaded."""
    from acorn.demo_data import train_base_model

    setup_logging()
    p = load_params(params)
    train_base_model(p, Path(), epochs=epochs, out=out)


@app.command()
def annotate(
    params: ParamsOption = Path("params.yaml"),
    limit: Annotated[int | None, typer.Option(help="label at most this many queued tiles")] = None,
) -> None:
    """Simulated annotator: label queued tiles from ground truth, as a person would between cycles.

    Works with either backend: the oracle, or Label Studio through its API (labeling.backend).
    """
    setup_logging()
    p = load_params(params)
    if p.labeling.backend == "label-studio":
        from acorn.labeling import get_backend
        from acorn.labelstudio import simulate_annotations

        result = simulate_annotations(get_backend(p), paths.TRUTH, limit=limit)
        for problem in result.problems:
            log.warning("%s", problem)
        log.info("annotated %d tasks in Label Studio (%d negatives)", result.created, result.negatives)
        return
    from acorn.labeling.oracle import DEFAULT_STATE_DIR, OracleBackend

    n = OracleBackend(DEFAULT_STATE_DIR, paths.TRUTH).annotate(limit)
    log.info("oracle labeled %d tiles", n)


@app.command()
def demo(
    params: ParamsOption = Path("params.yaml"),
    cycles: Annotated[
        int | None, typer.Option(help="labeling cycles after cycle 0 (default demo.cycles)")
    ] = None,
) -> None:
    """The whole loop with no human: demo data, base model, then dvc repro + oracle, cycle after cycle."""
    from acorn.demo_data import run_demo

    setup_logging()
    run_demo(load_params(params), Path(), cycles)


app.command("serve")(serve_command)
app.command("simulate")(simulate_command)
app.add_typer(labelstudio_app, name="labelstudio")


def main() -> None:
    try:
        app()
    except USER_ERRORS as exc:
        log.error("%s", exc)
        sys.exit(1)
    except subprocess.CalledProcessError as exc:
        log.error("command failed (exit %d): %s", exc.returncode, " ".join(map(str, exc.cmd)))
        sys.exit(exc.returncode)
