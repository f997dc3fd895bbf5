"""The tests' own layout: no test module imports another test module or a conftest.

What tests share lives in tests/support/ (named by its job) and shared fixtures in a
conftest.py; a test module that imports another one drags that module's fixtures and
tests along, and breaks as soon as either moves. Every file under tests/ is parsed:
``import``/``from ... import`` statements, relative ones resolved, and code passed as a
string to a subprocess (``python -c "from tests... import ..."``) too. Every folder of
tests is a package, so two test modules may share a basename.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def _module_name(path: Path) -> str:
    """``tests.web.test_api`` for tests/web/test_api.py, ``tests.web`` for its __init__."""
    parts = path.relative_to(TESTS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _forbidden(module: str) -> bool:
    """A test module or a conftest: under ``tests``, last part ``test_*`` or ``conftest``."""
    parts = module.split(".")
    return parts[0] == "tests" and (parts[-1].startswith("test_") or parts[-1] == "conftest")


def _resolve(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join([*base, *([node.module] if node.module else [])])


def imported_modules(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """(line, module) for every module an import statement of ``tree`` names, including
    ``from package import module`` (a name that may be a module is counted as one)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node, package)
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _code_strings(tree: ast.AST) -> list[tuple[int, ast.AST]]:
    """String constants that are Python code with an import in them (``python -c``)."""
    parsed: list[tuple[int, ast.AST]] = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and "import " in node.value):
            try:
                parsed.append((node.lineno, ast.parse(node.value)))
            except SyntaxError:
                continue  # prose, not code
    return parsed


def violations(path: Path, source: str | None = None) -> list[str]:
    """Every import of a test module or a conftest in the file at ``path``."""
    source = path.read_text(encoding="utf-8") if source is None else source
    tree = ast.parse(source, filename=str(path))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    relative = path.relative_to(TESTS.parent).as_posix()
    found = [f"{relative}:{line}: imports {module}"
             for line, module in imported_modules(tree, package) if _forbidden(module)]
    for line, code in _code_strings(tree):
        found += [f"{relative}:{line}: code in a string imports {module}"
                  for _, module in imported_modules(code, package) if _forbidden(module)]
    return found


def test_no_test_module_or_conftest_imports_another_test_module_or_a_conftest():
    """Every tests/**/test_*.py and conftest.py (and tests/support/) imports what it shares
    from tests.support, never from a test module or a conftest."""
    files = sorted(TESTS.rglob("*.py"))
    assert any(path.name.startswith("test_") for path in files)
    assert any(path.name == "conftest.py" for path in files)
    problems = [problem for path in files for problem in violations(path)]
    assert problems == []


def test_the_check_sees_every_way_of_importing_a_test_module():
    """The check itself: each spelling below is one violation, the support imports none.
    (The bad ones are templates, "{}" the module, so that this file breaks no rule.)"""
    here = TESTS / "web" / "test_example.py"
    bad = [("import tests.web.{}", "test_pages"), ("from tests.{} import Database", "conftest"),
           ("from tests.web.{} import csrf", "test_pages"),
           ("from tests.web import {}", "test_pages"), ("from . import {}", "test_pages"),
           ("from .{} import csrf", "test_pages"), ("from ..{} import Database", "conftest"),
           ("from tests.browser.{} import Portal", "conftest"),
           ('CODE = "from tests.web.{} import build_app"', "test_ratelimit")]
    for template, module in bad:
        line = template.format(module)
        assert len(violations(here, line)) == 1, line
    fine = ["from tests.support.pages import csrf", "from tests.support import cases",
            "import tests.support.smtp_servers", "from . import helpers",
            'TEXT = "tests import nothing here"']
    for line in fine:
        assert violations(here, line) == [], line


def test_every_folder_of_tests_is_a_package():
    """Test modules in different folders may share a basename only if each folder is a
    package (pytest's default import mode)."""
    folders = {path.parent for path in TESTS.rglob("*.py")}
    assert sorted(str(folder.relative_to(TESTS.parent)) for folder in folders
                  if not (folder / "__init__.py").is_file()) == []
