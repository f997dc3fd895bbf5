"""Real SMTP and raw TCP servers on loopback, exposed as pytest fixtures.

Why: flask_smtp_senders talks to SMTP servers chosen by an administrator. Only a real
server on loopback proves what actually crossed the wire (TLS or not, which credentials,
which envelope, which bytes), so these fixtures run aiosmtpd and plain sockets instead of
mocks. Every listener binds LOOPBACK on a port picked here and is stopped at teardown.

LOOPBACK is chosen at run time (tests/support/loopback.py): a random address of
127.0.0.0/8 that can be bound, or ``SMTP_SENDERS_TEST_LOOPBACK`` when it is set (e.g.
``SMTP_SENDERS_TEST_LOOPBACK=127.0.0.1``), so the suite runs beside another mail server
on 127.0.0.1 and two runs never collide. Hosts that route the test server name
(SERVER_NAME) must answer LOOPBACK, never a literal 127.0.0.1.

Use as a plugin (``pytest_plugins = ["tests.support.smtp_servers"]``) or import from it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime
import email
import email.policy
import errno
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    TLSSetupException,
)

from tests.support.loopback import LOOPBACK

__all__ = [
    "CERT_NAMES",
    "DEFAULT_USERS",
    "DRIP_GREETING",
    "LOOPBACK",
    "MODES",
    "SERVER_NAME",
    "AuthAttempt",
    "DripServer",
    "RawTCPServer",
    "ReceivedMessage",
    "RecordingServer",
    "SeenCommand",
    "SilentServer",
    "TLSMaterial",
    "closed_port",
    "drip_server",
    "free_port",
    "server_context",
    "silent_server",
    "smtp_server",
    "tls_material",
]

SERVER_NAME = "mx.smtp-senders.test"
DEFAULT_USERS: Mapping[str, str] = {"alice": "s3cret"}
MODES = ("starttls", "implicit", "plain", "starttls_refused")
CERT_NAMES = ("good", "wrong_host", "unknown_ca", "expired")
DRIP_GREETING = b"220 drip.example ESMTP ready\r\n"

# RFC 3207 s4: the only commands a STARTTLS-required server accepts in clear.
_ALLOWED_BEFORE_STARTTLS = frozenset({"NOOP", "EHLO", "STARTTLS", "QUIT"})
_DEFAULT_STARTTLS_REFUSAL = "454 4.7.0 TLS not available"
_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- TLS material


@dataclass(frozen=True)
class TLSMaterial:
    """Certificates for every TLS failure the client must detect, all made offline."""

    ca: trustme.CA
    ca_file: str
    good: trustme.LeafCert
    wrong_host: trustme.LeafCert
    unknown_ca: trustme.LeafCert
    expired: trustme.LeafCert
    untrusted_ca: trustme.CA

    def cert(self, name: str) -> trustme.LeafCert:
        """Look a certificate up by the name the smtp_server factory accepts."""
        if name not in CERT_NAMES:
            raise ValueError(f"unknown cert {name!r}; expected one of {CERT_NAMES}")
        return getattr(self, name)

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only our test CA."""
        return ssl.create_default_context(cafile=self.ca_file)


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    """Server-side context for `cert`; no client certs asked, as SMTP clients send none."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


def _make_tls_material(directory: Path) -> TLSMaterial:
    ca = trustme.CA()
    untrusted_ca = trustme.CA()
    ca_file = str(directory / "ca.pem")
    ca.cert_pem.write_to_path(ca_file)
    now = datetime.datetime.now(datetime.timezone.utc)
    # SERVER_NAME too: clients verify the configured server name, which tests route here.
    names = ("localhost", LOOPBACK, SERVER_NAME)
    return TLSMaterial(
        ca=ca,
        ca_file=ca_file,
        good=ca.issue_cert(*names),
        wrong_host=ca.issue_cert("other.example"),
        unknown_ca=untrusted_ca.issue_cert(*names),
        expired=ca.issue_cert(
            *names,
            not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1),
        ),
        untrusted_ca=untrusted_ca,
    )


# ------------------------------------------------------------------------------ ports


def free_port(host: str = LOOPBACK) -> int:
    """A port of ``host`` nothing listens on right now (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _bound_listener(port: int | None = None, *, wait: float = 2.0) -> socket.socket:
    """A socket already bound on loopback, so nothing can take the port before we listen.

    `port=None` picks a free port. A fixed port (needed when the port number itself
    selects the client's TLS mode) is retried for `wait` s while EADDRINUSE.
    """
    deadline = time.monotonic() + wait
    while True:
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose protocol
        # says TCP, and without it every test connection stalls twice (Nagle, delayed ACK).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            if port:
                # A previous server on this port may leave TIME_WAIT connections behind.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((LOOPBACK, port or 0))
            return sock
        except OSError as exc:
            sock.close()
            if not port:
                raise
            if exc.errno == errno.EADDRINUSE and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise OSError(
                exc.errno,
                f"cannot listen on {LOOPBACK}:{port}: {exc.strerror}. A fixed port is "
                "shared by everything on this address (SMTP_SENDERS_TEST_LOOPBACK chooses "
                "another); below 1024 it needs root, CAP_NET_BIND_SERVICE or "
                "net.ipv4.ip_unprivileged_port_start",
            ) from exc
        except BaseException:
            sock.close()
            raise


# ------------------------------------------------------------------- SMTP: records


class AuthAttempt(NamedTuple):
    """One AUTH command; a plain 3-tuple so tests can compare with literals."""

    mechanism: str
    username: str | None
    succeeded: bool


class SeenCommand(NamedTuple):
    """One SMTP command and whether the session was encrypted when it arrived.

    `argument` is the address for MAIL/RCPT, the mechanism for AUTH (never credentials),
    the client name for EHLO/HELO and "" otherwise.
    """

    verb: str
    argument: str
    tls: bool


@dataclass(frozen=True)
class ReceivedMessage:
    """A message the server accepted (recorded just before it replied 250 to DATA)."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    message: EmailMessage
    tls: bool
    username: str | None


@dataclass(frozen=True)
class _ModeConfig:
    starttls_context: ssl.SSLContext | None  # offered via STARTTLS
    implicit_context: ssl.SSLContext | None  # TLS from the first byte
    gate_starttls: bool  # refuse everything but EHLO/NOOP/QUIT/STARTTLS in clear
    fake_starttls: bool  # advertise STARTTLS without being able to do it
    auth_enabled: bool
    auth_required: bool
    auth_needs_tls: bool
    starttls_reply: str | None


def _parse_address(keyword: str, arg: str | None) -> str:
    """Best-effort address from 'FROM:<a@b> SIZE=1'; raw text when it does not parse."""
    text = (arg or "").strip()
    if text[: len(keyword)].upper() != keyword:
        return text
    rest = text[len(keyword) :].strip()
    if rest.startswith("<"):
        end = rest.find(">")
        return rest[1:end] if end != -1 else rest[1:]
    return rest.split(" ", 1)[0]


def _parse_auth(arg: str | None) -> tuple[str, str | None]:
    """Mechanism and, if the initial response carries it, the user name (never password)."""
    parts = (arg or "").split()
    if not parts:
        return "", None
    mechanism = parts[0].upper()
    if len(parts) < 2:
        return mechanism, None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return mechanism, None
    if mechanism == "PLAIN":
        fields = blob.split(b"\x00")
        return mechanism, fields[1].decode("utf-8", "replace") if len(fields) == 3 else None
    if mechanism == "LOGIN":
        return mechanism, blob.decode("utf-8", "replace")
    return mechanism, None


# ------------------------------------------------------------------- SMTP: aiosmtpd glue


class _RecordingSMTP(SMTP):
    """aiosmtpd session that records every command before any policy can refuse it.

    Why the own gates: aiosmtpd refuses commands before STARTTLS (and AUTH without TLS)
    before any hook runs, so those attempts would be invisible; it also treats implicit
    TLS as "no TLS" for AUTH. The gates below give the same replies but record first.
    """

    def __init__(self, handler: Any, *, recorder: RecordingServer, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._recorder = recorder
        self._auth_slot: int | None = None
        self.accepted = 0  # messages accepted on this connection
        self._lost = False
        # aiosmtpd's own check ignores implicit TLS; smtp_AUTH/handle_EHLO below do it.
        self._auth_require_tls = False
        for verb, method in list(self._smtp_methods.items()):
            self._smtp_methods[verb] = self._guarded(verb, method)

    @property
    def encrypted(self) -> bool:
        """True once TLS is up, whether implicit or after STARTTLS."""
        transport = self.transport
        return transport is not None and transport.get_extra_info("ssl_object") is not None

    def _guarded(self, verb: str, method: Callable[[str], Any]) -> Callable[[str], Any]:
        async def guarded(arg: str) -> None:
            self._recorder._observe(self, verb, arg)
            recorder = self._recorder
            if verb == "MAIL" and recorder.drop_after and self.accepted >= recorder.drop_after:
                await self.push("421 4.3.2 Too many messages on one connection, closing")
                self.transport.close()
                return
            if verb == "MAIL" and recorder.tempfail_mail > 0:
                recorder.tempfail_mail -= 1
                await self.push("451 4.3.0 Temporary failure, try again later")
                return
            config = self._recorder._config
            if config.gate_starttls and verb not in _ALLOWED_BEFORE_STARTTLS:
                if not self.encrypted:
                    await self.push("530 Must issue a STARTTLS command first")
                    return
            await method(arg)

        guarded.__dict__.update(getattr(method, "__dict__", {}))  # keeps HELP texts
        return guarded

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        upgrade = self._original_transport is not None
        super().connection_made(transport)
        if not upgrade:
            self._recorder._session_opened(self)

    def connection_lost(self, error: Exception | None) -> None:
        # aiosmtpd calls this itself after a failed STARTTLS handshake, then asyncio
        # calls it again; the second call would trip its asserts.
        if self._lost:
            return
        self._lost = True
        self._recorder._session_closed(self)
        super().connection_lost(error)

    def abort(self) -> None:
        """Drop the connection now (teardown); no graceful TLS close_notify wait."""
        for transport in (self.transport, self._original_transport):
            if transport is not None:
                with contextlib.suppress(Exception):
                    transport.abort()  # type: ignore[attr-defined]

    async def smtp_STARTTLS(self, arg: str) -> None:
        reply = self._recorder._config.starttls_reply
        if reply is not None and not arg:
            await self.push(reply)
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        config = self._recorder._config
        if not config.auth_enabled:
            await self.push("502 5.5.1 AUTH not available")
            return
        session = self.session
        if (
            config.auth_needs_tls
            and not self.encrypted
            and session is not None
            and session.host_name
            and session.extended_smtp
        ):
            await self.push("538 5.7.11 Encryption required for requested authentication mechanism")
            return
        await super().smtp_AUTH(arg)


class _Handler:
    """aiosmtpd handler hooks; all state lives on the RecordingServer."""

    def __init__(self, recorder: RecordingServer) -> None:
        self.recorder = recorder

    async def handle_EHLO(
        self,
        server: _RecordingSMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # the 5-argument hook must do this itself
        return self.recorder._ehlo_lines(server, responses)

    async def handle_MAIL(
        self,
        server: _RecordingSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> Any:
        if address.casefold() in self.recorder._refuse_mail:
            return f"553 5.7.1 {self.recorder.reply_text or 'Sender not allowed'}"
        return MISSING

    async def handle_RCPT(
        self,
        server: _RecordingSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> Any:
        if address.casefold() in self.recorder._refuse_rcpt:
            return f"550 5.1.1 {self.recorder.reply_text or 'No such user'}"
        return MISSING

    async def handle_DATA(
        self, server: _RecordingSMTP, session: Session, envelope: Envelope
    ) -> Any:
        recorder = self.recorder
        content = envelope.original_content or b""
        if any(marker in content for marker in recorder.reject_content):
            return f"554 5.6.0 {recorder.reply_text or 'Message content rejected'}"
        if recorder.hang_after_data > 0:
            await asyncio.sleep(recorder.hang_after_data)  # cancelled on disconnect
        recorder._record_message(server, session, envelope)
        if recorder.drop_on_data and len(recorder.messages) == recorder.drop_on_data:
            # Delivered, but the client never hears so: its state for this one is unknown.
            server.transport.abort()  # the 250 below goes nowhere
        return MISSING

    async def handle_exception(self, error: Exception) -> str:
        # A client rejecting our certificate is an expected outcome here, not an error
        # worth a traceback; aiosmtpd closes the connection without sending this reply.
        if isinstance(error, TLSSetupException):
            _log.info("STARTTLS handshake failed: %r", error.__cause__)
            return "454 4.7.0 TLS handshake failed"
        _log.exception("SMTP session exception")
        return f"500 Error: ({type(error).__name__}) {error}"


class _Controller(Controller):
    """Controller that serves our SMTP subclass on a socket we bound ourselves.

    Why: Controller(port=0) cannot work (its readiness probe connects to port 0), and
    handing over an already-bound socket leaves no window for another process to
    take the port between picking and listening.
    """

    def __init__(
        self,
        recorder: RecordingServer,
        listener: socket.socket,
        *,
        ssl_context: ssl.SSLContext | None,
        **smtp_kwargs: Any,
    ) -> None:
        self._recorder = recorder
        self._listener = listener
        super().__init__(
            _Handler(recorder),
            hostname=LOOPBACK,
            port=listener.getsockname()[1],
            ssl_context=ssl_context,
            server_hostname=SERVER_NAME,  # also avoids a socket.getfqdn() DNS lookup
            ready_timeout=5.0,
            **smtp_kwargs,
        )

    def factory(self) -> _RecordingSMTP:
        return _RecordingSMTP(
            self.handler, recorder=self._recorder, loop=self.loop, **self.SMTP_kwargs
        )

    def _create_server(self) -> Any:
        return self.loop.create_server(
            self._factory_invoker, sock=self._listener, ssl=self.ssl_context
        )


# ------------------------------------------------------------------- SMTP: public server


class RecordingServer:
    """A real SMTP server on LOOPBACK that remembers everything clients tried.

    Lists are appended from the server thread before the matching reply is sent, so a
    client that got its reply can read them without waiting.
    """

    host: str = LOOPBACK

    def __init__(
        self,
        mode: str,
        *,
        tls_material: TLSMaterial,
        cert: str = "good",
        users: Mapping[str, str] | None = None,
        auth: bool = True,
        refuse_rcpt: Iterable[str] = (),
        refuse_mail: Iterable[str] = (),
        starttls_reply: str | tuple[int, str] | None = None,
        hang_after_data: float = 0.0,
        timeout: float = 5.0,
        port: int | None = None,
        drop_after: int = 0,
        tempfail_mail: int = 0,
        pipelining: bool = False,
        drop_on_data: int = 0,
        reject_content: Iterable[bytes] = (),
        reply_text: str = "",
        ehlo_lines: Iterable[str] = (),
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        self.mode = mode
        self.cert_name = cert
        self.users: dict[str, str] = dict(DEFAULT_USERS if users is None else users)
        self.hang_after_data = float(hang_after_data)
        #: After this many messages on one connection, answer MAIL with 421 and hang up.
        self.drop_after = int(drop_after)
        #: Answer this many MAIL commands (over all connections) with 451 first.
        self.tempfail_mail = int(tempfail_mail)
        #: Advertise PIPELINING in EHLO (aiosmtpd reads commands from a stream, so
        #: pipelined input just works).
        self.pipelining = bool(pipelining)
        #: Record the Nth message (over all connections), then hang up without replying.
        self.drop_on_data = int(drop_on_data)
        #: Answer 554 to a body containing any of these bytes (nothing is recorded).
        self.reject_content = tuple(reject_content)
        #: Text of the greeting and of every refusal (MAIL, RCPT, AUTH, DATA) instead of
        #: the usual one: a marker proving that server text never reaches a user.
        self.reply_text = str(reply_text)
        #: Extra EHLO lines (without "250-"), e.g. "AUTH XOAUTH2 junk" or "SIZE 1x".
        self.ehlo_lines = tuple(ehlo_lines)
        # aiosmtpd drops a connection idle for `timeout`; a hanging DATA must outlive it.
        self.timeout = (max(float(timeout), self.hang_after_data + 2.0)
                        if self.hang_after_data else float(timeout))
        self._refuse_rcpt = frozenset(a.casefold() for a in refuse_rcpt)
        self._refuse_mail = frozenset(a.casefold() for a in refuse_mail)
        self._config = self._mode_config(mode, tls_material.cert(cert), auth, starttls_reply)

        self._requested_port = port
        self.port: int = 0
        self.messages: list[ReceivedMessage] = []
        self.auth_attempts: list[AuthAttempt] = []
        self.mail_from_seen: list[str] = []
        self.rcpt_seen: list[str] = []
        self.commands: list[SeenCommand] = []
        self.connections = 0
        self._live: set[_RecordingSMTP] = set()
        self._controller: _Controller | None = None

    @staticmethod
    def _mode_config(
        mode: str,
        cert: trustme.LeafCert,
        auth: bool,
        starttls_reply: str | tuple[int, str] | None,
    ) -> _ModeConfig:
        reply: str | None = None
        if starttls_reply is not None:
            if mode not in ("starttls", "starttls_refused"):
                raise ValueError("starttls_reply only applies to modes offering STARTTLS")
            if isinstance(starttls_reply, tuple):
                reply = f"{starttls_reply[0]} {starttls_reply[1]}"
            else:
                reply = str(starttls_reply)
            if not (len(reply) >= 3 and reply[:3].isdigit()):
                raise ValueError(f"starttls_reply must start with a reply code: {reply!r}")
        if mode == "starttls":
            return _ModeConfig(
                starttls_context=server_context(cert),
                implicit_context=None,
                gate_starttls=True,
                fake_starttls=False,
                auth_enabled=auth,
                auth_required=auth,
                auth_needs_tls=True,
                starttls_reply=reply,
            )
        if mode == "implicit":
            return _ModeConfig(
                starttls_context=None,
                implicit_context=server_context(cert),
                gate_starttls=False,
                fake_starttls=False,
                auth_enabled=auth,
                auth_required=auth,
                auth_needs_tls=True,
                starttls_reply=None,
            )
        return _ModeConfig(  # "plain" and "starttls_refused": AUTH accepted in clear
            starttls_context=None,
            implicit_context=None,
            gate_starttls=False,
            fake_starttls=mode == "starttls_refused",
            auth_enabled=auth,
            auth_required=False,
            auth_needs_tls=False,
            starttls_reply=(reply or _DEFAULT_STARTTLS_REFUSAL)
            if mode == "starttls_refused"
            else None,
        )

    # -- derived views -------------------------------------------------------------

    @property
    def tls_seen(self) -> bool:
        """True if any AUTH or MAIL arrived while the session was encrypted."""
        return any(c.tls for c in self.commands if c.verb in ("AUTH", "MAIL"))

    @property
    def cleartext_seen(self) -> bool:
        """True if any AUTH or MAIL arrived unencrypted (credentials/envelope in clear)."""
        return any(not c.tls for c in self.commands if c.verb in ("AUTH", "MAIL"))

    @property
    def verbs(self) -> list[str]:
        """Just the command names, in order, for quick protocol-shape assertions."""
        return [c.verb for c in self.commands]

    def __repr__(self) -> str:
        return f"<RecordingServer {self.mode} {self.host}:{self.port} cert={self.cert_name}>"

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> RecordingServer:
        """Bind a free loopback port and serve until stop()."""
        if self._controller is not None:
            raise RuntimeError("server already started")
        listener = _bound_listener(self._requested_port)
        self.port = listener.getsockname()[1]
        config = self._config
        controller = _Controller(
            self,
            listener,
            ssl_context=config.implicit_context,
            tls_context=config.starttls_context,
            require_starttls=False,  # enforced (and recorded) by _RecordingSMTP
            auth_required=config.auth_required,
            auth_require_tls=True,  # reset per session; True avoids aiosmtpd's warning
            authenticator=self._check_credentials,
            timeout=self.timeout,
            **({"ident": self.reply_text} if self.reply_text else {}),
        )
        try:
            controller.start()
        except BaseException:
            with contextlib.suppress(Exception):
                controller.stop(no_assert=True)
            listener.close()
            raise
        self._controller = controller
        self.connections = 0  # the controller's readiness probe is not a client
        return self

    def stop(self) -> None:
        """Drop open sessions, stop the loop and free the port; safe to call twice."""
        controller, self._controller = self._controller, None
        if controller is None:
            return
        loop = controller.loop
        if loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._drop_sessions(), loop)
            with contextlib.suppress(Exception):
                future.result(timeout=3.0)
        controller.stop()

    def __enter__(self) -> RecordingServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _drop_sessions(self) -> None:
        for session in list(self._live):
            session.abort()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        for _ in range(3):
            await asyncio.sleep(0)  # aborted transports close their sockets in callbacks
        for session in list(self._live):
            # Aborted mid-STARTTLS: asyncio never tells the SMTP protocol, so we do.
            session.connection_lost(None)

    # -- called from the server thread ---------------------------------------------

    def _session_opened(self, session: _RecordingSMTP) -> None:
        self.connections += 1
        self._live.add(session)

    def _session_closed(self, session: _RecordingSMTP) -> None:
        self._live.discard(session)

    def _observe(self, session: _RecordingSMTP, verb: str, arg: str | None) -> None:
        tls = session.encrypted
        if verb == "AUTH":
            mechanism, username = _parse_auth(arg)
            session._auth_slot = len(self.auth_attempts)
            self.auth_attempts.append(AuthAttempt(mechanism, username, False))
            argument = mechanism
        elif verb == "MAIL":
            argument = _parse_address("FROM:", arg)
            self.mail_from_seen.append(argument)
        elif verb == "RCPT":
            argument = _parse_address("TO:", arg)
            self.rcpt_seen.append(argument)
        elif verb in ("EHLO", "HELO"):
            argument = (arg or "").strip()
        else:
            argument = ""
        self.commands.append(SeenCommand(verb, argument, tls))

    def _ehlo_lines(self, session: _RecordingSMTP, responses: list[str]) -> list[str]:
        config = self._config
        offer_auth = config.auth_enabled and (session.encrypted or not config.auth_needs_tls)
        lines = [r for r in responses if offer_auth or not r[4:].upper().startswith("AUTH")]
        if config.fake_starttls:
            lines.insert(len(lines) - 1, "250-STARTTLS")
        if self.pipelining:
            lines.insert(len(lines) - 1, "250-PIPELINING")
        for extra in self.ehlo_lines:
            lines.insert(len(lines) - 1, f"250-{extra}")
        return lines

    def _check_credentials(
        self,
        server: _RecordingSMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        """aiosmtpd `authenticator`: check `users`, update the pending AuthAttempt."""
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username = auth_data.login.decode("utf-8", "replace")
        expected = self.users.get(username)
        ok = expected is not None and auth_data.password == expected.encode("utf-8")
        attempt = AuthAttempt(mechanism, username, ok)
        if server._auth_slot is not None and server._auth_slot < len(self.auth_attempts):
            self.auth_attempts[server._auth_slot] = attempt
        else:
            self.auth_attempts.append(attempt)
        # handled=False makes aiosmtpd answer 535 itself on failure (with our text if set).
        refusal = f"535 5.7.8 {self.reply_text}" if self.reply_text and not ok else None
        return AuthResult(success=ok, handled=False, auth_data=auth_data, message=refusal)

    def _record_message(self, server: _RecordingSMTP, session: Session, envelope: Envelope) -> None:
        data = envelope.original_content or b""
        username = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            username = session.auth_data.login.decode("utf-8", "replace")
        server.accepted += 1
        self.messages.append(
            ReceivedMessage(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                data=data,
                message=email.message_from_bytes(data, policy=email.policy.default),  # type: ignore[arg-type]
                tls=server.encrypted,
                username=username,
            )
        )


# --------------------------------------------------------------------- raw TCP servers


class RawTCPServer:
    """Threaded loopback TCP listener; subclasses decide what a connection receives."""

    host: str = LOOPBACK

    def __init__(self, port: int | None = None) -> None:
        self._listener = _bound_listener(port)
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections = 0
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor: threading.Thread | None = None

    @property
    def connections(self) -> int:
        """Number of connections accepted so far."""
        with self._lock:
            return self._connections

    def wait_for_connections(self, count: int = 1, timeout: float = 2.0) -> bool:
        """Poll until `count` connections were accepted (accepting runs in a thread)."""
        deadline = time.monotonic() + timeout
        while self.connections < count:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def start(self) -> RawTCPServer:
        self._listener.listen(16)
        self._listener.settimeout(0.05)  # lets the accept loop notice stop() quickly
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"{type(self).__name__}:{self.port}", daemon=True
        )
        self._acceptor.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Close everything and join all threads within about `timeout` seconds."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        if self._acceptor is not None:
            self._acceptor.join(max(0.0, deadline - time.monotonic()))
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
            threads = list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in [self._acceptor, *threads] if t is not None and t.is_alive()]
        if stuck:
            raise RuntimeError(f"threads still running after stop(): {stuck}")

    def __enter__(self) -> RawTCPServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if self._stopping.is_set():
                    conn.close()
                    return
                self._connections += 1
                self._sockets.append(conn)
                thread = threading.Thread(
                    target=self._serve,
                    args=(conn,),
                    name=f"{type(self).__name__}-conn",
                    daemon=True,
                )
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        """Default: say nothing and keep the connection open until stop()."""
        self._stopping.wait()

    @staticmethod
    def _peer_closed(conn: socket.socket) -> bool:
        """Drain whatever the client sent; True once it closed its side."""
        try:
            readable, _, _ = select.select([conn], [], [], 0)
            if not readable:
                return False
            return conn.recv(4096) == b""
        except (OSError, ValueError):
            return True


class SilentServer(RawTCPServer):
    """Accepts TCP connections and never sends a byte ("accepts, never greets")."""


class DripServer(RawTCPServer):
    """Sends an SMTP greeting one byte every `interval` s, then an endless line.

    Why: each byte arrives well inside any per-read socket timeout, so only an overall
    deadline on the client side can stop the conversation.
    """

    interval = 0.5

    def _serve(self, conn: socket.socket) -> None:
        greeting = iter(DRIP_GREETING)
        while not self._stopping.is_set():
            byte = next(greeting, 0x20)  # after the greeting: spaces, never a CRLF
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                return
            if self._stopping.wait(self.interval) or self._peer_closed(conn):
                return


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    """One CA plus good, wrong-host, unknown-CA and expired server certs per session."""
    return _make_tls_material(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def smtp_server(tls_material: TLSMaterial) -> Iterator[Callable[..., RecordingServer]]:
    """Factory: smtp_server(mode, **options) -> started RecordingServer, stopped at teardown."""
    started: list[RecordingServer] = []

    def start(
        mode: str,
        *,
        cert: str = "good",
        users: Mapping[str, str] | None = None,
        auth: bool = True,
        refuse_rcpt: Iterable[str] = (),
        refuse_mail: Iterable[str] = (),
        starttls_reply: str | tuple[int, str] | None = None,
        hang_after_data: float = 0.0,
        timeout: float = 5.0,
        port: int | None = None,
        drop_after: int = 0,
        tempfail_mail: int = 0,
        pipelining: bool = False,
        drop_on_data: int = 0,
        reject_content: Iterable[bytes] = (),
        reply_text: str = "",
        ehlo_lines: Iterable[str] = (),
    ) -> RecordingServer:
        server = RecordingServer(
            mode,
            tls_material=tls_material,
            cert=cert,
            users=users,
            auth=auth,
            refuse_rcpt=refuse_rcpt,
            refuse_mail=refuse_mail,
            starttls_reply=starttls_reply,
            hang_after_data=hang_after_data,
            timeout=timeout,
            port=port,
            drop_after=drop_after,
            tempfail_mail=tempfail_mail,
            pipelining=pipelining,
            drop_on_data=drop_on_data,
            reject_content=reject_content,
            reply_text=reply_text,
            ehlo_lines=ehlo_lines,
        )
        server.start()
        started.append(server)
        return server

    with contextlib.ExitStack() as stack:
        yield start
        for server in started:
            stack.callback(server.stop)


@pytest.fixture
def drip_server(request: pytest.FixtureRequest) -> Iterator[DripServer]:
    """A server that greets one byte every 0.5 s and never finishes a reply.

    Free port by default; a fixed one via indirect parametrization (param = port).
    """
    server = DripServer(getattr(request, "param", None))
    with server:
        yield server


@pytest.fixture
def silent_server(request: pytest.FixtureRequest) -> Iterator[SilentServer]:
    """A server that accepts connections and never says anything.

    Free port by default; a fixed one via indirect parametrization (param = port).
    """
    server = SilentServer(getattr(request, "param", None))
    with server:
        yield server


@pytest.fixture
def closed_port() -> int:
    """A loopback port with no listener, so connecting is refused at once."""
    return free_port()
