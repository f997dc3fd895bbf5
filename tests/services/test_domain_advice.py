"""From-domain advice: SPF and DMARC looked up through a DNS server on loopback
(example_app/dns_server.py), shown after a save, never an error, never a record's text."""

from __future__ import annotations

import time

import pytest

from example_app.dns_server import LOOPBACK, DNSServer
from flask_smtp_senders import SenderSettings, hookimpl
from flask_smtp_senders.addresses import AddressRules
from flask_smtp_senders.errors import ConfigurationError
from flask_smtp_senders.services.dns_advice import DomainAdvisor
from flask_smtp_senders.settings import DEFAULTS, Settings

SPF = "v=spf1 mx include:_spf.example.net -all"


def advisor(server: DNSServer, **config: object) -> DomainAdvisor:
    settings = dict(DEFAULTS, SMTP_SENDERS_DNS_NAMESERVERS=[LOOPBACK],
                    SMTP_SENDERS_DNS_PORT=server.port, SMTP_SENDERS_DNS_TIMEOUT=1.0)
    settings.update(config)
    return DomainAdvisor(Settings.from_config(settings), AddressRules())


def test_spf_and_a_dmarc_policy_are_reported_with_the_policy_named() -> None:
    zone = {"example.org": ["google-site-verification=abc", SPF],
            "_dmarc.example.org": ["v=DMARC1; p=reject; rua=mailto:d@example.org"]}
    with DNSServer(zone) as server:
        advice = advisor(server).advise("noreply@example.org")
    assert advice is not None
    assert (advice.domain, advice.spf, advice.dmarc) == ("example.org", "published", "reject")
    assert advice.lines == (
        "example.org publishes an SPF record: make sure it lists this mail server.",
        "example.org has a DMARC policy (p=reject). It applies to every message sent with "
        "this From Address, so this mail server must be allowed to send for example.org.")
    assert server.questions == ["example.org", "_dmarc.example.org"]


def test_missing_records_are_advice_not_errors() -> None:
    with DNSServer({"example.org": ["some-other=record"]}) as server:
        advice = advisor(server).advise("noreply@example.org")
    assert advice is not None and (advice.spf, advice.dmarc) == ("missing", "missing")
    assert [line.split(":")[0] for line in advice.lines] == [
        "example.org publishes no SPF record", "example.org publishes no DMARC policy"]


def test_a_record_split_into_several_strings_is_read_whole() -> None:
    long_spf = "v=spf1 " + " ".join(f"ip4:192.0.2.{n}" for n in range(40)) + " -all"
    assert len(long_spf) > 255  # two TXT strings on the wire
    zone = {"example.org": [long_spf], "_dmarc.example.org": ["v=DMARC1;p=quarantine"]}
    with DNSServer(zone) as server:
        advice = advisor(server).advise("a@example.org")
    assert advice is not None and (advice.spf, advice.dmarc) == ("published", "quarantine")


@pytest.mark.parametrize("record, policy", [
    ("v=DMARC1; p=none", "none"), ("V=DMARC1 ; P = Quarantine ;", "quarantine"),
    ("v=DMARC1; sp=reject", "unrecognised"), ("v=DMARC1; p=<script>x</script>", "unrecognised"),
])
def test_only_known_policy_keywords_are_named(record: str, policy: str) -> None:
    zone = {"example.org": [SPF], "_dmarc.example.org": [record]}
    with DNSServer(zone) as server:
        advice = advisor(server).advise("a@example.org")
    assert advice is not None and advice.dmarc == policy
    assert f"(p={policy})" in advice.lines[1]
    assert "<script>" not in " ".join(advice.lines)


def test_a_silent_dns_server_costs_at_most_the_timeout() -> None:
    with DNSServer({}, silent=["example.org", "_dmarc.example.org"]) as server:
        started = time.monotonic()
        advice = advisor(server, SMTP_SENDERS_DNS_TIMEOUT=0.5).advise("a@example.org")
        elapsed = time.monotonic() - started
    assert elapsed < 1.0  # both lookups share the one timeout
    assert advice is not None and (advice.spf, advice.dmarc) == ("unknown", "unknown")
    assert advice.lines == ("The DNS records of example.org could not be checked just now.",)


def test_servfail_is_unknown_not_missing() -> None:
    with DNSServer({"example.org": [SPF]}, servfail=["_dmarc.example.org"]) as server:
        advice = advisor(server).advise("a@example.org")
    assert advice is not None and (advice.spf, advice.dmarc) == ("published", "unknown")
    assert advice.lines[-1] == "The DNS records of example.org could not be checked just now."


def test_an_international_domain_is_looked_up_in_its_ascii_form() -> None:
    zone = {"xn--bcher-kva.example": [SPF]}
    with DNSServer(zone) as server:
        advice = advisor(server).advise("info@b\u00fccher.example")
    assert advice is not None and advice.domain == "xn--bcher-kva.example"
    assert server.questions[0] == "xn--bcher-kva.example" and advice.spf == "published"


def test_switched_off_it_asks_nothing() -> None:
    with DNSServer({"example.org": [SPF]}) as server:
        assert advisor(server, SMTP_SENDERS_DOMAIN_ADVICE=False).advise("a@example.org") is None
    assert server.questions == []


@pytest.mark.parametrize("key, value", [
    ("SMTP_SENDERS_DNS_TIMEOUT", 0), ("SMTP_SENDERS_DNS_TIMEOUT", float("nan")),
    ("SMTP_SENDERS_DNS_PORT", 0), ("SMTP_SENDERS_DNS_PORT", "53"),
    ("SMTP_SENDERS_DNS_NAMESERVERS", ["dns.example"]),
])
def test_bad_settings_fail_at_start_naming_the_setting(key: str, value: object) -> None:
    with DNSServer({}) as server, pytest.raises(ConfigurationError, match=key):
        advisor(server, **{key: value})


# ------------------------------------------------------------------------ on the pages


def form_data(client, from_address: str) -> dict[str, str]:
    page = client.get("/settings/senders/new/email/custom").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    return {"csrf_token": token, "username": "alice", "password": "s3cret",
            "server_name": "mx.example.net", "port": "465", "from_name": "Acme",
            "from_address": from_address, "reply_to_name": "", "reply_to_address": ""}


class Admin:
    @hookimpl
    def smtp_senders_authorize(self, action, sender_id):
        return True


def test_saving_a_sender_shows_the_advice_beside_the_saved_message(make_app) -> None:
    zone = {"example.org": [SPF], "_dmarc.example.org": ["v=DMARC1; p=quarantine"]}
    with DNSServer(zone) as server:
        app = make_app(plugins=[Admin()], SMTP_SENDERS_DOMAIN_ADVICE=True,
                       SMTP_SENDERS_DNS_NAMESERVERS=[LOOPBACK], SMTP_SENDERS_DNS_PORT=server.port)
        client = app.test_client()
        response = client.post("/settings/senders/new/email/custom",
                               data=form_data(client, "noreply@example.org"),
                               follow_redirects=True)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "The sender was saved." in page
    assert 'class="smtp-senders-flash advice" role="status"' in page
    assert "example.org has a DMARC policy (p=quarantine)." in page
    with app.app_context():
        [sender] = app.extensions["smtp_senders"].list_senders()
    assert sender.settings == SenderSettings(
        username="alice", server_name="mx.example.net", port=465, from_name="Acme",
        from_address="noreply@example.org")


def test_a_dns_failure_never_stops_a_save(make_app) -> None:
    with DNSServer({}, silent=["example.org", "_dmarc.example.org"]) as server:
        app = make_app(plugins=[Admin()], SMTP_SENDERS_DOMAIN_ADVICE=True,
                       SMTP_SENDERS_DNS_NAMESERVERS=[LOOPBACK], SMTP_SENDERS_DNS_PORT=server.port,
                       SMTP_SENDERS_DNS_TIMEOUT=0.3)
        client = app.test_client()
        response = client.post("/settings/senders/new/email/custom",
                               data=form_data(client, "noreply@example.org"),
                               follow_redirects=True)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "The sender was saved." in page
    assert "could not be checked just now" in page
    with app.app_context():
        assert len(app.extensions["smtp_senders"].list_senders()) == 1


def test_no_dns_query_can_leave_the_machine_during_tests() -> None:
    """The session guard (conftest.py) stops a datagram to any non-loopback address, so a
    lookup through the system's resolvers fails the test instead of leaving."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(
            RuntimeError, match="192.0.2.1"):
        sock.sendto(b"x", ("192.0.2.1", 53))
    settings = dict(DEFAULTS, SMTP_SENDERS_DNS_NAMESERVERS=["192.0.2.1"],
                    SMTP_SENDERS_DNS_TIMEOUT=0.5)
    advice = DomainAdvisor(Settings.from_config(settings), AddressRules()).advise(
        "a@example.org")
    assert advice is not None and (advice.spf, advice.dmarc) == ("unknown", "unknown")
