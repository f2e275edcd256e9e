"""Both environments are installed from complete locks, and a venv that drifts from its lock fails here.

A transitive dependency released between two green runs once broke every fresh install of the Label
Studio venv (sentry-sdk 3.0); these tests make such a drift one loud failure instead of dozens of
unrelated ones.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lock_tool():
    spec = importlib.util.spec_from_file_location("acorn_lock_tool", ROOT / "tools" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock = _lock_tool()


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-labelstudio.txt"])
def test_every_lock_pins_every_package_with_a_hash(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    pins = lock.read_lock(ROOT / name)
    assert len(pins) > 100, f"{name} holds {len(pins)} pins: not a complete lock"
    assert text.count("--hash=sha256:") == len(pins), f"{name}: a pin without its hash"


def test_every_top_level_pin_is_in_its_lock_at_the_same_version():
    for source, target in [
        ("requirements.in", "requirements.txt"),
        ("requirements-labelstudio.in", "requirements-labelstudio.txt"),
    ]:
        asked, locked = lock.read_lock(ROOT / source), lock.read_lock(ROOT / target)
        differ = {n: (v, locked.get(n)) for n, v in asked.items() if locked.get(n) != v}
        assert not differ, f"{target} is stale against {source} (asked, locked): {differ}; run `make lock`"


def test_this_venv_matches_the_project_lock():
    assert lock.drift(Path(sys.executable), ROOT / "requirements.txt") == []


def test_drift_names_each_package_that_differs_is_missing_or_extra(tmp_path):
    pins = lock.read_lock(ROOT / "requirements.txt")
    assert pins["pyyaml"] == "6.0.4"
    altered = dict(pins, pyyaml="6.0.3")
    del altered["pandas"]
    altered["no-such-package"] = "1.0"
    fake = tmp_path / "lock.txt"
    fake.write_text("".join(f"{n}=={v} \\\n    --hash=sha256:{'0' * 64}\n" for n, v in altered.items()))
    problems = lock.drift(Path(sys.executable), fake)
    assert problems == [
        "no-such-package: locked 1.0, not installed",
        f"pandas {pins['pandas']}: installed, not in the lock",
        "pyyaml: locked 6.0.3, installed 6.0.4",
    ]


def test_lock_text_sorts_normalizes_and_refuses_a_file_without_hash():
    def entry(name, version, sha=None):
        info = {"url": f"https://example.invalid/{name}-{version}.whl"}
        if sha:
            info["archive_info"] = {"hashes": {"sha256": sha}}
        return {"metadata": {"name": name, "version": version}, "download_info": info}

    text = lock.lock_text([entry("Zope_Thing", "2", "b" * 64), entry("Django", "5.2", "a" * 64)], "x.in")
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == [
        "django==5.2 \\",
        f"    --hash=sha256:{'a' * 64}",
        "zope-thing==2 \\",
        f"    --hash=sha256:{'b' * 64}",
    ]
    with pytest.raises(SystemExit, match="no sha256"):
        lock.lock_text([entry("torch", "2.14.1")], "x.in")


def test_extras_asked_for_by_a_dependency_are_written_into_the_pin():
    """In hash-checking mode pip refuses ``gql[requests]`` (asked for by dagshub) unless the lock pins it
    with its extra: a fresh install failed on exactly this."""

    def entry(name, requires=(), requested=None):
        item = {"metadata": {"name": name, "version": "1", "requires_dist": list(requires)}}
        item["download_info"] = {"url": "x", "archive_info": {"hashes": {"sha256": "0" * 64}}}
        if requested:
            item["requested_extras"] = requested
        return item

    installs = [
        entry("dagshub", ["gql[requests]>=3"]),
        entry("gql", ['requests ; extra == "requests"', 'websockets ; extra == "websockets"']),
        entry("moto", ['flask-cors[extra-thing] ; extra == "server"'], requested=["server"]),
        entry("flask-cors"),
        entry("unused", ['gql[websockets] ; extra == "never"']),
    ]
    assert lock.active_extras(installs) == {
        "dagshub": set(),
        "gql": {"requests"},
        "moto": {"server"},
        "flask-cors": {"extra-thing"},
        "unused": set(),
    }
    pins = [line for line in lock.lock_text(installs, "x.in").splitlines() if "==" in line]
    assert "gql[requests]==1 \\" in pins and "moto[server]==1 \\" in pins and "dagshub==1 \\" in pins
