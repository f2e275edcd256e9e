"""``predict.engine: ray``: the predict stage's detector run by Ray Data over a cluster.

Why: a full sweep of 300,000 tiles takes hours on one CPU machine; a cluster's GPUs take it in
minutes. The work is the local engine's, moved: each Ray actor holds one
``acorn.model.detection.Detector`` and runs ``Detector.predict(fixed_batch=True)`` on batches of tiles
through ``Dataset.map_batches`` with an actor pool. With fixed batches a tile's result does not
depend on the tiles batched with it, so results equal the local engine's on the same device and
go into the same prediction cache (acorn.model.predict_cache decides what is missing and caches
what comes back, whichever engine predicted it).

Where it runs: the cluster ``RAY_ADDRESS`` names (``ray start --head`` on the head node, then
``RAY_ADDRESS=<head>:6379 dvc repro predict``); without it, a Ray instance started on this
machine for the run (ports on 127.0.0.1 only, no dashboard) and shut down after. A Ray instance this process
has already started is used as it is (tests). On a cluster the workers get acorn's code from the
driver (``runtime_env`` ``py_modules``), the champion's weights through the object store, and
read the tiles by absolute path: the repository's ``data/tiles`` must be visible at the same
path on every worker (a shared filesystem).

Resources: actors ask for one GPU each when ``model.device`` is ``cuda``/``cuda:N`` or ``auto``
and the cluster has GPUs (each actor then predicts on its own GPU), else one CPU each; the pool
grows to ``predict.ray_actors`` actors (0: one per GPU, or one per CPU; more actors than GPUs
share the GPUs). A CPU actor runs torch on as many threads as CPUs it reserved (one), not
``model.threads``: the pool already has an actor per CPU, and more threads per actor would
oversubscribe the node (ultralytics alone would give each actor ``cores - 1`` threads).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

import pandas as pd
import pyarrow as pa

import acorn
from acorn.model.detection import Detector, DetectorConfig, load_images
from acorn.model.predict_cache import PART_BATCHES, ROW_KEY, tile_rows
from acorn.runtime.errors import ParamsError

BLOCKS_PER_ACTOR = 4  # a fast actor takes more blocks than a slow one; the last block ends sooner

log = logging.getLogger("acorn")


@dataclass(frozen=True)
class ActorPlan:
    """How many detector actors, what each asks Ray for, and the device it predicts on."""

    actors: int
    num_cpus: float
    num_gpus: float
    device: str


def plan_actors(device: str, resources: dict[str, float], actors: int = 0) -> ActorPlan:
    """``model.device`` and the cluster's resources (``ray.cluster_resources()``) -> the actor pool.

    Resolved against the cluster, not this machine: a laptop without a GPU may drive a GPU
    cluster, so ``auto`` means "GPUs if the cluster has them". A GPU actor's device is
    ``cuda:0``: Ray gives each actor its GPU through ``CUDA_VISIBLE_DEVICES``. ``actors`` above
    the GPU count puts several actors on each GPU (a fraction of a GPU each): an actor decodes and
    post-processes on its one CPU, which on a fast GPU is the bottleneck (benchmarks/ray_predict.py).
    """
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    wants_gpu = device.startswith("cuda") or device[:1].isdigit()
    if wants_gpu and gpus < 1:
        raise ParamsError(
            f"params.yaml: model.device is {device!r} but the Ray cluster has no GPU "
            f"({os.environ.get('RAY_ADDRESS') or 'a local Ray instance'}); use auto or cpu"
        )
    if wants_gpu or (device == "auto" and gpus > 0):
        n = actors or gpus  # more actors than GPUs share them: decoding is CPU work, per actor
        return ActorPlan(n, 1.0, min(1.0, round(gpus / n, 4)), "cuda:0")
    return ActorPlan(actors or max(cpus, 1), 1.0, 0.0, "cpu" if device == "auto" else device)


def actor_config(config: DetectorConfig, plan: ActorPlan) -> DetectorConfig:
    """Each actor's detector: the plan's device and, on a CPU, one thread per CPU it reserved."""
    return replace(config, device=plan.device, threads=max(1, int(plan.num_cpus)))


def block_size(tiles: int, batch: int, actors: int) -> int:
    """Tiles per Ray block (one actor call): whole forward passes, at most ``PART_BATCHES`` of them,
    and small enough that every actor gets ``BLOCKS_PER_ACTOR`` blocks: with fixed large blocks a
    6,000-tile sweep was 6 blocks of 1,024, so 8 actors on an H200 ran no faster than the local engine."""
    per_actor = -(-tiles // (actors * BLOCKS_PER_ACTOR))
    passes = min(PART_BATCHES, max(1, -(-per_actor // batch)))
    return passes * batch


class TileDetector:
    """A Ray actor: one Detector, loaded once, predicting one batch of tiles per call."""

    def __init__(self, config: DetectorConfig, weights: bytes) -> None:
        folder = Path(tempfile.mkdtemp(prefix="acorn-weights-"))
        try:  # the weights came through the object store: workers need no copy of models/
            path = folder / Path(config.weights).name
            path.write_bytes(weights)
            self.detector = Detector(replace(config, weights=str(path)))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def __call__(self, batch: pd.DataFrame) -> pa.Table:
        images = load_images(list(batch["path"]))
        return tile_rows(batch, self.detector.predict(images, list(batch["tile_id"]), fixed_batch=True))


class RayEngine:
    """An ``acorn.model.predict_cache.Engine`` over Ray Data; a context manager that connects to (or
    starts) Ray when there is work and shuts down on exit only what it started."""

    def __init__(self, config: DetectorConfig, device: str, actors: int = 0) -> None:
        self.config = config
        self.device = device  # model.device as written: resolved against the cluster
        self.actors = actors
        self._started = False

    def __enter__(self) -> RayEngine:
        return self

    def _connect(self) -> None:
        """Ray is joined (or started) only once there is something to predict: a cycle served
        from the cache costs no Ray start."""
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline clusters: no usage report
        cluster = bool(os.environ.get("RAY_ADDRESS"))
        if not cluster:
            # a single-node instance: Ray then binds every port to 127.0.0.1 (this variable, read
            # when ray is imported, is how Ray keeps laptops off the network), not the LAN address
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        import ray

        if ray.is_initialized():
            return
        on_sigterm = signal.getsignal(signal.SIGTERM)  # ray.init replaces it and never puts it back
        if cluster:
            ray.init(runtime_env={"py_modules": [str(Path(acorn.__file__).parent)]}, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False)
        if on_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_sigterm)
        self._started = True

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def predict(self, todo: Iterator[pd.DataFrame]) -> Iterator[pa.Table]:
        """All missing tiles in one dataset (one actor pool for the whole sweep), results streamed
        back as batches finish. Memory on the driver: the list of missing tiles, not images."""
        parts = list(todo)
        if not parts:
            return
        self._connect()
        import ray
        import ray.data

        rows = pd.concat(parts, ignore_index=True).drop_duplicates(ROW_KEY, ignore_index=True)
        rows["path"] = [os.path.abspath(p) for p in rows["path"]]
        plan = plan_actors(self.device, ray.cluster_resources(), self.actors)
        batch = block_size(len(rows), self.config.batch, plan.actors)
        log.info(
            "ray: %d tiles in batches of %d, up to %d actors (%g CPU, %g GPU each) on %s",
            len(rows),
            batch,
            plan.actors,
            plan.num_cpus,
            plan.num_gpus,
            plan.device,
        )
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the predict stage's own bar counts the tiles
        # one block per batch, so that every actor gets work (split here: ray 2.60's own split,
        # override_num_blocks, fails on pandas 3 DataFrames)
        dataset = ray.data.from_pandas([rows.iloc[i : i + batch] for i in range(0, len(rows), batch)])
        results = dataset.map_batches(
            TileDetector,
            fn_constructor_kwargs={
                "config": actor_config(self.config, plan),
                "weights": Path(self.config.weights).read_bytes(),
            },
            batch_size=batch,
            batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=plan.actors),
            num_cpus=plan.num_cpus,
            num_gpus=plan.num_gpus,
        )
        yield from results.iter_batches(batch_format="pyarrow", batch_size=None)
