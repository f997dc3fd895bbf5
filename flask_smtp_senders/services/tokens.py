"""Access tokens for OAuth2 senders: fetched when needed, cached per sender version,
shared by every worker, refreshed before they expire, dropped when a server refuses one.

Why a cache: a token lasts about an hour and a token request costs an HTTPS exchange with
the provider (and counts against its limits), while a batch may open many connections a
minute. The built-in store keeps tokens in its ``smtp_sender_tokens`` table, encrypted
with the senders' keys (:class:`~flask_smtp_senders.storage.base.TokenCache`); a store
without one gets a cache in this process. Within a process one fetch per sender version
runs at a time: parallel connections wait for it instead of asking too.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography.fernet import InvalidToken

from ..crypto import PasswordCipher
from ..errors import PasswordUnreadable, StorageError
from ..oauth import EndpointOptions, IssuedToken, fetch_token
from ..sealed import AccessToken, Secret
from ..settings import Settings
from ..smtp.options import TransportOptions
from ..storage.base import Sender, SenderStore, TokenCache
from .providers import TokenEndpoints, grant_for

log = logging.getLogger(__name__)

#: A cached token is renewed this long before it expires (Microsoft and Google tokens
#: last about an hour; a batch must not start with one that dies under it).
REFRESH_MARGIN = 300.0


def version_key(sender: Sender) -> str:
    """The cache key of one saved version: the id and version, and a digest of the
    binding (a MAC over the encrypted secret, new with every save), so a recreated sender
    that reuses an id never meets the old one's token."""
    digest = hashlib.sha256((sender.password_binding or "").encode()).hexdigest()[:32]
    return f"{sender.id}-{sender.version}-{digest}"


@dataclass
class _Held:
    token: AccessToken
    expires_at: float


class TokenSource:
    """Hands out a valid access token for an OAuth2 sender."""

    def __init__(self, store: SenderStore, cipher: PasswordCipher,
                 options: Callable[[], EndpointOptions], endpoints: TokenEndpoints,
                 clock: Callable[[], float] = time.time) -> None:
        self._shared = store if isinstance(store, TokenCache) else None
        self._cipher = cipher
        self._options = options
        self.endpoints = endpoints
        self._clock = clock
        self._lock = threading.Lock()
        self._local: dict[str, _Held] = {}
        self._fetching: dict[str, threading.Lock] = {}

    @classmethod
    def for_app(cls, store: SenderStore, cipher: PasswordCipher,
                options: TransportOptions, settings: Settings) -> TokenSource:
        """The app's source: a token endpoint is reached as a mail server is, with the
        same CA store, deadline, resolver and destination rule (the host's hook too)."""
        endpoint = EndpointOptions(ssl_context=options.ssl_context, deadline=options.deadline,
                                   operation_timeout=options.operation_timeout,
                                   resolver=options.resolver,
                                   destination_allowed=options.destination_allowed)
        return cls(store, cipher, lambda: endpoint,
                   TokenEndpoints(settings.microsoft_authority, settings.google_token_url))

    def token_for(self, sender: Sender, secret: Secret, *, fresh: bool = False) -> AccessToken:
        """A token with at least REFRESH_MARGIN left: the cached one, or a new one from
        the provider (``fresh``: always a new one, as after a server refused the cached
        one). Raises TokenError when the provider gives none."""
        key = version_key(sender)
        with self._lock:
            gate = self._fetching.setdefault(key, threading.Lock())
        with gate:  # one fetch per version at a time; the others find its token
            if not fresh:
                held = self._cached(key)
                if held is not None:
                    return held
            issued = fetch_token(grant_for(sender.settings, secret, self.endpoints),
                                 self._options(), now=self._clock)
            self._keep(key, sender.id, issued)
            return AccessToken(issued.token.reveal(), expires_at=issued.expires_at)

    def drop(self, sender: Sender) -> None:
        """Forget the sender's token (a server refused it)."""
        key = version_key(sender)
        with self._lock:
            self._local.pop(key, None)
        if self._shared is not None:
            try:
                self._shared.drop_token(key)
            except StorageError:
                log.warning("sender %s: its refused access token could not be dropped "
                            "from the shared cache", sender.id)

    def _usable(self, expires_at: float) -> bool:
        return expires_at - self._clock() > REFRESH_MARGIN

    def _cached(self, key: str) -> AccessToken | None:
        with self._lock:
            held = self._local.get(key)
        if held is not None and self._usable(held.expires_at):
            return held.token
        if self._shared is None:
            return None
        try:
            found = self._shared.load_token(key)
        except StorageError:  # the cache is an optimisation: ask the provider instead
            log.warning("the shared access-token cache could not be read")
            return None
        if found is None:
            return None
        encrypted, expires = found
        expires_at = expires.timestamp()
        if not self._usable(expires_at):
            return None
        try:
            value = self._cipher.decrypt(encrypted).reveal()
        except (PasswordUnreadable, InvalidToken, ValueError):  # keys rotated since
            return None
        token = AccessToken(value, expires_at=expires_at)
        with self._lock:
            self._local[key] = _Held(token, expires_at)
        return token

    def _keep(self, key: str, sender_id: int, issued: IssuedToken) -> None:
        token = AccessToken(issued.token.reveal(), expires_at=issued.expires_at)
        with self._lock:
            self._local = {k: v for k, v in self._local.items()
                           if self._usable(v.expires_at)}
            self._local[key] = _Held(token, issued.expires_at)
        if self._shared is None:
            return
        try:
            self._shared.save_token(
                key, sender_id, self._cipher.encrypt(issued.token.reveal()),
                datetime.fromtimestamp(issued.expires_at, timezone.utc))
        except StorageError:
            log.warning("sender %s: the access token could not be kept in the shared "
                        "cache; other workers fetch their own", sender_id)
