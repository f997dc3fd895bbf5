"""What a page, the API or the Python API gets from a diagnosed exchange: a
:class:`Diagnosis` made of :class:`Stage` records, each labelled from :data:`LABELS`.

Why apart from the recorder (:mod:`flask_smtp_senders.smtp.trace`, the transport's
working state while the exchange runs): these are the frozen, JSON-ready results that
outlive it, read by the probe, the pages, the API and the host's code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Stage name -> the label a page shows, in the order stages can run.
LABELS: Mapping[str, str] = {
    "token": "Token",
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
    #: could not be used (then no stage ran); "token" when an OAuth2 sender got no
    #: access token (then only the Token stage ran).
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
