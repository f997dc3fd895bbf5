"""Where senders live: a small protocol in plain data, and its SQLAlchemy implementation.

A host can replace the store (``store=`` or the ``smtp_senders_store`` hook). Every
write is one transaction: it commits whole or not at all, and ``before_commit`` (used for
the audit trail) runs inside it, so a failing audit rolls the change back.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from .crypto import EncryptedPassword, PasswordUnreadable
from .errors import ConcurrentUpdate, SenderNotFound, StorageError
from .models import Base, SenderRow
from .transport import Security, ServerAddress, security_for_port
from .validation import SETTING_NAMES, SenderSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sender:
    """A saved sender. ``password`` is the encrypted token, redacted in repr."""

    id: int
    settings: SenderSettings
    password: EncryptedPassword = field(repr=False)
    version: int
    created_at: datetime
    updated_at: datetime
    last_test_at: datetime | None = None
    last_test_ok: bool | None = None
    is_default: bool = False

    @property
    def security(self) -> Security:
        return security_for_port(self.settings.port)

    @property
    def server(self) -> ServerAddress:
        """Where to connect, and as whom."""
        return ServerAddress(self.settings.server_name, self.settings.port,
                             self.settings.username)


BeforeCommit = Callable[[Sender], None]
Reencrypt = Callable[[EncryptedPassword], EncryptedPassword]


@runtime_checkable
class SenderStore(Protocol):
    """What the extension needs from storage."""

    def list(self) -> list[Sender]: ...

    def get(self, sender_id: int) -> Sender:
        """Raises SenderNotFound."""

    def add(self, settings: SenderSettings, password: EncryptedPassword,
            before_commit: BeforeCommit | None = None) -> Sender: ...

    def update(self, sender_id: int, expected_version: int, settings: SenderSettings,
               password: EncryptedPassword,
               before_commit: BeforeCommit | None = None) -> Sender:
        """Raises SenderNotFound, or ConcurrentUpdate when the version moved on."""

    def delete(self, sender_id: int, expected_version: int | None = None,
               before_commit: BeforeCommit | None = None) -> None: ...

    def record_test(self, sender_id: int, ok: bool, when: datetime) -> None:
        """Remember the last test result without bumping the version."""

    def set_default(self, sender_id: int,
                    before_commit: BeforeCommit | None = None) -> Sender:
        """Make this sender the default (and no other); raises SenderNotFound. The first
        sender added becomes the default; deleting the default passes it on."""

    def reencrypt(self, transform: Reencrypt,
                  before_commit: Callable[[int, int], None] | None = None, *,
                  progress: Callable[[int], None] | None = None) -> tuple[int, int]:
        """Apply ``transform`` to every token in one transaction; return (rotated,
        unreadable). ``transform`` raises PasswordUnreadable for tokens it cannot read.

        ``progress``, when given, is called now and then with the number of tokens
        processed so far (increasing, the last call being the total), so a command line
        can show a progress bar on a large table."""


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite drops the zone
        return value.replace(tzinfo=timezone.utc)
    return value


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _to_sender(row: SenderRow) -> Sender:
    return Sender(
        id=row.id,
        settings=SenderSettings(**{name: getattr(row, name) for name in SETTING_NAMES}),
        password=EncryptedPassword(row.password_token.encode("utf-8")),  # junk stays unreadable
        version=row.version,
        created_at=_utc(row.created_at),  # type: ignore[arg-type]
        updated_at=_utc(row.updated_at),  # type: ignore[arg-type]
        last_test_at=_utc(row.last_test_at),
        last_test_ok=row.last_test_ok,
        is_default=bool(row.is_default),
    )


class SQLAlchemyStore:
    """The default store, on the host's Flask-SQLAlchemy engine with sessions of its own
    (so a save never commits, or rolls back, the host's unfinished work)."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def create_tables(self) -> None:
        Base.metadata.create_all(self._db.engine)

    @contextlib.contextmanager
    def _session(self) -> Iterator[Session]:
        """A session of our own; database failures become StorageError (rolled back)."""
        try:
            with Session(self._db.engine, expire_on_commit=False) as session:
                yield session
        except StaleDataError:
            raise
        except SQLAlchemyError as exc:
            log.warning("sender store failed: %s", type(exc).__name__)
            raise StorageError("the sender database failed; nothing was changed") from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._session() as session, session.begin():
            yield session

    def list(self) -> list[Sender]:
        with self._session() as session:
            rows = session.scalars(select(SenderRow).order_by(SenderRow.id))
            return [_to_sender(row) for row in rows]

    def get(self, sender_id: int) -> Sender:
        with self._session() as session:
            row = session.get(SenderRow, sender_id)
            if row is None:
                raise SenderNotFound(f"no sender with id {sender_id}")
            return _to_sender(row)

    def add(self, settings: SenderSettings, password: EncryptedPassword,
            before_commit: BeforeCommit | None = None) -> Sender:
        now = _now()
        with self._transaction() as session:
            has_default = session.scalar(
                select(SenderRow.id).where(SenderRow.is_default.is_(True)).limit(1))
            row = SenderRow(**asdict(settings), password_token=password.token.decode("ascii"),
                            created_at=now, updated_at=now, is_default=has_default is None)
            session.add(row)
            session.flush()
            sender = _to_sender(row)
            if before_commit:
                before_commit(sender)
        return sender

    def update(self, sender_id: int, expected_version: int, settings: SenderSettings,
               password: EncryptedPassword,
               before_commit: BeforeCommit | None = None) -> Sender:
        try:
            with self._transaction() as session:
                row = session.get(SenderRow, sender_id)
                if row is None:
                    raise SenderNotFound(f"no sender with id {sender_id}")
                if row.version != expected_version:
                    raise ConcurrentUpdate(f"sender {sender_id} was changed by someone else")
                for name, value in asdict(settings).items():
                    setattr(row, name, value)
                row.password_token = password.token.decode("ascii")
                row.updated_at = _now()
                session.flush()  # UPDATE ... WHERE version = expected: races end here
                sender = _to_sender(row)
                if before_commit:
                    before_commit(sender)
        except StaleDataError:
            raise ConcurrentUpdate(f"sender {sender_id} was changed by someone else") from None
        return sender

    def delete(self, sender_id: int, expected_version: int | None = None,
               before_commit: BeforeCommit | None = None) -> None:
        with self._transaction() as session:
            row = session.get(SenderRow, sender_id)
            if row is None:
                raise SenderNotFound(f"no sender with id {sender_id}")
            sender = _to_sender(row)
            statement = delete(SenderRow).where(SenderRow.id == sender_id)
            if expected_version is not None:
                statement = statement.where(SenderRow.version == expected_version)
            deleted = session.execute(
                statement, execution_options={"synchronize_session": False}
            ).rowcount
            if deleted != 1:
                raise ConcurrentUpdate(f"sender {sender_id} was changed by someone else")
            if sender.is_default:  # pass the default on to the oldest remaining sender
                successor = session.scalar(select(SenderRow).order_by(SenderRow.id).limit(1))
                if successor is not None:
                    self._make_default(session, successor.id)
            if before_commit:
                before_commit(sender)

    def record_test(self, sender_id: int, ok: bool, when: datetime) -> None:
        table = SenderRow.__table__
        with self._transaction() as session:
            session.execute(
                update(table).where(table.c.id == sender_id)
                .values(last_test_at=when.astimezone(timezone.utc), last_test_ok=ok)
            )

    def set_default(self, sender_id: int,
                    before_commit: BeforeCommit | None = None) -> Sender:
        with self._transaction() as session:
            row = session.get(SenderRow, sender_id)
            if row is None:
                raise SenderNotFound(f"no sender with id {sender_id}")
            self._make_default(session, sender_id)
            session.refresh(row)
            sender = _to_sender(row)
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
                  progress: Callable[[int], None] | None = None) -> tuple[int, int]:
        """One SELECT, the transform in memory, one executemany, one transaction.

        The rows are written once at the end, not batch by batch, so on SQLite the write
        lock is held for the UPDATE alone and admins saving meanwhile are not locked out
        while the tokens are re-encrypted. ``progress`` hears every 100 tokens, and the
        total only once the UPDATE has run.
        """
        batch = 100
        table = SenderRow.__table__
        with self._transaction() as session:
            rows = session.execute(select(table.c.id, table.c.password_token)).all()
            changes, unreadable = [], 0
            for done, (sender_id, token) in enumerate(rows, start=1):
                try:
                    new = transform(EncryptedPassword(token.encode("utf-8")))
                except PasswordUnreadable:
                    unreadable += 1
                else:
                    changes.append({"row_id": sender_id, "old_token": token,
                                    "token": new.token.decode("ascii")})
                if progress is not None and done % batch == 0 and done < len(rows):
                    progress(done)
            if changes:
                # Compare-and-set: a password saved meanwhile is already under the first
                # key and must not be overwritten by the re-encrypted old one.
                session.execute(
                    update(table).where(table.c.id == bindparam("row_id"))
                    .where(table.c.password_token == bindparam("old_token"))
                    .values(password_token=bindparam("token")),
                    changes,
                )
            if progress is not None:
                progress(len(rows))
            if before_commit:
                before_commit(len(changes), unreadable)
        return len(changes), unreadable
