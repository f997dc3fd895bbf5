"""Database failures as the extension's errors: the store's callers never see a driver.

A missing sender table becomes TableMissing, whose message says which command creates it;
any other failure becomes StorageError, after the transaction was rolled back.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

from flask import current_app, has_app_context
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm.exc import StaleDataError

from ..errors import StorageError, TableMissing
from ..settings import DEFAULTS
from .models import SenderRow

log = logging.getLogger(__name__)

#: SQLSTATE of PostgreSQL's "relation ... does not exist" (psycopg's UndefinedTable).
_UNDEFINED_TABLE = "42P01"


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """Turn what SQLAlchemy raises inside into TableMissing or StorageError (from None:
    no driver text reaches a page); StaleDataError passes, for the caller's version
    check."""
    try:
        yield
    except StaleDataError:
        raise
    except SQLAlchemyError as exc:
        if table_missing(exc):
            log.warning("sender store failed: the %s table does not exist",
                        SenderRow.__tablename__)
            raise TableMissing(_table_missing_message()) from None
        log.warning("sender store failed: %s", type(exc).__name__)
        raise StorageError("the sender database failed; nothing was changed") from None


def table_missing(exc: SQLAlchemyError) -> bool:
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
