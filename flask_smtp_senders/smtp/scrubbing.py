"""Keeping the credential out of the transport's DEBUG log: :func:`scrub` removes the
password or access token, and the base64 forms AUTH sends, from a text; a
:class:`Scrubber` does the same without keeping the credential.

Why: DEBUG carries the server's replies and exception texts, which a hostile server can
make echo what we sent. (WARNING never carries them: see
:func:`flask_smtp_senders.smtp.failures.describe`.) This module knows nothing of Flask.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from ..sealed import AccessToken, Credential
from .auth import b64, oauthbearer_response, plain_response, xoauth2_response

#: A stretch of base64 shorter than this is never scrubbed as a token's (too common).
_MIN_CORE = 8


def _password_forms(username: str, password: str) -> set[str]:
    """The password as is, and the base64 PLAIN and LOGIN send."""
    return {password, b64(password), plain_response(username, password)}


def _base64_cores(text: str) -> set[str]:
    """What base64 of any bytes holding ``text`` holds whatever stands around it: for
    each of the three alignments, the 4-character groups made of ``text``'s bytes alone."""
    data = text.encode("utf-8")
    cores = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data).decode("ascii")
        core = encoded[4 if shift else 0:(shift + len(data)) // 3 * 4]
        if len(core) >= _MIN_CORE:
            cores.add(core)
    return cores


def _token_forms(username: str, token: str, host: str, port: int) -> set[str]:
    """The token as is, the initial responses XOAUTH2 and OAUTHBEARER send, and any base64
    carrying it (so a server's echo of a part of one is scrubbed too)."""
    return {token, b64(token), xoauth2_response(username, token),
            oauthbearer_response(username, token, host, port), *_base64_cores(token)}


def _secret_forms(username: str, secret: Credential, host: str, port: int) -> list[str]:
    """The credential as a log text could carry it, longest first; none when empty."""
    value = secret.reveal()
    if not value:
        return []
    forms = (_token_forms(username, value, host, port) if isinstance(secret, AccessToken)
             else _password_forms(username, value))
    return sorted(forms, key=len, reverse=True)


def scrub(text: str, username: str, secret: Credential, *, host: str = "",
          port: int = 0) -> str:
    """Remove the password or access token, and the base64 forms AUTH would carry, from a
    log text. ``host`` and ``port`` are the server's (OAUTHBEARER's initial response)."""
    for form in _secret_forms(username, secret, host, port):
        text = text.replace(form, "**********")
    return text


class Scrubber:
    """:func:`scrub` without the credential: what a pooled connection keeps for its DEBUG
    log, so that the plaintext is needed only to sign in.

    Holds the length and a keyed BLAKE2b digest (a random key of its own) of each form
    :func:`scrub` removes, and removes any stretch of a text with the same length and
    digest. Slower than :func:`scrub` (one digest per position and form), which is why it
    runs only for DEBUG records, on replies that :data:`MAX_REPLY_BYTES` bounds.
    """

    __slots__ = ("_forms", "_key")

    def __init__(self, username: str, secret: Credential, *, host: str = "",
                 port: int = 0) -> None:
        self._key = secrets.token_bytes(32)
        self._forms = tuple((len(form), self._digest(form))
                            for form in _secret_forms(username, secret, host, port))

    def _digest(self, text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), key=self._key,
                               digest_size=32).digest()

    def scrub(self, text: str) -> str:
        for length, digest in self._forms:  # the longest first, as scrub() does
            if len(text) < length:
                continue
            kept: list[str] = []
            start = position = 0
            while position <= len(text) - length:
                if self._digest(text[position:position + length]) == digest:
                    kept += [text[start:position], "**********"]
                    position = start = position + length
                else:
                    position += 1
            text = "".join([*kept, text[start:]])
        return text

    def __repr__(self) -> str:
        return "Scrubber(<digests>)"
