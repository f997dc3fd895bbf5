"""Staged diagnostics of one exchange with a sender's server: what ran, how long it took,
where it stopped, and one piece of advice.

Why: a failed test email only shows a fixed sentence per stage ("Check the Port and the
server's certificate"); an administrator fixing settings needs to see which step failed
and what we saw there. The transport reports into a :class:`Trace`; a :class:`Diagnosis`
is what a page or the Python API gets.

What a diagnosis may hold is deliberately narrow: facts we build ourselves (counts, the
address we connected to, our own TLS library's protocol and cipher names, a certificate's
host name and dates, reply codes as numbers, EHLO keywords filtered to plain tokens) and
advice from the ``SMTP_SENDERS_ADVICE_*`` catalogue, formatted only with the port, the
filtered mechanism list and a stage label. Never a server's reply text, never the
username or password in any form.

This module knows nothing of Flask.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import smtplib
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger(__name__)

#: Stage name -> the label a page shows, in the order stages can run.
LABELS: Mapping[str, str] = {
    "resolve": "Resolve",
    "connect": "Connect",
    "tls": "TLS",
    "ehlo": "EHLO",
    "auth": "AUTH",
    "mail": "MAIL FROM",
    "rcpt": "RCPT TO",
    "data": "DATA",
    "reset": "RSET and QUIT",
}

#: A DeliveryError's stage -> the diagnostic stage, for a failure outside every stage.
_FROM_TRANSPORT = {"resolve": "resolve", "destination": "connect", "connect": "connect",
                   "tls": "tls", "auth": "auth", "sender": "mail", "recipient": "rcpt",
                   "data": "data"}

_MECHANISM = re.compile(r"[A-Z0-9_-]{1,20}")
_MAX_MECHANISMS = 10
_DIGITS = re.compile(r"[0-9]{1,20}")
# A certificate's names are shown only when they look like what they should be: a host
# name, or a CA's plain name. Anything else (control characters, markup) is left out.
_HOST_NAME = re.compile(r"[A-Za-z0-9*](?:[A-Za-z0-9_.-]{0,252})")
_CA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 .,()_&'-]{0,99}")

# OpenSSL's X509_V_ERR_* codes we name.
_NOT_YET_VALID, _EXPIRED = 9, 10
_NAME_MISMATCH = frozenset({62, 64})  # host name, IP address
# OpenSSL reasons for bytes that are not a TLS record: the peer is not speaking TLS.
_NOT_TLS_REASONS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE",
                              "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL", "HTTP_REQUEST"})

#: Our classification of a TLS failure (the tls stage's only fact when it fails).
TLS_UNTRUSTED = "certificate not trusted"
TLS_WRONG_NAME = "certificate for another name"
TLS_EXPIRED = "certificate expired"
TLS_NOT_YET_VALID = "certificate not yet valid"
TLS_NOT_TLS = "wrong version number (the server is not speaking TLS)"
TLS_NO_STARTTLS = "STARTTLS not offered"
TLS_STARTTLS_REFUSED = "STARTTLS refused"
TLS_HANDSHAKE = "handshake failed"


@dataclass(frozen=True)
class Stage:
    """One step of the exchange as it ran.

    ``ehlo`` covers the server's greeting and our EHLO (on STARTTLS ports both EHLOs, the
    one before STARTTLS and the one after); ``reset`` is RSET and QUIT of a dry run.
    """

    name: str
    label: str
    ok: bool
    #: Wall time of the stage in milliseconds (summed when it ran more than once).
    ms: float
    #: (label, value) pairs, built by us: never a server's text.
    facts: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "ok": self.ok,
                "ms": round(self.ms, 1),
                "facts": [{"label": label, "value": value} for label, value in self.facts]}


@dataclass(frozen=True)
class Diagnosis:
    """Where an exchange went, where it stopped, and what to try."""

    #: The stages that ran, in the order they first ran.
    stages: tuple[Stage, ...]
    #: The stage where it failed; None on success; "password" when the stored password
    #: could not be used (then no stage ran).
    stopped_at: str | None
    #: One sentence from the SMTP_SENDERS_ADVICE_* catalogue, or None.
    advice: str | None
    total_ms: float

    @classmethod
    def password_unusable(cls) -> Diagnosis:
        """The stored password could not be used: nothing was attempted."""
        return cls(stages=(), stopped_at="password", advice=None, total_ms=0.0)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (only str, bool, float, None, lists and dicts)."""
        return {"stages": [stage.as_dict() for stage in self.stages],
                "stopped_at": self.stopped_at, "advice": self.advice,
                "total_ms": round(self.total_ms, 1)}


class _Record:
    """A stage being recorded (mutable until the Diagnosis is built)."""

    __slots__ = ("name", "ok", "ms", "facts", "started")

    def __init__(self, name: str) -> None:
        self.name = name
        self.ok = True
        self.ms = 0.0
        self.facts: dict[str, str] = {}
        self.started: float | None = None


class _StageScope:
    """``with trace.stage(name):`` -- times the block; an escaping exception fails it."""

    __slots__ = ("_trace", "_name")

    def __init__(self, trace: Trace, name: str) -> None:
        self._trace, self._name = trace, name

    def __enter__(self) -> None:
        self._trace.enter(self._name)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._trace.leave(ok=exc is None)  # the exception goes on


class Trace:
    """What the transport reports into while it works, for one exchange.

    A stage is recorded with ``with trace.stage(name):`` or, where replies are judged
    after the fact (the envelope), with :meth:`enter` (which ends any other open stage as
    passed) and :meth:`leave`. Entering a stage that already ran continues its record:
    the time adds up, facts of the same label are replaced, and it passes or fails by its
    latest run (a second address tried after the first one refused). The transport calls
    :meth:`failed` for the failure that ends the exchange; that picks the advice.
    """

    active = True

    def __init__(self) -> None:
        self._started = time.perf_counter()
        self._records: dict[str, _Record] = {}  # insertion order: the order they first ran
        self._open: _Record | None = None
        self._last_failed: _Record | None = None
        self._stopped_at: str | None = None
        self._advice: str | None = None
        #: What advice needs to know, told by the transport.
        self.port = 0
        self.starttls_port = False
        #: The greeting's reply code (-1: not an SMTP reply); None before any greeting.
        self.greeting: int | None = None
        #: AUTH mechanisms the server offered (filtered), from the last EHLO.
        self.mechanisms: tuple[str, ...] = ()

    # -- stages -----------------------------------------------------------------------

    def begin(self, port: int, *, starttls_port: bool) -> None:
        """The exchange is about to start on ``port``."""
        self.port, self.starttls_port = port, starttls_port

    def stage(self, name: str) -> contextlib.AbstractContextManager[None]:
        return _StageScope(self, name)

    def enter(self, name: str) -> None:
        """Start (or continue) stage ``name``; another open stage ends as passed."""
        current = self._open
        if current is not None:
            if current.name == name:
                return
            self.leave()
        record = self._record(name)
        record.ok = True
        record.started = time.perf_counter()
        if self._last_failed is record:
            self._last_failed = None
        self._open = record

    def _record(self, name: str) -> _Record:
        record = self._records.get(name)
        if record is None:
            record = self._records[name] = _Record(name)
        return record

    def leave(self, ok: bool = True) -> None:
        """End the open stage (if any), passed or failed."""
        record, self._open = self._open, None
        if record is None:
            return
        if record.started is not None:
            record.ms += (time.perf_counter() - record.started) * 1000.0
            record.started = None
        record.ok = ok
        if not ok:
            self._last_failed = record

    def fact(self, label: str, value: str, stage: str | None = None) -> None:
        """Note a fact on ``stage`` (default: the open stage)."""
        record = self._records.get(stage) if stage is not None else self._open
        if record is not None:
            record.facts[label] = value

    # -- facts the transport hands over -----------------------------------------------

    def greeted(self, code: int) -> None:
        self.greeting = code

    def connected(self, address: str, port: int) -> None:
        """The TCP connection to ``address`` is up (the connect stage is open)."""
        shown = _address(address)
        self.fact("Address", shown)
        self.fact("Port", str(int(port)))
        self.fact("Connected to", shown, stage="resolve")

    def ehlo(self, features: Mapping[str, str], *, before_starttls: bool) -> None:
        """Facts of an EHLO answer (smtplib's ``esmtp_features``): keywords only."""
        if before_starttls:
            self.fact("STARTTLS offered", _yes_no("starttls" in features))
            return
        self.mechanisms = offered_mechanisms(features.get("auth", ""))
        self.fact("AUTH mechanisms offered", ", ".join(self.mechanisms) or "none")
        size = features.get("size", "").strip()
        if _DIGITS.fullmatch(size):
            self.fact("SIZE", size)
        self.fact("PIPELINING", _yes_no("pipelining" in features))
        self.fact("8BITMIME", _yes_no("8bitmime" in features))
        self.fact("SMTPUTF8", _yes_no("smtputf8" in features))

    def tls(self, sock: ssl.SSLSocket) -> None:
        """Facts of an established TLS session (the tls stage is open)."""
        self.fact("Protocol", sock.version() or "unknown")
        cipher = sock.cipher()
        if cipher:
            self.fact("Cipher", cipher[0])
        for label, value in certificate_facts(sock.getpeercert() or {}):
            self.fact(label, value)

    def destination_refused(self, address: str) -> None:
        """The destination policy refused ``address``: no connection was attempted."""
        self.enter("connect")
        self.fact("Refused address", _address(address))
        self.leave(ok=False)
        self._stop("connect", "destination_refused")

    def failed(self, exc: BaseException, *, timed_out: bool, stage: str) -> None:
        """The exchange ends with ``exc``; ``stage`` is the DeliveryError's own stage."""
        # the open stage, or the one that failed last (an error some code caught and
        # raised again later), or, failing outside every stage, where the transport was
        record = (self._open or self._last_failed
                  or self._record(_FROM_TRANSPORT.get(stage, "connect")))
        self.leave(ok=False)
        record.ok = False
        if record.name == "tls" and not timed_out:
            record.facts["Problem"] = tls_problem(exc)
        unsendable = _UNSENDABLE.get(getattr(exc, "reason", None) or "")
        if unsendable is not None:  # the transport's reason a message cannot go here
            record.facts["Problem"] = unsendable
        refused = refused_greeting(exc)
        if refused is not None:
            record.facts["Greeting reply code"] = str(refused)
            record.facts["Problem"] = f"The server refused the session in its greeting ({refused})"
        self._stop(record.name, advice_for(record.name, exc, timed_out=timed_out,
                                           starttls_port=self.starttls_port,
                                           greeting=self.greeting))

    def _stop(self, stage: str, advice: str | None) -> None:
        self._stopped_at, self._advice = stage, advice

    # -- the result -------------------------------------------------------------------

    def diagnosis(self, config: Mapping[str, Any]) -> Diagnosis:
        """The record so far, with the advice text from ``config``'s catalogue."""
        self.leave()
        stages = tuple(Stage(r.name, LABELS[r.name], r.ok, r.ms, tuple(r.facts.items()))
                       for r in self._records.values())
        advice = None
        if self._advice is not None and self._stopped_at is not None:
            advice = render_advice(config, self._advice, port=self.port,
                                   stage=LABELS[self._stopped_at], mechanisms=self.mechanisms)
        return Diagnosis(stages, self._stopped_at, advice,
                         (time.perf_counter() - self._started) * 1000.0)


class _NoTrace(Trace):
    """The trace of an exchange nobody asked to diagnose: every call does nothing."""

    active = False
    _NULL: contextlib.AbstractContextManager[None] = contextlib.nullcontext()

    def __init__(self) -> None:  # no state: one shared instance serves every thread
        pass

    def begin(self, port: int, *, starttls_port: bool) -> None:
        pass

    def stage(self, name: str) -> contextlib.AbstractContextManager[None]:
        return self._NULL

    def enter(self, name: str) -> None:
        pass

    def leave(self, ok: bool = True) -> None:
        pass

    def fact(self, label: str, value: str, stage: str | None = None) -> None:
        pass

    def greeted(self, code: int) -> None:
        pass

    def connected(self, address: str, port: int) -> None:
        pass

    def ehlo(self, features: Mapping[str, str], *, before_starttls: bool) -> None:
        pass

    def tls(self, sock: ssl.SSLSocket) -> None:
        pass

    def destination_refused(self, address: str) -> None:
        pass

    def failed(self, exc: BaseException, *, timed_out: bool, stage: str) -> None:
        pass


#: The shared do-nothing trace the transport uses when none was given.
NO_TRACE: Trace = _NoTrace()


# -- facts ------------------------------------------------------------------------------


#: Why a message cannot be written to this server (the transport's reasons), as facts.
_UNSENDABLE = {
    "smtputf8": "The message has a non-ASCII address, which needs SMTPUTF8 (RFC 6531); "
                "the server does not offer it",
    "eight_bit": "The message has 8-bit headers and the server does not offer 8BITMIME",
}


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _address(address: str) -> str:
    """An IP address in its canonical form; anything else is not shown."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return "(not an IP address)"


def offered_mechanisms(auth_keywords: str) -> tuple[str, ...]:
    """The AUTH mechanisms of an EHLO answer that look like mechanism names (at most 10)."""
    found: list[str] = []
    for token in auth_keywords.split():
        if _MECHANISM.fullmatch(token) and token not in found:
            found.append(token)
            if len(found) == _MAX_MECHANISMS:
                break
    return tuple(found)


def _name_field(name: object, key: str) -> str | None:
    """``key`` of a getpeercert() name (a tuple of RDNs of (key, value) pairs)."""
    if not isinstance(name, tuple):
        return None
    for rdn in name:
        for pair in rdn if isinstance(rdn, tuple) else ():
            if isinstance(pair, tuple) and len(pair) == 2 and pair[0] == key:
                return str(pair[1])
    return None


def certificate_facts(cert: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The host name, expiry date and issuer of a verified certificate, where plain."""
    facts: list[tuple[str, str]] = []
    subject = _name_field(cert.get("subject"), "commonName")
    if subject is not None and _HOST_NAME.fullmatch(subject):
        facts.append(("Certificate name", subject))
    not_after = cert.get("notAfter")
    if isinstance(not_after, str):
        try:
            expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), timezone.utc)
            facts.append(("Certificate expires", expires.strftime("%Y-%m-%d")))
        except (ValueError, OverflowError, OSError):
            pass
    issuer = (_name_field(cert.get("issuer"), "commonName")
              or _name_field(cert.get("issuer"), "organizationName"))
    if issuer is not None and _CA_NAME.fullmatch(issuer):
        facts.append(("Issued by", issuer))
    return facts


def refused_greeting(exc: BaseException) -> int | None:
    """The reply code of a greeting other than 220 that ended the exchange, if that is
    what ``exc`` is (the transport raises smtplib's SMTPConnectError for it)."""
    if isinstance(exc, smtplib.SMTPConnectError) and 100 <= exc.smtp_code <= 599:
        return int(exc.smtp_code)
    return None


def tls_problem(exc: BaseException) -> str:
    """Our name for why TLS could not be set up."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code == _EXPIRED:
            return TLS_EXPIRED
        if code == _NOT_YET_VALID:
            return TLS_NOT_YET_VALID
        if code in _NAME_MISMATCH:
            return TLS_WRONG_NAME
        return TLS_UNTRUSTED
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return TLS_NO_STARTTLS
    if isinstance(exc, smtplib.SMTPResponseException):
        return TLS_STARTTLS_REFUSED
    if isinstance(exc, ssl.SSLError) and exc.reason in _NOT_TLS_REASONS:
        return TLS_NOT_TLS
    return TLS_HANDSHAKE


# -- advice -----------------------------------------------------------------------------

#: Every advice name (config key ``SMTP_SENDERS_ADVICE_<NAME>``) :func:`advice_for` picks.
ADVICE_NAMES = frozenset({
    "resolve_failed", "destination_refused", "connection_refused", "connect_timeout",
    "connect_failed", "expects_starttls", "expects_tls", "starttls_not_offered",
    "starttls_refused", "tls_untrusted", "tls_wrong_name", "tls_expired", "tls_handshake",
    "auth_not_offered", "auth_refused", "auth_failed", "auth_no_common_method",
    "sender_refused", "recipient_refused", "data_refused", "temporary", "disconnected",
    "timeout",
})


def advice_for(stage: str, exc: BaseException, *, timed_out: bool, starttls_port: bool,
               greeting: int | None) -> str | None:
    """The catalogue entry (``SMTP_SENDERS_ADVICE_<NAME>``, lower case) for a failure."""
    no_smtp_greeting = starttls_port and (greeting is None or greeting < 0)
    if stage == "resolve":  # a slow resolver too: the name is what to check
        return "resolve_failed"
    if timed_out:
        if stage == "connect":
            return "connect_timeout"
        if stage == "ehlo" and no_smtp_greeting:
            return "expects_tls"
        return "timeout"
    if stage == "connect":
        return "connection_refused" if isinstance(exc, ConnectionRefusedError) else (
            "connect_failed")
    if stage == "ehlo":
        refused = refused_greeting(exc)
        if refused is not None:  # 421: busy for now; 554: no SMTP service for us here
            return "temporary" if 400 <= refused < 500 else "connect_failed"
        return "expects_tls" if no_smtp_greeting else "disconnected"
    if stage == "tls":
        return _tls_advice(tls_problem(exc), starttls_port, no_smtp_greeting)
    if stage == "auth":
        return _auth_advice(exc)
    return _refusal_advice(stage, exc)


def _tls_advice(problem: str, starttls_port: bool, no_smtp_greeting: bool) -> str:
    if problem == TLS_NO_STARTTLS:
        return "expects_tls" if no_smtp_greeting else "starttls_not_offered"
    return {
        TLS_STARTTLS_REFUSED: "starttls_refused",
        TLS_UNTRUSTED: "tls_untrusted",
        TLS_WRONG_NAME: "tls_wrong_name",
        TLS_EXPIRED: "tls_expired",
        TLS_NOT_YET_VALID: "tls_expired",
        TLS_NOT_TLS: "tls_handshake" if starttls_port else "expects_starttls",
    }.get(problem, "tls_handshake")


def _auth_advice(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return "auth_not_offered"
    if isinstance(exc, smtplib.SMTPResponseException):
        return "auth_refused" if exc.smtp_code == 535 else "auth_failed"
    if isinstance(exc, OSError):  # SMTPServerDisconnected is one too
        return "disconnected"
    return "auth_no_common_method"  # smtplib: "No suitable authentication method found."


def _refusal_advice(stage: str, exc: BaseException) -> str | None:
    if isinstance(exc, smtplib.SMTPResponseException):
        if 400 <= exc.smtp_code < 500:
            return "temporary"
        return {"mail": "sender_refused", "rcpt": "recipient_refused",
                "data": "data_refused"}.get(stage)
    if isinstance(exc, OSError):  # SMTPServerDisconnected is one too
        return "disconnected"
    return None


def render_advice(config: Mapping[str, Any], name: str, *, port: int, stage: str,
                  mechanisms: tuple[str, ...]) -> str | None:
    """``SMTP_SENDERS_ADVICE_<NAME>`` formatted with our own safe values only."""
    template = config.get(f"SMTP_SENDERS_ADVICE_{name.upper()}")
    if not template:
        return None
    try:
        return str(template).format(port=port, stage=stage,
                                    mechanisms=", ".join(mechanisms) or "none")
    except (KeyError, IndexError, ValueError, AttributeError):
        log.warning("SMTP_SENDERS_ADVICE_%s has a placeholder other than {port}, {stage} "
                    "and {mechanisms}; shown unformatted", name.upper())
        return str(template)
