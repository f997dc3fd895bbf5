"""The AUTH mechanisms we speak (PLAIN, LOGIN, CRAM-MD5), as pure functions: which one to
try, what each sends, how each answers a 334 challenge, and what the final reply means.

Why ours and not smtplib's helpers: those differ between the Python versions we support,
and smtplib's login() retries the same password with every other mechanism after any
refusal. :meth:`flask_smtp_senders.smtp.client.SMTPClient.sign_in` runs the exchange with
these; nothing here keeps a credential. Credentials are UTF-8 (RFC 4616), so any password
works. This module knows nothing of Flask.
"""

from __future__ import annotations

import base64
import hmac
import smtplib

#: The AUTH mechanisms we speak, most preferred first (smtplib's and aiosmtplib's order).
AUTH_PREFERENCE = ("CRAM-MD5", "PLAIN", "LOGIN")
#: At most this many 334 challenges in one AUTH exchange (smtplib allows as many).
MAX_CHALLENGES = 5


class CredentialsRejected(smtplib.SMTPResponseException):
    """AUTH answered 535: the server refused the Username or Password."""


def b64(text: str) -> str:
    """``text`` as UTF-8 in base64, as AUTH carries it."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def mechanisms_to_try(auth_keywords: str) -> list[str]:
    """The mechanisms of an EHLO's AUTH keywords we speak, in our order of preference."""
    offered = auth_keywords.upper().split()
    return [mechanism for mechanism in AUTH_PREFERENCE if mechanism in offered]


def auth_command(mechanism: str, username: str, password: str) -> str:
    """The AUTH command's argument: PLAIN sends everything in it as an initial response
    (RFC 4954), the others only name themselves and wait for a 334."""
    if mechanism == "PLAIN":
        return "PLAIN " + plain_response(username, password)
    return mechanism


def plain_response(username: str, password: str) -> str:
    """PLAIN (RFC 4616): no authorisation identity, the username and the password."""
    return b64(f"\0{username}\0{password}")


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


def answer(mechanism: str, challenge_number: int, challenge: bytes, username: str,
           password: str) -> str | None:
    """Our base64 answer to the nth 334 of an exchange; None when the mechanism has none
    (PLAIN sent everything in its AUTH line), which fails the exchange."""
    if mechanism == "LOGIN":
        return login_answer(challenge_number, username, password)
    if mechanism == "CRAM-MD5":
        return cram_md5_answer(challenge_number, challenge, username, password)
    return None


def check_final_reply(code: int, reply: bytes) -> None:
    """Return when the exchange's last reply signs us in (235; 503: already signed in);
    raise CredentialsRejected for a 535, SMTPAuthenticationError for anything else."""
    if code in (235, 503):
        return
    if code == 535:
        raise CredentialsRejected(code, reply)
    raise smtplib.SMTPAuthenticationError(code, reply)
