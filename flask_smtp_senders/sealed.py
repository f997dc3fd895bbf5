"""Values that must not leak: a password in memory (:class:`Secret`), an OAuth2 access
token in memory (:class:`AccessToken`) and a stored password's token
(:class:`EncryptedPassword`).

Why apart from the cipher (:mod:`flask_smtp_senders.crypto`): the SMTP exchange, the
store and the services carry these values without encrypting anything. Sealed, a value
shows a placeholder in repr and str (so logs and tracebacks never hold it) and refuses
pickling (so it never lands in a cache or a task queue); only ``reveal()`` hands the
plaintext over.
"""

from __future__ import annotations


class _Sealed:
    """A value that never shows itself (repr, str, logs) and never leaves the process by
    pickle: what :class:`Secret` and :class:`EncryptedPassword` share."""

    __slots__ = ("_sealed",)
    #: What repr and str show instead of the value.
    _shown = ""
    #: How the pickling error names it.
    _what = ""

    def __init__(self, value: str | bytes) -> None:
        self._sealed = value

    def __repr__(self) -> str:
        return self._shown

    def __str__(self) -> str:
        return self._shown

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and other._sealed == self._sealed

    def __hash__(self) -> int:
        return hash(self._sealed)

    def __reduce__(self) -> str:
        raise TypeError(f"{self._what} cannot be pickled")


class Secret(_Sealed):
    """A password in memory: readable with :meth:`reveal`, invisible in repr, str and logs."""

    __slots__ = ()
    _shown = "Secret('**********')"
    _what = "a Secret"

    def reveal(self) -> str:
        return str(self._sealed)


class AccessToken(_Sealed):
    """An OAuth2 access token in memory (XOAUTH2, OAUTHBEARER): a bearer credential, as
    good as a password while it lasts, so sealed like one. A distinct type so that the
    SMTP exchange knows which mechanisms the credential is for."""

    __slots__ = ("expires_at",)
    _shown = "AccessToken('**********')"
    _what = "an AccessToken"

    def __init__(self, value: str, expires_at: float | None = None) -> None:
        super().__init__(value)
        #: When it stops working (epoch seconds), if the issuer said.
        self.expires_at = expires_at

    def reveal(self) -> str:
        return str(self._sealed)


#: What signs in to an SMTP server: a password or an OAuth2 access token.
Credential = Secret | AccessToken


class EncryptedPassword(_Sealed):
    """A Fernet token as stored: opaque, redacted in repr, refused by pickle and JSON."""

    __slots__ = ()
    _shown = "EncryptedPassword(<redacted>)"
    _what = "an EncryptedPassword"

    @property
    def token(self) -> bytes:
        return bytes(self._sealed)

    def __deepcopy__(self, memo: dict) -> EncryptedPassword:
        return self
