"""One HTTP/1.1 POST over a socket we opened, and its reply read within bounds.

Why http.client's parser over our own socket, and not urllib3 or requests: the socket
must go to the address the destination policy judged (a library that connects by name
looks it up again, which DNS rebinding exploits), with TLS verified against the URL's
name; nothing may come from the environment (proxies, netrc), no redirect may be
followed, and every read must ask the deadline for its timeout, so that a server
dripping a byte at a time cannot hold a worker past it. http.client parses the status
line, the headers (bounded in length and number) and chunked bodies; the bytes reach it
through :class:`_BoundedReader`, which bounds both the time and the size.
"""

from __future__ import annotations

import http.client
import io
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from ..deadline import Deadline
from ..https_urls import TokenURL

#: Who we say we are to the token endpoint.
USER_AGENT = "flask-smtp-senders (OAuth2 token client)"
#: Room for the status line and headers on top of the body's limit.
MAX_HEAD = 65536
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*")
#: Headers we set ourselves; a caller may not set them again.
_OURS = frozenset({"host", "content-type", "content-length", "accept", "connection",
                   "user-agent", "transfer-encoding"})


class ResponseTooLarge(Exception):
    """The reply is larger than we read."""


@dataclass(frozen=True)
class HTTPReply:
    """What the token endpoint answered (any status but a redirect)."""

    status: int
    content_type: str
    body: bytes = b""

    def __repr__(self) -> str:  # a body may hold a token: its size only
        return (f"HTTPReply(status={self.status}, content_type={self.content_type!r}, "
                f"body=<{len(self.body)} bytes>)")


def request_bytes(url: TokenURL, body: bytes, headers: Mapping[str, str]) -> bytes:
    """The whole request: our headers, the caller's (such as Authorization), the body.
    ValueError for a header that is not a plain token name and printable value, or
    that we set ourselves."""
    lines = [f"POST {url.target} HTTP/1.1", f"Host: {url.host_header}",
             f"User-Agent: {USER_AGENT}", "Accept: application/json",
             "Content-Type: application/x-www-form-urlencoded",
             f"Content-Length: {len(body)}", "Connection: close"]
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name) or name.lower() in _OURS:
            raise ValueError("a request header name is not allowed")
        if not _HEADER_VALUE.fullmatch(value):
            raise ValueError("a request header value holds a control character")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def send_all(sock: socket.socket, data: bytes, deadline: Deadline) -> None:
    """Write ``data``, each send within the deadline."""
    view = memoryview(data)
    while view:
        sock.settimeout(deadline.next_timeout())
        sent = sock.send(view)
        view = view[sent:]


def read_reply(sock: socket.socket, deadline: Deadline, max_response: int) -> HTTPReply:
    """Read and parse the reply. Raises TimeoutError (the deadline), ResponseTooLarge,
    http.client.HTTPException (not HTTP) or OSError (the connection)."""
    reader = _BoundedReader(sock, deadline, max_response + MAX_HEAD)
    response = http.client.HTTPResponse(_Source(reader), method="POST")  # type: ignore[arg-type]
    response.begin()
    content_type = response.getheader("Content-Type", "") or ""
    if 300 <= response.status < 400:
        return HTTPReply(response.status, content_type)
    length = response.getheader("Content-Length")
    if length is not None and length.strip().isdigit() and int(length) > max_response:
        raise ResponseTooLarge("Content-Length over the limit")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = response.read(min(65536, max_response + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > max_response:
            raise ResponseTooLarge("body over the limit")
    return HTTPReply(response.status, content_type, b"".join(chunks))


class _BoundedReader(io.RawIOBase):
    """The socket as a raw stream: each read's timeout from the deadline, and no more
    than ``limit`` bytes in all."""

    def __init__(self, sock: socket.socket, deadline: Deadline, limit: int) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            raise ResponseTooLarge("reply over the limit")
        self._sock.settimeout(self._deadline.next_timeout())
        view = memoryview(buffer)
        count = self._sock.recv_into(view, min(len(view), self._left))
        self._left -= count
        return count


class _Source:
    """What http.client.HTTPResponse takes for a socket: something with makefile()."""

    def __init__(self, reader: _BoundedReader) -> None:
        self._reader = reader

    def makefile(self, mode: str, *args: object, **kwargs: object) -> io.BufferedReader:
        return io.BufferedReader(self._reader)
