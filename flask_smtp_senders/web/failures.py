"""What the user is told when something asked is not done: one table for the Senders
pages and the JSON API, so that the two never tell the same failure two ways.

A :class:`Failure` holds the HTTP status, the ``kind`` the API names its problem type
after (docs/api.md), the message (a configured ``SMTP_SENDERS_MSG_*`` wherever there is
one) and what a page that keeps its form says and answers instead. The pages flash it or
show their 404 and 503 pages; the API answers it as a problem (:mod:`.problems`).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import (
    AuditFailed,
    ConcurrentUpdate,
    InvalidSenderData,
    SenderNotFound,
    StorageError,
    TableMissing,
)
from ..state import get_service
from ..texts import message

#: The service's errors a change or a probe is told as (anything else is a bug: a 500).
SERVICE_ERRORS = (InvalidSenderData, SenderNotFound, ConcurrentUpdate, AuditFailed,
                  StorageError)
ServiceError = InvalidSenderData | SenderNotFound | ConcurrentUpdate | AuditFailed | StorageError
#: The API's title for a sender that does not exist (the pages show the host's 404).
NOT_FOUND = "There is no sender with this id."


class Failure(Exception):
    """Why something asked was not done, as the user is told it."""

    def __init__(self, status: int, kind: str, message: str, *, notice: str | None = None,
                 page_status: int = 200, headers: Mapping[str, str] | None = None,
                 errors: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        #: What a page says beside the form it keeps as typed (the password aside).
        self.notice = notice or message
        #: That page's status: 200 when the form is the answer, a refusal's own otherwise.
        self.page_status = page_status
        self.headers = dict(headers or {})
        #: Field name -> what is wrong with it, for an ``invalid`` failure.
        self.errors = dict(errors or {})


def failure_of(error: ServiceError) -> Failure:
    """The failure one of the service's errors is told as."""
    if isinstance(error, InvalidSenderData):
        return Failure(422, "invalid", " ".join(error.errors.values()), page_status=422,
                       errors=error.errors)
    if isinstance(error, SenderNotFound):
        return Failure(404, "not-found", NOT_FOUND, page_status=404)
    if isinstance(error, ConcurrentUpdate):
        return Failure(412, "conflict", text("conflict"))
    if isinstance(error, AuditFailed):
        return Failure(503, "save-failed", text("save_failed"))
    if isinstance(error, TableMissing):  # says which command creates the table
        return Failure(503, "unavailable", str(error))
    # Beside a form the change is what failed: "could not be saved, nothing changed".
    return Failure(503, "unavailable", text("storage_unavailable"),
                   notice=text("save_failed"))


def rate_limited(name: str, retry_after: int) -> Failure:
    """Cases C7 and G5: a rate limit is reached (``name``: its message); nothing was done,
    and Retry-After says when to try again."""
    return Failure(429, "rate-limited", text(name, retry_after=str(retry_after)),
                   page_status=429, headers={"Retry-After": str(retry_after)})


def rate_limit_unavailable(name: str) -> Failure:
    """The rate limit's counters cannot be reached: nothing is done uncounted."""
    return Failure(503, "rate-limit-unavailable", text(name), page_status=503)


def text(name: str, **values: str) -> str:
    """The current app's user message ``SMTP_SENDERS_MSG_<NAME>`` (texts.py)."""
    return message(get_service().texts, name, **values)
