import math

import numpy as np
import pandas as pd
import pytest

from acorn.cycle_step.ranking import strategy_for
from acorn.params import Params
from acorn.selection.strategies import (
    STRATEGIES,
    Diversity,
    Entropy,
    Hybrid,
    LeastConfidence,
    Random,
    StrategyError,
    cold_start,
    get_strategy,
    k_center_greedy,
    order_by_score,
    select_batch,
)

# a: two boxes, b: one box at 0.5, c: three boxes, d: no box at all; z is not in the pool.
TILES = pd.DataFrame({"tile_id": ["a", "b", "c", "d"], "condition": ["day", "day", "night", "night"]})
CONF = {"a": [0.2, 0.9], "b": [0.5], "c": [0.05, 0.3, 0.6], "z": [0.4]}


def make_boxes(conf: dict[str, list[float]]) -> pd.DataFrame:
    rows = [(t, p) for t, ps in conf.items() for p in ps]
    n = len(rows)
    return pd.DataFrame(
        {
            "tile_id": [t for t, _ in rows],
            "class_id": np.zeros(n, dtype=int),
            "confidence": [p for _, p in rows],
            "x1": np.zeros(n),
            "y1": np.zeros(n),
            "x2": np.full(n, 10.0),
            "y2": np.full(n, 10.0),
        }
    )


BOXES = make_boxes(CONF)
EMB = np.arange(8, dtype=float).reshape(4, 2)


def h(p: float) -> float:
    return -p * math.log(p) - (1 - p) * math.log(1 - p)


def scores_of(strategy, boxes=BOXES, tiles=TILES) -> dict[str, float]:
    out = strategy.score(boxes, tiles, EMB)
    return out.to_dict()


def assert_scores(actual: dict[str, float], expected: dict[str, float]) -> None:
    assert list(actual) == list(expected)
    assert actual == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------- hand-computed scores


@pytest.mark.parametrize(
    ("aggregate", "expected"),
    [
        ("min", {"a": 0.8, "b": 0.5, "c": 0.95, "d": 0.01}),
        ("mean", {"a": 0.45, "b": 0.5, "c": 1 - 0.95 / 3, "d": 0.01}),
        ("max", {"a": 0.1, "b": 0.5, "c": 0.4, "d": 0.01}),
    ],
)
def test_least_confidence(aggregate, expected):
    assert_scores(scores_of(get_strategy("least_confidence", aggregate=aggregate)), expected)


def test_least_confidence_empty_tile_follows_conf_floor():
    assert scores_of(LeastConfidence(conf_floor=0.05))["d"] == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("aggregate", "expected"),
    [
        ("min", {"a": h(0.9), "b": h(0.5), "c": h(0.05), "d": h(0.01)}),
        (
            "mean",
            {"a": (h(0.2) + h(0.9)) / 2, "b": h(0.5), "c": (h(0.05) + h(0.3) + h(0.6)) / 3, "d": h(0.01)},
        ),
        ("max", {"a": h(0.2), "b": h(0.5), "c": h(0.6), "d": h(0.01)}),
        ("sum", {"a": h(0.2) + h(0.9), "b": h(0.5), "c": h(0.05) + h(0.3) + h(0.6), "d": h(0.01)}),
    ],
)
def test_entropy(aggregate, expected):
    assert_scores(scores_of(get_strategy("entropy", aggregate=aggregate)), expected)


def test_entropy_is_finite_at_zero_and_one():
    boxes = make_boxes({"a": [0.0], "b": [1.0]})
    assert scores_of(Entropy(), boxes) == pytest.approx({"a": 0.0, "b": 0.0, "c": h(0.01), "d": h(0.01)})


@pytest.mark.parametrize(
    ("aggregate", "expected"),
    [
        ("min", {"a": 0.2, "b": 1.0, "c": 0.1, "d": 0.02}),
        ("mean", {"a": 0.3, "b": 1.0, "c": 0.5, "d": 0.02}),
        ("max", {"a": 0.4, "b": 1.0, "c": 0.8, "d": 0.02}),
        ("sum", {"a": 0.6, "b": 1.0, "c": 1.5, "d": 0.02}),
    ],
)
def test_margin(aggregate, expected):
    assert_scores(scores_of(get_strategy("margin", aggregate=aggregate)), expected)


def test_fn_aware_weights_candidates_just_below_threshold():
    # band [0.4 * 0.25, 0.25) = [0.1, 0.25): 0.1 is in, 0.25 and 0.05 are out
    boxes = make_boxes({"a": [0.9], "b": [0.1, 0.2, 0.25], "c": [0.05, 0.24]})
    got = scores_of(get_strategy("fn_aware", threshold=0.25, band=0.4), boxes)
    assert_scores(got, {"a": 0.0, "b": 0.4 + 0.8, "c": 0.96, "d": 0.0})
    # the tile that looks empty at the threshold outranks the one with a confident detection
    assert order_by_score(pd.Series(got), seed=0)[:2] == ["b", "c"]


@pytest.mark.parametrize(
    ("t_low", "t_high", "expected"),
    [
        (0.1, 0.5, {"a": 0.5, "b": 0.0, "c": 0.5, "d": 0.0}),
        (0.25, 0.55, {"a": 0.0, "b": 1.0, "c": 0.5, "d": 0.0}),
        (0.01, 0.95, {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0}),
    ],
)
def test_disagreement(t_low, t_high, expected):
    assert_scores(scores_of(get_strategy("disagreement", t_low=t_low, t_high=t_high)), expected)


def test_positive_mining_scores_the_top_confidence_and_picks_the_likeliest_objects():
    # top confidence per tile: a 0.9, b 0.5, c 0.6, d nothing above the floor (0); z is not in the pool
    positive = get_strategy("positive", aggregate="min", conf_floor=0.05)  # shared knobs it does not read
    assert_scores(scores_of(positive), {"a": 0.9, "b": 0.5, "c": 0.6, "d": 0.0})
    assert positive.select(BOXES, TILES, budget=3, seed=0) == ["a", "c", "b"]
    # least confidence would take the opposite end: c (a box at 0.05) first, a last
    assert get_strategy("least_confidence", aggregate="min").select(BOXES, TILES, budget=4, seed=0)[:1] == [
        "c"
    ]


def test_random_scores_every_tile_equally_and_needs_no_boxes():
    assert_scores(Random().score(None, TILES).to_dict(), {"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0})


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_tile_gets_one_float_score_in_pool_order(name):
    out = get_strategy(name).score(BOXES, TILES, EMB)
    assert out.index.tolist() == ["a", "b", "c", "d"]
    assert out.dtype == np.float64
    assert not out.isna().any()


@pytest.mark.parametrize(
    ("name", "empty"),
    [
        ("least_confidence", 0.01),
        ("entropy", h(0.01)),
        ("margin", 0.02),
        ("fn_aware", 0.0),
        ("disagreement", 0.0),
        ("positive", 0.0),
    ],
)
def test_pool_without_any_box_gets_the_documented_empty_score(name, empty):
    out = get_strategy(name).score(BOXES.iloc[:0], TILES)
    assert out.to_dict() == pytest.approx(dict.fromkeys("abcd", empty))


def test_box_strategies_need_boxes():
    with pytest.raises(StrategyError, match="cold_start"):
        get_strategy("entropy").score(None, TILES)


def test_bad_tables_are_rejected():
    with pytest.raises(StrategyError, match="confidence"):
        Entropy().score(BOXES.drop(columns="confidence"), TILES)
    with pytest.raises(StrategyError, match=r"confidence must be in \[0, 1\]"):
        Entropy().score(make_boxes({"a": [1.5]}), TILES)
    with pytest.raises(StrategyError, match="'a' repeats"):
        Entropy().score(BOXES, pd.DataFrame({"tile_id": ["a", "a"]}))


# ---------------------------------------------------------------- ranking and batches


def test_rank_orders_by_score_descending():
    assert order_by_score(pd.Series({"a": 0.1, "b": 0.9, "c": 0.5}), seed=0) == ["b", "c", "a"]


def test_rank_ties_are_seeded_not_tile_id_ordered():
    ids = [f"t{i:03d}" for i in range(100)]
    scores = pd.Series(0.5, index=ids)
    first = order_by_score(scores, seed=0)
    assert first == order_by_score(scores, seed=0)
    assert first != ids
    assert first != order_by_score(scores, seed=1)
    assert len({order_by_score(scores, seed=s)[0] for s in range(20)}) > 5


def test_rank_rejects_nan():
    with pytest.raises(StrategyError, match="'b'"):
        order_by_score(pd.Series({"a": 0.1, "b": float("nan")}), seed=0)


def test_select_batch_budget():
    scores = pd.Series({"a": 0.1, "b": 0.9, "c": 0.5, "d": 0.7})
    assert select_batch(scores, 2, seed=0) == ["b", "d"]
    assert select_batch(scores, 10, seed=0) == ["b", "d", "c", "a"]
    assert select_batch(scores, 0, seed=0) == []


@pytest.mark.parametrize("budget", [-1, 2.5, True])
def test_select_batch_rejects_bad_budget(budget):
    with pytest.raises(StrategyError, match="rank.budget must be a non-negative integer"):
        select_batch(pd.Series({"a": 0.1}), budget, seed=0)


def test_select_batch_balances_groups_round_robin():
    scores = pd.Series({f"day{i}": 0.9 - i / 100 for i in range(10)} | {"night0": 0.2, "night1": 0.1})
    groups = pd.Series({t: t.rstrip("0123456789") for t in scores.index})
    assert select_batch(scores, 4, seed=0) == ["day0", "day1", "day2", "day3"]
    assert select_batch(scores, 4, seed=0, groups=groups) == ["day0", "night0", "day1", "night1"]
    # an exhausted group drops out; the budget is still filled
    assert select_batch(scores, 6, seed=0, groups=groups) == [
        "day0",
        "night0",
        "day1",
        "night1",
        "day2",
        "day3",
    ]


def test_select_batch_with_groups_is_deterministic_per_seed():
    ids = [f"t{i:03d}" for i in range(60)]
    scores = pd.Series(0.0, index=ids)
    groups = pd.Series(["day", "dusk", "night"] * 20, index=ids)
    batch = select_batch(scores, 9, seed=3, groups=groups)
    assert batch == select_batch(scores, 9, seed=3, groups=groups)
    assert batch != select_batch(scores, 9, seed=4, groups=groups)
    assert groups[batch].value_counts().to_dict() == {"day": 3, "dusk": 3, "night": 3}


def test_select_batch_needs_a_group_per_tile():
    with pytest.raises(StrategyError, match="'b'"):
        select_batch(pd.Series({"a": 0.1, "b": 0.2}), 1, seed=0, groups=pd.Series({"a": "day"}))


def test_strategy_select_uses_scores_and_groups():
    strategy = get_strategy("least_confidence", aggregate="min")
    assert strategy.select(BOXES, TILES, 2, seed=0) == ["c", "a"]
    groups = TILES.set_index("tile_id")["condition"]
    assert strategy.select(BOXES, TILES, 2, seed=0, groups=groups) == ["c", "a"]
    assert strategy.select(BOXES, TILES, 3, seed=0, groups=groups) == ["c", "a", "d"]


# ---------------------------------------------------------------- diversity and hybrid

# a tight cluster at the origin and three far points
POINTS = np.array([[0, 0], [0.1, 0], [0, 0.1], [0.1, 0.1], [10, 0], [0, 12], [-9.9, -9.9]])


def test_k_center_picks_the_far_points():
    # first the tile nearest the pool mean (0.04, 0.33), i.e. (0, 0.1), then each time the farthest from all picks
    assert k_center_greedy(POINTS, 4, seed=0).tolist() == [2, 6, 5, 4]


def test_k_center_respects_labeled_embeddings():
    picks = k_center_greedy(POINTS, 3, seed=0, labeled=np.array([[-10.0, -10.0]]))
    assert picks[:2].tolist() == [5, 4]
    assert 6 not in picks  # already covered by the labeled tile


def test_k_center_balances_groups():
    # unbalanced: [2, 6, 5]; the cluster's group (holding the first pick) gets every other turn
    groups = np.array(["night"] * 4 + ["day"] * 3)
    assert k_center_greedy(POINTS, 3, seed=0, groups=groups).tolist() == [2, 6, 1]


def test_k_center_budget_beyond_pool_and_ties_seeded():
    assert sorted(k_center_greedy(POINTS, 50, seed=0).tolist()) == list(range(7))
    one_night = np.array(["day"] * 6 + ["night"])  # night runs out after one turn; day fills the rest
    assert sorted(k_center_greedy(POINTS, 50, seed=0, groups=one_night).tolist()) == list(range(7))
    same = np.zeros((30, 2))
    firsts = {int(k_center_greedy(same, 1, seed=s)[0]) for s in range(20)}
    assert len(firsts) > 5


def test_diversity_score_is_distance_to_nearest_labeled_or_mean():
    tiles = pd.DataFrame({"tile_id": ["p", "q"]})
    pool = np.array([[0.0, 0.0], [3.0, 4.0]])
    got = Diversity().score(None, tiles, pool, np.array([[0.0, 0.0], [100.0, 100.0]]))
    assert got.to_dict() == pytest.approx({"p": 0.0, "q": 5.0})
    assert Diversity().score(None, tiles, pool).to_dict() == pytest.approx({"p": 2.5, "q": 2.5})


def test_diversity_select_returns_tile_ids_and_needs_embeddings():
    tiles = pd.DataFrame({"tile_id": [f"t{i}" for i in range(len(POINTS))]})
    assert Diversity().select(None, tiles, 2, seed=0, embeddings=POINTS) == ["t2", "t6"]
    with pytest.raises(StrategyError, match="embeddings is required"):
        Diversity().select(None, tiles, 2, seed=0)
    with pytest.raises(StrategyError, match=r"embeddings must have shape \(7, d\)"):
        Diversity().select(None, tiles, 2, seed=0, embeddings=POINTS[:3])
    with pytest.raises(StrategyError, match="labeled_embeddings has 3 columns"):
        Diversity().select(None, tiles, 2, seed=0, embeddings=POINTS, labeled_embeddings=np.zeros((1, 3)))


def test_hybrid_picks_only_from_the_uncertainty_shortlist():
    # 4 uncertain tiles huddle together; 16 confident tiles are spread far apart
    ids = [f"t{i:02d}" for i in range(20)]
    tiles = pd.DataFrame({"tile_id": ids})
    conf = [0.5, 0.45, 0.55, 0.4] + [0.99] * 16
    boxes = make_boxes({t: [p] for t, p in zip(ids, conf, strict=True)})
    emb = np.vstack([np.array([[0, 0], [0, 1], [1, 0], [1, 1]]), np.arange(16)[:, None] * [100, -50] + 500])
    hybrid = get_strategy("hybrid", uncertainty="margin", aggregate="max", shortlist_factor=2)
    batch = hybrid.select(boxes, tiles, 2, seed=0, embeddings=emb)
    assert set(batch) <= {"t00", "t01", "t02", "t03"}
    assert set(batch) in ({"t00", "t03"}, {"t01", "t02"})  # a farthest pair within the shortlist
    assert set(Diversity().select(boxes, tiles, 2, seed=0, embeddings=emb)) - {"t00", "t01", "t02", "t03"}


def test_hybrid_score_is_its_uncertainty_score():
    hybrid = Hybrid(uncertainty=Entropy(aggregate="max"))
    assert hybrid.score(BOXES, TILES).to_dict() == Entropy(aggregate="max").score(BOXES, TILES).to_dict()


def test_cold_start():
    assert isinstance(cold_start(None), Random)
    assert isinstance(cold_start(EMB), Diversity)


# ---------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        (
            "entropy",
            {"aggregate": "median"},
            "rank.aggregate must be one of min, mean, max, sum; got 'median'",
        ),
        ("least_confidence", {"aggregate": "sum"}, "rank.aggregate must be one of min, mean, max; got 'sum'"),
        ("uncertainty_sampling", {}, "rank.strategy must be one of random, positive, least_confidence, "),
        ("entropy", {"agregate": "min"}, "rank.agregate is not a strategy parameter"),
        ("margin", {"conf_floor": 1.0}, r"predict.conf_floor must be a number in \[0, 1\); got 1.0"),
        ("fn_aware", {"threshold": 1.5}, r"rank.threshold must be a number in \(0, 1\]; got 1.5"),
        ("fn_aware", {"threshold": "0.3"}, "rank.threshold must be a number in"),
        ("fn_aware", {"band": 0}, r"rank.band must be a number in \(0, 1\); got 0"),
        ("disagreement", {"t_low": 0.5, "t_high": 0.4}, "rank.t_low must be below rank.t_high"),
        ("disagreement", {"t_high": True}, "rank.t_high must be a number"),
        ("hybrid", {"shortlist_factor": 0.5}, r"rank.shortlist_factor must be a number in \[1, inf\)"),
        ("hybrid", {"uncertainty": "random"}, "rank.uncertainty must be one of least_confidence, "),
        ("hybrid", {"uncertainty": "entropy", "aggregate": "median"}, "rank.aggregate must be one of"),
    ],
)
def test_bad_params_name_the_field(name, params, message):
    with pytest.raises(StrategyError, match=message):
        get_strategy(name, **params)


def test_params_of_other_strategies_are_ignored():
    shared = {"aggregate": "mean", "threshold": 0.3, "conf_floor": 0.02}
    assert get_strategy("entropy", **shared) == Entropy(aggregate="mean", conf_floor=0.02)
    hybrid = get_strategy("hybrid", uncertainty="fn_aware", shortlist_factor=3, **shared)
    assert hybrid.uncertainty.threshold == 0.3 and hybrid.shortlist_factor == 3


# ---------------------------------------------------------------- scale


def test_vectorised_on_many_boxes_matches_groupby():
    rng = np.random.default_rng(0)
    ids = np.array([f"f{i // 24:05d}_r{i % 24 // 6}c{i % 6}" for i in range(50_000)], dtype=object)
    tiles = pd.DataFrame({"tile_id": ids})
    boxes = pd.DataFrame(
        {"tile_id": rng.choice(ids[:40_000], 200_000), "confidence": rng.uniform(0.01, 1, 200_000)}
    )
    for name in sorted(STRATEGIES):
        out = get_strategy(name).score(boxes, tiles, rng.standard_normal((len(ids), 4)))
        assert len(out) == len(ids) and not out.isna().any(), name
    got = get_strategy("least_confidence", aggregate="min").score(
        boxes.astype({"tile_id": "category"}), tiles
    )
    expected = (1 - boxes.groupby("tile_id")["confidence"].min()).reindex(ids, fill_value=0.01)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy())


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_a_strategy_built_without_knobs_is_the_one_default_params_build(name):
    """One place declares the defaults (acorn.params): a class default that drifts from it (as
    least_confidence's ``min`` and hybrid's least_confidence shortlist once did) fails here."""
    assert get_strategy(name) == strategy_for(Params(), name)


def test_the_schema_names_exactly_the_strategies_there_are():
    """params.yaml's allowed names (acorn.params) and the classes here must not drift apart."""
    from acorn import params
    from acorn.selection import strategies

    assert set(params.STRATEGIES) == set(STRATEGIES)
    assert set(params.UNCERTAINTY_STRATEGIES) == set(strategies._UNCERTAINTY)
