"""The data package's imports: none of the workflows or the bundle tools (that all imports are at the top,
with no circle, is tests/test_imports.py's check for the whole package)."""

from __future__ import annotations

import ast
from pathlib import Path

import brainbundles.data

DATA = Path(brainbundles.data.__file__).parent


def _modules() -> list[Path]:
    return sorted(DATA.rglob("*.py"))


def test_no_workflows_or_bundle_imports():
    found = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            found += [
                f"{path.relative_to(DATA)}: {n}"
                for n in names
                if n.startswith(("brainbundles.workflows", "brainbundles.bundle"))
            ]
    assert not found
