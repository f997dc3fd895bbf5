"""A real SMTP server on loopback, scripted per command, that keeps the client's bytes.

Why: the RecordingServer (tests/support/smtp_servers.py) records what a command meant (the
mechanism, the user, the envelope), which is enough to prove what was delivered but not
how the client said it. Wire-level rules (which AUTH mechanism and which base64 on each
line, exactly one AUTH exchange, nothing but QUIT after a refused greeting, which MAIL
FROM parameters) can only be checked on the bytes themselves, and need servers that
misbehave in controlled ways: a 554 or 421 greeting, a chosen subset of mechanisms
(XOAUTH2 and OAUTHBEARER too, tests/support/oauth_smtp.py), EHLO keywords taken away, a
slow reply. ScriptedServer is aiosmtpd underneath (a real protocol implementation, not a
mock) with those knobs, and it records every line the client sent, raw and after TLS
decryption, before the reply to it goes out.

Use the ``scripted_server`` fixture (tests/conftest.py loads this module as a plugin) or
the class as a context manager; both need the session's ``tls_material``. Servers listen
on LOOPBACK, the address chosen for the run (tests/support/loopback.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

import pytest
from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    auth_mechanism,
)

from tests.support.loopback import LOOPBACK, bind_fixed_port
from tests.support.oauth_smtp import (
    AUTH_LINE_LIMIT,
    DEFAULT_TOKENS,
    ERROR_CHALLENGE,
    OAUTH_MECHANISMS,
    TOKEN_REFUSAL,
    OAuthMechanisms,
)
from tests.support.smtp_servers import (
    _ALLOWED_BEFORE_STARTTLS,
    DEFAULT_USERS,
    SERVER_NAME,
    RecordingServer,
    TLSMaterial,
    _bound_listener,
    _Controller,
    _RecordingSMTP,
    server_context,
)

__all__ = ["MECHANISMS", "ScriptedServer", "scripted_server"]

#: The AUTH mechanisms a ScriptedServer can offer.
MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", *OAUTH_MECHANISMS)
#: The port a "starttls" server takes by default: one the port rule maps to STARTTLS.
STARTTLS_PORT = 2525
_BAD_SEQUENCE = "503 5.5.1 Bad sequence of commands"


def _listen(port: int | None) -> socket.socket:
    """A bound socket: a free port on LOOPBACK (``port`` None or 0), or ``port`` on LOOPBACK
    or, when it is busy there, on a spare loopback address (loopback.fixed_port_hosts).

    Why spare addresses: a fixed port on 127.0.0.1 is shared by everyone on the host (a
    running ``make demo``, other test runs); the run's own address and 127.0.0.2-39
    rarely are.
    """
    if not port:
        return _bound_listener()

    def bind(host: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except BaseException:
            sock.close()
            raise
        return sock

    return bind_fixed_port(port, bind)


def _mail_parameters(arg: str | None) -> list[str]:
    """The parameters of ``FROM:<a@b> BODY=8BITMIME SMTPUTF8``, as the client wrote them."""
    rest = (arg or "").strip()
    if rest[:5].upper() == "FROM:":
        rest = rest[5:].lstrip()
    if rest.startswith("<"):
        return rest.partition(">")[2].split()
    return rest.split()[1:]


class _ScriptedSMTP(SMTP):
    """One session: greets as scripted, gates commands, and records each line it reads."""

    # Borrowed from the RecordingServer's session: TLS detection (implicit or STARTTLS),
    # teardown without waiting for close_notify, and the guard against aiosmtpd's
    # double connection_lost() after a failed STARTTLS handshake.
    encrypted = _RecordingSMTP.encrypted
    abort = _RecordingSMTP.abort

    def __init__(self, handler: Any, *, server: ScriptedServer, **kwargs: Any) -> None:
        oauth = not set(OAUTH_MECHANISMS).isdisjoint(server.auth)
        if oauth:  # an access token makes a long AUTH line: the reader must take it
            self.line_length_limit = AUTH_LINE_LIMIT + 2
        super().__init__(handler, **kwargs)
        if oauth:  # DATA lines keep aiosmtpd's limit; AUTH lines get RFC 4954's
            del self.line_length_limit
            self.command_size_limits = collections.defaultdict(
                lambda: SMTP.command_size_limit, {"AUTH": AUTH_LINE_LIMIT})
        self._server = server
        self._greeted = False
        self._owe_delay = False  # a line was read: its reply waits reply_delay first
        self._in_auth = False
        self._lost = False
        self._last_line = b""
        # aiosmtpd refuses AUTH without STARTTLS even over implicit TLS; we gate ourselves.
        self._auth_require_tls = False
        for name in [m for m in self._auth_methods if m not in server.auth
                     or m in server.unrecognised]:
            del self._auth_methods[name]  # aiosmtpd answers 504 for these
        for verb, method in list(self._smtp_methods.items()):
            self._smtp_methods[verb] = self._scripted(verb, method)

    # -- recording ---------------------------------------------------------------------

    def _cb_client_connected(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        super()._cb_client_connected(reader, writer)
        read = reader.readuntil  # readline() and DATA go through it too

        async def readuntil(separator: bytes = b"\n") -> bytes:
            line = await read(separator)
            self._line_read(bytes(line))
            return line

        reader.readuntil = readuntil  # type: ignore[method-assign]

    def _line_read(self, line: bytes) -> None:
        server = self._server
        server.wire.append(line)
        if self._in_auth:  # a continuation line (challenge_auth reads it)
            server.auth_lines.append(line)
        self._last_line = line
        self._owe_delay = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        upgrade = self._original_transport is not None
        super().connection_made(transport)
        if not upgrade:
            self._server.connections += 1
            self._server._live.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._server._live.discard(self)
        super().connection_lost(error)

    # -- replies -----------------------------------------------------------------------

    async def push(self, status: str | bytes) -> None:
        server = self._server
        if not self._greeted:  # aiosmtpd's "220 host ident": ours instead
            self._greeted = True
            if server.greeting is not None:
                status = "\r\n".join(server.greeting.splitlines())
            await super().push(status)
            if server.greeting_code == 421 and self.transport is not None:
                self.transport.close()
            return
        if self._owe_delay and server.reply_delay > 0:
            self._owe_delay = False
            await asyncio.sleep(server.reply_delay)
        await super().push(status)

    def _scripted(self, verb: str, method: Callable[[str], Awaitable[None]]
                  ) -> Callable[[str], Awaitable[None]]:
        async def scripted(arg: str) -> None:
            server = self._server
            if server.greeting_code == 554 and verb != "QUIT":
                await self.push(_BAD_SEQUENCE)  # RFC 5321 s3.1: only QUIT after a 554
                return
            if (server.tls == "starttls" and not self.encrypted
                    and verb not in _ALLOWED_BEFORE_STARTTLS):
                await self.push("530 5.7.0 Must issue a STARTTLS command first")
                return
            if verb == "MAIL":
                server.mail_options.append(_mail_parameters(arg))
            if verb != "AUTH":
                await method(arg)
                return
            server.auth_lines.append(self._last_line)
            self._in_auth = True
            try:
                await method(arg)
            finally:
                self._in_auth = False

        scripted.__dict__.update(getattr(method, "__dict__", {}))  # keeps HELP texts
        return scripted

    # -- AUTH --------------------------------------------------------------------------

    @auth_mechanism("CRAM-MD5")
    async def auth_CRAM__MD5(self, _: Any, args: list[str]) -> AuthResult:
        """RFC 2195: the client answers ``user hexdigest`` to a one-time challenge."""
        if len(args) != 1:  # CRAM-MD5 has no initial response
            await self.push("501 5.5.2 Syntax error")
            return AuthResult(success=False, handled=True)
        challenge = f"<{secrets.randbelow(10**10)}.{time.time_ns()}@{SERVER_NAME}>".encode()
        answer = await self.challenge_auth(challenge)
        if answer is MISSING:
            return AuthResult(success=False, handled=True)  # challenge_auth replied 501
        assert isinstance(answer, bytes)
        login, _, digest = answer.rpartition(b" ")
        password = self._server.users.get(login.decode("utf-8", "replace"))
        expected = (None if password is None else
                    hmac.new(password.encode(), challenge, "md5").hexdigest().encode())
        ok = expected is not None and hmac.compare_digest(digest, expected)
        return AuthResult(success=ok, handled=False, auth_data=LoginPassword(login, b""))


class _ScriptedHandler(OAuthMechanisms):
    """aiosmtpd hooks: the EHLO as scripted, what a delivered message looked like, and the
    OAuth mechanisms."""

    def __init__(self, server: ScriptedServer) -> None:
        self.server = server

    async def handle_EHLO(self, smtp: _ScriptedSMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname  # the 5-argument hook must do this itself
        server = self.server
        drop = {"AUTH", *(k.upper() for k in server.ehlo_drop)}
        texts = [r[4:] for r in responses[1:-1]  # between the greeting line and "HELP"
                 if r[4:].split(" ", 1)[0].upper() not in drop]
        if server.pipelining and "PIPELINING" not in drop:
            texts.append("PIPELINING")
        if server.auth and smtp.encrypted:
            texts.append("AUTH " + " ".join(server.auth))  # in the order given
        texts += server.ehlo_add
        lines = [responses[0][4:], *texts, "HELP"]
        return [f"250-{t}" for t in lines[:-1]] + [f"250 {lines[-1]}"]

    async def handle_DATA(self, smtp: _ScriptedSMTP, session: Session,
                          envelope: Envelope) -> Any:
        self.server.messages.append((envelope.mail_from or "", list(envelope.rcpt_tos),
                                     bytes(envelope.original_content or b"")))
        return MISSING

    async def handle_exception(self, error: Exception) -> str:
        return f"451 4.3.0 {type(error).__name__}"  # never the client's data


class _ScriptedController(_Controller):
    """The RecordingServer's controller (serves on a socket we bound), with our session."""

    def __init__(self, server: ScriptedServer, listener: socket.socket, **kwargs: Any) -> None:
        super().__init__(server, listener, **kwargs)  # type: ignore[arg-type]
        self.handler = _ScriptedHandler(server)
        self.hostname = listener.getsockname()[0]  # where the readiness probe connects

    def factory(self) -> _ScriptedSMTP:  # type: ignore[override]
        return _ScriptedSMTP(self.handler, server=self._recorder,  # type: ignore[arg-type]
                             loop=self.loop, **self.SMTP_kwargs)


class ScriptedServer:
    """A real SMTP server on loopback, scripted by its keywords (see the module doc).

    ``tls``: "implicit" (TLS from the first byte, on a free port of LOOPBACK) or
    "starttls" (offers STARTTLS, refuses everything but EHLO/NOOP/QUIT before it; on port
    2525 of LOOPBACK or a spare loopback address unless ``port`` says otherwise: the port
    rule maps 2525 to STARTTLS; ``port=0``: a free port of LOOPBACK). ``greeting``: the
    greeting line(s) instead of "220 ..."; after a 554 every command but QUIT gets 503,
    after a 421 the connection is closed.
    ``auth``: mechanisms offered once encrypted, in this order; ``unrecognised``: those of
    them answered 504 anyway. ``users``: passwords (PLAIN, LOGIN, CRAM-MD5); ``tokens``:
    access tokens (XOAUTH2, OAUTHBEARER), by user; ``token_check``: instead of ``tokens``,
    a callable (user, token) -> bool, such as a token server's ``valid``. A refused token gets
    ``error_challenges`` error challenges (``334 error_challenge``, base64 JSON; 0: none,
    1: as Google and RFC 7628, more: a server that loops), each read with its answer,
    then ``token_refusal``; with an OAuth mechanism offered, an AUTH line may be 12,288
    octets long (RFC 4954). ``auth_reply``: the final reply to every PLAIN and LOGIN
    sign-in, whatever the credentials (a provider's refusal, such as ``535 5.7.139 ...``).
    ``reply_delay``: seconds before each reply after the greeting.

    Records, appended from the server thread before the reply goes out: ``wire`` (every
    line read, raw bytes with their line ending, after TLS), ``auth_lines`` (the AUTH
    command lines and their continuation lines), ``mail_options`` (each MAIL FROM's
    parameters), ``messages`` ((mail_from, rcpt_tos, data) with data as received after
    dot-unstuffing), ``error_answers`` (the client's answers to error challenges, decoded)
    and ``connections``.
    """

    def __init__(
        self,
        *,
        tls_material: TLSMaterial,
        tls: str = "implicit",
        greeting: str | None = None,
        auth: Iterable[str] = ("PLAIN", "LOGIN"),
        unrecognised: Iterable[str] = (),
        users: Mapping[str, str] | None = None,
        tokens: Mapping[str, str] | None = None,
        token_check: Callable[[str, str], bool] | None = None,
        error_challenges: int = 0,
        error_challenge: bytes = ERROR_CHALLENGE,
        token_refusal: str = TOKEN_REFUSAL,
        auth_reply: str | None = None,
        ehlo_drop: Iterable[str] = (),
        ehlo_add: Iterable[str] = (),
        smtputf8: bool = False,
        pipelining: bool = False,
        reply_delay: float = 0.0,
        port: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        if tls not in ("implicit", "starttls"):
            raise ValueError(f"tls must be 'implicit' or 'starttls', not {tls!r}")
        self.auth = tuple(m.upper() for m in auth)
        self.unrecognised = frozenset(m.upper() for m in unrecognised)
        unknown = set(self.auth) - set(MECHANISMS)
        if unknown:
            raise ValueError(f"unsupported mechanisms {sorted(unknown)}; use {MECHANISMS}")
        if greeting is not None and not greeting[:3].isdigit():
            raise ValueError(f"a greeting starts with its reply code: {greeting!r}")
        self.tls = tls
        self.greeting = greeting
        self.greeting_code = int(greeting[:3]) if greeting is not None else 220
        self.users: dict[str, str] = dict(DEFAULT_USERS if users is None else users)
        self.tokens: dict[str, str] = dict(DEFAULT_TOKENS if tokens is None else tokens)
        self.token_check = token_check
        self.error_challenges = int(error_challenges)
        self.error_challenge = bytes(error_challenge)
        self.token_refusal = token_refusal
        if auth_reply is not None and not (auth_reply[:1] in "45" and auth_reply[:3].isdigit()):
            raise ValueError(f"an AUTH refusal starts with a 4xx or 5xx code: {auth_reply!r}")
        self.auth_reply = auth_reply
        self.ehlo_drop = tuple(ehlo_drop)
        self.ehlo_add = tuple(ehlo_add)
        self.smtputf8 = smtputf8
        self.pipelining = pipelining
        self.reply_delay = float(reply_delay)
        self.timeout = max(float(timeout), 4 * self.reply_delay)  # aiosmtpd's idle limit
        self._requested_port = STARTTLS_PORT if port is None and tls == "starttls" else port
        self._context = server_context(tls_material.good)
        self.host = LOOPBACK
        self.port = 0

        self.wire: list[bytes] = []
        self.auth_lines: list[bytes] = []
        self.mail_options: list[list[str]] = []
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.error_answers: list[bytes] = []
        self.connections = 0
        self._live: set[_ScriptedSMTP] = set()
        self._controller: _ScriptedController | None = None

    def __repr__(self) -> str:
        return f"<ScriptedServer {self.tls} {self.host}:{self.port}>"

    def wire_text(self) -> str:
        """Everything the client sent, decoded (UTF-8, undecodable bytes replaced)."""
        return b"".join(self.wire).decode("utf-8", "replace")

    def _check_credentials(self, smtp: _ScriptedSMTP, session: Session, envelope: Envelope,
                           mechanism: str, auth_data: Any) -> AuthResult:
        """aiosmtpd ``authenticator`` for PLAIN and LOGIN: ``users``, compared as UTF-8,
        or ``auth_reply`` as the refusal."""
        if self.auth_reply is not None:
            return AuthResult(success=False, handled=False, message=self.auth_reply)
        password = self.users.get(auth_data.login.decode("utf-8", "replace"))
        ok = password is not None and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def start(self) -> ScriptedServer:
        """Bind, serve until stop(), and forget the readiness probe's connection."""
        if self._controller is not None:
            raise RuntimeError("server already started")
        listener = _listen(self._requested_port)
        self.host, self.port = listener.getsockname()[:2]
        implicit = self.tls == "implicit"
        controller = _ScriptedController(
            self, listener,
            ssl_context=self._context if implicit else None,
            tls_context=None if implicit else self._context,
            require_starttls=False,  # _ScriptedSMTP gates (and QUIT passes after a 554)
            enable_SMTPUTF8=self.smtputf8,
            timeout=self.timeout,
            authenticator=self._check_credentials,
        )
        try:
            controller.start()  # returns once the probe read the greeting
        except BaseException:
            with contextlib.suppress(Exception):
                controller.stop(no_assert=True)
            listener.close()
            raise
        self._controller = controller
        self.connections = 0
        self.wire.clear()
        return self

    # Borrowed: drop the open sessions, stop the loop, free the port (safe twice).
    stop = RecordingServer.stop
    _drop_sessions = RecordingServer._drop_sessions

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture
def scripted_server(tls_material: TLSMaterial) -> Iterator[Callable[..., ScriptedServer]]:
    """Factory: scripted_server(**keywords) -> started ScriptedServer, stopped at teardown."""
    with contextlib.ExitStack() as stack:

        def start(**keywords: Any) -> ScriptedServer:
            server = ScriptedServer(tls_material=tls_material, **keywords)
            stack.enter_context(server)
            return server

        yield start


def client_options(server: ScriptedServer, tls_material: TLSMaterial, *,
                   operation_timeout: float = 5.0, deadline: float = 10.0) -> Any:
    """The transport's options for a test that connects to ``server`` by SERVER_NAME: the
    name resolves to the server's loopback address, the only one allowed."""
    from flask_smtp_senders.smtp import transport

    return transport.TransportOptions(
        ssl_context=tls_material.client_context(),
        operation_timeout=operation_timeout,
        deadline=deadline,
        ehlo_name="client.example.org",
        messages={stage: f"failed at {stage}" for stage in transport.STAGES},
        resolver=lambda name, _port: [server.host] if name == SERVER_NAME else [],
        destination_allowed=lambda _name, _port, address: address == server.host,
    )

