"""SMTP servers for the sending benchmark, each in a process of its own on 127.0.0.1.

- :class:`TLSServer`: aiosmtpd with implicit TLS (a trustme certificate) and AUTH, in a
  separate process pinned to the server core; it counts the messages and connections it
  accepted in shared memory, and drops a connection idle for ``idle_timeout`` seconds.
- :class:`SinkServer`: Postfix's ``smtp-sink`` (plain SMTP, advertises PIPELINING; it has
  no TLS), pinned to the server core; it counts messages through its ``-c`` counters.

Self-contained on purpose (the ideas come from tests/support/smtp_servers.py, which is a
pytest plugin with much more in it). Nothing here listens on anything but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
SERVER_NAME = "mx.bench.test"
USERNAME = "bench"
PASSWORD = "bench-password"  # noqa: S105 - a throwaway account on a loopback server
CLIENT_CORE = 0
SERVER_CORE = 1
SMTP_SINK = "/usr/sbin/smtp-sink"


# ------------------------------------------------------------------------------- pinning


def cores() -> set[int]:
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()


def can_pin() -> bool:
    """Both the client and the server core are available to this process."""
    return {CLIENT_CORE, SERVER_CORE} <= cores()


def pin(pid: int, core: int) -> bool:
    """Pin a process (0: this one) to one core, if the machine has it."""
    if not can_pin():
        return False
    try:
        os.sched_setaffinity(pid, {core})
    except OSError:
        return False
    return True


# -------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class TLSFiles:
    """A private CA (for the clients) and a server certificate for 127.0.0.1 and
    SERVER_NAME, as PEM files."""

    ca_file: str
    cert_file: str
    key_file: str

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only the benchmark CA."""
        return ssl.create_default_context(cafile=self.ca_file)


def make_tls_files(directory: Path) -> TLSFiles:
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert(LOOPBACK, "localhost", SERVER_NAME)
    files = TLSFiles(str(directory / "ca.pem"), str(directory / "server.pem"),
                     str(directory / "server.key"))
    ca.cert_pem.write_to_path(files.ca_file)
    leaf.private_key_pem.write_to_path(files.key_file)
    with open(files.cert_file, "wb") as out:
        for blob in leaf.cert_chain_pems:
            out.write(blob.bytes())
    return files


# ---------------------------------------------------------------------- aiosmtpd server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _serve_tls(files: TLSFiles, idle_timeout: float, messages: Any, connections: Any,
               ready: Any, stop: Any, port_out: Any) -> None:
    """The server process: aiosmtpd over implicit TLS, AUTH required, counting."""
    pin(0, SERVER_CORE)
    # aiosmtpd warns about AUTH without STARTTLS: here TLS is implicit, from the first byte
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert_file, files.key_file)

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == USERNAME.encode()
              and auth_data.password == PASSWORD.encode())
        return AuthResult(success=ok, handled=False)

    class Counter:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            messages.value += 1  # before the 250: a client that got it sees the count
            return "250 2.0.0 OK"

    class CountingSMTP(SMTP):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            connections.value += 1
            # Each EHLO line, and each TLS 1.3 session ticket, is a write of its own:
            # without TCP_NODELAY, Nagle holds the second one until the client's delayed
            # ACK (40 ms), twice per connection.
            raw = transport.get_extra_info("socket")
            if raw is not None:
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().connection_made(transport)

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def factory() -> SMTP:
            return CountingSMTP(
                Counter(), hostname=SERVER_NAME, ident="bench ESMTP",
                authenticator=authenticate, auth_required=True,
                auth_require_tls=False,  # aiosmtpd does not count implicit TLS as TLS
                timeout=idle_timeout, loop=loop)

        # IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on sockets whose proto says TCP
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, 0))
        server = await loop.create_server(factory, sock=listener, ssl=context, backlog=128)
        port_out.value = listener.getsockname()[1]
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        server.close()

    asyncio.run(main())


class TLSServer:
    """aiosmtpd with implicit TLS and AUTH in its own process, pinned to SERVER_CORE."""

    host = LOOPBACK

    def __init__(self, files: TLSFiles, idle_timeout: float = 300.0) -> None:
        self.files = files
        self.idle_timeout = idle_timeout
        context = multiprocessing.get_context("spawn")  # no inherited threads or sockets
        self._messages = context.Value("q", 0, lock=False)
        self._connections = context.Value("q", 0, lock=False)
        self._port = context.Value("i", 0, lock=False)
        self._ready = context.Event()
        self._stop = context.Event()
        self._process = context.Process(
            target=_serve_tls, name="bench-aiosmtpd", daemon=True,
            args=(files, idle_timeout, self._messages, self._connections, self._ready,
                  self._stop, self._port))
        self.port = 0

    @property
    def messages(self) -> int:
        return int(self._messages.value)

    @property
    def connections(self) -> int:
        return int(self._connections.value)

    def start(self) -> TLSServer:
        self._process.start()
        if not self._ready.wait(30):
            self.stop()
            raise RuntimeError("the aiosmtpd server process did not start")
        self.port = int(self._port.value)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._process.join(5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)

    def __enter__(self) -> TLSServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# ------------------------------------------------------------------------------ smtp-sink


def smtp_sink_problem() -> str | None:
    """Why smtp-sink cannot run here, or None."""
    if not (os.path.exists(SMTP_SINK) or shutil.which("smtp-sink")):
        return ("smtp-sink is not installed (Debian: DEBIAN_FRONTEND=noninteractive "
                "apt-get install -y postfix, then `postfix stop` if a master started)")
    return None


class SinkServer:
    """Postfix's smtp-sink on 127.0.0.1 (plain SMTP with PIPELINING), counting messages."""

    host = LOOPBACK

    def __init__(self, directory: Path) -> None:
        self._log = directory / f"smtp-sink-{os.getpid()}-{time.monotonic_ns()}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def messages(self) -> int:
        """The last 'mesg=N' counter smtp-sink wrote (-c)."""
        try:
            with open(self._log, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 256))
                tail = log.read()
        except OSError:
            return 0
        found = re.findall(rb"mesg=(\d+)", tail)
        return int(found[-1]) if found else 0

    def start(self) -> SinkServer:
        binary = SMTP_SINK if os.path.exists(SMTP_SINK) else shutil.which("smtp-sink")
        if binary is None:
            raise RuntimeError(smtp_sink_problem() or "no smtp-sink")
        for _attempt in range(5):
            self.port = free_port()
            command = [binary, "-c"]
            if os.geteuid() == 0:  # smtp-sink refuses to run as root without -u
                command += ["-u", "nobody"]
            command += [f"{LOOPBACK}:{self.port}", "256"]
            log = open(self._log, "wb")  # noqa: SIM115 - handed to the child
            self._process = subprocess.Popen(  # noqa: S603 - a fixed local binary
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            pin(self._process.pid, SERVER_CORE)
            if self._wait_listening():
                return self
            self.stop()
        raise RuntimeError(f"smtp-sink did not start; see {self._log}")

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection(
                    (LOOPBACK, self.port), timeout=1) as probe:
                probe.recv(100)  # the 220 greeting
                probe.sendall(b"QUIT\r\n")
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def __enter__(self) -> SinkServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
