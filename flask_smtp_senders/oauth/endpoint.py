"""POST a form to an OAuth2 token endpoint, as safely as the SMTP side connects.

Why this care: the token URL is a destination an administrator chose, like a Server
Name, and the request carries a client secret or a signed assertion. So: https only;
the host is refused before lookup if it names a metadata service; it is resolved once
and every address judged (one refused address refuses the name, with no connection);
the connection goes to a judged address, never to a second lookup; TLS is verified
against the URL's name with the context we are given; no proxy from the environment,
no redirect followed; the reply is capped; and the whole exchange, resolve to last
byte, is bounded by one deadline (:mod:`.http11` says how). Failures are
:class:`~.errors.TokenError` with their stage and advice, never the server's text.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from ..deadline import Deadline
from ..destinations import is_metadata_name, parse
from ..https_urls import TokenURL, parse_https_url
from . import advice
from .errors import TokenError
from .http11 import HTTPReply, ResponseTooLarge, read_reply, request_bytes, send_all

__all__ = ["EndpointOptions", "HTTPReply", "post_form"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EndpointOptions:
    """How token requests go out: the TLS context (verifying), the time they may take
    (``deadline`` for the whole exchange, ``operation_timeout`` for each connect, read
    and write), the resolver (name, port -> addresses; raises OSError), the destination
    check (name, port, address -> may we connect?) and the largest reply read."""

    ssl_context: ssl.SSLContext
    deadline: float
    operation_timeout: float
    resolver: Callable[[str, int], Sequence[str]]
    destination_allowed: Callable[[str, int, str], bool]
    max_response: int = 65536


def post_form(url: str, form: Mapping[str, str], options: EndpointOptions,
              headers: Mapping[str, str] | None = None) -> HTTPReply:
    """POST ``form`` (application/x-www-form-urlencoded) to ``url`` and return the reply
    of any status but a redirect (an IP address in the URL is not looked up, but judged
    all the same). Raises TokenError (stage url, resolve, destination,
    connect, tls, http, response or timeout), and ValueError for a request header that
    may not be sent."""
    deadline = Deadline(options.deadline, options.operation_timeout)
    try:
        target = parse_https_url(url)
    except ValueError:
        raise _failure("url") from None
    request = request_bytes(target, urlencode(form).encode("ascii"), headers or {})
    addresses = _judged_addresses(target, options, deadline)
    sock = _connect(target, addresses, options, deadline)
    try:
        send_all(sock, request, deadline)
        reply = read_reply(sock, deadline, options.max_response)
    except TimeoutError:
        raise _failure("timeout") from None
    except ResponseTooLarge:
        raise _failure("response") from None
    except ssl.SSLError as exc:
        raise _failure("tls", advice.for_tls(exc)) from None
    except (http.client.HTTPException, OSError) as exc:
        log.debug("the token endpoint's reply could not be read: %s", type(exc).__name__)
        raise _failure("http") from None
    finally:
        sock.close()
    if 300 <= reply.status < 400:
        raise _failure("http", advice.for_status(reply.status), reply.status)
    return reply


def _failure(stage: str, key: str | None = None, status: int | None = None) -> TokenError:
    return TokenError(stage, status=status, advice=key or advice.STAGE_ADVICE[stage])


def _judged_addresses(target: TokenURL, options: EndpointOptions,
                      deadline: Deadline) -> list[str]:
    """The host's addresses (one lookup, none for an IP address), every one allowed."""
    if not target.ip and is_metadata_name(target.host):
        log.warning("refusing to look up %s: a cloud metadata service's name", target.host)
        raise _failure("destination")
    if target.ip:
        addresses = [target.host]
    else:
        try:
            addresses = [str(a) for a in options.resolver(target.host, target.port)]
            deadline.next_timeout()
        except TimeoutError:
            raise _failure("timeout") from None
        except Exception:  # the system resolver or the host's hook
            log.debug("the token endpoint's host %s could not be resolved", target.host,
                      exc_info=True)
            raise _failure("resolve") from None
        if not addresses:
            raise _failure("resolve")
    refused = [a for a in addresses if not _allowed(target, a, options)]
    if refused:  # one bad address makes the whole name suspect
        log.warning("refusing to connect to token endpoint %s:%s: it resolves to %d "
                    "refused address(es)", target.host, target.port, len(refused))
        log.debug("refused addresses of %s: %s", target.host, ", ".join(refused))
        raise _failure("destination")
    return addresses


def _allowed(target: TokenURL, address: str, options: EndpointOptions) -> bool:
    """Ask the policy about an IP address (anything else is refused: connecting to it
    would look it up again); an error while asking means no."""
    try:
        parse(address)
    except ValueError:
        return False
    try:
        return options.destination_allowed(target.host, target.port, address) is True
    except Exception:
        log.exception("the destination check failed for token endpoint %s:%s",
                      target.host, target.port)
        return False


def _connect(target: TokenURL, addresses: list[str], options: EndpointOptions,
             deadline: Deadline) -> ssl.SSLSocket:
    """TLS to the first judged address that answers, verified against the URL's name."""
    last: OSError = OSError("no address to connect to")
    for address in addresses:
        try:
            sock = _tcp(address, target.port, deadline)
        except OSError as exc:  # refused, unreachable, or no answer in time: the next
            last = exc
            continue
        try:
            sock.settimeout(deadline.next_timeout())
            return options.ssl_context.wrap_socket(sock, server_hostname=target.host)
        except TimeoutError:
            sock.close()
            raise _failure("timeout") from None
        except (ssl.SSLError, ssl.CertificateError, OSError, ValueError) as exc:
            sock.close()
            log.debug("TLS with token endpoint %s failed: %s", target.host,
                      type(exc).__name__)
            raise _failure("tls", advice.for_tls(exc)) from None
    log.debug("could not connect to token endpoint %s:%s: %s", target.host, target.port,
              type(last).__name__)
    raise _failure("timeout" if isinstance(last, TimeoutError) else "connect")


def _tcp(address: str, port: int, deadline: Deadline) -> socket.socket:
    """A TCP connection to an address (no lookup: it is an IP address)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    timeout = deadline.next_timeout()  # TimeoutError once time is up: no more tries
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock
