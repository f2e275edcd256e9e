"""params.yaml is checked when it loads: a bad knob fails before a stage runs, naming the key.

The strategy knobs (band, t_low, t_high, uncertainty, shortlist_factor) used to be checked only
when rank built its strategy, minutes into a cycle; they are schema fields now, and what the
schema accepts the strategies accept.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

import acorn.selection.strategies as strategies
from acorn.params import (
    AGGREGATES,
    STRATEGIES,
    UNCERTAINTY_STRATEGIES,
    Params,
    ParamsError,
    load_params,
    parse_params,
)
from acorn.selection.labeling_queue import strategy_for

ROOT = Path(__file__).resolve().parents[1]


def schema_keys(model: type[BaseModel] = Params, prefix: str = "") -> set[str]:
    """Every leaf key of the schema as ``section.key``."""
    keys = set()
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys |= schema_keys(field.annotation, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def yaml_keys(data: dict, prefix: str = "") -> set[str]:
    keys = set()
    for name, value in data.items():
        keys |= yaml_keys(value, f"{prefix}{name}.") if isinstance(value, dict) else {f"{prefix}{name}"}
    return keys


def test_repository_params_load_and_name_every_schema_key():
    """A knob missing from params.yaml is invisible to users and to `dvc exp run -S`."""
    load_params(ROOT / "params.yaml")
    in_file = yaml_keys(yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8")))
    assert in_file == schema_keys()


@pytest.mark.parametrize(
    "text,field",
    [
        ("tile:\n  rowz: 3\n", "tile.rowz"),
        ("rank:\n  budget: many\n", "rank.budget"),
        ("train: 3\n", "train"),
        ("train:\n  batch: 0\n", "train.batch: a batch of 0 images trains nothing"),
        ("train:\n  batch: -2\n", "train.batch"),
        ("tile:\n  rows: 3\n  cols: 2\n  rows: 4\n", r"key 'rows' appears twice \(lines 2 and 4\)"),
        ("rank: {}\nrank:\n  budget: 5\n", r"key 'rank' appears twice"),
        # no paid label is held out any more: an old params.yaml says why its key is refused
        ("train:\n  val_fraction: 0.2\n", "train.val_fraction is gone: every labeled tile trains.*val.data"),
        ("val:\n  data: ''\n", "val.data"),
        ("train:\n  patience: -1\n", "train.patience"),
    ],
)
def test_bad_params_name_the_field(tmp_path, text, field):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError, match=rf"params.yaml: .*{field}"):
        load_params(path)


def test_train_batch_minus_one_asks_for_the_largest_batch_the_gpu_holds(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  batch: -1\n")
    assert load_params(path).train.batch == -1


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(ParamsError, match="nothere.yaml"):
        load_params(tmp_path / "nothere.yaml")


@pytest.mark.parametrize(
    "rank,names,allowed",
    [
        ({"band": "wide"}, ["rank.band"], [r"a number > 0 and < 1"]),
        ({"band": True}, ["rank.band"], [r"a number > 0 and < 1"]),
        ({"band": 1.0}, ["rank.band"], [r"a number > 0 and < 1"]),
        ({"band": 0}, ["rank.band"], [r"a number > 0 and < 1"]),
        ({"t_low": 0.0}, ["rank.t_low"], [r"a number > 0 and <= 1"]),
        ({"t_high": 1.5}, ["rank.t_high"], [r"a number > 0 and <= 1"]),
        ({"t_high": "high"}, ["rank.t_high"], [r"a number > 0 and <= 1"]),
        ({"t_low": 0.5, "t_high": 0.5}, ["rank.t_low", "rank.t_high"], [r"below"]),
        ({"t_low": 0.6, "t_high": 0.4}, ["rank.t_low", "rank.t_high"], [r"below"]),
        ({"shortlist_factor": 0.5}, ["rank.shortlist_factor"], [r"a number >= 1"]),
        ({"shortlist_factor": [10]}, ["rank.shortlist_factor"], [r"a number >= 1"]),
        ({"uncertainty": "random"}, ["rank.uncertainty"], UNCERTAINTY_STRATEGIES),
        ({"uncertainty": 3}, ["rank.uncertainty"], UNCERTAINTY_STRATEGIES),
        ({"uncertainty": "entropy:median"}, ["rank.uncertainty"], [*UNCERTAINTY_STRATEGIES, *AGGREGATES]),
        ({"uncertainty": "entropy:"}, ["rank.uncertainty"], AGGREGATES),
        ({"uncertainty": "least_confidence:sum"}, ["rank.uncertainty"], ["min", "mean", "max"]),
        ({"strategy": "nope"}, ["rank.strategy"], STRATEGIES),
        ({"strategy": "least_confidence", "aggregate": "sum"}, ["rank.aggregate"], ["min", "mean", "max"]),
        (
            {"bandwidth": 0.4},
            ["rank.bandwidth"],
            ["band", "t_low", "t_high", "uncertainty", "shortlist_factor"],
        ),
    ],
)
def test_strategy_params_are_checked_at_load(tmp_path, rank, names, allowed):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"rank": rank}))
    with pytest.raises(ParamsError) as err:
        load_params(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    for name in names:
        assert re.search(rf"(?<![\w.]){re.escape(name)}\b", message), (name, message)
    for text in allowed:
        assert text in message, (text, message)


def test_overrides_are_checked_like_the_file():
    """`acorn simulate -S rank.band=2` must fail as params.yaml would, naming the key."""
    with pytest.raises(ParamsError, match=r"^command line: rank\.band: .*allowed: a number > 0 and < 1"):
        Params().with_overrides({"rank.band": 2})
    with pytest.raises(ParamsError, match=r"unknown parameter rank\.bands"):
        Params().with_overrides({"rank.bands": 0.2})


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_what_loads_builds_a_strategy(strategy):
    """No value the schema accepts is refused later by the strategy: the edges of every range,
    every aggregate and every shortlist strategy."""
    edges = [
        {"band": 1e-9, "t_low": 1e-9, "t_high": 1.0, "threshold": 1.0, "shortlist_factor": 1.0},
        {"band": 1 - 1e-9, "t_low": 0.999, "t_high": 1.0, "threshold": 1e-9, "shortlist_factor": 1e6},
    ]
    for rank in edges:
        for aggregate in ("min", "mean", "max", "sum"):
            for uncertainty in (
                *UNCERTAINTY_STRATEGIES,
                *(f"{u}:{a}" for u in UNCERTAINTY_STRATEGIES for a in AGGREGATES),
            ):
                values = {**rank, "strategy": strategy, "aggregate": aggregate, "uncertainty": uncertainty}
                try:
                    p = parse_params({"rank": values})
                except ParamsError:
                    continue  # refused at load: fine, that is the point
                assert strategy_for(p).name == strategy


def test_the_shortlist_may_carry_its_own_reduction():
    """``rank.uncertainty: least_confidence:min`` keeps ``rank.aggregate`` for the other strategies
    (``dvc exp run -S rank.strategy=entropy`` still means entropy:max)."""
    p = parse_params(
        {"rank": {"strategy": "hybrid", "uncertainty": "least_confidence:min", "aggregate": "max"}}
    )
    shortlist = strategy_for(p).uncertainty
    assert (shortlist.name, shortlist.aggregate) == ("least_confidence", "min")
    assert strategy_for(p, "entropy").aggregate == "max"
    assert strategy_for(p, "hybrid:mean").uncertainty.aggregate == "mean"  # an entry's reduction wins
    assert strategy_for(p.with_overrides({"rank.uncertainty": "margin"})).uncertainty.aggregate == "max"
    # least_confidence:sum is refused only where it would be used
    parse_params({"rank": {"strategy": "entropy", "uncertainty": "least_confidence", "aggregate": "sum"}})
    with pytest.raises(ParamsError, match="rank.aggregate"):
        parse_params({"rank": {"strategy": "hybrid", "uncertainty": "least_confidence", "aggregate": "sum"}})


def _strategy_error_keys() -> set[str]:
    """Every params key acorn.selection.strategies can name in an error: its parameters (through ``_field``),
    the names passed to its checks, and any ``rank.<key>`` written out in a message."""
    source = Path(strategies.__file__).read_text(encoding="utf-8")
    keys = {strategies._field(name) for name in strategies._PARAMS}
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id.startswith("_check_")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            keys.add(strategies._field(node.args[0].value))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            keys |= set(re.findall(r"(?<![\w.])rank\.[a-z_]+", node.value))
    return keys


def test_strategy_errors_name_keys_that_exist():
    """An error telling the user to fix ``rank.<key>`` is useless if params.yaml has no such key."""
    keys = _strategy_error_keys()
    assert {"rank.band", "rank.t_low", "rank.t_high", "rank.uncertainty", "rank.shortlist_factor"} <= keys
    assert keys - schema_keys() == set()
