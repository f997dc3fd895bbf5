"""Opening an SMTP session with the administrator's server, safely: the port rule, the
settings read from the app config, the deadline, and the steps of connecting (resolve,
destination check, connect, TLS, EHLO, AUTH).

The port rule is :func:`security_for_port`. Certificates are always verified with the
context we are given; STARTTLS is mandatory on its ports and AUTH is only ever sent over
an encrypted socket. Each network operation has a timeout and the whole exchange a
deadline, so a server that drips one byte at a time cannot hold a worker. Failures are
classified (:func:`_classify`) into a :class:`DeliveryError` with the stage where they
happened and a fixed message; server replies and exception text go to the log, with the
password scrubbed out (:func:`scrub`).

Split from :mod:`flask_smtp_senders.transport`, which stays the entry point (it wraps the
session in a Connection and re-exports the public names here), so that what it takes to
reach an authenticated session is read apart from what is sent over it
(:mod:`flask_smtp_senders.pipeline`). This module knows nothing of Flask.
"""

from __future__ import annotations

import base64
import enum
import hmac
import logging
import smtplib
import socket
import ssl
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .crypto import Secret
from .destinations import DestinationPolicy
from .diagnostics import NO_TRACE, Trace
from .errors import DeliveryError, SMTPTimeout

#: The transport's one log, whichever of its modules writes: docs/configuration.md names
#: it, and hosts route or silence it by that name.
log = logging.getLogger("flask_smtp_senders.transport")

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
    """AUTH answered 535: the server refused the Username or Password."""


#: The AUTH mechanisms we speak, most preferred first (smtplib's and aiosmtplib's order).
AUTH_PREFERENCE = ("CRAM-MD5", "PLAIN", "LOGIN")
#: At most this many 334 challenges in one AUTH exchange (smtplib allows as many).
MAX_CHALLENGES = 5


def _auth_answer(mechanism: str, challenge_number: int, challenge: bytes, username: str,
                 password: str) -> str | None:
    """Our base64 answer to the nth 334 of an exchange; None when the mechanism has none.

    LOGIN goes by the count, never by the challenge text ("Username:" is only a custom):
    the first 334 gets the username, the second the password. CRAM-MD5 (RFC 2195) answers
    its one challenge with ``user hexdigest``. PLAIN sent everything in its AUTH line.
    """
    if mechanism == "LOGIN" and challenge_number <= 2:
        return _b64(username if challenge_number == 1 else password)
    if mechanism == "CRAM-MD5" and challenge_number == 1:
        digest = hmac.new(password.encode("utf-8"), base64.b64decode(challenge, validate=True),
                          "md5").hexdigest()
        return _b64(f"{username} {digest}")
    return None


class _SMTP(smtplib.SMTP):
    """smtplib.SMTP that connects to a resolved address, verifies the certificate against
    the Server Name, and bounds every read and write by a :class:`Deadline`."""

    def __init__(self, server_name: str, security: Security, options: TransportOptions,
                 deadline: Deadline, trace: Trace = NO_TRACE) -> None:
        super().__init__(local_hostname=options.ehlo_name, timeout=options.operation_timeout)
        self._host = server_name  # what TLS verifies, whatever address we connect to
        self.security = security
        self.options = options
        self.deadline = deadline
        self.stage = "connect"
        #: Where stages and failures are reported (NO_TRACE: nowhere).
        self.trace = trace

    def connect(self, host: str = "localhost", port: int = 0,
                source_address: tuple[str, int] | None = None) -> tuple[int, bytes]:
        """smtplib's connect(), with the server's greeting read in the ehlo stage (on an
        SMTPS port it comes after TLS) and judged: anything but 220 ends the session
        (RFC 5321 s3.1) with no EHLO, credentials or message, as a failure to connect."""
        if source_address:
            self.source_address = source_address
        sys.audit("smtplib.connect", self, host, port)
        self.sock = self._get_socket(host, port, self.timeout)
        self.file = None
        with self.trace.stage("ehlo"):
            code, reply = self.getreply()
            self.trace.greeted(code)
            if code != 220:
                self.stage = "connect"
                if code == 554:  # "no SMTP service here": the client should QUIT
                    self._quit_quietly()
                self.close()  # after a 421 (or anything else) the server is leaving
                raise smtplib.SMTPConnectError(code, reply)
        return code, reply

    def _quit_quietly(self) -> None:
        """QUIT within the deadline, best effort: how it goes is not what failed."""
        tripped = self.deadline.tripped
        try:
            self.docmd("QUIT")
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            self.deadline.tripped = tripped

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        self.stage = "connect"
        trace = self.trace
        with trace.stage("connect"):
            sock = socket.create_connection((host, port), timeout=self.deadline.next_timeout())
            trace.connected(host, port)
        if self.security is Security.SMTPS:
            self.stage = "tls"
            with trace.stage("tls"):
                try:
                    sock.settimeout(self.deadline.next_timeout())
                    sock = self.options.ssl_context.wrap_socket(sock,
                                                                server_hostname=self._host)
                except BaseException:
                    sock.close()
                    raise
                trace.tls(sock)
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

    def sign_in(self, username: str, password: str) -> None:
        """One AUTH exchange with the mechanism we prefer among those offered.

        Ours rather than smtplib's login(): that one retries the same password with every
        other mechanism after any refusal, and its helpers differ between the Python
        versions we support. Only a 504 (mechanism not recognised) moves on to the next
        mechanism. Credentials are UTF-8 (RFC 4616), so any password works.
        """
        if not self.has_extn("auth"):
            raise smtplib.SMTPNotSupportedError("the server does not offer AUTH")
        offered = self.esmtp_features["auth"].upper().split()
        mechanisms = [m for m in AUTH_PREFERENCE if m in offered]
        if not mechanisms:
            raise smtplib.SMTPException("no AUTH mechanism we support is offered")
        for mechanism in mechanisms:
            code, reply = self._auth_exchange(mechanism, username, password)
            if code != 504:
                break
        self.trace.fact("Reply code", str(int(code)))
        if code in (235, 503):  # 503: already signed in
            return
        if code == 535:
            raise CredentialsRejected(code, reply)
        raise smtplib.SMTPAuthenticationError(code, reply)

    def _auth_exchange(self, mechanism: str, username: str,
                       password: str) -> tuple[int, bytes]:
        """AUTH with ``mechanism`` and its 334 rounds; the final reply."""
        self.trace.fact("Mechanism", mechanism)  # one of ours, never the server's text
        if mechanism == "PLAIN":  # RFC 4616, as an initial response (RFC 4954)
            code, reply = self.docmd("AUTH", "PLAIN " + _b64(f"\0{username}\0{password}"))
        else:
            code, reply = self.docmd("AUTH", mechanism)
        challenges = 0
        while code == 334:
            challenges += 1
            answer = (_auth_answer(mechanism, challenges, reply, username, password)
                      if challenges <= MAX_CHALLENGES else None)
            if answer is None:  # a challenge more than the mechanism has: a failure
                raise smtplib.SMTPAuthenticationError(code, reply)
            code, reply = self.docmd(answer)
        return code, reply

    @property
    def encrypted(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket)


def open_session(server: ServerAddress, secret: Secret, options: TransportOptions,
                 deadline: Deadline, trace: Trace) -> _SMTP:
    """Resolve, connect, secure (SMTPS or mandatory STARTTLS), EHLO and authenticate, for
    :func:`flask_smtp_senders.transport.connect`; ``trace`` records the stages and why it
    failed (a DeliveryError for the stage)."""
    security = security_for_port(server.port)
    trace.begin(server.port, starttls_port=security is Security.STARTTLS)
    smtp = _SMTP(server.server_name, security, options, deadline, trace)
    smtp.stage = "resolve"
    try:
        with trace.stage("resolve"):
            addresses = list(options.resolver(server.server_name, server.port))
            if not addresses:
                raise OSError("the resolver returned no address")
            trace.fact("Addresses found", str(len(addresses)))
    except Exception as exc:  # the system resolver or a host hook
        raise _classify(smtp, "resolve", exc, server, secret) from None
    refused = [address for address in addresses
               if not _destination_allowed(options, server, address)]
    if refused:  # one bad address makes the whole name suspect
        log.warning("refusing to connect to %s:%s: it resolves to %s", server.server_name,
                    server.port, ", ".join(refused))
        trace.destination_refused(refused[0])
        raise options.fail("destination")
    try:
        _open(smtp, addresses, server.port)
        smtp.stage = "connect"
        _ehlo_and_secure(smtp)
        _authenticate(smtp, server.username, secret)
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        failure = _classify(smtp, smtp.stage, exc, server, secret)
        smtp.close()
        raise failure from None
    return smtp


def _ehlo_and_secure(smtp: _SMTP) -> None:
    """EHLO; on a STARTTLS port, STARTTLS (mandatory: no fallback to clear) and EHLO again."""
    trace = smtp.trace
    starttls = smtp.security is Security.STARTTLS
    with trace.stage("ehlo"):
        smtp.ehlo()
        trace.ehlo(smtp.esmtp_features, before_starttls=starttls)
    if not starttls:
        return
    smtp.stage = "tls"
    with trace.stage("tls"):
        if not smtp.has_extn("starttls"):
            raise smtplib.SMTPNotSupportedError("server does not offer STARTTLS")
        smtp.starttls(context=smtp.options.ssl_context)
        if isinstance(smtp.sock, ssl.SSLSocket):
            trace.tls(smtp.sock)
    with trace.stage("ehlo"):
        smtp.ehlo()
        trace.ehlo(smtp.esmtp_features, before_starttls=False)


def _authenticate(smtp: _SMTP, username: str, secret: Secret) -> None:
    smtp.stage = "auth"
    if not smtp.encrypted:  # belt and braces: credentials never cross in clear
        smtp.stage = "tls"
        raise smtplib.SMTPNotSupportedError("refusing to authenticate in clear")
    with smtp.trace.stage("auth"):
        smtp.sign_in(username, secret.reveal())


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
        except (ssl.SSLError, smtplib.SMTPConnectError):  # TLS, or the greeting, refused
            raise
        except OSError as exc:
            if smtp.deadline.tripped or smtp.stage == "tls":
                raise
            last_error = exc
            smtp.close()
    raise last_error


def _classify(smtp: _SMTP, stage: str, exc: BaseException, server: ServerAddress,
              secret: Secret) -> DeliveryError:
    """Log what really happened, scrubbed, tell the trace, and return the fixed failure
    for the stage."""
    timed_out = smtp.deadline.tripped or isinstance(exc, TimeoutError)
    smtp.trace.failed(exc, timed_out=timed_out, stage=stage)
    if timed_out:
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
