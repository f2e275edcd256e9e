"""Every stage's deps in dvc.yaml cover exactly the code its script runs.

A module missing from a stage's deps lets ``dvc repro`` call stale outputs up to date; a module
listed that the script never imports re-runs the stage for nothing.
"""

from pathlib import Path

import pytest
import yaml
from module_closure import closure

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _code_deps(stage: dict) -> set[Path]:
    return {Path(d) for d in stage["deps"] if str(d).endswith(".py")}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_its_import_closure(name):
    stage = STAGES[name]
    script = Path(stage["cmd"].split()[-1])
    wanted = closure(ROOT / script, ROOT) | {script}
    listed = _code_deps(stage)
    missing, extra = sorted(map(str, wanted - listed)), sorted(map(str, listed - wanted))
    assert not missing, f"dvc.yaml stage {name} misses code deps: {missing}"
    assert not extra, f"dvc.yaml stage {name} lists code its script never imports: {extra}"


def test_closure_follows_function_level_and_package_imports(tmp_path):
    pkg = tmp_path / "acorn"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from acorn import a\n")
    (pkg / "a.py").write_text("def f():\n    from acorn.sub.b import g\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("import os\n")
    (pkg / "unused.py").write_text("")
    script = tmp_path / "stage.py"
    script.write_text("from acorn import a\n")
    assert closure(script, tmp_path) == {
        Path("acorn/__init__.py"),
        Path("acorn/a.py"),
        Path("acorn/sub/__init__.py"),
        Path("acorn/sub/b.py"),
    }
