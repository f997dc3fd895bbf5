"""The Flask extension object: ``SMTPSenders(app)`` or ``SMTPSenders().init_app(app)``.

All per-app work happens in ``init_app`` and its result lives in
``app.extensions["smtp_senders"]`` (a :class:`SenderService`), so one extension object
serves several apps. Misconfiguration fails here, naming the setting, not at first send.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterable
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from flask import Flask

from .crypto import PasswordCipher, parse_keys, read_keys_file
from .destinations import DestinationPolicy, is_metadata_name, never_allowed
from .errors import ConfigurationError
from .hooks import make_plugin_manager
from .services.senders import SenderService
from .settings import Settings, apply_defaults
from .smtp import transport
from .state import EXTENSION_KEY, api_prefix, get_service, is_api_path  # noqa: F401 - re-exported
from .storage.base import SchemaOwner, SenderStore
from .texts import message
from .web.headers import api_headers, security_headers  # noqa: F401 - re-exported
from .web.ratelimit import validate_config as validate_rate_limit

if TYPE_CHECKING:
    from .services.batch import SendResult


_STAGE_MESSAGES = {
    "token": "token_failed",
    "resolve": "resolve_failed",
    "destination": "destination_refused",
    "connect": "connect_failed",
    "tls": "tls_failed",
    "auth": "auth_failed",
    "sender": "sender_refused",
    "recipient": "recipient_refused",
    "data": "data_failed",
    "timeout": "timeout",
    # Not stages: why a message this server cannot take failed (transport.py's reasons).
    "smtputf8": "smtputf8_unsupported",
    "eight_bit": "eight_bit_unsupported",
}


class SMTPSenders:
    """Adds Settings > Senders to a Flask app.

    :param db: the host's Flask-SQLAlchemy object, for the default store.
    :param store: a :class:`SenderStore` to use instead (wins over hooks).
    :param plugins: objects with ``@hookimpl`` methods, registered last (final say).
    """

    def __init__(self, app: Flask | None = None, *, db: Any = None,
                 store: SenderStore | None = None, plugins: Iterable[object] = ()) -> None:
        self._db = db
        self._store = store
        self._plugins = tuple(plugins)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        config = app.config
        apply_defaults(config)
        settings = Settings.from_config(config)
        validate_rate_limit(settings)
        if not config.get("SECRET_KEY"):
            raise ConfigurationError(
                "SECRET_KEY is not set: flask-smtp-senders needs it to protect its forms "
                "against CSRF."
            )
        keys = config["SMTP_SENDERS_ENCRYPTION_KEYS"]
        if not keys and config["SMTP_SENDERS_ENCRYPTION_KEYS_FILE"]:
            keys = read_keys_file(config["SMTP_SENDERS_ENCRYPTION_KEYS_FILE"])
        if self._db is not None and self._store is None \
                and app.extensions.get("sqlalchemy") is not self._db:
            raise ConfigurationError(
                "SMTPSenders(app, db=db) needs the SQLAlchemy object to know this app "
                "first: call db.init_app(app) (or create it as SQLAlchemy(app)) before "
                "SMTPSenders(app, db=db) or init_app(app)."
            )
        cipher = PasswordCipher(parse_keys(keys))
        manager = make_plugin_manager(
            self._plugins, load_entry_points=settings.load_entry_points)
        options = _transport_options(settings, manager.hook)
        store = self._store or manager.hook.smtp_senders_store(app=app, db=self._db)
        if store is None:
            raise ConfigurationError(
                "flask-smtp-senders has no store: pass db= (Flask-SQLAlchemy) or store=, or "
                "implement the smtp_senders_store hook."
            )
        service = SenderService(settings, store, cipher, manager, options)
        app.extensions[EXTENSION_KEY] = service
        from .cli import cli

        app.cli.add_command(cli)
        if settings.register_blueprint:
            from .blueprint import bp  # the pages need the extension, not the reverse

            app.register_blueprint(bp, url_prefix=settings.url_prefix)
        if settings.api:
            from .web.api import api

            app.register_blueprint(api, url_prefix=api_prefix(config))
            app.after_request(api_headers)
        if settings.create_tables and isinstance(store, SchemaOwner):
            # Create or upgrade the table (the built-in store runs our migrations).
            from .storage.schema import NewerSchema

            with app.app_context():
                try:
                    store.create_tables()
                except NewerSchema as newer:  # rolled back to an older release: go on
                    app.logger.warning("flask-smtp-senders: %s", newer)

    @property
    def service(self) -> SenderService:
        """The sender operations of the current app."""
        return get_service()

    def send(self, message: EmailMessage, sender: int | None = None) -> SendResult:
        """Send one of the host's messages through ``sender`` (an id; None: the default
        sender). Raises DeliveryError or SenderNotFound when nothing was sent."""
        return get_service().mailer.send(message, sender)

    def send_many(self, messages: Iterable[EmailMessage],
                  sender: int | None = None) -> list[SendResult]:
        """Send a batch over pooled, parallel connections; one SendResult per message."""
        return get_service().mailer.send_many(messages, sender)


def _transport_options(settings: Settings, hooks: Any) -> transport.TransportOptions:
    ca_file = settings.ca_file
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError):
        raise ConfigurationError(
            "SMTP_SENDERS_CA_FILE does not name a readable PEM file of CA certificates."
        ) from None
    ehlo_name = settings.ehlo_name or socket.gethostname() or "localhost"
    if any(c in ehlo_name for c in "\r\n\0 "):
        raise ConfigurationError("SMTP_SENDERS_EHLO_NAME must be a host name.")
    return transport.TransportOptions(
        ssl_context=context,
        operation_timeout=settings.operation_timeout,
        deadline=settings.timeout,
        ehlo_name=ehlo_name,
        messages={stage: message(settings.texts, key) for stage, key in _STAGE_MESSAGES.items()},
        resolver=lambda name, port: hooks.smtp_senders_resolve(server_name=name, port=port),
        destination_allowed=_destination_rule(settings, hooks),
    )


def _destination_rule(settings: Settings, hooks: Any) -> Callable[[str, int, str], bool]:
    """The settings' policy, which the host's hook may override except for addresses that
    are never an SMTP server and cloud metadata services (by address or by Server Name:
    checked here, this rule sees every send path)."""
    try:
        policy = DestinationPolicy.from_settings(settings.allow_loopback,
                                                 settings.allow_private,
                                                 settings.denied_networks)
    except (TypeError, ValueError):
        raise ConfigurationError(
            "SMTP_SENDERS_DENIED_NETWORKS must be a list of networks in CIDR notation."
        ) from None

    def allowed(server_name: str, port: int, address: str) -> bool:
        if is_metadata_name(server_name) or never_allowed(address):
            return False
        answer = hooks.smtp_senders_destination_allowed(
            server_name=server_name, port=port, address=address)
        return policy.allows(address) if answer is None else answer is True

    return allowed
