"""The transport's settings, read once from the app config: the TLS context, the timeouts,
the EHLO name, the fixed user messages, and how a server name is resolved and which
addresses may be connected to.

Why apart: every part of the exchange (opening the session, the transactions, the
failures) reads them, and none of them should own them. This module knows nothing of
Flask; the extension builds a :class:`TransportOptions` from its config.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..destinations import DestinationPolicy
from ..errors import DeliveryError, SMTPTimeout


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
        """The fixed DeliveryError (SMTPTimeout for "timeout") of ``stage``."""
        error_type = SMTPTimeout if stage == "timeout" else DeliveryError
        return error_type(stage, self.messages[stage])
