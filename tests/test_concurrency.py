"""Two `dvc repro` at once in one repository: the second is refused, says why, and changes nothing.

DVC provides the refusal: a repository lock while it reads or writes dvc.lock, and, while a
stage's command runs (DVC releases the repository lock then), per-path read/write locks on the
stage's deps and outs in .dvc/tmp/rwlock. acorn adds no lock of its own.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import zc.lockfile

from tests.conftest import copy_repo, run, tool_env
from tests.test_faults import MODEL_NAME, kill_group, paused_at, sha256, start, store, wait_until


def snapshot(root: Path) -> dict[str, str]:
    """Every file of the repository but git's and DVC's own bookkeeping, by content: all the outputs
    of dvc.yaml (data/label-snapshot and data/queue.csv among them), dvc.lock, the DVC cache, the
    MLflow store and the oracle's state. DVC's lock and state files (.dvc/tmp) are left out: they
    change by design."""
    skipped = (root / ".git", root / ".dvc" / "tmp")
    return {
        str(p.relative_to(root)): sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and not any(p.is_relative_to(s) for s in skipped)
    }


def test_repro_while_another_dvc_holds_the_repository_lock_is_refused(tmp_path):
    """The repository lock held (by this test, through the same lock file and library a running
    `dvc repro` uses): a second `dvc repro` gives up after DVC's ~3 s of retries with a message
    that says another DVC process is running and links the fix, and writes nothing."""
    root = copy_repo(tmp_path / "repo")
    (root / ".dvc/tmp").mkdir(parents=True, exist_ok=True)
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if ".dvc/tmp" not in p.as_posix())
    lock = zc.lockfile.LockFile(str(root / ".dvc/tmp/lock"))
    try:
        proc = run_unchecked(["dvc", "repro"], root)
    finally:
        lock.close()
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Unable to acquire lock. Most likely another DVC process is running" in out, out
    assert "dvc.org/doc/user-guide/troubleshooting#lock-issue" in out
    after = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if ".dvc/tmp" not in p.as_posix())
    assert after == before


def run_unchecked(cmd: list[str], root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=root, env=tool_env(root), capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_second_repro_while_a_stage_runs_is_refused_and_changes_nothing(tiny_repo, tmp_path):
    """A cycle done and its queue labeled by the oracle; the next `dvc repro` stopped inside register
    (its labels exported, its model trained, its MLflow run logged). A second `dvc repro` exits
    non-zero naming the busy output, the first's PID and how to clear a stale lock, and every file
    of the repository (every output, data/label-snapshot and data/queue.csv included, dvc.lock, the
    MLflow store) is byte for byte as the first left it. Killing the first and running again then
    completes with one new registered version."""
    root = tiny_repo
    run(["dvc", "repro"], root)  # cycle 0: a queue, a champion, a snapshot
    run(["acorn", "annotate"], root)  # the oracle labels the queue: the next export has new labels
    log = tmp_path / "first.log"
    first = start(["dvc", "repro"], root, log, ACORN_TEST_PAUSE_AT="register.after_log")
    try:
        wait_until(paused_at("register.after_log", log), first, log)
        before = snapshot(root)
        assert {"data/queue.csv", "data/label-snapshot/tasks.jsonl", "dvc.lock", "mlflow.db"} <= set(before)
        assert any(name.startswith("data/labels/") and name.endswith(".txt") for name in before)
        experiment = store(root).get_experiment_by_name("acorn").experiment_id
        runs = len(store(root).search_runs([experiment]))

        second = run_unchecked(["dvc", "repro"], root)
        out = second.stdout + second.stderr
        assert second.returncode != 0
        assert "is busy, it is being blocked by" in out and f"(PID {first.pid})" in out, out[-3000:]
        assert "you can manually remove" in out and "rwlock" in out
        assert "Running stage 'register'" not in out
        after = snapshot(root)
        changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
        assert changed == []
        assert len(store(root).search_runs([experiment])) == runs
        assert first.poll() is None, "the first run is untouched"
    finally:
        kill_group(first)

    run(["dvc", "repro"], root)
    versions = store(root).search_model_versions(f"name = '{MODEL_NAME}'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert json.loads((root / "models/registry.json").read_text())["version"] == 2
