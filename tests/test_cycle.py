"""acorn commit: one commit per cycle, its message summarising what the cycle added and bought."""

import json
import subprocess
from pathlib import Path

import pytest

from acorn import paths
from acorn.ops.cycle_commit import commit_cycle, summary
from acorn.runtime.errors import AcornError

REPO = Path(__file__).resolve().parents[1]


def git(root, *args):
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path):
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@example.com")
    git(tmp_path, "config", "user.name", "t")
    (tmp_path / "notes.txt").write_text("mine\n")
    git(tmp_path, "add", "notes.txt")
    git(tmp_path, "commit", "-qm", "template")
    return tmp_path


def write_cycle(root, cycle, labeled, positives, map50, champion):
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / ".gitignore").write_text((REPO / "data" / ".gitignore").read_text())  # as shipped
    (root / paths.QUEUE).write_text(f"tile_id,batch\nt{cycle},{cycle + 1}\n")
    (root / "metrics").mkdir(exist_ok=True)
    (root / "models").mkdir(exist_ok=True)
    metrics = {
        "cycle": cycle,
        "labeled_tiles": labeled,
        "labeled_tiles_with_objects": positives,
        "map50": map50,
    }
    (root / paths.TRAIN_METRICS).write_text(json.dumps(metrics))
    (root / paths.REGISTRY).write_text(json.dumps({"champion_version": champion}))
    (root / "dvc.lock").write_text(f"cycle {cycle}\n")


def test_summary_names_labels_scores_and_champion():
    before = {"cycle": 2, "labeled_tiles": 100, "labeled_tiles_with_objects": 20, "map50": 0.061}
    after = {"cycle": 3, "labeled_tiles": 150, "labeled_tiles_with_objects": 32, "map50": 0.092}
    assert summary(before, after, {"champion_version": 3}, "squirrel") == (
        "cycle 3: +50 labels (12 with squirrels), map50 0.061 -> 0.092, champion v3"
    )


def test_each_cycle_is_one_commit_and_other_changes_stay_out(repo):
    write_cycle(repo, 0, 0, 0, 0.146, 1)
    commit_cycle(repo, "squirrel")
    (repo / "notes.txt").write_text("edited, not part of the cycle\n")
    write_cycle(repo, 1, 50, 9, 0.171, 2)
    message = commit_cycle(repo, "squirrel")
    log = git(repo, "log", "--format=%s").splitlines()
    assert log == [message, "cycle 0: 0 labels, map50 0.146, champion v1", "template"]
    assert message == "cycle 1: +50 labels (9 with squirrels), map50 0.146 -> 0.171, champion v2"
    assert "notes.txt" in git(repo, "status", "--porcelain")  # the user's own edit is not committed
    assert set(git(repo, "show", "--name-only", "--format=", "HEAD").split()) == {
        "data/queue.csv",
        "dvc.lock",
        "metrics/train.json",
        "models/registry.json",
    }


def test_nothing_to_commit_is_a_clear_error(repo):
    with pytest.raises(AcornError, match="run `dvc repro` first"):
        commit_cycle(repo, "squirrel")
    write_cycle(repo, 0, 0, 0, 0.1, 1)
    commit_cycle(repo, "squirrel")
    with pytest.raises(AcornError, match="already committed"):
        commit_cycle(repo, "squirrel")
    assert commit_cycle(repo, "squirrel", if_changed=True) is None  # a resumed demo goes on
