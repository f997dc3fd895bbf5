"""Which addresses a sender may connect to: the guard that stops the test button from
being a way into the portal's own network (SSRF).

The Server Name is resolved once; every address it gives is checked here before any
connection, and the connection then goes to that checked address (no second lookup for
DNS rebinding to exploit). Some addresses are never an SMTP server and are always refused:
unspecified, link-local (cloud metadata such as 169.254.169.254), multicast, broadcast and
reserved. Loopback is refused unless allowed; private ranges are allowed unless turned off.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_BROADCAST = ipaddress.ip_address("255.255.255.255")


class Kind(enum.Enum):
    LOOPBACK = "loopback"
    PRIVATE = "private"
    PUBLIC = "public"
    FORBIDDEN = "forbidden"


def kind_of(address: IPAddress) -> Kind:
    """Classify an address; IPv4-mapped IPv6 addresses count as the IPv4 they carry."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return Kind.LOOPBACK
    if (address.is_unspecified or address.is_link_local or address.is_multicast
            or address.is_reserved or address == _BROADCAST
            or (isinstance(address, ipaddress.IPv4Address) and address in _THIS_NETWORK)):
        return Kind.FORBIDDEN
    if address.is_global:
        return Kind.PUBLIC
    return Kind.PRIVATE


@dataclass(frozen=True)
class DestinationPolicy:
    """The configured rule; ``allows`` is the whole decision without the host's hook."""

    allow_loopback: bool = False
    allow_private: bool = True
    denied_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, allow_loopback: bool, allow_private: bool,
                      denied_networks: Iterable[str]) -> DestinationPolicy:
        """Raises ValueError for a network that is not CIDR notation."""
        return cls(bool(allow_loopback), bool(allow_private),
                   tuple(ipaddress.ip_network(net, strict=False) for net in denied_networks))

    def allows(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if any(ip.version == net.version and ip in net for net in self.denied_networks):
            return False
        kind = kind_of(ip)
        if kind is Kind.LOOPBACK:
            return self.allow_loopback
        if kind is Kind.PRIVATE:
            return self.allow_private
        return kind is Kind.PUBLIC


def never_allowed(address: str) -> bool:
    """True for addresses no hook may allow (they are never an SMTP server)."""
    return kind_of(ipaddress.ip_address(address.split("%", 1)[0])) is Kind.FORBIDDEN
