"""Opening an SMTP session with the administrator's server, safely: the port rule, the
settings read from the app config, the deadline, and the steps of connecting (resolve,
destination check, connect, TLS, EHLO, AUTH).

The port rule is :func:`security_for_port`. Certificates are always verified with the
context we are given; STARTTLS is mandatory on its ports and AUTH is only ever sent over
an encrypted socket. Each network operation has a timeout and the whole exchange a
deadline, so a server that drips one byte at a time cannot hold a worker. Failures are
classified (:func:`classify_failure`) into a :class:`DeliveryError` with the stage where they
happened and a fixed message. Every reply is bounded in lines and bytes
(:data:`MAX_REPLY_LINES`, :data:`MAX_REPLY_BYTES`), so a server that never ends one cannot
grow the process either. The log's WARNING line names only the stage, the server, the
exception's type and reply codes (:func:`describe`); server replies and exception text go
to DEBUG alone, with the password scrubbed out (:func:`scrub`, :class:`Scrubber`).

Split from :mod:`flask_smtp_senders.smtp.transport`, which stays the entry point (it wraps the
session in a Connection and re-exports the public names here), so that what it takes to
reach an authenticated session is read apart from what is sent over it
(:mod:`flask_smtp_senders.smtp.transactions`). This module knows nothing of Flask.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import logging
import re
import secrets
import smtplib
import socket
import ssl
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..crypto import Secret
from ..destinations import DestinationPolicy, is_metadata_name
from ..domain import Security, ServerAddress, security_for_port
from ..errors import DeliveryError, SMTPTimeout
from .diagnostics import NO_TRACE, Trace

#: The transport's one log, whichever of its modules writes: docs/configuration.md names
#: it, and hosts route or silence it by that name.
log = logging.getLogger("flask_smtp_senders.transport")

#: Bounds on one reply (the greeting, EHLO's, any command's, pipelined or not). Why: the
#: deadline bounds time, not memory; smtplib's getreply() keeps every continuation line of
#: a reply in a list with no limit, so a server that never ends a multi-line reply grew
#: the process by gigabytes within one exchange. Real replies are far below these (a
#: generous EHLO is some 20 lines and 1 KiB), and no reply we act on needs more. Passing
#: either one fails the exchange at once (:class:`ReplyTooLarge`, the connection closed).
MAX_REPLY_LINES = 100
MAX_REPLY_BYTES = 64 * 1024
#: One reply line, CRLF included: smtplib's own limit (_MAXLINE), which RFC 5321's 512
#: octets (s4.5.3.1.5) would be too strict for: real servers write longer lines.
MAX_REPLY_LINE = 8192

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

    def __init__(self, sock: socket.socket, owner: SMTPClient) -> None:
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


class ReplyTooLarge(smtplib.SMTPException):
    """A reply passed :data:`MAX_REPLY_LINES`, :data:`MAX_REPLY_BYTES` or one of its
    lines :data:`MAX_REPLY_LINE`: a protocol error; what was read of it is dropped."""

    def __init__(self) -> None:
        super().__init__(f"the server's reply passed {MAX_REPLY_LINES} lines, "
                         f"{MAX_REPLY_BYTES} bytes or {MAX_REPLY_LINE} bytes in one line")


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


class SMTPClient(smtplib.SMTP):
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
            try:
                code, reply = self.getreply()
            except ReplyTooLarge:  # a greeting that never ends: no SMTP service here
                self.stage = "connect"
                raise
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

    def getreply(self) -> tuple[int, bytes]:
        """smtplib's getreply(), through our deadline reader and within the reply bounds.

        Ours, not smtplib's with a limit around it: smtplib keeps every continuation line
        of a reply (only each line is limited), and its internals differ between the
        Python versions we support. Returns (code, text) as smtplib does: the text of
        each line after its code, stripped, joined with LF; code -1 when a line has none.
        Raises ReplyTooLarge (the connection closed) once a bound is passed, and
        SMTPServerDisconnected (closed) when the connection ends or a read fails.
        """
        if self.file is None:
            if self.sock is None:
                raise smtplib.SMTPServerDisconnected("please run connect() first")
            self.file = _DeadlineReader(self.sock, self)  # type: ignore[assignment]
        reader = self.file
        lines: list[bytes] = []
        size = 0
        while True:
            try:
                line = reader.readline(MAX_REPLY_LINE + 1)
            except OSError as exc:
                self.close()
                raise smtplib.SMTPServerDisconnected(
                    f"Connection unexpectedly closed: {type(exc).__name__}") from exc
            if not line:
                self.close()
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            size += len(line)
            if (len(line) > MAX_REPLY_LINE or size > MAX_REPLY_BYTES
                    or len(lines) >= MAX_REPLY_LINES):
                lines.clear()
                self.close()
                raise ReplyTooLarge
            lines.append(line[4:].strip(b" \t\r\n"))
            try:
                code = int(line[:3])
            except ValueError:
                code = -1
                break
            if line[3:4] != b"-":
                break
        return code, b"\n".join(lines)

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
                 deadline: Deadline, trace: Trace) -> SMTPClient:
    """Resolve, connect, secure (SMTPS or mandatory STARTTLS), EHLO and authenticate, for
    :func:`flask_smtp_senders.smtp.transport.connect`; ``trace`` records the stages and why it
    failed (a DeliveryError for the stage)."""
    security = security_for_port(server.port)
    trace.begin(server.port, starttls_port=security is Security.STARTTLS)
    smtp = SMTPClient(server.server_name, security, options, deadline, trace)
    if is_metadata_name(server.server_name):  # Case G4: not even looked up
        log.warning("refusing to look up %s: a cloud metadata service's name",
                    server.server_name)
        trace.destination_refused(server.server_name)
        raise options.fail("destination")
    smtp.stage = "resolve"
    try:
        with trace.stage("resolve"):
            addresses = list(options.resolver(server.server_name, server.port))
            if not addresses:
                raise OSError("the resolver returned no address")
            trace.fact("Addresses found", str(len(addresses)))
    except Exception as exc:  # the system resolver or a host hook
        raise classify_failure(smtp, "resolve", exc, server, secret) from None
    refused = [address for address in addresses
               if not _destination_allowed(options, server, address)]
    if refused:  # one bad address makes the whole name suspect
        log.warning("refusing to connect to %s:%s: it resolves to %d refused address(es)",
                    server.server_name, server.port, len(refused))
        log.debug("refused addresses of %s:%s: %s", server.server_name, server.port,
                  ", ".join(refused))  # from DNS, which the name's owner writes
        trace.destination_refused(refused[0])
        raise options.fail("destination")
    try:
        _open(smtp, addresses, server.port)
        smtp.stage = "connect"
        _ehlo_and_secure(smtp)
        _authenticate(smtp, server.username, secret)
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        failure = classify_failure(smtp, smtp.stage, exc, server, secret)
        smtp.close()
        raise failure from None
    return smtp


def _ehlo_and_secure(smtp: SMTPClient) -> None:
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


def _authenticate(smtp: SMTPClient, username: str, secret: Secret) -> None:
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
    except Exception:  # the host's hook or policy: its traceback, with no server text
        log.exception("the destination check failed for %s:%s", server.server_name,
                      server.port)
        log.debug("the destination check failed for address %s", address)
        return False


def _open(smtp: SMTPClient, addresses: list[str], port: int) -> None:
    """Connect to the first address that answers, within the deadline."""
    last_error: OSError = OSError("no address to connect to")
    for address in addresses:
        try:
            smtp.connect(address, port)
            return
        except (ssl.SSLError, smtplib.SMTPConnectError, ReplyTooLarge):
            raise  # TLS or the greeting refused, or a reply without end: no other address
        except OSError as exc:
            if smtp.deadline.tripped or smtp.stage == "tls":
                raise
            last_error = exc
            smtp.close()
    raise last_error


def classify_failure(smtp: SMTPClient, stage: str, exc: BaseException, server: ServerAddress,
              secret: Secret | Scrubber) -> DeliveryError:
    """Log what happened, tell the trace, and return the fixed failure for the stage.

    WARNING gets the stage, the server and :func:`describe`'s summary (the exception's
    type and reply codes), never server text: a hostile server can echo the password in
    forms no scrubbing recognises (hex, spaced out, split base64). The exception's text,
    which carries the server's reply, goes to DEBUG only, with the password scrubbed.
    """
    timed_out = smtp.deadline.tripped or isinstance(exc, TimeoutError)
    smtp.trace.failed(exc, timed_out=timed_out, stage=stage)
    if timed_out:
        stage = "timeout"
    log.warning("SMTP exchange failed at stage %s for %s:%s: %s", stage, server.server_name,
                server.port, describe(exc))
    if log.isEnabledFor(logging.DEBUG):
        details = f"{type(exc).__name__}: {exc}"
        log.debug("SMTP %s failed at stage %s for %s:%s: %s", "exchange", stage,
                  server.server_name, server.port,
                  secret.scrub(details) if isinstance(secret, Scrubber)
                  else scrub(details, server.username, secret))
    return smtp.options.fail(stage)


# An enhanced status code (RFC 3463) opening a reply: class.subject.detail.
_ENHANCED = re.compile(rb"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?![^ \t\r\n])")
# An OpenSSL reason code (ssl.SSLError.reason): the library's words, never the peer's.
_SSL_REASON = re.compile(r"[A-Z0-9_]{1,64}")


def describe(exc: BaseException) -> str:
    """What a WARNING may say about a failure: the exception's type, the reply code and
    enhanced status code (``CredentialsRejected 535 5.7.8``), an SSL reason code or an
    errno name; never the exception's text, which may hold the server's."""
    parts = [type(exc).__name__]
    if isinstance(exc, smtplib.SMTPResponseException):
        parts += _reply_codes(exc.smtp_code, exc.smtp_error)
    elif isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = {code for code, _text in exc.recipients.values() if isinstance(code, int)}
        parts += [str(code) for code in sorted(codes)]
    elif isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None)
        if isinstance(reason, str) and _SSL_REASON.fullmatch(reason):
            parts.append(reason)
        verify_code = getattr(exc, "verify_code", None)
        if isinstance(verify_code, int):
            parts.append(f"verify code {verify_code}")
    elif isinstance(exc, OSError) and isinstance(exc.errno, int):
        parts.append(errno.errorcode.get(exc.errno, str(exc.errno)))
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and not isinstance(exc, ssl.SSLError):
        parts.append(f"after {type(cause).__name__}")
    return " ".join(parts)


def _reply_codes(code: object, text: object) -> list[str]:
    """The reply code and, when the reply opens with one of its class, the enhanced code."""
    if not isinstance(code, int) or not 100 <= code <= 999:
        return []
    codes = [str(code)]
    if isinstance(text, str):
        text = text.encode("utf-8", "replace")
    if isinstance(text, bytes):
        enhanced = _ENHANCED.match(text.lstrip(b" \t"))
        if enhanced is not None and enhanced[1] == str(code)[:1].encode():
            codes.append(enhanced[0].decode("ascii"))
    return codes


def _secret_forms(username: str, password: str) -> list[str]:
    """The password as a log text could carry it: as is, and the base64 AUTH sends."""
    forms = {
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(f"\0{username}\0{password}".encode()).decode(),
    }
    return sorted(forms, key=len, reverse=True)


def scrub(text: str, username: str, secret: Secret) -> str:
    """Remove the password, and the base64 forms AUTH would carry, from a log text."""
    password = secret.reveal()
    if not password:
        return text
    for form in _secret_forms(username, password):
        text = text.replace(form, "**********")
    return text


class Scrubber:
    """:func:`scrub` without the password: what a pooled connection keeps for its DEBUG
    log, so that the plaintext is needed only to sign in.

    Holds the length and a keyed BLAKE2b digest (a random key of its own) of each form
    :func:`scrub` removes, and removes any stretch of a text with the same length and
    digest. Slower than :func:`scrub` (one digest per position and form), which is why it
    runs only for DEBUG records, on replies that :data:`MAX_REPLY_BYTES` bounds.
    """

    __slots__ = ("_forms", "_key")

    def __init__(self, username: str, secret: Secret) -> None:
        self._key = secrets.token_bytes(32)
        password = secret.reveal()
        forms = _secret_forms(username, password) if password else []
        self._forms = tuple((len(form), self._digest(form)) for form in forms)

    def _digest(self, text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), key=self._key,
                               digest_size=32).digest()

    def scrub(self, text: str) -> str:
        for length, digest in self._forms:  # the longest first, as scrub() does
            if len(text) < length:
                continue
            kept: list[str] = []
            start = position = 0
            while position <= len(text) - length:
                if self._digest(text[position:position + length]) == digest:
                    kept += [text[start:position], "**********"]
                    position = start = position + length
                else:
                    position += 1
            text = "".join([*kept, text[start:]])
        return text

    def __repr__(self) -> str:
        return "Scrubber(<digests>)"
