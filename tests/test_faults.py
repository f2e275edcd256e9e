"""Faults: a stage SIGKILLed mid-work, a run stopped by SIGTERM, the MLflow store down or locked, a full disk.

Each test causes the fault for real where it can (a process group killed with SIGKILL, a closed
port, a sqlite file locked by another connection, a 1 MiB tmpfs) and checks what the next run
finds: outputs consistent with a clean run, nothing half-registered, the previous output intact.
Where a stage must be caught at an exact moment, it stops at a named ``acorn.runtime.atomic.pause_point``
(ACORN_TEST_PAUSE_AT, test-only) or is frozen with SIGSTOP once its files show it is mid-work.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from acorn.model.registry import COMPLETE_TAG, SOURCE_TAG, WEIGHTS_TAG, source_hash
from acorn.runtime import atomic
from acorn.runtime.atomic import DiskFullError, copy_file, replace_dir, write_csv, write_json, write_parquet
from tests.conftest import REPO, run, save_detector, tool_env, write_params

MODEL_NAME = yaml.safe_load((REPO / "params.yaml").read_text())["register"]["model_name"]


# --- processes: start in their own group, catch mid-work, kill the whole group ---------------


def start(cmd: list[str], root: Path, log: Path, **env: str) -> subprocess.Popen:
    """``cmd`` in a new session, so that one killpg reaches DVC, the shell and the stage it runs."""
    full_env = {**tool_env(root), **env}
    with log.open("w") as out:
        return subprocess.Popen(
            cmd, cwd=root, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_until(check: Callable[[], bool], proc: subprocess.Popen, log: Path, timeout: float = 900) -> None:
    """Poll ``check`` until true; fail with the log if the process ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            raise AssertionError(
                f"exited ({proc.returncode}) before the awaited moment:\n{log.read_text()[-4000:]}"
            )
        if time.monotonic() > deadline:
            kill_group(proc)
            raise AssertionError(
                f"the awaited moment did not come in {timeout} s:\n{log.read_text()[-4000:]}"
            )
        time.sleep(0.01)


def paused_at(point: str, log: Path) -> Callable[[], bool]:
    return lambda: f"paused at {point}" in log.read_text()


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group (works on a SIGSTOPped one too) and wait until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def store_uri(root: Path) -> str:
    return f"sqlite:///{root / 'mlflow.db'}"


def store(root: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=store_uri(root), registry_uri=store_uri(root))


# --- repositories: tiles, then labels from the oracle, then a trained model -------------------


def oracle_labels(root: Path, count: int = 4) -> None:
    """Queue ``count`` tiles (those with squirrels first) and let the oracle label them, as
    `rank` + `acorn annotate` would, without a whole cycle's predict and rank."""
    from acorn.labeling.oracle import OracleBackend

    tiles = pd.read_parquet(root / "data/tiles/manifest.parquet")
    picked = tiles.sort_values(["n_truth", "tile_id"], ascending=[False, True]).head(count)
    queue = picked.assign(batch=1, rank=range(1, count + 1), score=0.5, model_version="acorn-detector-v0")
    oracle = OracleBackend(root / ".acorn/oracle", root / "data/tiles/truth")
    oracle.push(queue, pd.DataFrame(columns=["tile_id"]))
    assert oracle.annotate() == count


@pytest.fixture(scope="module")
def trained_repo(tiny_template, tmp_path_factory) -> Path:
    """Tiles, 4 oracle labels and a fine-tuned model: `dvc repro train` done, register not yet."""
    root = tmp_path_factory.mktemp("trained") / "repo"
    shutil.copytree(tiny_template, root, symlinks=True)
    run(["dvc", "repro", "tile"], root)
    oracle_labels(root)
    run(["dvc", "repro", "train"], root)
    return root


@pytest.fixture
def trained(trained_repo, tmp_path) -> Path:
    dest = tmp_path / "repo"
    shutil.copytree(trained_repo, dest, symlinks=True)
    return dest


@pytest.fixture(scope="module")
def registered_repo(trained_repo, tmp_path_factory) -> Path:
    """`trained_repo` after `dvc repro register`: version 1 is the champion, its record written."""
    root = tmp_path_factory.mktemp("registered") / "repo"
    shutil.copytree(trained_repo, root, symlinks=True)
    run(["dvc", "repro", "register"], root)
    return root


@pytest.fixture
def registered(registered_repo, tmp_path) -> Path:
    dest = tmp_path / "repo"
    shutil.copytree(registered_repo, dest, symlinks=True)
    return dest


# --- SIGKILL mid-stage, then dvc repro -------------------------------------------------------


def write_4k_frames(images: Path, count: int) -> None:
    """Frames large enough (3840x2160, ~0.1 s each to tile) that tiling them is caught mid-way."""
    from PIL import Image

    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, 3840, dtype=np.uint8)[None, :, None].repeat(2160, 0).repeat(3, 2)
    for i in range(count):
        pixels = base.copy()
        pixels[:: 97 + i, :, i % 3] = rng.integers(0, 255)
        Image.fromarray(pixels).save(images / f"big{i:02d}.jpg", quality=80)


@pytest.mark.slow
def test_tile_killed_mid_run_then_repro_matches_a_clean_run(tiny_repo, tmp_path):
    """Killed with some tiles written and no manifest yet, and one already-tiled frame deleted
    before the re-run (a user removing a bad frame): the re-run's manifest lists exactly the
    tile files on disk, and they are byte for byte what a clean run writes."""
    root = tiny_repo
    write_4k_frames(root / "data/raw/images", 16)
    clean = tmp_path / "clean"
    shutil.copytree(root, clean, symlinks=True)
    images = root / "data/tiles/images"

    log = tmp_path / "tile.log"
    proc = start(["dvc", "repro", "tile"], root, log)
    wait_until(lambda: images.is_dir() and len(list(images.glob("big*.jpg"))) >= 6, proc, log)
    os.killpg(proc.pid, signal.SIGSTOP)  # frozen mid-work: some tiles written, the manifest not
    written = sorted(p.name for p in images.glob("*.jpg"))
    assert 6 <= len([n for n in written if n.startswith("big")]) < 16 * 6, written
    assert not (root / "data/tiles/manifest.parquet").exists()
    kill_group(proc)

    tiled_frame = written[0].split("_r")[0]
    for folder in (root, clean):
        (folder / f"data/raw/images/{tiled_frame}.jpg").unlink()
    run(["dvc", "repro", "tile"], root)
    run(["dvc", "repro", "tile"], clean)

    manifest = pd.read_parquet(root / "data/tiles/manifest.parquet")
    assert sorted(p.relative_to(root / "data/tiles").as_posix() for p in images.glob("*")) == sorted(
        manifest["image"]
    ), "every tile file is in the manifest and every manifest row has its file"
    pd.testing.assert_frame_equal(manifest, pd.read_parquet(clean / "data/tiles/manifest.parquet"))
    assert tree_hashes(root / "data/tiles") == tree_hashes(clean / "data/tiles")
    assert json.loads(run(["dvc", "status", "--json", "tile"], root).stdout or "{}") == {}


@pytest.mark.slow
def test_export_labels_killed_before_the_swap_then_repro_gives_the_clean_labels(trained, tmp_path):
    """Killed with the new labels folder fully staged and not yet swapped in: the re-run writes
    exactly the labels a clean run wrote, dvc.lock is unchanged (train stays up to date), and no
    staging or old folder is left in data/."""
    root = trained
    clean = tree_hashes(root / "data/labels")
    lock = (root / "dvc.lock").read_bytes()
    log = tmp_path / "export.log"
    proc = start(["dvc", "repro", "export-labels"], root, log, ACORN_TEST_PAUSE_AT="replace_dir:labels")
    wait_until(paused_at("replace_dir:labels", log), proc, log)
    assert (root / "data/.labels.staging/manifest.csv").is_file()
    assert not (root / "data/labels").exists(), "DVC removes a stage's outputs before running it"
    kill_group(proc)

    run(["dvc", "repro", "export-labels"], root)
    assert tree_hashes(root / "data/labels") == clean
    leftovers = [p.name for p in (root / "data").iterdir() if p.name.endswith((".staging", ".old"))]
    assert leftovers == []
    assert (root / "dvc.lock").read_bytes() == lock


@pytest.mark.slow
def test_train_killed_mid_epoch_then_repro_writes_model_and_metrics_together(trained, tmp_path):
    """Killed after its first epoch's weights: neither models/model.pt nor metrics/train.json
    exists (DVC removed them, nothing wrote them); the re-run writes both, and dvc.lock records
    exactly those files."""
    root = trained
    write_params(root, {"train": {"epochs": 3}})
    log = tmp_path / "train.log"
    proc = start(["dvc", "repro", "train"], root, log)
    wait_until(lambda: any((root / ".acorn/work").glob("train-*/train/weights/*.pt")), proc, log)
    os.killpg(proc.pid, signal.SIGSTOP)
    assert not (root / "models/model.pt").exists() and not (root / "metrics/train.json").exists()
    kill_group(proc)

    assert list((root / ".acorn/work").glob("train-*"))  # the killed run's scratch folder
    run(["dvc", "repro", "train"], root)
    assert not list((root / ".acorn/work").glob("train-*"))  # cleared by the next run, its own too
    metrics = json.loads((root / "metrics/train.json").read_text())
    assert metrics["labeled_tiles"] == 4 and {"map50", "precision", "recall"} <= set(metrics)
    assert (root / "models/model.pt").stat().st_size > 0
    status = run(["dvc", "status", "--json", "train"], root).stdout
    assert json.loads(status or "{}") == {}, status


def register_elsewhere(root: Path, map50: float) -> str:
    """A champion already in the store (other weights, so champion.pt shows which one it holds),
    registered by a separate process as an earlier cycle would have (scored on the validation set,
    the gate's metric); returns its weights' hash."""
    script = (
        "from pathlib import Path; from tests.conftest import save_detector; "
        "from acorn.model.registry import register; "
        "w = save_detector(Path('.acorn/earlier.pt'), ['squirrel']); "
        f"register(w, {{'cycle': 0, 'map50': {map50}, 'val_map50': {map50}}}, {MODEL_NAME!r}, "
        "'val_map50', {})"
    )
    env = {**tool_env(root), "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", script], cwd=root, env=env, check=True, capture_output=True)
    return sha256(root / ".acorn/earlier.pt")


def assert_registered_once(root: Path, champion: int, champion_sha: str) -> None:
    """Every version complete and its weights loadable; this cycle's model registered exactly
    once (one version, one live run); aliases and the repository's files agree."""
    client = store(root)
    versions = client.search_model_versions(f"name = '{MODEL_NAME}'")
    for mv in versions:
        assert mv.tags.get(COMPLETE_TAG) == "true", f"version {mv.version} is half-registered"
        weights = mlflow.artifacts.download_artifacts(
            client.get_model_version_download_uri(MODEL_NAME, mv.version)
        )
        assert [sha256(p) for p in Path(weights).rglob("*.pt")] == [mv.tags[WEIGHTS_TAG]]
    metrics = json.loads((root / "metrics/train.json").read_text())
    source = source_hash(root / "models/model.pt", metrics, MODEL_NAME)
    ours = [mv for mv in versions if mv.tags.get(SOURCE_TAG) == source]
    assert len(ours) == 1, f"{len(ours)} versions of this cycle's model"
    experiment = client.get_experiment_by_name("acorn").experiment_id
    assert len(client.search_runs([experiment], f"tags.`{SOURCE_TAG}` = '{source}'")) == 1
    record = json.loads((root / "models/registry.json").read_text())
    assert record["version"] == int(ours[0].version)
    assert int(client.get_model_version_by_alias(MODEL_NAME, "challenger").version) == record["version"]
    assert int(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == champion
    assert record["champion_version"] == champion
    assert sha256(root / "models/champion.pt") == champion_sha == record["champion_weights_sha256"]


@pytest.mark.slow
@pytest.mark.parametrize("point", ["register.after_log", "register.after_version", "register.after_complete"])
def test_register_killed_then_repro_registers_once(trained, tmp_path, point):
    """Killed with the MLflow run logged but no version, with a version whose weights were not yet
    read back, or with a complete version but no alias moved: until the re-run the champion alias
    stays on the earlier version, and the re-run leaves one complete version of this cycle's model
    (the half-done run and version cleaned up or reused, never duplicated) that wins the gate."""
    root = trained
    earlier_sha = register_elsewhere(root, map50=-1.0)  # any real score beats it
    log = tmp_path / "register.log"
    proc = start(["dvc", "repro", "register"], root, log, ACORN_TEST_PAUSE_AT=point)
    wait_until(paused_at(point, log), proc, log)
    client = store(root)
    versions = {int(mv.version): mv for mv in client.search_model_versions(f"name = '{MODEL_NAME}'")}
    assert len(versions) == (1 if point == "register.after_log" else 2)
    if point != "register.after_log":
        assert versions[2].tags.get(COMPLETE_TAG) == ("true" if point == "register.after_complete" else None)
        assert versions[2].aliases == []
    assert int(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == 1
    kill_group(proc)

    run(["dvc", "repro", "register"], root)
    new = json.loads((root / "models/registry.json").read_text())["version"]
    assert_registered_once(root, champion=new, champion_sha=sha256(root / "models/model.pt"))
    assert new != 1 and sha256(root / "models/champion.pt") != earlier_sha


@pytest.mark.slow
def test_register_killed_after_a_losing_version_keeps_the_champion(trained, tmp_path):
    """A model that loses the gate, killed once complete: the re-run reuses its version, leaves
    the champion where it was and puts the champion's own weights in models/champion.pt."""
    root = trained
    earlier_sha = register_elsewhere(root, map50=2.0)  # no model reaches it
    log = tmp_path / "register.log"
    proc = start(["dvc", "repro", "register"], root, log, ACORN_TEST_PAUSE_AT="register.after_complete")
    wait_until(paused_at("register.after_complete", log), proc, log)
    kill_group(proc)
    run(["dvc", "repro", "register"], root)
    assert_registered_once(root, champion=1, champion_sha=earlier_sha)


# --- SIGTERM: the process unwinds and cleans up ------------------------------------------------


def tiny_simulation(root: Path, epochs: int) -> list[str]:
    """``acorn simulate`` on 20 tiny images in ``root`` (one cycle of 4, random), as a command."""
    from PIL import Image

    pool = root / "pool"
    (pool / "images").mkdir(parents=True)
    (pool / "labels").mkdir()
    for i in range(20):
        # noise, not a flat colour: flat images are all near-copies of each other (folder_pool groups them)
        pixels = np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(pool / "images" / f"img{i:02d}.jpg")
        (pool / "labels" / f"img{i:02d}.txt").write_text("0 0.5 0.5 0.3 0.3\n" if i % 2 else "")
    (pool / "classes.txt").write_text("raccoon\n")
    save_detector(root / "base.pt", ["raccoon"])
    (root / "params.yaml").write_text("classes: [raccoon]\ntrain: {batch: 4, replay_images: 0}\n")
    cmd = [
        "acorn",
        "simulate",
        "--pool",
        "pool",
        "--base",
        "base.pt",
        "--strategies",
        "random",
        "--seeds",
        "1",
    ]
    return [
        *cmd,
        "--cycles",
        "1",
        "--budget",
        "4",
        "--epochs",
        str(epochs),
        "--full-epochs",
        "0",
        "--imgsz",
        "64",
    ]


def training_started(out: Path) -> Callable[[], bool]:
    return lambda: any(out.glob("work/tmp*/train-*/train/weights/last.pt"))


def test_simulate_stopped_by_sigterm_removes_its_scratch_and_keeps_what_it_saved(tmp_path):
    """SIGTERM to the whole process group mid-training, as a batch scheduler or ``kill`` sends it:
    the simulation's scratch folder goes (under SIGTERM's default action it outlives the process),
    the exit status is a SIGTERMed process's, and what was saved for a resume stays."""
    out, log = tmp_path / "out", tmp_path / "simulate.log"
    proc = start([*tiny_simulation(tmp_path, epochs=500), "--out", "out"], tmp_path, log)
    wait_until(training_started(out), proc, log)

    os.killpg(proc.pid, signal.SIGTERM)
    try:
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM, log.read_text()[-3000:]
    finally:
        kill_group(proc)  # a handler that failed would leave 500 epochs training
    assert [p.name for p in (out / "work").iterdir()] == [".lock"]
    assert "stopped by SIGTERM" in log.read_text()
    assert (out / "config.json").is_file() and (out / "curves.csv").is_file()  # cycle 0, kept


def test_simulate_killed_leaves_scratch_the_next_run_removes_and_refuses_a_second_writer(tmp_path):
    """SIGKILL cannot be handled: the killed run's scratch folder stays until the next run, which
    holds the folder's lock and so knows it is stale. While a simulation holds the lock, another
    one on the same folder is refused, naming the folder and the process holding it."""
    cmd = [*tiny_simulation(tmp_path, epochs=3), "--out", "out"]
    out, log = tmp_path / "out", tmp_path / "simulate.log"
    proc = start(cmd, tmp_path, log)
    wait_until(training_started(out), proc, log)
    os.killpg(proc.pid, signal.SIGSTOP)
    kill_group(proc)
    stale = [p for p in (out / "work").iterdir() if p.name.startswith("tmp")]
    assert len(stale) == 1

    with atomic.sole_writer(out / "work", "a test"):
        refused = subprocess.run(cmd, cwd=tmp_path, env=tool_env(tmp_path), capture_output=True, text=True)
    assert refused.returncode == 1, refused.stderr[-3000:]
    assert f"out/work: in use by a test (pid {os.getpid()}); wait for it to end" in refused.stderr
    assert stale[0].is_dir()  # a refused run touches nothing

    run(cmd, tmp_path)
    assert not stale[0].exists() and [p.name for p in (out / "work").iterdir()] == [".lock"]
    assert len(pd.read_csv(out / "curves.csv")) == 2  # cycles 0 and 1


def test_a_refit_killed_mid_fine_tune_goes_on_from_its_last_epoch(tmp_path):
    """``benchmarks/refit.py`` fine-tunes a run's labels again, under recipes of up to an hour on
    a CPU: SIGKILLed after its first epoch (paused there, once its checkpoint is whole), the
    same command goes on from that epoch instead of starting over, and clears its folder once the
    row is saved."""
    sim = [*tiny_simulation(tmp_path, epochs=1), "--out", "sim"]
    run(sim, tmp_path)
    refit = [
        sys.executable,
        str(REPO / "benchmarks" / "refit.py"),
        "sim",
        "--strategy",
        "random",
        "--seed",
        "0",
        "--cycle",
        "1",
        "--pool",
        "pool",
        *("-S", "model.base=base.pt", "-S", "rank.budget=4", "-S", "train.epochs=1", "-S", "model.imgsz=64"),
        "--variant",
        "train.epochs=4",
        "--out",
        "refit",
    ]
    out, log = tmp_path / "refit", tmp_path / "refit.log"
    proc = start(refit, tmp_path, log, ACORN_TEST_PAUSE_AT="train.epoch_end")
    wait_until(paused_at("train.epoch_end", log), proc, log)
    kill_group(proc)
    assert "epoch 1/4" in log.read_text() and "epoch 2/4" not in log.read_text()
    assert not (out / "refit.csv").exists()

    proc = start(refit, tmp_path, log)
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "resuming the training stopped in" in text and "epoch 1/4" not in text, text[-3000:]
    assert "epoch 4/4" in text
    assert pd.read_csv(out / "refit.csv")["batch"].tolist() == ["random-s0-c1 train.epochs=4"]
    assert [p.name for p in (out / "work").iterdir()] == [".lock"]


def test_a_command_run_supervised_stops_with_what_it_runs(tmp_path):
    """``acorn cycle`` runs ``dvc repro``, which runs a stage and does not pass SIGTERM on to it.
    SIGTERM to acorn alone (``kill PID``) reaches the stage too, which unwinds, and acorn waits
    for it and exits 143; a stage left running would race the next ``dvc repro``."""
    marker = tmp_path / "stage-unwound"
    stage = (  # the stage: unwinds on SIGTERM as acorn's stages do, leaving a mark
        "import signal, sys, time, pathlib\n"
        f"signal.signal(signal.SIGTERM, lambda *_: (pathlib.Path({str(marker)!r}).write_text('yes'), sys.exit(143)))\n"
        f"pathlib.Path({str(tmp_path / 'stage-started')!r}).write_text('yes')\n"
        "time.sleep(60)\n"
    )
    dvc_like = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {stage!r}])"
    acorn_like = (
        "import sys\n"
        "from acorn.runtime.entrypoint import run_supervised, unwind_on_sigterm\n"
        "unwind_on_sigterm()\n"
        f"run_supervised([sys.executable, '-c', {dvc_like!r}])\n"
    )
    log = tmp_path / "acorn.log"
    proc = start([sys.executable, "-c", acorn_like], REPO, log)
    try:
        wait_until(lambda: (tmp_path / "stage-started").exists(), proc, log, timeout=60)
        os.kill(proc.pid, signal.SIGTERM)  # acorn only, not its group
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM, log.read_text()[-3000:]
    finally:
        kill_group(proc)
    assert marker.read_text() == "yes"


def test_sigterm_to_a_process_with_data_loader_workers_exits_cleanly(tmp_path):
    """Ultralytics trains with PyTorch data-loader workers on a GPU machine; SIGTERM to the group
    (a scheduler's) kills them too. PyTorch's watchdog would report each worker's death, while the
    process unwinds, as a RuntimeError traceback; the handler silences it and the exit is 143."""
    script = (
        "import time\n"
        "import torch\n"
        "from torch.utils.data import DataLoader, Dataset\n"
        "from acorn.runtime.entrypoint import unwind_on_sigterm\n"
        "class Slow(Dataset):\n"
        "    def __len__(self): return 100_000\n"
        "    def __getitem__(self, i): time.sleep(0.02); return torch.zeros(1)\n"
        "unwind_on_sigterm()\n"
        "for i, _ in enumerate(DataLoader(Slow(), batch_size=1, num_workers=2)):\n"
        "    if i == 5: print('loading', flush=True)\n"
    )
    log = tmp_path / "loader.log"
    # the workers, dead of SIGTERM, leave their multiprocessing temp folders: here, not in /tmp
    proc = start([sys.executable, "-c", script], REPO, log, TMPDIR=str(tmp_path))
    try:
        wait_until(lambda: "loading" in log.read_text(), proc, log, timeout=120)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM, log.read_text()[-3000:]
    finally:
        kill_group(proc)
    assert "stopped by SIGTERM" in log.read_text()
    assert "DataLoader worker" not in log.read_text(), log.read_text()[-3000:]


def test_a_worker_forked_after_sigterm_is_handled_dies_of_it_as_by_default():
    """Tiling and data-loader workers are forked from the process that set the handler: SIGTERM
    kills them as it would have, instead of raising in code that is their parent's."""
    script = (
        "import os, signal, time\n"
        "from acorn.runtime.entrypoint import unwind_on_sigterm\n"
        "unwind_on_sigterm()\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "time.sleep(0.3)\n"
        "os.kill(child, signal.SIGTERM)\n"
        "_, status = os.waitpid(child, 0)\n"
        "print(os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.strip() == "True", proc.stderr[-2000:]


# --- the MLflow store unreachable or locked ----------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def repo_state(root: Path) -> dict[str, str]:
    return {f: sha256(root / f) for f in ("models/registry.json", "models/champion.pt", "dvc.lock")}


@pytest.mark.slow
def test_register_with_the_tracking_server_down_fails_fast_and_clearly(registered, tmp_path):
    """MLFLOW_TRACKING_URI at a closed port, with credentials in it: one line naming the server
    (credentials redacted) and what to do, within MLflow's bounded retries, nothing written."""
    root = registered
    before = repo_state(root)
    uri = f"http://acorn:s3cret-token@127.0.0.1:{closed_port()}"
    env = {
        **tool_env(root),
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    }
    t0 = time.monotonic()
    proc = subprocess.run(
        ["dvc", "repro", "--force", "--single-item", "register"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"MLflow store http://127.0.0.1:{uri.rsplit(':', 1)[1]} cannot be reached" in out, out[-3000:]
    assert "MLFLOW_TRACKING_URI" in out and "s3cret-token" not in out and "Traceback" not in out
    assert elapsed < 120, f"took {elapsed:.0f} s"
    assert repo_state(root) == before


@pytest.mark.slow
def test_register_with_the_sqlite_store_locked_fails_clearly_then_succeeds_once(registered):
    """Another connection holds an exclusive transaction on mlflow.db: register fails naming the
    file and what to do, after sqlite's busy timeout (5 s opening the store, 20 s a statement),
    nothing written; once the lock is released the same run registers nothing twice."""
    root = registered
    before = repo_state(root)
    versions = len(store(root).search_model_versions(f"name = '{MODEL_NAME}'"))
    holder = sqlite3.connect(root / "mlflow.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        t0 = time.monotonic()
        proc = subprocess.run(
            ["dvc", "repro", "--force", "--single-item", "register"],
            cwd=root,
            env=tool_env(root),
            capture_output=True,
            text=True,
        )
        elapsed = time.monotonic() - t0
    finally:
        holder.rollback()
        holder.close()
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"MLflow store sqlite:///{root / 'mlflow.db'} is locked by another process" in out, out[-3000:]
    assert "Traceback" not in out and elapsed < 180, f"took {elapsed:.0f} s"
    assert repo_state(root) == before

    record = json.loads((root / "models/registry.json").read_text())
    run(["dvc", "repro", "--force", "--single-item", "register"], root)
    assert len(store(root).search_model_versions(f"name = '{MODEL_NAME}'")) == versions
    again = json.loads((root / "models/registry.json").read_text())
    assert {**again, "tracking_uri": ""} == {**record, "tracking_uri": ""}, "the same version, aliases, gain"
    assert sha256(root / "models/champion.pt") == before["models/champion.pt"]


# --- a full disk while writing an output ------------------------------------------------------

FRAME = pd.DataFrame({"tile_id": [f"t{i:05d}" for i in range(4000)], "score": np.linspace(0, 1, 4000)})
BIG = os.urandom(256 * 1024)  # larger than the space left on the full disk

WRITERS: dict[str, Callable[[Path, Path], None]] = {
    "write_json": lambda src, dst: write_json(dst, {"blob": BIG.hex()}),
    "write_csv": lambda src, dst: write_csv(FRAME, dst),
    "write_parquet": lambda src, dst: write_parquet(
        FRAME.assign(blob=[BIG[i : i + 64] for i in range(len(FRAME))]), dst
    ),
    "copy_file": lambda src, dst: copy_file(src, dst),
}


@pytest.fixture
def tiny_disk(tmp_path) -> Path:
    """A real 1 MiB tmpfs (root and a kernel that allows the mount; skipped otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def fill(disk: Path, leave: int) -> None:
    """Take all but ``leave`` bytes of the disk."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * max(free - leave, 0))


@pytest.mark.parametrize("writer", list(WRITERS))
def test_disk_full_keeps_the_previous_output_and_no_temp_file(tiny_disk, tmp_path, writer):
    """ENOSPC from the kernel half-way through an output: DiskFullError (a user error naming the
    file), the previous output byte-identical, no temporary sibling left."""
    target = tiny_disk / "out"
    target.write_bytes(b"previous output\n")
    src = tmp_path / "weights.pt"
    src.write_bytes(BIG)
    fill(tiny_disk, leave=32 * 1024)
    with pytest.raises(DiskFullError, match=f"{target}: no space left"):
        WRITERS[writer](src, target)
    assert target.read_bytes() == b"previous output\n"
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler", "out"]


def partial_then_enospc(target_arg: int) -> Callable:
    """A stand-in for a library write that fills the disk: half the bytes, then ENOSPC."""

    def write(*args, **kwargs):
        Path(args[target_arg]).write_text("half an outp")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return write


@pytest.mark.parametrize(
    "writer,patch,target_arg",
    [
        ("write_json", (Path, "write_bytes"), 0),
        ("write_csv", (pd.DataFrame, "to_csv"), 1),
        ("write_parquet", (pd.DataFrame, "to_parquet"), 1),
        ("copy_file", (shutil, "copyfile"), 1),
    ],
)
def test_injected_enospc_keeps_the_previous_output(tmp_path, monkeypatch, writer, patch, target_arg):
    """The same as the tmpfs test where no tmpfs can be mounted (not root, CI): a mock stands in
    for the kernel's ENOSPC, which an unprivileged test cannot cause."""
    target = tmp_path / "out"
    target.write_bytes(b"previous output\n")
    src = tmp_path / "weights.pt"
    src.write_bytes(BIG)
    monkeypatch.setattr(*patch, partial_then_enospc(target_arg))
    with pytest.raises(DiskFullError, match=f"{target}: no space left"):
        WRITERS[writer](src, target)
    assert target.read_bytes() == b"previous output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "weights.pt"]


def rename_failing_for(source: Path) -> Callable:
    """os.replace that fails with ENOSPC when moving ``source`` (a stand-in, see the callers)."""
    real = os.replace

    def replace(src, dst):
        if Path(src) == source:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(src, dst)

    return replace


def test_replace_dir_failing_to_move_the_new_folder_in_restores_the_old(tmp_path, monkeypatch):
    """Where folders cannot be exchanged atomically (no RENAME_EXCHANGE: macOS, NFS), ENOSPC on
    the rename that moves the new folder in (a directory that must grow on a full disk): the
    previous folder is back in place and the staging folder is gone. Mocks stand in for both the
    missing exchange and the failing rename, which this machine's filesystems do not produce."""
    target, staging = tmp_path / "labels", tmp_path / ".labels.staging"
    target.mkdir()
    (target / "a.txt").write_text("previous")
    staging.mkdir()
    (staging / "a.txt").write_text("new")
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    monkeypatch.setattr(atomic.os, "replace", rename_failing_for(staging))
    with pytest.raises(DiskFullError, match=f"{target}: no space left"):
        replace_dir(staging, target)
    assert tree_hashes(target) == {"a.txt": hashlib.sha256(b"previous").hexdigest()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels"]


def test_replace_dir_killed_at_the_swap_keeps_the_previous_folder(tmp_path):
    """SIGKILL at the swap: the previous folder is whole (the swap is one atomic exchange, never
    a moment without the folder), and the next replace_dir leaves only the newest folder."""
    target = tmp_path / "labels"
    target.mkdir()
    (target / "a.txt").write_text("previous")
    staging = tmp_path / ".labels.staging"
    staging.mkdir()
    (staging / "a.txt").write_text("killed run")
    log = tmp_path / "swap.log"
    script = "import sys; from pathlib import Path; from acorn.runtime.atomic import replace_dir; replace_dir(Path(sys.argv[1]), Path(sys.argv[2]))"
    proc = start(
        [sys.executable, "-c", script, str(staging), str(target)],
        tmp_path,
        log,
        ACORN_TEST_PAUSE_AT="replace_dir:labels",
    )
    wait_until(paused_at("replace_dir:labels", log), proc, log, timeout=120)
    kill_group(proc)
    assert (target / "a.txt").read_text() == "previous"

    (staging / "a.txt").write_text("next run")
    replace_dir(staging, target)
    assert (target / "a.txt").read_text() == "next run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels", "swap.log"]


def test_replace_dir_after_a_two_rename_swap_was_killed_between_renames(tmp_path, monkeypatch):
    """Where the swap takes two renames, a kill between them leaves the previous folder at
    .<name>.old and none at the target (built here by hand: there is no exchange-less filesystem
    to kill on). The next replace_dir puts it back first: even when that one fails too (mocked,
    as above) the previous folder is at the target, and a good one ends with only the newest."""
    target, staging = tmp_path / "labels", tmp_path / ".labels.staging"
    (tmp_path / ".labels.old").mkdir()
    (tmp_path / ".labels.old/a.txt").write_text("previous")
    staging.mkdir()
    (staging / "a.txt").write_text("failed run")
    with monkeypatch.context() as m:
        m.setattr(atomic, "_exchange", lambda a, b: False)
        m.setattr(atomic.os, "replace", rename_failing_for(staging))
        with pytest.raises(DiskFullError):
            replace_dir(staging, target)
    assert (target / "a.txt").read_text() == "previous"

    staging.mkdir()
    (staging / "a.txt").write_text("next run")
    replace_dir(staging, target)
    assert (target / "a.txt").read_text() == "next run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels"]
