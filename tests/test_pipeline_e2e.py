"""Full cycles of `dvc repro` with the oracle, on a tiny generated dataset (real YOLO, MLflow, DVC),
and what DVC re-runs when acorn's code changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from acorn.params import load_params
from tests.conftest import STAGES, copy_repo, run, stages_run


@pytest.fixture(scope="module")
def locked_repo(tmp_path_factory) -> Path:
    """A repository whose dvc.lock records every stage as up to date, without running one: stand-in
    outputs and ``dvc commit`` cost seconds where a cycle costs minutes."""
    root = copy_repo(tmp_path_factory.mktemp("locked"))
    for deps in ("data/raw/images", "data/testset/images", "data/valset/images"):
        (root / deps).mkdir(parents=True)
        (root / deps / "a.jpg").write_bytes(b"stand-in")
    for stage in yaml.safe_load((root / "dvc.yaml").read_text())["stages"].values():
        for entry in stage.get("outs", []) + stage.get("metrics", []):
            out = root / (entry if isinstance(entry, str) else next(iter(entry)))
            if out.suffix:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text("{}\n")
            else:
                out.mkdir(parents=True, exist_ok=True)
                (out / "stand-in").write_text("x")
    run(["dvc", "commit", "--force", "--quiet"], root)
    return root


def changed_stages(root: Path) -> set[str]:
    """Stages `dvc status` finds changed deps in (export-labels is always changed, by design)."""
    status = json.loads(run(["dvc", "status", "--json"], root).stdout or "{}")
    return {
        name
        for name, reasons in status.items()
        if any("changed deps" in r for r in reasons if isinstance(r, dict))
    }


@pytest.mark.parametrize(
    "module,stages",
    [
        ("acorn/selection/labeling_queue.py", {"rank"}),
        ("acorn/selection/strategies.py", {"rank"}),
        ("acorn/data/tiling.py", {"tile", "train", "report"}),  # both place test tiles in their frames
        ("acorn/model/registry.py", {"register"}),
        (
            "acorn/model/training.py",
            {"train", "report"},
        ),  # the report scores a champion whose boxes are missing
        ("acorn/labeling/oracle.py", {"export-labels", "rank"}),
        ("acorn/labeling/review.py", {"export-labels", "report"}),
        ("acorn/serve/app.py", set()),
        ("acorn/reporting/drawing.py", {"report"}),
        ("acorn/params.py", {*STAGES, "report"}),
    ],
)
def test_editing_acorn_code_reruns_exactly_the_stages_that_run_it(locked_repo, module, stages):
    """Editing the ranking code must re-run rank and nothing else: neither a stale queue nor a
    needless re-tile and retrain."""
    assert changed_stages(locked_repo) == set()
    path = locked_repo / module
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# edited\n")
        assert changed_stages(locked_repo) == stages
    finally:
        path.write_bytes(original)


@pytest.mark.slow
def test_two_cycles_end_to_end(tiny_repo):
    root = tiny_repo
    first = run(["dvc", "repro"], root)
    assert stages_run(first) == STAGES
    # the test set is scored once per model: the report draws the boxes the train stage kept
    assert "scoring the champion on" not in first.stdout + first.stderr
    assert len(list((root / ".acorn/cache/test-boxes").iterdir())) == 1

    tiles = pd.read_parquet(root / "data/tiles/manifest.parquet")
    assert len(tiles) == 4 * 6 and tiles["tile_id"].is_unique
    assert all((root / "data/tiles" / i).exists() for i in tiles["image"])
    metrics = json.loads((root / "metrics/train.json").read_text())
    assert metrics["cycle"] == 0 and metrics["labeled_tiles"] == 0
    assert {"map50", "map50_95", "precision", "recall"} <= set(metrics)
    # the demo keeps its test frames whole: the test tiles' boxes are scored on them too
    assert metrics["frame_frames"] == 2 and 0.0 <= metrics["frame_map50"] <= 1.0
    assert "frame_map50" in pd.read_csv(root / "reports/cycles/history.csv")
    preds = pd.read_parquet(root / "data/predictions/tiles.parquet")
    assert len(preds) == 24 and (preds["model_version"] == "acorn-detector-v1").all()
    queue = pd.read_csv(root / "data/queue.csv")
    assert len(queue) == 4 and queue["rank"].tolist() == [1, 2, 3, 4]
    # which way the score runs is the queue's contract (tests/test_queue.py); a labeling tool
    # ordering by it must see the rank order
    assert queue["score"].is_unique
    assert queue["score"].is_monotonic_increasing or queue["score"].is_monotonic_decreasing

    lock = (root / "dvc.lock").read_text()
    again = run(["dvc", "repro"], root)
    assert stages_run(again) == ["export-labels"], (
        "a repeat repro must skip every stage whose inputs did not change"
    )
    assert (root / "dvc.lock").read_text() == lock

    # a lost backend state is refilled: rank (it pushes) is never restored from DVC's run-cache
    shutil.rmtree(root / ".acorn/oracle")
    (root / "data/queue.csv").unlink()
    refill = run(["dvc", "repro"], root)
    assert "rank" in stages_run(refill) and (root / ".acorn/oracle/tasks.json").exists()

    # cycle 0's model (the base model) is the champion, and its weights are what predict used
    registry = load_params(root / "params.yaml").register
    v1_weights = (root / "models/champion.pt").read_bytes()
    assert v1_weights == (root / "models/model.pt").read_bytes()
    # the promotion gate, forced: version 1's score is one no model reaches, so cycle 1's loses
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.set_model_version_tag(registry.model_name, "1", registry.metric, "2.0")

    run(["acorn", "annotate"], root)
    second = run(["dvc", "repro"], root)
    assert stages_run(second) == [s for s in STAGES if s != "tile"]
    labels = pd.read_csv(root / "data/labels/manifest.csv")
    assert sorted(labels["tile_id"]) == sorted(queue["tile_id"])
    for t in labels["tile_id"]:
        assert (root / "data/labels" / f"{t}.txt").read_text() == (
            root / "data/tiles/truth" / f"{t}.txt"
        ).read_text()
    metrics = json.loads((root / "metrics/train.json").read_text())
    assert metrics["cycle"] == 1 and metrics["labeled_tiles"] == 4
    # the batch was scored against cycle 0's boxes for it, predicted while it was unlabeled
    scores = pd.read_csv(root / "data/review/scores.csv")
    assert sorted(scores["tile_id"]) == sorted(queue["tile_id"]) and (scores["cycle"] == 1).all()
    preds = pd.read_parquet(root / "data/predictions/tiles.parquet")
    assert len(preds) == 20 and not set(preds["tile_id"]) & set(labels["tile_id"]), (
        "labeled tiles are not predicted"
    )
    new_queue = pd.read_csv(root / "data/queue.csv")
    assert not set(new_queue["tile_id"]) & set(labels["tile_id"]) and (new_queue["batch"] == 2).all()

    record = json.loads((root / "models/registry.json").read_text())
    assert record["version"] == 2 and record["aliases"] == ["challenger"]
    assert record["champion_version"] == 1 and record["champion_model_version"] == "acorn-detector-v1"
    assert int(client.get_model_version_by_alias(registry.model_name, "challenger").version) == 2
    assert int(client.get_model_version_by_alias(registry.model_name, "champion").version) == 1

    # the loser was trained and registered, but the champion predicts and labels its boxes
    assert (root / "models/model.pt").read_bytes() != v1_weights
    assert (root / "models/champion.pt").read_bytes() == v1_weights
    for table in ("tiles", "labeled", "boxes"):  # a weak model may find no box at all
        versions = set(pd.read_parquet(root / f"data/predictions/{table}.parquet")["model_version"])
        assert versions == {"acorn-detector-v1"} or (table == "boxes" and not versions), (table, versions)
    assert set(new_queue["model_version"]) == {"acorn-detector-v1"}

    # a report per cycle (report stage) linking pictures that exist; the learning curve plots
    for page in ("0000.md", "0001.md"):
        text = (root / "reports/cycles" / page).read_text()
        links = [part.split(")")[0] for part in text.split("](")[1:]]
        assert links and all((root / "reports/cycles" / link).is_file() for link in links), (page, links)
    assert "Champion kept: v1" in (root / "reports/cycles/0001.md").read_text()
    assert "## Suspect labels in batch 1" in (root / "reports/cycles/0001.md").read_text()
    assert pd.read_csv(root / "reports/cycles/history.csv")["labeled_tiles"].tolist() == [0, 4]
    plots = json.loads(run(["dvc", "plots", "show", "--json"], root).stdout)["data"]
    assert "learning curve" in plots and "metrics/train-epochs/plots/metrics/val/map50.tsv" in plots


@pytest.mark.slow
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
