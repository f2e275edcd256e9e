"""The documentation cannot rot unseen: the docs site builds in strict mode (a broken link or
anchor, or a page missing from the nav, fails), the guides outside it (README.md,
benchmarks/**/README.md) link only to files and headings that exist, and the README's code
layout names every top-level part of ``acorn/``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

from tests.conftest import REPO

GUIDES = [REPO / "README.md", *sorted((REPO / "benchmarks").rglob("README.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def test_the_docs_site_builds_in_strict_mode(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(REPO / "mkdocs.yml"),
            "-d",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "index.html").is_file()


def anchors(page: Path) -> set[str]:
    """The heading ids mkdocs (Python-Markdown's toc) gives a page."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slugify(title.replace("`", ""), "-") for title in HEADING.findall(text)}


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: str(p.relative_to(REPO)))
def test_a_guide_outside_the_site_links_to_what_exists(guide: Path):
    text = FENCE.sub("", guide.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (guide.parent / path).resolve() if path else guide
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{guide.relative_to(REPO)}: {broken}"


def test_the_readme_layout_names_every_part_of_acorn():
    """A newcomer reads the layout as the architecture: a module missing from it is invisible."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout") :]
    acorn = REPO / "acorn"
    parts = [f"{p.name}/" for p in acorn.iterdir() if (p / "__init__.py").is_file()]
    parts += [p.name for p in acorn.glob("*.py") if not p.name.startswith("__")]
    missing = sorted(name for name in parts if name not in layout)
    assert not missing, f"README.md's Layout does not name {missing}"
