import os

import pytest

from acorn.atomic import atomic_path, replace_dir, write_json


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
