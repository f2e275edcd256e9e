"""One cycle code path: ``acorn simulate`` and the stages run the same step (acorn.cycle_step).

The slow test trains one cycle both ways on the same labels, params and seed and compares what
they made; the fast ones keep ``acorn --help`` from loading the simulation.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

from acorn.labeling.export import MANIFEST_COLUMNS
from acorn.params import load_params
from acorn.simulate.config import SimulateConfig
from acorn.simulate.run import simulate
from acorn.simulate.settings import open_simulation_pool
from stages.train import train as train_stage
from tests.conftest import REPO, SHARED_DATA, save_detector, tool_env

RACCOON = SHARED_DATA / "raccoon"


def test_acorn_help_loads_no_simulation():
    """Every ``acorn`` command imports acorn.cli: the simulation (and pandas with it) is loaded only
    when ``acorn simulate`` runs, not for a help screen."""
    probe = (
        "import sys; from typer.testing import CliRunner; from acorn.cli import app; "
        "assert CliRunner().invoke(app, ['--help']).exit_code == 0; "
        "print(sorted(m for m in sys.modules if m == 'pandas' or m.startswith('acorn.simulate.')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        env=tool_env(REPO),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(proc.stdout.replace("'", '"')) == ["acorn.simulate.cli", "acorn.simulate.config"]


def test_each_step_is_a_dep_of_its_own_stage_only():
    """One module per step: editing the ranking code re-runs rank, not predict or train (the
    closure test, tests/test_dvc_deps.py, keeps the deps equal to what each script imports)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    users = {
        step: sorted(name for name, stage in stages.items() if f"acorn/cycle_step/{step}.py" in stage["deps"])
        for step in ("candidates", "ranking", "fine_tune")
    }
    assert users == {"candidates": ["predict"], "ranking": ["rank"], "fine_tune": ["train"]}


def tiny_repository(root) -> None:
    """A repository as the tile and export-labels stages leave it, from 16 raccoon photos: 10
    tiles (each its own frame) with truth, a validation set of 4, a test set of 4 (2 labeled empty),
    an untrained yolov8n as base and the params of a 1-epoch fine-tune at imgsz 64."""
    images = sorted((RACCOON / "images").glob("*.jpg"))
    tiles = root / "data" / "tiles"
    (tiles / "images").mkdir(parents=True)
    (tiles / "truth").mkdir()
    rows = []
    for image in images[:10]:
        shutil.copy(image, tiles / "images" / image.name)
        truth = (RACCOON / "labels" / f"{image.stem}.txt").read_text()
        (tiles / "truth" / f"{image.stem}.txt").write_text(truth)
        rows.append(
            {
                "tile_id": image.stem,
                "frame_id": image.stem,
                "image": f"images/{image.name}",
                "n_truth": len(truth.splitlines()),
            }
        )
    pd.DataFrame(rows).to_parquet(tiles / "manifest.parquet")
    for name, chosen in (("valset", images[10:14]), ("testset", images[14:18])):
        (root / "data" / name / "images").mkdir(parents=True)
        (root / "data" / name / "labels").mkdir()
        for i, image in enumerate(chosen):
            shutil.copy(image, root / "data" / name / "images" / image.name)
            truth = (
                "" if name == "testset" and i % 2 else (RACCOON / "labels" / f"{image.stem}.txt").read_text()
            )
            (root / "data" / name / "labels" / f"{image.stem}.txt").write_text(truth)
    save_detector(root / "models" / "base.pt", ["raccoon"])
    params = {
        "classes": ["raccoon"],
        "model": {"base": "models/base.pt", "imgsz": 64, "device": "cpu"},
        "rank": {"budget": 4, "balance_by": ""},
        "train": {"epochs": 1, "batch": 4, "replay_images": 0, "seed": 0, "workers": 0},
        "test": {"data": "data/testset"},
        "val": {"data": "data/valset"},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def label_as_the_oracle(root, tiles: list[str]) -> None:
    """data/labels as export-labels writes it, for ``tiles``, from their truth: batch 1."""
    labels = root / "data" / "labels"
    labels.mkdir(parents=True)
    rows = []
    for t in tiles:
        truth = (root / "data" / "tiles" / "truth" / f"{t}.txt").read_text()
        (labels / f"{t}.txt").write_text(truth)
        rows.append(
            {
                "tile_id": t,
                "annotation_id": len(rows) + 1,
                "annotator": "oracle",
                "updated_at": "2026-01-01T00:00:00",
                "batch": 1,
                "width": 416,
                "height": 416,
                "n_boxes": len(truth.splitlines()),
            }
        )
    pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_csv(labels / "manifest.csv", index=False)


def weights(path) -> dict[str, torch.Tensor]:
    from ultralytics.utils.patches import torch_load

    return torch_load(path, map_location="cpu")["model"].float().state_dict()


@pytest.mark.slow
def test_a_simulated_cycle_trains_the_train_stages_model(tmp_path, monkeypatch):
    """Cycle 1 of a simulation (random, seed 0) and the train stage on the labels that cycle chose,
    with train.seed 0: the same weights, tensor for tensor, and the same validation and test scores
    (at this size both near 0: the weights are the evidence). Not the same file bytes: an
    ultralytics checkpoint also records its date, its training's paths (train_args) and epoch
    timings (train_results), which differ between any two runs; checked, nothing else differs.
    Bit-identical on the CPU because acorn.model.training trains with deterministic=True and a seed."""
    if not (RACCOON / "images").is_dir():
        pytest.skip(f"{RACCOON} is not here")
    root = tmp_path / "repo"
    root.mkdir()
    tiny_repository(root)
    monkeypatch.chdir(root)
    p = load_params(root / "params.yaml")

    pool = open_simulation_pool(root / "data" / "tiles", p, {}, 0.2)
    config = SimulateConfig(p, strategies=("random",), seeds=1, cycles=1, full_epochs=0)
    result = simulate(pool, config, root / "sim")
    chosen = pd.read_csv(root / "sim" / "selections.csv", dtype={"tile_id": str})["tile_id"].tolist()
    assert len(chosen) == 4

    label_as_the_oracle(root, chosen)
    train_stage(p)

    simulated, staged = root / "sim" / "models" / "random-s0-c1.pt", root / "models" / "model.pt"
    ours, theirs = weights(simulated), weights(staged)
    assert ours and ours.keys() == theirs.keys()
    assert [k for k in ours if not torch.equal(ours[k], theirs[k])] == [], "the two fine-tunes differ"

    row = result.curves[result.curves["cycle"] == 1].iloc[0]
    metrics = json.loads((root / "metrics" / "train.json").read_text())
    assert metrics["labeled_tiles"] == 4
    for key in ("map50", "map50_95", "val_map50"):  # train.json rounds to 6 decimals
        assert row[key] == pytest.approx(metrics[key], abs=1e-6), key

    # the comparison tells fine-tunes apart: another seed trains other weights
    train_stage(p.with_overrides({"train.seed": 1}))
    reseeded = weights(staged)
    assert any(not torch.equal(ours[k], reseeded[k]) for k in ours)
