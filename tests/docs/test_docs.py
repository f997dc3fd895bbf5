"""Every setting, hook, CLI command, page, template (with its context) and API operation
and problem type is documented: an undocumented knob does not exist."""

from __future__ import annotations

import ast
import functools
import json
import re
from pathlib import Path

import pytest
from flask import Flask
from openapidocs.mk.v3 import OpenAPIV3DocumentationHandler

from flask_smtp_senders.cli import cli
from flask_smtp_senders.hooks import HookSpecs
from flask_smtp_senders.settings import DEFAULTS
from flask_smtp_senders.web.api import api

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"
HOOKS = sorted(name for name in vars(HookSpecs) if name.startswith("smtp_senders_"))


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_every_setting_is_documented(key):
    assert f"`{key}`" in (DOCS / "configuration.md").read_text()


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook):
    assert f"`{hook}(" in (DOCS / "hooks.md").read_text()


def test_hook_list_is_not_empty():
    assert {"smtp_senders_store", "smtp_senders_authorize", "smtp_senders_audit",
            "smtp_senders_prepare_message"} <= set(HOOKS)


def test_every_page_is_in_the_site_navigation():
    """mkdocs.yml lists every page of docs/ (``make test`` builds the site with --strict)."""
    nav = (DOCS.parent / "mkdocs.yml").read_text()
    pages = sorted(page.name for page in DOCS.glob("*.md"))
    assert pages and [page for page in pages if f": {page}" not in nav] == []


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_cli_command_is_documented(command):
    assert f"flask smtp-senders {command}" in (DOCS / "cli.md").read_text()


# -- templates ---------------------------------------------------------------------------

TEMPLATES = DOCS.parent / "flask_smtp_senders" / "templates"
TEMPLATE_NAMES = sorted(path.relative_to(TEMPLATES).as_posix()
                        for path in TEMPLATES.rglob("*.html"))
#: A row of docs/templates.md's table: | `name` | page | context |
TEMPLATE_ROW = re.compile(r"^\| `([^`]+\.html)` \|[^|]*\|([^|]*)\|$", re.MULTILINE)


def documented_templates() -> dict[str, set[str]]:
    """template -> the context variables its row names (backticked)."""
    text = (DOCS / "templates.md").read_text()
    return {name: set(re.findall(r"`([A-Za-z_]\w*)`", context))
            for name, context in TEMPLATE_ROW.findall(text)}


@functools.cache
def rendered_context() -> dict[str, set[str]]:
    """template -> every keyword any ``render_template`` call of the package gives it."""
    context: dict[str, set[str]] = {}
    for module in (DOCS.parent / "flask_smtp_senders").rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None)
                    == "render_template" and node.args
                    and isinstance(node.args[0], ast.Constant)):
                names = {keyword.arg for keyword in node.keywords if keyword.arg}
                context.setdefault(node.args[0].value, set()).update(names)
    return context


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_every_template_is_documented(template):
    assert template in documented_templates()


def test_the_templates_table_names_only_templates_that_exist():
    assert TEMPLATE_NAMES and sorted(documented_templates()) == TEMPLATE_NAMES


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_the_documented_context_is_what_the_template_gets(template):
    assert "smtp_senders/form.html" in rendered_context()  # the parse found the calls
    assert documented_templates()[template] == rendered_context().get(template, set())


# -- the JSON API ------------------------------------------------------------------------

API_DOC = DOCS / "api.md"
API_SOURCE = DOCS.parent / "flask_smtp_senders" / "web" / "problems.py"
OPENAPI = DOCS.parent / "flask_smtp_senders" / "openapi.json"
OAD_TAG = re.compile(r"\[OAD\(([^)]+)\)\]")


def api_routes() -> list[str]:
    """``METHOD /path`` of every route of the API blueprint, as the document writes them."""
    app = Flask(__name__)
    app.register_blueprint(api, url_prefix="/api")
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("smtp_senders_api."):
            path = re.sub(r"<(?:[^<>:]+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api"))
            routes += [f"{method} {path}" for method in rule.methods - {"HEAD", "OPTIONS"}]
    return sorted(routes)


@functools.cache
def rendered_reference() -> str:
    """What neoteroi-mkdocs makes of the ``[OAD(...)]`` tag of docs/api.md, as the site
    build does."""
    tags = OAD_TAG.findall(API_DOC.read_text())
    assert len(tags) == 1
    assert (DOCS / tags[0]).resolve() == OPENAPI.resolve()
    data = json.loads(OPENAPI.read_text())
    return OpenAPIV3DocumentationHandler(data, style="MARKDOWN", source=tags[0]).write()


def test_the_site_renders_the_openapi_document():
    assert "neoteroi.mkdocsoad" in (DOCS.parent / "mkdocs.yml").read_text()
    assert len(api_routes()) >= 9


@pytest.mark.parametrize("route", api_routes())
def test_every_api_route_is_documented(route):
    assert f"| `{route}` |" in API_DOC.read_text()  # the hand-written overview
    assert f"\n### {route}\n" in rendered_reference()  # the rendered reference


@pytest.mark.parametrize("operation_id", sorted(
    operation["operationId"] for item in json.loads(OPENAPI.read_text())["paths"].values()
    for operation in item.values() if isinstance(operation, dict) and "operationId" in operation))
def test_every_operation_id_is_documented(operation_id):
    assert f"`{operation_id}`" in API_DOC.read_text()


def problem_kinds() -> list[str]:
    """The ``kind`` of every ``Problem(status, "kind", ...)`` api.py raises."""
    return sorted(set(re.findall(r'Problem\(\s*\d+,\s*"([a-z-]+)"', API_SOURCE.read_text())))


@pytest.mark.parametrize("kind", problem_kinds())
def test_every_problem_type_is_documented(kind):
    assert f"| `urn:flask-smtp-senders:problem:{kind}` |" in API_DOC.read_text()


def test_only_problem_types_the_api_has_are_documented():
    documented = re.findall(r"urn:flask-smtp-senders:problem:([a-z-]+)", API_DOC.read_text())
    assert len(problem_kinds()) >= 10
    assert sorted(set(documented)) == problem_kinds()
