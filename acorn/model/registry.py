"""Model registry on MLflow: every trained model a version, the best one the ``champion``.

The weights are logged as an MLflow pyfunc so that anything that speaks MLflow can load
``models:/<name>@champion`` and detect; acorn's own serve path loads it the same way. The
champion alias moves only when a new version beats it on the fixed test set, so a bad
cycle never replaces the model that Label Studio pre-annotates with.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion

from acorn.runtime.atomic import copy_file, pause_point
from acorn.runtime.errors import AcornError

log = logging.getLogger("acorn")

EXPERIMENT = "acorn"
CHAMPION, CHALLENGER = "champion", "challenger"
# tags that make a registration idempotent (a re-run finds its own earlier work) and tell a
# complete version from one a killed or failed run left behind
SOURCE_TAG = "acorn.source"  # run and version: source_hash() of the weights, metrics and name
WEIGHTS_TAG = "acorn.weights_sha256"  # version: models/champion.pt is checked against it
COMPLETE_TAG = "acorn.complete"  # version: "true" once its weights were read back and matched
BASELINE_TAG = "acorn.baseline"  # version: the champion's metric it was compared with (its gain)
AWAIT_READY_S = 300  # how long to wait for a server that creates versions asynchronously


# where experiment artifacts go when acorn creates the experiment (e.g. s3://bucket/mlflow);
# unset: mlartifacts/ next to a sqlite store, the server's default otherwise
ARTIFACTS_VAR = "ACORN_MLFLOW_ARTIFACTS"
# settings the repository's git-ignored .env may hold (`acorn dagshub setup` writes them there)
_DOTENV_KEYS = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_S3_ENDPOINT_URL",
    ARTIFACTS_VAR,
)


def tracking_uri(root: Path = Path()) -> str:
    """MLFLOW_TRACKING_URI from the environment, else from the repository's .env (a server, DagsHub),
    else a sqlite store in the repository.

    MLflow reads credentials and the S3 endpoint from the process environment only, so the .env
    values of those are exported here too, never overriding what the environment already says.
    """
    from dotenv import dotenv_values

    dotenv = {k: v for k, v in dotenv_values(Path(root) / ".env", interpolate=False).items() if v}
    for key in _DOTENV_KEYS:
        if key in dotenv:
            os.environ.setdefault(key, dotenv[key])
    return (
        os.environ.get("MLFLOW_TRACKING_URI")
        or dotenv.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{(Path(root) / 'mlflow.db').resolve()}"
    )


def configure_mlflow(root: Path = Path()) -> mlflow.MlflowClient:
    user_set = "MLFLOW_TRACKING_URI" in os.environ
    mlflow.set_tracking_uri(tracking_uri(root))
    if not user_set:  # mlflow exports the URI; keep the next root's default from seeing this one
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        artifacts = os.environ.get(ARTIFACTS_VAR)
        if not artifacts and tracking_uri(root).startswith("sqlite:"):
            artifacts = (Path(root) / "mlartifacts").resolve().as_uri()
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts)
    mlflow.set_experiment(EXPERIMENT)
    return mlflow.MlflowClient()


class YoloPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow wrapper around YOLO weights: a DataFrame of image paths in, a box table out."""

    def load_context(self, context) -> None:
        from acorn.model.detection import Detector, DetectorConfig

        settings = dict(context.model_config or {})
        self.detector = Detector(DetectorConfig(weights=context.artifacts["weights"], **settings))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from acorn.model.detection import load_images

        paths = [Path(p) for p in model_input["image"]]
        ids = list(model_input["tile_id"]) if "tile_id" in model_input else [str(p) for p in paths]
        return self.detector.predict(load_images(paths), ids).boxes


@dataclass
class RegistryRecord:
    name: str
    version: int
    model_version: str  # the label shown in Label Studio and carried by prediction tables
    aliases: list[str]
    run_id: str
    metric: str
    value: float
    champion_version: int
    champion_model_version: str  # the label of the champion, which predicts and pre-annotates
    champion_weights_sha256: str  # what models/champion.pt must hold ('' for versions before acorn tagged it)
    gain: float  # metric minus the previous champion's: near zero for a few cycles, stop labeling
    tracking_uri: str


class RegistryError(AcornError):
    """The MLflow store cannot be reached, is locked or refuses acorn, or a version is broken."""


def register(
    weights: Path,
    metrics: dict[str, float],
    name: str,
    metric: str,
    detector_settings: dict,
    root: Path = Path(),
    margin: float = 0.0,
) -> RegistryRecord:
    """Make ``weights`` a complete version of ``name``: challenger always, champion if it wins
    (``should_promote`` on ``metric``, by more than ``margin``).

    Idempotent, because a stage can be killed or lose its store half-way: the run and the version
    carry a hash of the weights and metrics, so a re-run reuses a complete version of the same
    model and deletes a half-done one instead of adding a duplicate. A version is complete once
    its weights were read back from the store and matched; aliases only ever move to complete
    versions, so ``@champion`` never names a version whose weights cannot be loaded.
    """
    if metric not in metrics:
        raise AcornError(f"register.metric {metric!r} is not among the train metrics {sorted(metrics)}")
    uri = tracking_uri(root)
    with store_errors(uri):
        client = configure_mlflow(root)
        source = source_hash(weights, metrics, name)
        found = _reuse_or_clean(client, name, source)
        mv = found or _new_version(client, weights, metrics, name, source, detector_settings, uri)
        version, value = int(mv.version), float(metrics[metric])
        champion = champion_version(client, name)
        if champion == version:  # a re-run after the alias moved: keep the gain it was promoted with
            previous = float(mv.tags.get(BASELINE_TAG, value))
        else:
            previous = _version_metric(client, name, champion, metric) if champion is not None else 0.0
            client.set_model_version_tag(name, str(version), BASELINE_TAG, str(previous))
        client.set_registered_model_alias(name, CHALLENGER, str(version))
        if should_promote(value, None if champion is None else previous, margin):
            client.set_registered_model_alias(name, CHAMPION, str(version))
            champion = version
        aliases = sorted(client.get_model_version(name, str(version)).aliases)
        champion_sha = client.get_model_version(name, str(champion)).tags.get(WEIGHTS_TAG, "")
    return RegistryRecord(
        name=name,
        version=version,
        model_version=model_version_label(name, version),
        aliases=aliases,
        run_id=mv.run_id,
        metric=metric,
        value=value,
        champion_version=champion,
        champion_model_version=model_version_label(name, champion),
        champion_weights_sha256=champion_sha,
        gain=round(value - previous, 6),
        tracking_uri=redacted(uri),
    )


def should_promote(value: float, champion_value: float | None, margin: float = 0.0) -> bool:
    """The champion gate: a new version becomes champion when there is none yet, or when it scores
    more than ``margin`` above the champion on the gate's metric (a tie keeps the champion: the
    labelers keep the boxes they know; ``register.margin`` set above the validation set's noise
    keeps a lucky fine-tune out). The train stage registers with its validation score (``val_<metric>``),
    so the gate never reads the test set, which only reports. A champion registered without that
    metric counts as -inf: the first version scored on the validation set replaces it. A NaN score
    (a metric that could not be computed) never replaces a champion."""
    if champion_value is None:
        return True
    return value > champion_value + margin


def source_hash(weights: Path, metrics: dict[str, float], name: str) -> str:
    """What a registration registers: the weights, the metrics they were scored with, and the
    model name (the same weights under another name are another registration, whose run the
    clean-up must not touch)."""
    digest = hashlib.sha256(file_sha256(weights).encode())
    digest.update(json.dumps({"metrics": metrics, "name": name}, sort_keys=True).encode())
    return digest.hexdigest()


def _reuse_or_clean(client: mlflow.MlflowClient, name: str, source: str) -> ModelVersion | None:
    """The complete version registered from ``source``, if any; half-done ones and their runs are
    deleted (a stage killed between logging the model and finishing the version left them)."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], f"tags.`{SOURCE_TAG}` = '{source}'")
    complete = None
    for run in runs:
        versions = client.search_model_versions(f"name = '{name}' and run_id = '{run.info.run_id}'")
        for mv in versions:
            if complete is None and mv.tags.get(COMPLETE_TAG) == "true":
                complete = mv
            elif mv.tags.get(COMPLETE_TAG) != "true":
                log.warning(
                    "deleting version %s of %s, left half-registered by an interrupted run", mv.version, name
                )
                client.delete_model_version(name, mv.version)
    for run in runs:
        if complete is None or run.info.run_id != complete.run_id:
            log.warning(
                "deleting MLflow run %s, left half-done by an interrupted registration", run.info.run_id
            )
            client.delete_run(run.info.run_id)
    if complete is not None:
        log.info("version %s of %s already holds these weights and metrics: reused", complete.version, name)
    return complete


def _new_version(
    client: mlflow.MlflowClient,
    weights: Path,
    metrics: dict[str, float],
    name: str,
    source: str,
    detector_settings: dict,
    uri: str,
) -> ModelVersion:
    """Log the model in a run, register it, read its weights back, and only then mark it complete."""
    # its warnings here (cloudpickled python_model, no signature) are expected, not actionable
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    sha = file_sha256(weights)
    with mlflow.start_run(run_name=f"cycle-{metrics.get('cycle', 0)}", tags={SOURCE_TAG: source}):
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=YoloPyfunc(),
            artifacts={"weights": str(weights)},
            model_config=detector_settings,
            pip_requirements=["ultralytics", "torch", "torchvision", "pandas", "pillow"],
        )
    pause_point("register.after_log")
    tags = {SOURCE_TAG: source, WEIGHTS_TAG: sha, **{k: str(float(v)) for k, v in metrics.items()}}
    mv = mlflow.register_model(info.model_uri, name, await_registration_for=AWAIT_READY_S, tags=tags)
    pause_point("register.after_version")
    with tempfile.TemporaryDirectory(prefix="acorn-verify-") as tmp:
        read_back = file_sha256(_fetch_weights(name, int(mv.version), Path(tmp), uri))
    if read_back != sha:
        client.delete_model_version(name, mv.version)
        raise RegistryError(
            f"models:/{name}/{mv.version} at {redacted(uri)}: the weights read back differ from {weights}; "
            "the version was deleted; check the artifact store, then re-run"
        )
    client.set_model_version_tag(name, mv.version, COMPLETE_TAG, "true")
    pause_point("register.after_complete")
    return client.get_model_version(name, mv.version)


def _fetch_weights(name: str, version: int, into: Path, uri: str) -> Path:
    """The one .pt artifact of a version. MLflow 3.17 resolves ``models:/`` against the global
    registry URI whatever ``registry_uri`` says, so configure_mlflow() must have run first."""
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}", dst_path=str(into), tracking_uri=uri, registry_uri=uri
        )
    )
    found = list((local / "artifacts").rglob("*.pt"))
    if len(found) != 1:
        raise RegistryError(
            f"models:/{name}/{version} at {redacted(uri)} holds {len(found)} .pt artifacts, expected one; "
            "re-run the register stage to register the model again"
        )
    return found[0]


def download_weights(name: str, version: int, dest: Path, root: Path = Path()) -> Path:
    """The weights file of registered ``version``, written atomically to ``dest``."""
    uri = tracking_uri(root)
    with store_errors(uri), tempfile.TemporaryDirectory(prefix="acorn-weights-") as tmp:
        configure_mlflow(root)
        copy_file(_fetch_weights(name, version, Path(tmp), uri), dest)
    return dest


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """MLflow failing to reach or use the store -> a RegistryError naming it (credentials redacted)
    and what to do. MLflow's own message is dropped: it carries the URI with any credentials in it.
    Any other failure is a bug and keeps its traceback."""
    import requests
    import sqlalchemy.exc

    try:
        yield
    except (
        mlflow.exceptions.MlflowException,
        requests.exceptions.RequestException,
        sqlalchemy.exc.OperationalError,  # raised unwrapped while MLflow opens a sqlite store
    ) as exc:
        why = _store_problem(exc)
        if why is None:
            raise
        raise RegistryError(
            f"MLflow store {redacted(uri)} {why}; a registration cut short is cleaned up by the next run"
        ) from None


def _store_problem(exc: BaseException) -> str | None:
    """What is wrong with the store and what to do, or None when ``exc`` is not about the store."""
    import requests
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT

    chain, seen = [], exc
    while seen is not None and len(chain) < 20:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(str(e) for e in chain)
    status = re.search(r"error code (\d{3})", text)
    if any(isinstance(e, requests.exceptions.Timeout) for e in chain) or "timed out" in text.lower():
        return (
            f"did not answer within MLFLOW_HTTP_REQUEST_TIMEOUT ({MLFLOW_HTTP_REQUEST_TIMEOUT.get()} s); "
            "check that the server is up and not overloaded, then re-run"
        )
    if any(isinstance(e, requests.exceptions.ConnectionError) for e in chain):
        return (
            f"cannot be reached (connection refused, after {MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()} retries); "
            "start the server or fix MLFLOW_TRACKING_URI (unset, acorn uses the repository's mlflow.db), "
            "then re-run"
        )
    if "database is locked" in text:
        return (
            "is locked by another process holding a write transaction (another dvc repro, `mlflow ui` "
            "or a script on the same mlflow.db); let it finish, then re-run"
        )
    if "unable to open database file" in text or "readonly database" in text:
        return "cannot be opened for writing; check that its folder exists and is writable, then re-run"
    if status and status.group(1) in ("401", "403"):
        return (
            f"refused acorn's credentials (HTTP {status.group(1)}); check MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN), then re-run"
        )
    if status and (status.group(1) == "429" or status.group(1).startswith("5")):
        return f"answered HTTP {status.group(1)} after MLflow's retries; re-run when the server is healthy"
    return None


def model_version_label(name: str, version: int) -> str:
    return f"{name}-v{version}"


def champion_version(client: mlflow.MlflowClient, name: str) -> int | None:
    """The champion's version; None only when there is none yet. Any other failure (a locked or
    unreachable store) is raised: taken for "no champion", it would promote a losing model."""
    try:
        return int(client.get_model_version_by_alias(name, CHAMPION).version)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") and "not found" in str(
            exc
        ):
            return None
        raise


def _version_metric(client: mlflow.MlflowClient, name: str, version: int, metric: str) -> float:
    tags = client.get_model_version(name, str(version)).tags
    return float(tags.get(metric, "-inf"))


def redacted(uri: str) -> str:
    """Never write credentials embedded in a tracking URI (https://user:token@host) to a file."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password or parts.username:
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


def record_dict(record: RegistryRecord) -> dict:
    return asdict(record)
