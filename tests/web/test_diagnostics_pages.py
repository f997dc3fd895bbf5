"""The staged report and Check connection on the pages (Flask's test client): the seed's
sentence, each stage, the suggested fix and the From-domain advice, as HTML without
JavaScript and as JSON for the modal; nothing from the server verbatim, no secret."""

from __future__ import annotations

import re

import pytest

from example_app.dns_server import LOOPBACK, DNSServer
from tests.support.pages import Admin, create, csrf, errors
from tests.support.smtp_servers import SERVER_NAME

PREFIX = "/settings/senders"
JSON = {"Accept": "application/json"}
DELIVERY = ["Resolve", "Connect", "TLS", "EHLO", "AUTH", "MAIL FROM", "RCPT TO", "DATA"]


@pytest.fixture
def admin() -> Admin:
    return Admin()


@pytest.fixture
def client(make_app, admin):
    return make_app(plugins=[admin]).test_client()


def stages(html: bytes) -> list[tuple[str, str]]:
    """(label, passed/failed) for each stage the page lists, in order."""
    return [(label.decode(), outcome.decode()) for label, outcome in re.findall(
        rb'<span class="label">([^<]+)</span>\s*<span class="outcome">(passed|failed)</span>',
        html)]


def sender_for(client, server, password="s3cret") -> str:
    return create(client, server_name=SERVER_NAME, port=str(server.port),
                  password=password).location


def test_without_javascript_the_result_comes_with_every_stage(client, smtp_server):
    server = smtp_server("implicit")
    url = sender_for(client, server)
    page = client.get(url)
    answer = client.post(url + "/test", data={"csrf_token": csrf(page.data),
                                              "recipient": "some.body@acme.com"})
    assert answer.status_code == 200
    assert b"A test message was successfully sent to some.body@acme.com." in answer.data
    assert b'<dialog id="send-test-email"' in answer.data and b" open " in answer.data
    assert stages(answer.data) == [(label, "passed") for label in DELIVERY]
    assert b"TLSv1.3" in answer.data and b"Suggested fix" not in answer.data
    assert len(server.messages) == 1


def test_an_auth_failure_shows_where_it_stopped_and_what_to_do(client, smtp_server):
    server = smtp_server("implicit")
    url = sender_for(client, server, password="not-the-password")
    answer = client.post(url + "/test", headers=JSON, data={
        "csrf_token": csrf(client.get(url).data), "recipient": "a@acme.com"})
    body = answer.json
    assert answer.status_code == 200 and body["ok"] is False
    assert body["message"] == ("Using the credentials you provided, we couldn't "
                               "authenticate with your email server.")
    diagnosis = body["diagnosis"]
    assert diagnosis["stopped_at"] == "auth"
    assert [(s["name"], s["ok"]) for s in diagnosis["stages"]][-1] == ("auth", False)
    assert "PLAIN" in diagnosis["advice"] and "not-the-password" not in answer.get_data(True)
    html = client.post(url + "/test", data={"csrf_token": csrf(client.get(url).data),
                                             "recipient": "a@acme.com"})
    assert stages(html.data)[-1] == ("AUTH", "failed")
    assert b"Suggested fix:" in html.data and b"not-the-password" not in html.data


def test_check_connection_delivers_nothing_and_says_so(client, smtp_server):
    server = smtp_server("implicit")
    url = sender_for(client, server)
    token = csrf(client.get(url).data)
    answer = client.post(url + "/check", headers=JSON,
                         data={"csrf_token": token, "recipient": ""})
    assert answer.status_code == 200 and answer.json["ok"] is True
    assert "Nothing was sent" in answer.json["message"]
    names = [stage["name"] for stage in answer.json["diagnosis"]["stages"]]
    assert names[-3:] == ["mail", "rcpt", "reset"] and "data" not in names
    assert server.messages == []
    html = client.post(url + "/check", data={"csrf_token": token,
                                              "recipient": "someone@acme.com"})
    assert html.status_code == 200 and b"Nothing was sent" in html.data
    assert stages(html.data)[-1] == ("RSET and QUIT", "passed")
    assert server.messages == []


def test_check_connection_refuses_a_bad_recipient_like_the_test_does(client, smtp_server):
    server = smtp_server("implicit")
    url = sender_for(client, server)
    token = csrf(client.get(url).data)
    answer = client.post(url + "/check", headers=JSON,
                         data={"csrf_token": token, "recipient": "a@b.com\r\nBcc: x@y.com"})
    assert answer.status_code == 422 and answer.json["field"] == "recipient"
    html = client.post(url + "/check", data={"csrf_token": token, "recipient": "nope"})
    assert html.status_code == 422 and "recipient" in errors(html.data)
    assert server.connections == 0


def test_check_connection_is_authorised_and_csrf_protected(client, smtp_server, admin):
    server = smtp_server("implicit")
    url = sender_for(client, server)
    token = csrf(client.get(url).data)
    assert client.post(url + "/check", data={"recipient": ""}).status_code == 400
    admin.allow = False
    assert client.post(url + "/check", data={"csrf_token": token}).status_code == 403
    assert server.connections == 0


def test_the_report_carries_the_from_domain_advice(make_app, admin, smtp_server):
    zone = {"example.com": ["v=spf1 mx -all"], "_dmarc.example.com": ["v=DMARC1; p=reject"]}
    server = smtp_server("implicit")
    with DNSServer(zone) as dns:
        client = make_app(plugins=[admin], SMTP_SENDERS_DOMAIN_ADVICE=True,
                          SMTP_SENDERS_DNS_NAMESERVERS=[LOOPBACK],
                          SMTP_SENDERS_DNS_PORT=dns.port).test_client()
        url = sender_for(client, server)
        answer = client.post(url + "/test", headers=JSON, data={
            "csrf_token": csrf(client.get(url).data), "recipient": "a@acme.com"})
    assert answer.json["ok"] is True
    assert answer.json["domain_advice"] == [
        "example.com publishes an SPF record: make sure it lists this mail server.",
        "example.com has a DMARC policy (p=reject). It applies to every message sent with "
        "this From Address, so this mail server must be allowed to send for example.com."]
