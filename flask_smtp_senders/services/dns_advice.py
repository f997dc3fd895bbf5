"""Advice about the From Address's domain: does it publish SPF, and which DMARC policy.

The vendor guide warns that the domain's existing DMARC policies apply to every message
sent through the custom server. So, on save and with the test diagnostics, we look up the
domain's SPF and DMARC TXT records and say, as advice and never as an error, what it
publishes. Only the facts we parse (published or not, the policy keyword) reach a page;
record text never does.

Lookups use dnspython with SMTP_SENDERS_DNS_NAMESERVERS (the system's resolvers when
unset) and are bounded by SMTP_SENDERS_DNS_TIMEOUT for both lookups together. The DMARC
lookup is for the From domain itself: finding the organisational domain needs the public
suffix list, which advice does not justify.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass

import dns.exception
import dns.resolver

from ..addresses import AddressRules, wire_address
from ..errors import ConfigurationError
from ..settings import Settings
from ..texts import message

log = logging.getLogger(__name__)

#: DMARC policies we name; anything else in a record is reported as "unknown".
POLICIES = ("none", "quarantine", "reject")


@dataclass(frozen=True)
class DomainAdvice:
    """What the From domain publishes, and the advice sentences to show."""

    domain: str
    #: "published", "missing" or "unknown" (the lookup failed).
    spf: str
    #: A policy of POLICIES, "missing", "unrecognised" (a record without a policy we
    #: know), or "unknown" (the lookup failed).
    dmarc: str
    lines: tuple[str, ...]


class DomainAdvisor:
    """Looks up SPF and DMARC for a From Address; one per app."""

    def __init__(self, settings: Settings, rules: AddressRules) -> None:
        self._texts = settings.texts
        self._rules = rules
        self.enabled = settings.domain_advice
        self._nameservers = _nameservers(settings.dns_nameservers)
        self._port = settings.dns_port
        self._timeout = settings.dns_timeout

    def advise(self, from_address: str) -> DomainAdvice | None:
        """The advice for the address's domain; None when advice is switched off, or the
        address is not one the app's address rules allow (saved under looser ones)."""
        if not self.enabled:
            return None
        try:
            wire = wire_address(from_address, self._rules)
        except ValueError:
            return None
        domain = wire.rpartition("@")[2].lower()
        resolver = self._resolver()
        end = time.monotonic() + self._timeout
        spf = self._spf(resolver, domain, end)
        dmarc = self._dmarc(resolver, domain, end)
        return DomainAdvice(domain, spf, dmarc, self._lines(domain, spf, dmarc))

    def _resolver(self) -> dns.resolver.Resolver:
        if self._nameservers:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = list(self._nameservers)
        else:
            resolver = dns.resolver.Resolver()
        resolver.port = self._port
        return resolver

    def _txt(self, resolver: dns.resolver.Resolver, name: str, end: float) -> list[str] | None:
        """The TXT strings at ``name`` ([] when there are none), None when the lookup
        failed or ran out of time."""
        remaining = end - time.monotonic()
        if remaining <= 0:
            return None
        try:
            answer = resolver.resolve(name, "TXT", lifetime=remaining,
                                      raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return []
        except (dns.exception.DNSException, OSError) as exc:
            log.info("TXT lookup of %s failed: %s", name, type(exc).__name__)
            return None
        return [b"".join(record.strings).decode("ascii", "replace") for record in answer]

    def _spf(self, resolver: dns.resolver.Resolver, domain: str, end: float) -> str:
        records = self._txt(resolver, domain, end)
        if records is None:
            return "unknown"
        spf = [r for r in records if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]
        return "published" if spf else "missing"

    def _dmarc(self, resolver: dns.resolver.Resolver, domain: str, end: float) -> str:
        records = self._txt(resolver, f"_dmarc.{domain}", end)
        if records is None:
            return "unknown"
        dmarc = [r for r in records if r.replace(" ", "").lower().startswith("v=dmarc1;")
                 or r.strip().lower() == "v=dmarc1"]
        if not dmarc:
            return "missing"
        return _policy(dmarc[0])

    def _lines(self, domain: str, spf: str, dmarc: str) -> tuple[str, ...]:
        def say(name: str, **values: str) -> str:
            return message(self._texts, name, domain=domain, **values)

        lines = []
        if spf == "published":
            lines.append(say("advice_spf_published"))
        elif spf == "missing":
            lines.append(say("advice_spf_missing"))
        if dmarc in (*POLICIES, "unrecognised"):
            lines.append(say("advice_dmarc_policy", policy=dmarc))
        elif dmarc == "missing":
            lines.append(say("advice_dmarc_missing"))
        if "unknown" in (spf, dmarc):
            lines.append(say("advice_dns_unavailable"))
        return tuple(lines)


def _nameservers(value: object) -> list[str]:
    """IP addresses of DNS servers, or [] for the system's."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    try:
        return [str(ipaddress.ip_address(item)) for item in items]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ConfigurationError(
            "SMTP_SENDERS_DNS_NAMESERVERS must be a list of IP addresses.") from None


def _policy(record: str) -> str:
    """The p= tag of a DMARC record, if it is one we name."""
    for tag in record.split(";")[1:]:
        name, _, value = tag.partition("=")
        if name.strip().lower() == "p":
            value = value.strip().lower()
            return value if value in POLICIES else "unrecognised"
    return "unrecognised"
