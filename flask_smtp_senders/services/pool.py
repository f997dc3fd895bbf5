"""What the sending API keeps between calls: each sender's route and its open connections.

A route is one version of a sender with its credential (its password decrypted once, or
an OAuth2 access token, renewed before it expires); connections are
pooled per route (sender id and version), so an edit or a delete closes the old ones and
the next message uses the new settings. The sender is read again at each call (another
process may have edited it); its password is decrypted again only when the row changed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..addresses import AddressRules
from ..errors import DeliveryError, InvalidSenderData, PasswordUnreadable, SenderNotFound
from ..mail.headers import SenderHeaders
from ..sealed import AccessToken, Credential
from ..smtp import transport
from ..storage.base import Sender
from .tokens import REFRESH_MARGIN


@dataclass(frozen=True)
class Route:
    """One version of a sender, with its password decrypted once (or its access token)."""

    sender: Sender
    secret: Credential = field(repr=False)
    headers: SenderHeaders = field(init=False, repr=False, compare=False)

    rules: AddressRules = field(default=AddressRules(), repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", SenderHeaders(self.sender.settings, self.rules))

    @property
    def key(self) -> tuple[int, int]:
        return self.sender.id, self.sender.version

    def serves(self, sender: Sender) -> bool:
        """Whether this route is still ``sender`` as stored: the same version, and the same
        settings, token and binding (a row edited in SQL keeps its version)."""
        mine = self.sender
        return (mine.version == sender.version and mine.settings == sender.settings
                and mine.password == sender.password
                and mine.password_binding == sender.password_binding
                and not self.token_expiring())

    def token_expiring(self) -> bool:
        """An access token about to expire: the next connection needs a new one."""
        expires_at = self.secret.expires_at if isinstance(self.secret, AccessToken) else None
        return expires_at is not None and expires_at - time.time() < REFRESH_MARGIN


class ConnectionPool:
    """Open connections per sender version, reused across calls and threads."""

    def __init__(self, options: transport.TransportOptions, idle_timeout: float) -> None:
        self._options = options
        self._idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._idle: dict[tuple[int, int], list[tuple[transport.Connection, float]]] = {}
        self._current: dict[int, int] = {}  # sender id -> the version still wanted

    def acquire(self, route: Route, *,
                fresh: bool = False) -> tuple[transport.Connection, bool]:
        """An idle connection if one is fresh enough (reused=True), else a new one;
        ``fresh`` skips the idle ones (after a reused one turned out dead)."""
        stale: list[transport.Connection] = []
        found = None
        with self._lock:
            self._current[route.sender.id] = route.sender.version
            stack = self._idle.get(route.key, [])
            now = time.monotonic()
            while stack and found is None and not fresh:
                connection, since = stack.pop()
                if connection.usable and now - since < self._idle_timeout:
                    found = connection
                else:
                    stale.append(connection)
        if found is not None and found.closed_by_server():  # hung up while idle
            stale.append(found)
            found = None
        for connection in stale:
            connection.close()
        if found is not None:
            return found, True
        return transport.connect(route.sender.server, route.secret, self._options), False

    def release(self, route: Route, connection: transport.Connection) -> None:
        """Keep a healthy connection of the current version; close anything else."""
        with self._lock:
            if connection.usable and self._current.get(route.sender.id) == route.sender.version:
                self._idle.setdefault(route.key, []).append((connection, time.monotonic()))
                return
        connection.close()

    def forget(self, sender_id: int | None) -> None:
        """The sender (None: every sender) changed or went away: close its idle
        connections now, and the busy ones when they come back."""
        with self._lock:
            if sender_id is None:
                self._current.clear()
                keys = list(self._idle)
            else:
                self._current.pop(sender_id, None)
                keys = [key for key in self._idle if key[0] == sender_id]
            closing = [conn for key in keys for conn, _ in self._idle.pop(key)]
        for connection in closing:
            connection.close()

    def close(self) -> None:
        """Close every idle connection (busy ones stay with their batch)."""
        with self._lock:
            closing = [conn for stack in self._idle.values() for conn, _ in stack]
            self._idle.clear()
        for connection in closing:
            connection.close()

    def idle_count(self) -> int:
        """How many open connections wait in the pool."""
        with self._lock:
            return sum(len(stack) for stack in self._idle.values())


class RouteCache:
    """Each sender's current route, for one Mailer: decrypting a password is done once per
    version, not once per message, and a deleted sender is remembered as gone so the rest
    of a batch fails fast."""

    def __init__(self, pool: ConnectionPool, get_sender: Callable[[int], Sender],
                 credential_for: Callable[[Sender], Credential], rules: AddressRules,
                 drop_token: Callable[[Sender], None] = lambda sender: None) -> None:
        self._pool = pool
        self._get_sender = get_sender
        self._credential_for = credential_for
        self._drop_token = drop_token
        self._rules = rules
        self._lock = threading.Lock()
        self._routes: dict[int, Route] = {}
        self._gone: set[int] = set()

    def refresh(self, sender_id: int) -> Route:
        """Read the sender (another process may have edited it) and decrypt its password
        only when it changed; a password not bound to the sender's current destination is
        refused (CredentialNotBound) and the old route dropped. Raises SenderNotFound,
        PasswordUnreadable, or InvalidSenderData for a saved address the app's address
        rules now refuse."""
        sender = self._get_sender(sender_id)
        with self._lock:
            self._gone.discard(sender_id)
            cached = self._routes.get(sender_id)
            if cached is not None and cached.serves(sender):
                return cached
        try:
            secret = self._credential_for(sender)
        except (PasswordUnreadable, DeliveryError):  # unreadable, or no token to be had
            with self._lock:
                self._routes.pop(sender_id, None)
            self._pool.forget(sender_id)
            raise
        try:
            route = Route(sender, secret, self._rules)
        except ValueError as exc:
            raise InvalidSenderData({"from_address": str(exc)}) from None
        if cached is not None:
            self._pool.forget(sender_id)
        with self._lock:
            self._routes[sender_id] = route
        return route

    def renew_token(self, sender_id: int) -> Route:
        """After a server refused the route's access token: forget it (here and in the
        token cache) and read the sender again, which fetches a new one."""
        with self._lock:
            route = self._routes.pop(sender_id, None)
        if route is not None:
            self._drop_token(route.sender)
        return self.refresh(sender_id)

    def route(self, sender_id: int) -> Route:
        """The cached route (the sender is not read again: one call, one version unless
        an edit lands); raises SenderNotFound once the sender was deleted."""
        with self._lock:
            if sender_id in self._gone:
                raise SenderNotFound(f"sender {sender_id} was deleted")
            route = self._routes.get(sender_id)
        if route is not None:
            return route
        try:
            return self.refresh(sender_id)
        except SenderNotFound:
            with self._lock:
                self._gone.add(sender_id)
            raise

    def forget(self, sender_id: int | None, *, deleted: bool = False) -> None:
        """Drop the sender's route (None: every route, as after a key rotation) and close
        its pooled connections; ``deleted`` fails its messages still in flight."""
        with self._lock:
            if sender_id is None:
                self._routes.clear()
            else:
                self._routes.pop(sender_id, None)
                if deleted:
                    self._gone.add(sender_id)
        self._pool.forget(sender_id)
