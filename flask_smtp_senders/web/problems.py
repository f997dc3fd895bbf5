"""The JSON API's problem documents (RFC 9457, ``application/problem+json``) and its JSON
answers: every problem type the API answers with is built here, by name, so that
docs/api.md's table can be checked against this one module (a test does).

What a failure of the service or a rate limit says is decided in :mod:`.failures`, for
the pages too; :func:`of_failure` only dresses it as a problem.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flask import Response, current_app
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from .failures import NOT_FOUND, Failure

PROBLEM_JSON = "application/problem+json"
#: Problem types are this prefix and a name; docs/api.md explains each one.
PROBLEM_BASE = "urn:flask-smtp-senders:problem:"


class Problem(Exception):
    """An RFC 9457 problem to answer with; ``extra`` adds members (``errors``...)."""

    def __init__(self, status: int, kind: str, title: str, detail: str | None = None,
                 headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        self.status, self.kind, self.title, self.detail = status, kind, title, detail
        self.headers = dict(headers or {})
        self.extra = extra
        super().__init__(title)

    def response(self) -> Response:
        """The problem as its JSON answer (``about:blank`` when it has no kind)."""
        body: dict[str, Any] = {"type": f"{PROBLEM_BASE}{self.kind}" if self.kind
                                else "about:blank",
                                "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        body.update(self.extra)
        return json_response(body, self.status, self.headers, PROBLEM_JSON)


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None,
                  mimetype: str = "application/json") -> Response:
    """A JSON answer of the API; never kept in a cache (it holds sender settings)."""
    response = current_app.response_class(json.dumps(body), status=status,
                                          mimetype=mimetype, headers=dict(headers or {}))
    response.headers["Cache-Control"] = "no-store"
    return response


def of_failure(failure: Failure) -> Problem:
    """The problem a failure the pages tell too is answered with: its status and message
    (the API's own words for a missing sender and a stale ETag)."""
    if failure.kind == "invalid":
        return invalid(failure.errors)
    if failure.kind == "not-found":
        return not_found()
    if failure.kind == "conflict":
        return conflict()
    if failure.kind == "rate-limited":
        return Problem(429, "rate-limited", failure.message, headers=failure.headers)
    if failure.kind == "rate-limit-unavailable":
        return Problem(503, "rate-limit-unavailable", failure.message)
    if failure.kind == "save-failed":
        return Problem(503, "save-failed", failure.message)
    return Problem(503, "unavailable", failure.message)


def of_http(error: HTTPException) -> Problem:
    """Werkzeug's 404, 405 (with Allow), 413... as ``about:blank`` problems."""
    headers = {}
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        headers["Allow"] = ", ".join(sorted(error.valid_methods))
    return Problem(error.code or 500, "", error.name, error.description, headers)


def forbidden() -> Problem:
    return Problem(403, "forbidden", "You are not allowed to do this.")


def csrf(reason: str) -> Problem:
    return Problem(403, "csrf", "The CSRF token is missing or invalid.",
                   f"A call without a token in its Authorization header (made with "
                   f"the session cookie, say) needs the page's CSRF token in an "
                   f"X-CSRFToken header ({reason}).")


def not_found() -> Problem:
    return Problem(404, "not-found", NOT_FOUND)


def conflict() -> Problem:
    return Problem(412, "conflict", "The sender was changed since you read it.",
                   "Read it again (its ETag changed) and retry with the new ETag in If-Match.")


def precondition_required() -> Problem:
    return Problem(428, "precondition-required", "If-Match is required.",
                   "Send the sender's ETag (from GET) in If-Match, so that a change "
                   "made meanwhile by someone else is not overwritten.")


def invalid(errors: Mapping[str, str]) -> Problem:
    """422 with ``errors``: each bad field and what the page would say beside it."""
    return Problem(422, "invalid", "Some fields are not valid.",
                   " ".join(f"{name}: {text}" for name, text in errors.items()),
                   errors=dict(errors))


def not_an_object() -> Problem:
    return Problem(422, "invalid", "The body must be a JSON object.")


def unsupported_media_type() -> Problem:
    return Problem(415, "unsupported-media-type", "The body must be application/json.")


def malformed() -> Problem:
    return Problem(400, "malformed", "The body is not valid JSON.")
