"""Where senders live: a small protocol in plain data, and its SQLAlchemy implementation.

A host can replace the store (``store=`` or the ``smtp_senders_store`` hook). Every
write is one transaction: it commits whole or not at all, and ``before_commit`` (used for
the audit trail) runs inside it, so a failing audit rolls the change back.

Beside each token a store keeps its ``binding`` (a MAC of the destination and the token,
see :mod:`.crypto`) and hands it back as ``Sender.password_binding``; a store that loses
it makes the sender unusable until its password is re-entered, never less safe.

A store may also keep each version's ``settings_fingerprint`` and the ``tested_fingerprint``
of the last successful test (``Sender.test_state`` compares them), and the last connection
check (``record_check``). These are optional: the service passes ``fingerprint=`` to
``add``/``update`` and ``version=``/``fingerprint=`` to ``record_test`` only when the
store's method accepts them, and calls ``record_check`` only when the store has it; a store
without them gets the state the last test result alone gives (see ``Sender.test_state``).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from flask import current_app, has_app_context
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from ..crypto import Destination, EncryptedPassword, PasswordUnreadable
from ..domain import Security, ServerAddress, security_for_port
from ..errors import (
    ConcurrentUpdate,
    CredentialNotBound,
    InvalidSenderData,
    SenderNotFound,
    StorageError,
    TableMissing,
)
from ..settings import DEFAULTS
from ..validation import (
    MSG_PORT,
    MSG_UNENCODABLE,
    SETTING_LABELS,
    SETTING_NAMES,
    AddressRules,
    SenderSettings,
    validate_settings,
)
from .models import SenderRow

if TYPE_CHECKING:
    from .schema import Upgrade

log = logging.getLogger(__name__)


#: The largest sender id: the id column is a 32-bit INTEGER (PostgreSQL's, and the one
#: SQLite's driver converts without overflowing).
MAX_SENDER_ID = 2**31 - 1


def _existing_id(sender_id: int) -> None:
    """An id no row can have is not found: never an overflow deep in the driver."""
    if not 1 <= sender_id <= MAX_SENDER_ID:
        raise SenderNotFound(f"no sender with id {sender_id}")


def destination(server_name: str, port: int, username: str) -> Destination:
    """What a password is bound to: the server as stored, the port, the mode the port rule
    gives it (so a port that changes STARTTLS to SMTPS is a new destination too) and the
    user it logs in as."""
    return Destination(server_name, port, security_for_port(port).value, username)


class TestState(str, enum.Enum):
    """Whether the saved settings are the ones a test email last passed with."""

    __test__ = False  # not a pytest test class

    #: No test email has passed (for any version of the settings).
    NEVER = "never"
    #: The saved settings (password included) are the ones of the last passed test.
    TESTED = "tested"
    #: A test passed, but the settings or the password were changed after it.
    CHANGED = "changed"

    @property
    def label(self) -> str:
        return _STATE_LABELS[self]


_STATE_LABELS = {TestState.NEVER: "Never tested", TestState.TESTED: "Tested",
                 TestState.CHANGED: "Changed since last test"}


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
    #: The MAC binding ``password`` (the token) to the destination it was entered for;
    #: None when the store has none (then the password is never used).
    password_binding: str | None = field(default=None, repr=False)
    #: The fingerprint of this version's settings and password (see
    #: crypto.PasswordCipher.fingerprint); None for a row saved before it existed.
    settings_fingerprint: str | None = field(default=None, repr=False)
    #: The settings_fingerprint of the version the last successful test email used.
    tested_fingerprint: str | None = field(default=None, repr=False)
    #: The last connection check (dry run): when, passed or not, and where it stopped.
    last_check_at: datetime | None = None
    last_check_ok: bool | None = None
    last_check_stage: str | None = None
    #: What is wrong with the stored settings (field name -> reason), for a row changed
    #: behind the application's back (an SQL UPDATE, a faulty tool): empty for a sender
    #: saved through the application. Such a sender is listed, marked unusable, and its
    #: Edit page opens with these reasons beside the fields (see :func:`stored_settings`).
    problems: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def usable(self) -> bool:
        """Whether the stored settings pass the rules every save applies."""
        return not self.problems

    @property
    def problem_text(self) -> str:
        """The problems in one line, each after its field's label ("" when usable)."""
        return "; ".join(f"{SETTING_LABELS.get(name, name)}: {reason}"
                         for name, reason in self.problems.items())

    @property
    def test_state(self) -> TestState:
        """TESTED when the saved settings are exactly the ones of the last successful
        test email, CHANGED when a test passed but they differ now, NEVER when no test
        passed. A sender with no fingerprint at all (saved before fingerprints existed and
        not saved since, or kept by a store without them) falls back to the last result:
        TESTED when it passed, NEVER otherwise (the rule before fingerprints)."""
        tested, saved = self.tested_fingerprint, self.settings_fingerprint
        if tested is None:
            if saved is None:
                return TestState.TESTED if self.last_test_ok else TestState.NEVER
            # A test passed that cannot be tied to this version (recorded without one,
            # or before the upgrade with an edit since): it says nothing of these settings.
            return TestState.CHANGED if self.last_test_ok else TestState.NEVER
        return TestState.TESTED if tested == saved else TestState.CHANGED

    @property
    def test_state_label(self) -> str:
        """The state as the list and the CLI show it: "No passed test" rather than "Never
        tested" once a test was tried and failed (the two read as a contradiction beside
        "Last test failed")."""
        state = self.test_state
        if state is TestState.NEVER and self.last_test_at is not None:
            return "No passed test"
        return state.label

    @property
    def destination(self) -> Destination:
        """What ``password_binding`` must match before the password is used."""
        return destination(self.settings.server_name, self.settings.port,
                           self.settings.username)

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
#: (the row's destination, its token, its stored binding, the re-encrypted token) -> the
#: binding of the new token; raises CredentialNotBound when the stored one does not verify.
Rebind = Callable[[Destination, EncryptedPassword, str | None, EncryptedPassword], str]


@runtime_checkable
class SenderStore(Protocol):
    """What the extension needs from storage."""

    def list(self) -> list[Sender]: ...

    def get(self, sender_id: int) -> Sender:
        """Raises SenderNotFound."""

    def add(self, settings: SenderSettings, password: EncryptedPassword,
            before_commit: BeforeCommit | None = None, *,
            binding: str | None = None) -> Sender:
        """Store a new sender; ``binding`` is kept with the token and returned as
        ``password_binding`` by every read. Optionally also ``fingerprint=`` (keyword),
        kept as ``settings_fingerprint``."""

    def update(self, sender_id: int, expected_version: int, settings: SenderSettings,
               password: EncryptedPassword,
               before_commit: BeforeCommit | None = None, *,
               binding: str | None = None) -> Sender:
        """Replace settings, token and binding together. Raises SenderNotFound, or
        ConcurrentUpdate when the version moved on. Optionally also ``fingerprint=``
        (keyword): the new ``settings_fingerprint``, written in the same update."""

    def delete(self, sender_id: int, expected_version: int | None = None,
               before_commit: BeforeCommit | None = None) -> None: ...

    def record_test(self, sender_id: int, ok: bool, when: datetime) -> None:
        """Remember the last test result without bumping the version.

        Optionally (keywords) ``version=``, the version the test used: then record only if
        the sender is still at that version (compare-and-set; return False otherwise), and
        when ``ok`` set ``tested_fingerprint`` to the row's ``settings_fingerprint``, or to
        ``fingerprint=`` (the service's fingerprint of the tested settings) on a row that
        has none, which then becomes its ``settings_fingerprint`` too.

        An optional ``record_check(sender_id, ok, when, stage)`` (not part of this
        protocol, so older stores still satisfy it) remembers the last connection check
        the same way, without compare-and-set and without touching the test columns."""

    def set_default(self, sender_id: int,
                    before_commit: BeforeCommit | None = None) -> Sender:
        """Make this sender the default (and no other); raises SenderNotFound. The first
        sender added becomes the default; deleting the default passes it on."""

    def reencrypt(self, transform: Reencrypt,
                  before_commit: Callable[[int, int], None] | None = None, *,
                  progress: Callable[[int], None] | None = None,
                  rebind: Rebind | None = None) -> tuple[int, int]:
        """Apply ``transform`` to every token in one transaction; return (rotated,
        unreadable). ``transform`` raises PasswordUnreadable for tokens it cannot read.

        ``rebind``, when given, is called after ``transform`` with each row's destination,
        old token, stored binding and new token; the binding it returns is written with
        the new token, in the same write. When it raises CredentialNotBound (a
        PasswordUnreadable) the row is left as it was and counted unreadable. Without it,
        bindings are kept as they are.

        ``progress``, when given, is called now and then with the number of tokens
        processed so far (increasing, the last call being the total), so a command line
        can show a progress bar on a large table."""


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite drops the zone
        return value.replace(tzinfo=timezone.utc)
    return value


def _now() -> datetime:
    return datetime.now(timezone.utc)


#: The address rules a stored row is checked with: the widest, since the app's own rules
#: (SMTPUTF8, internal domains) are applied when it sends, naming the setting.
_STORED_RULES = AddressRules(smtputf8=True, internal_domains=True)
MSG_NOT_TEXT = "The stored value is not text."


def stored_settings(values: Mapping[str, object]) -> tuple[SenderSettings, dict[str, str]]:
    """Settings as read from storage, and what is wrong with them (field -> reason).

    A row changed behind the application's back may hold anything its column type lets
    the database keep (SQLite keeps text in an INTEGER column): a port that is no integer
    becomes 0 and a value that is no text "", so every page, the API and the CLI can show
    the sender; the reasons come from the checks every save runs (``validate_settings``).
    """
    settings, problems = _checked_settings(tuple((name, values.get(name))
                                                 for name in SETTING_NAMES))
    return settings, dict(problems)


@functools.lru_cache(maxsize=1024)
def _checked_settings(values: tuple[tuple[str, object], ...]
                      ) -> tuple[SenderSettings, tuple[tuple[str, str], ...]]:
    """Cached: the sending API reads its sender once per call."""
    clean: dict[str, object] = {}
    problems: dict[str, str] = {}
    for name, value in values:
        if name == "port":
            good = isinstance(value, int) and not isinstance(value, bool)
            clean[name] = value if good else 0
            if not good:
                problems[name] = MSG_PORT
        elif isinstance(value, str) or value is None:
            clean[name] = value or ""  # NULL: empty, which the checks judge
        else:
            clean[name] = ""
            problems[name] = MSG_NOT_TEXT
    try:
        validate_settings(**clean, rules=_STORED_RULES)  # type: ignore[arg-type]
    except InvalidSenderData as exc:
        problems = exc.errors | problems  # the type problem says more than the value check
    except Exception as exc:  # never a page down for a row: say so, and show it
        log.warning("stored sender settings could not be checked: %s", type(exc).__name__)
        problems = {"username": MSG_UNENCODABLE} | problems
    return SenderSettings(**clean), tuple(problems.items())  # type: ignore[arg-type]


def _to_sender(row: SenderRow) -> Sender:
    settings, problems = stored_settings({name: getattr(row, name) for name in SETTING_NAMES})
    if problems:
        log.warning("sender %s: its stored settings are invalid (%s); it is unusable until "
                    "edited", row.id, ", ".join(problems))
    return Sender(
        id=row.id,
        settings=settings,
        problems=problems,
        password=EncryptedPassword(row.password_token.encode("utf-8")),  # junk stays unreadable
        password_binding=row.password_binding,
        version=row.version,
        created_at=_utc(row.created_at),  # type: ignore[arg-type]
        updated_at=_utc(row.updated_at),  # type: ignore[arg-type]
        last_test_at=_utc(row.last_test_at),
        last_test_ok=row.last_test_ok,
        is_default=bool(row.is_default),
        settings_fingerprint=row.settings_fingerprint,
        tested_fingerprint=row.tested_fingerprint,
        last_check_at=_utc(row.last_check_at),
        last_check_ok=row.last_check_ok,
        last_check_stage=row.last_check_stage,
    )


#: SQLSTATE of PostgreSQL's "relation ... does not exist" (psycopg's UndefinedTable).
_UNDEFINED_TABLE = "42P01"


def _table_missing(exc: SQLAlchemyError) -> bool:
    """Whether the database said our table does not exist: SQLite's "no such table:
    smtp_senders", PostgreSQL's UndefinedTable (SQLSTATE 42P01, 'relation "smtp_senders"
    does not exist'). Another table's absence (a host's, in a hook) is not ours to explain."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    text = str(orig).lower()
    names_ours = re.search(rf"\b{SenderRow.__tablename__}\b", text) is not None
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code == _UNDEFINED_TABLE or type(orig).__name__ == "UndefinedTable":
        return names_ours
    return "no such table" in text and names_ours


def _table_missing_message() -> str:
    """SMTP_SENDERS_MSG_TABLE_MISSING of the current app (the default outside one)."""
    config = current_app.config if has_app_context() else {}
    key = "SMTP_SENDERS_MSG_TABLE_MISSING"
    return str(config.get(key) or DEFAULTS[key])


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
        try:
            with Session(self._db.engine, expire_on_commit=False) as session:
                yield session
        except StaleDataError:
            raise
        except SQLAlchemyError as exc:
            if _table_missing(exc):
                log.warning("sender store failed: the %s table does not exist",
                            SenderRow.__tablename__)
                raise TableMissing(_table_missing_message()) from None
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
        _existing_id(sender_id)
        with self._session() as session:
            row = session.get(SenderRow, sender_id)
            if row is None:
                raise SenderNotFound(f"no sender with id {sender_id}")
            return _to_sender(row)

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
            sender = _to_sender(row)
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
                row = session.get(SenderRow, sender_id)
                if row is None:
                    raise SenderNotFound(f"no sender with id {sender_id}")
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
                sender = _to_sender(row)
                if before_commit:
                    before_commit(sender)
        except StaleDataError:
            raise ConcurrentUpdate(f"sender {sender_id} was changed by someone else") from None
        return sender

    def delete(self, sender_id: int, expected_version: int | None = None,
               before_commit: BeforeCommit | None = None) -> None:
        _existing_id(sender_id)
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
                table.c.server_name, table.c.port, table.c.username)).all()
            changes, unreadable = [], 0
            for done, (sender_id, token, binding, server_name, port, username) in enumerate(
                    rows, start=1):
                old = EncryptedPassword(token.encode("utf-8"))
                try:
                    new = transform(old)
                    if rebind is not None:
                        binding = rebind(destination(server_name, port, username), old,
                                         binding, new)
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
