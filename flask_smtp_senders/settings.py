"""Every ``SMTP_SENDERS_*`` setting with its default (``#:`` comments say what each does),
and :class:`Settings`: the behaviour settings parsed once, when ``init_app`` runs.

The user-facing texts (``SMTP_SENDERS_MSG_*``, ``SMTP_SENDERS_ADVICE_*``) live in
:mod:`flask_smtp_senders.texts`; ``DEFAULTS`` holds both. ``docs/configuration.md``
documents each key (a test checks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError
from .texts import TEXTS

BEHAVIOUR: dict[str, Any] = {
    #: Fernet keys, newest first: a list or a comma-separated string. Required.
    #: The first key encrypts; every key decrypts (rotation).
    "SMTP_SENDERS_ENCRYPTION_KEYS": None,
    #: A file holding the keys instead (one per line, newest first), used when
    #: SMTP_SENDERS_ENCRYPTION_KEYS is not set: keeps keys apart from the configuration.
    "SMTP_SENDERS_ENCRYPTION_KEYS_FILE": None,
    #: A PEM bundle of CA certificates to trust instead of the system store.
    "SMTP_SENDERS_CA_FILE": None,
    #: Seconds one network operation (connect, one read, one write) may take.
    "SMTP_SENDERS_OPERATION_TIMEOUT": 5.0,
    #: Seconds one exchange with the server may take, however the time is spent: Send
    #: Test Email's or the check's whole session; in send/send_many, each message from
    #: its turn to the server's final reply, the connect it needs included.
    "SMTP_SENDERS_TIMEOUT": 15.0,
    #: The name we give in EHLO; None means this machine's host name.
    "SMTP_SENDERS_EHLO_NAME": None,
    #: Bring the sender table to the current schema on ``init_app`` (create it, or run
    #: the shipped migrations; the same as ``flask smtp-senders upgrade``). Off by
    #: default: start-up runs no DDL, and the table comes from ``flask smtp-senders
    #: upgrade`` (or the host's migrations) in a deploy step.
    "SMTP_SENDERS_CREATE_TABLES": False,
    #: Let senders connect to loopback addresses (127.0.0.0/8, ::1): on for local demos
    #: and tests only, or the test button reaches services on the portal's own machine.
    "SMTP_SENDERS_ALLOW_LOOPBACK": False,
    #: Let senders connect to private addresses (10/8, 172.16/12, 192.168/16, fc00::/7,
    #: 100.64/10): an organisation's own mail server often lives there.
    "SMTP_SENDERS_ALLOW_PRIVATE": True,
    #: Further networks (CIDR strings) senders may never connect to.
    "SMTP_SENDERS_DENIED_NETWORKS": [],
    #: Accept addresses with a non-ASCII local part (RFC 6531), in From Address, Reply-To
    #: Address and the test recipient. Off by default: such mail needs SMTPUTF8 from every
    #: server on its way, and many do not offer it.
    "SMTP_SENDERS_SMTPUTF8": False,
    #: Accept addresses in on-premises domains (.local, .internal, .lan, .test,
    #: .localdomain, .home.arpa, .corp, .home, single labels such as "relay"). Off by
    #: default: such a domain means nothing outside its network, so it is usually a typo
    #: or a From Address receivers cannot check.
    "SMTP_SENDERS_ALLOW_INTERNAL_DOMAINS": False,
    #: How many test emails one administrator may send, and one sender may receive
    #: requests for, in a window (``limits`` notation, e.g. "5 per minute").
    "SMTP_SENDERS_TEST_EMAIL_RATE_LIMIT": "5 per minute",
    #: How many changes (create, edit, delete, make default) one administrator may save
    #: through the pages and the API in a window: saves are how guesses would be tried.
    "SMTP_SENDERS_WRITE_RATE_LIMIT": "30 per minute",
    #: Where the rate-limit counters live: "memory://" (one process) or a Redis URL such
    #: as "redis://127.0.0.1:6379/0" (shared by every worker).
    "SMTP_SENDERS_RATELIMIT_STORAGE_URI": "memory://",
    #: Parallel connections ``send_many`` may open to one sender's server.
    "SMTP_SENDERS_MAX_CONNECTIONS": 4,
    #: Seconds an unused pooled connection is kept open (servers drop idle ones).
    "SMTP_SENDERS_POOL_IDLE_TIMEOUT": 30.0,
    #: How many times a message refused with a temporary (4xx) reply is tried again.
    "SMTP_SENDERS_SEND_RETRIES": 2,
    #: Seconds before the first retry; each further retry waits twice as long.
    "SMTP_SENDERS_RETRY_BACKOFF": 0.5,
    #: Celery retries of a queued message refused with a temporary (4xx) reply.
    "SMTP_SENDERS_CELERY_MAX_RETRIES": 3,
    #: Seconds before the first Celery retry; each further retry waits twice as long.
    "SMTP_SENDERS_CELERY_RETRY_DELAY": 60.0,
    #: Look up the From domain's SPF and DMARC records on save and in the test
    #: diagnostics, and show what they say as advice.
    "SMTP_SENDERS_DOMAIN_ADVICE": True,
    #: DNS servers (IP addresses) for those lookups; None means the system's resolvers.
    "SMTP_SENDERS_DNS_NAMESERVERS": None,
    #: Port of those DNS servers.
    "SMTP_SENDERS_DNS_PORT": 53,
    #: Seconds both lookups together may take; advice is skipped when they take longer.
    "SMTP_SENDERS_DNS_TIMEOUT": 2.0,
    #: Where the Senders pages are mounted.
    "SMTP_SENDERS_URL_PREFIX": "/settings/senders",
    #: Register the Senders pages on ``init_app`` (turn off for an API-only host).
    "SMTP_SENDERS_REGISTER_BLUEPRINT": True,
    #: Serve the JSON API (and its OpenAPI document) under ``{URL_PREFIX}/api``; every
    #: call is authorised by the ``smtp_senders_authorize`` hook, as the pages are.
    "SMTP_SENDERS_API": True,
    #: Load plugins published under the ``flask_smtp_senders`` entry-point group. Off by
    #: default: a plugin can answer ``smtp_senders_authorize``, so merely installing a
    #: package must not grant access; list the plugins in ``plugins=`` or opt in here.
    "SMTP_SENDERS_LOAD_ENTRY_POINTS": False,
    #: The Content-Security-Policy sent with the Senders pages (when the response has none
    #: yet); None or "" sends none. The API's answers get ``default-src 'none';
    #: frame-ancestors 'none'`` the same way.
    "SMTP_SENDERS_CONTENT_SECURITY_POLICY": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
    ),
    #: Where Microsoft 365 senders get their access tokens (Microsoft Entra's sign-in
    #: host; another for a sovereign cloud, such as https://login.microsoftonline.us).
    "SMTP_SENDERS_MICROSOFT_AUTHORITY": "https://login.microsoftonline.com",
    #: Where Google Workspace senders get their access tokens (never from the key file:
    #: a key's ``token_uri`` is not trusted with where its signed assertion goes).
    "SMTP_SENDERS_GOOGLE_TOKEN_URL": "https://oauth2.googleapis.com/token",
    #: The layout our pages extend; it must define the blocks title, head and content.
    "SMTP_SENDERS_BASE_TEMPLATE": "smtp_senders/layout.html",
}

#: Every setting and its default: the behaviour above and the texts.
DEFAULTS: dict[str, Any] = {**BEHAVIOUR, **TEXTS}


def apply_defaults(config: dict[str, Any]) -> None:
    """Fill in every setting the host did not set."""
    for key, value in DEFAULTS.items():
        config.setdefault(key, value)


def _seconds(config: Mapping[str, Any], key: str) -> float:
    value = config[key]
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or value <= 0):
        raise ConfigurationError(f"{key} must be a positive number of seconds.")
    return float(value)


def _port(config: Mapping[str, Any], key: str) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ConfigurationError(f"{key} must be a port number.")
    return value


def _https_url(config: Mapping[str, Any], key: str) -> str:
    value = config[key]
    try:
        parts = urlsplit(value)
        good = parts.scheme == "https" and bool(parts.hostname) and value.isascii()
        good = good and not (parts.username or parts.password or parts.fragment)
    except (AttributeError, TypeError, ValueError):
        good = False
    if not good:
        raise ConfigurationError(f"{key} must be an https:// URL.")
    return str(value).rstrip("/")


@dataclass(frozen=True)
class Settings:
    """The behaviour settings of one app, read and checked once by ``init_app``
    (:meth:`from_config`) and handed to the services, the transport, the pages and the
    Celery task, so a bad value fails at start-up, naming its key. The texts come along
    as a read-only mapping (:mod:`flask_smtp_senders.texts`), taken at the same moment.
    The encryption keys are not here: they go straight to the cipher."""

    operation_timeout: float
    timeout: float
    ehlo_name: str | None
    ca_file: str | None
    create_tables: bool
    allow_loopback: bool
    allow_private: bool
    denied_networks: tuple[str, ...]
    smtputf8: bool
    allow_internal_domains: bool
    test_email_rate_limit: str
    write_rate_limit: str
    ratelimit_storage_uri: str
    max_connections: int
    pool_idle_timeout: float
    send_retries: int
    retry_backoff: float
    celery_max_retries: int
    celery_retry_delay: float
    domain_advice: bool
    dns_nameservers: Any
    dns_port: int
    dns_timeout: float
    url_prefix: str
    register_blueprint: bool
    api: bool
    load_entry_points: bool
    content_security_policy: str | None
    microsoft_authority: str
    google_token_url: str
    texts: Mapping[str, str] = field(repr=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Parse ``config`` (defaults applied); ConfigurationError names a bad key."""
        denied = config["SMTP_SENDERS_DENIED_NETWORKS"]
        return cls(
            operation_timeout=_seconds(config, "SMTP_SENDERS_OPERATION_TIMEOUT"),
            timeout=_seconds(config, "SMTP_SENDERS_TIMEOUT"),
            ehlo_name=config["SMTP_SENDERS_EHLO_NAME"],
            ca_file=config["SMTP_SENDERS_CA_FILE"],
            create_tables=bool(config["SMTP_SENDERS_CREATE_TABLES"]),
            allow_loopback=bool(config["SMTP_SENDERS_ALLOW_LOOPBACK"]),
            allow_private=bool(config["SMTP_SENDERS_ALLOW_PRIVATE"]),
            denied_networks=tuple(denied) if isinstance(denied, list | tuple) else denied,
            smtputf8=bool(config["SMTP_SENDERS_SMTPUTF8"]),
            allow_internal_domains=bool(config["SMTP_SENDERS_ALLOW_INTERNAL_DOMAINS"]),
            test_email_rate_limit=config["SMTP_SENDERS_TEST_EMAIL_RATE_LIMIT"],
            write_rate_limit=config["SMTP_SENDERS_WRITE_RATE_LIMIT"],
            ratelimit_storage_uri=config["SMTP_SENDERS_RATELIMIT_STORAGE_URI"],
            max_connections=int(config["SMTP_SENDERS_MAX_CONNECTIONS"]),
            pool_idle_timeout=float(config["SMTP_SENDERS_POOL_IDLE_TIMEOUT"]),
            send_retries=int(config["SMTP_SENDERS_SEND_RETRIES"]),
            retry_backoff=float(config["SMTP_SENDERS_RETRY_BACKOFF"]),
            celery_max_retries=int(config["SMTP_SENDERS_CELERY_MAX_RETRIES"]),
            celery_retry_delay=float(config["SMTP_SENDERS_CELERY_RETRY_DELAY"]),
            domain_advice=bool(config["SMTP_SENDERS_DOMAIN_ADVICE"]),
            dns_nameservers=config["SMTP_SENDERS_DNS_NAMESERVERS"],
            dns_port=_port(config, "SMTP_SENDERS_DNS_PORT"),
            dns_timeout=_seconds(config, "SMTP_SENDERS_DNS_TIMEOUT"),
            url_prefix=config["SMTP_SENDERS_URL_PREFIX"],
            register_blueprint=bool(config["SMTP_SENDERS_REGISTER_BLUEPRINT"]),
            api=bool(config["SMTP_SENDERS_API"]),
            load_entry_points=config["SMTP_SENDERS_LOAD_ENTRY_POINTS"] is True,
            content_security_policy=config["SMTP_SENDERS_CONTENT_SECURITY_POLICY"],
            microsoft_authority=_https_url(config, "SMTP_SENDERS_MICROSOFT_AUTHORITY"),
            google_token_url=_https_url(config, "SMTP_SENDERS_GOOGLE_TOKEN_URL"),
            texts=MappingProxyType({key: config[key] for key in TEXTS}),
        )
