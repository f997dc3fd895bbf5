"""The JSON API under ``{SMTP_SENDERS_URL_PREFIX}/api``: the pages' operations for scripts.

The same rules as the pages, through the same service: the ``smtp_senders_authorize``
hook on every route (the host authenticates, by session or token, inside it), the same
validation, the password write-only and required with every change, the same rate limit
on the test and the check, the same audit events, the same flows and messages (a
change and a probe run through :mod:`.actions`; what a failure says is :mod:`.failures`).
Errors are RFC 9457 problem details (:mod:`.problems`), with a field map for invalid
fields (:mod:`.bodies` reads the JSON bodies).

A call that changes something needs the CSRF token in an ``X-CSRFToken`` header unless
it was authenticated by credentials a browser never sends by itself, which only the host
can tell: its ``smtp_senders_api_token_authenticated`` hook answers True for those calls
(:func:`.guard.needs_csrf_token`). A browser sends cookies, cached Basic or Digest
credentials and its Windows login to us whatever page made the call, and a header alone
proves nothing (a junk ``Authorization`` header can ride beside the session cookie), so
without the hook's True every change needs the token. A host's global ``CSRFProtect``
(Flask-WTF) is told to leave the API to these rules (:func:`exempt_from_global_csrf`):
it would refuse a script's token call, which has no CSRF token to send.
Bodies must be ``application/json`` (a form post from another site cannot be). Changes
use optimistic locking: ``PATCH`` and ``DELETE`` need ``If-Match`` with the sender's
``ETag``.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request, url_for
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from ..errors import SenderNotFound, StorageError
from ..services.public import sender_as_dict, sender_tag
from ..state import get_service, is_api_path
from ..storage.base import Sender
from . import bodies, problems
from .actions import change, probe
from .failures import Failure, failure_of
from .guard import authorized, csrf_refusal, needs_csrf_token
from .problems import Problem, json_response

api = Blueprint("smtp_senders_api", __name__)

#: A sender as JSON is about 1 KB: nothing legitimate comes near this.
MAX_BODY = 64 * 1024
CSRF_HEADERS = ("X-CSRFToken", "X-CSRF-Token")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# -- every request ---------------------------------------------------------------------

def exempt_from_global_csrf(app: Flask) -> None:
    """Leave this blueprint out of the host's ``CSRFProtect(app)``, if it has one: the
    API checks CSRF itself (:func:`.guard.needs_csrf_token`: every change needs the
    token but for a call the host says a token signed in), where a global check would
    refuse every bearer-token call. The pages stay under both checks."""
    csrf = app.extensions.get("csrf")
    if isinstance(csrf, CSRFProtect):  # Flask-WTF's (another extension may use the key)
        csrf.exempt(api)  # idempotent: a set of blueprints


@api.record_once
def exempt_when_registered(state: BlueprintSetupState) -> None:
    """A ``CSRFProtect(app)`` made before ``SMTPSenders(app)``: its check runs before
    ours on every request, so it is told now."""
    exempt_from_global_csrf(state.app)


@api.before_app_request
def exempt_before_csrf_protect() -> None:
    """A ``CSRFProtect(app)`` made after ``SMTPSenders(app)``: its ``before_request``
    runs after this one (app-wide hooks run in the order they were added), so it is
    told here, before it looks at an API call."""
    if request.blueprint == api.name:
        exempt_from_global_csrf(current_app)


@api.before_app_request
def unknown_api_route() -> ResponseReturnValue | None:
    """A 404 or 405 under the API answers as a problem, not with the host's HTML page
    (routing failed, so no blueprint handler would see it)."""
    error = request.routing_exception
    if error is None or isinstance(error, RequestRedirect):
        return None
    if not is_api_path(current_app.config, request.path):
        return None
    return problems.of_http(error).response() if isinstance(error, HTTPException) else None


@api.before_request
def authorize_and_check_request() -> None:
    if not authorized():
        raise problems.forbidden()
    if request.method in _SAFE_METHODS:
        return
    request.max_content_length = MAX_BODY  # a longer body is refused (413) unread
    if needs_csrf_token():
        token = next((request.headers[h] for h in CSRF_HEADERS if h in request.headers), None)
        refusal = csrf_refusal(token)
        if refusal is not None:
            raise problems.csrf(refusal)


@api.errorhandler(Problem)
def problem(error: Problem) -> Response:
    return error.response()


@api.errorhandler(Failure)
def failure(error: Failure) -> Response:
    """What the pages would tell (a refusal, a conflict, a failed save), as a problem."""
    return problems.of_failure(error).response()


@api.errorhandler(HTTPException)
def http_problem(error: HTTPException) -> Response:
    return problems.of_http(error).response()


@api.errorhandler(StorageError)
def storage_unavailable(error: StorageError) -> Response:
    # A missing table says which command creates it (SMTP_SENDERS_MSG_TABLE_MISSING).
    return problems.of_failure(failure_of(error)).response()


# -- reading -----------------------------------------------------------------------------

def sender_body(sender: Sender) -> dict[str, Any]:
    """A sender as the API shows it: settings and state; never the password or anything
    derived from it (``password_usable`` says whether it must be re-entered)."""
    return sender_as_dict(sender) | {
        "password_usable": get_service().password_readable(sender)}


def _sender_response(sender: Sender, status: int = 200,
                     headers: dict[str, str] | None = None) -> Response:
    return json_response(sender_body(sender), status,
                         {"ETag": _etag(sender), **(headers or {})})


def _etag(sender: Sender) -> str:
    """The sender's tag: it changes with every saved change (not with test results),
    and never matches a later sender given the same id."""
    return f'"{sender_tag(sender)}"'


def _sender(sender_id: int) -> Sender:
    try:
        return get_service().get_sender(sender_id)
    except SenderNotFound:
        raise problems.not_found() from None


@api.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of this API, with this app's address in ``servers``."""
    document = dict(openapi_document())
    document["servers"] = [{"url": url_for(".list_senders").removesuffix("/senders")}]
    return json_response(document)


@cache
def openapi_document() -> dict[str, Any]:
    """The checked-in document (``openapi.json`` beside this module)."""
    text = resources.files("flask_smtp_senders").joinpath("openapi.json").read_text("utf-8")
    return json.loads(text)


@api.get("/senders")
def list_senders() -> Response:
    senders = get_service().list_senders()
    return json_response({"senders": [sender_body(sender) for sender in senders]})


@api.get("/senders/<int:sender_id>")
def read_sender(sender_id: int) -> Response:
    return _sender_response(_sender(sender_id))


# -- changes: each counted against the write rate limit, nothing half-saved ----------------

@api.post("/senders")
def create_sender() -> Response:
    settings, password = bodies.sender_settings(
        ("username", "password", "server_name", "from_address"))
    sender = change(lambda: get_service().create_sender(settings, password))
    return _sender_response(sender, 201, {
        "Location": url_for(".read_sender", sender_id=sender.id)})


@api.patch("/senders/<int:sender_id>")
def update_sender(sender_id: int) -> Response:
    """Change some settings; the password must be given with every change (as on the
    page), so that whoever changes where it goes proves they know it."""
    current = _sender(sender_id)
    version = _if_match(current)
    settings, password = bodies.sender_settings(("password",), current)
    return _sender_response(change(lambda: get_service().update_sender(
        sender_id, version, settings, password)))


@api.delete("/senders/<int:sender_id>")
def delete_sender(sender_id: int) -> Response:
    version = _if_match(_sender(sender_id))
    change(lambda: get_service().delete_sender(sender_id, version))
    response = current_app.response_class(status=204)
    del response.headers["Content-Type"]
    return response


@api.post("/senders/<int:sender_id>/default")
def set_default(sender_id: int) -> Response:
    return _sender_response(change(lambda: get_service().set_default_sender(sender_id)))


def _if_match(sender: Sender) -> int:
    """The version the change is made against: If-Match must name the current one."""
    condition = request.if_match
    if not condition and "If-Match" not in request.headers:
        raise problems.precondition_required()
    if condition.star_tag or condition.contains(sender_tag(sender)):
        return sender.version
    raise problems.conflict()


# -- test email and connection check -------------------------------------------------------

@api.post("/senders/<int:sender_id>/test")
def test_email(sender_id: int) -> Response:
    """Send the test message to ``recipient``; the outcome (sent or not) is the answer."""
    recipient = bodies.recipient(required=True)
    return json_response(probe(_sender(sender_id), "test", recipient).as_dict())


@api.post("/senders/<int:sender_id>/check")
def check_connection(sender_id: int) -> Response:
    """The dry run (nothing delivered); ``recipient`` is optional. Either answers 200
    whether the server accepted or not (the request itself was served), with the result,
    its diagnosis and the From-domain advice."""
    recipient = bodies.recipient(required=False)
    return json_response(probe(_sender(sender_id), "check", recipient).as_dict())
