"""Issue 14 items 3 and 4: addresses are checked as what they carry, and cloud metadata is
refused in every cloud.

Case G3: an IPv6 address embedding an IPv4 one (IPv4-mapped, IPv4-compatible, NAT64 well-
known and local-use, 6to4, Teredo server and client), or carrying a zone id, is judged as
the IPv4 it embeds by every rule: the built-in refusals, loopback/private and
SMTP_SENDERS_DENIED_NETWORKS (given in either family).
Case G4: metadata services (by address, in any spelling, and by Server Name) are refused
whatever SMTP_SENDERS_ALLOW_PRIVATE says and whatever the host's hook answers.

Refused destinations never produce a packet: the ones on loopback point at a listener that
must record no connection, and pytest-socket fails any other connect.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from pathlib import Path

import pytest

from flask_smtp_senders import InvalidSenderData, SenderSettings, hookimpl
from flask_smtp_senders.destinations import (
    METADATA_ADDRESSES,
    METADATA_NAMES,
    DestinationPolicy,
    embedded,
    is_metadata_name,
    never_allowed,
    parse,
)
from flask_smtp_senders.settings import DEFAULTS
from tests.support.smtp_servers import SERVER_NAME

pytestmark = pytest.mark.sqlite_only

REFUSED = DEFAULTS["SMTP_SENDERS_MSG_DESTINATION_REFUSED"]
DOCS = Path(__file__).resolve().parent.parent.parent / "docs" / "security.md"

#: The listener that must never be reached (a spare loopback address, not 127.0.0.1).
TRAP = "127.0.0.77"


def _obfuscated(ipv4: str) -> str:
    """A Teredo client's last 32 bits: the IPv4 address inverted."""
    value = int(ipaddress.IPv4Address(ipv4)) ^ 0xFFFFFFFF
    return f"{value >> 16:x}:{value & 0xFFFF:x}"


#: Every way of writing TRAP: (form, address).
TRAP_FORMS = [
    ("plain", TRAP),
    ("IPv4-mapped", "::ffff:127.0.0.77"),
    ("IPv4-mapped, hex", "::ffff:7f00:4d"),
    ("IPv4-mapped, zone id", "::ffff:7f00:4d%lo"),
    ("IPv4-compatible", "::127.0.0.77"),
    ("NAT64 well-known", "64:ff9b::7f00:4d"),
    ("NAT64 local-use", "64:ff9b:1::7f00:4d"),
    ("6to4", "2002:7f00:4d::"),
    ("6to4, a host behind it", "2002:7f00:4d:1::25"),
    ("Teredo server", f"2001:0:7f00:4d::{_obfuscated('8.8.8.8')}"),
    ("Teredo client", f"2001:0:808:808::{_obfuscated(TRAP)}"),
]
#: The same forms around a public address, which stay allowed.
PUBLIC_FORMS = ["93.184.215.14", "::ffff:93.184.215.14", "::93.184.215.14",
                "64:ff9b::5db8:d70e", "64:ff9b:1::5db8:d70e", "2002:5db8:d70e::1",
                f"2001:0:808:808::{_obfuscated('93.184.215.14')}"]


class Host:
    """Host plugin standing in for DNS (answers ``address`` for every name) and, when
    ``decide`` is not None, answering the destination hook."""

    def __init__(self, address: str = "127.0.0.1", decide: bool | None = None) -> None:
        self.address = address
        self.decide = decide
        self.resolved: list[str] = []

    @hookimpl
    def smtp_senders_resolve(self, server_name, port):
        self.resolved.append(server_name)
        return [self.address]

    @hookimpl
    def smtp_senders_destination_allowed(self, server_name, port, address):
        return self.decide


@pytest.fixture
def trap():
    """A TCP listener on TRAP; ``trap.connections()`` counts what reached it."""
    listener = socket.socket()
    try:
        listener.bind((TRAP, 0))
    except OSError as exc:  # pragma: no cover - a host without 127/8 on lo
        listener.close()
        pytest.skip(f"cannot bind {TRAP}: {exc}")
    listener.listen(16)
    listener.setblocking(False)

    class Trap:
        port = listener.getsockname()[1]

        @staticmethod
        def connections() -> int:
            count = 0
            while True:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    return count
                conn.close()
                count += 1

    yield Trap
    listener.close()


def send(app, port, server_name=SERVER_NAME):
    with app.app_context():
        service = app.extensions["smtp_senders"]
        sender = service.create_sender(SenderSettings(
            username="alice", server_name=server_name, port=port,
            from_address="noreply@example.com"), "s3cret")
        return service.send_test_email(sender.id, "to@example.com")


# -- G3: the policy, unit by unit ------------------------------------------------------------


@pytest.mark.parametrize("form, address", TRAP_FORMS)
def test_every_form_embeds_the_same_ipv4(form, address):
    """Case G3: the forms under test really carry TRAP (a typo here would test nothing)."""
    ip = parse(address)
    assert ipaddress.IPv4Address(TRAP) in (ip, *embedded(ip)), form


@pytest.mark.parametrize("denied", ["127.0.0.77/32", "127.0.0.0/8", "::ffff:127.0.0.77/128",
                                    "::ffff:7f00:0/104", "64:ff9b::7f00:4d/128",
                                    "2002:7f00:4d::/48"])
@pytest.mark.parametrize("form, address", TRAP_FORMS)
def test_a_denied_network_in_either_family_catches_every_form(denied, form, address):
    """Case G3: SMTP_SENDERS_DENIED_NETWORKS is matched against the IPv4 an address
    carries, and a denied IPv6 network spelling an IPv4 one denies that IPv4 network."""
    policy = DestinationPolicy.from_settings(True, True, [denied])
    assert policy.allows(address) is False, (denied, form)
    assert policy.allows("127.0.0.78") is not (denied == "127.0.0.0/8" or
                                              denied == "::ffff:7f00:0/104")


@pytest.mark.parametrize("form, address", TRAP_FORMS)
def test_loopback_is_loopback_in_every_form(form, address):
    """Case G3: the built-in loopback refusal sees through every embedding."""
    assert DestinationPolicy(allow_loopback=False).allows(address) is False, form
    assert DestinationPolicy(allow_loopback=True).allows(address) is True, form


@pytest.mark.parametrize("address", [
    "::ffff:10.1.2.3", "::10.1.2.3", "64:ff9b::a01:203", "2002:a01:203::",
    f"2001:0:808:808::{_obfuscated('10.1.2.3')}", f"2001:0:a01:203::{_obfuscated('8.8.8.8')}",
])
def test_private_is_private_in_every_form(address):
    """Case G3: SMTP_SENDERS_ALLOW_PRIVATE off refuses embedded private addresses (for
    Teredo: when either of the two is private)."""
    assert DestinationPolicy(allow_private=False).allows(address) is False
    assert DestinationPolicy(allow_private=True).allows(address) is True


def test_teredo_is_refused_when_either_half_would_be():
    """Case G3: loopback allowed and private refused: a Teredo address whose server is
    loopback and client private is refused, though each half alone passes one rule."""
    policy = DestinationPolicy(allow_loopback=True, allow_private=False)
    address = f"2001:0:7f00:1::{_obfuscated('10.1.2.3')}"
    assert policy.allows(address) is False
    assert policy.allows("127.0.0.1") is True


@pytest.mark.parametrize("address", [
    "::ffff:169.254.169.254", "::169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::",
    "::ffff:0.0.0.0", "64:ff9b::e000:1", "2002:ffff:ffff::", "::ffff:240.0.0.1",
    f"2001:0:a9fe:a9fe::{_obfuscated('8.8.8.8')}",
    f"2001:0:808:808::{_obfuscated('169.254.169.254')}",
    "fe80::1%eth0", "fe80::a9fe:a9fe%eth0", "fec0::1",
])
def test_never_smtp_is_never_smtp_in_every_form(address):
    """Case G3: link-local, unspecified, multicast, broadcast and reserved addresses are
    refused in every embedding and with a zone id, beyond any hook's reach."""
    assert never_allowed(address) is True
    assert DestinationPolicy(allow_loopback=True, allow_private=True).allows(address) is False


@pytest.mark.parametrize("address", PUBLIC_FORMS + ["2606:4700::1111", "::1"])
def test_ordinary_addresses_still_pass(address):
    """Case G3: numeric forms that worked keep working; an embedded public address is
    judged as that public address."""
    assert DestinationPolicy(allow_loopback=True, allow_private=False).allows(address)
    assert never_allowed(address) is False


@pytest.mark.parametrize("address", ["127.1", "0x7f.0.0.1", "2130706433", "[::1]",
                                     " 127.0.0.1", "mx.example.com"])
def test_what_is_not_an_address_is_not_taken_for_one(address):
    """Case G3: shorthands inet_aton would accept are errors (the session refuses the
    address when the check raises), never guessed at."""
    with pytest.raises(ValueError):
        DestinationPolicy(allow_loopback=True).allows(address)


# -- G3: through the app -----------------------------------------------------------------------


@pytest.mark.parametrize("denied", ["127.0.0.77/32", "::ffff:127.0.0.77/128"])
def test_denied_networks_refuse_every_form_through_the_app(make_app, smtp_server, trap,
                                                            denied):
    """Case G3: with the trap's address denied (as IPv4, then as IPv4-mapped IPv6) and
    loopback allowed, a host resolver answering any spelling of it fails Send Test Email
    at the destination stage and the trap records no connection; the test server's
    address (LOOPBACK), not denied, still receives the message from the same app."""
    server = smtp_server("implicit")
    host = Host()
    app = make_app(plugins=[host], SMTP_SENDERS_DENIED_NETWORKS=[denied])
    for form, address in TRAP_FORMS:
        host.address = address
        result = send(app, trap.port)
        assert (result.ok, result.stage, result.message) == (False, "destination",
                                                             REFUSED), form
    assert trap.connections() == 0
    host.address = server.host
    assert send(app, server.port).ok
    assert len(server.messages) == 1


def _loopback_forms(ipv4: str) -> list[str]:
    """``ipv4`` (a loopback address) embedded in IPv6 every way the policy must see through:
    for 127.0.0.1, "::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1", "64:ff9b:1::7f00:1",
    "2002:7f00:1::", Teredo with it as server and as client, and "::ffff:127.0.0.1%lo"."""
    value = int(ipaddress.IPv4Address(ipv4))
    high, low = f"{value >> 16:x}", f"{value & 0xFFFF:x}"
    return [f"::ffff:{ipv4}", f"::{ipv4}", f"64:ff9b::{high}:{low}", f"64:ff9b:1::{high}:{low}",
            f"2002:{high}:{low}::", f"2001:0:{high}:{low}::{_obfuscated('8.8.8.8')}",
            f"2001:0:808:808::{_obfuscated(ipv4)}", f"::ffff:{ipv4}%lo"]


def test_loopback_refusal_covers_every_form_through_the_app(make_app, smtp_server):
    """Case G3: with SMTP_SENDERS_ALLOW_LOOPBACK off, every spelling of the server's own
    loopback address is refused and the server records no connection."""
    server = smtp_server("implicit")
    host = Host()
    app = make_app(plugins=[host], SMTP_SENDERS_ALLOW_LOOPBACK=False)
    forms = _loopback_forms(server.host)
    for address in forms:
        host.address = address
        result = send(app, server.port)
        assert (result.ok, result.stage) == (False, "destination"), address
    assert server.connections == 0


@pytest.mark.parametrize("server_name", ["[::ffff:169.254.169.254]", "64:ff9b::a9fe:a9fe",
                                         "2002:a9fe:a9fe::1", "::ffff:100.100.100.200"])
def test_an_embedded_never_smtp_literal_cannot_be_saved(make_app, server_name):
    """Case G3 and G4: an IP-literal Server Name is judged by what it carries when saved."""
    app = make_app()
    with app.app_context(), pytest.raises(InvalidSenderData) as caught:
        app.extensions["smtp_senders"].create_sender(SenderSettings(
            username="alice", server_name=server_name, from_address="a@example.com"), "pw")
    assert caught.value.errors == {"server_name": REFUSED}


# -- G4: cloud metadata ------------------------------------------------------------------------


@pytest.mark.parametrize("address", sorted(map(str, METADATA_ADDRESSES)) + [
    "::ffff:168.63.129.16", "64:ff9b::a83f:8110", "2002:a83f:8110::",
    "::ffff:100.100.100.200", "64:ff9b::6464:64c8", "::ffff:192.0.0.192",
    "fd00:ec2:0:0:0:0:0:254", "FD00:EC2::254", "fe80::a9fe:a9fe%eth0",
])
def test_metadata_is_refused_whatever_the_settings(address):
    """Case G4: every metadata address, in any spelling, is beyond the settings' reach."""
    assert never_allowed(address) is True
    policy = DestinationPolicy(allow_loopback=True, allow_private=True)
    assert policy.allows(address) is False


@pytest.mark.parametrize("address", ["168.63.129.16", "100.100.100.200", "192.0.0.192",
                                     "fd00:ec2::254", "::ffff:168.63.129.16",
                                     "169.254.170.2", "fd20:ce::254"])
def test_a_hook_saying_yes_cannot_reach_metadata(make_app, address):
    """Case G4: a host hook answering True, private addresses allowed, and a resolver
    answering a metadata address: refused before any connection (pytest-socket would fail
    a connect to these addresses, at the connect stage)."""
    app = make_app(plugins=[Host(address, decide=True)], SMTP_SENDERS_ALLOW_PRIVATE=True)
    result = send(app, 465)
    assert (result.ok, result.stage, result.message) == (False, "destination", REFUSED)


@pytest.mark.parametrize("name", [
    "metadata.google.internal", "METADATA.Google.Internal", "metadata.google.internal.",
    "metadata.google.internal..", "metadata", "Metadata.", "metadata.azure.internal",
    "instance-data", "INSTANCE-DATA.ec2.internal.", "xn--metadata-.google.internal",
    "ｍｅｔａｄａｔａ。ｇｏｏｇｌｅ。ｉｎｔｅｒｎａｌ", "any.thing.metadata.google.internal",
    "metadata.tencentyun.com", "api.metadata.cloud.ibm.com",
])
def test_metadata_names_are_recognised_however_spelled(name):
    """Case G4: case, trailing dots, full-width and punycode spellings, names under them."""
    assert is_metadata_name(name) is True


@pytest.mark.parametrize("name", ["metadata.google.internal.example.com", "metadatax",
                                  "my-metadata.example.com", "instance-data2", SERVER_NAME,
                                  "xn--mnchen-3ya.de", "xn--"])
def test_other_names_are_not_metadata(name):
    """Case G4: only the names themselves and names under them."""
    assert is_metadata_name(name) is False


@pytest.mark.parametrize("name", ["metadata.google.internal", "METADATA.GOOGLE.INTERNAL.",
                                  "metadata", "metadata.azure.internal", "Instance-Data",
                                  "instance-data.ec2.internal",
                                  "ｍｅｔａｄａｔａ.google.internal"])
def test_a_metadata_server_name_is_refused_even_on_an_allowed_address(make_app, smtp_server,
                                                                       name):
    """Case G4: the Server Name alone refuses: the resolver would answer the loopback test
    server (allowed) and the hook answers True, and still the name is a field error on
    save, and the server records no connection."""
    server = smtp_server("implicit")
    app = make_app(plugins=[Host(server.host, decide=True)])
    with pytest.raises(InvalidSenderData) as refused:
        send(app, server.port, server_name=name)
    assert refused.value.errors == {"server_name": REFUSED}
    assert server.connections == 0


def test_the_rule_checks_the_name_as_given(make_app):
    """Case G4: the rule every send path asks refuses a metadata name in any spelling,
    even one that never went through the form's normalisation."""
    app = make_app(plugins=[Host(decide=True)])
    allowed = app.extensions["smtp_senders"].transport_options.destination_allowed
    assert allowed("mx.example.com", 465, "127.0.0.1") is True
    for name in ("METADATA.google.internal.", "xn--metadata-.google.internal", "metadata.."):
        assert allowed(name, 465, "127.0.0.1") is False


def test_the_metadata_lists_are_documented():
    """Case G4: docs/security.md lists every metadata address and name the code refuses."""
    text = DOCS.read_text(encoding="utf-8")
    documented = set(re.findall(r"`([^`\s]+)`", text))
    missing = {str(a) for a in METADATA_ADDRESSES} | set(METADATA_NAMES)
    assert missing - documented == set()


def test_the_transport_refuses_a_metadata_name_before_looking_it_up(tls_material):
    """Case G4: whatever path hands the transport a metadata service's name (a store of
    the host's, a row from before this rule), it fails at "destination" before the
    resolver is asked, so not even a DNS query goes out."""
    from flask_smtp_senders.errors import DeliveryError
    from flask_smtp_senders.sealed import Secret
    from flask_smtp_senders.smtp import transport

    asked: list[str] = []

    def resolver(name: str, port: int) -> list[str]:
        asked.append(name)
        return ["127.0.0.1"]

    options = transport.TransportOptions(
        ssl_context=tls_material.client_context(), operation_timeout=2.0, deadline=4.0,
        ehlo_name="client.test", messages={stage: stage for stage in transport.STAGES},
        resolver=resolver, destination_allowed=lambda *_args: True)
    for name in ("metadata.google.internal", "METADATA.Google.Internal.", "instance-data"):
        with pytest.raises(DeliveryError) as refused:
            transport.connect(transport.ServerAddress(name, 465, "alice"), Secret("pw"),
                              options)
        assert refused.value.stage == "destination"
    assert asked == []
