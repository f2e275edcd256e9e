"""The acorn command line: demo data, the base model, the simulated annotator, the demo loop,
and the sub-commands of Label Studio, serve, simulate and doctor."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from acorn import paths
from acorn.frames.cli import detect as detect_command
from acorn.labeling.labelstudio.cli import labelstudio_app
from acorn.ops.dagshub import dagshub_app
from acorn.params import load_params
from acorn.runtime.entrypoint import (
    run_supervised,
    setup_logging,
    unwind_on_sigterm,
    user_errors,
    verbose_requested,
)
from acorn.serve.cli import serve as serve_command
from acorn.simulate.cli import simulate_command

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
log = logging.getLogger("acorn")

ParamsOption = Annotated[Path, typer.Option("--params", help="params.yaml to read")]


def _print_version(requested: bool) -> None:
    """Print the installed package's version and stop: the version a bug report needs is the one
    pip installed (importlib.metadata), not a constant that can drift from pyproject.toml."""
    if requested:
        from importlib.metadata import version

        typer.echo(f"acorn {version('acorn')}")
        raise typer.Exit()


@app.callback()
def main_options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="debug logs, and tracebacks for user errors too")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit"),
    ] = False,
) -> None:
    setup_logging(verbose)


@app.command("demo-data")
def demo_data(params: ParamsOption = Path("params.yaml")) -> None:
    """Write the synthetic webcam pool (data/raw), test set (data/testset), validation set
    (data/valset), close-ups (data/source) and the replay subset (data/replay)."""
    from acorn.demo.run import make_demo_data

    make_demo_data(load_params(params), Path())


@app.command("train-base")
def train_base(
    params: ParamsOption = Path("params.yaml"),
    epochs: Annotated[int | None, typer.Option(help="at most this many (default: demo.base_epochs)")] = None,
    patience: Annotated[
        int | None,
        typer.Option(help="stop after this many epochs without gain (default: demo.base_patience)"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="default: model.base")] = None,
) -> None:
    """Train the base detector from random init (yolov8n.yaml) on the close-ups until it plateaus."""
    from acorn.demo.base_model import train_base_model

    train_base_model(load_params(params), Path(), epochs=epochs, patience=patience, out=out)


@app.command()
def annotate(
    params: ParamsOption = Path("params.yaml"),
    limit: Annotated[int | None, typer.Option(help="label at most this many queued tiles")] = None,
) -> None:
    """Simulated annotator: label queued tiles from ground truth, as a person would between cycles.

    Works with either backend: the oracle, or Label Studio through its API (labeling.backend).
    """
    p = load_params(params)
    if p.labeling.backend == "label-studio":
        from acorn.labeling.backends import get_backend
        from acorn.labeling.labelstudio.annotator import simulate_annotations

        result = simulate_annotations(get_backend(p), paths.TRUTH, limit=limit)
        for problem in result.problems:
            log.warning("%s", problem)
        log.info("annotated %d tasks in Label Studio (%d negatives)", result.created, result.negatives)
        return
    from acorn.labeling.backends import oracle_backend

    oracle = oracle_backend(p)
    log.info("oracle labeled %d tiles", oracle.annotate(limit))
    reviewed = oracle.answer_reviews()
    if any(reviewed.values()):
        log.info(
            "oracle reviewed %d suspect labels: %d corrected", sum(reviewed.values()), reviewed["corrected"]
        )


@app.command()
def demo(
    params: ParamsOption = Path("params.yaml"),
    cycles: Annotated[
        int | None, typer.Option(help="labeling cycles after cycle 0 (default demo.cycles)")
    ] = None,
    noise: Annotated[
        float | None,
        typer.Option(
            help="a noisy oracle: each label error (missed, spurious, shifted boxes, emptied tiles) at "
            "this rate, e.g. 0.1 (default labeling.noise; docs/label-quality.md)",
            min=0.0,
            max=0.5,
        ),
    ] = None,
) -> None:
    """The whole loop with no human: demo data, base model, then dvc repro + oracle, cycle after cycle."""
    from acorn.demo.run import run_demo
    from acorn.labeling.noise import KINDS

    p = load_params(params)
    if noise is not None:
        p = p.with_overrides({f"labeling.noise.{kind}": noise for kind in KINDS}, "--noise")
    run_demo(p, Path(), cycles)


@app.command()
def doctor(params: ParamsOption = Path("params.yaml")) -> None:
    """Check this repository's set-up (frames, classes, base model, test set, labeling backend)."""
    from acorn.ops.doctor import run_checks

    if not run_checks(params, Path()):
        sys.exit(1)


PushOption = Annotated[bool, typer.Option("--push", help="also `dvc push` the cycle's data to the remote")]


@app.command()
def commit(params: ParamsOption = Path("params.yaml"), push: PushOption = False) -> None:
    """Commit this cycle (dvc.lock, params, metrics, queue, registry record, reports) with a summary."""
    from acorn.ops.cycle_commit import commit_cycle

    commit_cycle(Path(), load_params(params).classes[0], push=push)


@app.command()
def cycle(params: ParamsOption = Path("params.yaml"), push: PushOption = False) -> None:
    """One labeling cycle: `dvc repro`, then `acorn commit` (one commit per cycle)."""
    from acorn.ops.cycle_commit import commit_cycle

    p = load_params(params)
    run_supervised(["dvc", "repro"])
    commit_cycle(Path(), p.classes[0], push=push)


@app.command()
def status(params: ParamsOption = Path("params.yaml")) -> None:
    """Where the loop stands: cycle, labels, tasks waiting, champion, what to run next (read-only)."""
    from acorn.ops.status import status_lines

    for line in status_lines(load_params(params), Path()):
        typer.echo(line)


app.command("detect")(detect_command)
app.command("serve")(serve_command)
app.command("simulate")(simulate_command)
app.add_typer(labelstudio_app, name="labelstudio")
app.add_typer(dagshub_app, name="dagshub")


def main() -> None:
    verbose = verbose_requested()
    setup_logging(verbose)
    unwind_on_sigterm()
    try:
        with user_errors("acorn", verbose):
            app()
    except subprocess.CalledProcessError as exc:
        log.error("command failed (exit %d): %s", exc.returncode, " ".join(map(str, exc.cmd)))
        sys.exit(exc.returncode)
