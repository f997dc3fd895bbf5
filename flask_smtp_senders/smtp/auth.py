"""The AUTH mechanisms we speak, as pure functions: PLAIN, LOGIN and CRAM-MD5 with a
password, XOAUTH2 and OAUTHBEARER (RFC 7628) with an OAuth2 access token. Which one to
try, what each sends, how each answers a 334 challenge, and what the final reply means.

Why ours and not smtplib's helpers: those differ between the Python versions we support,
smtplib's login() retries the same password with every other mechanism after any
refusal, and smtplib has no OAuth mechanism. A password never goes to an OAuth mechanism
nor a token to a password one. :meth:`flask_smtp_senders.smtp.client.SMTPClient.sign_in`
runs the exchange with these; nothing here keeps a credential. Credentials are UTF-8
(RFC 4616), so any password works. This module knows nothing of Flask.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import smtplib

from ..text_checks import CONTROL

#: The password mechanisms we speak, most preferred first (smtplib's and aiosmtplib's
#: order).
AUTH_PREFERENCE = ("CRAM-MD5", "PLAIN", "LOGIN")
#: The access-token mechanisms we speak, most preferred first. XOAUTH2 first: it is the
#: format Microsoft 365 and Google both document for SMTP, and the only one Exchange
#: Online offers; it also sends nothing but the user and the token, where OAUTHBEARER
#: adds our idea of the server's name and port. OAUTHBEARER, the standard (RFC 7628),
#: serves the servers that offer only it.
OAUTH_PREFERENCE = ("XOAUTH2", "OAUTHBEARER")
#: At most this many 334 challenges in one AUTH exchange (smtplib allows as many).
MAX_CHALLENGES = 5
#: An OAuth error challenge longer than this (base64 characters) is not read.
MAX_ERROR_CHALLENGE = 2048
#: The longest access token we send: its AUTH line stays within the 12,288 octets a
#: server must accept (RFC 4954 s4).
MAX_TOKEN = 8192
# RFC 6750 s2.1 b64token: what a bearer token is made of.
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")
_STATUS = re.compile(r"[0-9]{3}")


class CredentialsRejected(smtplib.SMTPResponseException):
    """AUTH answered 535: the server refused the Username or Password."""

    #: Whether the credential refused was an OAuth2 access token (:class:`TokenRejected`).
    token = False


class TokenRejected(CredentialsRejected):
    """AUTH answered 535 to an OAuth2 access token: expired, revoked or without the right
    scope. A fresh token may pass where this one failed."""

    token = True


class NoCommonMechanism(smtplib.SMTPException):
    """The server offers AUTH, but none of the mechanisms we speak for the credential:
    nothing was sent."""


class OAuthNotOffered(NoCommonMechanism):
    """The credential is an access token and the server offers neither XOAUTH2 nor
    OAUTHBEARER: nothing was sent."""


def b64(text: str) -> str:
    """``text`` as UTF-8 in base64, as AUTH carries it."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def mechanisms_to_try(auth_keywords: str, *, token: bool = False) -> list[str]:
    """The mechanisms of an EHLO's AUTH keywords we speak for the credential (an access
    token, or a password), in our order of preference."""
    offered = auth_keywords.upper().split()
    preference = OAUTH_PREFERENCE if token else AUTH_PREFERENCE
    return [mechanism for mechanism in preference if mechanism in offered]


def check_bearer(username: str, token: str) -> None:
    """Raise ValueError (naming neither) unless ``token`` is an RFC 6750 bearer token of
    at most :data:`MAX_TOKEN` characters and ``username`` has no control character: what
    XOAUTH2 and OAUTHBEARER separate their fields with could not be told apart."""
    if not (len(token) <= MAX_TOKEN and _BEARER_TOKEN.fullmatch(token)):
        raise ValueError("the access token is not an RFC 6750 bearer token")
    if CONTROL.search(username):
        raise ValueError("the username has a control character")


def auth_command(mechanism: str, username: str, secret: str, *, host: str = "",
                 port: int = 0) -> str:
    """The AUTH command's argument: PLAIN, XOAUTH2 and OAUTHBEARER send everything in it
    as an initial response (RFC 4954), the others only name themselves and wait for a
    334. ``host`` and ``port`` are the server's, for OAUTHBEARER."""
    if mechanism == "PLAIN":
        return "PLAIN " + plain_response(username, secret)
    if mechanism == "XOAUTH2":
        return "XOAUTH2 " + xoauth2_response(username, secret)
    if mechanism == "OAUTHBEARER":
        return "OAUTHBEARER " + oauthbearer_response(username, secret, host, port)
    return mechanism


def plain_response(username: str, password: str) -> str:
    """PLAIN (RFC 4616): no authorisation identity, the username and the password."""
    return b64(f"\0{username}\0{password}")


def xoauth2_response(username: str, token: str) -> str:
    """XOAUTH2, as Google and Microsoft document it: the user and the bearer token."""
    return b64(f"user={username}\x01auth=Bearer {token}\x01\x01")


def gs2_name(username: str) -> str:
    """A GS2 saslname (RFC 5801 s4): ``=`` as ``=3D`` and ``,`` as ``=2C``."""
    return username.replace("=", "=3D").replace(",", "=2C")


def oauthbearer_response(username: str, token: str, host: str, port: int) -> str:
    """OAUTHBEARER (RFC 7628 s3.1): the GS2 header naming the user, the server's host
    and port, and the bearer token."""
    return b64(f"n,a={gs2_name(username)},\x01host={host}\x01port={int(port)}"
               f"\x01auth=Bearer {token}\x01\x01")


def token_error_status(challenge: bytes) -> str | None:
    """The ``status`` of an OAuth error challenge (RFC 7628 s3.2.2; Google's and
    Microsoft's XOAUTH2 send the same), base64 JSON such as ``{"status": "401",
    "schemes": "bearer", "scope": "..."}``: three digits, or None. Read defensively
    (bounded, anything malformed is None), and nothing else of the server's text kept."""
    if len(challenge) > MAX_ERROR_CHALLENGE:
        return None
    try:
        document = json.loads(base64.b64decode(challenge.strip(), validate=True))
    except (ValueError, RecursionError):  # binascii, Unicode and JSON errors
        return None
    status = document.get("status") if isinstance(document, dict) else None
    if isinstance(status, int) and not isinstance(status, bool):
        status = str(status)
    return status if isinstance(status, str) and _STATUS.fullmatch(status) else None


def login_answer(challenge_number: int, username: str, password: str) -> str | None:
    """LOGIN goes by the count, never by the challenge text ("Username:" is only a
    custom): the first 334 gets the username, the second the password."""
    if challenge_number > 2:
        return None
    return b64(username if challenge_number == 1 else password)


def cram_md5_answer(challenge_number: int, challenge: bytes, username: str,
                    password: str) -> str | None:
    """CRAM-MD5 (RFC 2195) answers its one challenge with ``user hexdigest``."""
    if challenge_number != 1:
        return None
    digest = hmac.new(password.encode("utf-8"), base64.b64decode(challenge, validate=True),
                      "md5").hexdigest()
    return b64(f"{username} {digest}")


def oauth_error_answer(mechanism: str, challenge_number: int) -> str | None:
    """XOAUTH2 and OAUTHBEARER sent everything at once, so a 334 is the server's error
    challenge: answered once, XOAUTH2 with an empty line (Google's and Microsoft's
    documentation), OAUTHBEARER with a single %x01 (RFC 7628 s3.2.3), after which the
    server's final reply fails the exchange. A second 334 gets no answer."""
    if challenge_number != 1:
        return None
    return "" if mechanism == "XOAUTH2" else b64("\x01")


def answer(mechanism: str, challenge_number: int, challenge: bytes, username: str,
           password: str) -> str | None:
    """Our base64 answer to the nth 334 of an exchange; None when the mechanism has none
    (PLAIN sent everything in its AUTH line), which fails the exchange."""
    if mechanism == "LOGIN":
        return login_answer(challenge_number, username, password)
    if mechanism == "CRAM-MD5":
        return cram_md5_answer(challenge_number, challenge, username, password)
    if mechanism in OAUTH_PREFERENCE:
        return oauth_error_answer(mechanism, challenge_number)
    return None


def check_final_reply(code: int, reply: bytes, *, token: bool = False) -> None:
    """Return when the exchange's last reply signs us in (235; 503: already signed in);
    raise CredentialsRejected for a 535 (TokenRejected when the credential was an access
    token), SMTPAuthenticationError for anything else."""
    if code in (235, 503):
        return
    if code == 535:
        raise (TokenRejected if token else CredentialsRejected)(code, reply)
    raise smtplib.SMTPAuthenticationError(code, reply)
