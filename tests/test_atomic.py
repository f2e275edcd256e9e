import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acorn.runtime import atomic
from acorn.runtime.atomic import (
    FolderBusyError,
    atomic_path,
    replace_dir,
    sole_writer,
    sync_folder,
    write_bytes,
    write_json,
)


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
        "from acorn.runtime.atomic import sole_writer\n"
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


def _record_syncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every fsync (by the path its descriptor names), syncfs, rename, folder exchange and
    non-empty folder removal, in order."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace, real_rmtree = os.fsync, os.replace, shutil.rmtree
    real_syncfs, real_exchange = atomic._syncfs, atomic._exchange

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def syncfs(path: Path) -> bool:
        events.append(("syncfs", str(Path(path).resolve())))
        return real_syncfs(path)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append(("replace", str(Path(dst).resolve())))
        real_replace(src, dst)

    def exchange(a: Path, b: Path) -> bool:
        events.append(("exchange", str(Path(b).resolve())))
        return real_exchange(a, b)

    def rmtree(path: str | os.PathLike[str], *args: object, **kwargs: object) -> None:
        if Path(path).exists():
            events.append(("rmtree", str(Path(path).resolve())))
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    monkeypatch.setattr(atomic, "_syncfs", syncfs)
    monkeypatch.setattr(atomic, "_exchange", exchange)
    return events


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names descriptors through /proc")
def test_a_write_is_on_disk_before_it_replaces_the_old_file_and_its_folder_after(tmp_path, monkeypatch):
    """A rename can reach the disk before the data it names: a power cut then leaves an empty file.
    The temporary file is fsynced before the rename, the folder (the rename itself) after."""
    folder = tmp_path.resolve()
    write_json(folder / "out.json", {"a": 1})
    events = _record_syncs(monkeypatch)
    write_json(folder / "out.json", {"a": 2})
    [(first, temp), replaced, folder_synced] = events
    assert first == "fsync" and Path(temp).parent == folder and temp.endswith(".tmp")
    assert replaced == ("replace", str(folder / "out.json"))
    assert folder_synced == ("fsync", str(folder))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names descriptors through /proc")
@pytest.mark.parametrize("has_syncfs", [True, False], ids=["syncfs", "fsync-each"])
def test_a_folder_swap_is_on_disk_before_the_old_folder_is_removed(tmp_path, monkeypatch, has_syncfs):
    """The new folder is flushed before the swap (one syncfs of its filesystem, or where there is
    none every file and folder fsynced), the parent (the swap) after it, and only then is the old
    folder removed: a power cut at any moment leaves one complete folder, never two empty ones."""
    root = tmp_path.resolve()
    (root / "out").mkdir()
    (root / "out" / "old.txt").write_text("old")
    staging = root / ".out.staging"
    (staging / "sub").mkdir(parents=True)
    (staging / "a.txt").write_text("a")
    (staging / "sub" / "b.txt").write_text("b")
    if not has_syncfs:
        monkeypatch.setattr(atomic, "_syncfs", lambda path: False)
    events = _record_syncs(monkeypatch)
    replace_dir(staging, root / "out")
    assert (root / "out" / "sub" / "b.txt").read_text() == "b" and not staging.exists()
    swapped = events.index(("exchange", str(root / "out")))
    parent = events.index(("fsync", str(root)))
    removed = [i for i, (kind, _) in enumerate(events) if kind == "rmtree"]
    assert removed and swapped < parent < removed[0], f"flush, swap, parent fsync, then removal: {events}"
    flushed = set(events[:swapped])
    if has_syncfs:
        assert ("syncfs", str(staging)) in flushed, events
    else:
        wanted = {
            ("fsync", str(p))
            for p in (staging / "a.txt", staging / "sub" / "b.txt", staging / "sub", staging)
        }
        assert wanted <= flushed, f"every new file and folder fsynced first: {events}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="syncfs is Linux's")
def test_a_bulk_writer_can_leave_the_flush_to_sync_folder(tmp_path, monkeypatch):
    """``sync=False`` (the tile stage's tiles): the file is renamed into place unsynced, and the
    writer's one ``sync_folder`` before its index flushes it."""
    events = _record_syncs(monkeypatch)
    write_bytes(tmp_path / "images" / "t.jpg", b"jpeg", sync=False)
    assert [kind for kind, _ in events] == ["replace"]
    sync_folder(tmp_path)
    assert events[1:] == [("syncfs", str(tmp_path.resolve()))]


# a reader of the swapped folder: it opens and reads the folder's marker file as fast as it can
# until told to stop, and counts the reads that found no file or an incomplete one
_READER = """
import json, os, sys
target, stop = sys.argv[1], sys.argv[2]
reads = misses = 0
print("ready", flush=True)
while not os.path.exists(stop):
    reads += 1
    try:
        with open(os.path.join(target, "manifest.csv")) as f:
            text = f.read()
        if not text.endswith("end\\n"):
            misses += 1
    except FileNotFoundError:
        misses += 1
print(json.dumps({"reads": reads, "misses": misses}), flush=True)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the one-step swap is Linux's renameat2")
def test_a_reader_never_finds_the_swapped_folder_missing_or_partial(tmp_path):
    """Train reads data/labels while another export-labels may swap a new one in (two `dvc repro`
    at once, a labeler's tool reading it). A reader in another process reads the folder's manifest
    without pause while the folder is swapped hundreds of times: it must never find it missing or
    half there. A swap that deletes the old folder and then renames the new one in fails this
    (the reader lands between the two steps), as checked by hand when this test was written."""
    target, stop = tmp_path / "labels", tmp_path / "stop"

    def staged(version: int) -> Path:
        staging = tmp_path / ".labels.staging"
        staging.mkdir()
        for i in range(8):
            (staging / f"t{i}.txt").write_text(f"{version} {i}\n")
        (staging / "manifest.csv").write_text("tile_id\n" + f"{version}\n" * 50 + "end\n")
        return staging

    replace_dir(staged(0), target)
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, str(target), str(stop)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout.readline() == "ready\n"
        swaps, start = 0, time.monotonic()
        while swaps < 100 or time.monotonic() - start < 1.5:
            swaps += 1
            replace_dir(staged(swaps), target)
        stop.touch()
        counts = json.loads(reader.communicate(timeout=30)[0])
    finally:
        reader.kill()
        reader.wait()
    assert counts["reads"] >= 1000, f"the reader did not race the {swaps} swaps: {counts}"
    assert counts["misses"] == 0, f"{counts['misses']} of {counts['reads']} reads during {swaps} swaps failed"


def test_a_folder_that_cannot_be_fsynced_does_not_fail_the_write(tmp_path, monkeypatch):
    """FUSE and network mounts may answer EINVAL to a folder's fsync: the file is still written
    (and its own fsync still fails loudly)."""
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_json(tmp_path / "out.json", {"a": 1})
    assert json.loads((tmp_path / "out.json").read_text()) == {"a": 1}

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError, match="I/O error"):
        write_json(tmp_path / "out.json", {"a": 2})
    assert json.loads((tmp_path / "out.json").read_text()) == {"a": 1}


def test_the_tile_stage_flushes_its_tiles_once_before_the_manifest_lists_them(tmp_path, monkeypatch):
    """Tiles are written unsynced (two fsyncs each cost the frame 3-14x its tiling time), so the
    manifest must not reach the disk before them: one ``sync_folder`` of the tiles folder comes
    first, with every tile of the run already written."""
    from PIL import Image

    from acorn.data.tiling import TileGrid, tile_dataset

    (tmp_path / "raw" / "images").mkdir(parents=True)
    for name in ("f1", "f2"):
        Image.new("RGB", (120, 60), (90, 120, 60)).save(tmp_path / "raw" / "images" / f"{name}.jpg")
    out = tmp_path / "tiles"
    events: list[tuple[str, object]] = []
    real_sync, real_parquet = atomic.sync_folder, atomic.write_parquet

    def sync(folder: Path) -> None:
        events.append(("sync", sorted(p.name for p in (Path(folder) / "images").iterdir())))
        real_sync(folder)

    def parquet(df: object, path: str | os.PathLike[str]) -> None:
        events.append(("manifest", Path(path).name))
        real_parquet(df, path)

    monkeypatch.setattr(atomic, "sync_folder", sync)
    monkeypatch.setattr(atomic, "write_parquet", parquet)
    tile_dataset(tmp_path / "raw", out, TileGrid(1, 2), ["squirrel"], workers=1)
    tiles = ["f1_r0c0.jpg", "f1_r0c1.jpg", "f2_r0c0.jpg", "f2_r0c1.jpg"]
    assert events == [("sync", tiles), ("manifest", "manifest.parquet")]
