"""The predict stage: streamed outputs, a per-frame prediction cache, SIGKILL-resume, GPU.

Each test builds a small repository by hand (noise frames tiled 2 x 3 by the real tile code, a
tiny yolov8n whose class-0 biases make it find boxes, a registry record, a labels manifest)
instead of the demo template: seconds, and no training. The stage runs as ``stages/predict.py``
in a subprocess where the process matters (byte-stable outputs, SIGKILL); elsewhere in-process.
"""

from __future__ import annotations

import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

import acorn  # noqa: F401  (offline settings before ultralytics loads)
from acorn import paths
from acorn.data.tiling import TileGrid, tile_dataset
from acorn.model.detection import Detector, DetectorConfig
from acorn.model.predict_cache import CACHE_ROOT, PART_BATCHES, LocalEngine, model_key, predict_pool
from acorn.params import load_params
from acorn.runtime.errors import InputError, ParamsError
from acorn.selection.candidates import read_carry_over
from tests.conftest import save_detector

REPO = Path(__file__).resolve().parents[1]
STAGE = REPO / "stages" / "predict.py"
OUTPUTS = [paths.PRED_BOXES, paths.PRED_TILES, paths.PRED_LABELED]
OUT = {"boxes": paths.PRED_BOXES, "tiles": paths.PRED_TILES, "labeled": paths.PRED_LABELED}
GRID = TileGrid(2, 3)  # 6 tiles per frame
FRAMES = 12
BATCH = 2  # a part is PART_BATCHES * BATCH = 16 tiles: 3 frames of 6
PARAMS = {"model": {"imgsz": 64, "device": "cpu"}, "predict": {"batch": BATCH, "max_det": 10}}
LABELED = ["f001_r0c0", "f004_r1c2"]


def add_frames(root: Path, first: int, count: int) -> None:
    """Noise frames f<first>..f<first+count-1> (192 x 128, so 64 x 64 tiles), then the tile stage."""
    images = root / "data" / "raw" / "images"
    images.mkdir(parents=True, exist_ok=True)
    for i in range(first, first + count):
        pixels = np.random.default_rng(i).integers(0, 255, (128, 192, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"f{i:03d}.jpg", quality=90)
    tile_dataset(root / "data" / "raw", root / paths.TILES, GRID, ["squirrel"], workers=1)


def build_repo(root: Path, weights: Path) -> Path:
    root.mkdir(parents=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in PARAMS.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    add_frames(root, 0, FRAMES)
    (root / "models").mkdir()
    shutil.copyfile(weights, root / paths.CHAMPION)
    (root / paths.REGISTRY).write_text('{"champion_model_version": "toy-1"}\n')
    (root / paths.LABELS).mkdir(parents=True)
    pd.DataFrame({"tile_id": LABELED, "batch": 1}).to_csv(root / paths.LABELS / "manifest.csv", index=False)
    return root


def run_stage(root: Path, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(STAGE)], cwd=root, env=env, stderr=subprocess.PIPE, text=True, **popen
    )


def finish(proc: subprocess.Popen) -> dict[str, int]:
    """Wait for the stage; return its '<n> tiles predicted, <m> from the cache' counts."""
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    found = re.search(r"(\d+) tiles predicted, (\d+) from the cache", err)
    assert found, err[-3000:]
    return {"predicted": int(found[1]), "cached": int(found[2])}


def outputs(root: Path) -> dict[str, bytes]:
    return {str(p): (root / p).read_bytes() for p in OUTPUTS}


def cache_entries(root: Path) -> dict[str, tuple[int, int]]:
    """Cached frames: name -> (inode, mtime): a file rewritten by a later run changes both."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (root / CACHE_ROOT).glob("*/*.arrow")}


def predict_here(root: Path, monkeypatch, **kwargs):
    """The stage's work in-process (no import cost), returning its stats."""
    monkeypatch.chdir(root)
    p = load_params()
    config = DetectorConfig.from_params(p, paths.CHAMPION)
    calls = []

    def make() -> Detector:
        calls.append(1)
        return Detector(config)

    engine = LocalEngine(make, config.batch)
    stats = predict_pool(
        paths.TILE_MANIFEST, paths.TILES, set(LABELED), engine, config, "toy-1", OUT, **kwargs
    )
    return stats, len(calls)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_detector(tmp_path_factory.mktemp("weights") / "toy.pt", bias=1.0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, weights) -> tuple[Path, dict[str, bytes]]:
    """One uninterrupted stage run on a fresh cache: the outputs every other run must equal."""
    root = build_repo(tmp_path_factory.mktemp("reference") / "repo", weights)
    assert finish(run_stage(root)) == {"predicted": FRAMES * 6, "cached": 0}
    return root, outputs(root)


@pytest.fixture
def repo(tmp_path, weights) -> Path:
    return build_repo(tmp_path / "repo", weights)


def test_outputs_hold_what_rank_reads(reference):
    root, _ = reference
    boxes, pool, labeled = (pd.read_parquet(root / p) for p in OUTPUTS)
    manifest = pd.read_parquet(root / paths.TILE_MANIFEST)
    assert list(pool["tile_id"]) == [t for t in manifest["tile_id"] if t not in LABELED]
    assert list(labeled["tile_id"]) == LABELED
    assert {"frame_id", "image", "width", "height", "n_boxes", "max_confidence", "embedding"} <= set(pool)
    assert (pool["width"] == 64).all() and (pool["height"] == 64).all()
    assert set(boxes["tile_id"]) <= set(pool["tile_id"]) and len(boxes) > 0
    assert boxes.groupby("tile_id").size().reindex(pool["tile_id"], fill_value=0).tolist() == list(
        pool["n_boxes"]
    )
    assert np.stack(pool["embedding"].to_numpy()).shape == (len(pool), 256)
    assert np.stack(labeled["embedding"].to_numpy()).dtype == np.float32
    for table in (boxes, pool, labeled):
        assert set(table["model_version"]) == {"toy-1"}


def test_rerun_is_byte_identical_and_predicts_nothing(reference, tmp_path):
    root, first = reference
    work = tmp_path / "repo"
    shutil.copytree(root, work)
    before = cache_entries(work)
    assert finish(run_stage(work)) == {"predicted": 0, "cached": FRAMES * 6}
    assert outputs(work) == first
    assert cache_entries(work) == before
    shutil.rmtree(work / CACHE_ROOT)  # a cold cache predicts everything again, to the same bytes
    assert finish(run_stage(work)) == {"predicted": FRAMES * 6, "cached": 0}
    assert outputs(work) == first


def test_sigkill_resumes_with_only_the_unfinished_part(reference, repo):
    """The stage blocks reading one tile (a FIFO), so it is killed at a known point, no timing."""
    _, first = reference
    part_frames = PART_BATCHES * BATCH // 6 + 1  # whole frames holding 8 passes of 2 tiles: 3
    blocked = repo / paths.TILES / "images" / "f007_r0c0.jpg"  # frame 7: the third part
    real = blocked.with_suffix(".real")
    blocked.rename(real)
    os.mkfifo(blocked)
    proc = run_stage(repo)
    done = 2 * part_frames  # frames 0-5, cached before the part holding frame 7
    deadline = time.monotonic() + 120
    while len(cache_entries(repo)) < done:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the stage never cached its first parts"
        time.sleep(0.05)
    time.sleep(0.5)  # nothing more can come: the third part waits on the FIFO
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    survived = cache_entries(repo)
    assert len(survived) == done
    assert not (repo / paths.PRED_TILES).exists()
    blocked.unlink()
    real.rename(blocked)

    assert finish(run_stage(repo)) == {"predicted": (FRAMES - done) * 6, "cached": done * 6}
    after = cache_entries(repo)
    assert {k: after[k] for k in survived} == survived  # the finished parts were not redone
    assert outputs(repo) == first
    assert not list((repo / paths.PREDICTIONS).glob(".*"))  # no temporaries left in the DVC output


def test_new_frames_cost_only_their_tiles_and_a_new_model_everything(repo, monkeypatch, tmp_path):
    stats, loads = predict_here(repo, monkeypatch)
    assert (stats.predicted_tiles, stats.cached_tiles, loads) == (FRAMES * 6, 0, 1)
    stats, loads = predict_here(repo, monkeypatch)
    assert (stats.predicted_tiles, stats.cached_tiles, loads) == (0, FRAMES * 6, 0)  # no model load
    add_frames(repo, FRAMES, 2)
    stats, _ = predict_here(repo, monkeypatch)
    assert (stats.predicted_tiles, stats.predicted_frames, stats.cached_tiles) == (12, 2, FRAMES * 6)
    assert stats.unlabeled_tiles == (FRAMES + 2) * 6 - len(LABELED)
    save_detector(repo / paths.CHAMPION, bias=0.5)  # a new champion: every tile again
    stats, _ = predict_here(repo, monkeypatch)
    assert (stats.predicted_tiles, stats.cached_tiles) == ((FRAMES + 2) * 6, 0)


def test_cache_key_is_weights_and_result_changing_params(weights, tmp_path):
    base = DetectorConfig(str(weights), 64, "cpu", 0.01, 0.6, 10, 8)
    key = model_key(base)[0]
    assert model_key(DetectorConfig(str(weights), 64, "cuda:0", 0.01, 0.6, 10, 64))[0] == key
    for changed in (
        DetectorConfig(str(weights), 96, "cpu", 0.01, 0.6, 10, 8),
        DetectorConfig(str(weights), 64, "cpu", 0.02, 0.6, 10, 8),
        DetectorConfig(str(weights), 64, "cpu", 0.01, 0.5, 10, 8),
        DetectorConfig(str(weights), 64, "cpu", 0.01, 0.6, 11, 8),
        DetectorConfig(str(save_detector(tmp_path / "other.pt", bias=0.0)), 64, "cpu", 0.01, 0.6, 10, 8),
    ):
        assert model_key(changed)[0] != key


def test_outputs_are_streamed_in_row_groups_of_whole_frames(reference, repo, monkeypatch):
    """A block (one row group) holds whole frames; the content equals the one-block run's."""
    stats, _ = predict_here(repo, monkeypatch, block_tiles=10)
    assert stats.tiles == FRAMES * 6
    written = pq.ParquetFile(repo / paths.PRED_TILES)
    frames = [
        set(written.read_row_group(i, columns=["frame_id"])["frame_id"].to_pylist())
        for i in range(written.num_row_groups)
    ]
    assert len(frames) >= FRAMES // 2  # batches of 10 manifest rows, cut back to whole frames
    assert sum(map(len, frames)) == len(set().union(*frames)) == FRAMES  # no frame in two groups
    for path in OUTPUTS:
        pd.testing.assert_frame_equal(pd.read_parquet(repo / path), pd.read_parquet(reference[0] / path))


def test_duplicated_frames_share_one_prediction(repo, monkeypatch):
    images = repo / "data" / "raw" / "images"
    shutil.copyfile(images / "f000.jpg", images / "g000.jpg")  # same content, another frame id
    tile_dataset(repo / "data" / "raw", repo / paths.TILES, GRID, ["squirrel"], workers=1)
    stats, _ = predict_here(repo, monkeypatch)
    assert (stats.tiles, stats.predicted_tiles) == ((FRAMES + 1) * 6, FRAMES * 6)
    pool = pd.read_parquet(repo / paths.PRED_TILES).set_index("tile_id")
    for tile in ("r0c1", "r1c2"):
        assert np.array_equal(pool.loc[f"f000_{tile}", "embedding"], pool.loc[f"g000_{tile}", "embedding"])


def test_mistakes_name_the_file(repo, monkeypatch):
    monkeypatch.chdir(repo)
    frames = pd.read_parquet(paths.TILE_MANIFEST)
    frames.iloc[[0, 6, 1]].to_parquet(paths.TILE_MANIFEST, index=False)  # f000, f001, f000 again
    with pytest.raises(InputError, match=r"manifest.parquet: the tiles of frame 'f000' are not together"):
        predict_here(repo, monkeypatch)
    frames.drop(columns=["frame_sha1"]).to_parquet(paths.TILE_MANIFEST, index=False)
    with pytest.raises(InputError, match=r"manifest.parquet: no column 'frame_sha1'"):
        predict_here(repo, monkeypatch)
    paths.REGISTRY.unlink()
    proc = run_stage(repo)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "models/registry.json: not found" in err


def test_old_model_caches_are_pruned(repo, monkeypatch, tmp_path):
    for bias in (0.0, 0.2, 0.4, 0.6):
        save_detector(repo / paths.CHAMPION, bias=bias)
        predict_here(repo, monkeypatch)
    kept = list((repo / CACHE_ROOT).iterdir())
    assert len(kept) == 3


@pytest.mark.skipif(
    not __import__("torch").cuda.is_available(),
    reason="CPU-only machine: no CUDA GPU, so predict on cuda is not exercised here",
)
def test_predict_runs_on_the_gpu_with_a_gpu_sized_batch(repo, monkeypatch, reference):
    """model.device auto resolves to cuda:0; predict.batch 64 runs whole frames per pass."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["model"]["device"] = "auto"
    params["predict"]["batch"] = 64
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(repo)
    config = DetectorConfig.from_params(load_params(), paths.CHAMPION)
    assert config.device == "cuda:0"
    detectors = []

    def make() -> Detector:
        detectors.append(Detector(config))
        return detectors[0]

    engine = LocalEngine(make, config.batch)
    stats = predict_pool(paths.TILE_MANIFEST, paths.TILES, set(LABELED), engine, config, "toy-1", OUT)
    assert stats.predicted_tiles == FRAMES * 6
    assert str(detectors[0].model.predictor.device).startswith("cuda")
    gpu = pd.read_parquet(paths.PRED_TILES)
    cpu = pd.read_parquet(reference[0] / paths.PRED_TILES)
    assert list(gpu["tile_id"]) == list(cpu["tile_id"])
    np.testing.assert_allclose(
        np.stack(gpu["embedding"].to_numpy()), np.stack(cpu["embedding"].to_numpy()), rtol=0.02, atol=0.02
    )


def test_a_candidate_subset_is_predicted_alone_and_merged_into_the_cache(reference, repo, monkeypatch):
    """Frames cached in part (some tiles) gain tiles later; every run's rows equal the full run's."""
    full = pd.read_parquet(reference[0] / paths.PRED_TILES).set_index("tile_id")
    manifest = pd.read_parquet(repo / paths.TILE_MANIFEST)
    unlabeled = [t for t in manifest["tile_id"] if t not in LABELED]
    first, second = set(unlabeled[::7]), set(unlabeled[::5])  # overlapping, spread over frames
    stats, _ = predict_here(repo, monkeypatch, candidates=first)
    assert (stats.predicted_tiles, stats.cached_tiles) == (len(first) + len(LABELED), 0)
    pool = pd.read_parquet(paths.PRED_TILES)
    assert list(pool["tile_id"]) == [t for t in unlabeled if t in first]  # manifest order
    assert list(pd.read_parquet(paths.PRED_LABELED)["tile_id"]) == LABELED  # every labeled tile
    for column in ("n_boxes", "max_confidence"):
        assert pool.set_index("tile_id")[column].equals(full.loc[pool["tile_id"], column])
    assert np.array_equal(np.stack(pool["embedding"]), np.stack(full.loc[pool["tile_id"], "embedding"]))
    assert set(pd.read_parquet(paths.PRED_BOXES)["tile_id"]) <= first

    stats, _ = predict_here(repo, monkeypatch, candidates=second)
    assert stats.predicted_tiles == len(second - first)  # the overlap and the labeled are free
    assert stats.cached_tiles == len(second & first) + len(LABELED)
    stats, _ = predict_here(repo, monkeypatch)  # the whole pool: only what no subset covered
    assert stats.predicted_tiles == len(unlabeled) - len(first | second)
    assert outputs(repo) == reference[1]  # merged entries give the full run's bytes


def _stage(repo: Path, monkeypatch, caplog, **predict: object) -> str:
    """stages/predict.py's predict() in-process with ``predict.*`` overrides; its log."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["predict"].update(predict)
    params["rank"]["budget"] = 5
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(repo)
    caplog.clear()
    with caplog.at_level("INFO", logger="acorn"):
        runpy.run_path(str(STAGE))["predict"](load_params())
    return caplog.text


def test_stage_with_candidates_carries_the_backlog_and_the_undecided_over(repo, monkeypatch, caplog):
    log = _stage(repo, monkeypatch, caplog, candidates=12, carry_over=0.5)
    assert (
        "cycle 2: 12 candidates of 70 unlabeled tiles (0 waiting to be labeled, 0 carried over, 12 sampled with seed 2)"
        in log
    )
    first = pd.read_parquet(paths.PRED_TILES)
    assert len(first) == 12 and first["frame_id"].nunique() == 12  # one tile from each frame
    waiting, top = read_carry_over(CACHE_ROOT, 3)
    assert waiting == [] and len(top) == 6 and set(top) <= set(first["tile_id"])

    # rank queued a batch of 5, then 2 of them were labeled as batch 2: cycle 3
    queued = first["tile_id"].tolist()[:5]
    pd.DataFrame({"tile_id": queued}).to_csv(paths.QUEUE, index=False)
    labels = pd.DataFrame({"tile_id": LABELED + queued[:2], "batch": [1, 1, 2, 2]})
    labels.to_csv(paths.LABELS / "manifest.csv", index=False)
    log = _stage(repo, monkeypatch, caplog, candidates=12, carry_over=0.5)
    carried = [t for t in top if t not in queued]
    assert (
        f"cycle 3: 12 candidates of 68 unlabeled tiles (3 waiting to be labeled, {len(carried)} carried over"
        in log
    )
    second = pd.read_parquet(paths.PRED_TILES)["tile_id"].tolist()
    assert set(queued[2:]) | set(carried) <= set(second)
    assert not set(second) & set(queued[:2])  # labeled since: no longer candidates
    assert read_carry_over(CACHE_ROOT, 4)[0] == queued[2:]  # the backlog goes on to the next cycle
    predicted = int(re.search(r"(\d+) tiles predicted", log)[1])
    assert predicted == len(set(second) - set(first["tile_id"]))  # what cycle 2 predicted is free

    with pytest.raises(ParamsError, match=r"predict.candidates \(3\) is below rank.budget \(5\)"):
        _stage(repo, monkeypatch, caplog, candidates=3)


def test_sparse_candidates_fill_whole_parts_across_blocks(repo, monkeypatch):
    """One frame per block and one candidate per frame: still one forward part, not twelve of
    one or two tiles each padded to a full batch."""
    sizes = []
    real = Detector.predict

    def spy(self, images, tile_ids, fixed_batch=False):
        sizes.append(len(images))
        return real(self, images, tile_ids, fixed_batch=fixed_batch)

    monkeypatch.setattr(Detector, "predict", spy)
    candidates = {f"f{i:03d}_r0c1" for i in range(FRAMES)}
    stats, _ = predict_here(repo, monkeypatch, candidates=candidates, block_tiles=6)
    assert stats.predicted_tiles == FRAMES + len(LABELED)
    assert sizes == [FRAMES + len(LABELED)]  # below PART_BATCHES * BATCH = 16: a single part
