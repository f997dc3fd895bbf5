"""The access-token cache of the built-in store: rows of ``smtp_sender_tokens``, each an
encrypted token of one sender version with its expiry.

Why apart from the sender rows (:mod:`.sqlalchemy`): the cache is optional, its rows
are disposable (a lost one costs a token request), and its rules are its own: an
expired token is never handed out, and every write forgets the expired ones.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import delete
from sqlalchemy.orm import Session

from ..sealed import EncryptedPassword
from .models import TokenRow
from .stored_settings import utc


def load(session: Session, key: str) -> tuple[EncryptedPassword, datetime] | None:
    """The unexpired token of ``key``, if any."""
    row = session.get(TokenRow, key)
    expires_at = utc(row.expires_at) if row is not None else None
    if row is None or expires_at is None or expires_at <= datetime.now(timezone.utc):
        return None
    return EncryptedPassword(row.token.encode("ascii")), expires_at


def save(session: Session, key: str, sender_id: int, token: EncryptedPassword,
         expires_at: datetime) -> None:
    """Keep the token (replacing one of the same key) and forget every expired one."""
    session.execute(delete(TokenRow).where(
        (TokenRow.key == key) | (TokenRow.expires_at <= datetime.now(timezone.utc))))
    session.add(TokenRow(key=key, sender_id=sender_id, token=token.token.decode("ascii"),
                         expires_at=expires_at.astimezone(timezone.utc)))


def drop(session: Session, *, key: str | None = None, sender_id: int | None = None) -> None:
    """Forget one token, or every token of a sender (edited or deleted)."""
    condition = TokenRow.key == key if key is not None else TokenRow.sender_id == sender_id
    session.execute(delete(TokenRow).where(condition))
