import os
import signal
import subprocess
import sys

import pytest

from acorn.atomic import FolderBusyError, atomic_path, replace_dir, sole_writer, write_json


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert os.listdir(tmp_path) == ["out.json"]


def test_outputs_are_readable_by_others(tmp_path):
    target = tmp_path / "x.json"
    write_json(target, [])
    assert target.stat().st_mode & 0o044 == 0o044


def test_replace_dir_swaps_whole_folders(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "new.txt").write_text("new")
    replace_dir(staging, tmp_path / "out")
    assert os.listdir(tmp_path / "out") == ["new.txt"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_lock_left_to_the_workers_of_a_writer_that_died_says_the_writer_has_ended(tmp_path):
    """A writer's forked workers share its lock; killed (an OOM kill), the writer leaves them
    holding it for a moment. The refusal says the recorded process has ended, not that it runs."""
    script = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from acorn.atomic import sole_writer\n"
        f"with sole_writer(Path({str(tmp_path)!r}), 'acorn simulate'):\n"
        "    if os.fork() == 0:\n"
        "        os.close(1), os.close(2)\n"  # the test reads the writer's output to its end
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "    print(os.getpid(), flush=True)\n"
        "    os._exit(0)\n"  # dies holding the lock: no unlock, as under SIGKILL
    )
    writer = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, start_new_session=True
    )
    pid = int(writer.stdout)
    try:
        with pytest.raises(FolderBusyError) as refused, sole_writer(tmp_path, "a test"):
            pass
        assert f"in use by processes that acorn simulate (pid {pid}) started, which has ended" in str(
            refused.value
        )
    finally:
        os.killpg(pid, signal.SIGKILL)  # the worker, in the writer's session
