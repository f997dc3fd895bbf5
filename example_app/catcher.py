"""A local mail catcher, so the demo can send real email without a real mail server.

It is an aiosmtpd server that behaves like a careful submission server: STARTTLS on port
2525 (so the extension's port rule picks STARTTLS), nothing but EHLO/STARTTLS/NOOP/QUIT
before TLS, AUTH required and only offered over TLS. Its certificate comes from a CA made
on the spot with trustme; the portal trusts that CA through ``SMTP_SENDERS_CA_FILE``.
Caught messages stay in memory (the newest 200) and are shown on ``/catcher``.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import hmac
import ipaddress
import itertools
import logging
import os
import secrets
import socket
import ssl
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, current_app, render_template

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 2525
USERNAME = "demo"
CA_FILE_NAME = "catcher-ca.pem"
#: How many messages the catcher keeps; older ones are dropped.
KEEP = 200
#: Largest message accepted: the catcher keeps messages in memory.
MAX_MESSAGE_BYTES = 1024 * 1024

EXTENSION_KEY = "example_catcher"
log = logging.getLogger(__name__)
bp = Blueprint("catcher", __name__)


# --------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class CaughtMessage:
    """What the catcher page shows of one message, parsed once when it arrived."""

    id: int
    received_at: datetime
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    headers: tuple[tuple[str, str], ...]
    body: str
    size: int
    username: str | None = None


@dataclass
class MessageStore:
    """The caught messages, newest last; safe to share between the SMTP and web threads."""

    limit: int = KEEP
    _messages: deque[CaughtMessage] = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _ids: Iterator[int] = field(init=False, default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self._messages = deque(maxlen=self.limit)

    def add(self, mail_from: str, rcpt_tos: list[str], data: bytes,
            username: str | None = None) -> CaughtMessage:
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        with self._lock:
            caught = CaughtMessage(
                id=next(self._ids),
                received_at=datetime.now(timezone.utc),
                mail_from=mail_from,
                rcpt_tos=tuple(rcpt_tos),
                subject=_header(parsed, "Subject"),
                headers=tuple((name, _header_value(value)) for name, value in parsed.items()),
                body=_text_body(parsed),
                size=len(data),
                username=username,
            )
            self._messages.append(caught)
        return caught

    def newest_first(self) -> list[CaughtMessage]:
        with self._lock:
            return list(reversed(self._messages))

    def get(self, message_id: int) -> CaughtMessage | None:
        with self._lock:
            return next((m for m in self._messages if m.id == message_id), None)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)

    def __iter__(self) -> Iterator[CaughtMessage]:
        return iter(self.newest_first())


def _header_value(value: Any) -> str:
    """A header as text; a header the parser cannot decode is shown raw, not dropped."""
    try:
        return str(value)
    except Exception:  # malformed encoded words and the like
        return repr(value)


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message[name]
    except Exception:
        return "(unreadable)"
    return "" if value is None else _header_value(value)


def _text_body(message: EmailMessage) -> str:
    """The text/plain part, as the recipient's mail program would show it."""
    try:
        part = message.get_body(preferencelist=("plain",))
        if part is None:
            return "(no text/plain part)"
        return str(part.get_content())
    except Exception:  # unknown charset, broken MIME
        return "(the text part could not be decoded)"


# ---------------------------------------------------------------------- the SMTP server


class _Handler:
    """aiosmtpd hooks: check the demo credentials and keep what arrives."""

    def __init__(self, store: MessageStore, username: str, password: str) -> None:
        self.store = store
        self._username = username.encode()
        self._password = password.encode()

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        # Both comparisons always run, so timing does not tell which one failed.
        user_ok = hmac.compare_digest(auth_data.login, self._username)
        password_ok = hmac.compare_digest(auth_data.password, self._password)
        if not (user_ok and password_ok):
            return AuthResult(success=False, handled=False)  # aiosmtpd answers 535
        return AuthResult(success=True, auth_data=USERNAME)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or b""
        caught = self.store.add(envelope.mail_from or "", list(envelope.rcpt_tos), data,
                                username=session.auth_data if session.authenticated else None)
        log.info("caught message %d from %s to %s", caught.id, caught.mail_from,
                 ", ".join(caught.rcpt_tos))
        return "250 2.0.0 Message caught"


def _controller_class() -> type:
    """Built lazily so that importing the portal does not need aiosmtpd (the demo extra)."""
    from aiosmtpd.controller import Controller

    class _BoundController(Controller):
        """Serves on a socket bound before the thread starts: a busy port fails at once."""

        def __init__(self, listener: socket.socket, **kwargs: Any) -> None:
            self._listener = listener
            host, port = listener.getsockname()[:2]
            super().__init__(hostname=host, port=port, **kwargs)

        def _create_server(self) -> Any:
            return self.loop.create_server(self._factory_invoker, sock=self._listener)

    return _BoundController


@dataclass
class Catcher:
    """A running catcher; ``stop()`` it when done."""

    host: str
    port: int
    username: str
    password: str
    ca_file: str
    messages: MessageStore
    _controller: Any = field(repr=False)

    @property
    def server_name(self) -> str:
        """What to enter as Server Name: "localhost" resolves to 127.0.0.1; elsewhere the
        address itself (the certificate names it too)."""
        return "localhost" if self.host == DEFAULT_HOST else self.host

    def stop(self) -> None:
        """Stop the server thread and free the port; safe to call twice."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # gets TCP_NODELAY
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"the mail catcher cannot listen on {host}:{port}: "
                                 f"{exc.strerror} (set CATCHER_HOST/CATCHER_PORT)") from exc
    return sock


def _tls_context(ca_file: Path, host: str) -> ssl.SSLContext:
    """A server context with a fresh certificate; the CA's certificate goes to ca_file."""
    import trustme

    names = ["localhost", "127.0.0.1"]
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        if host not in names:
            names.append(host)  # so the catcher is also trusted when reached by address
    ca = trustme.CA(organization_name="Example portal mail catcher")
    leaf = ca.issue_cert(*names)
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    return context


def start_catcher(instance_path: str | os.PathLike[str], host: str | None = None,
                  port: int | None = None, password: str | None = None) -> Catcher:
    """Start the catcher in a background thread and write its CA to the instance folder.

    ``host``/``port``/``password`` default to ``CATCHER_HOST``/``CATCHER_PORT``/
    ``CATCHER_PASSWORD`` from the environment, then 127.0.0.1, 2525 and a random password.
    """
    host = host or os.environ.get("CATCHER_HOST") or DEFAULT_HOST
    port = port or int(os.environ.get("CATCHER_PORT") or DEFAULT_PORT)
    password = password or os.environ.get("CATCHER_PASSWORD") or secrets.token_urlsafe(12)
    folder = Path(instance_path)
    folder.mkdir(parents=True, exist_ok=True)
    ca_file = folder / CA_FILE_NAME
    context = _tls_context(ca_file, host)
    store = MessageStore()
    handler = _Handler(store, USERNAME, password)
    listener = _listen(host, port)
    controller = _controller_class()(
        listener,
        handler=handler,
        ready_timeout=5.0,
        server_hostname="localhost",  # the EHLO name; also spares a getfqdn() DNS lookup
        tls_context=context,
        require_starttls=True,
        authenticator=handler.authenticate,
        auth_required=True,
        auth_require_tls=True,
        data_size_limit=MAX_MESSAGE_BYTES,
    )
    try:
        controller.start()
    except BaseException:
        listener.close()
        with contextlib.suppress(Exception):
            controller.stop(no_assert=True)
        with contextlib.suppress(Exception):
            controller.loop.close()
        raise
    return Catcher(host=host, port=port, username=USERNAME, password=password,
                   ca_file=str(ca_file), messages=store, _controller=controller)


# ------------------------------------------------------------------------ the web page


def init_app(app: Any, catcher: Catcher | MessageStore | None) -> None:
    """Attach a running catcher (or just a store of messages) and the /catcher page."""
    app.extensions[EXTENSION_KEY] = catcher if catcher is not None else MessageStore()
    app.register_blueprint(bp)


def _attached() -> tuple[MessageStore, Catcher | None]:
    attached = current_app.extensions[EXTENSION_KEY]
    if isinstance(attached, Catcher):
        return attached.messages, attached
    return attached, None


def running_catcher() -> Catcher | None:
    """The catcher this portal was started with, if any (for the home page hints)."""
    return _attached()[1]


@bp.get("/catcher")
def index() -> str:
    store, catcher = _attached()
    return render_template("catcher.html", messages=store.newest_first(), catcher=catcher,
                           selected=None, limit=store.limit)


@bp.get("/catcher/<int:message_id>")
def show(message_id: int) -> str:
    store, catcher = _attached()
    selected = store.get(message_id)
    if selected is None:
        abort(404)
    return render_template("catcher.html", messages=store.newest_first(), catcher=catcher,
                           selected=selected, limit=store.limit)
