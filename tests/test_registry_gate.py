"""The champion gate (acorn.model.registry.should_promote) and what the register stage gates on: the
validation score, never the test score, which only reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import stages.register as register_stage
from acorn import paths
from acorn.model.registry import RegistryRecord, should_promote
from acorn.params import Params


@pytest.mark.parametrize(
    ("value", "champion", "promoted"),
    [
        (0.30, None, True),  # the first version is the champion
        (0.31, 0.30, True),
        (0.30, 0.30, False),  # a tie keeps the champion (and the boxes labelers know)
        (0.29, 0.30, False),
        (0.01, -math.inf, True),  # a champion registered without the gate's metric
        (math.nan, 0.30, False),  # a score that could not be computed never promotes
        (math.nan, None, True),  # ... unless there is no champion at all
    ],
)
def test_should_promote(value, champion, promoted):
    assert should_promote(value, champion) is promoted


def test_a_margin_holds_back_gains_within_it():
    assert should_promote(0.33, 0.30, margin=0.02) and not should_promote(0.32, 0.30, margin=0.02)
    assert should_promote(0.0, None, margin=0.5)  # the first version needs no margin


def test_the_register_stage_gates_on_the_validation_score(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths.TRAIN_METRICS.parent.mkdir(parents=True)
    metrics = {"cycle": 1, "map50": 0.9, "val_map50": 0.2, "val_map50_95": 0.1}
    paths.TRAIN_METRICS.write_text(json.dumps(metrics))
    paths.MODEL.parent.mkdir(parents=True)
    paths.MODEL.write_bytes(b"weights")
    asked = []

    def register(
        weights: Path, got: dict, name: str, metric: str, settings: dict, margin: float
    ) -> RegistryRecord:
        asked.append((got, metric, margin))
        return RegistryRecord(name, 2, "v2", [], "run", metric, got[metric], 1, "v1", "", 0.0, "uri")

    monkeypatch.setattr(register_stage, "register", register)
    monkeypatch.setattr(register_stage, "download_weights", lambda *args: None)
    register_stage.register_model(
        Params().with_overrides({"register.metric": "map50_95", "register.margin": 0.01})
    )
    assert asked == [(metrics, "val_map50_95", 0.01)]
    assert json.loads(paths.REGISTRY.read_text())["value"] == 0.1
