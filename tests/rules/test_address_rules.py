"""Address rules (SMTP_SENDERS_SMTPUTF8, SMTP_SENDERS_ALLOW_INTERNAL_DOMAINS) in every
place an address is entered: the page, the JSON API, the CLI and the test recipient.
Without its setting an on-premises domain or a non-ASCII local part is a field error that
names the setting; with it, the address is accepted and stored. IDNA 2008 A-labels that
email-validator refuses (a joiner in its valid context) are accepted and kept exactly, and
:func:`wire_address` gives what goes into MAIL FROM, RCPT TO and the headers."""

from __future__ import annotations

import json

import pytest

from flask_smtp_senders import SenderSettings, get_service, hookimpl
from flask_smtp_senders.addresses import (
    INTERNAL_SUFFIXES,
    AddressRules,
    ascii_address,
    normalise_address,
    wire_address,
)
from flask_smtp_senders.domain import needs_smtputf8
from flask_smtp_senders.errors import InvalidSenderData
from flask_smtp_senders.services.dns_advice import DomainAdvisor
from flask_smtp_senders.settings import DEFAULTS, Settings
from flask_smtp_senders.validation import validate_recipient, validate_settings
from tests.support.cases import bearer_token_sent, snapshot
from tests.support.pages import PREFIX, Admin, csrf, errors, form_values
from tests.support.smtp_servers import SERVER_NAME

#: Nothing here depends on the database.
pytestmark = pytest.mark.sqlite_only

INTERNAL_SETTING = "SMTP_SENDERS_ALLOW_INTERNAL_DOMAINS"
SMTPUTF8_SETTING = "SMTP_SENDERS_SMTPUTF8"
#: The on-premises domains every entry point is checked with (the unit tests take all).
INTERNAL = ["relay.local", "relay.internal", "relay.lan", "relay.test", "relay"]
#: IDNA 2008 A-labels whose U-labels hold a joiner in its valid CONTEXTJ context:
#: Persian نامه‌ای (ZWNJ) and Devanagari क्‍ष (ZWJ); email-validator calls them unsafe.
ZWNJ = "xn--mgba3gch31f060k.example"
ZWJ = "xn--11b2ezcw70k.example"
PASSWORD = "Rules-Pa55word"
INTERNAL_ON = AddressRules(internal_domains=True)
SMTPUTF8_ON = AddressRules(smtputf8=True)
VALID = {"username": "alice", "server_name": "smtp.example.com",
         "from_address": "noreply@example.com"}


def internal_error(domain: str) -> str:
    return (f"{domain} is an internal domain. To send from or to internal domains, set "
            f"{INTERNAL_SETTING} = True.")


def smtputf8_error(local: str) -> str:
    return (f"The part before the @-sign ({local}) is not ASCII: such an address needs "
            f"SMTPUTF8 (RFC 6531); to allow it set {SMTPUTF8_SETTING} = True.")


# -- the rules themselves ---------------------------------------------------------------------


def test_both_settings_are_off_by_default_and_read_from_the_config():
    assert DEFAULTS[SMTPUTF8_SETTING] is False and DEFAULTS[INTERNAL_SETTING] is False
    assert AddressRules.from_config(DEFAULTS) == AddressRules()
    assert AddressRules.from_config({}) == AddressRules(smtputf8=False, internal_domains=False)
    assert AddressRules.from_config({SMTPUTF8_SETTING: True, INTERNAL_SETTING: True}) == (
        AddressRules(smtputf8=True, internal_domains=True))


@pytest.mark.parametrize("domain", ["relay", "localhost", *(f"mail.{suffix}"
                                                            for suffix in INTERNAL_SUFFIXES)])
def test_an_internal_domain_is_refused_naming_the_setting_in_every_address_field(domain):
    with pytest.raises(InvalidSenderData) as caught:
        validate_settings(**VALID | {"from_address": f"noreply@{domain}",
                                     "reply_to_address": f"help@{domain}"})
    assert caught.value.errors == {"from_address": internal_error(domain),
                                   "reply_to_address": internal_error(domain)}
    with pytest.raises(InvalidSenderData) as caught:
        validate_recipient(f"ops@{domain}")
    assert caught.value.errors == {"recipient": internal_error(domain)}


@pytest.mark.parametrize("domain", ["relay", "localhost", *(f"mail.{suffix}"
                                                            for suffix in INTERNAL_SUFFIXES)])
def test_an_internal_domain_is_accepted_with_the_setting(domain):
    settings = validate_settings(**VALID | {"from_address": f"noreply@{domain}",
                                            "reply_to_address": f"help@{domain}"},
                                 rules=INTERNAL_ON)
    assert (settings.from_address, settings.reply_to_address) == (
        f"noreply@{domain}", f"help@{domain}")
    assert validate_recipient(f"ops@{domain}", INTERNAL_ON) == f"ops@{domain}"
    assert wire_address(f"ops@{domain}", INTERNAL_ON) == f"ops@{domain}"


@pytest.mark.parametrize("address", ["x@-bad.local", "x@under_score.lan", "x@123",
                                     "x@a..local", "x@" + "a" * 64 + ".lan", "a b@relay.local"])
def test_a_malformed_internal_address_is_refused_even_with_the_setting(address):
    for rules in (AddressRules(), INTERNAL_ON):
        with pytest.raises(ValueError) as caught:
            normalise_address(address, rules)
        assert str(caught.value).startswith("Enter a valid email address."), address


def test_an_internal_idn_is_checked_with_idna_2008_and_stored_as_its_u_label():
    """IDNA 2008 keeps the ZWNJ that the stdlib's IDNA 2003 codec drops."""
    u_label = "\u0646\u0627\u0645\u0647\u200c\u0627\u06cc"  # نامه‌ای
    assert normalise_address(f"x@{u_label}.local", INTERNAL_ON) == f"x@{u_label}.local"
    assert normalise_address("x@XN--MGBA3GCH31F060K.Local", INTERNAL_ON) == (
        f"x@{u_label}.local")
    assert wire_address(f"x@{u_label}.local", INTERNAL_ON) == "x@xn--mgba3gch31f060k.local"
    assert u_label.encode("idna") != b"xn--mgba3gch31f060k"
    assert wire_address("x@b\u00fccher.lan", INTERNAL_ON) == "x@xn--bcher-kva.lan"
    with pytest.raises(ValueError, match="not a valid domain name"):
        normalise_address("x@xn--ab-j1t.local", INTERNAL_ON)  # a ZWNJ out of context


def test_other_special_use_domains_stay_refused_whatever_the_setting():
    for address in ["x@relay.onion", "x@foo.localhost", "x@a.invalid", "x@relay.local."]:
        with pytest.raises(ValueError, match="Enter a valid email address"):
            normalise_address(address, INTERNAL_ON)


def test_a_non_ascii_local_part_is_refused_naming_the_setting_and_accepted_with_it():
    with pytest.raises(InvalidSenderData) as caught:
        validate_settings(**VALID | {"from_address": "b\u00fcro@example.com",
                                     "reply_to_address": "n\u00f8@example.dk"})
    assert caught.value.errors == {"from_address": smtputf8_error("b\u00fcro"),
                                   "reply_to_address": smtputf8_error("n\u00f8")}
    with pytest.raises(InvalidSenderData) as caught:
        validate_recipient("j\u00f6rg@example.com")
    assert caught.value.errors == {"recipient": smtputf8_error("j\u00f6rg")}

    settings = validate_settings(**VALID | {"from_address": "b\u00fcro@example.com"},
                                 rules=SMTPUTF8_ON)
    assert settings.from_address == "b\u00fcro@example.com"
    assert validate_recipient("j\u00f6rg@example.com", SMTPUTF8_ON) == "j\u00f6rg@example.com"
    both = AddressRules(smtputf8=True, internal_domains=True)
    assert validate_recipient("j\u00f6rg@relay.local", both) == "j\u00f6rg@relay.local"
    with pytest.raises(ValueError, match=SMTPUTF8_SETTING):
        normalise_address("j\u00f6rg@relay.local", INTERNAL_ON)


def test_a_non_ascii_local_part_that_is_invalid_anyway_does_not_name_the_setting():
    with pytest.raises(ValueError) as caught:
        normalise_address("j\u00f6 rg@example.com")
    assert SMTPUTF8_SETTING not in str(caught.value)
    assert str(caught.value).startswith("Enter a valid email address.")


@pytest.mark.parametrize("address", [f"x@{ZWNJ}", f"x@{ZWJ}", f"Info@{ZWNJ.upper()}",
                                     f"x@mail.{ZWJ}"])
def test_a_labels_with_a_joiner_in_its_context_are_accepted_and_kept_exactly(address):
    for rules in (AddressRules(), INTERNAL_ON, SMTPUTF8_ON):
        assert normalise_address(address, rules) == address
        assert wire_address(address, rules) == address
    settings = validate_settings(**VALID | {"from_address": address,
                                            "reply_to_address": address})
    assert (settings.from_address, settings.reply_to_address) == (address, address)
    assert validate_recipient(address) == address


@pytest.mark.parametrize("address", [
    "x@xn--zz.example",  # not Punycode of anything valid
    "x@xn--ab-j1t.example",  # a ZWNJ between two Latin letters: no CONTEXTJ context
    f"x@{ZWNJ.removesuffix('.example')}.onion",  # special-use, whatever its first label
    f"x@{ZWNJ.removesuffix('.example')}.123",  # no top-level domain is all digits
    f"a..b@{ZWNJ}",  # the local part is still checked
])
def test_invalid_a_labels_and_addresses_around_valid_ones_stay_refused(address):
    with pytest.raises(ValueError, match="Enter a valid email address"):
        normalise_address(address)


def test_non_ascii_local_part_with_a_joined_a_label_needs_the_setting():
    with pytest.raises(ValueError, match=SMTPUTF8_SETTING):
        normalise_address(f"b\u00fcro@{ZWNJ}")
    assert wire_address(f"b\u00fcro@{ZWNJ}", SMTPUTF8_ON) == f"b\u00fcro@{ZWNJ}"


# -- wire_address -------------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "wire"), [
    ("to@\u6f22\u5b57.example.com", "to@xn--p8s937b.example.com"),  # U-label -> A-label
    ("to@B\u00fccher.Example", "to@xn--bcher-kva.example"),
    ("to@xn--p8s937b.Example.COM", "to@xn--p8s937b.Example.COM"),  # A-label kept exactly
    ("Info@Example.COM", "Info@Example.COM"),  # an ASCII domain keeps its case
    ("First.Last+tag@example.org", "First.Last+tag@example.org"),
])
def test_wire_address_gives_the_a_label_and_keeps_everything_else(address, wire):
    assert wire_address(address) == wire
    assert ascii_address(address) == wire  # the older name, with the default rules
    assert not needs_smtputf8([wire])


@pytest.mark.parametrize(("address", "reason"), [
    ("a@b@example.com", "Enter a valid email address."),
    ("Alice <alice@example.org>", "Enter a valid email address."),
    ("alice@example.org\r\n", "line breaks"),
    ("x@xn--zz.example", "Invalid A-label"),
    ("n\u00f8@example.dk", SMTPUTF8_SETTING),
    ("ops@relay.local", INTERNAL_SETTING),
    ("ops@relay", INTERNAL_SETTING),
])
def test_wire_address_raises_a_readable_reason_for_what_the_rules_refuse(address, reason):
    with pytest.raises(ValueError, match=reason.replace("+", r"\+")):
        wire_address(address)


def test_wire_address_keeps_a_non_ascii_local_part_when_smtputf8_is_on():
    wire = wire_address("j\u00f6rg@b\u00fccher.example", SMTPUTF8_ON)
    assert wire == "j\u00f6rg@xn--bcher-kva.example"
    assert needs_smtputf8([wire])


def test_domain_advice_skips_an_address_the_rules_refuse_without_a_lookup():
    """Saved under looser rules: no DNS query for a domain that is not allowed now."""
    advisor = DomainAdvisor(Settings.from_config(DEFAULTS), AddressRules())
    assert advisor.advise("noreply@relay.local") is None


# -- the page ---------------------------------------------------------------------------------


def page_client(make_app, **config: object):
    return make_app(plugins=[Admin()], SMTP_SENDERS_TEST_EMAIL_RATE_LIMIT="1000 per minute",
                    **config).test_client()


def post_new(client, **fields: str):
    page = client.get(f"{PREFIX}/new/email/custom")
    data = {"csrf_token": csrf(page.data), "username": "alice", "password": PASSWORD,
            "server_name": "smtp.example.com", "port": "587", "from_name": "Acme Ops",
            "from_address": "noreply@example.com", "reply_to_name": "Help desk",
            "reply_to_address": "", **fields}
    return client.post(f"{PREFIX}/new/email/custom", data=data)


def stored_settings(client) -> list[SenderSettings]:
    with client.application.app_context():
        return [s.settings for s in get_service(client.application).list_senders()]


def test_page_refuses_internal_domains_naming_the_setting_and_keeps_what_was_typed(make_app):
    client = page_client(make_app)
    for domain in INTERNAL:
        answer = post_new(client, from_address=f"noreply@{domain}",
                          reply_to_address=f"help@{domain}")
        assert answer.status_code == 422, domain
        assert errors(answer.data) == {"from_address": internal_error(domain),
                                       "reply_to_address": internal_error(domain)}
        values = form_values(answer.data)
        assert {name: values[name] for name in (
            "username", "server_name", "port", "from_name", "from_address",
            "reply_to_name", "reply_to_address")} == {
            "username": "alice", "server_name": "smtp.example.com", "port": "587",
            "from_name": "Acme Ops", "from_address": f"noreply@{domain}",
            "reply_to_name": "Help desk", "reply_to_address": f"help@{domain}"}
        assert PASSWORD.encode() not in answer.data
    assert stored_settings(client) == []


def test_page_accepts_internal_domains_with_the_setting(make_app):
    client = page_client(make_app, SMTP_SENDERS_ALLOW_INTERNAL_DOMAINS=True)
    for domain in INTERNAL:
        answer = post_new(client, from_address=f"noreply@{domain}",
                          reply_to_address=f"help@{domain}")
        assert answer.status_code == 302, (domain, errors(answer.data))
    assert [(s.from_address, s.reply_to_address) for s in stored_settings(client)] == [
        (f"noreply@{domain}", f"help@{domain}") for domain in INTERNAL]


def test_page_non_ascii_local_part_needs_the_smtputf8_setting(make_app):
    refused = post_new(page_client(make_app), from_address="b\u00fcro@example.com")
    assert refused.status_code == 422
    assert errors(refused.data) == {"from_address": smtputf8_error("b\u00fcro")}
    assert form_values(refused.data)["from_address"] == "b\u00fcro@example.com"

    client = page_client(make_app, SMTP_SENDERS_SMTPUTF8=True)
    assert post_new(client, from_address="b\u00fcro@example.com").status_code == 302
    assert [s.from_address for s in stored_settings(client)] == ["b\u00fcro@example.com"]


def test_page_keeps_joined_a_labels_exactly(make_app):
    client = page_client(make_app)
    assert post_new(client, from_address=f"noreply@{ZWNJ}",
                    reply_to_address=f"help@{ZWJ}").status_code == 302
    [settings] = stored_settings(client)
    assert (settings.from_address, settings.reply_to_address) == (
        f"noreply@{ZWNJ}", f"help@{ZWJ}")


def test_page_send_to_follows_the_rules(make_app, smtp_server):
    server = smtp_server("implicit", users={"alice": PASSWORD})
    for config, ok in (({}, False), ({INTERNAL_SETTING: True}, True)):
        client = page_client(make_app, **config)
        sender_url = post_new(client, server_name=SERVER_NAME, port=str(server.port)).location
        page = client.get(sender_url)
        for domain in INTERNAL:
            answer = client.post(sender_url + "/test", headers={"Accept": "application/json"},
                                 data={"csrf_token": csrf(page.data),
                                       "recipient": f"ops@{domain}"})
            if ok:
                assert (answer.status_code, answer.json["ok"]) == (200, True), domain
            else:
                assert answer.status_code == 422, domain
                assert (answer.json["field"], answer.json["message"]) == (
                    "recipient", internal_error(domain))
        html = client.post(sender_url + "/check", data={"csrf_token": csrf(page.data),
                                                        "recipient": "ops@relay.local"})
        assert html.status_code == (200 if ok else 422)
        assert ("recipient" in errors(html.data)) is not ok
    assert [m.rcpt_tos for m in server.messages] == [[f"ops@{d}"] for d in INTERNAL]
    assert server.rcpt_seen[-1] == "ops@relay.local"  # the check's RCPT TO


# -- the JSON API -----------------------------------------------------------------------------

API = f"{PREFIX}/api"
TOKEN = {"Authorization": "Bearer script"}


class ScriptAdmin(Admin):
    """The page's administrator, also signed in by TOKEN on the API (no CSRF token)."""

    @hookimpl
    def smtp_senders_api_token_authenticated(self):
        return bearer_token_sent()


def api_client(make_app, **config: object):
    return make_app(plugins=[ScriptAdmin()], SMTP_SENDERS_TEST_EMAIL_RATE_LIMIT="1000 per minute",
                    **config).test_client()


def api_create(client, **fields: object):
    body = {"username": "alice", "password": PASSWORD, "server_name": SERVER_NAME,
            "port": 587, "from_name": "Acme", "from_address": "noreply@example.com", **fields}
    return client.post(f"{API}/senders", json=body, headers=TOKEN)


def invalid_fields(answer) -> dict[str, str]:
    assert answer.status_code == 422, answer.get_data(as_text=True)
    assert answer.json["type"] == "urn:flask-smtp-senders:problem:invalid"
    return answer.json["errors"]


def test_api_refuses_internal_domains_naming_the_setting_and_saves_nothing(make_app):
    client = api_client(make_app)
    for domain in INTERNAL:
        answer = api_create(client, from_address=f"noreply@{domain}",
                            reply_to_address=f"help@{domain}")
        assert invalid_fields(answer) == {"from_address": internal_error(domain),
                                          "reply_to_address": internal_error(domain)}
    assert snapshot(client.application) == []

    created = api_create(client)
    url = f"{API}/senders/{created.json['id']}"
    patch = client.patch(url, json={"password": PASSWORD, "reply_to_address": "help@relay"},
                         headers={**TOKEN, "If-Match": created.headers["ETag"]})
    assert invalid_fields(patch) == {"reply_to_address": internal_error("relay")}
    assert client.get(url, headers=TOKEN).json == created.json


def test_api_accepts_internal_domains_with_the_setting(make_app):
    client = api_client(make_app, SMTP_SENDERS_ALLOW_INTERNAL_DOMAINS=True)
    for domain in INTERNAL:
        answer = api_create(client, from_address=f"noreply@{domain}",
                            reply_to_address=f"help@{domain}")
        assert answer.status_code == 201, answer.json
        assert (answer.json["from_address"], answer.json["reply_to_address"]) == (
            f"noreply@{domain}", f"help@{domain}")
    patch = client.patch(answer.headers["Location"], json={
        "password": PASSWORD, "from_address": "ops@mail.corp"},
        headers={**TOKEN, "If-Match": answer.headers["ETag"]})
    assert patch.status_code == 200 and patch.json["from_address"] == "ops@mail.corp"


def test_api_non_ascii_local_part_needs_the_smtputf8_setting(make_app):
    refused = api_create(api_client(make_app), from_address="b\u00fcro@example.com")
    assert invalid_fields(refused) == {"from_address": smtputf8_error("b\u00fcro")}
    created = api_create(api_client(make_app, SMTP_SENDERS_SMTPUTF8=True),
                         from_address="b\u00fcro@example.com")
    assert created.status_code == 201
    assert created.json["from_address"] == "b\u00fcro@example.com"


def test_api_keeps_joined_a_labels_exactly(make_app):
    created = api_create(api_client(make_app), from_address=f"noreply@{ZWNJ}",
                         reply_to_address=f"help@{ZWJ}")
    assert created.status_code == 201, created.json
    assert (created.json["from_address"], created.json["reply_to_address"]) == (
        f"noreply@{ZWNJ}", f"help@{ZWJ}")


def test_api_test_and_check_recipients_follow_the_rules(make_app, smtp_server):
    server = smtp_server("implicit", users={"alice": PASSWORD})
    refusing = api_client(make_app)
    sender = api_create(refusing, port=server.port).json
    for action in ("test", "check"):
        for domain in INTERNAL:
            answer = refusing.post(f"{API}/senders/{sender['id']}/{action}",
                                   json={"recipient": f"ops@{domain}"}, headers=TOKEN)
            assert invalid_fields(answer) == {"recipient": internal_error(domain)}
        answer = refusing.post(f"{API}/senders/{sender['id']}/{action}",
                               json={"recipient": "j\u00f6rg@example.com"}, headers=TOKEN)
        assert invalid_fields(answer) == {"recipient": smtputf8_error("j\u00f6rg")}
    assert server.connections == 0

    allowing = api_client(make_app, SMTP_SENDERS_ALLOW_INTERNAL_DOMAINS=True)
    sender = api_create(allowing, port=server.port, from_address="noreply@relay").json
    sent = allowing.post(f"{API}/senders/{sender['id']}/test",
                         json={"recipient": "ops@relay.lan"}, headers=TOKEN)
    assert sent.json["ok"] is True, sent.json
    checked = allowing.post(f"{API}/senders/{sender['id']}/check",
                            json={"recipient": "ops@relay.internal"}, headers=TOKEN)
    assert checked.json["ok"] is True, checked.json
    assert [(m.mail_from, m.rcpt_tos) for m in server.messages] == [
        ("noreply@relay", ["ops@relay.lan"])]
    assert server.rcpt_seen == ["ops@relay.lan", "ops@relay.internal"]


# -- the CLI ----------------------------------------------------------------------------------


def cli_app(make_app, **config: object):
    return make_app(plugins=[Admin()], **config)


def run(app, *args: str, input: str | None = None):
    result = app.test_cli_runner().invoke(args=["smtp-senders", *args], input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def add(app, *options: str, server_name: str = "smtp.example.com", port: int = 587):
    return run(app, "add", "--username", "alice", "--server-name", server_name,
               "--port", str(port), *options, "--password-stdin", "--json",
               input=f"{PASSWORD}\n")


def test_cli_refuses_internal_domains_naming_the_setting(make_app):
    app = cli_app(make_app)
    for domain in INTERNAL:
        result = add(app, "--from-address", f"noreply@{domain}",
                     "--reply-to-address", f"help@{domain}")
        assert result.exit_code == 2, domain
        assert json.loads(result.stdout)["errors"] == {
            "from_address": internal_error(domain), "reply_to_address": internal_error(domain)}
        assert f"  from_address: {internal_error(domain)}" in result.stderr.splitlines()
    assert snapshot(app) == []


def test_cli_accepts_internal_domains_with_the_setting(make_app):
    app = cli_app(make_app, SMTP_SENDERS_ALLOW_INTERNAL_DOMAINS=True)
    for domain in INTERNAL:
        result = add(app, "--from-address", f"noreply@{domain}",
                     "--reply-to-address", f"help@{domain}")
        assert result.exit_code == 0, result.output
        shown = json.loads(result.stdout)
        assert (shown["from_address"], shown["reply_to_address"]) == (
            f"noreply@{domain}", f"help@{domain}")


def test_cli_edit_non_ascii_local_part_needs_the_smtputf8_setting(make_app):
    app = cli_app(make_app)
    assert add(app, "--from-address", "noreply@example.com").exit_code == 0
    refused = run(app, "edit", "1", "--reply-to-address", "n\u00f8@example.dk",
                  "--password-stdin", input=f"{PASSWORD}\n")
    assert refused.exit_code == 2
    problem = smtputf8_error("n\u00f8")
    assert f"  reply_to_address: {problem}" in refused.stderr.splitlines()

    # the setting is read when the app starts: the same database, restarted with it on
    app = cli_app(make_app, **{SMTPUTF8_SETTING: True})
    saved = run(app, "edit", "1", "--reply-to-address", "n\u00f8@example.dk",
                "--password-stdin", input=f"{PASSWORD}\n")
    assert saved.exit_code == 0, saved.output
    with app.app_context():
        assert get_service(app).get_sender(1).settings.reply_to_address == "n\u00f8@example.dk"


def test_cli_keeps_joined_a_labels_exactly(make_app):
    app = cli_app(make_app)
    result = add(app, "--from-address", f"noreply@{ZWJ}", "--reply-to-address", f"h@{ZWNJ}")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["from_address"], shown["reply_to_address"]) == (
        f"noreply@{ZWJ}", f"h@{ZWNJ}")


def test_cli_test_and_check_recipients_follow_the_rules(make_app, smtp_server):
    server = smtp_server("implicit", users={"alice": PASSWORD})
    app = cli_app(make_app)
    assert add(app, "--from-address", "noreply@example.com", server_name=SERVER_NAME,
               port=server.port).exit_code == 0
    for domain in INTERNAL:
        sent = run(app, "test", "1", "--to", f"ops@{domain}")
        assert sent.exit_code == 2, domain
        assert sent.stderr == f"Error: nothing was sent: --to: {internal_error(domain)}\n"
        checked = run(app, "check", "--to", f"ops@{domain}")
        assert checked.exit_code == 2, domain
        assert checked.stderr == (
            f"Error: nothing was checked: --to: {internal_error(domain)}\n")
    assert server.connections == 0

    app = cli_app(make_app, **{INTERNAL_SETTING: True})  # restarted with the setting on
    assert run(app, "test", "1", "--to", "ops@relay.local").exit_code == 0
    assert run(app, "check", "--to", "ops@relay").exit_code == 0
    assert [m.rcpt_tos for m in server.messages] == [["ops@relay.local"]]
    assert server.rcpt_seen == ["ops@relay.local", "ops@relay"]


# -- senders saved under rules since tightened ----------------------------------------------


def test_a_sender_saved_before_the_setting_was_turned_off_fails_its_test_unsent(
        make_app, smtp_server):
    server = smtp_server("implicit", users={"alice": PASSWORD})
    app = cli_app(make_app, SMTP_SENDERS_ALLOW_INTERNAL_DOMAINS=True)
    assert add(app, "--from-address", "noreply@relay.local", server_name=SERVER_NAME,
               port=server.port).exit_code == 0
    app = cli_app(make_app, **{INTERNAL_SETTING: False})  # restarted with it off
    with app.app_context():
        service = get_service(app)
        result = service.send_test_email(1, "ops@example.com")
        check = service.check_connection(1)
    for outcome in (result, check):
        assert (outcome.ok, outcome.stage) == (False, "sender")
        assert outcome.message == f"From Address: {internal_error('relay.local')}"
    assert server.connections == 0


def test_a_non_ascii_test_recipient_gets_the_test_email_with_smtputf8(make_app,
                                                                       smtp_server):
    """aiosmtpd offers SMTPUTF8: the addresses go as they are in the envelope, and the
    recipient in a UTF-8 To header (RFC 6532), never as an encoded word."""
    server = smtp_server("implicit", users={"alice": PASSWORD})
    app = cli_app(make_app, SMTP_SENDERS_SMTPUTF8=True)
    assert add(app, "--from-address", "b\u00fcro@example.com", server_name=SERVER_NAME,
               port=server.port).exit_code == 0
    with app.app_context():
        result = get_service(app).send_test_email(1, "j\u00f6rg@b\u00fccher.example")
    assert result.ok, result.message
    [received] = server.messages
    assert received.mail_from == "b\u00fcro@example.com"
    assert received.rcpt_tos == ["j\u00f6rg@xn--bcher-kva.example"]
    assert "\r\nTo: j\u00f6rg@xn--bcher-kva.example\r\n".encode() in received.data
