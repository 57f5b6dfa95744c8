"""Import rules import-linter cannot state: no import cycle between the
project's modules (imports inside functions included), no private name
(`_x`) imported from another module, and none of the packages a server needs
(Django and its kin) imported by the SDK helper `cronsvc_client`, which runs
on client machines with only `langgraph-sdk` installed.

    .venv/bin/python scripts/import_rules.py      # exit 1 and a list when broken

Read from the source with `ast`, so nothing is imported or executed.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cronsvc", "crons", "runs", "threads", "store", "cronsvc_client")
# What cronsvc_client may import besides the standard library.
CLIENT_ALLOWED = ("langgraph_sdk", "httpx")


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module `name` refers to (a module, or a name in one)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for each project import."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, modules)
                if target:
                    yield target, "", node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in modules:  # `from package import module`
                    yield full, "", node.lineno
                else:
                    target = _resolve(node.module, modules)
                    if target:
                        yield target, alias.name, node.lineno


def graph(root: Path = ROOT) -> tuple[dict[str, set[str]], list[str]]:
    """The module graph, and the private names imported across modules."""
    modules = project_modules(root)
    edges: dict[str, set[str]] = {m: set() for m in modules}
    private = []
    for module, path in sorted(modules.items()):
        for target, name, line in imports_of(module, path, modules):
            if target == module:
                continue
            # A package's __init__ importing its own submodules is not a cycle.
            if not target.startswith(module + "."):
                edges[module].add(target)
            if name.startswith("_") and not name.startswith("__"):
                private.append(f"{path.relative_to(root)}:{line} imports {name} from {target}")
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def client_imports(root: Path = ROOT) -> list[str]:
    """Imports of cronsvc_client that are neither the standard library nor
    CLIENT_ALLOWED (Django, the project's packages, anything else)."""
    found = []
    for path in sorted((root / "cronsvc_client").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: within the package
                    continue
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top == "cronsvc_client" or top in CLIENT_ALLOWED:
                    continue
                if top in sys.stdlib_module_names or top == "__future__":
                    continue
                found.append(f"{path.relative_to(root)}:{node.lineno} imports {name}")
    return found


def main() -> int:
    edges, private = graph()
    problems = (
        [f"import cycle: {' <-> '.join(c)}" for c in cycles(edges)]
        + [f"private name across modules: {p}" for p in private]
        + [f"cronsvc_client imports more than the SDK: {p}" for p in client_imports()]
    )
    for problem in problems:
        print(problem)
    if not problems:
        print(f"import rules: {len(edges)} modules, no cycle, no private name imported")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
