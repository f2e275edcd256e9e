"""``model.threads`` reaches torch where acorn trains, validates and predicts on the CPU.

ultralytics sets torch's thread count itself whenever it picks a device (``select_device``:
``min(8, cpu_count - 1)``, one thread on a 2-core machine). Here that count is made 3, a value
no test asks for, so a test passes only if acorn's own setting was applied after ultralytics'.
The count is read while the work runs (ultralytics' batch callbacks, a forward pre-hook).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from acorn.model.detection import Detector, DetectorConfig, cpu_threads, detector_settings, use_cpu_threads
from acorn.params import Params, load_params
from acorn.runtime.errors import ParamsError
from tests.conftest import save_detector

ULTRALYTICS_THREADS = 3  # what select_device sets in these tests: neither 1 nor 2


@pytest.fixture(autouse=True)
def ultralytics_threads(monkeypatch):
    """ultralytics' own thread count made 3; torch's count restored after the test (it is global)."""
    import ultralytics.utils.torch_utils as torch_utils

    monkeypatch.setattr(torch_utils, "NUM_THREADS", ULTRALYTICS_THREADS)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def batch_threads(monkeypatch) -> dict[str, list[int]]:
    """torch's thread count at every training and validation batch, by callback name."""
    from ultralytics.utils.callbacks import base

    seen: dict[str, list[int]] = {}
    for event in ("on_train_batch_start", "on_val_batch_start"):
        hook = lambda _owner, event=event: seen.setdefault(event, []).append(torch.get_num_threads())  # noqa: E731
        monkeypatch.setitem(base.default_callbacks, event, [*base.default_callbacks[event], hook])
    return seen


def tiny_dataset(root: Path) -> Path:
    """Four 64 x 64 noise images with one box each, as train and val: data.yaml."""
    from acorn.model import training

    pairs = []
    for i in range(4):
        image, label = root / "src" / f"i{i}.jpg", root / "src" / f"i{i}.txt"
        image.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(image)
        label.write_text("0 0.5 0.5 0.4 0.4\n")
        pairs.append((image, label))
    return training.write_dataset(root / "data", ["squirrel"], pairs, pairs)


def params(threads: int) -> Params:
    return Params().with_overrides(
        {
            "model.threads": threads,
            "model.imgsz": 64,
            "train.epochs": 1,
            "train.batch": 2,
            "train.freeze": 0,
        }
    )


@pytest.mark.slow  # trains: one epoch of four 64 x 64 images
@pytest.mark.parametrize("threads", [1, 2])
def test_training_and_its_validation_run_on_model_threads(threads, tmp_path, batch_threads):
    from acorn.model import training

    data = tiny_dataset(tmp_path)
    config = training.TrainConfig.from_params(params(threads))
    assert config.threads == threads and config.device == "cpu"
    training.train("yolov8n.yaml", data, config, tmp_path / "work")
    assert set(batch_threads["on_train_batch_start"]) == {threads}
    assert set(batch_threads["on_val_batch_start"]) == {threads}


@pytest.mark.parametrize("threads", [1, 2])
def test_evaluate_runs_on_model_threads(threads, tmp_path, batch_threads):
    from acorn.model import training

    data = tiny_dataset(tmp_path)
    weights = save_detector(tmp_path / "toy.pt", bias=1.0)
    training.evaluate(weights, data, 64, tmp_path / "work", device="cpu", threads=threads)
    assert set(batch_threads["on_val_batch_start"]) == {threads}


@pytest.mark.parametrize("threads", [1, 2])
def test_detector_predicts_on_model_threads_even_after_ultralytics_reset_them(threads, tmp_path):
    """Training (or another detector) in the same process resets the count: each pass sets it again."""
    from ultralytics.utils.torch_utils import select_device

    config = DetectorConfig.from_params(params(threads), save_detector(tmp_path / "toy.pt", bias=1.0))
    assert config.threads == threads
    detector = Detector(config)
    seen: list[int] = []
    detector.model.predictor.model.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    images = [Image.new("RGB", (64, 64), (i * 40, 90, 10)) for i in range(3)]
    detector.predict(images, ["a", "b", "c"])
    select_device("cpu", verbose=False)
    assert torch.get_num_threads() == ULTRALYTICS_THREADS
    detector.predict(images, ["a", "b", "c"], fixed_batch=True)
    assert seen and set(seen) == {threads}


@pytest.mark.parametrize(("usable", "threads"), [(1, 1), (2, 1), (4, 3), (64, 8)])
def test_zero_threads_leaves_one_usable_core_to_the_machine(usable, threads, monkeypatch):
    """Not os.cpu_count(): taskset and container cpusets narrow the affinity, not the host's count."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(100, 100 + usable)))
    assert cpu_threads(0) == threads
    assert cpu_threads(3) == 3


def test_a_gpu_device_leaves_the_thread_count_alone():
    torch.set_num_threads(ULTRALYTICS_THREADS)
    use_cpu_threads(1, torch.device("cuda:0"))
    assert torch.get_num_threads() == ULTRALYTICS_THREADS
    use_cpu_threads(1, torch.device("cpu"))
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("value", [-1, 1.5, "2", True, None])
def test_a_bad_thread_count_is_refused_naming_model_threads(value, tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"model": {"threads": value}}))
    with pytest.raises(ParamsError, match=r"model\.threads"):
        load_params(path)


def test_registered_models_and_ray_actors_get_their_thread_count(tmp_path):
    """The registered model's settings carry model.threads to ``acorn serve``; one registered before
    it existed runs on ultralytics' count; a Ray CPU actor runs on the one CPU it reserved."""
    from acorn.model.ray_engine import ActorPlan, actor_config

    weights = str(save_detector(tmp_path / "toy.pt", bias=1.0))
    settings = detector_settings(params(2))
    assert DetectorConfig(weights=weights, **settings).threads == 2
    old = {k: v for k, v in settings.items() if k != "threads"}
    assert DetectorConfig(weights=weights, **old).threads == 0
    config = replace(DetectorConfig(weights=weights, **settings), threads=0)
    assert actor_config(config, ActorPlan(2, 1.0, 0.0, "cpu")) == replace(config, threads=1)
    gpu = actor_config(config, ActorPlan(1, 1.0, 1.0, "cuda:0"))
    assert gpu.device == "cuda:0"
