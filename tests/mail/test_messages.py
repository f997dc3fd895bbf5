"""SenderHeaders stores a sender's headers pre-folded: the bytes must be those of the
plain ``message[name] = Address(...)`` way, whatever the names hold, and reading the
headers back must still give addresses."""

from __future__ import annotations

import email.policy
from email.headerregistry import Address
from email.message import EmailMessage

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_smtp_senders.mail import fastmail
from flask_smtp_senders.mail.headers import SenderHeaders, address_header, message_id
from flask_smtp_senders.validation import SenderSettings

SMTP = email.policy.SMTP

NAMES = st.one_of(
    st.just(""),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=90),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40),
    st.sampled_from(["Acme", "Acme, Inc.", 'Say "hi"', "Jos\u00e9", "a\\b", "x" * 70,
                     "=?utf-8?q?caf=C3=A9?=", "(comment)", "<odd>"]),
)


def test_a_plain_name_reads_back_as_typed() -> None:
    message = host_message()
    SenderHeaders(settings_for("Jos\u00e9 at Acme, Inc.", "noreply@example.com")).apply(
        message)
    assert message["From"].addresses == (
        Address("Jos\u00e9 at Acme, Inc.", addr_spec="noreply@example.com"),)
LOCAL = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,20}", fullmatch=True).filter(
    lambda local: ".." not in local and not local.endswith("."))
DOMAIN = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?(\.[a-z]{2,12}){1,3}", fullmatch=True)


def settings_for(from_name: str, from_address: str, reply_name: str = "",
                 reply_address: str = "") -> SenderSettings:
    return SenderSettings(username="u", server_name="mx.example.com", port=465,
                          from_name=from_name, from_address=from_address,
                          reply_to_name=reply_name, reply_to_address=reply_address)


def host_message() -> EmailMessage:
    message = EmailMessage()
    message["To"] = "user@example.com"
    message["Subject"] = "Report"
    message.set_content("Hello\n")
    message.add_alternative("<p>Hello</p>\n", subtype="html")
    message.set_boundary("===============0123456789012345678==")
    return message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(from_name=NAMES, local=LOCAL, domain=DOMAIN, reply_name=NAMES,
       reply=st.booleans())
def test_pre_folded_headers_give_the_bytes_of_plain_assignment(
        from_name: str, local: str, domain: str, reply_name: str, reply: bool) -> None:
    address = f"{local}@{domain}"
    sender = settings_for(from_name, address, reply_name, f"reply.{address}" if reply else "")
    ours = host_message()
    SenderHeaders(sender).apply(ours)

    plain = host_message()  # the straightforward way, with our Date and Message-ID
    plain["From"] = address_header(from_name, address)
    if reply:
        plain["Reply-To"] = address_header(reply_name, f"reply.{address}")
    plain["Date"] = str(ours["Date"])
    plain["Message-ID"] = message_id(ours)

    expected = plain.as_bytes(policy=SMTP)
    assert ours.as_bytes(policy=SMTP) == expected
    assert fastmail.serialise(ours) == expected
    # what a prepare_message hook reads back is an address: the one the recipient reads
    # (a name that looks like an RFC 2047 word is read back differently by the stdlib's
    # two parsers: only the bytes are compared for those)
    if "=?" in from_name + reply_name:
        return
    received = email.message_from_bytes(expected, policy=email.policy.default)
    assert ours["From"].addresses == received["From"].addresses
    assert ours["From"].addresses[0].addr_spec == address
    if reply:
        assert ours["Reply-To"].addresses == received["Reply-To"].addresses
    else:
        assert "Reply-To" not in ours


def test_headers_the_host_set_are_kept() -> None:
    message = host_message()
    message["From"] = "Host <host@example.org>"
    message["Reply-To"] = "help@example.org"
    message["Date"] = "Tue, 01 Jul 2025 10:00:00 +0000"
    message["Message-ID"] = "<host.1@example.org>"
    SenderHeaders(settings_for("Acme", "noreply@example.com", "", "r@example.com")).apply(
        message)
    assert [str(message[name]) for name in ("From", "Reply-To", "Date", "Message-ID")] == [
        "Host <host@example.org>", "help@example.org", "Tue, 01 Jul 2025 10:00:00 +0000",
        "<host.1@example.org>"]
    assert message_id(message) == "<host.1@example.org>"
    assert len(message.get_all("From")) == 1


def test_each_message_gets_its_own_message_id_from_the_senders_domain() -> None:
    headers = SenderHeaders(settings_for("Acme", "noreply@example.com"))
    ids = set()
    for _ in range(50):
        message = host_message()
        headers.apply(message)
        ids.add(message_id(message))
        assert str(message["Message-ID"]) == message_id(message)
    assert len(ids) == 50
    assert all(value.startswith("<") and value.endswith("@example.com>") for value in ids)


def test_a_message_without_message_id_reports_none() -> None:
    assert message_id(host_message()) is None
