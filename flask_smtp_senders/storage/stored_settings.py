"""Settings as read back from storage, and what is wrong with them.

A row changed behind the application's back may hold anything its column type lets the
database keep; every page, the API and the CLI must still be able to show the sender
(:func:`to_sender` reads one), marked unusable with the reasons every save's checks give.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from datetime import datetime, timezone

from ..addresses import AddressRules
from ..errors import InvalidSenderData
from ..sealed import EncryptedPassword
from ..text_checks import MSG_UNENCODABLE
from ..validation import MSG_PORT, SETTING_NAMES, SenderSettings, validate_settings
from .base import Sender
from .models import SenderRow

log = logging.getLogger(__name__)

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


def utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite drops the zone
        return value.replace(tzinfo=timezone.utc)
    return value


def to_sender(row: SenderRow) -> Sender:
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
        created_at=utc(row.created_at),  # type: ignore[arg-type]
        updated_at=utc(row.updated_at),  # type: ignore[arg-type]
        last_test_at=utc(row.last_test_at),
        last_test_ok=row.last_test_ok,
        is_default=bool(row.is_default),
        settings_fingerprint=row.settings_fingerprint,
        tested_fingerprint=row.tested_fingerprint,
        last_check_at=utc(row.last_check_at),
        last_check_ok=row.last_check_ok,
        last_check_stage=row.last_check_stage,
    )
