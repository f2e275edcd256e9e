"""params.yaml -> one typed, validated settings object: the only place a default is declared.

Every library config (training, detection, strategies, simulation) is built from these sections,
so a knob means the same thing in ``dvc repro``, ``acorn simulate`` and ``acorn serve``. A
misspelt key, a wrong type or a value out of range is an error naming ``section.key``, the file
and the allowed values when params load, not a silent default or a failure minutes later: an
experiment that ignored its parameter is worse than one that did not run.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from acorn.runtime.errors import ParamsError

STRATEGIES = (
    "random",
    "positive",
    "least_confidence",
    "entropy",
    "margin",
    "fn_aware",
    "disagreement",
    "diversity",
    "hybrid",
)
UNCERTAINTY_STRATEGIES = ("least_confidence", "entropy", "margin", "fn_aware", "disagreement")
AGGREGATES = ("min", "mean", "max", "sum")

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=0)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TileParams(Section):
    rows: PositiveInt = 4
    cols: PositiveInt = 6
    overlap: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    min_visibility: Annotated[float, Field(gt=0.0, le=1.0)] = 0.3
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 90
    workers: Count = 2  # 0: one per CPU core
    on_bad_frame: Literal["skip", "stop"] = "skip"
    max_frame_pixels: PositiveInt = 100_000_000
    near_copy_bits: Annotated[int, Field(ge=0, le=576)] = 32  # frames this close are near-copies (of 576)


class ModelParams(Section):
    base: Annotated[str, Field(min_length=1)] = "models/base.pt"
    imgsz: Annotated[int, Field(ge=32, multiple_of=32)] = 320
    device: Annotated[str, Field(pattern=r"^(cpu|auto|mps|cuda(:\d+)?|\d+(,\d+)*)$")] = "cpu"
    threads: Count = 0  # torch threads on the CPU (0: usable cores - 1, at most 8); ignored on a GPU


class PredictParams(Section):
    conf_floor: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.01
    iou: Annotated[float, Field(gt=0.0, le=1.0)] = 0.6
    max_det: PositiveInt = 100
    batch: PositiveInt = 8
    engine: Literal["local", "ray"] = (
        "local"  # ray: Ray Data over RAY_ADDRESS's cluster (acorn.model.ray_engine)
    )
    ray_actors: Count = 0  # ray: detector actors (0: one per GPU, or per CPU without GPUs; more share GPUs)
    candidates: Count = 0  # unlabeled tiles predicted per cycle (0: all; acorn.selection.candidates)
    carry_over: Fraction = 0.5  # share of the candidates kept for last cycle's most undecided tiles


class RankParams(Section):
    strategy: Literal[STRATEGIES] = "hybrid"
    aggregate: Literal[AGGREGATES] = "max"
    threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25
    budget: PositiveInt = 50
    balance_by: str = ""  # off: random stays uniform; on only where a measurement shows it pays
    seed: int = 0
    band: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.4
    t_low: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    t_high: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    uncertainty: str = "entropy"  # hybrid's shortlist strategy, with its own reduction after a colon
    shortlist_factor: Annotated[float, Field(ge=1.0)] = 10.0
    near_copies: Count = 1  # tiles a batch takes per tile position of a near-copy group (0: no limit)

    @field_validator("uncertainty", mode="before")
    @classmethod
    def _shortlist(cls, value: object) -> object:
        name, colon, aggregate = value.partition(":") if isinstance(value, str) else (value, "", "")
        if name not in UNCERTAINTY_STRATEGIES or (colon and aggregate not in AGGREGATES):
            raise ValueError(
                f"must be one of {', '.join(UNCERTAINTY_STRATEGIES)}, optionally with its own reduction "
                f"after a colon ({', '.join(AGGREGATES)}; e.g. least_confidence:min)"
            )
        return value

    @property
    def shortlist(self) -> tuple[str, str]:
        """Hybrid's shortlist strategy and its reduction: ``rank.uncertainty``'s own, else ``rank.aggregate``."""
        name, _, aggregate = self.uncertainty.partition(":")
        return name, aggregate or self.aggregate

    @model_validator(mode="after")
    def _consistent(self) -> RankParams:
        if self.t_low >= self.t_high:
            raise ValueError(f"rank.t_low ({self.t_low}) must be below rank.t_high ({self.t_high})")
        strategy, aggregate = (self.strategy, self.aggregate) if self.strategy != "hybrid" else self.shortlist
        if strategy == "least_confidence" and aggregate == "sum":
            where = (
                "rank.uncertainty"
                if ":" in self.uncertainty and self.strategy == "hybrid"
                else "rank.aggregate"
            )
            raise ValueError(f"{where}: 'sum' does not apply to least_confidence; allowed: min, mean, max")
        return self


class NoiseParams(Section):
    """The oracle's label errors (acorn.labeling.noise); all 0: it answers the truth."""

    missed: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0  # share of true boxes left out, small first
    spurious: Fraction = 0.0  # boxes drawn where nothing is, per true box
    shifted: Fraction = 0.0  # share of true boxes drawn displaced (IoU 0.2-0.5 with the truth)
    emptied: Fraction = 0.0  # share of tiles with objects answered as empty
    seed: int = 0  # with the tile id, seeds each tile's errors


class LabelingParams(Section):
    backend: Literal["oracle", "label-studio"] = "oracle"
    project: Annotated[str, Field(min_length=1)] = "acorn"
    document_root: str = ""
    ml_backend_url: str = ""
    noise: NoiseParams = NoiseParams()  # the oracle only; Label Studio's labels are people's


class ReviewParams(Section):
    """Suspect labels (acorn.labeling.review): the newest labels scored against the champion's boxes."""

    budget: Count = 10  # suspects listed for review per cycle (0: none scored)
    confidence: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5  # a prediction this sure is the model's claim


class TrainParams(Section):
    epochs: PositiveInt = 8
    batch: Annotated[int, Field(ge=-1)] = 16  # -1: the largest that fits a GPU (ultralytics' AutoBatch)
    lr0: Annotated[float, Field(gt=0.0, le=1.0)] = 0.01
    optimizer: Literal["SGD", "Adam", "AdamW", "auto"] = "SGD"
    freeze: Count = 10
    warmup_epochs: Annotated[float, Field(ge=0.0)] = 0.0
    replay_data: Annotated[str, Field(min_length=1)] = "data/replay"
    replay_images: Count = 100
    patience: Count = 0  # stop after this many epochs without a better val.data score (0: never)
    seed: int = 0
    workers: Count = 0

    @model_validator(mode="before")
    @classmethod
    def _gone(cls, data: Any) -> Any:
        if isinstance(data, dict) and "val_fraction" in data:
            raise ValueError(
                "train.val_fraction is gone: every labeled tile trains, and the epoch kept is chosen on "
                "the fixed validation set val.data (a YOLO folder of its own); remove the key"
            )
        return data

    @field_validator("batch")
    @classmethod
    def _batch(cls, value: int) -> int:
        if value == 0:
            raise ValueError("a batch of 0 images trains nothing; use a positive size or -1 (fit the GPU)")
        return value


class TestParams(Section):
    __test__ = False  # not a pytest test class
    data: Annotated[str, Field(min_length=1)] = "data/testset"
    frames: str = "data/testset-frames"  # the test set's whole frames, YOLO layout ('' or absent: none)


class ValParams(Section):
    data: Annotated[str, Field(min_length=1)] = "data/valset"


class RegisterParams(Section):
    model_name: Annotated[str, Field(min_length=1)] = "acorn-detector"
    metric: Literal["map50", "map50_95", "precision", "recall"] = "map50"
    margin: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0  # validation gain a new champion needs


class ReportParams(Section):
    queue_tiles: Count = 50  # queued tiles on the next batch's sheet, in queue order
    mistakes: Count = 8  # false positives and missed objects shown, each


class DemoParams(Section):
    frames: PositiveInt = 200
    test_frames: PositiveInt = 100
    val_frames: PositiveInt = 20
    source_images: PositiveInt = 300
    width: PositiveInt = 3840
    height: PositiveInt = 2160
    seed: int = 0
    base_epochs: PositiveInt = 100
    base_patience: PositiveInt = 10
    cycles: Count = 3


with warnings.catch_warnings():
    # ``register`` is also ABCMeta.register; the field wins on instances, which is all we use
    warnings.filterwarnings("ignore", message='Field name "register"')

    class Params(Section):
        classes: Annotated[list[str], Field(min_length=1)] = ["squirrel"]
        tile: TileParams = TileParams()
        model: ModelParams = ModelParams()
        predict: PredictParams = PredictParams()
        rank: RankParams = RankParams()
        labeling: LabelingParams = LabelingParams()
        review: ReviewParams = ReviewParams()
        train: TrainParams = TrainParams()
        test: TestParams = TestParams()
        val: ValParams = ValParams()
        register: RegisterParams = RegisterParams()
        report: ReportParams = ReportParams()
        demo: DemoParams = DemoParams()

        @field_validator("classes")
        @classmethod
        def _names(cls, value: list[str]) -> list[str]:
            if not all(name.strip() for name in value):
                raise ValueError("class names must be non-empty")
            if len(set(value)) != len(value):
                raise ValueError(f"class names must be unique; got {value}")
            return value

        def with_overrides(self, overrides: dict[str, Any], source: str = "command line") -> Params:
            """A copy with ``{"train.epochs": 30}``-style values applied and validated again."""
            data = self.model_dump()
            for key, value in overrides.items():
                *sections, name = key.split(".")
                target = data
                for section in sections:
                    if not isinstance(target.get(section), dict):
                        raise ParamsError(f"{source}: unknown parameter {key}")
                    target = target[section]
                if name not in target:
                    raise ParamsError(f"{source}: unknown parameter {key}")
                target[name] = value
            return parse_params(data, source)


def parse_params(data: Any, source: str = "params.yaml") -> Params:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: the top level must be a mapping of sections")
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        raise ParamsError(_describe(exc, source)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML keeps the last of two equal keys silently: ``rows: 3`` then ``rows: 4`` in one section
    is almost surely an edit that forgot the first line, and the run would use a value nobody
    meant. Refused, naming the key and both lines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice (lines {seen[key].start_mark.line + 1} and "
                    f"{key_node.start_mark.line + 1}); keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found (run from the repository root)") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(data, str(path))


def parse_override(text: str) -> tuple[str, Any]:
    """``section.key=value`` (the value read as YAML, as ``dvc exp run -S`` does)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ParamsError(f"override {text!r}: expected section.key=value")
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


def _describe(exc: ValidationError, source: str) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "top level"
        if error["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown parameter {where}{_known(error['loc'])}")
            continue
        message = error["msg"].removeprefix("Value error, ")
        if isinstance(error["input"], dict):  # a check across a section's keys names them itself
            lines.append(f"{source}: {message}")
            continue
        allowed = _allowed(error["loc"]) if error["type"] != "literal_error" else ""
        lines.append(f"{source}: {where}: {message} (got {error['input']!r}){allowed}")
    return "\n".join(lines)


_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
_KINDS = {int: "an integer", float: "a number"}


def _allowed(loc: tuple) -> str:
    """The range of the number at ``loc``, read from the schema: "got 'wide'" alone says what is
    wrong, not what to write instead."""
    model: Any = Params
    field = None
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) and model is not None else None
        if field is None:
            return ""
        model = field.annotation if isinstance(field.annotation, type) else None
    kind = _KINDS.get(field.annotation)
    if kind is None:
        return ""
    limits = [
        f"{sign} {getattr(m, name):g}" for m in field.metadata for name, sign in _BOUNDS if hasattr(m, name)
    ]
    limits += [f"a multiple of {m.multiple_of:g}" for m in field.metadata if hasattr(m, "multiple_of")]
    return f"; allowed: {kind} {' and '.join(limits)}".rstrip()


def _known(loc: tuple) -> str:
    model: Any = Params
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not isinstance(field.annotation, type):
            return ""
        model = field.annotation
    return f" (known: {', '.join(model.model_fields)})"
