"""Experiments queued over strategies and budgets (`dvc exp run --queue`, `dvc queue start`,
`dvc exp show`), and the rank stage holding its Label Studio push back inside experiments."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from acorn.labeling.oracle import OracleBackend
from acorn.labeling.snapshot import read_snapshot, write_snapshot
from stages.rank import push_held_back
from tests.conftest import run, stages_run, tool_env, write_params
from tests.test_remotes import commit, track_inputs


@pytest.mark.parametrize(
    "backend,env,held_back",
    [
        ("label-studio", {"DVC_EXP_NAME": "lurid-pour"}, True),
        ("label-studio", {"DVC_EXP_NAME": "lurid-pour", "ACORN_PUSH_IN_EXPERIMENTS": "1"}, False),
        ("label-studio", {"DVC_EXP_NAME": "lurid-pour", "ACORN_PUSH_IN_EXPERIMENTS": "0"}, True),
        ("label-studio", {}, False),  # `dvc repro`: the cycle's batch goes to the labelers
        ("label-studio", {"DVC_EXP_NAME": ""}, False),
        ("oracle", {"DVC_EXP_NAME": "lurid-pour"}, False),  # a simulation, nobody to spam
    ],
)
def test_push_is_held_back_only_for_label_studio_inside_experiments(backend, env, held_back):
    assert push_held_back(backend, env) is held_back


def wait_for_queue(root: Path, timeout_s: float) -> str:
    """`dvc queue status` once nothing is queued or running (workers exit when the queue is empty)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = run(["dvc", "queue", "status"], root).stdout
        if not any(state in status for state in ("Queued", "Running")):
            return status
        if time.monotonic() > deadline:
            run(["dvc", "queue", "kill", "--all"], root)  # stops only this repository's tasks
            raise AssertionError(f"queued experiments still running after {timeout_s:g} s:\n{status}")
        time.sleep(2)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_queued_experiments_run_compare_and_never_push_to_label_studio(tiny_repo):
    root = tiny_repo
    track_inputs(root)  # a queued experiment runs in a copy of the last commit
    run(["dvc", "repro"], root)
    commit(root, "cycle 0")

    # the worked example of docs/remotes.md, on the tiny repository (budget 4)
    for command in (
        "dvc exp run --queue -n random-2 -S rank.strategy=random -S rank.budget=2",
        "dvc exp run --queue -n entropy-3 -S rank.strategy=entropy -S rank.budget=3",
        "dvc queue start --jobs 1",
    ):
        run(command.split(), root)
    try:
        status = wait_for_queue(root, timeout_s=300)
    finally:
        run(["dvc", "queue", "stop"], root)  # its workers exit on an empty queue; this makes sure
    logs = {name: run(["dvc", "queue", "logs", name], root).stdout for name in ("random-2", "entropy-3")}
    assert status.count("Success") == 2, f"{status}\n" + "\n".join(v[-3000:] for v in logs.values())

    # a rank change re-runs rank (predict too where dvc.yaml gives it the key), never the model
    for log in logs.values():
        ran = stages_run(subprocess.CompletedProcess([], 0, log, ""))
        assert "rank" in ran and not {"tile", "train", "register"} & set(ran), log

    rows = json.loads(run(["dvc", "exp", "show", "--json"], root).stdout)
    exps = {
        e["name"]: e["data"]
        for row in rows
        for group in row.get("experiments") or []
        for e in group["revs"]
        if e.get("name")
    }
    assert set(exps) == {"random-2", "entropy-3"}, exps
    for name, strategy, budget in (("random-2", "random", 2), ("entropy-3", "entropy", 3)):
        params = exps[name]["params"]["params.yaml"]["data"]["rank"]
        metrics = exps[name]["metrics"]
        assert (params["strategy"], params["budget"]) == (strategy, budget)
        assert metrics["metrics/rank.json"]["data"]["queued_tiles"] == budget
        assert "map50" in metrics["metrics/train.json"]["data"]
    table = run(["dvc", "exp", "show", "--no-pager", "--md", "--keep", "rank.strategy"], root).stdout
    assert "random-2" in table and "entropy-3" in table
    assert json.loads((root / "metrics/rank.json").read_text())["queued_tiles"] == 4, (
        "queued experiments leave the workspace as it was"
    )

    # the switch itself: with labeling.backend label-studio and no server there, rank succeeds
    # inside an experiment (nothing pushed) and fails outside one (it tries to push)
    write_params(root, {"labeling": {"backend": "label-studio"}})
    env = tool_env(root) | {
        "LABEL_STUDIO_URL": f"http://127.0.0.1:{closed_port()}",
        "LABEL_STUDIO_API_KEY": "fake-key",
    }
    cmd = ["python", "stages/rank.py"]
    inside = subprocess.run(
        cmd, cwd=root, env=env | {"DVC_EXP_NAME": "lurid-pour"}, capture_output=True, text=True
    )
    assert inside.returncode == 0, inside.stderr
    assert "experiment lurid-pour: batch not pushed to Label Studio" in inside.stderr
    assert len((root / "data/queue.csv").read_text().splitlines()) == 1 + 4

    outside = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert outside.returncode == 1 and "Label Studio" in outside.stderr, outside.stderr


# --- the oracle's state in a queued experiment: none in the copy, so it starts from the snapshot ---


def oracle_queue(tile_ids: list[str]):
    import pandas as pd

    return pd.DataFrame(
        {
            "tile_id": tile_ids,
            "batch": 1,
            "rank": range(1, len(tile_ids) + 1),
            "score": 0.5,
            "image": [f"data/tiles/images/{t}.jpg" for t in tile_ids],
            "width": 640,
            "height": 540,
            "model_version": "m-v1",
        }
    )


def test_an_oracle_without_state_starts_from_the_snapshot(tmp_path):
    import pandas as pd

    truth = tmp_path / "truth"
    truth.mkdir()
    (truth / "a.txt").write_text("0 0.5 0.5 0.25 0.2\n")
    (truth / "b.txt").write_text("")
    (truth / "c.txt").write_text("0 0.1 0.1 0.1 0.1\n")
    workspace = OracleBackend(tmp_path / "workspace", truth)
    workspace.push(oracle_queue(["a", "b", "c"]), pd.DataFrame())
    assert workspace.annotate(limit=2) == 2
    pulled = workspace.pull()
    write_snapshot(pulled.snapshot, tmp_path / "label-snapshot")  # what export-labels commits

    # a queued experiment's copy: no .acorn/oracle, the committed snapshot
    copy = OracleBackend(tmp_path / "copy", truth, tmp_path / "label-snapshot")
    again = copy.pull()
    pd.testing.assert_frame_equal(again.annotations, pulled.annotations)
    pd.testing.assert_frame_equal(again.boxes, pulled.boxes)
    assert again.snapshot == pulled.snapshot == read_snapshot(tmp_path / "label-snapshot")
    # and it goes on from there: c is queued again and labeled, a and b keep their answers
    copy.push(oracle_queue(["c"]), pd.DataFrame())
    assert copy.annotate() == 1
    assert sorted(copy.pull().annotations["tile_id"]) == ["a", "b", "c"]
    assert sorted(workspace.pull().annotations["tile_id"]) == ["a", "b"], "the workspace is untouched"

    # without a snapshot to start from (or when not asked to), an oracle starts empty
    assert OracleBackend(tmp_path / "bare", truth).pull().annotations.empty
    assert OracleBackend(tmp_path / "none", truth, tmp_path / "no-snapshot").pull().annotations.empty
    # state that exists is never overwritten by the snapshot
    write_snapshot(copy.pull().snapshot, tmp_path / "label-snapshot")
    assert sorted(workspace.pull().annotations["tile_id"]) == ["a", "b"]


@pytest.mark.slow
def test_queued_experiments_after_labeled_cycles_see_the_committed_labels(tiny_repo):
    """After a cycle with oracle labels, a queued rank experiment exports the commit's labels (from
    the snapshot: the copy has no .acorn/oracle), so it keeps the model and re-runs rank only."""
    root = tiny_repo
    track_inputs(root)
    run(["dvc", "repro"], root)
    run(["acorn", "annotate"], root)
    cycle1 = run(["dvc", "repro"], root)
    assert "train" in stages_run(cycle1)
    commit(root, "cycle 1")
    committed = json.loads((root / "metrics/train.json").read_text())
    assert committed["labeled_tiles"] == 4
    oracle_state = {f.name: f.read_bytes() for f in (root / ".acorn/oracle").iterdir()}

    run(
        [
            "dvc",
            "exp",
            "run",
            "--queue",
            "-n",
            "random-2",
            "-S",
            "rank.strategy=random",
            "-S",
            "rank.budget=2",
        ],
        root,
    )
    run(["dvc", "queue", "start", "--jobs", "1"], root)
    try:
        status = wait_for_queue(root, timeout_s=300)
    finally:
        run(["dvc", "queue", "stop"], root)
    log = run(["dvc", "queue", "logs", "random-2"], root).stdout
    assert "Success" in status, f"{status}\n{log[-3000:]}"
    ran = stages_run(subprocess.CompletedProcess([], 0, log, ""))
    assert "rank" in ran and not {"tile", "train", "register"} & set(ran), log

    rows = json.loads(run(["dvc", "exp", "show", "--json"], root).stdout)
    (exp,) = [e["data"] for row in rows for g in row.get("experiments") or [] for e in g["revs"]]
    assert exp["metrics"]["metrics/train.json"]["data"]["labeled_tiles"] == 4
    assert exp["metrics"]["metrics/rank.json"]["data"]["queued_tiles"] == 2
    assert {f.name: f.read_bytes() for f in (root / ".acorn/oracle").iterdir()} == oracle_state, (
        "the workspace's oracle never sees an experiment's batch"
    )
