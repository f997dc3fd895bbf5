"""The product's own vocabulary, which every layer may use and which imports nothing of
ours: the port rule (the contract's: 25, 587 and 2525 use SMTP with STARTTLS, every other
port SMTPS), where a sender connects, the names of the stages of an exchange, and which
Server Names are the big providers' SMTP endpoints (their advice and notices).

Kept apart from the SMTP client (:mod:`flask_smtp_senders.smtp.transport`, which
re-exports these names) so that storage, pages and the CLI can name a sender's mode or a
stage without importing the network layer.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

STARTTLS_PORTS = frozenset({25, 587, 2525})

#: Stages of an exchange, in order; a DeliveryError names the one where it stopped.
#: "token" is an OAuth2 sender's token request, before anything else.
STAGES = ("token", "resolve", "destination", "connect", "tls", "auth", "sender",
          "recipient", "data", "timeout")


class Security(enum.Enum):
    """How the connection is encrypted."""

    STARTTLS = "STARTTLS"
    SMTPS = "SMTPS"


def security_for_port(port: int) -> Security:
    """The port rule: 25, 587 and 2525 use SMTP with STARTTLS; every other port uses SMTPS."""
    return Security.STARTTLS if port in STARTTLS_PORTS else Security.SMTPS


def needs_smtputf8(addresses: Iterable[str]) -> bool:
    """Whether an envelope needs SMTPUTF8 (RFC 6531): a non-ASCII address in it (the
    wire form keeps domains as A-labels, so only a local part can make it so)."""
    return not all(address.isascii() for address in addresses)


#: Microsoft 365's (Exchange Online's) SMTP AUTH endpoint.
MICROSOFT365_SMTP = "smtp.office365.com"
#: Google's (Gmail's, Google Workspace's) SMTP submission and relay endpoints.
GOOGLE_SMTP = frozenset({"smtp.gmail.com", "smtp-relay.gmail.com", "smtp.googlemail.com"})


def host_name(server_name: str) -> str:
    """A Server Name as DNS compares it: lower case, without a trailing dot."""
    return server_name.strip().rstrip(".").lower()


def is_microsoft365_smtp(server_name: str) -> bool:
    """Whether ``server_name`` is Microsoft 365's SMTP endpoint, where password sign-in
    (basic authentication) is off by default from the end of December 2026."""
    return host_name(server_name) == MICROSOFT365_SMTP


def is_google_smtp(server_name: str) -> bool:
    """Whether ``server_name`` is one of Google's SMTP endpoints, whose 5.7.8 and 5.7.9
    refusals mean the account password is not accepted (an app password is)."""
    return host_name(server_name) in GOOGLE_SMTP


class Provider(str, enum.Enum):
    """How a sender signs in (the "+" step's Provider Type). CUSTOM is the contract's
    Custom Server (a username and password); the others sign in with an OAuth2 access
    token (XOAUTH2), fetched with a client secret or a service account key."""

    CUSTOM = "custom"
    MICROSOFT365 = "microsoft365"
    GOOGLE = "google"
    OAUTH2 = "oauth2"

    @property
    def label(self) -> str:
        return PROVIDER_LABELS[self]

    @property
    def uses_oauth(self) -> bool:
        return self is not Provider.CUSTOM


PROVIDER_LABELS = {
    Provider.CUSTOM: "Custom Server",
    Provider.MICROSOFT365: "Microsoft 365",
    Provider.GOOGLE: "Google Workspace",
    Provider.OAUTH2: "Custom Server with OAuth2",
}
#: Where each OAuth2 provider's senders connect unless the administrator changes it.
PROVIDER_SERVERS = {
    Provider.MICROSOFT365: (MICROSOFT365_SMTP, 587),
    Provider.GOOGLE: ("smtp.gmail.com", 465),
}


@dataclass(frozen=True)
class ServerAddress:
    """Where to connect and who to be there; the password travels separately."""

    server_name: str
    port: int
    username: str
