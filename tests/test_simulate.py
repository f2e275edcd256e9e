"""acorn simulate: the pure curve logic without training, then one tiny real simulation that resumes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from acorn.atomic import write_csv, write_json
from acorn.simulate import run as sim
from acorn.strategies import StrategyError
from acorn.training import TrainConfig
from tests.conftest import SHARED_DATA

RACCOON = SHARED_DATA / "raccoon"


def curves_frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=sim.CURVE_COLUMNS)


def selections_frame(batches: dict[tuple[str, int, int], list[str]]) -> pd.DataFrame:
    rows = [(s, seed, c, r, t) for (s, seed, c), ids in batches.items() for r, t in enumerate(ids, start=1)]
    return pd.DataFrame(rows, columns=sim.SELECTION_COLUMNS)


# ---------------------------------------------------------------------------------------------
# Area under the curve, labels to target


def test_area_under_curve_is_the_trapezoid_divided_by_the_range():
    # (0 + 0.5) / 2 * 10 + 0.5 * 10 = 7.5 over a range of 20
    assert sim.area_under_curve([0, 10, 20], [0.0, 0.5, 0.5]) == pytest.approx(0.375)
    assert sim.area_under_curve([20, 0, 10], [0.5, 0.0, 0.5]) == pytest.approx(0.375)  # order-free
    # the same shape over another range gives the same number: comparable across budgets
    assert sim.area_under_curve([0, 100, 200], [0.0, 0.5, 0.5]) == pytest.approx(0.375)
    assert sim.area_under_curve([50], [0.3]) == pytest.approx(0.3)


def test_area_under_curve_rejects_empty_or_mismatched_input():
    with pytest.raises(ValueError):
        sim.area_under_curve([], [])
    with pytest.raises(ValueError):
        sim.area_under_curve([0, 10], [0.1])


def test_labels_to_reach_is_the_first_batch_boundary_at_or_above_target():
    assert sim.labels_to_reach([0, 10, 20, 30], [0.1, 0.4, 0.6, 0.5], 0.5) == 20
    assert sim.labels_to_reach([30, 20, 10], [0.9, 0.5, 0.1], 0.5) == 20  # unsorted input
    assert sim.labels_to_reach([0, 10], [0.1, 0.5], 0.5) == 10  # reaching exactly counts
    assert sim.labels_to_reach([0, 10], [0.1, 0.49], 0.5) is None


# ---------------------------------------------------------------------------------------------
# Summaries and tables

CURVES = curves_frame(
    [
        ("random", 0, 0, 0, 0.1, 0.05),
        ("random", 0, 1, 10, 0.3, 0.1),
        ("random", 1, 0, 0, 0.1, 0.05),
        ("random", 1, 1, 10, 0.5, 0.2),
        ("entropy", 0, 0, 0, 0.1, 0.05),
        ("entropy", 0, 1, 10, 0.7, 0.3),
        ("entropy", 1, 0, 0, 0.1, 0.05),
        ("entropy", 1, 1, 10, 0.9, 0.4),
    ]
)


def test_summarize_curves_gives_mean_and_spread_over_seeds_in_input_order():
    summary = sim.summarize_curves(CURVES)
    assert summary["strategy"].tolist() == ["random", "random", "entropy", "entropy"]
    row = summary[(summary["strategy"] == "random") & (summary["cycle"] == 1)].iloc[0]
    assert row["labeled_tiles"] == 10 and row["seeds"] == 2
    assert row["map50_mean"] == pytest.approx(0.4)
    assert row["map50_std"] == pytest.approx(round(math.sqrt(0.02), 4))
    assert (row["map50_min"], row["map50_max"]) == pytest.approx((0.3, 0.5))
    assert row["map50_95_mean"] == pytest.approx(0.15)


def test_strategy_table_aggregates_auc_and_labels_to_target_per_strategy():
    table = sim.strategy_table(CURVES, target_map50=0.6).set_index("strategy")
    # random: AUC (0.1 + 0.3) / 2 = 0.2 and (0.1 + 0.5) / 2 = 0.3; never reaches 0.6
    assert table.loc["random", "auc_mean"] == pytest.approx(0.25)
    assert (table.loc["random", "auc_min"], table.loc["random", "auc_max"]) == pytest.approx((0.2, 0.3))
    assert table.loc["random", "reached"] == 0 and np.isnan(table.loc["random", "labels_mean"])
    assert table.loc["entropy", "auc_mean"] == pytest.approx(0.45)
    assert table.loc["entropy", "reached"] == 2 and table.loc["entropy", "labels_max"] == 10

    partial = sim.strategy_table(CURVES, target_map50=0.8).set_index("strategy")
    assert partial.loc["entropy", "reached"] == 1  # only seed 1 got to 0.9
    assert sim.strategy_table(CURVES, target_map50=None)["reached"].tolist() == [0, 0]


def test_format_strategy_table_says_not_reached_and_partial_seeds():
    shown = sim.format_strategy_table(sim.strategy_table(CURVES, 0.8), has_target=True)
    labels = dict(zip(shown["strategy"], shown.iloc[:, 3], strict=True))
    assert labels["random"] == "not reached"
    assert labels["entropy"] == "10 [10, 10] in 1/2 seeds"
    full = sim.format_strategy_table(sim.strategy_table(CURVES, 0.6), has_target=True)
    assert full.iloc[1, 3] == "10 [10, 10]"
    assert full.iloc[0, 2] == "0.250 ± 0.071 [0.200, 0.300]"
    assert sim.format_strategy_table(sim.strategy_table(CURVES, None), False).iloc[0, 3].startswith("n/a")


def test_markdown_table():
    text = sim.markdown_table(pd.DataFrame({"a": ["x"], "b": [0.12345], "c": [float("nan")]}))
    assert text == "| a | b | c |\n|---|---|---|\n| x | 0.123 |  |\n"


# ---------------------------------------------------------------------------------------------
# Replaying selections (resume)


def test_replay_rebuilds_the_labeled_set_in_selection_order():
    selections = selections_frame(
        {("entropy", 0, 2): ["c", "d"], ("entropy", 0, 1): ["b", "a"], ("random", 0, 1): ["z"]}
    )
    curves = curves_frame([("entropy", 0, 0, 0, 0.1, 0.0), ("entropy", 0, 1, 2, 0.2, 0.1)])
    replay = sim.replay_run(curves, selections.sample(frac=1, random_state=0), "entropy", 0)
    assert replay.done == {0, 1}
    assert replay.batches == {1: ["b", "a"], 2: ["c", "d"]}  # cycle 2 selected, not yet evaluated
    assert replay.labeled_before(1) == []
    assert replay.labeled_before(3) == ["b", "a", "c", "d"]
    empty = sim.replay_run(curves, selections, "entropy", 5)
    assert empty.done == frozenset() and empty.batches == {}


@pytest.mark.parametrize(
    ("batches", "rows", "message"),
    [
        ({("s", 0, 1): ["a"], ("s", 0, 3): ["b"]}, [], "expected 1, 2"),
        ({("s", 0, 1): ["a"], ("s", 0, 2): ["a"]}, [], "selects 'a' twice"),
        ({("s", 0, 1): ["a"]}, [("s", 0, 2, 2, 0.1, 0.1)], "no batch"),
        ({("s", 0, 1): ["a", "b"]}, [("s", 0, 1, 3, 0.1, 0.1)], "says 3 labeled tiles"),
        ({("s", 0, 1): ["a"]}, [("s", 0, 1, 1, 0.1, 0.1)] * 2, "cycle twice"),
    ],
)
def test_replay_refuses_inconsistent_records(batches, rows, message):
    with pytest.raises(ValueError, match=message):
        sim.replay_run(curves_frame(rows), selections_frame(batches), "s", 0)


def test_split_labeled_mirrors_the_train_stage():
    ids = [f"tile{i}" for i in range(50)]
    train, val = sim.split_labeled(ids, 0.2)
    assert val and train and set(train).isdisjoint(val) and sorted(train + val) == sorted(ids)
    assert sim.split_labeled(ids, 0.2) == (train, val)  # stable
    assert sim.split_labeled(["only"], 0.2) == (["only"], ["only"])  # one tile still trains
    with pytest.raises(ValueError):
        sim.split_labeled([], 0.2)


# ---------------------------------------------------------------------------------------------
# Pools


def yolo_folder(root: Path, n: int, labeled: bool = True) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        Image.new("RGB", (48, 32), (i * 7 % 255, 90, 30)).save(root / "images" / f"img{i:02d}.jpg")
        if labeled and i % 4:  # every fourth image has no label file: an image without objects
            (root / "labels" / f"img{i:02d}.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (root / "classes.txt").write_text("raccoon\n")
    return root


def test_folder_pool_holds_out_a_stable_test_set(tmp_path):
    folder = yolo_folder(tmp_path / "set", 40)
    pool = sim.folder_pool(folder, ["squirrel"], 0.25)
    assert pool.classes == ["raccoon"]  # the folder's own names
    assert len(pool.items) + len(pool.test) == 40 and len(pool.test) > 0
    assert set(pool.items["image"]).isdisjoint(pool.test["image"])
    no_label = pool.items[pool.items["tile_id"] == "img00"]
    if not no_label.empty:
        assert no_label["truth"].iloc[0] == ""
    assert (pool.items.loc[pool.items["truth"] != "", "truth"].map(lambda t: Path(t).is_file())).all()
    again = sim.folder_pool(folder, ["squirrel"], 0.25)
    assert again.test["image"].tolist() == pool.test["image"].tolist()
    separate = sim.folder_pool(folder, ["squirrel"], 0.25, test_dir=yolo_folder(tmp_path / "test", 3))
    assert len(separate.items) == 40 and len(separate.test) == 3
    with pytest.raises(ValueError, match="test fraction"):
        sim.folder_pool(folder, ["squirrel"], 1.0)


def test_folder_pool_refuses_two_images_with_one_name(tmp_path):
    folder = yolo_folder(tmp_path / "set", 8)
    (folder / "images" / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(folder / "images" / "sub" / "img01.jpg")
    with pytest.raises(ValueError, match="img01.jpg"):
        sim.folder_pool(folder, ["raccoon"], 0.01)


def test_tiled_pool_keeps_tiles_with_truth(tmp_path):
    tiles = tmp_path / "tiles"
    (tiles / "truth").mkdir(parents=True)
    manifest = pd.DataFrame(
        {
            "tile_id": ["f1_r0c0", "f1_r0c1", "f2_r0c0"],
            "image": ["images/f1_r0c0.jpg", "images/f1_r0c1.jpg", "images/f2_r0c0.jpg"],
            "n_truth": [1, 0, -1],  # f2 had no labels: no truth, not in the pool
            "condition": ["day", "night", "day"],
        }
    )
    manifest.to_parquet(tiles / "manifest.parquet")
    pool = sim.open_pool(tiles, ["squirrel"], yolo_folder(tmp_path / "test", 2), 0.2)
    assert pool.items["tile_id"].tolist() == ["f1_r0c0", "f1_r0c1"]
    assert pool.items["image"].iloc[0] == str(tiles / "images/f1_r0c0.jpg")
    assert pool.items["truth"].iloc[1] == str(tiles / "truth/f1_r0c1.txt")
    assert pool.items["condition"].tolist() == ["day", "night"]  # metadata for balance_by
    with pytest.raises(ValueError, match="tiled pool"):
        sim.open_pool(tiles, ["squirrel"], None, 0.2)
    with pytest.raises(FileNotFoundError, match="images"):
        sim.open_pool(tmp_path / "nothing", ["squirrel"], None, 0.2)


# ---------------------------------------------------------------------------------------------
# Configuration and resume without training


def test_config_validates_and_its_identity_ignores_what_may_grow():
    with pytest.raises(StrategyError):
        sim.SimulateConfig(strategies=("random", "nope"))
    with pytest.raises(ValueError, match="seeds"):
        sim.SimulateConfig(seeds=0)
    with pytest.raises(ValueError, match="repeats"):
        sim.SimulateConfig(strategies=("random", "random"))
    small = sim.SimulateConfig(strategies=("random",), seeds=1, cycles=1)
    assert small.identity() == sim.SimulateConfig().identity()
    assert sim.SimulateConfig(budget=7).identity() != small.identity()
    assert sim.SimulateConfig(base="yolov8n.yaml").cold and not small.cold


def test_a_strategy_entry_may_set_its_own_aggregate():
    config = sim.SimulateConfig(
        strategies=("least_confidence:min", "entropy", "hybrid:mean"), aggregate="max"
    )
    assert config.strategy("least_confidence:min").aggregate == "min"
    assert config.strategy("entropy").aggregate == "max"
    assert config.strategy("hybrid:mean").uncertainty.aggregate == "mean"
    with pytest.raises(ValueError, match="no aggregate"):
        sim.SimulateConfig(strategies=("fn_aware:max",))
    with pytest.raises(StrategyError, match="aggregate"):
        sim.SimulateConfig(strategies=("least_confidence:sum",))


def finished_folder(tmp_path: Path) -> tuple[sim.Pool, sim.SimulateConfig, Path]:
    """An output folder whose every row is done, written by hand: a re-run must train nothing."""
    pool = sim.folder_pool(yolo_folder(tmp_path / "set", 20), ["raccoon"], 0.2)
    base = tmp_path / "base.pt"
    base.write_bytes(b"not read: only hashed")
    config = sim.SimulateConfig(strategies=("random", "entropy"), seeds=1, cycles=1, budget=2, base=str(base))
    out = tmp_path / "out"
    ids = pool.items["tile_id"].tolist()
    sim._Simulation(pool, config, out)._check_config()  # writes config.json
    rows = [
        (s, 0, c, 2 * c, 0.1 + 0.3 * c + 0.1 * (s == "entropy"), 0.1)
        for s in config.strategies
        for c in (0, 1)
    ]
    write_csv(curves_frame(rows), out / sim.CURVES)
    write_csv(
        selections_frame({("random", 0, 1): ids[:2], ("entropy", 0, 1): ids[2:4]}), out / sim.SELECTIONS
    )
    write_json(
        out / sim.REFERENCE,
        {"labeled_tiles": len(ids), "epochs": 5, "seed": 0, "map50": 0.5, "map50_95": 0.2},
    )
    return pool, config, out


def fail(*_args, **_kwargs):
    raise AssertionError("a finished simulation must not train, evaluate or predict")


@pytest.fixture
def no_work(monkeypatch):
    import acorn.detection
    import acorn.training

    for module, name in (
        (acorn.training, "train"),
        (acorn.training, "evaluate"),
        (acorn.detection, "Detector"),
    ):
        monkeypatch.setattr(module, name, fail)


def test_a_finished_folder_is_summarised_without_any_work(tmp_path, no_work):
    pool, config, out = finished_folder(tmp_path)
    before = (out / sim.CURVES).read_bytes()
    result = sim.simulate(pool, config, out)
    assert (out / sim.CURVES).read_bytes() == before
    table = result.strategies.set_index("strategy")
    # target 0.95 * 0.5 = 0.475: entropy reached 0.5 at 2 tiles, random (0.4) did not
    assert table.loc["entropy", "labels_mean"] == 2 and table.loc["random", "reached"] == 0
    assert (out / sim.PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / sim.REPORT).read_text()
    assert "not reached" in report and "| entropy | 1 |" in report
    assert pd.read_csv(out / sim.SUMMARY)["strategy"].tolist() == ["random", "random", "entropy", "entropy"]


def test_a_folder_made_with_other_settings_is_refused(tmp_path, no_work):
    pool, config, out = finished_folder(tmp_path)
    import dataclasses

    changed = dataclasses.replace(config, budget=3, train=TrainConfig(epochs=9))
    with pytest.raises(ValueError, match="budget, train differ"):
        sim.simulate(pool, changed, out)


def test_the_command_registers_and_documents_its_options():
    app = typer.Typer()
    app.command("simulate")(sim.simulate_command)
    app.command("other")(lambda: None)  # a second command keeps typer from flattening the app
    result = CliRunner().invoke(app, ["simulate", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--pool", "--strategies", "--seeds", "--cycles", "--budget", "--epochs", "--out"):
        assert option in result.output


# ---------------------------------------------------------------------------------------------
# One tiny real simulation: untrained base, 24 pool images at imgsz 64, 1 epoch per cycle


@pytest.fixture(scope="module")
def tiny_raccoons(tmp_path_factory) -> tuple[Path, Path]:
    """30 real raccoon photos (symlinked), a params.yaml, and an untrained yolov8n saved as base."""
    if not (RACCOON / "images").is_dir():
        pytest.skip(f"{RACCOON} is not here")
    root = tmp_path_factory.mktemp("simulate")
    folder = root / "raccoon"
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for image in sorted((RACCOON / "images").glob("*.jpg"))[:30]:
        (folder / "images" / image.name).symlink_to(image)
        (folder / "labels" / f"{image.stem}.txt").symlink_to(RACCOON / "labels" / f"{image.stem}.txt")
    (folder / "classes.txt").write_text((RACCOON / "classes.txt").read_text())
    (root / "params.yaml").write_text("classes: [raccoon]\ntrain: {batch: 8, replay_images: 0}\n")

    from ultralytics import YOLO  # offline: `import acorn` (above) set it up

    YOLO("yolov8n.yaml").save(root / "base.pt")
    return root, folder


def run_cli(root: Path, folder: Path, cycles: int) -> None:
    app = typer.Typer()
    app.command("simulate")(sim.simulate_command)
    app.command("other")(lambda: None)
    args = [
        "simulate",
        "--params",
        str(root / "params.yaml"),
        "--pool",
        str(folder),
        "--base",
        str(root / "base.pt"),
    ]
    args += ["--strategies", "random,hybrid", "--seeds", "2", "--cycles", str(cycles), "--budget", "4"]
    args += ["--epochs", "1", "--imgsz", "64", "--out", str(root / "out")]
    result = CliRunner().invoke(app, args)
    if result.exception is not None:
        raise result.exception
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_tiny_simulation_writes_curves_and_resumes_without_redoing_work(tiny_raccoons, monkeypatch):
    import acorn.detection
    import acorn.training

    root, folder = tiny_raccoons
    out = root / "out"
    pool_size = len(sim.folder_pool(folder, ["raccoon"], 0.2).items)

    run_cli(root, folder, cycles=2)
    curves = pd.read_csv(out / sim.CURVES)
    assert len(curves) == 2 * 2 * 3  # strategies x seeds x cycles 0, 1, 2
    assert curves.groupby("cycle")["labeled_tiles"].unique().map(list).to_dict() == {0: [0], 1: [4], 2: [8]}
    assert curves["map50"].between(0, 1).all() and curves["map50_95"].between(0, 1).all()
    selections = pd.read_csv(out / sim.SELECTIONS)
    for _, run in selections.groupby(["strategy", "seed"]):
        assert run["cycle"].tolist() == [1] * 4 + [2] * 4 and run["tile_id"].is_unique  # never twice
    reference = json.loads((out / sim.REFERENCE).read_text())
    assert reference["labeled_tiles"] == pool_size and reference["epochs"] == 1
    assert sorted(p.name for p in (out / "models").iterdir()) == [
        f"{s}-s{seed}-c2.pt" for s in ("hybrid", "random") for seed in (0, 1)
    ]
    summary = pd.read_csv(out / sim.SUMMARY)
    assert summary[["strategy", "cycle"]].values.tolist() == [
        [s, c] for s in ("random", "hybrid") for c in range(3)
    ]
    assert (summary["seeds"] == 2).all()
    assert (out / sim.PLOT).stat().st_size > 1000 and "| hybrid | 2 |" in (out / sim.REPORT).read_text()

    # a re-run does nothing at all: no training, evaluation or prediction, rows unchanged
    before = {name: (out / name).read_bytes() for name in (sim.CURVES, sim.SELECTIONS, sim.REFERENCE)}
    real_train, real_evaluate = acorn.training.train, acorn.training.evaluate
    for module, name in (
        (acorn.training, "train"),
        (acorn.training, "evaluate"),
        (acorn.detection, "Detector"),
    ):
        monkeypatch.setattr(module, name, fail)
    run_cli(root, folder, cycles=2)
    assert {name: (out / name).read_bytes() for name in before} == before

    # killed after selecting cycle 2 but before its row: the recorded batch is trained, not re-selected
    trained = []
    monkeypatch.setattr(acorn.training, "train", lambda *a, **k: trained.append(a) or real_train(*a, **k))
    monkeypatch.setattr(acorn.training, "evaluate", real_evaluate)

    def cycle2(df: pd.DataFrame, strategy: str, seed: int) -> pd.Series:
        return (df["strategy"] == strategy) & (df["seed"] == seed) & (df["cycle"] == 2)

    write_csv(curves[~cycle2(curves, "hybrid", 1)], out / sim.CURVES)
    run_cli(root, folder, cycles=2)  # Detector still fails: nothing is predicted
    assert len(trained) == 1
    assert (out / sim.SELECTIONS).read_bytes() == before[sim.SELECTIONS]
    resumed = pd.read_csv(out / sim.CURVES)
    assert len(resumed) == len(curves) and resumed[cycle2(resumed, "hybrid", 1)][
        "labeled_tiles"
    ].tolist() == [8]

    # killed before selecting cycle 2: random re-selects the same seeded batch; hybrid needs its
    # cycle-1 model, no longer kept (only a run's latest is), so it is retrained from the replay
    monkeypatch.undo()
    trained.clear()
    monkeypatch.setattr(acorn.training, "train", lambda *a, **k: trained.append(a) or real_train(*a, **k))
    redo = cycle2(curves, "random", 0) | cycle2(curves, "hybrid", 0)
    write_csv(curves[~redo], out / sim.CURVES)
    write_csv(
        selections[~(cycle2(selections, "random", 0) | cycle2(selections, "hybrid", 0))], out / sim.SELECTIONS
    )
    run_cli(root, folder, cycles=2)
    assert len(trained) == 3  # random cycle 2, hybrid's cycle-1 model again, hybrid cycle 2
    again = pd.read_csv(out / sim.SELECTIONS)
    assert (
        again[cycle2(again, "random", 0)]["tile_id"].tolist()
        == selections[cycle2(selections, "random", 0)]["tile_id"].tolist()
    )
    hybrid = again[(again["strategy"] == "hybrid") & (again["seed"] == 0)]
    assert len(hybrid) == 8 and hybrid["tile_id"].is_unique
    final = pd.read_csv(out / sim.CURVES)
    assert len(final) == len(curves) and (final.loc[final["cycle"] == 2, "labeled_tiles"] == 8).all()
    assert sorted(p.name for p in (out / "models").iterdir()) == [
        f"{s}-s{seed}-c2.pt" for s in ("hybrid", "random") for seed in (0, 1)
    ]
