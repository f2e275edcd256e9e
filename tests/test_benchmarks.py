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


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_seeds_pairs_variants_by_seed_and_counts_the_gates_disagreements():
    import pandas as pd

    recipe = load_script("recipe_seeds")
    rows = pd.DataFrame(
        [
            # seed, variant, val, test: b is better on both in seeds 0-1; in seed 2 val says b, test says a
            (0, "a", 0.20, 0.20),
            (0, "b", 0.30, 0.25),
            (1, "a", 0.22, 0.21),
            (1, "b", 0.31, 0.30),
            (2, "a", 0.25, 0.30),
            (2, "b", 0.265, 0.28),
        ],
        columns=["seed", "variant", "val_map50", "map50"],
    ).assign(seconds=1)
    summary = recipe.summary(rows).iloc[0]
    assert summary["variant"] == "b" and summary["against"] == "a" and summary["val_map50_seeds"] == 3
    assert summary["val_map50_diff"] == pytest.approx((0.10 + 0.09 + 0.015) / 3)
    assert summary["val_map50_sign_flip_p"] == pytest.approx(0.25)  # 3 positive differences: 2 / 2^3
    gate = recipe.gate_agreement(rows, margins=(0.0, 0.02)).set_index("margin")
    # six ordered pairs; at margin 0 the gate promotes b over a in every seed, wrongly in seed 2,
    # and holds a back where a is better on test (seed 2)
    assert gate.loc[0.0].tolist() == [6, 3, 1, 1]
    # a margin of 0.02 holds seed 2's b back too: no wrong promotion left, a's lead still held back
    assert gate.loc[0.02].tolist() == [6, 2, 0, 1]
