"""Case C7: a rate limit on Send Test Email, per administrator and per sender; and
Case G5: a rate limit on saves (create, edit, delete, make default) per administrator.

Why: the test button makes the portal open SMTP connections to a server the administrator
chose, so without a limit it is a mail cannon and a port-scan oracle (ASVS 11.1.4). The
``limits`` library does the counting, in a moving window: in memory for one process, or in
Redis so that every worker of the portal shares one limit (case F5). A storage that cannot
be reached refuses the send (fail closed) rather than letting it through uncounted.

This module counts; :mod:`.guard` turns a count into the refusal the user is told.
"""

from __future__ import annotations

import importlib
import logging
import math
import time
from typing import Any
from urllib.parse import quote, urlparse

from flask import Flask, current_app, request
from limits import RateLimitItem, parse_many
from limits.errors import ConfigurationError as LimitsConfigurationError
from limits.errors import StorageError as LimitsStorageError
from limits.storage import SCHEMES, MovingWindowSupport, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from ..errors import ConfigurationError, SMTPSendersError
from ..settings import Settings
from ..state import get_service

log = logging.getLogger(__name__)

LIMIT_SETTING = "SMTP_SENDERS_TEST_EMAIL_RATE_LIMIT"
#: Case G5: saves (create, edit, delete, make default) per administrator.
WRITE_LIMIT_SETTING = "SMTP_SENDERS_WRITE_RATE_LIMIT"
STORAGE_SETTING = "SMTP_SENDERS_RATELIMIT_STORAGE_URI"
#: Seconds a Redis connect or command may take: a Redis that hangs must not hold a worker.
#: A ``socket_timeout=`` or ``socket_connect_timeout=`` in the URL's query wins.
REDIS_TIMEOUT = 2.0
_REDIS_SCHEMES = frozenset({"redis", "rediss", "redis+unix", "valkey", "valkeys", "valkey+unix"})
#: The extra of this package that installs a client library (``redis`` is not a dependency:
#: ``pip install 'flask-smtp-senders[redis]'`` brings ``limits[redis]``).
_EXTRAS = {"redis": "redis", "valkey": "valkey"}


class RateLimitUnavailable(SMTPSendersError):
    """The counters cannot be read or written (Redis down): the send is refused."""


def parse_limit(value: Any, setting: str = LIMIT_SETTING) -> list[RateLimitItem]:
    """Every limit of the setting ("5 per minute", or several joined by ";"): all must allow."""
    try:
        items = parse_many(value)
    except ValueError:
        items = []
    if not items or any(item.amount < 1 for item in items):
        raise ConfigurationError(
            f"{setting} must be a rate limit in `limits` notation, such as "
            f"'5 per minute', allowing at least one request; got {value!r}."
        )
    return items


def _storage_class(uri: Any) -> type[Storage]:
    """The storage class for the URI, checked without connecting (for init_app)."""
    scheme = urlparse(uri).scheme if isinstance(uri, str) else ""
    cls = SCHEMES.get(scheme)
    if cls is None or not issubclass(cls, Storage) or not issubclass(cls, MovingWindowSupport):
        # The URI itself may hold a Redis password: name only its scheme.
        raise ConfigurationError(
            f"{STORAGE_SETTING} must be 'memory://' or a Redis URL such as "
            f"'redis://127.0.0.1:6379/0' (or another `limits` storage with a moving "
            f"window); the scheme {scheme!r} is none of them."
        )
    return cls


def make_storage(uri: str) -> Storage:
    """A ``limits`` storage that raises ``limits.errors.StorageError`` when it fails."""
    _storage_class(uri)
    options: dict[str, Any] = {"wrap_exceptions": True}
    if urlparse(uri).scheme in _REDIS_SCHEMES:
        options.update(socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
    try:
        return storage_from_string(uri, **options)
    except LimitsConfigurationError:  # its text may quote the URI, password and all
        library = _client_library(urlparse(uri).scheme)
        hint = _install_hint(library) if library else "install the one its scheme needs."
        raise ConfigurationError(
            f"{STORAGE_SETTING} names a storage whose client library is missing or too "
            f"old: {hint}"
        ) from None


def _client_library(scheme: str) -> str | None:
    """The module a storage scheme's ``limits`` class imports when it is built: ``redis``
    for every ``redis*`` URL, ``valkey`` for ``valkey*``, ``pymongo`` for MongoDB."""
    for prefix, module in (("redis", "redis"), ("valkey", "valkey"), ("mongodb", "pymongo")):
        if scheme.startswith(prefix):
            return module
    return None


def _install_hint(library: str) -> str:
    extra = _EXTRAS.get(library)
    if extra:
        return f"pip install 'flask-smtp-senders[{extra}]' (the `{extra}` extra)."
    return f"pip install {library}."


def _check_client_library(uri: str) -> None:
    """``limits`` imports a storage's client only when the storage is built, at the first
    counted request, and then says just "'redis' prerequisite not available": check at
    init_app instead, naming the extra that installs it (never the URI: it may hold a
    password)."""
    scheme = urlparse(uri).scheme
    library = _client_library(scheme)
    if library is None:
        return
    try:
        importlib.import_module(library)
    except ImportError:
        raise ConfigurationError(
            f"{STORAGE_SETTING} is a {scheme}:// URL but the {library} client library is "
            f"not installed: {_install_hint(library)}"
        ) from None


def validate_config(settings: Settings) -> None:
    """Fail at init_app, naming the setting, instead of at the first test email."""
    parse_limit(settings.test_email_rate_limit)
    parse_limit(settings.write_rate_limit, WRITE_LIMIT_SETTING)
    _storage_class(settings.ratelimit_storage_uri)
    _check_client_library(settings.ratelimit_storage_uri)


class TestEmailLimiter:
    """Counts Send Test Email per administrator and per sender, in one storage.

    Every key holds ``key_prefix`` (built from the app's name), so two apps share counters
    only when they share both the storage and the prefix: the workers of one portal do.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, limit: str, storage_uri: str, key_prefix: str,
                 setting: str = LIMIT_SETTING) -> None:
        self.items = parse_limit(limit, setting)
        self.storage = make_storage(storage_uri)
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.key_prefix = key_prefix
        self._where = _describe(storage_uri)

    def check(self, actor: str, sender_id: int) -> int | None:
        """Count one test email by ``actor`` on ``sender_id`` and return None, or return
        the seconds to wait when a limit is reached (then nothing is counted).

        Raises :class:`RateLimitUnavailable` when the storage fails.
        """
        return self.count([(self.key_prefix, "admin", quote(actor, safe="")),
                           (self.key_prefix, "sender", str(sender_id))])

    def count(self, keys: list[tuple[str, ...]]) -> int | None:
        """Count one request on every key: None, or the seconds to wait when a limit of
        any key is reached (then nothing is counted). Raises RateLimitUnavailable."""
        checks = [(item, key) for item in self.items for key in keys]
        try:
            # test() first, so a request refused by one limit uses up none of the others;
            # hit() is atomic, so concurrent workers cannot both take the last place.
            blocked = [(item, key) for item, key in checks if not self.strategy.test(item, *key)]
            if not blocked:
                for item, key in checks:
                    if not self.strategy.hit(item, *key):
                        blocked = [(item, key)]  # lost a race: the earlier hits stay counted
                        break
                else:
                    return None
            reset = max(self.strategy.get_window_stats(item, *key).reset_time
                        for item, key in blocked)
        except LimitsStorageError as exc:
            log.error("rate-limit storage %s failed (%s); refusing the request",
                      self._where, type(exc.storage_error).__name__)
            raise RateLimitUnavailable("the rate-limit storage cannot be reached") from None
        return max(1, math.ceil(reset - time.time()))


def _describe(uri: str) -> str:
    """The storage URI without its credentials, for the log."""
    parts = urlparse(uri)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path}"


def limiter_for(app: Flask, setting: str = LIMIT_SETTING) -> TestEmailLimiter:
    """The app's limiter for ``setting`` (test emails, or writes), built at first use
    (after any fork of the workers) and kept in the app's one state object."""
    service = get_service(app)
    limiter = service.extras.get(setting)
    if limiter is None:
        with service.extras_lock:
            limiter = service.extras.get(setting)
            if limiter is None:
                prefix = f"flask_smtp_senders:{app.name}"
                if setting != LIMIT_SETTING:
                    prefix += ":writes"
                settings = service.settings
                limit = (settings.test_email_rate_limit if setting == LIMIT_SETTING
                         else settings.write_rate_limit)
                limiter = TestEmailLimiter(limit, settings.ratelimit_storage_uri, prefix,
                                           setting)
                service.extras[setting] = limiter
    return limiter


def check_test_email(sender_id: int) -> int | None:
    """:meth:`TestEmailLimiter.check` for the current request's administrator.

    The administrator is the ``smtp_senders_actor`` hook's answer, or the client's address
    when the host gives none (behind a proxy, install ``ProxyFix`` so that it is the
    client's and not the proxy's).
    """
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return limiter_for(app).check(_administrator(app), sender_id)


def check_write() -> int | None:
    """Case G5: count one change (create, edit, delete, make default) by the current
    request's administrator: None, or the seconds to wait when the write limit is reached.
    A bound on how fast anyone can try things through the save buttons, guessed passwords
    included. Raises :class:`RateLimitUnavailable` when the storage fails."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    limiter = limiter_for(app, WRITE_LIMIT_SETTING)
    return limiter.count([(limiter.key_prefix, "admin", quote(_administrator(app), safe=""))])


def _administrator(app: Flask) -> str:
    """Who the counters count: the ``smtp_senders_actor`` hook's answer, else the client's
    address."""
    actor = app.extensions["smtp_senders"].hooks.smtp_senders_actor()
    return f"actor:{actor}" if actor else f"address:{request.remote_addr or 'unknown'}"
