"""Opening an SMTP session with the administrator's server, safely: resolve the Server
Name, check every address against the destination policy, connect, secure (SMTPS, or
STARTTLS, mandatory on its ports), EHLO and authenticate with a password or an OAuth2
access token, all within one deadline.

Why apart from what is sent over the session (:mod:`flask_smtp_senders.smtp.transactions`):
what it takes to reach an authenticated session is read on its own. The port rule is
:func:`~flask_smtp_senders.domain.security_for_port`; certificates are always verified
with the context we are given, and AUTH is only ever sent over an encrypted socket.
Failures become the fixed DeliveryError of their stage
(:func:`~flask_smtp_senders.smtp.failures.classify_failure`).
:func:`flask_smtp_senders.smtp.transport.connect` is the entry point. This module knows
nothing of Flask.
"""

from __future__ import annotations

import smtplib
import ssl

from ..deadline import Deadline
from ..destinations import is_metadata_name
from ..domain import Security, ServerAddress, security_for_port
from ..sealed import AccessToken, Credential
from .auth import check_bearer
from .client import SMTPClient
from .failures import classify_failure, log
from .options import TransportOptions
from .replies import ReplyTooLarge
from .trace import Trace


def open_session(server: ServerAddress, secret: Credential, options: TransportOptions,
                 deadline: Deadline, trace: Trace) -> SMTPClient:
    """Resolve, connect, secure (SMTPS or mandatory STARTTLS), EHLO and authenticate, for
    :func:`flask_smtp_senders.smtp.transport.connect`; ``trace`` records the stages and why it
    failed (a DeliveryError for the stage). An access token that is not an RFC 6750 bearer
    token (or a username with a control character beside one) raises ValueError before
    anything else: it is the caller's mistake, not the server's."""
    if isinstance(secret, AccessToken):
        check_bearer(server.username, secret.reveal())
    security = security_for_port(server.port)
    trace.begin(server.port, starttls_port=security is Security.STARTTLS,
                server_name=server.server_name)
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


def _authenticate(smtp: SMTPClient, username: str, secret: Credential) -> None:
    smtp.stage = "auth"
    if not smtp.encrypted:  # belt and braces: credentials never cross in clear
        smtp.stage = "tls"
        raise smtplib.SMTPNotSupportedError("refusing to authenticate in clear")
    with smtp.trace.stage("auth"):
        smtp.sign_in(username, secret)


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
