"""The facts a diagnosis may show about a server, built by us from what we saw.

Why apart: what may reach a page is deliberately narrow, and this is the one place that
decides it. Counts, the address we connected to, our own TLS library's protocol and
cipher names, a certificate's host name and dates, reply codes as numbers, EHLO keywords
filtered to plain tokens, and our own names for what went wrong (:func:`tls_problem`).
Never a server's reply text, never the username, password or access token in any form.

:class:`~flask_smtp_senders.smtp.trace.Trace` records these; the advice
(:mod:`flask_smtp_senders.smtp.advice`) is picked from the same classification. This module
knows nothing of Flask.
"""

from __future__ import annotations

import ipaddress
import re
import smtplib
import ssl
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

_MECHANISM = re.compile(r"[A-Z0-9_-]{1,20}")
_MAX_MECHANISMS = 10
_DIGITS = re.compile(r"[0-9]{1,20}")
# An enhanced status code (RFC 3463) opening a reply: class.subject.detail, then a space
# or the end of the line.
_ENHANCED = re.compile(rb"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?![^ \t\r\n])")
# A certificate's names are shown only when they look like what they should be: a host
# name, or a CA's plain name. Anything else (control characters, markup) is left out.
_HOST_NAME = re.compile(r"[A-Za-z0-9*](?:[A-Za-z0-9_.-]{0,252})")
_CA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 .,()_&'-]{0,99}")

# OpenSSL's X509_V_ERR_* codes we name.
_NOT_YET_VALID, _EXPIRED = 9, 10
_NAME_MISMATCH = frozenset({62, 64})  # host name, IP address
# OpenSSL reasons for bytes that are not a TLS record: the peer is not speaking TLS.
_NOT_TLS_REASONS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE",
                              "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL", "HTTP_REQUEST"})

#: Our classification of a TLS failure (the tls stage's only fact when it fails).
TLS_UNTRUSTED = "certificate not trusted"
TLS_WRONG_NAME = "certificate for another name"
TLS_EXPIRED = "certificate expired"
TLS_NOT_YET_VALID = "certificate not yet valid"
TLS_NOT_TLS = "wrong version number (the server is not speaking TLS)"
TLS_NO_STARTTLS = "STARTTLS not offered"
TLS_STARTTLS_REFUSED = "STARTTLS refused"
TLS_HANDSHAKE = "handshake failed"

#: Why a message cannot be written to this server (the transport's reasons), as facts.
UNSENDABLE_PROBLEMS: Mapping[str, str] = {
    "smtputf8": "The message has a non-ASCII address, which needs SMTPUTF8 (RFC 6531); "
                "the server does not offer it",
    "eight_bit": "The message has 8-bit headers and the server does not offer 8BITMIME",
}


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def shown_address(address: str) -> str:
    """An IP address in its canonical form; anything else is not shown."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return "(not an IP address)"


def offered_mechanisms(auth_keywords: str) -> tuple[str, ...]:
    """The AUTH mechanisms of an EHLO answer that look like mechanism names (at most 10)."""
    found: list[str] = []
    for token in auth_keywords.split():
        if _MECHANISM.fullmatch(token) and token not in found:
            found.append(token)
            if len(found) == _MAX_MECHANISMS:
                break
    return tuple(found)


def ehlo_facts(features: Mapping[str, str],
               mechanisms: tuple[str, ...]) -> list[tuple[str, str]]:
    """The keywords of the EHLO after TLS (smtplib's ``esmtp_features``), with the AUTH
    ``mechanisms`` already filtered by :func:`offered_mechanisms`."""
    facts = [("AUTH mechanisms offered", ", ".join(mechanisms) or "none")]
    size = features.get("size", "").strip()
    if _DIGITS.fullmatch(size):
        facts.append(("SIZE", size))
    facts += [("PIPELINING", yes_no("pipelining" in features)),
              ("8BITMIME", yes_no("8bitmime" in features)),
              ("SMTPUTF8", yes_no("smtputf8" in features))]
    return facts


def tls_facts(sock: ssl.SSLSocket) -> list[tuple[str, str]]:
    """Our TLS library's protocol and cipher names and the certificate's plain facts."""
    facts = [("Protocol", sock.version() or "unknown")]
    cipher = sock.cipher()
    if cipher:
        facts.append(("Cipher", cipher[0]))
    return facts + certificate_facts(sock.getpeercert() or {})


def _name_field(name: object, key: str) -> str | None:
    """``key`` of a getpeercert() name (a tuple of RDNs of (key, value) pairs)."""
    if not isinstance(name, tuple):
        return None
    for rdn in name:
        for pair in rdn if isinstance(rdn, tuple) else ():
            if isinstance(pair, tuple) and len(pair) == 2 and pair[0] == key:
                return str(pair[1])
    return None


def certificate_facts(cert: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The host name, expiry date and issuer of a verified certificate, where plain."""
    facts: list[tuple[str, str]] = []
    subject = _name_field(cert.get("subject"), "commonName")
    if subject is not None and _HOST_NAME.fullmatch(subject):
        facts.append(("Certificate name", subject))
    not_after = cert.get("notAfter")
    if isinstance(not_after, str):
        try:
            expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), timezone.utc)
            facts.append(("Certificate expires", expires.strftime("%Y-%m-%d")))
        except (ValueError, OverflowError, OSError):
            pass
    issuer = (_name_field(cert.get("issuer"), "commonName")
              or _name_field(cert.get("issuer"), "organizationName"))
    if issuer is not None and _CA_NAME.fullmatch(issuer):
        facts.append(("Issued by", issuer))
    return facts


def token_problem(status: str | None) -> str:
    """The auth stage's fact when the server answers an access token with an OAuth error
    challenge: its status (three digits, as
    :func:`~flask_smtp_senders.smtp.auth.token_error_status` keeps it), if it gave one."""
    return f"token refused: {status}" if status else "token refused"


def enhanced_code(code: object, text: object) -> str | None:
    """The enhanced status code (RFC 3463) opening a reply of class ``code`` (``5.7.8``
    for ``535 5.7.8 ...``), or None: the one part of a reply's text we keep, three runs
    of digits matched whole, never the words around them."""
    if not isinstance(code, int) or not 100 <= code <= 999:
        return None
    if isinstance(text, str):
        text = text.encode("utf-8", "replace")
    if not isinstance(text, bytes):
        return None
    found = _ENHANCED.match(text.lstrip(b" \t"))
    if found is None or found[1] != str(code)[:1].encode():
        return None
    return found[0].decode("ascii")


def refused_greeting(exc: BaseException) -> int | None:
    """The reply code of a greeting other than 220 that ended the exchange, if that is
    what ``exc`` is (the transport raises smtplib's SMTPConnectError for it)."""
    if isinstance(exc, smtplib.SMTPConnectError) and 100 <= exc.smtp_code <= 599:
        return int(exc.smtp_code)
    return None


def tls_problem(exc: BaseException) -> str:
    """Our name for why TLS could not be set up."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code == _EXPIRED:
            return TLS_EXPIRED
        if code == _NOT_YET_VALID:
            return TLS_NOT_YET_VALID
        if code in _NAME_MISMATCH:
            return TLS_WRONG_NAME
        return TLS_UNTRUSTED
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return TLS_NO_STARTTLS
    if isinstance(exc, smtplib.SMTPResponseException):
        return TLS_STARTTLS_REFUSED
    if isinstance(exc, ssl.SSLError) and exc.reason in _NOT_TLS_REASONS:
        return TLS_NOT_TLS
    return TLS_HANDSHAKE
