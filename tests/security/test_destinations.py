"""The destination policy: the test button is not a way into the portal's network.

Every address is checked before any connection; the connection goes to the checked address
while the certificate is verified against the Server Name."""

from __future__ import annotations

import socket
import time

import pytest

from flask_smtp_senders import InvalidSenderData, SenderSettings, hookimpl
from flask_smtp_senders.destinations import DestinationPolicy
from flask_smtp_senders.settings import DEFAULTS
from tests.support.smtp_servers import SERVER_NAME

pytestmark = pytest.mark.sqlite_only

REFUSED = DEFAULTS["SMTP_SENDERS_MSG_DESTINATION_REFUSED"]
NEVER_SMTP = ["169.254.169.254", "fe80::1", "0.0.0.0", "::", "224.0.0.1", "255.255.255.255",
              "240.0.0.1", "::ffff:169.254.169.254", "ff02::1"]


class Resolver:
    """Host plugin standing in for DNS; counts lookups and can change its answer."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls = 0

    @hookimpl
    def smtp_senders_resolve(self, server_name, port):
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return answer


class Decide:
    def __init__(self, answer: bool | None) -> None:
        self.answer = answer

    @hookimpl
    def smtp_senders_destination_allowed(self, server_name, port, address):
        return self.answer


def send(app, port, server_name=SERVER_NAME, recipient="to@example.com"):
    with app.app_context():
        service = app.extensions["smtp_senders"]
        sender = service.create_sender(SenderSettings(
            username="alice", server_name=server_name, port=port,
            from_address="noreply@example.com"), "s3cret")
        return service.send_test_email(sender.id, recipient)


@pytest.mark.parametrize("address", NEVER_SMTP)
def test_never_smtp_addresses_are_refused_by_default_policy(address):
    """Case C1."""
    assert DestinationPolicy(allow_loopback=True, allow_private=True).allows(address) is False


@pytest.mark.parametrize("address, loopback, private, expected", [
    ("127.0.0.1", False, True, False), ("127.0.0.1", True, True, True),
    ("::1", False, True, False), ("::ffff:127.0.0.1", False, True, False),
    ("10.1.2.3", False, True, True), ("10.1.2.3", False, False, False),
    ("192.168.1.10", False, False, False), ("100.64.0.1", False, False, False),
    ("fd00::1", False, False, False), ("93.184.215.14", False, False, True),
    ("2606:4700::1111", False, False, True),
])
def test_loopback_and_private_follow_the_settings(address, loopback, private, expected):
    """Case C2."""
    assert DestinationPolicy(loopback, private).allows(address) is expected


@pytest.mark.parametrize("address", NEVER_SMTP)
def test_a_name_resolving_to_a_never_smtp_address_is_refused_before_any_connection(
        make_app, address):
    """Case C1. pytest-socket fails any connect outside loopback, so a connection attempt
    would end at the connect stage, not at the destination stage."""
    app = make_app(plugins=[Resolver([address])])
    result = send(app, 465)
    assert (result.ok, result.stage, result.message) == (False, "destination", REFUSED)


@pytest.mark.parametrize("address", ["169.254.169.254", "0.0.0.0", "224.0.0.1", "[fe80::1]"])
def test_an_ip_literal_server_name_that_is_never_smtp_cannot_be_saved(make_app, address):
    """Case C1: refused when saving, with the message on the Server Name field."""
    app = make_app()
    with app.app_context(), pytest.raises(InvalidSenderData) as caught:
        app.extensions["smtp_senders"].create_sender(SenderSettings(
            username="alice", server_name=address, from_address="a@example.com"), "pw")
    assert caught.value.errors == {"server_name": REFUSED}


def test_even_the_host_hook_cannot_allow_cloud_metadata(make_app):
    """Case C1."""
    app = make_app(plugins=[Resolver(["169.254.169.254"]), Decide(True)])
    assert send(app, 465).stage == "destination"


def test_loopback_is_refused_unless_allowed(make_app, smtp_server):
    """Case C2: the same loopback server, refused by default, reached when allowed."""
    server = smtp_server("implicit")
    refused = send(make_app(plugins=[Resolver([server.host])],
                            SMTP_SENDERS_ALLOW_LOOPBACK=False), server.port)
    assert (refused.ok, refused.stage) == (False, "destination")
    assert server.connections == 0
    allowed = send(make_app(plugins=[Resolver([server.host])]), server.port)
    assert allowed.ok and len(server.messages) == 1


def test_the_host_hook_decides_for_ordinary_addresses(make_app, smtp_server):
    """Case C2: a hook may allow loopback the settings refuse, or refuse what they allow."""
    server = smtp_server("implicit")
    app = make_app(plugins=[Resolver([server.host]), Decide(True)],
                   SMTP_SENDERS_ALLOW_LOOPBACK=False)
    assert send(app, server.port).ok
    app = make_app(plugins=[Resolver([server.host]), Decide(False)])
    assert send(app, server.port).stage == "destination"
    assert len(server.messages) == 1


def test_denied_networks_are_refused_even_when_loopback_is_allowed(make_app, smtp_server):
    """Case C2."""
    server = smtp_server("implicit")
    app = make_app(plugins=[Resolver([server.host])],
                   SMTP_SENDERS_DENIED_NETWORKS=["127.0.0.0/8"])
    assert send(app, server.port).stage == "destination"
    assert server.connections == 0


def test_private_addresses_can_be_turned_off(make_app):
    """Case C2: refused before any connection (a connect to 10.x would fail the test)."""
    app = make_app(plugins=[Resolver(["10.20.30.40"])], SMTP_SENDERS_ALLOW_PRIVATE=False)
    assert send(app, 465).stage == "destination"


def test_one_bad_address_among_good_ones_refuses_the_name(make_app, smtp_server):
    """Case C3: a name that also points at metadata is not tried at all."""
    server = smtp_server("implicit")
    app = make_app(plugins=[Resolver([server.host, "169.254.169.254"])])
    assert send(app, server.port).stage == "destination"
    assert server.connections == 0


def test_dns_rebinding_cannot_move_the_connection_after_the_check(make_app, smtp_server):
    """Case C3: the name is resolved once; the connection goes to the checked address and
    the certificate is verified against the Server Name."""
    server = smtp_server("implicit")
    resolver = Resolver([server.host], ["169.254.169.254"])
    result = send(make_app(plugins=[resolver]), server.port)
    assert result.ok and resolver.calls == 1
    assert server.messages[0].tls


def test_malformed_denied_networks_fail_at_start(make_app):
    from flask_smtp_senders import ConfigurationError

    with pytest.raises(ConfigurationError, match="SMTP_SENDERS_DENIED_NETWORKS"):
        make_app(SMTP_SENDERS_DENIED_NETWORKS=["not-a-network"])


@pytest.fixture
def black_holes():
    """Three loopback addresses whose listener's accept queue is full, so a new connect
    hangs (the SYN is dropped) as it would on an unroutable address."""
    listeners, clients = [], []
    port = None
    for host in ("127.0.0.61", "127.0.0.62", "127.0.0.63"):
        listener = socket.socket()
        listener.bind((host, port or 0))
        port = listener.getsockname()[1]
        listener.listen(0)
        listeners.append(listener)
        for _ in range(3):  # fill the accept queue; extra attempts just stay pending
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex((host, port))
            clients.append(client)
    time.sleep(0.2)
    yield [listener.getsockname()[0] for listener in listeners], port
    for sock in clients + listeners:
        sock.close()


def test_several_unroutable_addresses_fail_within_the_deadline(make_app, black_holes):
    """Case B19: each address gets at most what is left of the deadline."""
    addresses, port = black_holes
    app = make_app(plugins=[Resolver(addresses)], SMTP_SENDERS_OPERATION_TIMEOUT=1.0,
                   SMTP_SENDERS_TIMEOUT=2.0)
    started = time.monotonic()
    result = send(app, port)
    elapsed = time.monotonic() - started
    assert (result.ok, result.stage) == (False, "timeout")
    assert 1.9 <= elapsed < 2.5, elapsed
