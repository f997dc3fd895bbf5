"""What an https:// token URL must be before anything is looked up or sent: the rule the
Token URL field is checked by (:mod:`flask_smtp_senders.provider_fields`) and the token
request's own parse (:mod:`flask_smtp_senders.oauth.endpoint`).

Why strict: a token URL is typed by an administrator, and the request it gets carries a
client secret or a signed assertion. Only ``https`` with a host goes; userinfo (which
would send a password of its own, or hide the real host behind an ``@``), a fragment,
a bad port, whitespace and control characters are refused, each with a reason.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna

#: The longest token URL we take (browsers and servers agree on this much).
MAX_URL = 2048
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_BAD_CHARACTER = re.compile(r"[\x00-\x20\x7f-\x9f\\]")


@dataclass(frozen=True)
class TokenURL:
    """An https URL taken apart: where to connect and what to ask for."""

    host: str  # a lower-case DNS name (A-labels) or an IP address without brackets
    port: int
    target: str  # path and query, as sent in the request line
    ip: bool  # the host is an IP address: nothing to look up

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the host (in brackets if IPv6), and a port other than 443."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 443 else f"{host}:{self.port}"


def parse_https_url(url: str) -> TokenURL:
    """The parts of an https:// URL; ValueError with a reason for anything else."""
    if not isinstance(url, str) or not url:
        raise ValueError("The URL is empty.")
    if len(url) > MAX_URL:
        raise ValueError(f"The URL must be at most {MAX_URL} characters.")
    if _BAD_CHARACTER.search(url):
        raise ValueError("The URL must not contain spaces, backslashes or control "
                         "characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("The URL's host or port is not valid.") from None
    if parts.scheme.lower() != "https":
        raise ValueError("The URL must start with https://.")
    if "#" in url:
        raise ValueError("The URL must not have a fragment (#...).")
    if "@" in parts.netloc:
        raise ValueError("The URL must not contain a user name or password (user@...).")
    if port == 0:
        raise ValueError("The URL's port is not valid.")
    host, ip = _host(parts.netloc, parts.hostname or "")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return TokenURL(host, port or 443, target, ip)


def _host(netloc: str, hostname: str) -> tuple[str, bool]:
    """The host as we connect to it, and whether it is an IP address."""
    if not hostname:
        raise ValueError("The URL has no host.")
    if "%" in hostname:
        raise ValueError("The URL's host must not contain a percent sign.")
    bracketed = netloc.startswith("[")
    try:
        address = ipaddress.ip_address(hostname)
    except ValueError:
        address = None
    if address is not None:
        if (address.version == 6) != bracketed:
            raise ValueError("An IPv6 address in a URL goes in brackets, and only it.")
        return str(address), True
    if bracketed:
        raise ValueError("The URL's host in brackets is not an IPv6 address.")
    return dns_name(hostname.rstrip(".")), False


def dns_name(name: str) -> str:
    """A DNS name in lower-case A-labels; ValueError unless every label is a valid one."""
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            raise ValueError("The host is not a valid domain name.") from None
    name = name.lower()
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError("The host is not a valid domain name.")
    if labels[-1].isdigit():  # "10.0.0", "1.2.3.04": not a name, not an address either
        raise ValueError("The host is not a valid domain name or IP address.")
    return name
