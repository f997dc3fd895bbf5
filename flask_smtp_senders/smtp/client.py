"""The SMTP client: smtplib.SMTP connecting to an address we resolved and checked,
verifying the certificate against the Server Name, reading bounded replies and writing
within the exchange's deadline, and signing in with one AUTH exchange.

Why a subclass of smtplib's: its EHLO, STARTTLS, RSET and QUIT are used as they are; what
is ours is only what had to be (the socket, the greeting's judgement, reading replies,
writing under the deadline, AUTH). :mod:`flask_smtp_senders.smtp.session` drives it to an
authenticated session. This module knows nothing of Flask.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import sys

from ..deadline import Deadline
from ..domain import Security
from ..sealed import AccessToken, Credential
from .auth import (
    MAX_CHALLENGES,
    OAUTH_PREFERENCE,
    NoCommonMechanism,
    OAuthNotOffered,
    answer,
    auth_command,
    check_final_reply,
    mechanisms_to_try,
    token_error_status,
)
from .facts import token_problem
from .options import TransportOptions
from .replies import ReplyReader, ReplyTooLarge
from .trace import NO_TRACE, Trace


class SMTPClient(smtplib.SMTP):
    """smtplib.SMTP that connects to a resolved address, verifies the certificate against
    the Server Name, and bounds every read and write by a :class:`Deadline`."""

    def __init__(self, server_name: str, security: Security, options: TransportOptions,
                 deadline: Deadline, trace: Trace = NO_TRACE) -> None:
        super().__init__(local_hostname=options.ehlo_name, timeout=options.operation_timeout)
        self._host = server_name  # what TLS verifies, whatever address we connect to
        #: The port connected to (OAUTHBEARER names it).
        self.server_port = 0
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
        self.server_port = port
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
        """smtplib's getreply(), through our deadline-bounded reader and within the reply
        bounds (:mod:`flask_smtp_senders.smtp.replies`): (code, text) as smtplib returns
        them. Raises ReplyTooLarge or SMTPServerDisconnected with the connection closed.
        """
        reader = self.file
        if reader is None:
            if self.sock is None:
                raise smtplib.SMTPServerDisconnected("please run connect() first")
            reader = self.file = ReplyReader(self.sock, self)
        try:
            return reader.reply()
        except (ReplyTooLarge, smtplib.SMTPServerDisconnected):
            self.close()
            raise

    def send(self, s: bytes | str) -> None:
        """smtplib's send(), within the deadline."""
        if self.sock is not None:
            self.sock.settimeout(self.deadline.next_timeout())
        try:
            super().send(s)
        except smtplib.SMTPServerDisconnected as exc:
            if isinstance(exc.__context__, TimeoutError):
                self.deadline.tripped = True
            raise

    def sign_in(self, username: str, credential: Credential) -> None:
        """One AUTH exchange with the mechanism we prefer among those offered for the
        credential (a password's, or an access token's:
        :mod:`flask_smtp_senders.smtp.auth`); only a 504 (mechanism not recognised) moves
        on to the next mechanism. Keeps neither the username nor the credential."""
        token = isinstance(credential, AccessToken)
        if not self.has_extn("auth"):
            raise smtplib.SMTPNotSupportedError("the server does not offer AUTH")
        mechanisms = mechanisms_to_try(self.esmtp_features["auth"], token=token)
        if not mechanisms:
            if token:
                raise OAuthNotOffered("neither XOAUTH2 nor OAUTHBEARER is offered")
            raise NoCommonMechanism("no AUTH mechanism we support is offered")
        for mechanism in mechanisms:
            code, reply = self._auth_exchange(mechanism, username, credential.reveal())
            if code != 504:
                break
        self.trace.fact("Reply code", str(int(code)))
        check_final_reply(code, reply, token=token)

    def _auth_exchange(self, mechanism: str, username: str,
                       secret: str) -> tuple[int, bytes]:
        """AUTH with ``mechanism`` and its 334 rounds; the final reply."""
        self.trace.fact("Mechanism", mechanism)  # one of ours, never the server's text
        code, reply = self.docmd("AUTH", auth_command(mechanism, username, secret,
                                                      host=self._host,
                                                      port=self.server_port))
        challenges = 0
        while code == 334:
            challenges += 1
            if mechanism in OAUTH_PREFERENCE and challenges == 1:  # the error challenge
                self.trace.fact("Problem", token_problem(token_error_status(reply)))
            response = (answer(mechanism, challenges, reply, username, secret)
                        if challenges <= MAX_CHALLENGES else None)
            if response is None:  # a challenge more than the mechanism has: a failure
                raise smtplib.SMTPAuthenticationError(code, reply)
            code, reply = self.docmd(response)
        return code, reply

    @property
    def encrypted(self) -> bool:
        """The socket is TLS (SMTPS, or after STARTTLS)."""
        return isinstance(self.sock, ssl.SSLSocket)
