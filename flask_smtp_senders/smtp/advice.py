"""The one piece of advice a failed exchange comes with: which suggested fix fits where and
how it failed, and its sentence from the ``SMTP_SENDERS_ADVICE_*`` catalogue.

Why apart from the trace (:mod:`flask_smtp_senders.smtp.trace`): the trace records what
happened; this is the judgement on it, read and extended on its own. The sentence is
formatted only with the port, the filtered mechanism list and a stage label, never with a
server's text; of a refused sign-in, only the enhanced status code (RFC 3463) counts. This
module knows nothing of Flask.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Mapping
from typing import Any

from ..domain import is_google_smtp
from .auth import NoCommonMechanism, OAuthNotOffered, TokenRejected
from .facts import (
    TLS_EXPIRED,
    TLS_NO_STARTTLS,
    TLS_NOT_TLS,
    TLS_NOT_YET_VALID,
    TLS_STARTTLS_REFUSED,
    TLS_UNTRUSTED,
    TLS_WRONG_NAME,
    enhanced_code,
    refused_greeting,
    tls_problem,
)

log = logging.getLogger(__name__)

#: Every advice name (config key ``SMTP_SENDERS_ADVICE_<NAME>``) :func:`advice_for` picks.
ADVICE_NAMES = frozenset({
    "resolve_failed", "destination_refused", "connection_refused", "connect_timeout",
    "connect_failed", "expects_starttls", "expects_tls", "starttls_not_offered",
    "starttls_refused", "tls_untrusted", "tls_wrong_name", "tls_expired", "tls_handshake",
    "auth_not_offered", "auth_refused", "auth_failed", "auth_no_common_method",
    "auth_no_oauth", "auth_token_refused", "auth_basic_disabled", "auth_smtp_disabled",
    "auth_app_password",
    "sender_refused", "recipient_refused", "data_refused", "temporary", "disconnected",
    "timeout",
})


#: Enhanced status codes of a refused password sign-in with advice of their own: the
#: advice, the reply codes the code comes with, and whether only Google's servers mean it
#: so. Microsoft 365 answers 5.7.139 or 5.7.30 when basic authentication is off for the
#: tenant and 5.7.3 when SMTP AUTH is off for the mailbox; at AUTH those codes mean
#: nothing else (5.7.139 is Microsoft's own; RFC 3463's 5.7.3 and RFC 8689's 5.7.30 are
#: about other commands). 5.7.8 and 5.7.9 are RFC 4954's "credentials invalid" and
#: "mechanism too weak", which any server sends: only Google's mean "no account password".
_STATUS_ADVICE: Mapping[str, tuple[str, frozenset[int], bool]] = {
    "5.7.139": ("auth_basic_disabled", frozenset({530, 535, 550}), False),
    "5.7.30": ("auth_basic_disabled", frozenset({530, 535, 550}), False),
    "5.7.3": ("auth_smtp_disabled", frozenset({535}), False),
    "5.7.8": ("auth_app_password", frozenset({535}), True),
    "5.7.9": ("auth_app_password", frozenset({534, 535}), True),
}


def auth_status(exc: BaseException, server_name: str) -> str | None:
    """The enhanced status code of a refused password sign-in when it has advice of its
    own (the table above) from the server ``server_name``; None otherwise, and for
    a refused access token, which has its own advice."""
    if isinstance(exc, TokenRejected) or not isinstance(exc, smtplib.SMTPResponseException):
        return None
    status = enhanced_code(exc.smtp_code, exc.smtp_error)
    entry = _STATUS_ADVICE.get(status or "")
    if entry is None or exc.smtp_code not in entry[1]:
        return None
    return status if not entry[2] or is_google_smtp(server_name) else None


def advice_for(stage: str, exc: BaseException, *, timed_out: bool, starttls_port: bool,
               greeting: int | None, server_name: str) -> str | None:
    """The catalogue entry (``SMTP_SENDERS_ADVICE_<NAME>``, lower case) for a failure
    with the server ``server_name``."""
    no_smtp_greeting = starttls_port and (greeting is None or greeting < 0)
    if stage == "resolve":  # a slow resolver too: the name is what to check
        return "resolve_failed"
    if timed_out:
        if stage == "connect":
            return "connect_timeout"
        if stage == "ehlo" and no_smtp_greeting:
            return "expects_tls"
        return "timeout"
    if stage == "connect":
        return "connection_refused" if isinstance(exc, ConnectionRefusedError) else (
            "connect_failed")
    if stage == "ehlo":
        refused = refused_greeting(exc)
        if refused is not None:  # 421: busy for now; 554: no SMTP service for us here
            return "temporary" if 400 <= refused < 500 else "connect_failed"
        return "expects_tls" if no_smtp_greeting else "disconnected"
    if stage == "tls":
        return _tls_advice(tls_problem(exc), starttls_port, no_smtp_greeting)
    if stage == "auth":
        return _auth_advice(exc, server_name)
    return _refusal_advice(stage, exc)


def _tls_advice(problem: str, starttls_port: bool, no_smtp_greeting: bool) -> str:
    if problem == TLS_NO_STARTTLS:
        return "expects_tls" if no_smtp_greeting else "starttls_not_offered"
    return {
        TLS_STARTTLS_REFUSED: "starttls_refused",
        TLS_UNTRUSTED: "tls_untrusted",
        TLS_WRONG_NAME: "tls_wrong_name",
        TLS_EXPIRED: "tls_expired",
        TLS_NOT_YET_VALID: "tls_expired",
        TLS_NOT_TLS: "tls_handshake" if starttls_port else "expects_starttls",
    }.get(problem, "tls_handshake")


def _auth_advice(exc: BaseException, server_name: str) -> str:
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return "auth_not_offered"
    if isinstance(exc, OAuthNotOffered):  # an access token, and no mechanism to take it
        return "auth_no_oauth"
    if isinstance(exc, NoCommonMechanism):  # an OSError, as every SMTPException
        return "auth_no_common_method"
    if isinstance(exc, TokenRejected):
        return "auth_token_refused"
    status = auth_status(exc, server_name)
    if status is not None:
        return _STATUS_ADVICE[status][0]
    if isinstance(exc, smtplib.SMTPResponseException):
        return "auth_refused" if exc.smtp_code == 535 else "auth_failed"
    if isinstance(exc, OSError):  # SMTPServerDisconnected is one too
        return "disconnected"
    return "auth_no_common_method"  # smtplib: "No suitable authentication method found."


def _refusal_advice(stage: str, exc: BaseException) -> str | None:
    if isinstance(exc, smtplib.SMTPResponseException):
        if 400 <= exc.smtp_code < 500:
            return "temporary"
        return {"mail": "sender_refused", "rcpt": "recipient_refused",
                "data": "data_refused"}.get(stage)
    if isinstance(exc, OSError):  # SMTPServerDisconnected is one too
        return "disconnected"
    return None


def render_advice(texts: Mapping[str, Any], name: str, *, port: int, stage: str,
                  mechanisms: tuple[str, ...]) -> str | None:
    """``SMTP_SENDERS_ADVICE_<NAME>`` formatted with our own safe values only."""
    template = texts.get(f"SMTP_SENDERS_ADVICE_{name.upper()}")
    if not template:
        return None
    try:
        return str(template).format(port=port, stage=stage,
                                    mechanisms=", ".join(mechanisms) or "none")
    except (KeyError, IndexError, ValueError, AttributeError):
        log.warning("SMTP_SENDERS_ADVICE_%s has a placeholder other than {port}, {stage} "
                    "and {mechanisms}; shown unformatted", name.upper())
        return str(template)
