"""``predict.engine: ray`` (acorn.model.ray_engine) against a real Ray instance started by the test.

The instance is local (127.0.0.1, 2 CPUs, no dashboard, a small object store) and is reached the
way a cluster is: the predict stage runs as a subprocess with ``RAY_ADDRESS`` set to it, a second
driver, so the test also covers connecting to an existing cluster. Its outputs must equal the
local engine's byte for byte on the same tiles. The repository is test_predict's small one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml
from test_predict import OUTPUTS, STAGE, build_repo, finish, outputs, predict_here

from acorn.model.predict_cache import CACHE_ROOT
from acorn.model.ray_engine import ActorPlan, block_size, plan_actors
from acorn.runtime.errors import ParamsError
from tests.conftest import save_detector

# a single-node Ray on 127.0.0.1 (not the machine's LAN address) that reports no usage
LOCAL_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def ray_address():
    """A Ray instance for this module only; shut down after, whatever the tests did."""
    saved = {k: os.environ.get(k) for k in LOCAL_ONLY}
    os.environ.update(LOCAL_ONLY)  # read when ray is imported; the stage's driver inherits them
    import ray

    context = ray.init(
        num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False
    )
    try:
        address = context.address_info["gcs_address"]
        assert address.startswith("127.0.0.1:"), address
        yield address
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value


@pytest.mark.slow  # ~30-45 s per Ray run on a loaded 2-core machine: Ray start, actors loading torch
def test_ray_engine_equals_the_local_engine_byte_for_byte(tmp_path, monkeypatch, ray_address):
    """Through the cluster at RAY_ADDRESS, then through a Ray instance the stage starts itself."""
    repo = build_repo(tmp_path / "repo", save_detector(tmp_path / "toy.pt", bias=1.0))
    stats, _ = predict_here(repo, monkeypatch)  # the local engine, in this process
    local = outputs(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["predict"].update({"engine": "ray", "ray_actors": 2})
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONUNBUFFERED": "1"}
    for address in (ray_address, None):
        for path in OUTPUTS:
            (repo / path).unlink()
        shutil.rmtree(repo / CACHE_ROOT)
        run_env = env | ({"RAY_ADDRESS": address} if address else {})
        proc = subprocess.Popen(
            [sys.executable, str(STAGE)], cwd=repo, env=run_env, stderr=subprocess.PIPE, text=True
        )
        assert finish(proc) == {"predicted": stats.predicted_tiles, "cached": 0}
        assert outputs(repo) == local


@pytest.mark.slow  # joins the module's Ray instance: a few seconds
def test_joining_ray_keeps_acorns_sigterm_handler(ray_address):
    """ray.init sets its own SIGTERM handler (exit status 15, no cleanup log) and never restores
    the previous one: the engine puts acorn's back, so a stopped predict still unwinds as 143."""
    script = (
        "import signal\n"
        "from acorn.runtime.entrypoint import unwind_on_sigterm\n"
        "from acorn.model.ray_engine import RayEngine\n"
        "unwind_on_sigterm()\n"
        "with RayEngine(None, 'cpu') as engine:\n"
        "    engine._connect()\n"
        "    print(signal.getsignal(signal.SIGTERM).__qualname__)\n"
    )
    env = os.environ | {"RAY_ADDRESS": ray_address}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "unwind_on_sigterm.<locals>.unwind"


def test_the_stage_imports_ray_only_for_the_ray_engine():
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]); import acorn.model.ray_engine; "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code, str(STAGE)], check=True, timeout=120)


def test_actors_use_the_clusters_gpus_when_the_device_allows():
    gpus = {"CPU": 32.0, "GPU": 4.0}
    cpus = {"CPU": 8.0}
    assert plan_actors("auto", gpus) == ActorPlan(4, 1.0, 1.0, "cuda:0")
    assert plan_actors("cuda:1", gpus, actors=2) == ActorPlan(2, 1.0, 1.0, "cuda:0")
    assert plan_actors("0", gpus) == ActorPlan(4, 1.0, 1.0, "cuda:0")
    assert plan_actors("auto", gpus, actors=16) == ActorPlan(16, 1.0, 0.25, "cuda:0")  # 4 per GPU
    assert plan_actors("cpu", gpus) == ActorPlan(32, 1.0, 0.0, "cpu")
    assert plan_actors("auto", cpus) == ActorPlan(8, 1.0, 0.0, "cpu")
    with pytest.raises(ParamsError, match="model.device is 'cuda' but the Ray cluster has no GPU"):
        plan_actors("cuda", cpus)


@pytest.mark.skipif(
    not __import__("torch").cuda.is_available(),
    reason="CPU-only machine: no CUDA GPU, so Ray's GPU actors are not exercised here",
)
def test_ray_actors_predict_on_the_gpu_as_the_local_engine_does(tmp_path, monkeypatch):
    """model.device auto on a machine with a GPU: the stage's own Ray instance plans GPU actors,
    and their tables equal the local engine's on the same GPU (numbers to float noise)."""
    import numpy as np
    import pandas as pd

    repo = build_repo(tmp_path / "repo", save_detector(tmp_path / "toy.pt", bias=1.0))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["model"]["device"] = "auto"
    params["predict"]["batch"] = 16
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stats, _ = predict_here(repo, monkeypatch)
    local = {p: pd.read_parquet(repo / p) for p in OUTPUTS}
    params["predict"].update({"engine": "ray", "ray_actors": 2})
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for path in OUTPUTS:
        (repo / path).unlink()
    shutil.rmtree(repo / CACHE_ROOT)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(STAGE)], cwd=repo, env=env, stderr=subprocess.PIPE, text=True
    )
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "on cuda:0" in err and "0.5 GPU each" in err, err[-3000:]  # two actors share the GPU
    assert f"{stats.predicted_tiles} tiles predicted, 0 from the cache" in err
    for path, table in local.items():
        ray_table = pd.read_parquet(repo / path)
        assert list(ray_table.columns) == list(table.columns)
        assert len(ray_table) == len(table), path
        for column in table.columns:
            if column == "embedding":
                np.testing.assert_allclose(
                    np.stack(ray_table[column].to_numpy()), np.stack(table[column].to_numpy()), atol=1e-3
                )
            elif pd.api.types.is_float_dtype(table[column]):
                np.testing.assert_allclose(ray_table[column], table[column], atol=1e-3)
            else:
                assert ray_table[column].tolist() == table[column].tolist(), (path, column)


def test_blocks_give_every_actor_work_in_whole_forward_passes():
    assert block_size(6000, 128, 8) == 256  # 6000 / (8 x 4) = 188 tiles -> two passes of 128
    assert block_size(6000, 128, 1) == 1024  # capped at PART_BATCHES passes (a kill loses one block)
    assert block_size(300_000, 8, 2) == 64
    assert block_size(5, 8, 4) == 8  # never less than one pass
