"""``acorn serve`` as a command: what its options, params.yaml and environment turn into.

The app (``create_app``, tested in test_app.py) and ``uvicorn.run`` are stand-ins here: these
tests check what would be served and where, without a registry, a model or a port.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import typer
from fastapi import FastAPI
from typer.testing import CliRunner

import acorn.serve.app
from acorn.serve import server
from acorn.serve.cli import serve
from acorn.serve.config import ServeConfigError


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    """Run ``acorn serve`` in ``tmp_path`` up to the point of serving; record the config and address."""
    seen: dict = {}

    def recording_create_app(config):
        seen["config"] = config
        return FastAPI()

    def fake_uvicorn_run(app, host, port, **kwargs) -> None:
        seen.update(app=app, host=host, port=port)

    monkeypatch.setattr(acorn.serve.app, "create_app", recording_create_app)
    monkeypatch.setattr(server.uvicorn, "run", fake_uvicorn_run)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("register:\n  model_name: yard-detector\nrank:\n  threshold: 0.4\n")
    return seen


def invoke(*args: str):
    app = typer.Typer()
    app.command("serve")(serve)
    app.command("other")(lambda: None)  # with two commands typer keeps the name, as in acorn.cli
    return CliRunner().invoke(app, ["serve", *args])


def test_defaults_serve_params_champion_on_loopback(served):
    result = invoke()
    assert result.exit_code == 0, result.output
    assert (served["host"], served["port"]) == ("127.0.0.1", 9090)
    config = served["config"]
    assert (config.model_name, config.threshold) == ("yard-detector", 0.4)  # from params.yaml
    assert config.data_root == Path() and (config.token, config.basic_auth) == ("", "")


def test_options_and_env_reach_the_config(served, monkeypatch):
    monkeypatch.setenv("ACORN_SERVE_TOKEN", "t0ken")
    args = [
        "--port",
        "9191",
        "--data-root",
        "imgs",
        "--refresh",
        "5",
        "--max-tasks",
        "7",
        "--max-pending",
        "2",
    ]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    config = served["config"]
    assert served["port"] == 9191 and config.data_root == Path("imgs") and config.refresh_s == 5.0
    assert (config.max_tasks, config.max_pending, config.token) == (7, 2, "t0ken")


def test_public_address_without_auth_is_warned_about(served, caplog):
    with caplog.at_level(logging.WARNING, logger="acorn.serve"):
        assert invoke("--host", "0.0.0.0").exit_code == 0
    assert served["host"] == "0.0.0.0" and "without authentication" in caplog.text


def test_authenticated_public_address_is_not_warned_about(served, caplog, monkeypatch):
    monkeypatch.setenv("ACORN_SERVE_BASIC_AUTH", "ls:pw")
    with caplog.at_level(logging.WARNING, logger="acorn.serve"):
        assert invoke("--host", "0.0.0.0").exit_code == 0
    assert "without authentication" not in caplog.text


def test_bad_settings_are_user_errors_naming_the_setting(served, monkeypatch):
    monkeypatch.setenv("ACORN_SERVE_BASIC_AUTH", "no-colon")
    result = invoke()
    assert isinstance(result.exception, ServeConfigError) and "ACORN_SERVE_BASIC_AUTH" in str(
        result.exception
    )
    assert "host" not in served, "nothing is served"
    monkeypatch.delenv("ACORN_SERVE_BASIC_AUTH")
    result = invoke("--max-pending", "0")
    assert isinstance(result.exception, ServeConfigError) and "--max-pending" in str(result.exception)
