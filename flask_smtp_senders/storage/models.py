"""The sender table, on a metadata of its own so it works with any host's Flask-SQLAlchemy.

No column holds a plaintext password: ``password_token`` is a Fernet token, and
``password_binding`` a MAC tying it to its destination. ``version`` is SQLAlchemy's
optimistic-locking counter, bumped by every save of the settings. ``settings_fingerprint``
and ``tested_fingerprint`` are MACs too (of the settings with the password), compared with
each other only.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..addresses import MAX_ADDRESS, MAX_SERVER_NAME
from ..provider_fields import MAX_CLIENT_ID, MAX_SCOPE, MAX_TENANT, MAX_TOKEN_URL
from ..validation import DEFAULT_PORT, MAX_NAME, MAX_USERNAME


class Base(DeclarativeBase):
    """Our own registry: nothing of the host's models is touched."""

    metadata = MetaData()


class SenderRow(Base):
    __tablename__ = "smtp_senders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(MAX_USERNAME))
    password_token: Mapped[str] = mapped_column(Text)
    #: HMAC of (server_name, port, mode, username, password_token) under a key derived
    #: from the encryption key (crypto.PasswordCipher.bind). NULL, or a value that does not
    #: match the other columns, means the password is never used.
    password_binding: Mapped[str | None] = mapped_column(String(128), nullable=True)
    server_name: Mapped[str] = mapped_column(String(MAX_SERVER_NAME))
    port: Mapped[int] = mapped_column(Integer, default=DEFAULT_PORT)
    from_name: Mapped[str] = mapped_column(String(MAX_NAME), default="")
    from_address: Mapped[str] = mapped_column(String(MAX_ADDRESS))
    reply_to_name: Mapped[str] = mapped_column(String(MAX_NAME), default="")
    reply_to_address: Mapped[str] = mapped_column(String(MAX_ADDRESS), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    last_test_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_test_ok: Mapped[bool | None] = mapped_column(Boolean)
    #: HMAC of every setting and the plaintext password of the saved version, set by each
    #: save (crypto.PasswordCipher.fingerprint). NULL for rows saved before it existed.
    settings_fingerprint: Mapped[str | None] = mapped_column(String(80), nullable=True)
    #: The settings_fingerprint of the version the last *successful* test email used;
    #: NULL when none passed (since the upgrade). Equal to settings_fingerprint: tested.
    tested_fingerprint: Mapped[str | None] = mapped_column(String(80), nullable=True)
    #: The last connection check (the dry run, e.g. ``flask smtp-senders check``): when,
    #: whether it passed, and the stage where it stopped (NULL when it passed).
    last_check_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_check_ok: Mapped[bool | None] = mapped_column(Boolean)
    last_check_stage: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: The sender the host's messages go through when none is named.
    is_default: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    #: How it signs in (domain.Provider): "custom" is a password; the others use OAuth2
    #: and keep their client secret or service account key in ``password_token``.
    provider: Mapped[str] = mapped_column(String(32), default="custom",
                                          server_default="custom", nullable=False)
    tenant_id: Mapped[str] = mapped_column(String(MAX_TENANT), default="", server_default="",
                                           nullable=False)
    client_id: Mapped[str] = mapped_column(String(MAX_CLIENT_ID), default="",
                                           server_default="", nullable=False)
    token_url: Mapped[str] = mapped_column(String(MAX_TOKEN_URL), default="",
                                           server_default="", nullable=False)
    scope: Mapped[str] = mapped_column(String(MAX_SCOPE), default="", server_default="",
                                       nullable=False)
    #: YYYY-MM-DD, or "": when the secret stops working (warned about ahead).
    secret_expires: Mapped[str] = mapped_column(String(10), default="", server_default="",
                                                nullable=False)

    __mapper_args__ = {"version_id_col": version}

    def __repr__(self) -> str:
        return f"<SenderRow id={self.id} {self.server_name}:{self.port} v{self.version}>"


class TokenRow(Base):
    """An OAuth2 access token of one sender version, Fernet-encrypted (never on disk in
    clear), shared by every worker; ``key`` names the version (see services/tokens.py)."""

    __tablename__ = "smtp_sender_tokens"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    sender_id: Mapped[int] = mapped_column(Integer, index=True)
    token: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

