#!/usr/bin/env python3
"""The package's import graph in layers: prints each layer with its modules, and fails on
an import cycle, an import that points up (or sideways between sibling groups), or a
private name (``_x``) imported from another module.

    python scripts/import_layers.py

Every ``from .x import`` and ``from . import x`` counts, wherever it stands (module level,
inside a function, under ``TYPE_CHECKING``): an import made lazily to dodge a cycle is
still a cycle in the design. The layers are data (LAYERS, bottom first); a module of the
package that no layer names fails the check, so a new module must say where it belongs.
Subpackages are layers' groups (``smtp.*``); Alembic's ``storage/migrations`` is left out.

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
#: A member ending in ``.*`` is a whole subpackage (its ``__init__`` and every module in
#: it, at any depth): the folders are the layers.
LAYERS: list[tuple[str, dict[str, list[str]]]] = [
    ("vocabulary", {"base": ["errors", "events", "domain", "settings", "texts",
                             "destinations", "deadline",
                             "advice_texts", "token_advice_texts"]}),
    ("rules", {"rules": ["text_checks", "addresses", "validation", "sealed", "crypto",
                        "provider_fields", "https_urls"]}),
    ("parts", {"mail": ["mail.*"], "smtp": ["smtp.*"], "storage": ["storage.*"],
               "oauth": ["oauth.*"]}),
    ("services", {"services": ["hooks", "state", "services.*"]}),
    ("web, cli and contrib", {"web": ["blueprint", "web.*"], "cli": ["cli.*"],
                               "contrib": ["contrib.*"]}),
    ("extension", {"extension": ["extension", "__init__"]}),
]
#: Alembic's folder: its env.py and revisions are Alembic's, not ours to arrange.
LEFT_OUT = "storage.migrations"


def module_ids() -> dict[str, Path]:
    """Every module of the package by its dotted id below the package ("smtp.session");
    a subpackage's ``__init__`` is the subpackage's id ("cli"), the package's own is
    ``__init__``."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        name = ".".join(parts)
        if name != LEFT_OUT and not name.startswith(LEFT_OUT + "."):
            found[name] = path
    return found


def _package_of(module: str, path: Path) -> list[str]:
    """The dotted parts of the package a module's relative imports start from."""
    if path.name == "__init__.py":
        return [] if module == "__init__" else module.split(".")
    return module.split(".")[:-1]


def private_imports(path: Path) -> list[str]:
    """Names starting with "_" that ``path`` imports from another module of the package:
    a private name crossing a module, e.g. ``from .x import _y``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            found += [f"{node.module or '.'}.{a.name}" for a in node.names
                      if a.name.startswith("_")]
    return found


def imports_of(module: str, path: Path, modules: set[str]) -> set[str]:
    """The package modules ``module`` imports, relatively, anywhere in its code: for
    ``from .smtp import transport`` the submodule ``smtp.transport``, for ``from .smtp
    import Name`` the subpackage ``smtp`` itself."""
    found: set[str] = set()
    package = _package_of(module, path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = package[:len(package) - (node.level - 1)]
        target = base + (node.module.split(".") if node.module else [])
        for alias in node.names:
            submodule = ".".join(target + [alias.name])
            if submodule in modules:
                found.add(submodule)
            elif target:
                found.add(".".join(target))
    return found & modules


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


def place_of(module: str) -> tuple[int, str] | None:
    """(layer, group) of a module, or None when no layer names it."""
    for level, (_name, groups) in enumerate(LAYERS):
        for group, members in groups.items():
            for member in members:
                if member == module or (member.endswith(".*") and (
                        module == member[:-2] or module.startswith(member[:-1]))):
                    return level, group
    return None


def main() -> int:
    paths = module_ids()
    modules = set(paths)
    graph = {name: imports_of(name, paths[name], modules) for name in modules}
    place = {module: found for module in modules if (found := place_of(module))}
    problems = [f"{module}: in no layer (add it to LAYERS)" for module in sorted(modules)
                if module not in place]
    named = {m.removesuffix(".*") for _n, groups in LAYERS for ms in groups.values() for m in ms}
    problems += [f"{module}: named in LAYERS but not in the package"
                 for module in sorted(named) if module not in modules]
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
                 for name in private_imports(paths[module])]

    for level in reversed(range(len(LAYERS))):
        name, groups = LAYERS[level]
        print(f"{level} {name}")
        for group in groups:
            sizes = ", ".join(
                f"{m} ({len(paths[m].read_text(encoding='utf-8').splitlines())})"
                for m in sorted(place, key=lambda m: (m.count("."), m))
                if place[m] == (level, group))
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
