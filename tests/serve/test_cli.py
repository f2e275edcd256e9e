"""``acorn serve`` as a command: the function ``acorn.cli`` registers."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from acorn.serve.cli import serve


def test_serve_command_help():
    app = typer.Typer()
    app.command("serve")(serve)
    app.command("other")(lambda: None)  # with two commands typer keeps the name, as in acorn.cli
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    for option in (
        "--host",
        "--port",
        "--data-root",
        "--refresh",
        "--max-tasks",
        "--max-pending",
        "--params",
    ):
        assert option in result.output
