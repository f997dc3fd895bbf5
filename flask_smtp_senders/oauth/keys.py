"""A Google service account key file, read and checked, and the assertion it signs.

Why checked here: the key file is pasted or uploaded by an administrator, and a wrong
file (an OAuth client's JSON, a P12, another key) should be refused when it is saved,
with a reason that never quotes it. The assertion follows RFC 7523 s2.1 as Google
documents it for domain-wide delegation: RS256, ``kid`` the key's id, ``iss`` the
service account, ``sub`` the user to act for, ``aud`` the token URL, and at most an
hour between ``iat`` and ``exp``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..sealed import Secret
from ..text_checks import CONTROL

#: The most a key file may hold (Google's are about 2.3 KB).
MAX_KEY_FILE = 16 * 1024
#: The longest an assertion may live: Google's maximum, one hour.
ASSERTION_LIFETIME = 3600
#: The smallest RSA key we sign with (Google's are 2048 bits).
MIN_KEY_BITS = 2048
_FIELDS = ("client_email", "private_key_id", "client_id", "private_key")


@dataclass(frozen=True)
class ServiceAccountKey:
    """What a key file says: who signs (``client_email``, ``client_id``, which the Google
    Admin console names for domain-wide delegation), with which key."""

    client_email: str
    private_key_id: str
    client_id: str
    private_key_pem: Secret


def parse_service_account_key(text: str) -> ServiceAccountKey:
    """The key in a service account key file (JSON). ValueError, with a reason that
    never quotes the file, for anything else."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("The service account key is empty.")
    if len(text) > MAX_KEY_FILE:
        raise ValueError(f"A service account key file holds at most "
                         f"{MAX_KEY_FILE // 1024} KB.")
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError("The service account key is not JSON: upload the key file "
                         "exactly as Google made it.") from None
    if not isinstance(data, dict) or data.get("type") != "service_account":
        raise ValueError("This JSON is not a service account key (its type is not "
                         "\"service_account\"). Create a JSON key for the service account.")
    for name in _FIELDS:
        value = data.get(name)
        if not isinstance(value, str) or not value.strip() or (
                name != "private_key" and (CONTROL.search(value) or len(value) > 320)):
            raise ValueError(f"The service account key has no valid \"{name}\".")
    if "@" not in data["client_email"]:
        raise ValueError("The service account key has no valid \"client_email\".")
    load_private_key(data["private_key"])
    return ServiceAccountKey(data["client_email"], data["private_key_id"], data["client_id"],
                             Secret(data["private_key"]))


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """The RSA private key of a PEM text; ValueError (never quoting it) otherwise."""
    try:
        key = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError, UnicodeError):
        key = None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("The service account key's private key does not load as an RSA "
                         "private key.")
    if key.key_size < MIN_KEY_BITS:
        raise ValueError(f"The service account key's RSA key is shorter than "
                         f"{MIN_KEY_BITS} bits.")
    return key


def signed_assertion(key: ServiceAccountKey, subject: str, scope: str, audience: str,
                     now: float) -> str:
    """The RFC 7523 assertion for ``subject`` (the Workspace user to send as)."""
    issued = int(now)
    claims = {"iss": key.client_email, "sub": subject, "scope": scope, "aud": audience,
              "iat": issued, "exp": issued + ASSERTION_LIFETIME}
    private_key = load_private_key(key.private_key_pem.reveal())
    return jwt.encode(claims, private_key, algorithm="RS256",
                      headers={"kid": key.private_key_id})
