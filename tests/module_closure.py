"""The acorn modules a script imports, transitively: what its DVC stage must list as deps.

Imports inside functions count too (a stage that calls ``get_backend`` runs the Label Studio
backend's code), and importing ``acorn.a.b`` runs ``acorn/__init__.py`` and ``acorn/a/__init__.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path


def module_file(root: Path, name: str) -> Path | None:
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, root: Path) -> set[str]:
    """acorn module names imported anywhere in ``path``, with the packages that hold them."""
    names: set[str] = set()
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1]) if path.is_relative_to(root) else ""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*parts, module] if module else parts)
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)  # `from acorn import paths`
    found = set()
    for name in names:
        if name.split(".")[0] != "acorn":
            continue
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            if module_file(root, ".".join(parts[:i])) is not None:
                found.add(".".join(parts[:i]))
    return found


def closure(script: Path, root: Path) -> set[Path]:
    """Files (relative to ``root``) of every acorn module ``script`` reaches through imports."""
    seen: set[str] = set()
    todo = list(imported_modules(script, root))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(imported_modules(module_file(root, name), root) - seen)
    return {module_file(root, n).relative_to(root) for n in seen}
