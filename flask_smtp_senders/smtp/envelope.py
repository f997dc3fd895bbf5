"""The bytes of a message transaction, built before anything is written: MAIL FROM (with
its ESMTP parameters), RCPT TO, DATA, and the dot-stuffed body; and the terms this server
takes a message on (SMTPUTF8, 8BITMIME or the 7-bit form).

Why apart: a message that cannot be written to this server (an address that is not an
SMTP command, SMTPUTF8 or 8-bit octets the server lacks) must fail here, whole, so that
the session never holds a half-written transaction. This module knows nothing of Flask.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Callable, Container, Sequence


class Unsendable(ValueError):
    """A message that cannot be written to this server: an envelope that is not SMTP
    commands (none or a bad address, a line break), an address needing SMTPUTF8 the
    server lacks, 8-bit octets it cannot take; ``stage`` says which part, ``reason`` the
    user message (a key of TransportOptions.messages) when it is not the stage's own. The
    address is left out of the message."""

    def __init__(self, stage: str, reason: str | None = None) -> None:
        super().__init__(f"the {stage} cannot be written to this server"
                         + (f" ({reason})" if reason else ""))
        self.stage = stage
        self.reason = reason


# A plain dot-atom address, which smtplib.quoteaddr() would only put in angle brackets
# (it parses every address first: ~10 us, twice per message at least).
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*")


def _command_line(verb: str, address: str, stage: str, params: str = "",
                  utf8: bool = False) -> bytes:
    if not address.isprintable():  # quoteaddr() would drop a CR or LF: another address
        raise Unsendable(stage)
    quoted = f"<{address}>" if _PLAIN_ADDRESS.fullmatch(address) else smtplib.quoteaddr(address)
    line = f"{verb}:{quoted}{params}"
    if "\r" in line or "\n" in line or not line.isprintable() or not (utf8 or line.isascii()):
        raise Unsendable(stage)
    return f"{line}\r\n".encode("utf-8" if utf8 else "ascii")


def envelope_lines(from_addr: str, to_addrs: Sequence[str],
                   params: Sequence[str] = ()) -> list[bytes]:
    """MAIL (with its ESMTP parameters), one RCPT per recipient and DATA, as the bytes
    smtplib's mail(), rcpt() and docmd("DATA") write; UTF-8 addresses only with SMTPUTF8
    among the parameters (RFC 6531). Built before anything is sent, so a bad address
    never leaves a half-written transaction behind."""
    if not to_addrs:
        raise Unsendable("recipient")
    utf8 = "SMTPUTF8" in params
    mail_params = "".join(f" {param}" for param in params)
    return [_command_line("mail FROM", from_addr, "sender", mail_params, utf8),
            *(_command_line("rcpt TO", address, "recipient", "", utf8)
              for address in to_addrs),
            b"DATA\r\n"]


def dot_stuff(data: bytes) -> bytes:
    """DATA's transparency rule (RFC 5321 4.5.2) and its terminator."""
    body = re.sub(rb"(?m)^\.", b"..", data)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


def wire_terms(features: Container[str], data: bytes, smtputf8: bool,
               seven_bit: Callable[[], bytes] | None) -> tuple[bytes, tuple[str, ...]]:
    """The body and MAIL parameters for a server offering ``features`` (smtplib's
    ``esmtp_features``): SMTPUTF8 when the message needs it (RFC 6531: none without the
    server's word), BODY=8BITMIME for 8-bit octets when the server offers it (RFC 6152),
    else the 7-bit re-encoding, never raw 8-bit octets to a server that did not ask for
    them."""
    params: tuple[str, ...] = ()
    if smtputf8:
        if "smtputf8" not in features:
            raise Unsendable("sender", "smtputf8")
        params = ("SMTPUTF8",)
    if data.isascii():
        return data, params
    if smtputf8 or "8bitmime" in features:
        return data, (*params, "BODY=8BITMIME")
    data = seven_bit() if seven_bit is not None else data
    if not data.isascii():  # 8-bit headers: no transfer encoding can carry those
        raise Unsendable("data", "eight_bit")
    return data, params
