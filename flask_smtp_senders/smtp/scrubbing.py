"""Keeping the password out of the transport's DEBUG log: :func:`scrub` removes it, and
the base64 forms AUTH sends, from a text; a :class:`Scrubber` does the same without
keeping the password.

Why: DEBUG carries the server's replies and exception texts, which a hostile server can
make echo what we sent. (WARNING never carries them: see
:func:`flask_smtp_senders.smtp.failures.describe`.) This module knows nothing of Flask.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from ..sealed import Secret


def _secret_forms(username: str, password: str) -> list[str]:
    """The password as a log text could carry it: as is, and the base64 AUTH sends."""
    forms = {
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(f"\0{username}\0{password}".encode()).decode(),
    }
    return sorted(forms, key=len, reverse=True)


def scrub(text: str, username: str, secret: Secret) -> str:
    """Remove the password, and the base64 forms AUTH would carry, from a log text."""
    password = secret.reveal()
    if not password:
        return text
    for form in _secret_forms(username, password):
        text = text.replace(form, "**********")
    return text


class Scrubber:
    """:func:`scrub` without the password: what a pooled connection keeps for its DEBUG
    log, so that the plaintext is needed only to sign in.

    Holds the length and a keyed BLAKE2b digest (a random key of its own) of each form
    :func:`scrub` removes, and removes any stretch of a text with the same length and
    digest. Slower than :func:`scrub` (one digest per position and form), which is why it
    runs only for DEBUG records, on replies that :data:`MAX_REPLY_BYTES` bounds.
    """

    __slots__ = ("_forms", "_key")

    def __init__(self, username: str, secret: Secret) -> None:
        self._key = secrets.token_bytes(32)
        password = secret.reveal()
        forms = _secret_forms(username, password) if password else []
        self._forms = tuple((len(form), self._digest(form)) for form in forms)

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
