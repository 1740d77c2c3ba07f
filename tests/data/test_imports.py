"""The data package's imports: all at the top of their modules, none of the workflows or the bundle tools."""

from __future__ import annotations

import ast
from pathlib import Path

import brainbundles.data

DATA = Path(brainbundles.data.__file__).parent


def _modules() -> list[Path]:
    return sorted(DATA.rglob("*.py"))


def test_every_import_is_at_the_top_of_its_module():
    hidden = []
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(node) for node in tree.body}
        hidden += [
            f"{path.relative_to(DATA)}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top
        ]
    assert len(_modules()) > 10 and not hidden


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
