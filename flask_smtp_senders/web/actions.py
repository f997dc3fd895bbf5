"""What a user asks the service to do, done one way for the Senders pages and the JSON API:
a change (create, edit, delete, make default) and a probe (Send Test Email or Check
connection). Each raises a :class:`.failures.Failure` when it is not done; how that is
told (a flash beside the form, a problem document) is each front's own.

Authorisation and CSRF are checked before a view runs (:mod:`.guard`), the input (a form,
a JSON body) by the view; then the rate limit counts, the service runs, and its errors
become failures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from ..errors import SenderNotFound
from ..services.probe import ProbeResult
from ..state import get_service
from ..storage.base import Sender
from .failures import SERVICE_ERRORS, failure_of
from .guard import test_email_refusal, write_refusal

T = TypeVar("T")


def change(save: Callable[[], T]) -> T:
    """Run a change, counted first against the administrator's write rate limit (Case
    G5); nothing is half-saved either way. Raises :class:`.failures.Failure`."""
    refusal = write_refusal()
    if refusal is not None:
        raise refusal
    try:
        return save()
    except SERVICE_ERRORS as exc:
        raise failure_of(exc) from None


@dataclass(frozen=True)
class Probed:
    """A probe that ran (whether the server accepted or not): its result and the From
    domain's advice (SPF, DMARC)."""

    result: ProbeResult
    domain_advice: list[str]

    def as_dict(self, *, stage: bool = True) -> dict[str, Any]:
        """The answer's JSON body (the pages' modal has no ``stage``)."""
        result = self.result
        body = {"ok": result.ok, "message": result.message, "stage": result.stage,
                "diagnosis": result.diagnosis.as_dict(), "domain_advice": self.domain_advice}
        if not stage:
            del body["stage"]
        return body


def probe(sender: Sender, kind: Literal["test", "check"], recipient: str | None) -> Probed:
    """Send Test Email (``kind`` "test", to ``recipient``) or Check connection ("check",
    the dry run: a None ``recipient`` is the From Address) with ``sender``, the recipient
    already checked. Case C7: counted only now, for valid and authorised requests, per
    administrator and per sender; without the counters nothing is sent (fail closed).
    Raises :class:`.failures.Failure`."""
    refusal = test_email_refusal(sender.id)
    if refusal is not None:
        raise refusal
    service = get_service()
    try:
        if kind == "test":
            result = service.send_test_email(sender.id, recipient or "")
        else:
            result = service.check_connection(sender.id, recipient)
    except SenderNotFound as exc:  # deleted meanwhile (a storage error is told as a read's)
        raise failure_of(exc) from None
    return Probed(result, service.domain_advice(sender.settings.from_address))
