"""params.yaml -> typed, validated settings.

A misspelt or mistyped knob is an error naming ``section.field`` and the file, not a silent
default: an experiment that ignored its parameter is worse than one that did not run.
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml


class ParamsError(ValueError):
    pass


@dataclass(frozen=True)
class TileParams:
    rows: int = 4
    cols: int = 6
    overlap: float = 0.0
    min_visibility: float = 0.3
    jpeg_quality: int = 90
    workers: int = 2


@dataclass(frozen=True)
class ModelParams:
    base: str = "models/base.pt"
    imgsz: int = 320
    device: str = "cpu"


@dataclass(frozen=True)
class PredictParams:
    conf_floor: float = 0.01
    iou: float = 0.6
    max_det: int = 100
    batch: int = 8


@dataclass(frozen=True)
class RankParams:
    strategy: str = "entropy"
    aggregate: str = "max"
    threshold: float = 0.25
    budget: int = 50
    balance_by: str = "condition"
    seed: int = 0


@dataclass(frozen=True)
class LabelingParams:
    backend: str = "oracle"
    project: str = "acorn"
    document_root: str = ""
    ml_backend_url: str = ""


@dataclass(frozen=True)
class TrainParams:
    epochs: int = 8
    batch: int = 16
    lr0: float = 0.01
    optimizer: str = "SGD"
    freeze: int = 10
    warmup_epochs: float = 0.0
    replay_data: str = "data/source"
    replay_images: int = 100
    val_fraction: float = 0.2
    seed: int = 0
    workers: int = 0


@dataclass(frozen=True)
class TestParams:
    data: str = "data/testset"


@dataclass(frozen=True)
class RegisterParams:
    model_name: str = "acorn-detector"
    metric: str = "map50"


@dataclass(frozen=True)
class DemoParams:
    frames: int = 24
    test_frames: int = 20
    source_images: int = 300
    width: int = 3840
    height: int = 2160
    seed: int = 0
    base_epochs: int = 15
    cycles: int = 3


@dataclass(frozen=True)
class Params:
    classes: list[str] = field(default_factory=lambda: ["squirrel"])
    tile: TileParams = field(default_factory=TileParams)
    model: ModelParams = field(default_factory=ModelParams)
    predict: PredictParams = field(default_factory=PredictParams)
    rank: RankParams = field(default_factory=RankParams)
    labeling: LabelingParams = field(default_factory=LabelingParams)
    train: TrainParams = field(default_factory=TrainParams)
    test: TestParams = field(default_factory=TestParams)
    register: RegisterParams = field(default_factory=RegisterParams)
    demo: DemoParams = field(default_factory=DemoParams)


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ParamsError(f"{path}: not found (run from the repository root)") from exc
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    params = _build(Params, data, str(path), "")
    if not params.classes or not all(isinstance(c, str) and c for c in params.classes):
        raise ParamsError(f"{path}: classes must be a non-empty list of names")
    return params


def _build(cls: type, data: Any, source: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: {prefix.rstrip('.') or 'top level'} must be a mapping")
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ParamsError(
            f"{source}: unknown parameter {prefix}{unknown[0]} (known: {', '.join(sorted(known))})"
        )
    values = {}
    for name, value in data.items():
        hint = hints[name]
        where = f"{prefix}{name}"
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, source, where + ".")
        else:
            values[name] = _check(hint, value, source, where)
    return cls(**values)


def _check(hint: Any, value: Any, source: str, where: str) -> Any:
    if isinstance(hint, types.GenericAlias):  # list[str]
        if not isinstance(value, list):
            raise ParamsError(f"{source}: {where} must be a list, got {value!r}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and value is None:
        return ""
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ParamsError(f"{source}: {where} must be {hint.__name__}, got {value!r}")
    return value
