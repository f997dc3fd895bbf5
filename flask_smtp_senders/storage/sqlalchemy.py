"""The default store: senders in the host's database, through SQLAlchemy.

It implements :class:`.base.SenderStore` (and :class:`.base.SchemaOwner`, running the
shipped migrations) on the host's Flask-SQLAlchemy engine, with sessions of its own. Each
write is one transaction; versions, the default and re-encryption are compare-and-set in
SQL, so concurrent admins and workers never overwrite each other's saves.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from ..errors import ConcurrentUpdate, CredentialNotBound, PasswordUnreadable, SenderNotFound
from ..sealed import EncryptedPassword
from ..validation import SenderSettings
from . import token_rows
from .base import BeforeCommit, Rebind, Reencrypt, Sender, destination
from .failures import database_errors
from .models import SenderRow
from .stored_settings import to_sender

if TYPE_CHECKING:
    from .schema import Upgrade

log = logging.getLogger(__name__)


#: The largest sender id: the id column is a 32-bit INTEGER (PostgreSQL's, and the one
#: SQLite's driver converts without overflowing).
MAX_SENDER_ID = 2**31 - 1


def _row(session: Session, sender_id: int) -> SenderRow:
    """The sender's row, or SenderNotFound."""
    row = session.get(SenderRow, sender_id)
    if row is None:
        raise SenderNotFound(f"no sender with id {sender_id}")
    return row


def _existing_id(sender_id: int) -> None:
    """An id no row can have is not found: never an overflow deep in the driver."""
    if not 1 <= sender_id <= MAX_SENDER_ID:
        raise SenderNotFound(f"no sender with id {sender_id}")


def _now() -> datetime:
    return datetime.now(timezone.utc)


#: The columns a secret's binding covers (storage.base.destination's arguments).
_BOUND = ("server_name", "port", "username", "provider", "token_url", "tenant_id",
          "client_id", "scope")


class SQLAlchemyStore:
    """The default store, on the host's Flask-SQLAlchemy engine with sessions of its own
    (so a save never commits, or rolls back, the host's unfinished work)."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def create_tables(self, progress: Callable[[str], None] | None = None) -> Upgrade:
        """Create the sender table, or bring it up to this version's schema: the shipped
        Alembic migrations (:func:`.schema.upgrade`), one read when already up to date.
        Returns the :class:`.schema.Upgrade` saying what was done."""
        from .schema import upgrade  # Alembic is only needed here

        return upgrade(self._db.engine, progress=progress)

    @contextlib.contextmanager
    def _session(self) -> Iterator[Session]:
        """A session of our own; database failures become StorageError (rolled back)."""
        with database_errors(), Session(self._db.engine, expire_on_commit=False) as session:
            yield session

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._session() as session, session.begin():
            yield session

    def list(self) -> list[Sender]:
        with self._session() as session:
            rows = session.scalars(select(SenderRow).order_by(SenderRow.id))
            return [to_sender(row) for row in rows]

    def get(self, sender_id: int) -> Sender:
        _existing_id(sender_id)
        with self._session() as session:
            row = _row(session, sender_id)
            return to_sender(row)

    def add(self, settings: SenderSettings, password: EncryptedPassword,
            before_commit: BeforeCommit | None = None, *,
            binding: str | None = None, fingerprint: str | None = None) -> Sender:
        now = _now()
        with self._transaction() as session:
            has_default = session.scalar(
                select(SenderRow.id).where(SenderRow.is_default.is_(True)).limit(1))
            row = SenderRow(**asdict(settings), password_token=password.token.decode("ascii"),
                            password_binding=binding, settings_fingerprint=fingerprint,
                            created_at=now, updated_at=now, is_default=has_default is None)
            session.add(row)
            session.flush()
            sender = to_sender(row)
            if before_commit:
                before_commit(sender)
        return sender

    def update(self, sender_id: int, expected_version: int, settings: SenderSettings,
               password: EncryptedPassword,
               before_commit: BeforeCommit | None = None, *,
               binding: str | None = None, fingerprint: str | None = None) -> Sender:
        _existing_id(sender_id)
        try:
            with self._transaction() as session:
                row = _row(session, sender_id)
                if row.version != expected_version:
                    raise ConcurrentUpdate(f"sender {sender_id} was changed by someone else")
                for name, value in asdict(settings).items():
                    setattr(row, name, value)
                row.password_token = password.token.decode("ascii")
                row.password_binding = binding
                # Written by the same versioned UPDATE: a test of the previous version
                # that records after this cannot mark these settings tested.
                row.settings_fingerprint = fingerprint
                row.updated_at = _now()
                session.flush()  # UPDATE ... WHERE version = expected: races end here
                # The old version's tokens were fetched with the old settings: gone too.
                token_rows.drop(session, sender_id=sender_id)
                sender = to_sender(row)
                if before_commit:
                    before_commit(sender)
        except StaleDataError:
            raise ConcurrentUpdate(f"sender {sender_id} was changed by someone else") from None
        return sender

    def delete(self, sender_id: int, expected_version: int | None = None,
               before_commit: BeforeCommit | None = None) -> None:
        _existing_id(sender_id)
        with self._transaction() as session:
            row = _row(session, sender_id)
            sender = to_sender(row)
            statement = delete(SenderRow).where(SenderRow.id == sender_id)
            if expected_version is not None:
                statement = statement.where(SenderRow.version == expected_version)
            deleted = session.execute(
                statement, execution_options={"synchronize_session": False}
            ).rowcount
            if deleted != 1:
                raise ConcurrentUpdate(f"sender {sender_id} was changed by someone else")
            token_rows.drop(session, sender_id=sender_id)
            if sender.is_default:  # pass the default on to the oldest remaining sender
                successor = session.scalar(select(SenderRow).order_by(SenderRow.id).limit(1))
                if successor is not None:
                    self._make_default(session, successor.id)
            if before_commit:
                before_commit(sender)

    # -- access tokens (the optional TokenCache protocol: token_rows.py) --------------

    def load_token(self, key: str) -> tuple[EncryptedPassword, datetime] | None:
        with self._session() as session:
            return token_rows.load(session, key)

    def save_token(self, key: str, sender_id: int, token: EncryptedPassword,
                   expires_at: datetime) -> None:
        with self._transaction() as session:
            token_rows.save(session, key, sender_id, token, expires_at)

    def drop_token(self, key: str) -> None:
        with self._transaction() as session:
            token_rows.drop(session, key=key)

    def record_test(self, sender_id: int, ok: bool, when: datetime, *,
                    version: int | None = None, fingerprint: str | None = None) -> bool:
        """One UPDATE, no version bump. With ``version``, a compare-and-set: nothing is
        recorded when the sender was saved (or deleted) since the test read it, since the
        result is about settings that are no longer saved. A passed test then sets
        ``tested_fingerprint`` from the row's own ``settings_fingerprint`` in the same
        statement (SQL reads the old values on the right of SET), so it is exactly the
        fingerprint of the version that was tested. Returns whether a row was written."""
        table = SenderRow.__table__
        values: dict[str, Any] = {"last_test_at": when.astimezone(timezone.utc),
                                  "last_test_ok": ok}
        statement = update(table).where(table.c.id == sender_id)
        if version is not None:
            statement = statement.where(table.c.version == version)
            if ok:
                tested = func.coalesce(table.c.settings_fingerprint, fingerprint)
                values.update(tested_fingerprint=tested, settings_fingerprint=tested)
        with self._transaction() as session:
            written = session.execute(statement.values(**values)).rowcount
        return written == 1

    def record_check(self, sender_id: int, ok: bool, when: datetime,
                     stage: str | None) -> None:
        """Remember the last connection check: no version bump, no compare-and-set (it
        changes nothing the test state depends on)."""
        table = SenderRow.__table__
        with self._transaction() as session:
            session.execute(
                update(table).where(table.c.id == sender_id)
                .values(last_check_at=when.astimezone(timezone.utc), last_check_ok=ok,
                        last_check_stage=None if ok else (stage or "")[:32])
            )

    def set_default(self, sender_id: int,
                    before_commit: BeforeCommit | None = None) -> Sender:
        _existing_id(sender_id)
        with self._transaction() as session:
            row = _row(session, sender_id)
            self._make_default(session, sender_id)
            session.refresh(row)
            sender = to_sender(row)
            if before_commit:
                before_commit(sender)
        return sender

    @staticmethod
    def _make_default(session: Session, sender_id: int) -> None:
        """One statement, no version bump: the default is not a connection setting."""
        table = SenderRow.__table__
        session.execute(update(table).values(is_default=table.c.id == sender_id))

    def reencrypt(self, transform: Reencrypt,
                  before_commit: Callable[[int, int], None] | None = None, *,
                  progress: Callable[[int], None] | None = None,
                  rebind: Rebind | None = None) -> tuple[int, int]:
        """One SELECT, the transform in memory, one executemany, one transaction.

        The rows are written once at the end, not batch by batch, so on SQLite the write
        lock is held for the UPDATE alone and admins saving meanwhile are not locked out
        while the tokens are re-encrypted. ``progress`` hears every 100 tokens, and the
        total only once the UPDATE has run. Token and binding are written by the same
        compare-and-set, so they never come from two different saves.
        """
        batch = 100
        table = SenderRow.__table__
        with self._transaction() as session:
            rows = session.execute(select(
                table.c.id, table.c.password_token, table.c.password_binding,
                *(table.c[name] for name in _BOUND))).all()
            changes, unreadable = [], 0
            for done, (sender_id, token, binding, *bound) in enumerate(rows, start=1):
                old = EncryptedPassword(token.encode("utf-8"))
                try:
                    new = transform(old)
                    if rebind is not None:
                        values = dict(zip(_BOUND, bound, strict=True))
                        binding = rebind(destination(**{k: v if v is not None else ""
                                                        for k, v in values.items()}),
                                         old, binding, new)
                except CredentialNotBound:
                    log.warning("sender %s: its password is not bound to its server "
                                "settings; left as it was (re-enter it)", sender_id)
                    unreadable += 1
                except PasswordUnreadable:
                    unreadable += 1
                else:
                    changes.append({"row_id": sender_id, "old_token": token,
                                    "token": new.token.decode("ascii"), "binding": binding})
                if progress is not None and done % batch == 0 and done < len(rows):
                    progress(done)
            if changes:
                # Compare-and-set: a password saved meanwhile is already under the first
                # key and must not be overwritten by the re-encrypted old one.
                session.execute(
                    update(table).where(table.c.id == bindparam("row_id"))
                    .where(table.c.password_token == bindparam("old_token"))
                    .values(password_token=bindparam("token"),
                            password_binding=bindparam("binding")),
                    changes,
                )
            if progress is not None:
                progress(len(rows))
            if before_commit:
                before_commit(len(changes), unreadable)
        return len(changes), unreadable
