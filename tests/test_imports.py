"""One straight import line: no module of brainbundles imports, directly or through others, a module that
imports it back; every import of a module is at its top (the CLI aside: it imports a command's code only
when that command runs, so ``brainbundles <command> --help`` answers without loading torch); and the
modules that everything else builds on import nothing of brainbundles."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tools" / "brainbundles"
#: modules that import nothing of brainbundles
LEAVES = {"brainbundles.paths", "brainbundles.errors", "brainbundles.fileio"}


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        name = ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def _imports(tree: ast.AST, modules: dict[str, Path]) -> list[tuple[ast.stmt, set[str]]]:
    """Each import statement of ours with the modules it loads (packages' ``__init__`` left out: they only
    gather their modules' names)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("brainbundles"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("brainbundles")]
        else:
            continue
        found = set()
        for n in names:
            while n not in modules and "." in n:
                n = n.rsplit(".", 1)[0]
            if n in modules and modules[n].name != "__init__.py":
                found.add(n)
        out.append((node, found))
    return out


def test_no_import_circle_and_imports_at_the_top():
    modules = _modules()
    graph, inner = {}, []
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        graph[name] = set()
        for _node, found in _imports(tree, modules):
            graph[name] |= found - {name}
        if name != "brainbundles.cli":
            inner += [
                f"{name}:{n.lineno}"
                for n in ast.walk(tree)
                if isinstance(n, (ast.Import, ast.ImportFrom)) and n.col_offset > 0
            ]
    assert inner == [], f"imports inside functions: {inner}"
    for leaf in LEAVES:
        assert graph[leaf] == set(), f"{leaf} imports {graph[leaf]}"

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for m in graph[todo.pop()]:
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        return seen

    circles = sorted(m for m in graph if m in reach(m))
    assert circles == [], f"modules on an import circle: {circles}"
