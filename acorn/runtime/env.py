"""Offline, quiet defaults for the third-party tools acorn drives.

Users' clusters often have no internet: ultralytics would fetch a font and sync settings,
MLflow and DVC would send telemetry. These settings are applied by the project itself,
before those libraries are imported, and never override what the user has already set.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

_ENV_DEFAULTS = {
    "YOLO_OFFLINE": "1",
    "YOLO_VERBOSE": "False",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
    "GIT_PYTHON_REFRESH": "quiet",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}

# ultralytics integrations that would log elsewhere or reach the network
_ULTRALYTICS_OFF = ("sync", "mlflow", "dvc", "clearml", "comet", "raytune", "tensorboard", "wandb")
_FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def acorn_home() -> Path:
    """Per-user folder for tool state that is not project data (ultralytics config, fonts)."""
    return Path(os.environ.get("ACORN_HOME", Path.home() / ".cache" / "acorn"))


def configure_environment() -> None:
    """Apply offline defaults; idempotent and cheap, safe to call from every entry point."""
    for key, value in _ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    config_dir = Path(os.environ.setdefault("YOLO_CONFIG_DIR", str(acorn_home() / "ultralytics")))
    _install_font(config_dir)


def _install_font(config_dir: Path) -> None:
    """ultralytics downloads Arial.ttf unless it is already in its config dir: give it a local TTF."""
    targets = [config_dir / "Ultralytics" / name for name in _FONT_NAMES]
    targets += [config_dir / name for name in _FONT_NAMES]
    if all(t.exists() for t in targets):
        return
    source = _local_ttf()
    for target in targets:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(f".tmp{os.getpid()}")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)


def _local_ttf() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def configure_ultralytics() -> None:
    """Switch off ultralytics' integrations; call before training or predicting."""
    from ultralytics import settings
    from ultralytics.utils import patches

    wanted = {key: False for key in _ULTRALYTICS_OFF}
    if any(settings.get(key) is not False for key in wanted):
        settings.update(wanted)
    # ultralytics patches PIL.Image.open process-wide: on a file PIL cannot identify it tries to
    # pip-install pi-heif (a download) and then raises ImportError instead of PIL's error. acorn
    # reads no HEIF: keep PIL's own behaviour.
    if hasattr(patches, "_pil_plugins_registered"):
        patches._pil_plugins_registered = True
