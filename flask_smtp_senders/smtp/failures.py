"""What a failure of the exchange becomes: the fixed DeliveryError of its stage for the
caller, the stage and advice for the trace, and lines in the transport's log.

Why apart: the session, the transactions and the connection all end in a failure, and
what may be said about it is one rule. The log's WARNING line names only the stage, the
server, the exception's type and reply codes (:func:`describe`), never server text: a
hostile server can echo the password in forms no scrubbing recognises (hex, spaced out,
split base64). Server replies and exception text go to DEBUG alone, with the password
scrubbed out (:mod:`flask_smtp_senders.smtp.scrubbing`). This module knows nothing of
Flask.
"""

from __future__ import annotations

import errno
import logging
import re
import smtplib
import ssl

from ..domain import ServerAddress
from ..errors import DeliveryError
from ..sealed import Credential
from .auth import TokenRejected
from .client import SMTPClient
from .facts import enhanced_code
from .scrubbing import Scrubber, scrub

#: The transport's one log, whichever of its modules writes: docs/configuration.md names
#: it, and hosts route or silence it by that name.
log = logging.getLogger("flask_smtp_senders.transport")


def classify_failure(smtp: SMTPClient, stage: str, exc: BaseException,
                     server: ServerAddress, secret: Credential | Scrubber) -> DeliveryError:
    """Log what happened, tell the trace, and return the fixed failure for the stage
    (``token_refused`` when the server refused an access token with a 535).

    WARNING gets the stage, the server and :func:`describe`'s summary (the exception's
    type and reply codes), never server text: a hostile server can echo the password in
    forms no scrubbing recognises (hex, spaced out, split base64). The exception's text,
    which carries the server's reply, goes to DEBUG only, with the password scrubbed.
    """
    timed_out = smtp.deadline.tripped or isinstance(exc, TimeoutError)
    smtp.trace.failed(exc, timed_out=timed_out, stage=stage)
    if timed_out:
        stage = "timeout"
    log.warning("SMTP exchange failed at stage %s for %s:%s: %s", stage, server.server_name,
                server.port, describe(exc))
    if log.isEnabledFor(logging.DEBUG):
        details = f"{type(exc).__name__}: {exc}"
        log.debug("SMTP %s failed at stage %s for %s:%s: %s", "exchange", stage,
                  server.server_name, server.port,
                  secret.scrub(details) if isinstance(secret, Scrubber)
                  else scrub(details, server.username, secret, host=server.server_name,
                             port=server.port))
    failure = smtp.options.fail(stage)
    failure.token_refused = isinstance(exc, TokenRejected) and not timed_out
    return failure


# An OpenSSL reason code (ssl.SSLError.reason): the library's words, never the peer's.
_SSL_REASON = re.compile(r"[A-Z0-9_]{1,64}")


def describe(exc: BaseException) -> str:
    """What a WARNING may say about a failure: the exception's type, the reply code and
    enhanced status code (``CredentialsRejected 535 5.7.8``), an SSL reason code or an
    errno name; never the exception's text, which may hold the server's."""
    parts = [type(exc).__name__]
    if isinstance(exc, smtplib.SMTPResponseException):
        parts += _reply_codes(exc.smtp_code, exc.smtp_error)
    elif isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = {code for code, _text in exc.recipients.values() if isinstance(code, int)}
        parts += [str(code) for code in sorted(codes)]
    elif isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None)
        if isinstance(reason, str) and _SSL_REASON.fullmatch(reason):
            parts.append(reason)
        verify_code = getattr(exc, "verify_code", None)
        if isinstance(verify_code, int):
            parts.append(f"verify code {verify_code}")
    elif isinstance(exc, OSError) and isinstance(exc.errno, int):
        parts.append(errno.errorcode.get(exc.errno, str(exc.errno)))
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and not isinstance(exc, ssl.SSLError):
        parts.append(f"after {type(cause).__name__}")
    return " ".join(parts)


def _reply_codes(code: object, text: object) -> list[str]:
    """The reply code and, when the reply opens with one of its class, the enhanced code."""
    if not isinstance(code, int) or not 100 <= code <= 999:
        return []
    enhanced = enhanced_code(code, text)
    return [str(code)] if enhanced is None else [str(code), enhanced]
