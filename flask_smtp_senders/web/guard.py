"""Who may do what, and whether a change is the user's own, checked in one place for the
Senders pages and the JSON API: the action each endpoint asks the authorisation hook
about, and the CSRF token (as Flask-WTF's ``csrf.py`` checks it once for a whole app).

Each blueprint turns a refusal into its own answer (the pages: 403 and 400 pages; the
API: RFC 9457 problems), but what is asked, and how, is decided here.
"""

from __future__ import annotations

from flask import request
from flask_wtf.csrf import CSRFError, validate_csrf
from wtforms import ValidationError

from ..state import get_service

#: endpoint (blueprint.view) -> the action the ``smtp_senders_authorize`` hook is asked
#: about, for the pages and the API alike (docs/hooks.md lists the actions).
ACTIONS = {
    "smtp_senders.index": "list",
    "smtp_senders.static": "list",
    "smtp_senders.new": "create",
    "smtp_senders.create": "create",
    "smtp_senders.edit": "update",
    "smtp_senders.make_default": "update",
    "smtp_senders.delete": "delete",
    "smtp_senders.test_email": "test",
    "smtp_senders.check_connection": "test",
    "smtp_senders_api.list_senders": "list",
    "smtp_senders_api.read_sender": "list",
    "smtp_senders_api.openapi": "list",
    "smtp_senders_api.create_sender": "create",
    "smtp_senders_api.update_sender": "update",
    "smtp_senders_api.set_default": "update",
    "smtp_senders_api.delete_sender": "delete",
    "smtp_senders_api.test_email": "test",
    "smtp_senders_api.check_connection": "test",
}


def authorized() -> bool:
    """Ask the host's hook about the current request's action and sender (an endpoint
    this table does not name is asked about by its own name: the hook decides)."""
    endpoint = request.endpoint or ""
    action = ACTIONS.get(endpoint, endpoint.rpartition(".")[2])
    sender_id = (request.view_args or {}).get("sender_id")
    return get_service().authorize(action, sender_id)


def csrf_refusal(token: str | None) -> str | None:
    """None when ``token`` is the session's valid CSRF token, else why it is not."""
    try:
        validate_csrf(token)
    except (ValidationError, CSRFError) as exc:
        return str(exc)
    return None
