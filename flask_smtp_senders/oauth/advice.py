"""Which suggested fix a failed token request gets: the provider's code (Microsoft
Entra's ``AADSTS`` numbers, Google's ``error`` and description), else the RFC 6749 s5.2
``error``, else where it failed.

Why a table of our own: the provider's ``error_description`` is for developers, may
echo what was sent, and changes without notice; an administrator needs to know what to
change in the Entra admin center or the Google Admin console. Each key's sentence is the
setting ``SMTP_SENDERS_ADVICE_<key>`` (:mod:`flask_smtp_senders.texts`). Microsoft's
codes: learn.microsoft.com/entra/identity-platform/reference-error-codes; Google's:
developers.google.com/identity/protocols/oauth2/service-account (error codes).
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping

#: Microsoft Entra codes with advice of their own. Others (700024, a client assertion out
#: of its time range, say) get the advice of their RFC 6749 ``error``.
MICROSOFT_CODES: Mapping[int, str] = {
    7000215: "TOKEN_BAD_SECRET",       # invalid client secret (often its Secret ID)
    7000222: "TOKEN_SECRET_EXPIRED",   # the client secret has expired
    700016: "TOKEN_APP_NOT_FOUND",     # no application with this ID in the tenant
    90002: "TOKEN_TENANT_NOT_FOUND",   # InvalidTenantName: tenant not found
    900023: "TOKEN_TENANT_NOT_FOUND",  # InvalidTenantIdentifier: neither GUID nor domain
    70011: "TOKEN_BAD_SCOPE",          # InvalidScope
    1002012: "TOKEN_BAD_SCOPE",        # client credentials need a "/.default" scope
    65001: "TOKEN_CONSENT_MISSING",    # no (admin) consent for the app's permission
    7000112: "TOKEN_APP_DISABLED",     # the service principal is disabled
    53003: "TOKEN_BLOCKED_BY_POLICY",  # blocked by Conditional Access
}
#: RFC 6749 s5.2 error codes, for any provider.
RFC_ERRORS: Mapping[str, str] = {
    "invalid_client": "TOKEN_BAD_CLIENT",
    "invalid_grant": "TOKEN_BAD_GRANT",
    "unauthorized_client": "TOKEN_UNAUTHORIZED_CLIENT",
    "unsupported_grant_type": "TOKEN_UNSUPPORTED_GRANT",
    "invalid_scope": "TOKEN_BAD_SCOPE",
    "invalid_request": "TOKEN_BAD_REQUEST",
}
#: Google's descriptions that tell an ``invalid_grant`` apart (checked in this order).
GOOGLE_GRANT_DESCRIPTIONS: tuple[tuple[str, str], ...] = (
    ("invalid jwt signature", "TOKEN_KEY_REVOKED"),   # key deleted, disabled or expired
    ("invalid email or user id", "TOKEN_UNKNOWN_USER"),
    ("not a valid email", "TOKEN_UNKNOWN_USER"),
    ("short-lived token", "TOKEN_CLOCK_SKEW"),         # iat/exp outside Google's window
    ("reasonable timeframe", "TOKEN_CLOCK_SKEW"),
    ("account not found", "TOKEN_KEY_REVOKED"),        # the service account is gone
)
#: Google's ``error`` codes for a service account, whatever the description says.
GOOGLE_ERRORS: Mapping[str, str] = {
    "unauthorized_client": "TOKEN_DELEGATION_MISSING",  # no domain-wide delegation
    "invalid_client": "TOKEN_KEY_REVOKED",              # key or account disabled/deleted
    "disabled_client": "TOKEN_KEY_REVOKED",
}
#: Where a request failed before any answer could be read, and its advice.
STAGE_ADVICE: Mapping[str, str] = {
    "url": "TOKEN_BAD_URL",
    "resolve": "TOKEN_RESOLVE_FAILED",
    "destination": "TOKEN_DESTINATION_REFUSED",
    "connect": "TOKEN_UNREACHABLE",
    "tls": "TOKEN_TLS_FAILED",
    "http": "TOKEN_HTTP_ERROR",
    "response": "TOKEN_BAD_RESPONSE",
    "refused": "TOKEN_REFUSED",
    "timeout": "TOKEN_TIMEOUT",
}
#: Every advice key this module hands out (``SMTP_SENDERS_ADVICE_<key>``).
ADVICE_KEYS = frozenset({
    *MICROSOFT_CODES.values(), *RFC_ERRORS.values(), *GOOGLE_ERRORS.values(),
    *(key for _text, key in GOOGLE_GRANT_DESCRIPTIONS), *STAGE_ADVICE.values(),
    "TOKEN_TLS_UNTRUSTED", "TOKEN_TLS_WRONG_NAME", "TOKEN_REDIRECT", "TOKEN_SERVER_ERROR",
    "TOKEN_NOT_JSON",
})

_AADSTS = re.compile(r"\s*AADSTS([0-9]{1,10})\b")
# OpenSSL's verify codes: a chain we cannot trust, and a name that does not match.
_UNTRUSTED = frozenset({18, 19, 20, 21, 27})  # self-signed, no local issuer...
_WRONG_NAME = frozenset({62})  # X509_V_ERR_HOSTNAME_MISMATCH


def microsoft_code(error_codes: object, description: str | None) -> int | None:
    """Microsoft's code: the first of ``error_codes``, else one at the front of the
    description (``AADSTS7000215: ...``)."""
    if isinstance(error_codes, list) and error_codes:
        first = error_codes[0]
        if isinstance(first, int) and not isinstance(first, bool) and 0 < first < 10**10:
            return first
    if isinstance(description, str):
        match = _AADSTS.match(description)
        if match:
            return int(match[1])
    return None


def for_refusal(error: str | None, description: str | None, code: int | None, *,
                google: bool = False) -> str:
    """The advice for an RFC 6749 s5.2 error reply; ``google``: the request was a Google
    service account's (RFC 7523 JWT bearer)."""
    if code is not None and code in MICROSOFT_CODES:
        return MICROSOFT_CODES[code]
    if google:
        said = (description or "").lower()
        if error == "invalid_grant":
            for text, key in GOOGLE_GRANT_DESCRIPTIONS:
                if text in said:
                    return key
        if error in GOOGLE_ERRORS:
            return GOOGLE_ERRORS[error]
    return RFC_ERRORS.get(error or "", "TOKEN_REFUSED")


def for_status(status: int) -> str:
    """The advice for an HTTP status that came without an OAuth2 error."""
    if 300 <= status < 400:
        return "TOKEN_REDIRECT"
    if status >= 500:
        return "TOKEN_SERVER_ERROR"
    return "TOKEN_HTTP_ERROR"


def for_tls(error: BaseException) -> str:
    """The advice for a failed TLS handshake: an untrusted chain, a certificate for
    another name, or anything else (expired, no common version or cipher)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        if error.verify_code in _WRONG_NAME:
            return "TOKEN_TLS_WRONG_NAME"
        if error.verify_code in _UNTRUSTED:
            return "TOKEN_TLS_UNTRUSTED"
    return "TOKEN_TLS_FAILED"
