"""Entry points as users run them: a user's mistake is one line and exit 1, a bug keeps its traceback.

Run as subprocesses, because what is at stake is what the process prints and how it exits.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO, tool_env

STAGE_SCRIPTS = sorted(p.name for p in (REPO / "stages").glob("*.py"))
BAD_PARAMS = "rank:\n  strategy: nope\n"


def invoke(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=cwd, env={**tool_env(cwd), **env}, capture_output=True, text=True, timeout=300
    )


def lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


@pytest.fixture
def bad_params(tmp_path: Path) -> Path:
    (tmp_path / "params.yaml").write_text(BAD_PARAMS)
    return tmp_path


def assert_one_line_naming_the_key(proc: subprocess.CompletedProcess) -> None:
    out = lines(proc)
    assert proc.returncode == 1, out
    assert len(out) == 1, out
    assert "rank.strategy" in out[0] and "'nope'" in out[0] and "params.yaml" in out[0]
    assert "Traceback" not in out[0]


@pytest.mark.parametrize("script", STAGE_SCRIPTS)
def test_stage_shows_a_user_error_as_one_line(bad_params, script):
    assert_one_line_naming_the_key(invoke([sys.executable, str(REPO / "stages" / script)], bad_params))


def test_acorn_shows_a_user_error_as_one_line(bad_params):
    assert_one_line_naming_the_key(invoke(["acorn", "annotate"], bad_params))


BROKEN_STAGE = textwrap.dedent(
    """
    from acorn.runtime.entrypoint import run_stage

    def broken(p):
        return {}["no such key"]

    run_stage(broken)
    """
)

BROKEN_COMMAND = textwrap.dedent(
    """
    import sys
    from acorn import cli

    @cli.app.command()
    def broken():
        return {}["no such key"]

    sys.argv = ["acorn", "broken"]
    cli.main()
    """
)


@pytest.mark.parametrize("program", [BROKEN_STAGE, BROKEN_COMMAND], ids=["stage", "acorn"])
def test_a_bug_keeps_its_traceback(tmp_path, program):
    """A KeyError is a bug, not a user's mistake: the traceback is what finds it."""
    (tmp_path / "params.yaml").write_text("{}\n")
    proc = invoke([sys.executable, "-c", program], tmp_path)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "KeyError" in proc.stderr and "no such key" in proc.stderr


@pytest.mark.parametrize(
    "args,env",
    [(["--verbose"], {}), (["-v"], {}), ([], {"ACORN_VERBOSE": "1"})],
    ids=["--verbose", "-v", "ACORN_VERBOSE"],
)
def test_verbose_shows_the_traceback_of_a_user_error(bad_params, args, env):
    proc = invoke([sys.executable, str(REPO / "stages" / "rank.py"), *args], bad_params, **env)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ParamsError" in proc.stderr and "rank.strategy" in proc.stderr


def test_acorn_verbose_shows_the_traceback_of_a_user_error(bad_params):
    proc = invoke(["acorn", "--verbose", "annotate"], bad_params)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ParamsError" in proc.stderr and "rank.strategy" in proc.stderr


def test_the_cli_loads_the_label_studio_sdk_only_for_label_studio_work():
    """Every `acorn` command imports acorn.cli; the SDK (and the backend's pandas) is for the few
    that talk to Label Studio, and the package still hands out its names on first use."""
    code = (
        "import sys, acorn.cli; assert 'label_studio_sdk' not in sys.modules, 'SDK imported'; "
        "from acorn.labeling.labelstudio import LabelStudioBackend; "
        "assert 'label_studio_sdk' in sys.modules and LabelStudioBackend.__name__ == 'LabelStudioBackend'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
