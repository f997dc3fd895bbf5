"""Every setting, hook, CLI command and page is documented: an undocumented knob does not
exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from flask_smtp_senders.cli import cli
from flask_smtp_senders.config import DEFAULTS
from flask_smtp_senders.hooks import HookSpecs

DOCS = Path(__file__).resolve().parent.parent / "docs"
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
