"""What a simulation runs (``SimulateConfig``): the pipeline's settings plus what only a benchmark has.

Kept light (params and the standard library at import; the strategies and candidate checks are
imported when a config is made) because ``acorn --help`` reads the defaults of ``acorn simulate``'s
options from here, and a help screen should not load pandas.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from acorn.params import Params
from acorn.runtime.errors import ParamsError

if TYPE_CHECKING:
    from acorn.selection.strategies import Strategy

DEFAULT_STRATEGIES = ("random", "positive", "least_confidence", "entropy", "fn_aware", "hybrid")
# Every strategy at the reductions it is meant for: cheap to screen (no training), so screen them all.
SCREEN_STRATEGIES = (
    "random",
    "positive",
    "least_confidence:min",
    "least_confidence:mean",
    "entropy:max",
    "entropy:mean",
    "margin:max",
    "fn_aware",
    "disagreement",
    "diversity",
    "hybrid",
)
# Sections of params the simulation reads, less what it replaces: the strategy list replaces
# rank.strategy, and the seeds 0..n-1 replace rank.seed and train.seed (selection_seed, and the
# run's seed in each fine-tune).
_IDENTITY_SECTIONS = {"model", "predict", "rank", "train"}
_NOT_READ = {"rank.strategy", "rank.seed", "train.seed"}
_SPEED_ONLY = {"model.threads"}  # how fast, not what is measured: a resume may run with more threads


def selection_seed(seed: int, cycle: int) -> int:
    """The seed ``Strategy.select`` gets in run ``seed``, cycle ``cycle``: one value for every
    strategy, so random's order and every tie-break are shared within a seed (paired runs)."""
    return seed * 1000 + cycle


@dataclass(frozen=True)
class SimulateConfig:
    """What a simulation runs: the pipeline's settings (``params``) plus what only a benchmark has.

    Everything the loop shares with ``dvc repro`` comes from ``params`` and nowhere else: the
    budget is ``rank.budget``, the fine-tune ``train.*`` with ``model.imgsz``, prediction
    ``predict.*``, the strategies' knobs ``rank.*``. Not read: ``rank.strategy`` (``strategies``
    replaces it), ``rank.seed`` and ``train.seed`` (run ``s`` selects with ``selection_seed`` and
    fine-tunes with seed ``s``, whatever the strategy).
    """

    params: Params
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    seeds: int = 3
    cycles: int = 5
    first_seed: int = 0  # the runs are seeds first_seed .. first_seed + seeds - 1
    target: float = 0.95  # fraction of the whole-pool model's map50
    full_epochs: int | None = None  # whole-pool reference; None: train.epochs; 0: none
    full_patience: int = 0  # reference: stop after this many epochs without a better val score; 0: never
    pool_share: float = 1.0  # each seed's runs choose from a seeded share of the pool's frames

    def __post_init__(self) -> None:
        from acorn.cycle_step import candidates
        from acorn.selection.strategies import StrategyError

        for name in ("seeds", "cycles"):
            if getattr(self, name) < 1:
                raise ParamsError(f"--{name} must be at least 1; got {getattr(self, name)}")
        if self.first_seed < 0:
            raise ParamsError(f"--first-seed must be 0 or more; got {self.first_seed}")
        if self.full_epochs is not None and self.full_epochs < 0:
            raise ParamsError(f"--full-epochs must be 0 (no reference) or more; got {self.full_epochs}")
        if self.full_patience < 0:
            raise ParamsError(
                f"--full-patience must be 0 (run every epoch) or more; got {self.full_patience}"
            )
        if self.full_patience and self.full_epochs == 0:
            raise ParamsError(
                "--full-patience stops the whole-pool reference early, but --full-epochs 0 trains none"
            )
        if not self.strategies or len(set(self.strategies)) != len(self.strategies):
            raise ParamsError(f"--strategies must be a non-empty list without repeats; got {self.strategies}")
        for name in self.strategies:
            try:
                self.strategy(name)
            except StrategyError as exc:  # it names rank.*, but the entry came from --strategies
                raise StrategyError(f"--strategies entry {name!r}: {exc}") from None
        if not 0.0 < self.target <= 1.0:
            raise ParamsError(f"--target must be in (0, 1]; got {self.target}")
        if not 0.0 < self.pool_share <= 1.0:
            raise ParamsError(f"--pool-share must be in (0, 1]; got {self.pool_share}")
        candidates.check(self.params)

    @property
    def seed_numbers(self) -> range:
        return range(self.first_seed, self.first_seed + self.seeds)

    @property
    def budget(self) -> int:
        return self.params.rank.budget

    @property
    def base(self) -> str:
        return self.params.model.base

    @property
    def cold(self) -> bool:
        """No trained base: nothing predicts before the first batch, which ``cold_start`` picks."""
        return Path(self.base).suffix in (".yaml", ".yml")

    def strategy(self, name: str) -> Strategy:
        """Built as the rank stage builds it (acorn.cycle_step.ranking); ``name:aggregate``
        overrides ``rank.aggregate`` for one entry, so one simulation can compare strategies at the
        reductions each is meant for."""
        from acorn.cycle_step.ranking import strategy_for

        return strategy_for(self.params, name)

    def identity(self) -> dict:
        """The settings every row of one output folder shares, as ``section.key`` (and the pool
        share, when not the whole pool): a resume refuses a change. The strategy list, seeds,
        cycles, target and reference epochs may change."""
        read = self.params.model_dump(include=_IDENTITY_SECTIONS)
        flat = {f"{s}.{k}": v for s, section in read.items() for k, v in section.items()}
        flat |= {"pool_share": self.pool_share} if self.pool_share < 1.0 else {}
        from acorn.labeling.noise import active as noise_active

        noise = self.params.labeling.noise  # the oracle's label errors, when it makes any
        if noise_active(noise):
            flat |= {f"labeling.noise.{k}": v for k, v in noise.model_dump().items()}
        return {k: v for k, v in sorted(flat.items()) if k not in _NOT_READ | _SPEED_ONLY}
