"""The registry's champion, loaded in the background and swapped when the alias moves.

Label Studio gives ``/setup`` three seconds, and loading a model takes longer, so nothing
here blocks a request: a watcher thread resolves ``<name>@champion`` every ``refresh_s``
seconds and loads a version it has not loaded yet, while the previous one keeps serving.
A version is loaded by number (``models:/<name>/<version>``) right after the alias is read,
so the ``model_version`` a prediction carries is always the model that made it.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field

import mlflow

from acorn.model.detection import Detector
from acorn.model.registry import CHAMPION, model_version_label, redacted
from acorn.serve.redaction import scrub

log = logging.getLogger("acorn.serve")


class ModelUnavailable(RuntimeError):
    """No model can serve yet; the message says what to do."""


@dataclass
class LoadedModel:
    version: int
    label: str  # served_model_version: what Label Studio shows on this model's predictions
    detector: Detector
    # Detector is not re-entrant (it collects embeddings in a hook) and a CPU runs one forward
    # pass well, not two: requests take turns on the model
    lock: threading.Lock = field(default_factory=threading.Lock)


def served_model_version(name: str, version: int) -> str:
    """The ``model_version`` of acorn serve's predictions: the registry's label plus ``-serve``.

    The rank stage pushes the same champion's boxes under the registry's own label
    (``acorn.model.registry.model_version_label``) with a ``score`` that encodes queue order, and
    sets it as the project's model version. Label Studio's labeling stream and its
    prediction-score column read only predictions of the project's model version, and a
    task with two of them would be sorted by the lower score. Serve scores by mean
    confidence, so under the same label it could reorder the queue; under its own it never
    takes part in that order.
    """
    return f"{model_version_label(name, version)}-serve"


class Champion:
    def __init__(self, name: str, tracking_uri: str, refresh_s: float = 30.0) -> None:
        self.name = name
        self.tracking_uri = tracking_uri
        self.refresh_s = refresh_s
        self._client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._changed = threading.Condition()
        self._model: LoadedModel | None = None
        self._target: int | None = None  # the version the alias pointed to at the last check
        self._error: str | None = None
        self._checked = False  # at least one check has finished (loaded or failed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching; the first check (and load) happens at once, in the background."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, name="acorn-champion", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.refresh_s)

    def refresh(self) -> None:
        """Read the alias; load the version it names unless that one is already serving."""
        try:
            version = int(self._client.get_model_version_by_alias(self.name, CHAMPION).version)
        except mlflow.exceptions.MlflowException as exc:
            self._fail(
                f"no {self.name}@{CHAMPION} in {redacted(self.tracking_uri)}: register a model first "
                f"(`dvc repro register`) or point MLFLOW_TRACKING_URI at the right store ({exc.message})"
            )
            return
        except Exception as exc:  # the store is unreachable: keep serving what is loaded
            self._fail(f"cannot read the registry at {redacted(self.tracking_uri)}: {exc}")
            return
        with self._changed:
            self._target = version
            current = self._model is not None and self._model.version == version
            if current:
                self._error, self._checked = None, True
            self._changed.notify_all()
        if not current:
            self._load(version)

    def _load(self, version: int) -> None:
        label = served_model_version(self.name, version)
        log.info("loading %s (%s@%s) from %s", label, self.name, CHAMPION, redacted(self.tracking_uri))
        start = time.perf_counter()
        try:
            detector = self._detector(version)
        except Exception as exc:
            self._fail(f"cannot load {label}: {type(exc).__name__}: {exc}")
            return
        with self._changed:
            previous = self._model
            self._model = LoadedModel(version, label, detector)
            self._error, self._checked = None, True
            self._changed.notify_all()
        log.info(
            "serving %s (loaded in %.1f s%s)",
            label,
            time.perf_counter() - start,
            f"; replaces {previous.label}" if previous else "",
        )

    def _detector(self, version: int) -> Detector:
        """The pyfunc's own Detector: the same load path and settings as any MLflow consumer."""
        with tempfile.TemporaryDirectory(prefix="acorn-serve-") as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{self.name}/{version}",
                dst_path=tmp,
                tracking_uri=self.tracking_uri,
                registry_uri=self.tracking_uri,
            )
            return mlflow.pyfunc.load_model(local).unwrap_python_model().detector

    def _fail(self, message: str) -> None:
        """Record an error for ``/health`` and ``/setup``, which answer without auth: MLflow's
        exception text quotes the tracking URI, credentials included, so it is scrubbed first."""
        message = scrub(message)
        with self._changed:
            if message != self._error:
                serving = f"; still serving {self._model.label}" if self._model else ""
                log.error("%s%s", message, serving)
            self._error, self._checked = message, True
            self._changed.notify_all()

    def current(self, timeout: float) -> LoadedModel:
        """The model serving now; waits up to ``timeout`` s for the first load only."""
        with self._changed:
            self._changed.wait_for(lambda: self._model is not None or self._checked, timeout)
            if self._model is not None:
                return self._model
            raise ModelUnavailable(self._error or f"{self.name}@{CHAMPION} is still loading; retry shortly")

    def target_label(self, timeout: float) -> str:
        """The version the alias names (loaded or loading), waiting up to ``timeout`` s for a first check."""
        with self._changed:
            self._changed.wait_for(lambda: self._target is not None or self._checked, timeout)
            if self._target is not None:
                return served_model_version(self.name, self._target)
            raise ModelUnavailable(self._error or f"{self.name}@{CHAMPION}: registry not read yet; retry")

    def status(self) -> dict:
        with self._changed:
            model, target = self._model, self._target
            if model is not None and model.version == target:
                state = "ready"
            elif target is not None and self._error is None:
                state = "loading"
            else:
                state = "error" if self._error else "starting"
            return {
                "state": state,
                "model_version": model.label if model else None,
                "champion": served_model_version(self.name, target) if target else None,
                "error": self._error,
            }
