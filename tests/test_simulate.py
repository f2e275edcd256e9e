"""acorn simulate: the pure curve logic, the driver with a stand-in model (selection, pairing,
screening, resume), and one tiny real simulation that trains YOLO and resumes."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import typer
import yaml
from PIL import Image
from typer.testing import CliRunner

import acorn.model.detection
import acorn.model.training
from acorn.cycle_step.fine_tune import train_config
from acorn.params import Params
from acorn.runtime.atomic import FolderBusyError, sole_writer, write_csv, write_json
from acorn.runtime.errors import InputError, ParamsError
from acorn.selection.candidates import select_candidates
from acorn.selection.strategies import Random, StrategyError
from acorn.simulate import curves as cv
from acorn.simulate import folder as out_files
from acorn.simulate import pools, report
from acorn.simulate.batches import mixed_batches, score_batches
from acorn.simulate.cli import simulate_command
from acorn.simulate.config import SCREEN_STRATEGIES, SimulateConfig, selection_seed
from acorn.simulate.folder import OutputFolder
from acorn.simulate.run import simulate
from acorn.simulate.screen import screen
from acorn.simulate.settings import load_settings
from acorn.simulate.step import OracleStep
from tests.conftest import SHARED_DATA

RACCOON = SHARED_DATA / "raccoon"


def curves_frame(rows: list[tuple]) -> pd.DataFrame:
    """Rows of (strategy, seed, cycle, labeled, map50, map50_95[, false_alarm_rate[, val_map50]])."""
    width = len(cv.CURVE_COLUMNS)
    return pd.DataFrame([(*r, *[np.nan] * width)[:width] for r in rows], columns=cv.CURVE_COLUMNS)


def selections_frame(batches: dict[tuple[str, int, int], list[str]]) -> pd.DataFrame:
    rows = [(s, seed, c, r, t) for (s, seed, c), ids in batches.items() for r, t in enumerate(ids, start=1)]
    return pd.DataFrame(rows, columns=cv.SELECTION_COLUMNS)


def settings(**overrides: object) -> Params:
    """Params for the driver tests: no replay, no balancing; ``rank__budget=2`` sets rank.budget."""
    base = {"train.replay_images": 0, "rank.balance_by": ""}
    return Params().with_overrides(base | {k.replace("__", "."): v for k, v in overrides.items()})


# ---------------------------------------------------------------------------------------------
# Area under the curve, labels to target


def test_area_under_curve_is_the_trapezoid_divided_by_the_range():
    # (0 + 0.5) / 2 * 10 + 0.5 * 10 = 7.5 over a range of 20
    assert cv.area_under_curve([0, 10, 20], [0.0, 0.5, 0.5]) == pytest.approx(0.375)
    assert cv.area_under_curve([20, 0, 10], [0.5, 0.0, 0.5]) == pytest.approx(0.375)  # order-free
    # the same shape over another range gives the same number: comparable across budgets
    assert cv.area_under_curve([0, 100, 200], [0.0, 0.5, 0.5]) == pytest.approx(0.375)
    assert cv.area_under_curve([50], [0.3]) == pytest.approx(0.3)


def test_area_under_curve_rejects_empty_or_mismatched_input():
    with pytest.raises(ValueError):
        cv.area_under_curve([], [])
    with pytest.raises(ValueError):
        cv.area_under_curve([0, 10], [0.1])


def test_labels_to_reach_is_the_first_batch_boundary_at_or_above_target():
    assert cv.labels_to_reach([0, 10, 20, 30], [0.1, 0.4, 0.6, 0.5], 0.5) == 20
    assert cv.labels_to_reach([30, 20, 10], [0.9, 0.5, 0.1], 0.5) == 20  # unsorted input
    assert cv.labels_to_reach([0, 10], [0.1, 0.5], 0.5) == 10  # reaching exactly counts
    assert cv.labels_to_reach([0, 10], [0.1, 0.49], 0.5) is None


# ---------------------------------------------------------------------------------------------
# Summaries and tables

CURVES = curves_frame(
    [
        ("random", 0, 0, 0, 0.1, 0.05, 0.4),
        ("random", 0, 1, 10, 0.3, 0.1, 0.2),
        ("random", 1, 0, 0, 0.1, 0.05, 0.4),
        ("random", 1, 1, 10, 0.5, 0.2, 0.3),
        ("entropy", 0, 0, 0, 0.1, 0.05, 0.4),
        ("entropy", 0, 1, 10, 0.7, 0.3, 0.5),
        ("entropy", 1, 0, 0, 0.1, 0.05, 0.4),
        ("entropy", 1, 1, 10, 0.9, 0.4, 0.6),
    ]
)


def test_summarize_curves_gives_mean_and_spread_over_seeds_in_input_order():
    summary = cv.summarize_curves(CURVES)
    assert summary["strategy"].tolist() == ["random", "random", "entropy", "entropy"]
    row = summary[(summary["strategy"] == "random") & (summary["cycle"] == 1)].iloc[0]
    assert row["labeled_tiles"] == 10 and row["seeds"] == 2
    assert row["map50_mean"] == pytest.approx(0.4)
    assert row["map50_std"] == pytest.approx(round(math.sqrt(0.02), 4))
    assert (row["map50_min"], row["map50_max"]) == pytest.approx((0.3, 0.5))
    assert row["map50_95_mean"] == pytest.approx(0.15)
    assert row["false_alarm_mean"] == pytest.approx(0.25)


def test_run_table_has_auc_labels_last_false_alarm_and_pooled_hit_rate_per_run():
    hits = pd.DataFrame(
        {
            "strategy": ["entropy", "entropy", "random"],
            "seed": [0, 0, 0],
            "cycle": [1, 2, 1],
            "picked": [10, 30, 10],
            "hits": [5, 3, 1],
            "hit_rate": [0.5, 0.1, 0.1],
        }
    )
    runs = cv.run_table(CURVES, 0.6, hits).set_index(["strategy", "seed"])
    assert runs.loc[("random", 1), "auc"] == pytest.approx(0.3)  # (0.1 + 0.5) / 2
    assert runs.loc[("entropy", 1), "labels"] == 10 and np.isnan(runs.loc[("random", 0), "labels"])
    assert runs.loc[("entropy", 1), "false_alarm"] == pytest.approx(0.6)  # the last cycle's
    # the last cycle's map50 minus cycle 0's: 0.3 - 0.1 and 0.9 - 0.1
    assert runs.loc[("random", 0), "gain"] == pytest.approx(0.2)
    assert runs.loc[("entropy", 1), "gain"] == pytest.approx(0.8)
    cold = cv.run_table(CURVES[CURVES["cycle"] > 0], None)  # a cold start has no cycle 0 to gain over
    assert cold["gain"].isna().all()
    # pooled, not the mean of the cycles' rates: (5 + 3) / (10 + 30) = 0.2, not 0.3
    assert runs.loc[("entropy", 0), "hit_rate"] == pytest.approx(0.2)
    assert np.isnan(runs.loc[("entropy", 1), "hit_rate"])  # no selections recorded for it
    assert cv.run_table(CURVES, None)["hit_rate"].isna().all()


def test_a_choice_reads_the_validation_curve_and_the_test_curve_only_reports():
    rows = [("random", 0, 0, 0, 0.1, 0.0, 0.0, 0.2), ("random", 0, 1, 10, 0.3, 0.0, 0.0, 0.6)]
    test, val = (
        cv.run_table(curves_frame(rows), None),
        cv.run_table(curves_frame(rows), None, metric="val_map50"),
    )
    assert (test.loc[0, "auc"], test.loc[0, "gain"]) == pytest.approx((0.2, 0.2))  # (0.1 + 0.3) / 2
    assert (val.loc[0, "auc"], val.loc[0, "gain"]) == pytest.approx((0.4, 0.4))  # (0.2 + 0.6) / 2
    with pytest.raises(InputError, match="no 'val_map50' curve"):  # a folder made before val.data
        cv.run_table(curves_frame(rows).drop(columns="val_map50"), None, metric="val_map50")
    with pytest.raises(InputError, match="no 'precision' curve"):
        cv.run_table(curves_frame(rows), None, metric="precision")
    shown = load_benchmark("paired").paired_against(curves_frame(rows), "random", metric="val_map50")
    assert shown.loc[0, "AUC val_map50"] == "0.400"


def test_strategy_table_aggregates_auc_and_labels_to_target_per_strategy():
    table = cv.strategy_table(cv.run_table(CURVES, target_map50=0.6)).set_index("strategy")
    # random: AUC (0.1 + 0.3) / 2 = 0.2 and (0.1 + 0.5) / 2 = 0.3; never reaches 0.6
    assert table.loc["random", "auc_mean"] == pytest.approx(0.25)
    assert (table.loc["random", "auc_min"], table.loc["random", "auc_max"]) == pytest.approx((0.2, 0.3))
    assert table.loc["random", "reached"] == 0 and np.isnan(table.loc["random", "labels_mean"])
    assert table.loc["entropy", "auc_mean"] == pytest.approx(0.45)
    assert table.loc["entropy", "reached"] == 2 and table.loc["entropy", "labels_max"] == 10

    partial = cv.strategy_table(cv.run_table(CURVES, target_map50=0.8)).set_index("strategy")
    assert partial.loc["entropy", "reached"] == 1  # only seed 1 got to 0.9
    assert cv.strategy_table(cv.run_table(CURVES, target_map50=None))["reached"].tolist() == [0, 0]


def test_format_strategy_table_says_not_reached_and_partial_seeds():
    shown = cv.format_strategy_table(cv.strategy_table(cv.run_table(CURVES, 0.8)), has_target=True)
    labels = dict(zip(shown["strategy"], shown.iloc[:, 3], strict=True))
    assert labels["random"] == "not reached"
    assert labels["entropy"] == "10 [10, 10] in 1/2 seeds"
    full = cv.format_strategy_table(cv.strategy_table(cv.run_table(CURVES, 0.6)), has_target=True)
    assert full.iloc[1, 3] == "10 [10, 10]"
    assert full.iloc[0, 2] == "0.250 ± 0.071 [0.200, 0.300]"
    no_target = cv.format_strategy_table(cv.strategy_table(cv.run_table(CURVES, None)), False)
    assert no_target.iloc[0, 3].startswith("n/a")


def test_markdown_table_blanks_nan_and_rounds_floats():
    text = report.markdown_table(pd.DataFrame({"a": ["x", "y"], "b": [0.12345, float("nan")], "c": [1, 2]}))
    lines = text.splitlines()
    assert [cell.strip() for cell in lines[0].strip("|").split("|")] == ["a", "b", "c"]
    assert [cell.strip() for cell in lines[2].strip("|").split("|")] == ["x", "0.123", "1"]
    assert [cell.strip() for cell in lines[3].strip("|").split("|")] == ["y", "", "2"]


# ---------------------------------------------------------------------------------------------
# Hit rate, false alarms, paired differences: numbers worked out by hand


def test_hit_rates_count_batch_items_holding_an_object():
    objects = pd.Series({"a": 0, "b": 2, "c": 1, "d": 0, "e": 0})
    selections = selections_frame(
        {("entropy", 0, 1): ["a", "b"], ("entropy", 0, 2): ["c", "d", "e"], ("random", 1, 1): ["d", "e"]}
    )
    hits = cv.hit_rates(selections, objects)
    assert hits[["strategy", "seed", "cycle", "picked", "hits"]].values.tolist() == [
        ["entropy", 0, 1, 2, 1],
        ["entropy", 0, 2, 3, 1],
        ["random", 1, 1, 2, 0],
    ]
    assert hits["hit_rate"].tolist() == pytest.approx([0.5, 1 / 3, 0.0])
    by_cycle = cv.hit_rate_by_cycle(hits)
    assert by_cycle.columns.tolist() == ["strategy", "cycle 1", "cycle 2"]
    assert by_cycle["strategy"].tolist() == ["entropy", "random"]
    assert by_cycle["cycle 1"].tolist() == pytest.approx([0.5, 0.0])
    assert np.isnan(by_cycle.loc[1, "cycle 2"])
    with pytest.raises(InputError, match="'zz'"):
        cv.hit_rates(selections_frame({("random", 0, 1): ["zz"]}), objects)


def test_false_alarm_rate_is_the_share_of_empty_images_with_a_box_at_the_threshold():
    boxes = pd.DataFrame(
        {"tile_id": ["e1", "e1", "e2", "e3", "pos"], "confidence": [0.1, 0.3, 0.25, 0.2, 0.9]}
    )
    # e1 (0.3) and e2 (exactly 0.25) are flagged; e3 (0.2) and e4 (no box) are not; pos is not empty
    assert cv.false_alarm_rate(boxes, ["e1", "e2", "e3", "e4"], 0.25) == pytest.approx(0.5)
    assert cv.false_alarm_rate(boxes, ["e3", "e4"], 0.25) == 0.0
    assert np.isnan(cv.false_alarm_rate(boxes, [], 0.25))


def test_bootstrap_interval_of_a_mean_by_hand():
    # two values: resampled means are -0.1, 0 and 0.1 with probabilities 1/4, 1/2, 1/4
    assert cv.bootstrap_interval([-0.1, 0.1]) == pytest.approx((-0.1, 0.1))
    assert cv.bootstrap_interval([0.05, 0.05]) == pytest.approx((0.05, 0.05))
    # three values: P(mean = 0.1) = 1/27 < 5%, P(mean <= 0.1333) = 4/27 > 5%: the 5% point is 0.1333
    low, high = cv.bootstrap_interval([0.1, 0.2, 0.6])
    assert low == pytest.approx(0.4 / 3, abs=1e-9)
    assert high == pytest.approx(1.4 / 3, abs=1e-9)  # mirror: (0.6 + 0.6 + 0.2) / 3
    assert cv.bootstrap_interval([0.1, 0.2, 0.6]) == (low, high)  # seeded
    assert all(np.isnan(cv.bootstrap_interval([0.3])))  # one seed: no spread to speak of


def test_paired_difference_pairs_runs_by_seed():
    runs = pd.DataFrame(
        {
            "strategy": ["random"] * 3 + ["entropy"] * 3 + ["margin"] * 2,
            "seed": [0, 1, 2, 0, 1, 2, 0, 7],
            # entropy is always 0.1 above random in the same seed, though seeds differ by 0.3
            "auc": [0.1, 0.4, 0.7, 0.2, 0.5, 0.8, 0.3, 0.9],
        }
    )
    paired = cv.paired_difference(runs, "auc").set_index("strategy")
    assert paired.loc["entropy", "paired"] == 3
    assert paired.loc["entropy", ["diff", "low", "high"]].tolist() == pytest.approx([0.1, 0.1, 0.1])
    assert paired.loc["margin", "paired"] == 1  # seed 7 has no random run to pair with
    assert paired.loc["margin", "diff"] == pytest.approx(0.2) and np.isnan(paired.loc["margin", "low"])
    assert paired.loc["random", "paired"] == 0 and np.isnan(paired.loc["random", "diff"])
    no_baseline = cv.paired_difference(runs[runs["strategy"] != "random"], "auc")
    assert no_baseline["diff"].isna().all()


def test_comparison_table_and_its_cells():
    runs = pd.DataFrame(
        {
            "strategy": ["random"] * 3 + ["entropy"] * 3,
            "seed": [0, 1, 2] * 2,
            "auc": [0.2, 0.3, 0.4, 0.3, 0.5, 0.5],
            "gain": [0.1, 0.3, 0.2, 0.2, np.nan, np.nan],
            "labels": [np.nan] * 3 + [20.0, 30.0, 40.0],
            "hit_rate": [0.1, 0.2, 0.3, 0.5, 0.6, 0.7],
            "false_alarm": [0.2, 0.2, 0.2, 0.5, 0.3, 0.4],
        }
    )
    table = cv.comparison_table(runs).set_index("strategy")
    e = table.loc["entropy"]
    assert (e["seeds"], e["auc"], e["reached"], e["labels_mean"]) == pytest.approx((3, 13 / 30, 3, 30))
    assert e["hit_rate"] == pytest.approx(0.6) and e["false_alarm"] == pytest.approx(0.4)
    # AUC differences 0.1, 0.2, 0.1: mean 0.1333, sd 0.0577, t(2) 90% = 2.92: half-width 0.0973;
    # sign flips: only the two all-same-sign assignments reach |0.4|: p = 2/8
    assert e[["auc_diff", "auc_low", "auc_high", "auc_p"]].tolist() == pytest.approx(
        [0.13333, 0.03601, 0.23066, 0.25], abs=1e-4
    )
    assert 0.1 - 1e-9 <= e["auc_boot_low"] <= e["auc_boot_high"] <= 0.2 + 1e-9  # within the differences
    # false alarms +0.3, +0.1, +0.2: mean 0.2, sd 0.1, half-width 2.92 x 0.1 / sqrt(3) = 0.1686
    assert e[["false_alarm_diff", "false_alarm_low", "false_alarm_high"]].tolist() == pytest.approx(
        [0.2, 0.0314, 0.3686], abs=1e-4
    )
    # gain: mean over the seeds that have one, t interval over them (0.2 +- 2.92 x 0.1 / sqrt 3)
    assert table.loc["random", ["gain", "gain_low", "gain_high"]].tolist() == pytest.approx(
        [0.2, 0.0314, 0.3686], abs=1e-4
    )
    assert e["gain"] == pytest.approx(0.2) and np.isnan(e["gain_low"])  # one seed: no interval
    shown = cv.format_comparison(table.reset_index(), has_target=True).set_index("strategy")
    assert shown.loc["entropy", "AUC − random [t 90% CI]"] == "+0.133 [+0.036, +0.231]"
    assert shown.loc["entropy", "sign-flip p"] == "0.25"
    assert shown.loc["entropy", "verdict"] == "better"
    assert shown.loc["entropy", "false alarms − random [t 90% CI]"] == "+0.200 [+0.031, +0.369] (more)"
    assert shown.loc["random", "map50 gain over cycle 0 [t 90% CI]"] == "+0.200 [+0.031, +0.369]"
    assert shown.loc["entropy", "map50 gain over cycle 0 [t 90% CI]"] == "+0.200"
    assert shown.loc["entropy", "labels to target"] == "30"
    assert shown.loc["random", "labels to target"] == "not reached"
    assert shown.loc["random", "AUC − random [t 90% CI]"] == "" and shown.loc["random", "verdict"] == ""
    assert shown.loc["random", "sign-flip p"] == "" and shown.loc["random", "bootstrap 90% CI"] == ""
    assert (shown.loc["random", "hit rate"], shown.loc["random", "false alarms, last model"]) == (
        "0.20",
        "0.20",
    )
    # two seeds that both favour entropy: the bootstrap interval [0.1, 0.2] excludes zero, the t
    # interval (t(1) = 6.31) does not, and the verdict follows the t interval
    two = cv.comparison_table(runs[runs["seed"] < 2]).set_index("strategy")
    assert two.loc["entropy", "auc_boot_low"] > 0 > two.loc["entropy", "auc_low"]
    assert cv.format_comparison(two.reset_index(), has_target=False).loc[1, "verdict"] == "not shown"


def test_t_quantile_matches_the_tables():
    # two-sided 90% and 95% points of Student's t (any statistics table)
    table = {(0.9, 1): 6.3138, (0.9, 2): 2.9200, (0.9, 4): 2.1318, (0.9, 9): 1.8331, (0.95, 4): 2.7764}
    table |= {(0.95, 9): 2.2622, (0.95, 30): 2.0423, (0.5, 3): 0.7649}
    for (level, df), q in table.items():
        assert cv.t_quantile(level, df) == pytest.approx(q, abs=1e-4), (level, df)
    with pytest.raises(ValueError):
        cv.t_quantile(0.9, 0)


def test_t_interval_by_hand_and_wider_than_the_bootstrap_at_few_seeds():
    # 0.1, 0.2, 0.6: mean 0.3, sd sqrt(0.07) = 0.26458, se 0.15275, t(2) 90% = 2.91999
    low, high = cv.t_interval([0.1, 0.2, 0.6])
    assert (low, high) == pytest.approx((0.3 - 0.44604, 0.3 + 0.44604), abs=1e-4)
    boot = cv.bootstrap_interval([0.1, 0.2, 0.6])
    assert low < boot[0] and boot[1] < high
    assert cv.t_interval([0.05, 0.05]) == pytest.approx((0.05, 0.05))  # no spread, no width
    assert all(np.isnan(cv.t_interval([0.3])))


def test_sign_flip_p_enumerates_every_sign_assignment():
    # sums of +-0.1 +-0.2 +-0.6: 0.9, 0.7, 0.5, 0.3 and their negatives: |s| >= 0.9 in 2 of 8
    assert cv.sign_flip_p([0.1, 0.2, 0.6]) == pytest.approx(0.25)
    # 0.3, -0.1, 0.1: |s| in {0.5, 0.3, 0.3, 0.1, ...}: 0.3 is reached by 0.3-0.1+0.1 and 0.3+0.1-0.1
    # and their mirrors, 0.5 by 0.3+0.1+0.1 and its mirror: 6 of 8
    assert cv.sign_flip_p([0.3, -0.1, 0.1]) == pytest.approx(6 / 8)
    assert cv.sign_flip_p([0.02] * 5) == pytest.approx(2 / 32)  # the floor at 5 seeds: 0.0625
    assert cv.sign_flip_p([0.02] * 10) == pytest.approx(2 / 1024)
    assert cv.sign_flip_p([0.0, 0.0]) == 1.0 and np.isnan(cv.sign_flip_p([]))
    # past 20 values: seeded random assignments; all of one sign is far beyond any of them
    many = cv.sign_flip_p([0.01] * 25, resamples=1000)
    assert many == pytest.approx(1 / 1001) and many == cv.sign_flip_p([0.01] * 25, resamples=1000)


def test_verdict_needs_the_whole_interval_on_one_side():
    low = pd.Series([0.01, -0.2, -0.1, np.nan])
    high = pd.Series([0.2, -0.01, 0.1, np.nan])
    assert cv.verdict(low, high).tolist() == ["better", "worse", "not shown", ""]
    assert cv.verdict(low, high, higher_is_better=False).tolist() == ["worse", "better", "not shown", ""]


def test_runs_on_another_label_grid_are_refused_by_name():
    rows = [
        (s, seed, c, 10 * c, 0.1 * c, 0.0) for s in ("random", "entropy") for seed in (0, 1) for c in range(3)
    ]
    cv.check_same_grid(curves_frame(rows))  # every run at 0, 10, 20 labels
    stopped = curves_frame([r for r in rows if not (r[0] == "entropy" and r[1] == 1 and r[2] > 0)])
    with pytest.raises(
        InputError, match=r"entropy seed 1 is incomplete .* 0:0, the other runs 0:0 1:10 2:20"
    ):
        cv.run_table(stopped, None)
    other_budget = curves_frame(
        [(*r[:3], 20 * r[2] if r[0] == "random" and r[1] == 0 else r[3], *r[4:]) for r in rows]
    )
    with pytest.raises(InputError, match="random seed 0"):
        cv.check_same_grid(other_budget)


# ---------------------------------------------------------------------------------------------
# Replaying selections (resume)


def test_replay_rebuilds_the_labeled_set_in_selection_order():
    selections = selections_frame(
        {("entropy", 0, 2): ["c", "d"], ("entropy", 0, 1): ["b", "a"], ("random", 0, 1): ["z"]}
    )
    curves = curves_frame([("entropy", 0, 0, 0, 0.1, 0.0), ("entropy", 0, 1, 2, 0.2, 0.1)])
    replay = cv.replay_run(curves, selections.sample(frac=1, random_state=0), "entropy", 0)
    assert replay.done == {0, 1}
    assert replay.batches == {1: ["b", "a"], 2: ["c", "d"]}  # cycle 2 selected, not yet evaluated
    assert replay.labeled_before(1) == []
    assert replay.labeled_before(3) == ["b", "a", "c", "d"]
    empty = cv.replay_run(curves, selections, "entropy", 5)
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
    with pytest.raises(InputError, match=message):
        cv.replay_run(curves_frame(rows), selections_frame(batches), "s", 0)


def test_a_set_without_a_validation_set_of_its_own_is_split_stably():
    # the base model's close-ups; never a cycle's paid labels, which all train (fine_tune_dataset)
    ids = [f"tile{i}" for i in range(50)]
    train, val = acorn.model.training.split_labeled(ids, 0.2)
    assert val and train and set(train).isdisjoint(val) and sorted(train + val) == sorted(ids)
    assert acorn.model.training.split_labeled(ids, 0.2) == (train, val)  # stable
    assert acorn.model.training.split_labeled(["only"], 0.2) == (["only"], ["only"])  # one tile still trains
    with pytest.raises(InputError):
        acorn.model.training.split_labeled([], 0.2)


# ---------------------------------------------------------------------------------------------
# Pools


def yolo_folder(root: Path, n: int, labeled: bool = True, prefix: str = "img") -> Path:
    """``n`` images; every fourth has no label file (no objects), the others one box."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        # noise, not a flat colour: flat images are all near-copies of each other (folder_pool groups them)
        pixels = np.random.default_rng([i, len(prefix)]).integers(0, 255, (32, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{prefix}{i:02d}.jpg")
        if labeled and i % 4:
            (root / "labels" / f"{prefix}{i:02d}.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (root / "classes.txt").write_text("raccoon\n")
    return root


def val_folder(tmp_path: Path) -> Path:
    """A separate validation folder of 2 images, so that none is taken from the pool."""
    return yolo_folder(tmp_path / "v", 2, prefix="v")


def test_folder_pool_holds_out_stable_disjoint_test_and_validation_sets(tmp_path):
    folder = yolo_folder(tmp_path / "set", 80)
    pool = pools.folder_pool(folder, ["squirrel"], 0.25)
    assert pool.classes == ["raccoon"]  # the folder's own names
    assert len(pool.items) + len(pool.val) + len(pool.test) == 80 and len(pool.test) and len(pool.val)
    held = [set(pool.items["image"]), set(pool.val["image"]), set(pool.test["image"])]
    assert all(a.isdisjoint(b) for i, a in enumerate(held) for b in held[i + 1 :])
    # salted apart: the validation share is not the test share's hash again (which would leave it empty)
    assert 10 <= len(pool.val) <= 30 and 10 <= len(pool.test) <= 30  # about 20 each
    no_label = pool.items[pool.items["tile_id"] == "img00"]
    if not no_label.empty:
        assert no_label["truth"].iloc[0] == ""
    assert (pool.items.loc[pool.items["truth"] != "", "truth"].map(lambda t: Path(t).is_file())).all()
    assert (pool.objects == (pool.items.set_index("tile_id")["truth"] != "").astype(int)).all()
    assert pool.test["objects"].sum() == (pool.test["truth"] != "").sum()
    again = pools.folder_pool(folder, ["squirrel"], 0.25)
    assert again.test["image"].tolist() == pool.test["image"].tolist()
    assert again.val["image"].tolist() == pool.val["image"].tolist()
    separate = pools.folder_pool(
        folder,
        ["squirrel"],
        0.25,
        test_dir=yolo_folder(tmp_path / "test", 3),
        val_dir=yolo_folder(tmp_path / "v", 2),
    )
    assert (len(separate.items), len(separate.val), len(separate.test)) == (80, 2, 3)
    with pytest.raises(ParamsError, match="test-fraction"):
        pools.folder_pool(folder, ["squirrel"], 0.5)


def test_count_objects_counts_boxes_per_label_file(tmp_path):
    (tmp_path / "two.txt").write_text("0 0.5 0.5 0.1 0.1\n\n0 0.2 0.2 0.1 0.1\n")
    (tmp_path / "none.txt").write_text("")
    truth = pd.Series([str(tmp_path / "two.txt"), str(tmp_path / "none.txt"), ""])
    assert pools.count_objects(truth).tolist() == [2, 0, 0]


def test_folder_pool_refuses_two_images_with_one_name(tmp_path):
    folder = yolo_folder(tmp_path / "set", 8)
    (folder / "images" / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(folder / "images" / "sub" / "img01.jpg")
    with pytest.raises(InputError, match="img01.jpg"):
        pools.folder_pool(folder, ["raccoon"], 0.01)


def test_tiled_pool_keeps_tiles_with_truth(tmp_path):
    tiles = tmp_path / "tiles"
    (tiles / "truth").mkdir(parents=True)
    manifest = pd.DataFrame(
        {
            "tile_id": ["f1_r0c0", "f1_r0c1", "f2_r0c0"],
            "image": ["images/f1_r0c0.jpg", "images/f1_r0c1.jpg", "images/f2_r0c0.jpg"],
            "n_truth": [2, 0, -1],  # f2 had no labels: no truth, not in the pool
            "condition": ["day", "night", "day"],
        }
    )
    manifest.to_parquet(tiles / "manifest.parquet")
    test, val = yolo_folder(tmp_path / "test", 2), yolo_folder(tmp_path / "val", 3)
    pool = pools.open_pool(tiles, ["squirrel"], test, 0.2, val)
    assert (len(pool.test), len(pool.val)) == (2, 3)
    assert pool.items["tile_id"].tolist() == ["f1_r0c0", "f1_r0c1"]
    assert pool.items["image"].iloc[0] == str(tiles / "images/f1_r0c0.jpg")
    assert pool.items["truth"].iloc[1] == str(tiles / "truth/f1_r0c1.txt")
    assert pool.items["condition"].tolist() == ["day", "night"]  # metadata for balance_by
    assert pool.objects.to_dict() == {"f1_r0c0": 2, "f1_r0c1": 0}
    with pytest.raises(InputError, match="tiled pool.*val.data"):
        pools.open_pool(tiles, ["squirrel"], test, 0.2)
    with pytest.raises(InputError, match="images"):
        pools.open_pool(tmp_path / "nothing", ["squirrel"], None, 0.2)


# ---------------------------------------------------------------------------------------------
# Settings: params sections, flags, -S


def test_config_validates_and_its_identity_ignores_what_may_grow():
    p = settings()
    with pytest.raises(StrategyError):
        SimulateConfig(p, strategies=("random", "nope"))
    with pytest.raises(ParamsError, match="seeds"):
        SimulateConfig(p, seeds=0)
    with pytest.raises(ParamsError, match="repeats"):
        SimulateConfig(p, strategies=("random", "random"))
    with pytest.raises(ParamsError, match="target"):
        SimulateConfig(p, target=1.5)
    small = SimulateConfig(p, strategies=("random",), seeds=1, cycles=1, target=0.5, full_epochs=3)
    assert small.identity() == SimulateConfig(p).identity()
    # what the simulation replaces (rank.strategy, the seeds), never reads (labeling) or only runs
    # faster with (model.threads) is not identity
    other = settings(
        rank__strategy="random", rank__seed=4, train__seed=9, labeling__project="x", model__threads=1
    )
    assert SimulateConfig(other).identity() == small.identity()
    with pytest.raises(ParamsError, match=r"predict\.candidates \(49\) is below rank\.budget \(50\)"):
        SimulateConfig(settings(predict__candidates=49))
    SimulateConfig(settings(predict__candidates=50))
    budget = SimulateConfig(settings(rank__budget=7)).identity()
    assert {k for k in budget if budget[k] != small.identity()[k]} == {"rank.budget"}
    assert SimulateConfig(settings(model__base="yolov8n.yaml")).cold and not small.cold
    assert small.budget == 50 and train_config(small.params, seed=3).seed == 3
    assert train_config(small.params, seed=3, epochs=2).epochs == 2 and train_config(small.params).epochs == 8


def test_a_strategy_entry_may_set_its_own_aggregate():
    config = SimulateConfig(
        settings(rank__aggregate="max"), strategies=("least_confidence:min", "entropy", "hybrid:mean")
    )
    assert config.strategy("least_confidence:min").aggregate == "min"
    assert config.strategy("entropy").aggregate == "max"
    assert config.strategy("hybrid:mean").uncertainty.aggregate == "mean"
    with pytest.raises(StrategyError, match="no aggregate"):
        SimulateConfig(settings(), strategies=("fn_aware:max",))
    with pytest.raises(StrategyError, match="aggregate"):
        SimulateConfig(settings(), strategies=("least_confidence:sum",))


def test_a_hybrid_entry_may_name_its_own_shortlist_strategy():
    config = SimulateConfig(
        settings(rank__uncertainty="entropy", rank__aggregate="max"),
        strategies=("hybrid", "hybrid/least_confidence:min", "hybrid/margin"),
    )
    assert (config.strategy("hybrid").uncertainty.name, config.strategy("hybrid").uncertainty.aggregate) == (
        "entropy",
        "max",
    )
    shortlist = config.strategy("hybrid/least_confidence:min").uncertainty
    assert (shortlist.name, shortlist.aggregate) == ("least_confidence", "min")
    assert config.strategy("hybrid/margin").uncertainty.name == "margin"
    for entry, message in (
        ("entropy/margin", "only hybrid"),
        ("hybrid/", "name the shortlist"),
        ("hybrid/random", "rank.uncertainty must be one of"),
        ("hybrid/least_confidence:sum", "aggregate"),
    ):
        with pytest.raises(StrategyError, match=message):
            SimulateConfig(settings(), strategies=(entry,))
    # its models and carried tiles live in files whose names hold no folder separator
    assert out_files.file_stem("hybrid/least_confidence:min") == "hybrid+least_confidence-min"


def test_flags_and_set_override_params_sections(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("classes: [raccoon]\ntrain: {epochs: 5, lr0: 0.02}\n")
    p, overrides = load_settings(
        path, {"budget": 7, "epochs": None, "imgsz": 64}, ["train.lr0=0.05", "rank.aggregate=mean"]
    )
    assert (p.rank.budget, p.train.epochs, p.model.imgsz, p.train.lr0) == (7, 5, 64, 0.05)
    assert p.rank.aggregate == "mean" and p.classes == ["raccoon"]
    assert overrides == {"rank.budget": 7, "model.imgsz": 64, "train.lr0": 0.05, "rank.aggregate": "mean"}
    assert load_settings(path, {"epochs": 3}, ["train.epochs=3"])[0].train.epochs == 3  # agreeing twice
    with pytest.raises(ParamsError, match="--epochs"):
        load_settings(path, {"epochs": 3}, ["train.epochs=4"])
    with pytest.raises(ParamsError, match="train.epoch"):
        load_settings(path, {}, ["train.epoch=4"])
    with pytest.raises(ParamsError, match="train.epochs"):
        load_settings(path, {}, ["train.epochs=0"])
    with pytest.raises(ParamsError, match="section.key=value"):
        load_settings(path, {}, ["train.epochs"])


def test_the_command_registers_and_documents_its_options():
    app = typer.Typer()
    app.command("simulate")(simulate_command)
    app.command("other")(lambda: None)  # a second command keeps typer from flattening the app
    result = CliRunner().invoke(app, ["simulate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in (
        "--pool",
        "--strategies",
        "--seeds",
        "--cycles",
        "--budget",
        "--epochs",
        "--pool-share",
        "--out",
    ):
        assert option in result.output
    assert "--set" in result.output and "-S" in result.output and "--screen" in result.output


# ---------------------------------------------------------------------------------------------
# The driver with a stand-in model: what it selects, pairs and writes, without YOLO


class FakeModel:
    """Stands in for ultralytics: embeddings and box confidences by image name, training that only
    records what it was asked, and a fixed test score."""

    def __init__(
        self,
        embeddings: dict[str, list[float]] | None = None,
        boxes: dict[str, list[float]] | None = None,
        epochs_run: list[tuple[float, float]] | None = None,
    ):
        self.embeddings, self.boxes = embeddings or {}, boxes or {}
        self.epochs_run = epochs_run or []  # (val map50, map50-95) per epoch; none: 0.5, 0.25 each
        self.kill_after: int | None = None  # as if the process died once this many epochs were saved
        self.trained: list[tuple[int, int]] = []  # (seed, epochs) per training
        self.train_options: list[dict] = []  # patience (and resume) as each training got them
        self.detectors: list[str] = []  # the weights of each detector built
        self.predicted: list[list[str]] = []  # the ids of each predict_files call
        self.eval_threads: list[int | None] = []  # model.threads as each evaluate got it

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeModel:
        monkeypatch.setattr(acorn.model.training, "train", self.train)
        monkeypatch.setattr(acorn.model.training, "evaluate", self.evaluate)
        monkeypatch.setattr(acorn.model.detection, "Detector", self.detector)
        monkeypatch.setattr(acorn.model.detection, "predict_files", self.predict_files)
        return self

    def train(self, start, data_yaml, config, workdir, on_epoch=None, resume=False, **kwargs) -> Path:
        """Like ultralytics' (and acorn.model.training.train's resume): a row of results.csv and last.pt
        (here: the number of epochs done) after every epoch; with ``resume`` a stopped run goes on
        after the epochs its last.pt holds, else it starts over."""
        self.trained.append((config.seed, config.epochs))
        self.train_options.append(
            {"patience": config.patience, **kwargs, **({"resume": True} if resume else {})}
        )
        weights = workdir / "train" / "weights"
        done = int((weights / "last.pt").read_text()) if resume and (weights / "last.pt").is_file() else 0
        if not done:
            shutil.rmtree(workdir / "train", ignore_errors=True)
        weights.mkdir(parents=True, exist_ok=True)
        scores = self.epochs_run or [(0.5, 0.25)] * config.epochs
        for epoch, (map50, map50_95) in enumerate(scores[: config.epochs], start=1):
            if epoch <= done:
                continue
            with open(workdir / "train" / "results.csv", "a") as results:
                if epoch == 1:
                    results.write("epoch, train/box_loss, metrics/mAP50(B), metrics/mAP50-95(B)\n")
                results.write(f"{epoch}, 1.0, {map50}, {map50_95}\n")
            (weights / "last.pt").write_text(str(epoch))
            if on_epoch is not None:
                on_epoch({"train/box_loss": 1.0, "val/map50": map50, "val/map50_95": map50_95})
            if epoch == self.kill_after:
                raise KeyboardInterrupt(f"killed after epoch {epoch}")
        (weights / "best.pt").write_text("fake")  # the epoch kept: the best on the validation set
        return weights / "best.pt"

    def evaluate(self, _weights, data_yaml, *_args, **kwargs) -> acorn.model.training.EvalMetrics:
        """A fixed score: map50 0.5 on the test set, 0.7 on the validation set."""
        self.eval_threads.append(kwargs.get("threads"))
        map50 = 0.7 if Path(data_yaml).parent.name == "val" else 0.5
        return acorn.model.training.EvalMetrics(map50=map50, map50_95=0.25, precision=0.5, recall=0.5)

    def detector(self, config) -> SimpleNamespace:
        self.detectors.append(Path(config.weights).name)
        return SimpleNamespace(config=config)

    def predict_files(self, _detector, images, tile_ids, chunk=64):
        self.predicted.append(list(tile_ids))
        names = [Path(i).stem for i in images]
        conf = [(t, c) for t, n in zip(tile_ids, names, strict=True) for c in self.boxes.get(n, [])]
        boxes = pd.DataFrame(conf, columns=["tile_id", "confidence"]).assign(
            class_id=0, x1=0.0, y1=0.0, x2=1.0, y2=1.0
        )
        emb = [np.asarray(self.embeddings.get(n, [0.0, 0.0]), dtype=np.float32) for n in names]
        top = [max(self.boxes.get(n, [0.0])) for n in names]
        yield acorn.model.detection.Detections(
            boxes=boxes,
            tiles=pd.DataFrame({"tile_id": list(tile_ids), "embedding": emb, "max_confidence": top}),
        )


def fake_base(tmp_path: Path) -> Path:
    base = tmp_path / "base.pt"
    base.write_bytes(b"not read: only hashed")
    return base


@pytest.mark.parametrize("strategy", ["diversity", "hybrid"])
def test_diversity_sees_what_is_already_labeled(tmp_path, monkeypatch, strategy):
    """Labeled items img00 and img01 sit at the origin; img02 sits between them. Without the labeled
    items' embeddings k-center starts from the pool's most typical item, img02, right next to
    them; with them it takes the two far items."""
    model = FakeModel(
        embeddings={
            "img00": [0, 0],
            "img01": [0.2, 0],
            "img02": [0.1, 0],
            "img03": [10, 0],
            "img04": [0, 10],
        }
    ).install(monkeypatch)
    pool = pools.folder_pool(
        yolo_folder(tmp_path / "pool", 5),
        ["raccoon"],
        0.2,
        yolo_folder(tmp_path / "t", 2, prefix="t"),
        val_folder(tmp_path),
    )
    config = SimulateConfig(
        settings(rank__budget=2, model__base=str(fake_base(tmp_path))),
        strategies=(strategy,),
        seeds=1,
        cycles=2,
    )
    out = tmp_path / "out"
    out.mkdir()
    write_csv(selections_frame({(strategy, 0, 1): ["img00", "img01"]}), out / cv.SELECTIONS)
    simulate(pool, config, out)
    picks = pd.read_csv(out / cv.SELECTIONS)
    assert picks.loc[picks["cycle"] == 2, "tile_id"].tolist() == ["img04", "img03"]
    # the cycle-1 model predicted the whole pool: labeled items for their embeddings too
    assert any(sorted(ids) == [f"img{i:02d}" for i in range(5)] for ids in model.predicted)


def test_runs_of_one_seed_are_paired_across_strategies(tmp_path, monkeypatch):
    model = FakeModel(boxes={"img01": [0.5], "img03": [0.3]}).install(monkeypatch)
    pool = pools.folder_pool(
        yolo_folder(tmp_path / "pool", 8),
        ["raccoon"],
        0.2,
        yolo_folder(tmp_path / "t", 4, prefix="t"),
        val_folder(tmp_path),
    )
    p = settings(rank__budget=2, model__base=str(fake_base(tmp_path)), train__seed=5, model__threads=3)
    config = SimulateConfig(
        p, strategies=("random", "entropy", "diversity"), seeds=2, cycles=2, full_epochs=3
    )
    result = simulate(pool, config, tmp_path / "out")

    # every run starts from the one base model: its test score, evaluated once, is every cycle-0 row
    zero = result.curves[result.curves["cycle"] == 0]
    assert len(zero) == 6 and zero[["map50", "map50_95"]].drop_duplicates().shape[0] == 1
    assert model.detectors.count("base.pt") == 2  # base: the pool once, its empty test images once
    # run s fine-tunes with seed s whatever the strategy (train.seed is not read); reference: seed 0.
    # Seed-major: every strategy of seed 0 (2 cycles each), then of seed 1, so a stopped run is paired
    assert model.trained == [(0, 8)] * 6 + [(1, 8)] * 6 + [(0, 3)]
    assert model.eval_threads and set(model.eval_threads) == {3}  # model.threads reaches every test
    # random's batch is the seeded order every strategy breaks its ties with
    picks = pd.read_csv(tmp_path / "out" / cv.SELECTIONS)
    for seed in (0, 1):
        expected = Random().select(None, pool.items[["tile_id"]], 2, selection_seed(seed, 1))
        first = picks[(picks["strategy"] == "random") & (picks["seed"] == seed) & (picks["cycle"] == 1)]
        assert first["tile_id"].tolist() == expected
    # the false-alarm rate is measured on the test set's empty images (t00: the only one of 4)
    assert result.curves["false_alarm_rate"].eq(0.0).all()
    # every row holds the test score (reported) and the validation score (what a choice reads)
    assert result.curves["map50"].eq(0.5).all() and result.curves["val_map50"].eq(0.7).all()


def test_a_cold_start_gives_every_strategy_the_same_first_batch(tmp_path, monkeypatch):
    FakeModel().install(monkeypatch)
    pool = pools.folder_pool(
        yolo_folder(tmp_path / "pool", 12),
        ["raccoon"],
        0.2,
        yolo_folder(tmp_path / "t", 2, prefix="t"),
        val_folder(tmp_path),
    )
    config = SimulateConfig(
        settings(rank__budget=3, model__base="yolov8n.yaml"),
        strategies=("entropy", "diversity"),
        seeds=2,
        cycles=1,
    )
    simulate(pool, config, tmp_path / "out")
    picks = pd.read_csv(tmp_path / "out" / cv.SELECTIONS)
    batches = picks.groupby(["seed", "strategy"])["tile_id"].agg(tuple).unstack("strategy")
    assert (batches["entropy"] == batches["diversity"]).all()  # paired within a seed
    assert batches.loc[0, "entropy"] != batches.loc[1, "entropy"]  # and seeds differ


def test_screen_measures_first_batch_hit_rates_without_training(tmp_path, monkeypatch):
    # img00 and img04 are empty (no label file). Entropy (max) picks the boxes nearest 0.5: img00
    # (0.5) and img01 (0.45), one hit in two; least_confidence (min) the faintest: img03 (0.3) and
    # img01 (0.45), two hits in two
    model = FakeModel(boxes={"img00": [0.5], "img01": [0.45], "img02": [0.99], "img03": [0.3]}).install(
        monkeypatch
    )
    pool = pools.folder_pool(
        yolo_folder(tmp_path / "pool", 8),
        ["raccoon"],
        0.2,
        yolo_folder(tmp_path / "t", 2, prefix="t"),
        val_folder(tmp_path),
    )
    config = SimulateConfig(
        settings(rank__budget=2, model__base=str(fake_base(tmp_path))),
        strategies=("random", "entropy:max", "least_confidence:min"),
        seeds=2,
    )
    found = screen(pool, config, tmp_path / "out")
    runs = found.runs.set_index(["strategy", "seed"])
    assert runs.loc[("entropy:max", 0), ["picked", "hits"]].tolist() == [2, 1]
    assert runs.loc[("least_confidence:min", 1), "hit_rate"] == 1.0
    assert found.table["strategy"].tolist()[0] == "least_confidence:min"  # best first
    assert found.base_rate == pytest.approx(6 / 8)
    assert model.trained == [] and model.detectors == ["base.pt"]  # one predict pass, shared
    assert pd.read_csv(tmp_path / "out" / out_files.SCREEN).shape == (6, 5)
    assert "0.750" in (tmp_path / "out" / report.SCREEN_REPORT).read_text()
    assert not (tmp_path / "out" / out_files.CONFIG).exists()
    cold = SimulateConfig(settings(model__base="yolov8n.yaml"), strategies=("random",))
    with pytest.raises(ParamsError, match="screening"):
        screen(pool, cold, tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# predict.candidates: only a candidate subset is predicted and ranked, as in the pipeline


def candidate_pool(tmp_path: Path) -> pools.Pool:
    """40 items, no test split taken from them (a separate test folder)."""
    return pools.folder_pool(
        yolo_folder(tmp_path / "pool", 40),
        ["raccoon"],
        0.2,
        yolo_folder(tmp_path / "t", 2, prefix="t"),
        val_folder(tmp_path),
    )


# confidences spread over (0, 1): every item has one box, so every tile is more or less undecided
SPREAD = {f"img{i:02d}": [round(0.02 + 0.024 * ((i * 17) % 40), 3)] for i in range(40)}


def candidate_config(tmp_path: Path, strategies=("entropy",), cycles=3, **overrides) -> SimulateConfig:
    p = settings(
        rank__budget=2,
        model__base=str(fake_base(tmp_path)),
        predict__candidates=10,
        predict__carry_over=0.5,
        **overrides,
    )
    return SimulateConfig(p, strategies=strategies, seeds=1, cycles=cycles)


def pool_calls(model: FakeModel) -> list[list[str]]:
    """The ids of each predict call on pool items (not the test set's empty image)."""
    return [ids for ids in model.predicted if set(ids) <= set(SPREAD)]


def test_only_the_candidates_are_predicted_and_the_batch_comes_from_them(tmp_path, monkeypatch):
    model = FakeModel(boxes=SPREAD).install(monkeypatch)
    pool = candidate_pool(tmp_path)
    simulate(pool, candidate_config(tmp_path), tmp_path / "out")
    picks = pd.read_csv(tmp_path / "out" / cv.SELECTIONS)
    pool_predictions = pool_calls(model)
    assert len(pool_predictions) == 3  # cycles 1, 2, 3: base, then the cycle-1 and cycle-2 models
    labeled: set[str] = set()
    for cycle, ids in enumerate(pool_predictions, start=1):
        assert len(ids) == 10 and not labeled & set(ids)  # 10 unlabeled candidates, not 40 - labeled
        batch = picks.loc[picks["cycle"] == cycle, "tile_id"].tolist()
        assert len(batch) == 2 and set(batch) <= set(ids)  # ranked among the candidates only
        labeled |= set(batch)
    # cycle 1's candidates are the pipeline's: a stratified sample seeded with selection_seed
    first = select_candidates(pool.items, 10, selection_seed(0, 1))
    assert sorted(pool_predictions[0]) == sorted(first["tile_id"])
    # the base model predicted 10 items, not the pool, and the false-alarm pass its one empty image
    assert model.detectors.count("base.pt") == 2
    assert "10 candidates/cycle" in (tmp_path / "out" / report.REPORT).read_text()  # said in the report


def test_the_most_undecided_candidates_are_carried_to_the_next_cycle(tmp_path, monkeypatch):
    model = FakeModel(boxes=SPREAD).install(monkeypatch)
    simulate(candidate_pool(tmp_path), candidate_config(tmp_path, cycles=2), tmp_path / "out")
    first, second = pool_calls(model)
    conf = {t: SPREAD[t][0] for t in first}
    # top_tiles: the 5 (0.5 of 10) whose best box is nearest 0.5; the next cycle predicts the 3 of
    # them not labeled in between, whatever its own sample draws
    top = sorted(first, key=lambda t: (abs(conf[t] - 0.5), t))[:5]
    carried = json.loads((tmp_path / "out" / out_files.CARRY_OVER / "entropy-s0.json").read_text())
    assert carried["2"] == top
    batch = pd.read_csv(tmp_path / "out" / cv.SELECTIONS).query("cycle == 1")["tile_id"].tolist()
    assert len(set(top) - set(batch)) == 3 and set(top) - set(batch) <= set(second)


def test_labeled_items_are_predicted_only_for_the_strategies_reading_their_embeddings(tmp_path, monkeypatch):
    model = FakeModel(boxes=SPREAD).install(monkeypatch)
    config = candidate_config(tmp_path, strategies=("entropy", "diversity", "random"), cycles=2)
    simulate(candidate_pool(tmp_path), config, tmp_path / "out")
    picks = pd.read_csv(tmp_path / "out" / cv.SELECTIONS)
    sizes = [len(ids) for ids in pool_calls(model)]
    # seed 0 cycle 1: entropy's 10 candidates, diversity's are the same (shared base predictions),
    # random predicts nothing; cycle 2: entropy 10, diversity 10 + its 2 labeled items
    assert sizes == [10, 10, 12]
    diversity = picks[picks["strategy"] == "diversity"]
    labeled = diversity.loc[diversity["cycle"] == 1, "tile_id"].tolist()
    assert set(labeled) <= set(pool_calls(model)[-1])


def test_a_resumed_run_selects_what_an_uninterrupted_one_does(tmp_path, monkeypatch):
    FakeModel(boxes=SPREAD).install(monkeypatch)
    pool = candidate_pool(tmp_path)
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    simulate(pool, candidate_config(tmp_path, cycles=4), whole)
    for cycles in (1, 2, 4):  # stopped after cycle 1, then after 2, then finished
        simulate(pool, candidate_config(tmp_path, cycles=cycles), resumed)
    assert (resumed / cv.SELECTIONS).read_bytes() == (whole / cv.SELECTIONS).read_bytes()

    # without what cycle 3 carried over, its selection could not be repeated: refused, not guessed
    picks = pd.read_csv(whole / cv.SELECTIONS)
    write_csv(picks[picks["cycle"] < 3], whole / cv.SELECTIONS)
    write_csv(pd.read_csv(whole / cv.CURVES).query("cycle < 3"), whole / cv.CURVES)
    carry = whole / out_files.CARRY_OVER / "entropy-s0.json"
    stored = json.loads(carry.read_text())
    write_json(carry, {k: v for k, v in stored.items() if k != "3"})
    with pytest.raises(InputError, match="no carried tiles for entropy seed 0 cycle 3"):
        simulate(pool, candidate_config(tmp_path, cycles=4), whole)
    write_json(carry, stored)  # put back: the same selections again
    simulate(pool, candidate_config(tmp_path, cycles=4), whole)
    assert (whole / cv.SELECTIONS).read_bytes() == (resumed / cv.SELECTIONS).read_bytes()


def test_seeds_split_across_folders_merge_into_what_one_run_writes(tmp_path, monkeypatch):
    model = FakeModel(boxes=SPREAD).install(monkeypatch)
    pool = candidate_pool(tmp_path)
    both = replace(candidate_config(tmp_path, strategies=("random", "entropy"), cycles=2), seeds=2)
    whole = tmp_path / "whole"
    simulate(pool, both, whole)
    parts = [tmp_path / f"part{seed}" for seed in (0, 1)]
    for seed, part in enumerate(parts):
        simulate(pool, replace(both, seeds=1, first_seed=seed), part)
    assert set(pd.read_csv(parts[1] / cv.CURVES)["seed"]) == {1}  # only its own seed
    assert "seed 1" in (parts[1] / report.REPORT).read_text()

    trained = len(model.trained)
    merged = tmp_path / "merged"
    result = simulate(pool, both, merged, merge=parts)
    assert len(model.trained) == trained  # every run came from the parts: nothing trained again
    for name in (cv.CURVES, cv.SELECTIONS, out_files.COMPARISON):
        assert (merged / name).read_bytes() == (whole / name).read_bytes(), name
    assert result.comparison["seeds"].tolist() == [2, 2]
    # what a resume with more cycles reads came along: the runs' models and carried tiles
    assert sorted(f.name for f in (merged / "models").iterdir()) == sorted(
        f.name for f in (whole / "models").iterdir()
    )
    assert (merged / out_files.CARRY_OVER / "entropy-s1.json").read_bytes() == (
        whole / out_files.CARRY_OVER / "entropy-s1.json"
    ).read_bytes()
    simulate(pool, both, merged, merge=parts)  # the same runs again: identical, accepted
    simulate(pool, both, merged, merge=[merged])  # the output folder itself: nothing to add

    # a part that a simulation is still writing would give half a run: refused until it ends, and
    # before anything of the other parts is taken
    fresh = tmp_path / "fresh"
    with (
        sole_writer(parts[1] / "work", "acorn simulate"),
        pytest.raises(FolderBusyError, match=rf"part1/work: in use by acorn simulate \(pid {os.getpid()}\)"),
    ):
        simulate(pool, both, fresh, merge=parts)
    assert sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*")) == ["work", "work/.lock"]

    # one run with two different records cannot be told apart: refused, naming both folders
    curves = pd.read_csv(parts[1] / cv.CURVES)
    write_csv(curves.assign(map50=curves["map50"] + 0.1), parts[1] / cv.CURVES)
    with pytest.raises(InputError, match=r"part1: entropy seed 1 is also in .*merged with other results"):
        simulate(pool, both, merged, merge=parts)
    other = replace(both, params=both.params.with_overrides({"train.lr0": 0.02}))
    with pytest.raises(
        ParamsError, match=r"part0.*config\.json: made with other settings \(train\.lr0 differ"
    ):
        simulate(pool, other, tmp_path / "elsewhere", merge=parts[:1])
    with pytest.raises(InputError, match="nothing.*not found"):
        simulate(pool, both, merged, merge=[tmp_path / "nothing"])
    with pytest.raises(ParamsError, match="first-seed"):
        replace(both, first_seed=-1)


# ---------------------------------------------------------------------------------------------
# Resume without training


def finished_folder(tmp_path: Path) -> tuple[pools.Pool, SimulateConfig, Path]:
    """An output folder whose every row is done, written by hand: a re-run must train nothing.

    Two seeds; entropy's AUC is 0.1 (seed 0) and 0.2 (seed 1) above random's, its last model flags
    0.5 of the empty test images against random's 0.2; entropy's batches hold objects, random's not.
    """
    pool = pools.folder_pool(
        yolo_folder(tmp_path / "set", 20),
        ["raccoon"],
        0.2,
        yolo_folder(tmp_path / "t", 4, prefix="t"),
        val_folder(tmp_path),
    )
    config = SimulateConfig(
        settings(rank__budget=2, model__base=str(fake_base(tmp_path))),
        strategies=("random", "entropy"),
        seeds=2,
        cycles=1,
    )
    out = tmp_path / "out"
    OutputFolder(pool, config, out).check_config()  # writes config.json
    rows = [
        ("random", 0, 0, 0, 0.1, 0.1, 0.2),
        ("random", 0, 1, 2, 0.4, 0.1, 0.2),
        ("random", 1, 0, 0, 0.1, 0.1, 0.2),
        ("random", 1, 1, 2, 0.2, 0.1, 0.2),
        ("entropy", 0, 0, 0, 0.1, 0.1, 0.2),
        ("entropy", 0, 1, 2, 0.6, 0.1, 0.5),
        ("entropy", 1, 0, 0, 0.1, 0.1, 0.2),
        ("entropy", 1, 1, 2, 0.6, 0.1, 0.5),
    ]
    write_csv(curves_frame(rows), out / cv.CURVES)
    batches = {
        ("random", 0, 1): ["img00", "img04"],
        ("random", 1, 1): ["img08", "img12"],
        ("entropy", 0, 1): ["img01", "img02"],
        ("entropy", 1, 1): ["img03", "img05"],
    }
    write_csv(selections_frame(batches), out / cv.SELECTIONS)
    write_json(
        out / out_files.REFERENCE,
        {"labeled_tiles": 20, "epochs": 8, "seed": 0, "map50": 0.6, "map50_95": 0.2},
    )
    return pool, config, out


def fail(*_args, **_kwargs):
    raise AssertionError("a finished simulation must not train, evaluate or predict")


@pytest.fixture
def no_work(monkeypatch):
    for module, name in (
        (acorn.model.training, "train"),
        (acorn.model.training, "evaluate"),
        (acorn.model.detection, "Detector"),
    ):
        monkeypatch.setattr(module, name, fail)


def test_a_finished_folder_is_summarised_without_any_work(tmp_path, no_work):
    pool, config, out = finished_folder(tmp_path)
    before = (out / cv.CURVES).read_bytes()
    result = simulate(pool, config, out)
    assert (out / cv.CURVES).read_bytes() == before
    # target 0.95 * 0.6 = 0.57: entropy reached 0.6 at 2 tiles in both seeds, random never did
    table = result.strategies.set_index("strategy")
    assert table.loc["entropy", "labels_mean"] == 2 and table.loc["random", "reached"] == 0
    # AUC: random (0.1 + 0.4) / 2 = 0.25 and 0.15; entropy 0.35 and 0.35: differences 0.1 and 0.2
    e = result.comparison.set_index("strategy").loc["entropy"]
    # t(1) 90% = 6.314: 0.15 +- 6.314 x 0.0707 / sqrt 2; the bootstrap's [0.1, 0.2] beside it; p = 2/4
    assert e[["auc_diff", "auc_low", "auc_high"]].tolist() == pytest.approx([0.15, -0.1657, 0.4657], abs=1e-4)
    assert e[["auc_boot_low", "auc_boot_high", "auc_p"]].tolist() == pytest.approx([0.1, 0.2, 0.5])
    assert e["false_alarm_diff"] == pytest.approx(0.3) and e["hit_rate"] == 1.0
    assert result.comparison.set_index("strategy").loc["random", "hit_rate"] == 0.0
    assert pd.read_csv(out / out_files.HIT_RATES)["hit_rate"].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert (out / report.PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / report.REPORT).read_text()
    assert "not reached" in text and "+0.150 [-0.166, +0.466]" in text and "[+0.100, +0.200]" in text
    assert "not shown" in text and "sign-flip" in text
    assert "+0.300 [+0.300, +0.300] (more)" in text and "base rate" in text
    hit_section = text.split("## Hit rate per cycle")[1].split("##")[0]
    lines = [line for line in hit_section.splitlines() if line.startswith("|")]
    rows = [[c.strip() for c in line.split("|")[1:3]] for line in lines[2:]]
    assert rows == [["random", "0.000"], ["entropy", "1.000"]]
    assert pd.read_csv(out / out_files.SUMMARY)["strategy"].tolist() == [
        "random",
        "random",
        "entropy",
        "entropy",
    ]
    assert pd.read_csv(out / out_files.COMPARISON)["strategy"].tolist() == ["random", "entropy"]


def test_full_epochs_zero_trains_no_reference_and_reports_no_target(tmp_path, no_work):
    pool, config, out = finished_folder(tmp_path)
    (out / out_files.REFERENCE).unlink()  # a reference would otherwise have to be trained (no_work: fails)
    with pytest.raises(ParamsError, match="full-epochs"):
        SimulateConfig(config.params, full_epochs=-1)
    bare = SimulateConfig(config.params, strategies=config.strategies, seeds=2, cycles=1, full_epochs=0)
    result = simulate(pool, bare, out)
    assert result.reference is None and result.target is None and not (out / out_files.REFERENCE).exists()
    assert result.strategies["reached"].tolist() == [0, 0]
    text = (out / report.REPORT).read_text()
    assert "not trained (--full-epochs 0)" in text and "n/a (no target)" in text
    # random gains 0.3 and 0.1 over cycle 0 (t(1): 0.2 +- 6.314 x 0.1), entropy 0.5 in both seeds
    assert "+0.200 [-0.431, +0.831]" in text and "+0.500 [+0.500, +0.500]" in text
    assert (out / report.PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_reference_can_train_to_convergence_and_says_whether_it_did(tmp_path, monkeypatch, caplog):
    pool, config, out = finished_folder(tmp_path)
    (out / out_files.REFERENCE).unlink()
    # four epochs reported, then (as if early stopping ended it) no more: the best is epoch 2
    model = FakeModel(epochs_run=[(0.3, 0.10), (0.5, 0.20), (0.6, 0.15), (0.5, 0.18)]).install(monkeypatch)
    early = replace(config, full_epochs=6, full_patience=2)
    result = simulate(pool, early, out)
    assert model.train_options == [{"patience": 2, "resume": True}]
    assert result.reference["epochs_run"] == 4 and result.reference["best_epoch"] == 2
    assert result.reference["converged"] and result.reference["patience"] == 2
    epochs = pd.read_csv(out / out_files.REFERENCE_EPOCHS)
    assert epochs["epoch"].tolist() == [1, 2, 3, 4] and epochs["val/map50"].tolist() == [0.3, 0.5, 0.6, 0.5]
    assert "stopped at epoch 4 of up to 6" in (out / report.REPORT).read_text()
    simulate(pool, early, out)  # the same reference asked again: not retrained
    assert len(model.trained) == 1

    # every epoch used (no early stopping): a lower bound, said in the log and the report
    model.epochs_run = model.epochs_run[:3]
    with caplog.at_level("WARNING", logger="acorn"):
        result = simulate(pool, replace(config, full_epochs=3), out)
    assert model.train_options[-1] == {"patience": 0, "resume": True} and not result.reference["converged"]
    assert "lower bound" in caplog.text and "--full-patience" in caplog.text
    assert "3 epochs, not levelled off: a lower bound" in (out / report.REPORT).read_text()
    with pytest.raises(ParamsError, match="full-patience"):
        replace(config, full_patience=-1)
    with pytest.raises(ParamsError, match="--full-epochs 0 trains none"):
        replace(config, full_epochs=0, full_patience=5)


def test_a_reference_killed_midway_resumes_from_its_last_epoch(tmp_path, monkeypatch):
    """The reference can train for hours on a CPU: a kill loses the epoch under way, not the run."""
    pool, config, out = finished_folder(tmp_path)
    (out / out_files.REFERENCE).unlink()
    model = FakeModel(epochs_run=[(0.3, 0.10), (0.5, 0.20), (0.6, 0.15), (0.5, 0.18)]).install(monkeypatch)
    model.kill_after = 2
    long = replace(config, full_epochs=4)
    with pytest.raises(KeyboardInterrupt):
        simulate(pool, long, out)
    assert not (out / out_files.REFERENCE).exists()
    model.kill_after = None
    result = simulate(pool, long, out)
    assert model.train_options[-1]["resume"] is True
    epochs = pd.read_csv(out / out_files.REFERENCE_EPOCHS)  # two epochs before the kill, two after it
    assert epochs["epoch"].tolist() == [1, 2, 3, 4] and epochs["val/map50"].tolist() == [0.3, 0.5, 0.6, 0.5]
    assert result.reference["epochs_run"] == 4 and result.reference["best_epoch"] == 2
    assert not (out / "work" / "reference").exists()  # stored in reference.json: the folder goes

    # a killed reference asked again with other --full-epochs starts over: its epochs are not these
    (out / out_files.REFERENCE).unlink()
    model.kill_after = 2
    with pytest.raises(KeyboardInterrupt):
        simulate(pool, long, out)
    model.kill_after, model.epochs_run = None, [(0.1, 0.05), (0.2, 0.1), (0.4, 0.2)]
    simulate(pool, replace(config, full_epochs=3), out)
    assert pd.read_csv(out / out_files.REFERENCE_EPOCHS)["val/map50"].tolist() == [0.1, 0.2, 0.4]

    # killed while last.pt was written (unreadable: the trainer starts over): no epoch counted twice
    (out / out_files.REFERENCE).unlink()
    model.kill_after = 2
    with pytest.raises(KeyboardInterrupt):
        simulate(pool, long, out)
    (out / "work" / "reference" / "train" / "weights" / "last.pt").unlink()
    model.kill_after = None
    result = simulate(pool, long, out)
    assert pd.read_csv(out / out_files.REFERENCE_EPOCHS)["epoch"].tolist() == [1, 2, 3]
    assert result.reference["epochs_run"] == 3


def test_a_folder_made_with_other_settings_is_refused(tmp_path, no_work):
    pool, config, out = finished_folder(tmp_path)
    p = config.params.with_overrides({"rank.budget": 3, "train.lr0": 0.02})
    with pytest.raises(ParamsError, match=r"rank\.budget, train\.lr0 differ"):
        simulate(pool, SimulateConfig(p, strategies=config.strategies, seeds=2, cycles=1), out)
    # what may grow does not count: more seeds and cycles resume the same folder
    OutputFolder(pool, SimulateConfig(config.params, seeds=5, cycles=9), out).check_config()


# ---------------------------------------------------------------------------------------------
# One tiny real simulation: untrained base, 24 pool images at imgsz 64, 1 epoch per cycle


@pytest.fixture(scope="module")
def tiny_raccoons(tmp_path_factory) -> tuple[Path, Path, Path]:
    """30 real raccoon photos as the pool, 8 more as the test set (4 of them labeled empty, for the
    false-alarm rate), 6 more as the validation set (root / "val"), a params.yaml, and an untrained
    yolov8n saved as base."""
    if not (RACCOON / "images").is_dir():
        pytest.skip(f"{RACCOON} is not here")
    root = tmp_path_factory.mktemp("simulate")
    images = sorted((RACCOON / "images").glob("*.jpg"))
    for name, chosen in (("raccoon", images[:30]), ("test", images[30:38]), ("val", images[38:44])):
        folder = root / name
        (folder / "images").mkdir(parents=True)
        (folder / "labels").mkdir()
        for i, image in enumerate(chosen):
            (folder / "images" / image.name).symlink_to(image)
            label = folder / "labels" / f"{image.stem}.txt"
            if name == "test" and i % 2:
                label.write_text("")
            else:
                label.symlink_to(RACCOON / "labels" / f"{image.stem}.txt")
        (folder / "classes.txt").write_text((RACCOON / "classes.txt").read_text())
    (root / "params.yaml").write_text("classes: [raccoon]\ntrain: {batch: 8, replay_images: 0}\n")

    from ultralytics import YOLO  # offline: `import acorn` (above) set it up

    YOLO("yolov8n.yaml").save(root / "base.pt")
    return root, root / "raccoon", root / "test"


def run_cli(root: Path, folder: Path, test: Path, cycles: int) -> None:
    app = typer.Typer()
    app.command("simulate")(simulate_command)
    app.command("other")(lambda: None)
    args = ["simulate", "--params", str(root / "params.yaml"), "--pool", str(folder), "--test", str(test)]
    args += ["--base", str(root / "base.pt"), "--strategies", "random,hybrid", "--seeds", "2"]
    args += ["--cycles", str(cycles), "--budget", "4", "--epochs", "1", "-S", "model.imgsz=64"]
    args += ["-S", f"val.data={root / 'val'}", "--out", str(root / "out")]
    result = CliRunner().invoke(app, args)
    if result.exception is not None:
        raise result.exception
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_tiny_simulation_writes_curves_and_resumes_without_redoing_work(tiny_raccoons, monkeypatch):
    root, folder, test = tiny_raccoons
    out = root / "out"

    run_cli(root, folder, test, cycles=2)
    curves = pd.read_csv(out / cv.CURVES)
    assert len(curves) == 2 * 2 * 3  # strategies x seeds x cycles 0, 1, 2
    assert curves.groupby("cycle")["labeled_tiles"].unique().map(list).to_dict() == {0: [0], 1: [4], 2: [8]}
    assert curves["map50"].between(0, 1).all() and curves["map50_95"].between(0, 1).all()
    assert curves["false_alarm_rate"].between(0, 1).all()  # measured on the 4 empty test images
    selections = pd.read_csv(out / cv.SELECTIONS)
    for _, run in selections.groupby(["strategy", "seed"]):
        assert run["cycle"].tolist() == [1] * 4 + [2] * 4 and run["tile_id"].is_unique  # never twice
    reference = json.loads((out / out_files.REFERENCE).read_text())
    assert reference["labeled_tiles"] == 30 and reference["epochs"] == 1
    # real ultralytics epochs reach the convergence record (one epoch, no early stopping: not converged)
    assert (reference["epochs_run"], reference["best_epoch"], reference["converged"]) == (1, 1, False)
    assert json.loads((out / out_files.CONFIG).read_text())["model.imgsz"] == 64
    assert sorted(p.name for p in (out / "models").iterdir()) == [
        f"{s}-s{seed}-c2.pt" for s in ("hybrid", "random") for seed in (0, 1)
    ]
    summary = pd.read_csv(out / out_files.SUMMARY)
    assert summary[["strategy", "cycle"]].values.tolist() == [
        [s, c] for s in ("random", "hybrid") for c in range(3)
    ]
    assert (summary["seeds"] == 2).all()
    assert pd.read_csv(out / out_files.HIT_RATES)["hit_rate"].eq(1.0).all()  # every pool photo has a raccoon
    assert (out / report.PLOT).stat().st_size > 1000 and "hybrid" in (out / report.REPORT).read_text()

    # a re-run does nothing at all: no training, evaluation or prediction, rows unchanged
    before = {name: (out / name).read_bytes() for name in (cv.CURVES, cv.SELECTIONS, out_files.REFERENCE)}
    real_train, real_predict = acorn.model.training.train, acorn.model.detection.predict_files
    for module, name in (
        (acorn.model.training, "train"),
        (acorn.model.training, "evaluate"),
        (acorn.model.detection, "Detector"),
    ):
        monkeypatch.setattr(module, name, fail)
    run_cli(root, folder, test, cycles=2)
    assert {name: (out / name).read_bytes() for name in before} == before

    # killed after selecting cycle 2 but before its row: the recorded batch is trained, not re-selected
    monkeypatch.undo()
    trained, predicted = [], []
    monkeypatch.setattr(
        acorn.model.training, "train", lambda *a, **k: trained.append(a) or real_train(*a, **k)
    )
    monkeypatch.setattr(
        acorn.model.detection,
        "predict_files",
        lambda d, images, ids, **k: predicted.extend(ids) or real_predict(d, images, ids, **k),
    )

    def cycle2(df: pd.DataFrame, strategy: str, seed: int) -> pd.Series:
        return (df["strategy"] == strategy) & (df["seed"] == seed) & (df["cycle"] == 2)

    write_csv(curves[~cycle2(curves, "hybrid", 1)], out / cv.CURVES)
    run_cli(root, folder, test, cycles=2)
    assert len(trained) == 1
    pool_ids = set(pools.folder_pool(folder, ["raccoon"], 0.2, test).items["tile_id"])
    assert predicted and pool_ids.isdisjoint(predicted)  # the test set's empty images only
    assert (out / cv.SELECTIONS).read_bytes() == before[cv.SELECTIONS]
    resumed = pd.read_csv(out / cv.CURVES)
    assert len(resumed) == len(curves) and resumed[cycle2(resumed, "hybrid", 1)][
        "labeled_tiles"
    ].tolist() == [8]

    # killed before selecting cycle 2: random re-selects the same seeded batch; hybrid needs its
    # cycle-1 model, no longer kept (only a run's latest is), so it is retrained from the replay
    trained.clear()
    redo = cycle2(curves, "random", 0) | cycle2(curves, "hybrid", 0)
    write_csv(curves[~redo], out / cv.CURVES)
    write_csv(
        selections[~(cycle2(selections, "random", 0) | cycle2(selections, "hybrid", 0))], out / cv.SELECTIONS
    )
    run_cli(root, folder, test, cycles=2)
    assert len(trained) == 3  # random cycle 2, hybrid's cycle-1 model again, hybrid cycle 2
    again = pd.read_csv(out / cv.SELECTIONS)
    assert (
        again[cycle2(again, "random", 0)]["tile_id"].tolist()
        == selections[cycle2(selections, "random", 0)]["tile_id"].tolist()
    )
    hybrid = again[(again["strategy"] == "hybrid") & (again["seed"] == 0)]
    assert len(hybrid) == 8 and hybrid["tile_id"].is_unique
    final = pd.read_csv(out / cv.CURVES)
    assert len(final) == len(curves) and (final.loc[final["cycle"] == 2, "labeled_tiles"] == 8).all()
    assert sorted(p.name for p in (out / "models").iterdir()) == [
        f"{s}-s{seed}-c2.pt" for s in ("hybrid", "random") for seed in (0, 1)
    ]

    # the screen: every strategy's first batch from the base model, no training
    trained.clear()
    app = typer.Typer()
    app.command("simulate")(simulate_command)
    app.command("other")(lambda: None)
    args = ["simulate", "--params", str(root / "params.yaml"), "--pool", str(folder), "--test", str(test)]
    args += [
        "--base",
        str(root / "base.pt"),
        "--screen",
        "--seeds",
        "1",
        "--budget",
        "4",
        "-S",
        "model.imgsz=64",
    ]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert trained == [] and len(pd.read_csv(out / out_files.SCREEN)) == len(SCREEN_STRATEGIES)


# ---------------------------------------------------------------------------------------------
# What a batch's mix of empty and positive items buys (benchmarks/batch_mix.py)


def test_mixed_batches_hold_the_share_asked_for_and_nest_within_a_seed():
    items = pd.DataFrame({"tile_id": [f"t{i:02d}" for i in range(20)], "objects": [1] * 6 + [0] * 14})
    batches = mixed_batches(items, 8, [0.0, 0.25, 0.5], seed=3)
    holding = {f"t{i:02d}" for i in range(6)}
    assert list(batches) == ["share0", "share0.25", "share0.5"]
    assert [len(b) for b in batches.values()] == [8, 8, 8]
    assert [len(holding.intersection(b)) for b in batches.values()] == [0, 2, 4]
    assert set(batches["share0.25"]) & holding <= set(batches["share0.5"])  # the same positives, more
    assert set(batches["share0.5"]) - holding <= set(batches["share0.25"])  # the same empties, fewer
    assert batches == mixed_batches(items, 8, [0.0, 0.25, 0.5], seed=3)
    assert batches != mixed_batches(items, 8, [0.0, 0.25, 0.5], seed=4)
    with pytest.raises(InputError, match="needs 8 such items"):
        mixed_batches(items, 8, [1.0], seed=0)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        mixed_batches(items, 8, [1.5], seed=0)


def test_score_batches_fine_tunes_each_batch_with_the_run_seed_and_counts_its_positives(
    tmp_path, monkeypatch
):
    model = FakeModel().install(monkeypatch)
    pool = pools.folder_pool(
        yolo_folder(tmp_path / "pool", 12),
        ["raccoon"],
        0.2,
        yolo_folder(tmp_path / "t", 4, prefix="t"),
        val_folder(tmp_path),
    )
    config = SimulateConfig(settings(model__base=str(fake_base(tmp_path))), strategies=("random",), seeds=1)
    batches = {"empty": ["img00", "img04"], "mixed": ["img00", "img01", "img02"]}
    table = pd.DataFrame(score_batches(pool, config, batches, seed=2, out=tmp_path / "out"))
    assert table[["batch", "seed", "tiles", "with_objects"]].values.tolist() == [
        ["empty", 2, 2, 0],
        ["mixed", 2, 3, 2],
    ]
    assert model.trained == [(2, 8), (2, 8)]
    assert table["map50"].tolist() == [0.5, 0.5] and table["false_alarm_rate"].notna().all()
    assert sorted(p.name for p in (tmp_path / "out" / "models").iterdir()) == [
        "empty-s2-c1.pt",
        "mixed-s2-c1.pt",
    ]


# ---------------------------------------------------------------------------------------------
# Benchmark scripts that read a finished simulation: benchmarks/paired.py, benchmarks/refit.py


def load_benchmark(name: str):
    """A script of benchmarks/ as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paired_script_reads_a_folder_against_the_baseline_it_is_given(tmp_path):
    rows = []
    for seed in range(4):
        for strategy, lift in (("random", 0.0), ("hybrid", 0.02), ("candidate", 0.05)):
            for cycle in range(3):
                level = 0.1 + cycle * (0.05 + lift) + seed * 0.01
                rows.append([strategy, seed, cycle, 50 * cycle, level, 0.1 - lift])
    curves = pd.DataFrame(
        rows, columns=["strategy", "seed", "cycle", "labeled_tiles", "map50", "false_alarm_rate"]
    )
    paired = load_benchmark("paired").paired_against(curves, "hybrid").set_index("strategy")
    diff = "AUC − hybrid [t 90% CI]"
    assert (
        paired.loc["candidate", diff] == "+0.030 [+0.030, +0.030]"
    )  # the curves differ by 0.03 at mid-budget
    assert paired.loc["random", diff] == "-0.020 [-0.020, -0.020]" and paired.loc["hybrid", diff] == ""
    assert paired.loc["candidate", "verdict"] == "better" and paired.loc["random", "verdict"] == "worse"
    only = load_benchmark("paired").paired_against(curves, "hybrid", ["candidate"])
    assert only["strategy"].tolist() == ["hybrid", "candidate"]
    with pytest.raises(InputError, match="'nope' is not in these curves"):
        load_benchmark("paired").paired_against(curves, "nope")
    # a run holding only its cycle-0 row is named, not scored as "worse"
    stopped = pd.concat([curves, curves.iloc[:1].assign(strategy="entropy:mean")], ignore_index=True)
    with pytest.raises(InputError, match="entropy:mean seed 0 is incomplete"):
        load_benchmark("paired").paired_against(stopped, "hybrid")


def test_refit_takes_every_tile_a_run_had_labeled_by_a_cycle():
    refit = load_benchmark("refit")
    picks = selections_frame(
        {("hybrid", 4, 1): ["a", "b"], ("hybrid", 4, 2): ["c", "d"], ("random", 4, 1): ["x"]}
    )
    assert refit.labeled_after(picks, "hybrid", 4, 1) == ["a", "b"]
    assert refit.labeled_after(picks, "hybrid", 4, 2) == ["a", "b", "c", "d"]
    with pytest.raises(InputError, match="hybrid seed 4 has 2 cycles of selections; --cycle 3"):
        refit.labeled_after(picks, "hybrid", 4, 3)
    with pytest.raises(InputError, match="hybrid seed 5 has 0 cycles"):
        refit.labeled_after(picks, "hybrid", 5, 1)
    assert refit.variant_overrides("train.epochs=24,train.freeze=0") == {
        "train.epochs": 24,
        "train.freeze": 0,
    }


def test_refit_retrains_a_runs_labels_and_refuses_another_pool_or_settings(tmp_path, monkeypatch, capsys):
    pool, config, out = finished_folder(tmp_path)
    model = FakeModel().install(monkeypatch)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(config.params.model_dump(mode="json")))
    monkeypatch.chdir(tmp_path)
    refit = load_benchmark("refit")

    def run_refit(*flags: str) -> None:
        run = [str(out), "--strategy", "entropy", "--seed", "1", "--cycle", "1", "--out", "refit"]
        monkeypatch.setattr(sys, "argv", ["refit.py", *run, "--variant", "train.epochs=5", *flags])
        refit.main()

    here, test = str(tmp_path / "set"), str(tmp_path / "t")  # as the simulation was given them
    val = ("-S", f"val.data={tmp_path / 'v'}")
    run_refit("--pool", here, "--test", test, *val)
    assert model.trained == [(1, 5)]  # the run's seed, the variant's epochs
    assert model.predicted[-1] == pool.test.loc[pool.test["objects"] == 0, "image"].tolist()
    rows = pd.read_csv(tmp_path / "refit" / "refit.csv")
    assert rows["batch"].tolist() == ["entropy-s1-c1 train.epochs=5"] and rows["tiles"].tolist() == [2]
    assert "entropy-s1-c1 (the simulation's recipe)" in capsys.readouterr().out
    run_refit("--pool", here, "--test", test, *val)  # done: resumed, nothing trained
    assert len(model.trained) == 1

    yolo_folder(tmp_path / "other", 20)
    with pytest.raises(SystemExit, match=r"another pool or settings \(pool differ\)"):
        run_refit("--pool", str(tmp_path / "other"), "--test", test)
    with pytest.raises(SystemExit, match=r"\(pool differ\)"):  # without --test: 20% held out instead
        run_refit("--pool", here)
    with pytest.raises(SystemExit, match=r"\(rank\.budget differ\)"):
        run_refit("--pool", here, "--test", test, *val, "-S", "rank.budget=3")


def test_each_seed_chooses_from_its_own_share_of_the_pool_frames(tmp_path, monkeypatch):
    FakeModel(boxes={f"img{i:02d}": [0.05 * (i + 1)] for i in range(16)}).install(monkeypatch)
    pool = pools.folder_pool(
        yolo_folder(tmp_path / "pool", 16),
        ["raccoon"],
        0.2,
        yolo_folder(tmp_path / "t", 2, prefix="t"),
        val_folder(tmp_path),
    )
    p = settings(rank__budget=2, model__base=str(fake_base(tmp_path)))
    with pytest.raises(ParamsError, match="pool-share"):
        SimulateConfig(p, pool_share=0.0)
    config = SimulateConfig(
        p, strategies=("random", "entropy"), seeds=3, cycles=2, full_epochs=0, pool_share=0.5
    )
    assert (
        config.identity()["pool_share"] == 0.5
        and "pool_share" not in replace(config, pool_share=1.0).identity()
    )
    out = tmp_path / "out"
    simulate(pool, config, out)
    runner = OracleStep(pool, config, OutputFolder(pool, config, out))
    shares = {seed: runner.available(seed) for seed in range(3)}
    assert all(len(ids) == 8 for ids in shares.values())  # half of the 16 items (each its own frame)
    assert len({tuple(ids) for ids in shares.values()}) == 3  # another pool in each seed
    picks = pd.read_csv(out / cv.SELECTIONS)
    for (strategy, seed), run in picks.groupby(["strategy", "seed"]):
        assert set(run["tile_id"]) <= set(shares[seed]), (strategy, seed)
    # entropy's first batch, deterministic given the pool, now differs between seeds
    first = (
        picks[(picks["strategy"] == "entropy") & (picks["cycle"] == 1)].groupby("seed")["tile_id"].agg(tuple)
    )
    assert first.nunique() > 1
    assert "each seed 50% of the pool's frames" in (out / report.REPORT).read_text()


# ---------------------------------------------------------------------------------------------
# labeling.noise: the simulation's oracle labels as `dvc repro`'s does


def test_a_noisy_oracle_trains_on_the_answers_the_pipelines_oracle_gives(tmp_path):
    from acorn.labeling.noise import PoolReference, noisy_label_text

    pool = candidate_pool(tmp_path)
    rates = {"labeling.noise.emptied": 0.5, "labeling.noise.shifted": 0.5, "labeling.noise.seed": 3}
    clean = SimulateConfig(settings(rank__budget=2, model__base=str(fake_base(tmp_path))))
    noisy = SimulateConfig(clean.params.with_overrides(rates))
    assert not any(k.startswith("labeling") for k in clean.identity())  # clean folders resume as before
    assert noisy.identity()["labeling.noise.emptied"] == 0.5  # a noisy run never resumes a clean one

    folder = tmp_path / "out"
    runner = OracleStep(pool, noisy, OutputFolder(pool, noisy, folder))
    runner.work.mkdir(parents=True, exist_ok=True)
    with_objects = pool.items[pool.items["truth"] != ""]
    reference = PoolReference.from_files([Path(f) for f in with_objects["truth"]], len(pool.items))
    answers = {}
    for tile_id, truth in zip(with_objects["tile_id"], with_objects["truth"], strict=True):
        label = runner._label(tile_id)
        want, _ = noisy_label_text(tile_id, Path(truth), 48, 32, noisy.params.labeling.noise, reference)
        answers[tile_id] = label.read_text()
        assert answers[tile_id] == want
    boxes = [[float(v) for v in a.split()] for a in answers.values() if a]
    assert sum(a == "" for a in answers.values()) >= 3  # about half emptied
    assert sum(b[1:3] != [0.5, 0.5] for b in boxes) >= 2  # shifted: the box moved
    assert OracleStep(pool, clean, OutputFolder(pool, clean, tmp_path / "clean"))._label(
        with_objects["tile_id"].iloc[0]
    ) == Path(with_objects["truth"].iloc[0])


def test_near_copies_of_a_folder_pool_fall_on_one_side_of_its_holdouts():
    """The raccoon photos hold near-copy pairs: held out by image, some pairs would put one photo in
    the pool and its near-copy in the test set; held out by near-copy group, none does."""
    from acorn.data.near_copies import image_hash, near_copy_groups

    def sides(pool: pools.Pool) -> dict[str, str]:
        named = {"items": pool.items["image"], "val": pool.val["image"], "test": pool.test["image"]}
        return {Path(i).stem: side for side, images in named.items() for i in images}

    images = sorted((RACCOON / "images").glob("*.jpg"))
    hashes = []
    for path in images:
        with Image.open(path) as im:
            hashes.append(image_hash(im))
    groups = pd.Series(near_copy_groups([p.stem for p in images], hashes, 32), index=[p.stem for p in images])
    shared = groups[groups.duplicated(keep=False)]
    assert len(shared) >= 4  # near-copies exist in the photos

    def split_groups(side: dict[str, str]) -> int:
        return int(shared.groupby(shared).apply(lambda g: len({side[s] for s in g.index}) > 1).sum())

    by_image = sides(pools.folder_pool(RACCOON, ["raccoon"], 0.2))
    by_group = sides(pools.folder_pool(RACCOON, ["raccoon"], 0.2, near_copy_bits=32))
    assert split_groups(by_image) > 0  # the leak the grouping closes
    assert split_groups(by_group) == 0


def test_a_near_copy_group_too_large_to_split_well_is_named(tmp_path, caplog):
    root = tmp_path / "flat"
    (root / "images").mkdir(parents=True)
    for i in range(12):  # flat colours: their hashes are alike, so they are all one group
        Image.new("RGB", (48, 32), (i * 7, 90, 30)).save(root / "images" / f"f{i:02d}.jpg")
        (root / "labels").mkdir(exist_ok=True)
        (root / "labels" / f"f{i:02d}.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    with caplog.at_level("WARNING", logger="acorn"), pytest.raises(InputError):
        pools.folder_pool(root, ["raccoon"], 0.2, near_copy_bits=32)  # all twelve held out together
    assert "12 of the 12 images are near-copies of f00" in caplog.text
