"""The record of one exchange with a sender's server: which stages ran, how long each took,
where it stopped. The transport reports into a :class:`Trace`, which builds the
:class:`~flask_smtp_senders.smtp.diagnosis.Diagnosis` a page or the Python API gets;
:data:`NO_TRACE` records nothing (the sending API).

Why: an administrator fixing settings needs to see which step failed and what we saw
there, not one fixed sentence per stage. The facts come from
:mod:`flask_smtp_senders.smtp.facts` (never a server's text, never a credential), the
advice from :mod:`flask_smtp_senders.smtp.advice`. This module knows nothing of Flask.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import Mapping
from typing import Any

from .advice import advice_for, auth_status, render_advice
from .diagnosis import LABELS, Diagnosis, Stage
from .facts import (
    UNSENDABLE_PROBLEMS,
    ehlo_facts,
    offered_mechanisms,
    refused_greeting,
    shown_address,
    tls_facts,
    tls_problem,
    yes_no,
)

#: A DeliveryError's stage -> the diagnostic stage, for a failure outside every stage.
_FROM_TRANSPORT = {"resolve": "resolve", "destination": "connect", "connect": "connect",
                   "tls": "tls", "auth": "auth", "sender": "mail", "recipient": "rcpt",
                   "data": "data"}


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
        #: The Server Name (some providers' refusals are told apart by it).
        self.server_name = ""
        #: The greeting's reply code (-1: not an SMTP reply); None before any greeting.
        self.greeting: int | None = None
        #: AUTH mechanisms the server offered (filtered), from the last EHLO.
        self.mechanisms: tuple[str, ...] = ()

    # -- stages -----------------------------------------------------------------------

    def begin(self, port: int, *, starttls_port: bool, server_name: str) -> None:
        """The exchange with ``server_name`` is about to start on ``port``."""
        self.port, self.starttls_port = port, starttls_port
        self.server_name = server_name

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
        shown = shown_address(address)
        self.fact("Address", shown)
        self.fact("Port", str(int(port)))
        self.fact("Connected to", shown, stage="resolve")

    def ehlo(self, features: Mapping[str, str], *, before_starttls: bool) -> None:
        """Facts of an EHLO answer (smtplib's ``esmtp_features``): keywords only."""
        if before_starttls:
            self.fact("STARTTLS offered", yes_no("starttls" in features))
            return
        self.mechanisms = offered_mechanisms(features.get("auth", ""))
        for label, value in ehlo_facts(features, self.mechanisms):
            self.fact(label, value)

    def tls(self, sock: ssl.SSLSocket) -> None:
        """Facts of an established TLS session (the tls stage is open)."""
        for label, value in tls_facts(sock):
            self.fact(label, value)

    def destination_refused(self, address: str) -> None:
        """The destination policy refused ``address``: no connection was attempted."""
        self.enter("connect")
        self.fact("Refused address", shown_address(address))
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
        unsendable = UNSENDABLE_PROBLEMS.get(getattr(exc, "reason", None) or "")
        if unsendable is not None:  # the transport's reason a message cannot go here
            record.facts["Problem"] = unsendable
        refused = refused_greeting(exc)
        if refused is not None:
            record.facts["Greeting reply code"] = str(refused)
            record.facts["Problem"] = f"The server refused the session in its greeting ({refused})"
        status = None if timed_out or record.name != "auth" else auth_status(
            exc, self.server_name)
        if status is not None:  # the code the advice was picked by: digits, never words
            record.facts["Enhanced code"] = status
        self._stop(record.name, advice_for(record.name, exc, timed_out=timed_out,
                                           starttls_port=self.starttls_port,
                                           greeting=self.greeting,
                                           server_name=self.server_name))

    def _stop(self, stage: str, advice: str | None) -> None:
        self._stopped_at, self._advice = stage, advice

    # -- the result -------------------------------------------------------------------

    def diagnosis(self, texts: Mapping[str, Any]) -> Diagnosis:
        """The record so far, with the advice text from ``texts`` (texts.py)."""
        self.leave()
        stages = tuple(Stage(r.name, LABELS[r.name], r.ok, r.ms, tuple(r.facts.items()))
                       for r in self._records.values())
        advice = None
        if self._advice is not None and self._stopped_at is not None:
            advice = render_advice(texts, self._advice, port=self.port,
                                   stage=LABELS[self._stopped_at], mechanisms=self.mechanisms)
        return Diagnosis(stages, self._stopped_at, advice,
                         (time.perf_counter() - self._started) * 1000.0)


class _NoTrace(Trace):
    """The trace of an exchange nobody asked to diagnose: every call does nothing."""

    active = False
    _NULL: contextlib.AbstractContextManager[None] = contextlib.nullcontext()

    def __init__(self) -> None:  # no state: one shared instance serves every thread
        pass

    def begin(self, port: int, *, starttls_port: bool, server_name: str) -> None:
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
