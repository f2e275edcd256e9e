"""``acorn serve`` as a command: what its options, params.yaml and environment turn into.

The app (``create_app``, tested in test_app.py) and uvicorn's server are stand-ins here: these
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
import acorn.serve.cli
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

    class FakeServer:
        def __init__(self, config) -> None:
            seen.update(app=config.app, host=config.host, port=config.port)

        def run(self) -> None:
            """Serves nothing: the test has seen what would be served."""

    monkeypatch.setattr(acorn.serve.app, "create_app", recording_create_app)
    monkeypatch.setattr(server.uvicorn, "Server", FakeServer)
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
    assert (config.data_root, config.document_root) == (Path("data/tiles"), Path())  # tiles, not the repo
    assert (config.token, config.basic_auth) == ("", "")
    assert (config.allow_hosts, config.allow_private_hosts, config.public_names) == ((), False, ())


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


def test_public_address_without_auth_is_refused(served):
    for host in ("0.0.0.0", "192.168.1.20", "::"):
        result = invoke("--host", host)
        assert isinstance(result.exception, ServeConfigError), result.output
        assert "without authentication" in str(result.exception) and "--insecure-public" in str(
            result.exception
        )
        assert "host" not in served, "nothing is served"


def test_insecure_public_serves_open_with_a_warning(served, caplog):
    with caplog.at_level(logging.WARNING, logger="acorn.serve"):
        assert invoke("--host", "0.0.0.0", "--insecure-public").exit_code == 0
    assert served["host"] == "0.0.0.0" and "without authentication" in caplog.text


def test_authenticated_public_address_is_served_under_its_name(served, caplog, monkeypatch):
    monkeypatch.setenv("ACORN_SERVE_BASIC_AUTH", "ls:pw")
    with caplog.at_level(logging.WARNING, logger="acorn.serve"):
        assert invoke("--host", "192.168.1.20", "--public-name", "gpu-box.lan").exit_code == 0
    assert served["host"] == "192.168.1.20" and "without authentication" not in caplog.text
    assert {"gpu-box.lan", "192.168.1.20", "127.0.0.1"} <= served["config"].host_names


def test_secrets_are_not_in_the_config_repr(served, monkeypatch):
    for name, value in (
        ("ACORN_SERVE_TOKEN", "tok-SECRET1"),
        ("LABEL_STUDIO_API_KEY", "ls-SECRET2"),
        ("ACORN_SERVE_BASIC_AUTH", "ls:pw-SECRET3"),
    ):
        monkeypatch.setenv(name, value)
    assert invoke().exit_code == 0
    config = served["config"]
    assert config.token == "tok-SECRET1" and "SECRET" not in repr(config)


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


def test_the_limits_are_declared_once_and_the_help_says_them():
    """Limits the command leaves unset are ServeConfig's (one declaration); the numbers its help
    quotes are those, so a changed default cannot leave the help behind."""
    import inspect
    import typing

    from acorn.serve.config import ServeConfig

    defaults = {f.name: f.default for f in ServeConfig.__dataclass_fields__.values()}
    hints = typing.get_type_hints(serve, include_extras=True)
    help_text = " ".join(
        hint.__metadata__[0].help or "" for hint in hints.values() if hasattr(hint, "__metadata__")
    )
    quoted = {
        "refresh_s": ("default 30)", 30.0),
        "max_tasks": ("default 1000)", 1000),
        "max_pending": ("default 4)", 4),
        "max_image_pixels": ("default 40 M)", 40_000_000),
        "max_request_pixels": ("default 400 M)", 400_000_000),
        "max_process_pixels": ("default 120 M)", 120_000_000),
    }
    for name, (words, value) in quoted.items():
        assert words in help_text, (name, words)
        assert defaults[name] == value, f"ServeConfig.{name} is {defaults[name]}; the help says {words}"
    cli_defaults = {k: v.default for k, v in inspect.signature(serve).parameters.items()}
    for option in ("refresh", "max_tasks", "max_pending", "max_image_pixels", "max_request_pixels"):
        assert cli_defaults[option] is None, f"--{option} declares its own default"
