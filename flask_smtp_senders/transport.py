"""Talking SMTP to the administrator's server, safely.

The port rule is :func:`security_for_port`. Certificates are always verified with the
context we are given; STARTTLS is mandatory on its ports and AUTH is only ever sent over
an encrypted socket. Each network operation has a timeout and the whole exchange a
deadline, so a server that drips one byte at a time cannot hold a worker. Failures are
raised as :class:`DeliveryError` with the stage where they happened and a fixed message;
server replies and exception text go to the log, with the password scrubbed out.

This module knows nothing of Flask.
"""

from __future__ import annotations

import base64
import enum
import hmac
import logging
import re
import select
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .crypto import Secret
from .destinations import DestinationPolicy
from .errors import DeliveryError, SMTPTimeout

log = logging.getLogger(__name__)

STARTTLS_PORTS = frozenset({25, 587, 2525})

#: Stages of an exchange, in order; a DeliveryError names the one where it stopped.
STAGES = ("resolve", "destination", "connect", "tls", "auth", "sender", "recipient", "data",
          "timeout")


class Security(enum.Enum):
    """How the connection is encrypted."""

    STARTTLS = "STARTTLS"
    SMTPS = "SMTPS"


def security_for_port(port: int) -> Security:
    """The port rule: 25, 587 and 2525 use SMTP with STARTTLS; every other port uses SMTPS."""
    return Security.STARTTLS if port in STARTTLS_PORTS else Security.SMTPS


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def resolve(server_name: str, port: int) -> list[str]:
    """The addresses to try for the server, in the system resolver's order."""
    infos = socket.getaddrinfo(server_name, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        if sockaddr[0] not in seen:
            seen.append(str(sockaddr[0]))
    return seen


@dataclass(frozen=True)
class ServerAddress:
    """Where to connect and who to be there; the password travels separately."""

    server_name: str
    port: int
    username: str


@dataclass(frozen=True)
class TransportOptions:
    """Settings read once from the app config."""

    ssl_context: ssl.SSLContext
    operation_timeout: float
    deadline: float
    ehlo_name: str
    #: stage name -> fixed user message (every entry of STAGES).
    messages: Mapping[str, str]
    #: (server name, port) -> addresses to try; raises OSError when there are none.
    resolver: Callable[[str, int], Sequence[str]] = resolve
    #: (server name, port, address) -> may we connect there? Asked for every address
    #: before any connection; the default refuses loopback and never-SMTP addresses.
    destination_allowed: Callable[[str, int, str], bool] = (
        lambda _name, _port, address: DestinationPolicy().allows(address))

    def fail(self, stage: str) -> DeliveryError:
        error_type = SMTPTimeout if stage == "timeout" else DeliveryError
        return error_type(stage, self.messages[stage])


class Deadline:
    """The time left for one exchange; hands out per-operation timeouts that respect it."""

    def __init__(self, seconds: float, operation_timeout: float) -> None:
        self._end = time.monotonic() + seconds
        self._operation_timeout = operation_timeout
        #: Set once any operation ran out of time.
        self.tripped = False

    def next_timeout(self) -> float:
        remaining = self._end - time.monotonic()
        if remaining <= 0:
            self.tripped = True
            raise TimeoutError("the exchange ran past its deadline")
        return min(self._operation_timeout, remaining)


class _DeadlineReader:
    """Line reader over the socket whose every recv is bounded by the deadline.

    Stands in for the ``makefile()`` object smtplib reads replies from.
    """

    def __init__(self, sock: socket.socket, owner: _SMTP) -> None:
        self._sock = sock
        self._owner = owner  # its current deadline bounds every recv
        self._buffer = bytearray()

    def readline(self, limit: int = -1) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 and (limit < 0 or end < limit):
                return self._take(end + 1)
            if 0 <= limit <= len(self._buffer):
                return self._take(limit)
            deadline = self._owner.deadline
            self._sock.settimeout(deadline.next_timeout())
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                deadline.tripped = True
                raise
            if not chunk:
                return self._take(len(self._buffer))
            self._buffer += chunk

    def _take(self, size: int) -> bytes:
        line = bytes(self._buffer[:size])
        del self._buffer[:size]
        return line

    def close(self) -> None:
        self._buffer.clear()


class CredentialsRejected(smtplib.SMTPResponseException):
    """535: stops smtplib's login() from retrying the same password with another mechanism
    (it only moves on after SMTPAuthenticationError)."""


class _SMTP(smtplib.SMTP):
    """smtplib.SMTP that connects to a resolved address, verifies the certificate against
    the Server Name, and bounds every read and write by a :class:`Deadline`."""

    def __init__(self, server_name: str, security: Security, options: TransportOptions,
                 deadline: Deadline) -> None:
        super().__init__(local_hostname=options.ehlo_name, timeout=options.operation_timeout)
        self._host = server_name  # what TLS verifies, whatever address we connect to
        self.security = security
        self.options = options
        self.deadline = deadline
        self.stage = "connect"

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        self.stage = "connect"
        sock = socket.create_connection((host, port), timeout=self.deadline.next_timeout())
        if self.security is Security.SMTPS:
            self.stage = "tls"
            try:
                sock.settimeout(self.deadline.next_timeout())
                sock = self.options.ssl_context.wrap_socket(sock, server_hostname=self._host)
            except BaseException:
                sock.close()
                raise
        return sock

    def getreply(self):  # type: ignore[no-untyped-def]
        if self.file is None and self.sock is not None:
            self.file = _DeadlineReader(self.sock, self)  # type: ignore[assignment]
        return super().getreply()

    def send(self, s: bytes | str) -> None:
        if self.sock is not None:
            self.sock.settimeout(self.deadline.next_timeout())
        try:
            super().send(s)
        except smtplib.SMTPServerDisconnected as exc:
            if isinstance(exc.__context__, TimeoutError):
                self.deadline.tripped = True
            raise

    def auth(self, mechanism, authobject, *, initial_response_ok=True):  # type: ignore[no-untyped-def]
        """smtplib's AUTH loop with UTF-8 instead of ASCII (RFC 4616), so any password works."""
        mechanism = mechanism.upper()
        initial = authobject() if initial_response_ok else None
        if initial is not None:
            code, resp = self.docmd("AUTH", f"{mechanism} {_b64(initial)}")
        else:
            code, resp = self.docmd("AUTH", mechanism)
        challenges = 0
        while code == 334:
            challenges += 1
            if challenges > smtplib._MAXCHALLENGE:
                raise smtplib.SMTPException("server AUTH mechanism loops")
            code, resp = self.docmd(_b64(authobject(base64.decodebytes(resp))))
        if code in (235, 503):
            return code, resp
        if code == 535:  # the credentials are wrong: trying the next mechanism won't help
            raise CredentialsRejected(code, resp)
        raise smtplib.SMTPAuthenticationError(code, resp)

    def auth_cram_md5(self, challenge=None):  # type: ignore[no-untyped-def]
        if challenge is None:
            return None
        digest = hmac.HMAC(self.password.encode("utf-8"), challenge, "md5").hexdigest()
        return f"{self.user} {digest}"

    @property
    def encrypted(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket)


class _Refusal(smtplib.SMTPResponseException):
    """The server answered a command with something other than success."""


def _run_quietly(work: Callable[[], None]) -> None:
    """Run side work between a write and its reply; it must never desync the session."""
    try:
        work()
    except Exception:
        log.exception("work done while waiting for the server failed")


def _dot_stuff(data: bytes) -> bytes:
    """DATA's transparency rule (RFC 5321 4.5.2) and its terminator."""
    body = re.sub(rb"(?m)^\.", b"..", data)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


class Connection:
    """An open, encrypted and authenticated SMTP session with one server."""

    def __init__(self, smtp: _SMTP, server: ServerAddress, secret: Secret) -> None:
        self._smtp = smtp
        self.server = server
        self._secret = secret

    def send(self, from_addr: str, to_addrs: Sequence[str], data: bytes,
             deadline: Deadline | None = None,
             while_waiting: Callable[[], None] | None = None) -> dict[str, tuple[int, str]]:
        """Send one message serialised with CRLF line endings.

        Returns the recipients the server refused while it accepted others (with the
        reply code and text). ``while_waiting`` runs after the body is written and before
        its reply is read (the caller prepares its next message in that time). Raises
        DeliveryError when nothing was accepted; after a refusal the session is reset and
        stays usable, after a 421 or a broken connection it is closed (``usable`` turns
        False).
        """
        smtp = self._smtp
        options = smtp.options
        smtp.deadline = deadline or Deadline(options.deadline, options.operation_timeout)
        stage, body_sent = "sender", False
        try:
            code, reply = smtp.mail(from_addr)
            if code != 250:
                raise _Refusal(code, reply)
            stage = "recipient"
            refused: dict[str, tuple[int, str]] = {}
            for address in to_addrs:
                code, reply = smtp.rcpt(address)
                if code not in (250, 251):
                    refused[address] = (code, reply.decode("utf-8", "replace"))
            if len(refused) == len(to_addrs):
                raise _Refusal(min(code for code, _ in refused.values()), b"all refused")
            stage = "data"
            code, reply = smtp.docmd("DATA")
            if code != 354:
                raise _Refusal(code, reply)
            body_sent = True
            smtp.send(_dot_stuff(data))
            if while_waiting is not None:  # the server is busy with the body: use the time
                _run_quietly(while_waiting)
            code, reply = smtp.getreply()
            if code != 250:
                raise _Refusal(code, reply)
            return refused
        except _Refusal as refusal:
            failure = _classify(smtp, stage, refusal, self.server, self._secret)
            failure.code = refusal.smtp_code
            if refusal.smtp_code == 421:
                smtp.close()
            else:
                self._reset()
            raise failure from None
        except (smtplib.SMTPException, OSError) as exc:
            failure = _classify(smtp, stage, exc, self.server, self._secret)
            failure.delivery_unknown = body_sent
            smtp.close()
            raise failure from None

    @property
    def usable(self) -> bool:
        """Still connected and in step with the server (a pool may reuse it)."""
        return self._smtp.sock is not None

    def closed_by_server(self) -> bool:
        """For an idle connection: anything readable is the server's EOF or its 421."""
        sock = self._smtp.sock
        if sock is None:
            return True
        try:
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def _reset(self) -> None:
        try:
            code, _reply = self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            self._smtp.close()

    def close(self) -> None:
        """Say QUIT politely if we can; the socket is closed either way."""
        smtp = self._smtp
        try:
            if smtp.sock is not None and not smtp.deadline.tripped:
                smtp.deadline = Deadline(smtp.options.operation_timeout,
                                         smtp.options.operation_timeout)
                smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            smtp.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def connect(server: ServerAddress, secret: Secret, options: TransportOptions,
            deadline: Deadline | None = None) -> Connection:
    """Resolve, connect, secure (SMTPS or mandatory STARTTLS), EHLO and authenticate."""
    deadline = deadline or Deadline(options.deadline, options.operation_timeout)
    security = security_for_port(server.port)
    smtp = _SMTP(server.server_name, security, options, deadline)
    smtp.stage = "resolve"
    try:
        addresses = list(options.resolver(server.server_name, server.port))
        if not addresses:
            raise OSError("the resolver returned no address")
    except Exception as exc:  # the system resolver or a host hook
        raise _classify(smtp, "resolve", exc, server, secret) from None
    refused = [address for address in addresses
               if not _destination_allowed(options, server, address)]
    if refused:  # one bad address makes the whole name suspect
        log.warning("refusing to connect to %s:%s: it resolves to %s", server.server_name,
                    server.port, ", ".join(refused))
        raise options.fail("destination")
    try:
        _open(smtp, addresses, server.port)
        smtp.stage = "connect"
        smtp.ehlo()
        if security is Security.STARTTLS:
            smtp.stage = "tls"
            if not smtp.has_extn("starttls"):
                raise smtplib.SMTPNotSupportedError("server does not offer STARTTLS")
            smtp.starttls(context=options.ssl_context)
            smtp.ehlo()
        smtp.stage = "auth"
        if not smtp.encrypted:  # belt and braces: credentials never cross in clear
            smtp.stage = "tls"
            raise smtplib.SMTPNotSupportedError("refusing to authenticate in clear")
        smtp.login(server.username, secret.reveal())
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        failure = _classify(smtp, smtp.stage, exc, server, secret)
        smtp.close()
        raise failure from None
    return Connection(smtp, server, secret)


def _destination_allowed(options: TransportOptions, server: ServerAddress,
                         address: str) -> bool:
    """Ask the policy; an error while asking means no."""
    try:
        return options.destination_allowed(server.server_name, server.port, address) is True
    except Exception:
        log.exception("the destination check failed for %s", address)
        return False


def _open(smtp: _SMTP, addresses: list[str], port: int) -> None:
    """Connect to the first address that answers, within the deadline."""
    last_error: OSError = OSError("no address to connect to")
    for address in addresses:
        try:
            smtp.connect(address, port)
            return
        except ssl.SSLError:
            raise
        except OSError as exc:
            if smtp.deadline.tripped or smtp.stage == "tls":
                raise
            last_error = exc
            smtp.close()
    raise last_error


def _classify(smtp: _SMTP, stage: str, exc: BaseException, server: ServerAddress,
              secret: Secret) -> DeliveryError:
    """Log what really happened, scrubbed, and return the fixed failure for the stage."""
    if smtp.deadline.tripped or isinstance(exc, TimeoutError):
        stage = "timeout"
    log.warning(
        "SMTP %s failed at stage %s for %s:%s: %s",
        "exchange", stage, server.server_name, server.port,
        scrub(f"{type(exc).__name__}: {exc}", server.username, secret),
    )
    return smtp.options.fail(stage)


def scrub(text: str, username: str, secret: Secret) -> str:
    """Remove the password, and the base64 forms AUTH would carry, from a log text."""
    password = secret.reveal()
    if not password:
        return text
    forms = {
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(f"\0{username}\0{password}".encode()).decode(),
    }
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "**********")
    return text
