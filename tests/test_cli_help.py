"""What a user reads before running anything: ``acorn --version`` and every command's ``--help``."""

from __future__ import annotations

import subprocess
from importlib.metadata import version
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from acorn.cli import app
from tests.conftest import REPO, tool_env


def command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and sub-command of the tree, as the words a user types after ``acorn``
    (typer builds on its own copy of click, so a group is known by its ``commands``)."""
    found = [path]
    for name, sub in getattr(command, "commands", {}).items():
        found += command_paths(sub, (*path, name))
    return found


COMMANDS = command_paths(typer.main.get_command(app))


def test_version_prints_the_installed_package_version():
    """The number in a bug report must be the one pip installed, not a constant that drifts."""
    proc = subprocess.run(
        ["acorn", "--version"], cwd=REPO, env=tool_env(REPO), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"acorn {version('acorn')}"


def test_the_tree_holds_the_commands_a_user_is_told_about():
    assert {("demo",), ("serve",), ("simulate",), ("labelstudio", "start"), ("dagshub",)} <= set(COMMANDS)


@pytest.mark.parametrize("words", COMMANDS, ids=lambda words: " ".join(("acorn", *words)))
def test_help_text_has_no_rst_double_backticks(words):
    """Docstrings double as help text; RST's ``literal`` marks read as noise in a terminal."""
    result = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "``" not in result.output, result.output
