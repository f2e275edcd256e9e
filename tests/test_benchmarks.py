"""Every benchmark script still imports: benchmarks/ is not a package and no test runs the
scripts end to end (each takes minutes to hours), so without this a module they import can be
deleted or renamed and the script rot unseen until someone needs its numbers again."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPTS = sorted((REPO / "benchmarks").glob("*.py"))
SHELL_SCRIPTS = sorted((REPO / "benchmarks").glob("*.sh"))


def test_there_are_scripts_to_check():
    assert len(SCRIPTS) >= 10 and len(SHELL_SCRIPTS) >= 3


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_script_imports_and_has_a_main(script: Path):
    """Executed as a module, not as ``__main__``: its imports run, its benchmark does not."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"
    assert module.__doc__, f"{script.name} has no docstring saying what it measures"


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_benchmark_shell_script_parses(script: Path):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("folder", sorted((REPO / "benchmarks" / "results").iterdir()), ids=lambda p: p.name)
def test_every_result_folder_says_how_it_was_made(folder: Path):
    """A number without its command, commit, machine and date cannot be rerun or trusted."""
    readme = (folder / "README.md").read_text(encoding="utf-8")
    for field in ("| command |", "| commit |", "| machine |", "| date |", "| headline |"):
        assert field in readme, f"{folder.name}/README.md lacks {field!r}"
    assert folder.name in (REPO / "benchmarks" / "README.md").read_text(encoding="utf-8")
