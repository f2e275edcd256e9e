"""Model registry on MLflow: every trained model a version, the best one the ``champion``.

The weights are logged as an MLflow pyfunc so that anything that speaks MLflow can load
``models:/<name>@champion`` and detect; acorn's own serve path loads it the same way. The
champion alias moves only when a new version beats it on the fixed test set, so a bad
cycle never replaces the model that Label Studio pre-annotates with.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import pandas as pd

from acorn.errors import AcornError

EXPERIMENT = "acorn"
CHAMPION, CHALLENGER = "champion", "challenger"


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
        from acorn.detection import Detector, DetectorConfig

        settings = dict(context.model_config or {})
        self.detector = Detector(DetectorConfig(weights=context.artifacts["weights"], **settings))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from acorn.detection import load_images

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
    gain: float  # metric minus the previous champion's: near zero for a few cycles, stop labeling
    tracking_uri: str


def register(
    weights: Path,
    metrics: dict[str, float],
    name: str,
    metric: str,
    detector_settings: dict,
    root: Path = Path(),
) -> RegistryRecord:
    """Log ``weights`` as a new version of ``name``; make it challenger, and champion if it wins."""
    client = configure_mlflow(root)
    if metric not in metrics:
        raise AcornError(f"register.metric {metric!r} is not among the train metrics {sorted(metrics)}")
    # its warnings here (cloudpickled python_model, no signature) are expected, not actionable
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    with mlflow.start_run(run_name=f"cycle-{metrics.get('cycle', 0)}") as run:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=YoloPyfunc(),
            artifacts={"weights": str(weights)},
            model_config=detector_settings,
            pip_requirements=["ultralytics", "torch", "torchvision", "pandas", "pillow"],
            registered_model_name=name,
        )
    version = int(info.registered_model_version)
    value = float(metrics[metric])
    client.set_model_version_tag(name, str(version), metric, str(value))
    client.set_registered_model_alias(name, CHALLENGER, str(version))
    champion = champion_version(client, name)
    previous = _version_metric(client, name, champion, metric) if champion is not None else 0.0
    if champion is None or value > previous:
        client.set_registered_model_alias(name, CHAMPION, str(version))
        champion = version
    aliases = sorted(client.get_model_version(name, str(version)).aliases)
    return RegistryRecord(
        name=name,
        version=version,
        model_version=model_version_label(name, version),
        aliases=aliases,
        run_id=run.info.run_id,
        metric=metric,
        value=value,
        champion_version=champion,
        champion_model_version=model_version_label(name, champion),
        gain=round(value - previous, 6),
        tracking_uri=redacted(tracking_uri(root)),
    )


def download_weights(name: str, version: int, dest: Path, root: Path = Path()) -> Path:
    """The weights file of registered ``version``, written atomically to ``dest``."""
    import tempfile

    from acorn.atomic import copy_file

    uri = tracking_uri(root)
    with tempfile.TemporaryDirectory(prefix="acorn-weights-") as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=tmp, tracking_uri=uri, registry_uri=uri
            )
        )
        found = [p for p in (local / "artifacts").rglob("*.pt")]
        if len(found) != 1:
            raise RuntimeError(f"models:/{name}/{version} holds {len(found)} .pt artifacts, expected one")
        copy_file(found[0], dest)
    return dest


def model_version_label(name: str, version: int) -> str:
    return f"{name}-v{version}"


def champion_version(client: mlflow.MlflowClient, name: str) -> int | None:
    try:
        return int(client.get_model_version_by_alias(name, CHAMPION).version)
    except mlflow.exceptions.MlflowException:
        return None


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
