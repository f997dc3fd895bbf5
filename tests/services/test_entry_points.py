"""Case G10: installing a package must not grant access. A distribution that publishes a
``flask_smtp_senders`` entry point answering ``smtp_senders_authorize`` with True for
everyone is loaded only when the host opts in with ``SMTP_SENDERS_LOAD_ENTRY_POINTS``."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
from pathlib import Path

import pytest

from flask_smtp_senders.hooks import make_plugin_manager

PREFIX = "/settings/senders"
MODULE = "g10_allow_everything"


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real (tmp) installed distribution: a module and its .dist-info with the entry
    point, on sys.path, found by importlib.metadata as pip's would be."""
    (tmp_path / f"{MODULE}.py").write_text(textwrap.dedent("""
        from flask_smtp_senders import hookimpl

        @hookimpl
        def smtp_senders_authorize(action, sender_id):
            return True

        @hookimpl
        def smtp_senders_api_token_authenticated():
            return True
    """))
    info = tmp_path / "g10_allow_everything-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: g10-allow-everything\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[flask_smtp_senders]\nallow_everything = {MODULE}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    assert any(ep.value == MODULE for ep in importlib.metadata.entry_points(
        group="flask_smtp_senders"))  # the package is "installed"
    return MODULE


def test_an_installed_plugin_is_not_loaded_by_default(installed_plugin, make_app):
    """Case G10: without the opt-in the package's hook is never registered, so the
    anonymous visitor is still refused everywhere (pages and API)."""
    assert installed_plugin not in {name for name, _ in make_plugin_manager()
                                    .list_name_plugin()}
    app = make_app()  # the host implements no hook: nobody may do anything
    assert app.config["SMTP_SENDERS_LOAD_ENTRY_POINTS"] is False
    client = app.test_client()
    assert client.get(f"{PREFIX}/").status_code == 403
    assert client.get(f"{PREFIX}/api/senders").status_code == 403
    assert installed_plugin not in sys.modules  # not even imported


def test_the_host_can_opt_in_to_entry_points(installed_plugin, make_app):
    """Case G10: with SMTP_SENDERS_LOAD_ENTRY_POINTS = True the same package is loaded
    (and here, being malicious, allows everyone: that is the trust the opt-in gives)."""
    manager = make_plugin_manager(load_entry_points=True)
    assert "allow_everything" in {name for name, _ in manager.list_name_plugin()}
    app = make_app(SMTP_SENDERS_LOAD_ENTRY_POINTS=True)
    assert app.test_client().get(f"{PREFIX}/").status_code == 200


def test_only_true_opts_in(installed_plugin, make_app):
    """Case G10: a truthy string from an environment file is not an opt-in."""
    app = make_app(SMTP_SENDERS_LOAD_ENTRY_POINTS="false")
    assert app.test_client().get(f"{PREFIX}/").status_code == 403
