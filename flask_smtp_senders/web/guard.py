"""Who may do what, whether a change is the user's own, and whether it may be done now,
checked in one place for the Senders pages and the JSON API: the action each endpoint
asks the authorisation hook about (each asked at most once per request, and told to the
templates as ``can``), where a visitor who is not signed in is sent, the CSRF token (as
Flask-WTF's ``csrf.py`` checks it once for a whole app) and the rate limits' refusals
(Cases C7 and G5).

Each blueprint turns an authorisation or CSRF refusal into its own answer (the pages: the
host's login for a visitor not signed in, else 403 and 400 pages; the API: RFC 9457
problems, never a redirect), but what is asked, and how, is decided here. A rate limit's
refusal is a :class:`.failures.Failure`, told alike by both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app, redirect, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, validate_csrf
from wtforms import ValidationError

from ..state import get_service
from .failures import Failure, rate_limit_unavailable, rate_limited
from .ratelimit import RateLimitUnavailable, check_test_email, check_write

#: endpoint (blueprint.view) -> the action the ``smtp_senders_authorize`` hook is asked
#: about, for the pages and the API alike (docs/hooks.md has the table of every route).
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


#: (endpoint, method) asked about another action than its endpoint's other methods:
#: opening a sender's page only reads it (saving it updates it).
BY_METHOD = {("smtp_senders.edit", "GET"): "read"}
#: action -> the action that implies it: who may change a sender may see it (so a host
#: whose hook predates ``read`` keeps opening senders with ``update``).
IMPLIED_BY = {"read": "update"}
#: Where the answers of the current request are kept (one WSGI environ per request).
_ANSWERS = "flask_smtp_senders.authorizations"


def action_of(endpoint: str, method: str) -> str:
    """The action ``method`` on ``endpoint`` asks about (an endpoint the tables do not
    name is asked about by its own name: the hook decides)."""
    method = "GET" if method == "HEAD" else method
    return BY_METHOD.get((endpoint, method)) or ACTIONS.get(
        endpoint, endpoint.rpartition(".")[2])


def may(action: str, sender_id: int | None = None) -> bool:
    """Whether the host's hook allows ``action`` on ``sender_id`` (or the action that
    implies it); each (action, sender) is asked at most once per request."""
    if _answer(action, sender_id):
        return True
    implied = IMPLIED_BY.get(action)
    return implied is not None and _answer(implied, sender_id)


def _answer(action: str, sender_id: int | None) -> bool:
    answers: dict[tuple[str, int | None], bool] = request.environ.setdefault(_ANSWERS, {})
    key = (action, sender_id)
    if key not in answers:
        answers[key] = get_service().authorize(action, sender_id)
    return answers[key]


def authorized() -> bool:
    """Ask the host's hook about the current request's action and sender."""
    sender_id = (request.view_args or {}).get("sender_id")
    return may(action_of(request.endpoint or "", request.method), sender_id)


class Permissions:
    """What the current user may do, for the pages' templates (``can``): each property is
    what the page route of that name would ask, on the request's sender (None on the
    list: a host that decides per sender answers there for senders in general; every
    route still asks about its own sender). Asked only when a template reads it, at most
    once per request."""

    def __init__(self, sender_id: int | None) -> None:
        self.sender_id = sender_id

    def _route(self, endpoint: str, method: str, sender_id: int | None) -> bool:
        return may(action_of(f"smtp_senders.{endpoint}", method), sender_id)

    @property
    def list(self) -> bool:
        return self._route("index", "GET", None)

    @property
    def create(self) -> bool:
        return self._route("create", "POST", None)

    @property
    def read(self) -> bool:
        """Open a sender's page (``read``, or ``update``): read-only without ``update``."""
        return self._route("edit", "GET", self.sender_id)

    @property
    def update(self) -> bool:
        return self._route("edit", "POST", self.sender_id)

    @property
    def make_default(self) -> bool:
        return self._route("make_default", "POST", self.sender_id)

    @property
    def delete(self) -> bool:
        return self._route("delete", "POST", self.sender_id)

    @property
    def test(self) -> bool:
        """Send Test Email and Check connection."""
        return self._route("test_email", "POST", self.sender_id)


def template_context() -> dict[str, Any]:
    """What the pages' templates get beside their own context: ``can``."""
    return {"can": Permissions((request.view_args or {}).get("sender_id"))}


def login_redirect() -> ResponseReturnValue | None:
    """The answer for a visitor the hook refused who is not signed in: the host's login
    page with ``next`` this page, or None (then 403).

    Flask-Login, when the app has a ``LoginManager``: a signed-in user
    (``current_user.is_authenticated``) is simply refused; anyone else gets what
    ``LoginManager.unauthorized()`` answers (its ``unauthorized_handler``, or a redirect
    to the blueprint's or the app's ``login_view`` with ``next``, and its login message
    flashed) when the host set one of those. Otherwise the ``smtp_senders_login_url``
    hook, given this page, answers the URL to send the visitor to, or None (signed in,
    or no opinion). A raising hook is logged and the visitor refused."""
    manager = getattr(current_app, "login_manager", None)
    if manager is not None:
        try:
            from flask_login import current_user
        except ImportError:  # something else called itself login_manager
            manager = None
        else:
            if current_user.is_authenticated:
                return None
            if (manager.unauthorized_callback or manager.login_view
                    or manager.blueprint_login_views.get(request.blueprint)):
                return manager.unauthorized()
    try:
        url = get_service().hooks.smtp_senders_login_url(next_url=_this_page())
    except Exception:
        current_app.logger.exception("smtp_senders_login_url raised; answering 403")
        return None
    if url is None:
        return None
    if not isinstance(url, str) or not url:
        current_app.logger.error("smtp_senders_login_url answered %r, not a URL; "
                                 "answering 403", url)
        return None
    return redirect(url)


def _this_page() -> str:
    """The requested page as a path on this site, with its query (``next`` for a login
    view that accepts only local paths)."""
    query = request.query_string.decode("latin-1")
    return request.script_root + request.path + (f"?{query}" if query else "")


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
