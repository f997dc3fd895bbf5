"""Settings as read back from storage, and what is wrong with them.

A row changed behind the application's back may hold anything its column type lets the
database keep; every page, the API and the CLI must still be able to show the sender,
marked unusable with the reasons the checks of every save give.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping

from ..addresses import AddressRules
from ..errors import InvalidSenderData
from ..text_checks import MSG_UNENCODABLE
from ..validation import MSG_PORT, SETTING_NAMES, SenderSettings, validate_settings

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
