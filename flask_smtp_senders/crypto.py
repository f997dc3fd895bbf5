"""Encryption of SMTP passwords at rest with cryptography's ``MultiFernet``.

The first key encrypts, every key decrypts, so keys rotate without downtime. There is no
plaintext fallback: a password that no key can read must be re-entered.

Each password is also *bound* to its destination: beside the token the store keeps an
HMAC of (Server Name, Port, mode, Username, token) under a key derived from the encryption
key. A row edited behind the application's back (SQL, a buggy store), or given another
row's token, then no longer matches, and the password is refused before it is even
decrypted, so it cannot be sent anywhere it was not entered for.

Each saved version of a sender also gets a *settings fingerprint*: an HMAC of every setting
and the plaintext password (at save time) under another derived key, so the Senders pages
can tell whether the saved settings are the ones the last successful test email used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import ConfigurationError, CredentialNotBound, PasswordUnreadable
from .sealed import EncryptedPassword, Secret

KEYS_SETTING = "SMTP_SENDERS_ENCRYPTION_KEYS"


def parse_keys(value: str | bytes | Iterable[str | bytes] | None) -> list[bytes]:
    """Turn the setting into a list of keys, failing with a message that names it."""
    if value is None or value == "" or value == b"":
        raise ConfigurationError(
            f"{KEYS_SETTING} is not set: give one or more Fernet keys "
            "(generate one with Fernet.generate_key())."
        )
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    items = value.split(",") if isinstance(value, str) else list(value)
    if not all(isinstance(k, str | bytes) for k in items):
        raise ConfigurationError(
            f"{KEYS_SETTING} must hold keys as text; one of them is "
            f"{next(type(k).__name__ for k in items if not isinstance(k, str | bytes))} "
            "(an unset environment variable?)."
        )
    keys = [k.strip().encode("ascii", "replace") if isinstance(k, str) else k.strip()
            for k in items]
    keys = [k for k in keys if k]
    if not keys:
        raise ConfigurationError(f"{KEYS_SETTING} holds no key.")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ConfigurationError(
                f"{KEYS_SETTING}: key number {position} is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes)."
            ) from None
    return keys


def read_keys_file(path: str) -> list[str]:
    """Keys from a file of the host's (one per line, newest first; # starts a comment),
    so they can live apart from both the database and the configuration."""
    try:
        with open(path, encoding="ascii") as file:
            lines = [line.split("#", 1)[0].strip() for line in file]
    except (OSError, UnicodeDecodeError):
        raise ConfigurationError(
            f"{KEYS_SETTING}_FILE does not name a readable file of keys."
        ) from None
    return [line for line in lines if line]


#: HKDF ``info`` of the binding key: a key of its own for this one purpose, so the MAC
#: never reuses Fernet's signing key and a future scheme gets a different label.
BINDING_INFO = b"flask-smtp-senders destination binding v1"
#: Prefix of every stored binding; a binding without it (or with another) never verifies.
BINDING_VERSION = "v1"


@dataclass(frozen=True)
class Destination:
    """Where a password may be used: what its binding covers.

    ``server_name`` is the stored form (an IP literal, or the IDNA name in lower case that
    validation produces); ``mode`` is ``security_for_port(port).value`` (given by the
    caller: this module does not import the transport).
    """

    server_name: str
    port: int
    mode: str
    username: str
    #: Where an OAuth2 sender's secret is spent, beside the server: its provider type and
    #: what its token request names. All "" for a password (Custom Server), whose
    #: canonical form is the same as before they existed.
    provider: str = ""
    token_url: str = ""
    tenant_id: str = ""
    client_id: str = ""
    scope: str = ""

    def canonical(self) -> bytes:
        """One byte string per destination, and never the same one for two of them.

        A JSON array of a label and the four fields: every string is quoted and escaped,
        so no field can run into the next (``"a:1" + "b"`` is not ``"a" + "1:b"``, as it
        would be with a separator), the port stays a number, and ``ensure_ascii`` leaves
        one encoding. The values are taken exactly as stored: any change is a mismatch.
        """
        fields: list[object] = ["flask-smtp-senders/destination/v1", self.server_name,
                                int(self.port), self.mode, self.username]
        if self.provider not in ("", "custom"):  # an OAuth2 secret: bound to its use too
            fields[0] = "flask-smtp-senders/destination/v2"
            fields += [self.provider, self.token_url, self.tenant_id, self.client_id,
                       self.scope]
        return json.dumps(fields, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def binding_key(fernet_key: bytes) -> bytes:
    """The MAC key of one Fernet key (HKDF-SHA256 over its 32 raw bytes)."""
    material = base64.urlsafe_b64decode(fernet_key)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=BINDING_INFO).derive(material)


#: HKDF ``info`` of the settings-fingerprint key (a key of its own, like the binding's).
FINGERPRINT_INFO = b"flask-smtp-senders settings fingerprint v1"
#: Prefix of a settings fingerprint without a salt, and of a salted one (every save's).
FINGERPRINT_VERSION = "f1"
SAVE_FINGERPRINT_VERSION = "f2"


def fingerprint_key(fernet_key: bytes) -> bytes:
    """The settings-fingerprint MAC key of one Fernet key (HKDF-SHA256, its own label)."""
    material = base64.urlsafe_b64decode(fernet_key)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=FINGERPRINT_INFO).derive(material)


class PasswordCipher:
    """Encrypts and decrypts sender passwords under the configured keys, binds them
    to their destination, and fingerprints a sender's settings."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self._binding_keys = [binding_key(key) for key in keys]
        self._fingerprint_keys = [fingerprint_key(key) for key in keys]

    # -- settings fingerprint ---------------------------------------------------------

    @staticmethod
    def _fingerprint(key: bytes, settings: Mapping[str, object], password: str,
                     salt: str | None = None) -> str:
        # Every setting by name (sorted, so the order of the fields does not matter) and
        # the password in plaintext, in one JSON array: quoted and escaped, no field runs
        # into the next. The plaintext goes into the MAC only; the stored value is an HMAC
        # under a key derived from the encryption key, so it cannot be tested offline
        # against guessed passwords without that key. A save's fingerprint also takes a
        # random salt (kept in the stored value), so no two saves share one.
        parts: list[object] = ["flask-smtp-senders/settings/v1",
                               [[name, settings[name]] for name in sorted(settings)],
                               password]
        if salt is not None:
            parts.append(salt)
        data = json.dumps(parts, ensure_ascii=True, separators=(",", ":")).encode("ascii")
        mac = hmac.new(key, data, hashlib.sha256).hexdigest()
        if salt is None:
            return f"{FINGERPRINT_VERSION}:{mac}"
        return f"{SAVE_FINGERPRINT_VERSION}:{salt}:{mac}"

    def fingerprint(self, settings: Mapping[str, object], password: str | Secret) -> str:
        """An HMAC (under the first key's fingerprint key) of every setting and the password
        *in plaintext*: the same settings and password always give the same value. Used
        for a version saved before fingerprints existed, when its test passes."""
        plain = password.reveal() if isinstance(password, Secret) else password
        return self._fingerprint(self._fingerprint_keys[0], settings, plain)

    def save_fingerprint(self, settings: Mapping[str, object], password: str) -> str:
        """What identifies one *saved* version of a sender: the fingerprint of its settings
        and password with a fresh random salt, so every save gets its own.

        Why a salt: the list shows a sender as tested while its saved fingerprint is the
        one of the last passed test. Were a save of the same values to give the same
        fingerprint, re-saving a tested sender with a guessed password would say, by its
        state, whether the guess was the stored password (an oracle, issue 14). With the
        salt, every save (which always re-enters the password) needs a passed test before
        it shows as tested, whatever was typed. Stored fingerprints are only ever compared
        with each other, never recomputed, so a key rotation leaves them as they are."""
        return self._fingerprint(self._fingerprint_keys[0], settings, password,
                                 secrets.token_urlsafe(6))  # 48 bits; fits String(80)

    def fingerprint_matches(self, settings: Mapping[str, object], password: str | Secret,
                            fingerprint: str | None) -> bool:
        """Whether ``fingerprint`` (salted or not) is of exactly these settings and password
        under any configured key. For the audit's list of changed fields only: never for
        anything a page, an answer or the test state shows. None never matches."""
        if not isinstance(fingerprint, str):
            return False
        plain = password.reveal() if isinstance(password, Secret) else password
        version, _, rest = fingerprint.partition(":")
        salt = rest.partition(":")[0] if version == SAVE_FINGERPRINT_VERSION else None
        given = fingerprint.encode("utf-8", "replace")
        matched = False
        for key in self._fingerprint_keys:
            expected = self._fingerprint(key, settings, plain, salt).encode("ascii")
            matched |= hmac.compare_digest(expected, given)
        return matched

    # -- destination binding ----------------------------------------------------------

    @staticmethod
    def _mac(key: bytes, destination: Destination, password: EncryptedPassword) -> str:
        # The token is MACed too, so another row's token (same key, other destination)
        # does not verify here. JSON never holds a NUL, so the two parts cannot blur.
        data = destination.canonical() + b"\0" + password.token
        return f"{BINDING_VERSION}:{hmac.new(key, data, hashlib.sha256).hexdigest()}"

    def bind(self, destination: Destination, password: EncryptedPassword) -> str:
        """The binding to store beside ``password``: an HMAC under the first key's MAC key.
        It reveals nothing of the password (it is computed from the token, not from it)."""
        return self._mac(self._binding_keys[0], destination, password)

    def verify(self, destination: Destination, password: EncryptedPassword,
               binding: str | None) -> bool:
        """Whether ``binding`` was made for exactly this destination and token under any
        configured key (like decryption, so rotation keeps working). None never verifies."""
        if not isinstance(binding, str):
            return False
        given = binding.encode("utf-8", "replace")
        matched = False
        for key in self._binding_keys:  # every key, each compared in constant time
            expected = self._mac(key, destination, password).encode("ascii")
            matched |= hmac.compare_digest(expected, given)
        return matched

    def rebind(self, destination: Destination, old: EncryptedPassword, binding: str | None,
               new: EncryptedPassword) -> str:
        """For key rotation: the binding of the re-encrypted token ``new`` under the first
        key; raises CredentialNotBound when ``binding`` does not verify for ``old`` (a NULL
        or tampered binding is never laundered into a valid one)."""
        if not self.verify(destination, old, binding):
            raise CredentialNotBound("the stored password is not bound to these settings")
        return self.bind(destination, new)

    # -- encryption -------------------------------------------------------------------

    def encrypt(self, password: str) -> EncryptedPassword:
        return EncryptedPassword(self._fernet.encrypt(password.encode("utf-8")))

    def decrypt(self, encrypted: EncryptedPassword) -> Secret:
        try:
            return Secret(self._fernet.decrypt(encrypted.token).decode("utf-8"))
        except (InvalidToken, UnicodeDecodeError):
            raise PasswordUnreadable(
                "no configured key decrypts this sender's password"
            ) from None

    def authentic(self, encrypted: EncryptedPassword) -> bool:
        """Whether a configured key signed this token, checked without decrypting it (so a
        refusal can tell "unreadable: wrong key or corrupt" from "not bound")."""
        try:
            self._fernet.extract_timestamp(encrypted.token)
        except (InvalidToken, TypeError, ValueError):
            return False
        return True

    def rotate(self, encrypted: EncryptedPassword) -> EncryptedPassword:
        """Re-encrypt under the first key; raises PasswordUnreadable if no key reads it."""
        try:
            return EncryptedPassword(self._fernet.rotate(encrypted.token))
        except InvalidToken:
            raise PasswordUnreadable(
                "no configured key decrypts this sender's password"
            ) from None
