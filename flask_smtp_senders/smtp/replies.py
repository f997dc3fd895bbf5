"""Reading the server's replies, bounded: every recv under the exchange's deadline, every
reply under :data:`MAX_REPLY_LINES` lines and :data:`MAX_REPLY_BYTES` bytes.

Why: the deadline bounds time, not memory; smtplib's getreply() keeps every continuation
line of a reply in a list with no limit, so a server that never ended a multi-line reply
grew the process by gigabytes within one exchange. Ours, not smtplib's with a limit around
it, also because its internals differ between the Python versions we support. Real
replies are far below the bounds (a generous EHLO is some 20 lines and 1 KiB), and no
reply we act on needs more. This module knows nothing of Flask.
"""

from __future__ import annotations

import smtplib
import socket
from typing import Protocol

from ..deadline import Deadline

#: Bounds on one reply (the greeting, EHLO's, any command's, pipelined or not). Passing
#: either one fails the exchange at once (:class:`ReplyTooLarge`, the connection closed).
MAX_REPLY_LINES = 100
MAX_REPLY_BYTES = 64 * 1024
#: One reply line, CRLF included: smtplib's own limit (_MAXLINE), which RFC 5321's 512
#: octets (s4.5.3.1.5) would be too strict for: real servers write longer lines.
MAX_REPLY_LINE = 8192
# What one line may take from the buffer: one byte more than a line may have, to tell.
_LINE_TAKE = MAX_REPLY_LINE + 1


class ReplyTooLarge(smtplib.SMTPException):
    """A reply passed :data:`MAX_REPLY_LINES`, :data:`MAX_REPLY_BYTES` or one of its
    lines :data:`MAX_REPLY_LINE`: a protocol error; what was read of it is dropped."""

    def __init__(self) -> None:
        super().__init__(f"the server's reply passed {MAX_REPLY_LINES} lines, "
                         f"{MAX_REPLY_BYTES} bytes or {MAX_REPLY_LINE} bytes in one line")


class _Timed(Protocol):
    #: The current exchange's deadline (the owner replaces it per message).
    deadline: Deadline


class ReplyReader:
    """Whole replies off the socket, each recv bounded by the owner's current deadline.

    Stands in for the ``makefile()`` object smtplib keeps as ``SMTP.file`` (it is closed
    with the session and dropped at STARTTLS).
    """

    __slots__ = ("_sock", "_owner", "_buffer")

    def __init__(self, sock: socket.socket, owner: _Timed) -> None:
        self._sock = sock
        self._owner = owner  # its current deadline bounds every recv
        self._buffer = bytearray()

    def reply(self) -> tuple[int, bytes]:
        """One reply as smtplib's getreply() returns it: (code, text) with the text of
        each line after its code, stripped, joined with LF; code -1 when a line has none.

        Raises ReplyTooLarge once a bound is passed, and SMTPServerDisconnected when the
        connection ends or a read fails; the caller closes the session on either.
        """
        buffer = self._buffer
        lines: list[bytes] = []
        size = 0
        while True:
            end = buffer.find(b"\n", 0, _LINE_TAKE)
            if end < 0 and len(buffer) < _LINE_TAKE and self._fill():
                continue  # no whole line yet, and room for one: read on
            taken = end + 1 if end >= 0 else min(len(buffer), _LINE_TAKE)
            line = bytes(buffer[:taken])
            del buffer[:taken]
            if not line:
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            size += len(line)
            if (len(line) > MAX_REPLY_LINE or size > MAX_REPLY_BYTES
                    or len(lines) >= MAX_REPLY_LINES):
                lines.clear()
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

    def _fill(self) -> bool:
        """One recv into the buffer within the deadline; False at the end of the stream."""
        deadline = self._owner.deadline
        try:
            self._sock.settimeout(deadline.next_timeout())
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                deadline.tripped = True
                raise
        except OSError as exc:
            raise smtplib.SMTPServerDisconnected(
                f"Connection unexpectedly closed: {type(exc).__name__}") from exc
        if not chunk:
            return False
        self._buffer += chunk
        return True

    def close(self) -> None:
        self._buffer.clear()
