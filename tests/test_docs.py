"""Every setting and every hook is documented: an undocumented knob does not exist."""

from __future__ import annotations

from pathlib import Path

import pytest

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
