"""The JSON API under ``{SMTP_SENDERS_URL_PREFIX}/api``: the pages' operations for scripts.

The same rules as the pages, through the same service: the ``smtp_senders_authorize``
hook on every route (the host authenticates, by session or token, inside it), the same
validation, the password write-only and required with every change, the same rate limit
on the test and the check, the same audit events. Errors are RFC 9457 problem details
(``application/problem+json``), with a field map for invalid fields.

A call that changes something needs the CSRF token in an ``X-CSRFToken`` header unless
it was authenticated by credentials a browser never sends by itself, which only the host
can tell: its ``smtp_senders_api_token_authenticated`` hook answers True for those calls.
A browser sends cookies, cached Basic or Digest credentials and its Windows login to us
whatever page made the call, and a header alone proves nothing (a junk ``Authorization``
header can ride beside the session cookie), so without the hook's True every change
needs the token.
Bodies must be ``application/json`` (a form post from another site cannot be). Changes
use optimistic locking: ``PATCH`` and ``DELETE`` need ``If-Match`` with the sender's
``ETag``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

from flask import Blueprint, Response, current_app, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import RequestRedirect

from ..errors import (
    AuditFailed,
    ConcurrentUpdate,
    InvalidSenderData,
    SenderNotFound,
    StorageError,
    TableMissing,
)
from ..services.public import sender_as_dict, sender_tag
from ..services.senders import ProbeResult
from ..settings import message
from ..state import get_service, is_api_path
from ..storage.sqlalchemy import Sender
from ..validation import (
    MSG_REQUIRED,
    SETTING_NAMES,
    SenderSettings,
    validate_password,
    validate_recipient,
    validate_settings,
)
from .guard import authorized, csrf_refusal
from .ratelimit import test_email_refusal, write_refusal

api = Blueprint("smtp_senders_api", __name__)

PROBLEM_JSON = "application/problem+json"
#: Problem types are this prefix and a name; docs/api.md explains each one.
PROBLEM_BASE = "urn:flask-smtp-senders:problem:"
#: A sender as JSON is about 1 KB: nothing legitimate comes near this.
MAX_BODY = 64 * 1024
CSRF_HEADERS = ("X-CSRFToken", "X-CSRF-Token")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: The fields a sender body may hold (``password`` is write-only); all strings but port.
_SENDER_FIELDS = frozenset(SETTING_NAMES) | {"password"}


class Problem(Exception):
    """An RFC 9457 problem to answer with; ``extra`` adds members (``errors``...)."""

    def __init__(self, status: int, kind: str, title: str, detail: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        self.status, self.kind, self.title, self.detail = status, kind, title, detail
        self.headers = headers or {}
        self.extra = extra
        super().__init__(title)

    def response(self) -> Response:
        body: dict[str, Any] = {"type": f"{PROBLEM_BASE}{self.kind}" if self.kind
                                else "about:blank",
                                "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        body.update(self.extra)
        return _json(body, self.status, self.headers, PROBLEM_JSON)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None,
          mimetype: str = "application/json") -> Response:
    response = current_app.response_class(json.dumps(body), status=status,
                                          mimetype=mimetype, headers=headers)
    response.headers["Cache-Control"] = "no-store"  # never keep sender settings in a cache
    return response


def _msg(name: str, **values: str) -> str:
    return message(current_app.config, name, **values)


# -- every request ---------------------------------------------------------------------

@api.before_app_request
def unknown_api_route() -> ResponseReturnValue | None:
    """A 404 or 405 under the API answers as a problem, not with the host's HTML page
    (routing failed, so no blueprint handler would see it)."""
    error = request.routing_exception
    if error is None or isinstance(error, RequestRedirect):
        return None
    if not is_api_path(current_app.config, request.path):
        return None
    return _problem_for(error).response() if isinstance(error, HTTPException) else None


@api.before_request
def authorize_and_check_request() -> None:
    if not authorized():
        raise Problem(403, "forbidden", "You are not allowed to do this.")
    if request.method in _SAFE_METHODS:
        return
    request.max_content_length = MAX_BODY  # a longer body is refused (413) unread
    if _ambient_credentials():
        token = next((request.headers[h] for h in CSRF_HEADERS if h in request.headers), None)
        refusal = csrf_refusal(token)
        if refusal is not None:
            raise Problem(403, "csrf", "The CSRF token is missing or invalid.",
                          f"A call without a token in its Authorization header (made with "
                          f"the session cookie, say) needs the page's CSRF token in an "
                          f"X-CSRFToken header ({refusal}).")


def _ambient_credentials() -> bool:
    """Whether the browser could have sent this call's credentials on its own (cookies,
    cached Basic or Digest, its Windows login, an IP allow-list): all but a token.

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


@api.errorhandler(Problem)
def problem(error: Problem) -> Response:
    return error.response()


@api.errorhandler(HTTPException)
def http_problem(error: HTTPException) -> Response:
    return _problem_for(error).response()


@api.errorhandler(StorageError)
def storage_unavailable(error: StorageError) -> Response:
    # A missing table says which command creates it (SMTP_SENDERS_MSG_TABLE_MISSING).
    text = str(error) if isinstance(error, TableMissing) else _msg("storage_unavailable")
    return Problem(503, "unavailable", text).response()


def _problem_for(error: HTTPException) -> Problem:
    headers = {}
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        headers["Allow"] = ", ".join(sorted(error.valid_methods))
    return Problem(error.code or 500, "", error.name, error.description, headers)


# -- reading -----------------------------------------------------------------------------

def sender_body(sender: Sender) -> dict[str, Any]:
    """A sender as the API shows it: settings and state; never the password or anything
    derived from it (``password_usable`` says whether it must be re-entered)."""
    return sender_as_dict(sender) | {
        "password_usable": get_service().password_readable(sender)}


def _sender_response(sender: Sender, status: int = 200,
                     headers: dict[str, str] | None = None) -> Response:
    return _json(sender_body(sender), status, {"ETag": _etag(sender), **(headers or {})})


def _etag(sender: Sender) -> str:
    """The sender's tag: it changes with every saved change (not with test results),
    and never matches a later sender given the same id."""
    return f'"{sender_tag(sender)}"'


def _sender(sender_id: int) -> Sender:
    try:
        return get_service().get_sender(sender_id)
    except SenderNotFound:
        raise _not_found() from None


def _not_found() -> Problem:
    return Problem(404, "not-found", "There is no sender with this id.")


def _conflict() -> Problem:
    return Problem(412, "conflict", "The sender was changed since you read it.",
                   "Read it again (its ETag changed) and retry with the new ETag in If-Match.")


@api.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of this API, with this app's address in ``servers``."""
    document = dict(openapi_document())
    document["servers"] = [{"url": url_for(".list_senders").removesuffix("/senders")}]
    return _json(document)


@cache
def openapi_document() -> dict[str, Any]:
    """The checked-in document (``openapi.json`` beside this module)."""
    text = resources.files("flask_smtp_senders").joinpath("openapi.json").read_text("utf-8")
    return json.loads(text)


@api.get("/senders")
def list_senders() -> Response:
    senders = get_service().list_senders()
    return _json({"senders": [sender_body(sender) for sender in senders]})


@api.get("/senders/<int:sender_id>")
def read_sender(sender_id: int) -> Response:
    return _sender_response(_sender(sender_id))


# -- changes -----------------------------------------------------------------------------

@api.post("/senders")
def create_sender() -> Response:
    settings, password = _sender_body(("username", "password", "server_name", "from_address"))
    sender = _saving(lambda: get_service().create_sender(settings, password))
    return _sender_response(sender, 201, {
        "Location": url_for(".read_sender", sender_id=sender.id)})


@api.patch("/senders/<int:sender_id>")
def update_sender(sender_id: int) -> Response:
    """Change some settings; the password must be given with every change (as on the
    page), so that whoever changes where it goes proves they know it."""
    current = _sender(sender_id)
    version = _if_match(current)
    settings, password = _sender_body(("password",), current)
    sender = _saving(lambda: get_service().update_sender(
        sender_id, version, settings, password))
    return _sender_response(sender)


@api.delete("/senders/<int:sender_id>")
def delete_sender(sender_id: int) -> Response:
    version = _if_match(_sender(sender_id))
    _saving(lambda: get_service().delete_sender(sender_id, version))
    response = current_app.response_class(status=204)
    del response.headers["Content-Type"]
    return response


@api.post("/senders/<int:sender_id>/default")
def set_default(sender_id: int) -> Response:
    return _sender_response(_saving(lambda: get_service().set_default_sender(sender_id)))


def _saving(save: Callable[[], Any]) -> Any:
    """Run a change, answering its failures as problems; nothing half-saved either way.
    Case G5: each change counts against the administrator's write rate limit first."""
    refusal = write_refusal()
    if refusal is not None and refusal.status == 429:
        raise Problem(429, "rate-limited", refusal.message, headers=refusal.headers)
    if refusal is not None:
        raise Problem(503, "rate-limit-unavailable", refusal.message)
    try:
        return save()
    except InvalidSenderData as exc:
        raise _invalid(exc.errors) from None
    except SenderNotFound:
        raise _not_found() from None
    except ConcurrentUpdate:
        raise _conflict() from None
    except AuditFailed:
        raise Problem(503, "save-failed", _msg("save_failed")) from None


def _if_match(sender: Sender) -> int:
    """The version the change is made against: If-Match must name the current one."""
    condition = request.if_match
    if not condition and "If-Match" not in request.headers:
        raise Problem(428, "precondition-required", "If-Match is required.",
                      "Send the sender's ETag (from GET) in If-Match, so that a change "
                      "made meanwhile by someone else is not overwritten.")
    if condition.star_tag or condition.contains(sender_tag(sender)):
        return sender.version
    raise _conflict()


def _invalid(errors: dict[str, str]) -> Problem:
    return Problem(422, "invalid", "Some fields are not valid.",
                   " ".join(f"{name}: {text}" for name, text in errors.items()),
                   errors=errors)


def _body(required: tuple[str, ...] = (), allowed: frozenset[str] = _SENDER_FIELDS
          ) -> dict[str, Any]:
    """The JSON object sent, with known fields of the right JSON type only."""
    body = _json_object()
    errors = _field_errors(body, required, allowed)
    if errors:
        raise _invalid(errors)
    return body


def _json_object() -> dict[str, Any]:
    """The body as a JSON object: 415, 400 or 422 when it is none."""
    if request.mimetype != "application/json":
        raise Problem(415, "unsupported-media-type", "The body must be application/json.")
    body = request.get_json(silent=True)
    if body is None:
        raise Problem(400, "malformed", "The body is not valid JSON.")
    if not isinstance(body, dict):
        raise Problem(422, "invalid", "The body must be a JSON object.")
    return body


def _field_errors(body: dict[str, Any], required: tuple[str, ...],
                  allowed: frozenset[str]) -> dict[str, str]:
    """The fields of the wrong shape: unknown, of the wrong JSON type, or missing (the
    values themselves are checked by the service, as the form's are)."""
    errors = {name: "Unknown field." for name in body if name not in allowed}
    for name, value in body.items():
        if name == "port":
            if isinstance(value, bool) or not isinstance(value, int | type(None)):
                errors[name] = "Must be an integer."
        elif name in allowed and not isinstance(value, str):
            errors[name] = "Must be a string."
    for name in required:
        if name not in errors and not body.get(name):
            errors[name] = MSG_REQUIRED
    return errors


def _sender_body(required: tuple[str, ...], current: Sender | None = None
                 ) -> tuple[SenderSettings, str]:
    """The settings (the current ones with the body's changes) and password of a create
    or update body, every field checked at once: a wrong JSON type and a bad value are
    reported together, as the form reports every field."""
    body = _json_object()
    errors = _field_errors(body, required, _SENDER_FIELDS)
    values = {name: value for name, value in body.items() if name not in errors}
    password = values.pop("password", "")
    merged = {name: getattr(current.settings, name) for name in SETTING_NAMES} if current \
        else {name: "" for name in SETTING_NAMES if name != "port"}
    merged |= {name: value for name, value in values.items() if value is not None}
    try:
        settings = validate_settings(**merged, rules=get_service().address_rules)
    except InvalidSenderData as exc:
        errors = exc.errors | errors  # a wrong type says more than the value check
    if "password" not in errors:
        try:
            validate_password(password)
        except InvalidSenderData as exc:
            errors |= exc.errors
    if errors:
        raise _invalid(errors)
    return settings, password


# -- test email and connection check -------------------------------------------------------

@api.post("/senders/<int:sender_id>/test")
def test_email(sender_id: int) -> Response:
    """Send the test message to ``recipient``; the outcome (sent or not) is the answer."""
    recipient = _recipient(_body(required=("recipient",), allowed=frozenset({"recipient"})))
    if recipient is None:  # blanks only: nothing to send to, and nothing counted
        raise _invalid({"recipient": MSG_REQUIRED})
    return _exchange(sender_id, lambda: get_service().send_test_email(sender_id, recipient))


@api.post("/senders/<int:sender_id>/check")
def check_connection(sender_id: int) -> Response:
    """The dry run (nothing delivered); ``recipient`` is optional."""
    recipient = _recipient(_body(allowed=frozenset({"recipient"})))
    return _exchange(sender_id, lambda: get_service().check_connection(sender_id, recipient))


def _recipient(body: dict[str, Any]) -> str | None:
    """The recipient checked before the rate limit counts the request (as on the page)."""
    value = body.get("recipient")
    if value is None or not value.strip(" \t"):
        return None
    try:
        return validate_recipient(value, get_service().address_rules)
    except InvalidSenderData as exc:
        raise _invalid(exc.errors) from None


def _exchange(sender_id: int, run: Callable[[], ProbeResult]) -> Response:
    """Rate-limit, run, and answer with the result, its diagnosis and the From-domain
    advice (200 whether the server accepted or not: the request itself was served)."""
    sender = _sender(sender_id)
    refusal = test_email_refusal(sender_id)
    if refusal is not None and refusal.status == 429:
        raise Problem(429, "rate-limited", refusal.message, headers=refusal.headers)
    if refusal is not None:  # the counters cannot be reached: nothing is sent
        raise Problem(503, "rate-limit-unavailable", refusal.message)
    try:
        result = run()
    except SenderNotFound:  # deleted meanwhile
        raise _not_found() from None
    return _json({"ok": result.ok, "message": result.message, "stage": result.stage,
                  "diagnosis": result.diagnosis.as_dict(),
                  "domain_advice": get_service().domain_advice(sender.settings.from_address)})
