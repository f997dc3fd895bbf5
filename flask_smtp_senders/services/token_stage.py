"""The Token stage of a diagnosis: an OAuth2 sender's token request, shown before the
SMTP stages (Send Test Email, the check).

Why apart from the trace of the SMTP exchange (:mod:`flask_smtp_senders.smtp.trace`):
the token request is an HTTPS exchange with another server, made before any SMTP, and
what it can tell (the endpoint, the HTTP status, the provider's error code) is its own.
Facts are built by us: the host name we asked, digits, and error codes that passed
:data:`flask_smtp_senders.oauth.errors.SAFE_CODE`; never the provider's text.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol
from urllib.parse import urlsplit

from ..errors import TokenUnavailable
from ..oauth import TokenError
from ..sealed import Credential
from ..smtp.diagnosis import LABELS, Diagnosis, Stage
from ..storage.base import Sender
from .providers import TokenEndpoints, token_url
from .tokens import TokenSource

LABEL = LABELS["token"]


def endpoint_host(sender: Sender, endpoints: TokenEndpoints) -> str:
    """The host the sender's token requests go to (for the facts)."""
    try:
        return urlsplit(token_url(sender.settings, endpoints)).hostname or ""
    except ValueError:  # a tenant or URL that no longer passes: the fetch says so
        return ""


def passed(host: str, ms: float) -> Stage:
    return Stage("token", LABEL, True, ms, facts=(("Token endpoint", host),) if host else ())


def failed(host: str, ms: float, error: TokenError) -> Stage:
    facts = [("Token endpoint", host)] if host else []
    if error.status is not None:
        facts.append(("HTTP status", str(error.status)))
    if error.error:
        facts.append(("Error", error.error))
    if error.provider_code:
        facts.append(("Error code", error.provider_code))
    return Stage("token", LABEL, False, ms, facts=tuple(facts))


def advice_text(error: TokenError, texts: Mapping[str, str]) -> str | None:
    """The suggested fix for a failed token request (``SMTP_SENDERS_ADVICE_<key>``)."""
    if not error.advice:
        return None
    text = texts.get(f"SMTP_SENDERS_ADVICE_{error.advice.upper()}")
    return str(text) if text else None


def failure_diagnosis(failure: TokenUnavailable, host: str, ms: float,
                      texts: Mapping[str, str]) -> Diagnosis:
    """The diagnosis of a probe that stopped at its token request: nothing else ran."""
    reason = failure.reason
    if not isinstance(reason, TokenError):
        return Diagnosis(stages=(), stopped_at="token", advice=None, total_ms=ms)
    return Diagnosis(stages=(failed(host, ms, reason),), stopped_at="token",
                     advice=advice_text(reason, texts), total_ms=ms)


def with_token(diagnosis: Diagnosis, stage: Stage | None) -> Diagnosis:
    """The SMTP exchange's diagnosis with the token request's stage in front."""
    if stage is None:
        return diagnosis
    return replace(diagnosis, stages=(stage, *diagnosis.stages),
                   total_ms=diagnosis.total_ms + stage.ms)


class CredentialHost(Protocol):
    """What a TokenTimer uses of the sender service."""

    @property
    def texts(self) -> Mapping[str, str]: ...

    @property
    def tokens(self) -> TokenSource: ...

    def credential_for(self, sender: Sender, *, fresh: bool = False) -> Credential: ...


class TokenTimer:
    """The sender's credential for a probe, with the Token stage it makes (OAuth2
    senders): how long the token request took, and what it said when it failed."""

    def __init__(self, host: CredentialHost, sender: Sender) -> None:
        self._host = host
        self._sender = sender
        self._stage: Stage | None = None
        self._ms = 0.0
        self._endpoint = ""

    def credential(self, *, fresh: bool) -> Credential:
        if not self._sender.settings.provider_type.uses_oauth:
            return self._host.credential_for(self._sender)
        self._endpoint = endpoint_host(self._sender, self._host.tokens.endpoints)
        if fresh:
            self._host.tokens.drop(self._sender)
        started = time.perf_counter()
        try:
            return self._host.credential_for(self._sender, fresh=fresh)
        finally:
            self._ms += (time.perf_counter() - started) * 1000
            self._stage = passed(self._endpoint, self._ms)

    def report(self, diagnosis: Diagnosis) -> Diagnosis:
        return with_token(diagnosis, self._stage)

    def failure_diagnosis(self, failure: TokenUnavailable) -> Diagnosis:
        return failure_diagnosis(failure, self._endpoint, self._ms,
                                             self._host.texts)
