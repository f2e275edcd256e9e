"""Locked environments: make a lock, install a venv from it, check a venv against it.

    python tools/lock.py compile requirements.in requirements.txt
    python tools/lock.py compile requirements-labelstudio.in requirements-labelstudio.txt
    python tools/lock.py sync  .venv/bin/python requirements.txt
    python tools/lock.py check .venv/bin/python requirements.txt

``make lock`` runs both compiles (the one command that refreshes the locks); ``make`` syncs
``.venv`` from ``requirements.txt``; acorn installs Label Studio's venv from
``requirements-labelstudio.txt``; the tests check both venvs.

``compile`` asks pip's own resolver what a fresh venv would install for the input file today
(``pip install --dry-run --report``, pip >= 22.2, in a throw-away venv) and writes every package
at its exact version with the sha256 of the file pip chose, in pip-tools' format. A lock with
hashes switches ``pip install -r`` to hash-checking mode, so a fresh install gets these files and
no other: a new release of a transitive dependency cannot change it. Why not pip-compile or uv:
this needs no tool beyond the pip every venv has, and it sees the torch wheels this machine's pip
takes from local disk (uv does not). The lock holds the files of the platform it was made on
(Linux x86_64, CPython 3.11 here); on another platform, run ``make lock`` there.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# a venv's own bootstrap tools: not drift when a lock does not name them
_BOOTSTRAP = {"pip", "setuptools", "wheel"}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s\\;]+)")


def normalize(name: str) -> str:
    """PEP 503 name, so that ``Django`` and ``django``, ``ruamel.yaml`` and ``ruamel-yaml`` match."""
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve(requirements: Path) -> list[dict]:
    """What a fresh venv would install for ``requirements`` (pip's install report entries)."""
    with tempfile.TemporaryDirectory(prefix="acorn-lock-") as scratch:
        venv = Path(scratch) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        report = Path(scratch) / "report.json"
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--dry-run"]
        cmd = [*pip, "--ignore-installed", "--report", str(report), "-r", str(requirements.resolve())]
        subprocess.run(cmd, check=True)
        return json.loads(report.read_text(encoding="utf-8"))["install"]


def active_extras(installs: list[dict]) -> dict[str, set[str]]:
    """The extras of each package that something in the environment asks for.

    pip's report names only the extras asked for at the top level (``moto[server]``); the ones a
    dependency asks for (dagshub needs ``gql[requests]``) are read from each package's
    ``Requires-Dist``, following extras that switch on further extras until nothing changes.
    """
    from pip._vendor.packaging.requirements import Requirement

    requires = {
        normalize(i["metadata"]["name"]): [Requirement(r) for r in i["metadata"].get("requires_dist") or []]
        for i in installs
    }
    active = {normalize(i["metadata"]["name"]): set(i.get("requested_extras") or []) for i in installs}
    changed = True
    while changed:
        changed = False
        for package, reqs in requires.items():
            for req in reqs:
                dependency = normalize(req.name)
                wanted = {normalize(e) for e in req.extras}
                if dependency not in active or wanted <= active[dependency]:
                    continue
                contexts = [""] + sorted(active[package])
                if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in contexts):
                    active[dependency] |= wanted
                    changed = True
    return active


def lock_text(installs: list[dict], source: str) -> str:
    """Sorted ``name[extras]==version --hash=...`` entries; refuses a package whose file has no hash.

    Extras that anything asked for are written into the pin: in hash-checking mode pip treats
    ``gql[requests]`` (asked for by dagshub) as a requirement of its own that must be pinned.
    """
    lines = [
        f"# Made from {source} by `make lock` (tools/lock.py): do not edit by hand.",
        "# Every package of the environment at an exact version, with the hash of the file pip chose.",
    ]
    extras_of = active_extras(installs)
    for item in sorted(installs, key=lambda i: normalize(i["metadata"]["name"])):
        name, version = normalize(item["metadata"]["name"]), item["metadata"]["version"]
        extras = sorted(extras_of[name])
        if extras:
            name += f"[{','.join(extras)}]"
        hashes = item["download_info"].get("archive_info", {}).get("hashes", {})
        if "sha256" not in hashes:
            raise SystemExit(f"{name}=={version}: pip reported no sha256 for {item['download_info']['url']}")
        lines.append(f"{name}=={version} \\\n    --hash=sha256:{hashes['sha256']}")
    return "\n".join(lines) + "\n"


def read_lock(lock: Path) -> dict[str, str]:
    """``{normalized name: version}`` of every pin in a lock file."""
    pins = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[normalize(match.group(1))] = match.group(2)
    return pins


def installed(python: Path) -> dict[str, str]:
    """``{normalized name: version}`` of what the venv of ``python`` holds (editable installs left out)."""
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {normalize(p["name"]): p["version"] for p in json.loads(out)}


def drift(python: Path, lock: Path) -> list[str]:
    """Every way the venv differs from its lock, one line each; empty when they match.

    ``pip check`` runs too: a venv can match a lock and still hold a broken requirement if the lock
    itself was edited by hand.
    """
    wanted, have = read_lock(lock), installed(python)
    problems = [
        f"{name}: locked {version}, not installed" for name, version in wanted.items() if name not in have
    ]
    problems += [
        f"{name}: locked {version}, installed {have[name]}"
        for name, version in wanted.items()
        if name in have and have[name] != version
    ]
    problems += [
        f"{name} {version}: installed, not in the lock"
        for name, version in have.items()
        if name not in wanted and name not in _BOOTSTRAP
    ]
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True)
    if check.returncode != 0:
        problems += [f"pip check: {line}" for line in check.stdout.splitlines() if line.strip()]
    return sorted(problems)


def sync(python: Path, lock: Path) -> list[str]:
    """Install the lock into the venv, remove what the lock does not hold, return what still drifts."""
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(lock)], check=True)
    wanted = read_lock(lock)
    extra = [name for name in installed(python) if name not in wanted and name not in _BOOTSTRAP]
    if extra:
        subprocess.run([str(python), "-m", "pip", "uninstall", "--quiet", "--yes", *extra], check=True)
    return drift(python, lock)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in {"compile", "sync", "check"}:
        print(__doc__, file=sys.stderr)
        return 2
    command, first, lock = argv[0], Path(argv[1]), Path(argv[2])
    if command == "compile":
        installs = resolve(first)
        tmp = lock.with_name(lock.name + ".tmp")
        tmp.write_text(lock_text(installs, first.name), encoding="utf-8")
        tmp.replace(lock)
        print(f"{lock}: {len(installs)} packages locked from {first}")
        return 0
    problems = sync(first, lock) if command == "sync" else drift(first, lock)
    for line in problems:
        print(f"{lock}: {line}", file=sys.stderr)
    if problems:
        print(
            f"the venv of {first} does not match {lock}: run `make install` (or remove the venv)",
            file=sys.stderr,
        )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
