"""Who may do what, whether a change is the user's own, and whether it may be done now,
checked in one place for the Senders pages and the JSON API: the action each endpoint
asks the authorisation hook about, the CSRF token (as Flask-WTF's ``csrf.py`` checks it
once for a whole app) and the rate limits' refusals (Cases C7 and G5).

Each blueprint turns an authorisation or CSRF refusal into its own answer (the pages: 403
and 400 pages; the API: RFC 9457 problems), but what is asked, and how, is decided here.
A rate limit's refusal is a :class:`.failures.Failure`, told alike by both.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import current_app, request
from flask_wtf.csrf import CSRFError, validate_csrf
from wtforms import ValidationError

from ..state import get_service
from .failures import Failure, rate_limit_unavailable, rate_limited
from .ratelimit import RateLimitUnavailable, check_test_email, check_write

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


def needs_csrf_token() -> bool:
    """Whether this API call must carry the CSRF token: unless the browser could not have
    sent its credentials on its own (cookies, cached Basic or Digest, its Windows login, an
    IP allow-list all can), it must.

    Case G9: only the host knows what signed the call in, so only its
    ``smtp_senders_api_token_authenticated`` hook can let a call skip the CSRF token (True:
    a token the browser never sends by itself did). No answer, False or an error: the
    call needs the token. A header alone proves nothing: a junk ``Authorization: Bearer``
    sent beside the session cookie must not switch CSRF off."""
    try:
        answer = get_service().hooks.smtp_senders_api_token_authenticated()
    except Exception:
        current_app.logger.exception("smtp_senders_api_token_authenticated raised; "
                                     "the call needs the CSRF token")
        return True
    return answer is not True


def write_refusal() -> Failure | None:
    """Case G5: count one change by the current administrator: None to go on, or why not
    now (429 with Retry-After, 503 when the counters cannot be reached)."""
    return _refusal(check_write, "writes_rate_limited", "rate_limit_unavailable_writes")


def test_email_refusal(sender_id: int) -> Failure | None:
    """Case C7: count one Send Test Email or Check connection on ``sender_id`` by the
    current administrator: None to go on, or why not now (429 with Retry-After; 503 when
    the counters cannot be reached: nothing is sent uncounted)."""
    return _refusal(lambda: check_test_email(sender_id), "rate_limited",
                    "rate_limit_unavailable")


def _refusal(count: Callable[[], int | None], limited: str,
             unavailable: str) -> Failure | None:
    try:
        retry_after = count()
    except RateLimitUnavailable:
        return rate_limit_unavailable(unavailable)
    return None if retry_after is None else rate_limited(limited, retry_after)
