"""Shared fixtures: a tiny copy of the repository with its own demo data and base model.

Built once per test run (session scope): generating frames and training a 1-epoch base
model at a tiny input size takes seconds, and every end-to-end test starts from a copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

TINY_PARAMS = {
    "tile": {"rows": 2, "cols": 3, "workers": 1},
    "model": {"imgsz": 96},
    "predict": {"max_det": 50},
    "rank": {"budget": 4},
    "train": {"epochs": 1, "batch": 8},
    "demo": {
        "frames": 4,
        "test_frames": 2,
        "val_frames": 2,
        "source_images": 12,
        "width": 640,
        "height": 360,
        "base_epochs": 1,
        "cycles": 1,
    },
}


def repo_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return [f for f in out.split("\0") if f and (REPO / f).is_file()]


def copy_repo(dest: Path) -> Path:
    """The project as committed plus uncommitted work, without data, venv or local state."""
    for rel in repo_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def tool_env(root: Path) -> dict[str, str]:
    """Environment for dvc/acorn subprocesses: this venv first, a store local to ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LABEL_STUDIO_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(cmd: list[str], root: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=root, env=tool_env(root), capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


# in dvc.yaml's order, which is the DAG's
STAGES = list(yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"])


def stages_run(proc: subprocess.CompletedProcess) -> list[str]:
    """The stages a ``dvc repro`` ran, in DAG order (skipped ones are not listed)."""
    out = proc.stdout + proc.stderr
    return [s for s in STAGES if f"Running stage '{s}'" in out]


def write_params(root: Path, overrides: dict) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in overrides.items():
        if isinstance(values, dict):
            params[section] = {**params.get(section, {}), **values}
        else:
            params[section] = values
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def save_detector(path: Path, names: Sequence[str] = ("squirrel",), bias: float | None = None) -> Path:
    """An untrained yolov8n that detects ``names``: enough where only a model's classes matter
    (seconds, where training even one epoch takes a minute on a busy CPU). The one copy of it:
    every test that needs a model it does not train takes this one.

    With ``bias`` the random detector finds boxes at three known confidences, which is what tests
    of geometry, filtering, ordering and caching need: class 0's logit bias is ``bias`` at stride
    8 and 2 less at each coarser scale (bias 1: sigmoid ~0.73, ~0.27, ~0.05), every other class's
    -20."""
    from acorn.runtime.env import configure_ultralytics

    configure_ultralytics()
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    model = YOLO("yolov8n.yaml")
    model.model = DetectionModel("yolov8n.yaml", nc=len(names), verbose=False)
    model.model.names = dict(enumerate(names))
    if bias is not None:
        for scale, seq in enumerate(model.model.model[-1].cv3):
            seq[-1].bias.data.fill_(-20.0)
            seq[-1].bias.data[0] = bias - 2.0 * scale
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


@pytest.fixture(scope="session")
def tiny_template(tmp_path_factory) -> Path:
    """A tiny repository copy with demo data and a 1-epoch base model (built once)."""
    root = copy_repo(tmp_path_factory.mktemp("template"))
    write_params(root, TINY_PARAMS)
    run(["acorn", "demo-data"], root)
    run(["acorn", "train-base"], root)
    return root


@pytest.fixture
def tiny_repo(tiny_template, tmp_path) -> Path:
    dest = tmp_path / "repo"
    shutil.copytree(tiny_template, dest, symlinks=True)
    return dest
