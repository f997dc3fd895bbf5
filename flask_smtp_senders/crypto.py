"""Encryption of SMTP passwords at rest with cryptography's ``MultiFernet``.

The first key encrypts, every key decrypts, so keys rotate without downtime. There is no
plaintext fallback: a password that no key can read must be re-entered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .errors import ConfigurationError, PasswordUnreadable

KEYS_SETTING = "SMTP_SENDERS_ENCRYPTION_KEYS"


class Secret:
    """A password in memory: readable with :meth:`reveal`, invisible in repr, str and logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str:
        raise TypeError("a Secret cannot be pickled")


class EncryptedPassword:
    """A Fernet token as stored: opaque, redacted in repr, refused by pickle and JSON."""

    __slots__ = ("token",)

    def __init__(self, token: bytes) -> None:
        self.token = token

    def __repr__(self) -> str:
        return "EncryptedPassword(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EncryptedPassword) and other.token == self.token

    def __hash__(self) -> int:
        return hash(self.token)

    def __reduce__(self) -> str:
        raise TypeError("an EncryptedPassword cannot be pickled")

    def __deepcopy__(self, memo: dict) -> EncryptedPassword:
        return self


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


class PasswordCipher:
    """Encrypts and decrypts sender passwords under the configured keys."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def encrypt(self, password: str) -> EncryptedPassword:
        return EncryptedPassword(self._fernet.encrypt(password.encode("utf-8")))

    def decrypt(self, encrypted: EncryptedPassword) -> Secret:
        try:
            return Secret(self._fernet.decrypt(encrypted.token).decode("utf-8"))
        except (InvalidToken, UnicodeDecodeError):
            raise PasswordUnreadable(
                "no configured key decrypts this sender's password"
            ) from None

    def can_decrypt(self, encrypted: EncryptedPassword) -> bool:
        try:
            self.decrypt(encrypted)
        except PasswordUnreadable:
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
