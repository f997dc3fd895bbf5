#!/usr/bin/env python3
"""The package's import graph in layers: prints each layer with its modules, and fails on
an import cycle, an import that points up (or sideways between sibling groups), or a
private name (``_x``) imported from another module.

    python scripts/import_layers.py

Every ``from .x import`` and ``from . import x`` counts, wherever it stands (module level,
inside a function, under ``TYPE_CHECKING``): an import made lazily to dodge a cycle is
still a cycle in the design. The layers are data (LAYERS, bottom first); a module of the
package that no layer names fails the check, so a new module must say where it belongs.
Subpackages (``migrations``) are left out: they are Alembic's, not ours to arrange.

Exit status: 0 when every import points down, there is no cycle and no private name
crosses a module; 1 otherwise.
Standard library only.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "flask_smtp_senders"

#: Bottom first. Each layer is a list of sibling groups: a module may import its own
#: group and any lower layer, never a higher layer or a sibling group of its own layer.
LAYERS: list[tuple[str, dict[str, list[str]]]] = [
    ("vocabulary", {"base": ["errors", "events", "domain", "config", "destinations",
                             "diagnostics", "fastmail"]}),
    ("rules", {"rules": ["crypto", "validation"]}),
    ("parts", {"mail": ["messages", "outgoing"],
               "smtp": ["smtp_session", "pipeline", "transport"],
               "storage": ["models", "schema", "store"]}),
    ("services", {"services": ["hooks", "public", "domain_advice", "ratelimit", "sending",
                               "service", "state"]}),
    ("web and cli", {"web": ["forms", "web_headers", "guard", "api", "blueprint", "tasks",
                             "cli_group", "cli", "cli_changes"]}),
    ("extension", {"extension": ["extension", "__init__"]}),
]


def private_imports(path: Path) -> list[str]:
    """Names starting with "_" that ``path`` imports from another module of the package:
    a private name crossing a module (the issue-15 rule), e.g. ``from .x import _y``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            found += [f"{node.module or '.'}.{a.name}" for a in node.names
                      if a.name.startswith("_")]
    return found


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports, relatively, anywhere in its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
            found.update(name for name in names if name in modules)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), and self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main() -> int:
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    graph = {name: imports_of(PACKAGE / f"{name}.py", modules) for name in modules}
    place = {module: (level, group) for level, (_name, groups) in enumerate(LAYERS)
             for group, members in groups.items() for module in members}
    problems = [f"{module}: in no layer (add it to LAYERS)" for module in sorted(modules)
                if module not in place]
    problems += [f"{module}: named in LAYERS but not in the package" for module in place
                 if module not in modules]
    for module in sorted(graph):
        if module not in place:
            continue
        level, group = place[module]
        for target in sorted(graph[module]):
            if target not in place:
                continue
            other_level, other_group = place[target]
            if other_level > level:
                problems.append(f"{module} imports {target}: upward "
                                f"({LAYERS[level][0]} -> {LAYERS[other_level][0]})")
            elif other_level == level and other_group != group:
                problems.append(f"{module} imports {target}: sideways "
                                f"({group} -> {other_group})")
    problems += [f"cycle: {' <-> '.join(component)}" for component in cycles(graph)]
    problems += [f"{module} imports the private name {name}"
                 for module in sorted(modules)
                 for name in private_imports(PACKAGE / f"{module}.py")]

    for level in reversed(range(len(LAYERS))):
        name, groups = LAYERS[level]
        print(f"{level} {name}")
        for group, members in groups.items():
            sizes = ", ".join(
                f"{m} ({len((PACKAGE / f'{m}.py').read_text().splitlines())})"
                for m in members if m in modules)
            print(f"    {group}: {sizes}")
    if problems:
        print("\nimport problems:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print("\nevery import points down; no cycle; no private name crosses a module")
    return 0


if __name__ == "__main__":
    sys.exit(main())
