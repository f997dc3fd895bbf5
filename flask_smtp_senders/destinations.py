"""Which addresses a sender may connect to: the guard that stops the test button from
being a way into the portal's own network (SSRF).

The Server Name is resolved once; every address it gives is checked here before any
connection, and the connection then goes to that checked address (no second lookup for
DNS rebinding to exploit). Some addresses are never an SMTP server and are always refused:
unspecified, link-local, multicast, broadcast, reserved and IPv6 site-local, and every
cloud metadata service (:data:`METADATA_ADDRESSES`, :data:`METADATA_NAMES`). Loopback is
refused unless allowed; private ranges are allowed unless turned off.

**Addresses are checked as what they carry.** An IPv6 address that embeds an IPv4 address
(IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo: :data:`EMBEDDINGS`) is judged as the
IPv4 address it embeds, by every rule: the built-in refusals, loopback and private, the
metadata list and ``SMTP_SENDERS_DENIED_NETWORKS``. A Teredo address embeds two (its
server and its client) and is refused if either would be. The configured denied networks
are also matched against the address as written, and a denied IPv6 network that spells
an IPv4 network in one of the fixed-position forms also denies that IPv4 network.
A zone id (``fe80::1%eth0``) is dropped before any check.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_BROADCAST = ipaddress.ip_address("255.255.255.255")
_LOW32 = 0xFFFFFFFF

#: IPv6 prefixes whose last 32 bits are an IPv4 address: (prefix, what it is).
#: ``::/96`` leaves out ``::`` and ``::1`` (unspecified and loopback, judged as IPv6).
EMBEDDINGS: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (ipaddress.IPv6Network("::ffff:0:0/96"), "IPv4-mapped (RFC 4291)"),
    (ipaddress.IPv6Network("::/96"), "IPv4-compatible, deprecated (RFC 4291)"),
    (ipaddress.IPv6Network("64:ff9b::/96"), "NAT64 well-known prefix (RFC 6052)"),
    # RFC 8215 leaves the layout to the operator; the /96 layout is the one read here.
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "NAT64 local-use prefix (RFC 8215)"),
)
#: 6to4 (RFC 3056): the IPv4 address is bits 16-48.
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
#: Teredo (RFC 4380): the server's IPv4 is bits 32-64, the client's the last 32 bits
#: inverted.
TEREDO = ipaddress.IPv6Network("2001::/32")

#: Cloud metadata and credential services: always refused, whatever
#: SMTP_SENDERS_ALLOW_PRIVATE says and whatever the host's hook answers. Most are
#: link-local (refused anyway); the others are private or even public addresses.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",     # AWS, GCP, Azure, Oracle, OpenStack, DigitalOcean, Hetzner...
    "fd00:ec2::254",       # AWS EC2 instance metadata over IPv6 (Nitro)
    "169.254.170.2",       # AWS ECS task metadata and container credentials
    "169.254.170.23",      # AWS EKS Pod Identity Agent (credentials)
    "fd00:ec2::23",        # AWS EKS Pod Identity Agent over IPv6
    "fd20:ce::254",        # GCP metadata server for IPv6-only instances
    "168.63.129.16",       # Azure WireServer (a public address)
    "100.100.100.200",     # Alibaba Cloud instance metadata (shared address space)
    "192.0.0.192",         # Oracle Cloud legacy instance metadata
    "fd00:c1::a9fe:a9fe",  # Oracle Cloud instance metadata over IPv6
    "fe80::a9fe:a9fe",     # OpenStack metadata over IPv6 (link-local)
    "169.254.42.42",       # Scaleway instance metadata
    "fd00:42::42",         # Scaleway instance metadata over IPv6
    "169.254.0.23",        # Tencent Cloud metadata (metadata.tencentyun.com)
))

#: Names of metadata services, refused as a Server Name (and any name under them),
#: compared in lower case, without trailing dots, with IDN spellings decoded.
METADATA_NAMES: frozenset[str] = frozenset((
    "metadata.google.internal",    # GCP
    "metadata",                    # GCP, via the google.internal search domain
    "metadata.azure.internal",     # Azure (named in issue 14)
    "instance-data",               # AWS EC2, via the ec2.internal search domain
    "instance-data.ec2.internal",  # AWS EC2
    "metadata.tencentyun.com",     # Tencent Cloud
    "api.metadata.cloud.ibm.com",  # IBM Cloud VPC
    "metadata.platformequinix.com",  # Equinix Metal (a public address)
    "metadata.packet.net",         # Equinix Metal, former name
))


class Kind(enum.Enum):
    LOOPBACK = "loopback"
    PRIVATE = "private"
    PUBLIC = "public"
    FORBIDDEN = "forbidden"


def parse(address: str) -> IPAddress:
    """The address without its zone id; raises ValueError for anything else (a name,
    brackets, spaces, and the shorthands inet_aton takes, such as ``127.1``)."""
    return ipaddress.ip_address(address.split("%", 1)[0])


def embedded(address: IPAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries (none for any other address)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return ()
    value = int(address)
    if address.teredo is not None:
        server, client = address.teredo
        return (server, client)
    if address in SIX_TO_FOUR:
        return (ipaddress.IPv4Address((value >> 80) & _LOW32),)
    if value in (0, 1):  # "::" and "::1" are IPv6's own
        return ()
    if any(address in prefix for prefix, _what in EMBEDDINGS):
        return (ipaddress.IPv4Address(value & _LOW32),)
    return ()


def judged(address: IPAddress) -> tuple[IPAddress, ...]:
    """What the rules judge: the embedded IPv4 addresses, or the address itself."""
    return embedded(address) or (address,)


def kinds_of(address: IPAddress) -> frozenset[Kind]:
    """Classify an address: the kinds of what it is judged as (two for Teredo)."""
    return frozenset(_kind(ip) for ip in judged(address))


def _kind(address: IPAddress) -> Kind:
    if address in METADATA_ADDRESSES:
        return Kind.FORBIDDEN
    if address.is_loopback:
        return Kind.LOOPBACK
    if (address.is_unspecified or address.is_link_local or address.is_multicast
            or address.is_reserved or address == _BROADCAST
            or (isinstance(address, ipaddress.IPv4Address) and address in _THIS_NETWORK)
            or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)):
        return Kind.FORBIDDEN
    if address.is_global:
        return Kind.PUBLIC
    return Kind.PRIVATE


def as_ipv4_network(network: IPNetwork) -> ipaddress.IPv4Network | None:
    """The IPv4 network an IPv6 network spells in a fixed-position embedding, if it names
    at least one bit of IPv4 (``::ffff:10.0.0.0/104`` is 10.0.0.0/8, ``2002:a00::/24`` is
    10.0.0.0/8); None otherwise. Teredo networks are matched as written only."""
    if not isinstance(network, ipaddress.IPv6Network):
        return None
    value, length = int(network.network_address), network.prefixlen
    if network.subnet_of(SIX_TO_FOUR) and 16 < length <= 48:
        return ipaddress.IPv4Network(((value >> 80) & _LOW32, length - 16))
    if length > 96 and any(network.subnet_of(prefix) for prefix, _what in EMBEDDINGS):
        return ipaddress.IPv4Network((value & _LOW32, length - 96))
    return None


def is_metadata_name(server_name: str) -> bool:
    """Whether a Server Name is (or is under) a cloud metadata service's name, however it
    is spelled: any case, trailing dots, Unicode or punycode (``xn--``) labels."""
    key = _name_key(server_name)
    return any(key == name or key.endswith("." + name) for name in METADATA_NAMES)


def _name_key(name: str) -> str:
    text = name.strip()
    try:  # full-width letters, ideographic full stops, case
        text = idna.uts46_remap(text, std3_rules=False, transitional=False)
    except (idna.IDNAError, ValueError):
        pass
    labels = []
    for label in text.lower().rstrip(".").split("."):
        if label.startswith("xn--"):
            try:
                label = label[4:].encode("ascii").decode("punycode").lower()
            except (UnicodeError, ValueError):
                pass
        labels.append(label)
    return ".".join(labels)


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
        networks: list[IPNetwork] = []
        for text in denied_networks:
            network = ipaddress.ip_network(text, strict=False)
            networks.append(network)
            ipv4 = as_ipv4_network(network)
            if ipv4 is not None:
                networks.append(ipv4)
        return cls(bool(allow_loopback), bool(allow_private), tuple(networks))

    def denies(self, address: IPAddress) -> bool:
        """In a configured denied network, as written or as any IPv4 it carries."""
        candidates = {address, *embedded(address)}
        return any(ip.version == net.version and ip in net
                   for ip in candidates for net in self.denied_networks)

    def allows(self, address: str) -> bool:
        """Raises ValueError for a string that is not an IP address."""
        ip = parse(address)
        return not self.denies(ip) and all(self._allows_kind(_kind(one))
                                           for one in judged(ip))

    def _allows_kind(self, kind: Kind) -> bool:
        if kind is Kind.LOOPBACK:
            return self.allow_loopback
        if kind is Kind.PRIVATE:
            return self.allow_private
        return kind is Kind.PUBLIC


def never_allowed(address: str) -> bool:
    """True for addresses no hook may allow (they are never an SMTP server, or they are a
    metadata service); raises ValueError for a string that is not an IP address."""
    return Kind.FORBIDDEN in kinds_of(parse(address))
