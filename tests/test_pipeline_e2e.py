"""Two full cycles of `dvc repro` with the oracle, on a tiny generated dataset (real YOLO, MLflow, DVC)."""

from __future__ import annotations

import json
import shutil

import mlflow
import pandas as pd
import pytest

from acorn.params import load_params
from tests.conftest import run

pytestmark = pytest.mark.slow

STAGES = ["tile", "export-labels", "train", "register", "predict", "rank"]


def ran(proc) -> list[str]:
    out = proc.stdout + proc.stderr
    return [s for s in STAGES if f"Running stage '{s}'" in out]


def test_dag_lists_every_stage(tiny_repo):
    out = run(["dvc", "dag", "--md"], tiny_repo).stdout
    for stage in STAGES:
        assert stage in out


def test_two_cycles_end_to_end(tiny_repo):
    root = tiny_repo
    first = run(["dvc", "repro"], root)
    assert ran(first) == STAGES

    tiles = pd.read_parquet(root / "data/tiles/manifest.parquet")
    assert len(tiles) == 4 * 6 and tiles["tile_id"].is_unique
    assert all((root / "data/tiles" / i).exists() for i in tiles["image"])
    metrics = json.loads((root / "metrics/train.json").read_text())
    assert metrics["cycle"] == 0 and metrics["labeled_tiles"] == 0
    assert {"map50", "map50_95", "precision", "recall"} <= set(metrics)
    preds = pd.read_parquet(root / "data/predictions/tiles.parquet")
    assert len(preds) == 24 and (preds["model_version"] == "acorn-detector-v1").all()
    queue = pd.read_csv(root / "data/queue.csv")
    assert len(queue) == 4 and queue["rank"].tolist() == [1, 2, 3, 4]
    assert queue["score"].is_monotonic_decreasing

    lock = (root / "dvc.lock").read_text()
    again = run(["dvc", "repro"], root)
    assert ran(again) == ["export-labels"], "a repeat repro must skip every stage whose inputs did not change"
    assert (root / "dvc.lock").read_text() == lock

    # a lost backend state is refilled: rank (it pushes) is never restored from DVC's run-cache
    shutil.rmtree(root / ".acorn/oracle")
    (root / "data/queue.csv").unlink()
    refill = run(["dvc", "repro"], root)
    assert "rank" in ran(refill) and (root / ".acorn/oracle/tasks.json").exists()

    run(["acorn", "annotate"], root)
    second = run(["dvc", "repro"], root)
    assert ran(second) == ["export-labels", "train", "register", "predict", "rank"]
    labels = pd.read_csv(root / "data/labels/manifest.csv")
    assert sorted(labels["tile_id"]) == sorted(queue["tile_id"])
    for t in labels["tile_id"]:
        assert (root / "data/labels" / f"{t}.txt").read_text() == (
            root / "data/tiles/truth" / f"{t}.txt"
        ).read_text()
    metrics = json.loads((root / "metrics/train.json").read_text())
    assert metrics["cycle"] == 1 and metrics["labeled_tiles"] == 4
    preds = pd.read_parquet(root / "data/predictions/tiles.parquet")
    assert len(preds) == 20 and not set(preds["tile_id"]) & set(labels["tile_id"]), (
        "labeled tiles are not predicted"
    )
    new_queue = pd.read_csv(root / "data/queue.csv")
    assert not set(new_queue["tile_id"]) & set(labels["tile_id"]) and (new_queue["batch"] == 2).all()

    record = json.loads((root / "models/registry.json").read_text())
    assert record["version"] == 2 and "challenger" in record["aliases"]
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    assert int(client.get_model_version_by_alias("acorn-detector", "challenger").version) == 2
    champion = int(client.get_model_version_by_alias("acorn-detector", "champion").version)
    assert champion == record["champion_version"]
    v1 = float(client.get_model_version("acorn-detector", "1").tags["map50"])
    assert (champion == 2) == (record["value"] > v1)


def test_experiment_with_random_strategy(tiny_repo):
    default = load_params(tiny_repo / "params.yaml").rank.strategy
    assert default != "random"
    run(["dvc", "repro"], tiny_repo)
    run(["git", "add", "-A"], tiny_repo)
    run(
        ["git", "-c", "user.name=acorn-test", "-c", "user.email=test@localhost", "commit", "-qm", "cycle 0"],
        tiny_repo,
    )
    run(["dvc", "exp", "run", "-S", "rank.strategy=random"], tiny_repo)
    show = run(["dvc", "exp", "show", "--md", "--no-pager"], tiny_repo).stdout
    assert "random" in show and default in show
