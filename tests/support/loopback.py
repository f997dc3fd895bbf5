"""The loopback address of this test run: every server a test starts listens on it.

Why chosen at run time: 127.0.0.1 is shared by everything on the host (a mail server
or a catcher on 127.0.0.1:2525, a running ``make demo``, another test run), so a fixed
address makes the suite's fixed ports collide with them. Each run picks a random
address of 127.0.0.0/8 outside 127.0.0.0/24 (whose addresses tests use by name:
127.0.0.1 as "another address", 127.0.0.2-39 for spare listeners, 127.0.0.77 as a
trap), checks that it can bind it, and keeps it for the whole run. Free ports come on
top, so two runs never meet.

``SMTP_SENDERS_TEST_LOOPBACK`` chooses the address instead: an IPv4 loopback address,
best outside 127.0.0.0/24. Where only 127.0.0.1 is configured (macOS's ``lo0`` unless
aliased) no random address binds and the run falls back to 127.0.0.1 by itself. The
address in use is written back to ``os.environ``, so every subprocess a test starts (a
second app worker, the browser tests' portal) uses the same one.

pytest-socket (``--allow-hosts=127.0.0.0/8,::1`` in pyproject.toml) allows all of them.
Standard library only: the browser tests' portal subprocess imports it.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import random
import socket
from collections.abc import Callable, Iterator
from typing import TypeVar

__all__ = ["LOOPBACK", "LOOPBACK_ENV", "SPARE_LOOPBACKS", "bind_fixed_port", "fixed_port_hosts"]

#: The environment variable that chooses the address (and carries it to subprocesses).
LOOPBACK_ENV = "SMTP_SENDERS_TEST_LOOPBACK"
#: Addresses tried, after LOOPBACK, for a listener that needs a fixed port (2525, say).
SPARE_LOOPBACKS = tuple(f"127.0.0.{last}" for last in range(2, 40))
_FALLBACK = "127.0.0.1"

T = TypeVar("T")


def _bindable(address: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


def _choose() -> str:
    chosen = os.environ.get(LOOPBACK_ENV, "").strip()
    if chosen:
        try:
            address = ipaddress.ip_address(chosen)
        except ValueError:
            address = None
        if address is None or address.version != 4 or not address.is_loopback:
            raise RuntimeError(f"{LOOPBACK_ENV}={chosen!r} is not an IPv4 loopback address")
        return str(address)
    draw = random.SystemRandom()
    for _ in range(20):
        address = f"127.{draw.randint(1, 254)}.{draw.randint(0, 255)}.{draw.randint(1, 254)}"
        if _bindable(address):
            return address
    return _FALLBACK


#: The address every test server binds (see the module doc).
LOOPBACK = _choose()
os.environ[LOOPBACK_ENV] = LOOPBACK


def fixed_port_hosts() -> Iterator[str]:
    """Where a listener on a fixed port may go: LOOPBACK, then the spare 127.0.0.2-39.

    LOOPBACK is left out when it is 127.0.0.1, the address a ``make demo`` catcher or a
    local mail server takes first.
    """
    if LOOPBACK != _FALLBACK:
        yield LOOPBACK
    yield from (host for host in SPARE_LOOPBACKS if host != LOOPBACK)


def bind_fixed_port(port: int, bind: Callable[[str], T]) -> T:
    """``bind(host)`` on the first of fixed_port_hosts() where ``port`` is free.

    ``bind`` raises OSError EADDRINUSE or EADDRNOTAVAIL to move on to the next host.
    """
    for host in fixed_port_hosts():
        try:
            return bind(host)
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                raise
    raise OSError(errno.EADDRINUSE,
                  f"port {port} is busy on {LOOPBACK} and on 127.0.0.2-39")
