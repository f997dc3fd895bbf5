"""A small DNS server on loopback: the demo's (so From-domain advice works offline) and
the tests' (dnspython on both sides).

It answers TXT questions from a zone given as a dict; a name in ``silent`` gets no answer
at all (a timeout), a name in ``servfail`` a SERVFAIL, and any other name NXDOMAIN. It
counts the questions it saw, so a test can tell that a lookup really happened.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable, Mapping

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

LOOPBACK = "127.0.0.1"

#: What the demo's From domain publishes (the From Address the demo suggests).
DEMO_ZONE = {
    "example.com": ["v=spf1 ip4:127.0.0.1 -all"],
    "_dmarc.example.com": ["v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com"],
}


class DNSServer:
    """UDP DNS on 127.0.0.1 (a free port), in a thread; a context manager."""

    def __init__(self, zone: Mapping[str, Iterable[str]], *, silent: Iterable[str] = (),
                 servfail: Iterable[str] = ()) -> None:
        self.zone = {_key(name): list(texts) for name, texts in zone.items()}
        self.silent = {_key(name) for name in silent}
        self.servfail = {_key(name) for name in servfail}
        self.questions: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((LOOPBACK, 0))
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)

    def __enter__(self) -> DNSServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> DNSServer:
        return self.__enter__()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        self._sock.close()

    def settings(self) -> dict[str, object]:
        """The portal settings that send From-domain lookups here."""
        return {"SMTP_SENDERS_DOMAIN_ADVICE": True,
                "SMTP_SENDERS_DNS_NAMESERVERS": [LOOPBACK],
                "SMTP_SENDERS_DNS_PORT": self.port}

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, client = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self._answer(data)
            if reply is not None:
                self._sock.sendto(reply, client)

    def _answer(self, data: bytes) -> bytes | None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = _key(question.name.to_text())
        self.questions.append(name)
        if name in self.silent:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name not in self.zone:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT and self.zone[name]:
            texts = [_quoted(text) for text in self.zone[name]]
            response.answer.append(dns.rrset.from_text(
                question.name, 60, dns.rdataclass.IN, dns.rdatatype.TXT, *texts))
        return response.to_wire()


def _key(name: str) -> str:
    return name.rstrip(".").lower()


def _quoted(text: str) -> str:
    """TXT presentation format: strings of at most 255 bytes, quoted and escaped."""
    chunks = [text[i:i + 255] for i in range(0, len(text), 255)] or [""]
    return " ".join('"' + chunk.replace("\\", "\\\\").replace('"', '\\"') + '"'
                    for chunk in chunks)
