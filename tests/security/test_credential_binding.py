"""A stored password is bound to the destination it was entered for (issue 7, item 3).

Beside the token the store keeps an HMAC of (Server Name, Port, mode, Username, token)
under a key derived from the encryption key. A row changed behind the application's back
(SQL here, as an intruder or a faulty tool would) must not send the password anywhere:
these tests change the row directly in the database and watch real loopback servers
receive no connection and no AUTH, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from dataclasses import replace
from email.message import EmailMessage
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import update

from flask_smtp_senders import (
    CredentialNotBound,
    PasswordUnreadable,
    Security,
    Sender,
    SenderSettings,
    events,
    get_service,
    hookimpl,
    security_for_port,
)
from flask_smtp_senders.crypto import BINDING_INFO, Destination, PasswordCipher, binding_key
from flask_smtp_senders.sealed import EncryptedPassword
from flask_smtp_senders.services.senders import SenderService
from flask_smtp_senders.storage.base import destination
from flask_smtp_senders.storage.models import SenderRow
from tests.support.smtp_servers import LOOPBACK, SERVER_NAME, RecordingServer
from tests.support.stores import MemoryStore

PASSWORD = "Bound-Pa55word-7"
USERS = {"alice": PASSWORD, "bob": PASSWORD}
RECIPIENT = "someone@example.com"
UNBOUND = ("The stored password belongs to other server settings. Edit the sender and "
           "re-enter the Password.")


class Host:
    """Host plugin: every Server Name resolves to loopback (so a tampered name is
    reachable), and the audit trail is kept."""

    def __init__(self) -> None:
        self.events: list[events.AuditEvent] = []

    @hookimpl
    def smtp_senders_resolve(self, server_name: str, port: int) -> list[str]:
        return [LOOPBACK]

    @hookimpl
    def smtp_senders_audit(self, event: events.AuditEvent) -> None:
        self.events.append(event)

    def failures(self) -> list[tuple[str, str]]:
        """(action, stage) of every failed send recorded so far."""
        return [(event.action, event.stage) for event in self.events
                if isinstance(event, events.TestEmailFailed | events.MessageFailed)]


@pytest.fixture
def host() -> Host:
    return Host()


@pytest.fixture
def app(make_app, host: Host) -> Flask:
    return make_app(plugins=[host])


def add(service: SenderService, server: RecordingServer, username: str = "alice",
        server_name: str = SERVER_NAME) -> Sender:
    return service.create_sender(SenderSettings(
        username=username, server_name=server_name, port=server.port,
        from_address="noreply@example.com"), PASSWORD)


def note(number: int) -> EmailMessage:
    message = EmailMessage()
    message["To"] = RECIPIENT
    message["Subject"] = f"Notification {number}"
    message.set_content(f"Body {number}.\n")
    return message


def tamper(app: Flask, sender_id: int, **columns: Any) -> None:
    """Change the row with a plain UPDATE on the app's engine (Core, not the ORM), as an
    intruder or a faulty tool would: only the named columns change (no version bump, no
    new binding)."""
    table = SenderRow.__table__
    with app.app_context(), app.extensions["sqlalchemy"].engine.begin() as connection:
        changed = connection.execute(
            update(table).where(table.c.id == sender_id).values(**columns)).rowcount
    assert changed == 1


def seen(server: RecordingServer) -> tuple[int, int, int]:
    """What a server has received so far: connections, AUTH commands, messages."""
    return server.connections, len(server.auth_attempts), len(server.messages)


def assert_refused(service: SenderService, host: Host, sender_id: int,
                   batch: int = 3) -> None:
    """Send Test Email, send and send_many all fail at stage "password" with the fixed
    message, each failure recorded and audited."""
    before = len(host.failures())
    result = service.send_test_email(sender_id, RECIPIENT)
    assert (result.ok, result.message, result.stage) == (False, UNBOUND, "password")
    assert service.get_sender(sender_id).last_test_ok is False

    with pytest.raises(CredentialNotBound) as caught:
        service.mailer.send(note(0), sender_id)
    assert isinstance(caught.value, PasswordUnreadable)
    assert (caught.value.user_message, caught.value.stage) == (UNBOUND, "password")

    results = service.mailer.send_many([note(n) for n in range(batch)], sender_id)
    assert len(results) == batch
    assert all(not r.ok and isinstance(r.error, CredentialNotBound) for r in results)

    assert host.failures()[before:] == (
        [("test_email_failed", "password")] + [("message_failed", "password")] * (1 + batch))


# -- the headline: a row changed in SQL sends nothing anywhere --------------------------


@pytest.mark.parametrize("change", ["server_name_and_port", "port", "username"])
def test_a_row_changed_in_sql_sends_nothing_anywhere(app, service, host, smtp_server,
                                                     change) -> None:
    """Case D7: the Server Name/Port or the Username changed in the database: Send Test
    Email, send and send_many fail at "password" and neither the new destination nor the
    old one sees a connection or an AUTH. Saving the same values through the app then
    reaches the new destination, so the silence was the binding's doing."""
    a = smtp_server("implicit", users=USERS)
    b = smtp_server("implicit", users=USERS)
    sender = add(service, a)
    assert service.send_test_email(sender.id, RECIPIENT).ok
    assert service.mailer.send(note(0), sender.id).ok  # leaves a pooled connection to A
    a_before = seen(a)

    columns: dict[str, Any] = {
        "server_name_and_port": {"server_name": "localhost", "port": b.port},
        "port": {"port": b.port},
        "username": {"username": "bob"},
    }[change]
    tamper(app, sender.id, **columns)
    tampered = service.get_sender(sender.id)
    assert tampered.version == sender.version  # nothing else moved

    assert_refused(service, host, sender.id)
    assert seen(b) == (0, 0, 0)
    assert b.auth_attempts == []
    assert seen(a) == a_before  # the old destination is not used either

    # The control: saved through the app (password re-entered), the same values work.
    saved = service.update_sender(sender.id, tampered.version, tampered.settings, PASSWORD)
    assert saved.password_binding != tampered.password_binding
    assert service.send_test_email(sender.id, RECIPIENT).ok
    target = a if change == "username" else b
    assert target.auth_attempts[-1][1:] == (columns.get("username", "alice"), True)


def _starttls_server(smtp_server: Callable[..., RecordingServer]) -> RecordingServer:
    """A STARTTLS server on one of the fixed STARTTLS ports (another run may hold one)."""
    problem: OSError | None = None
    for port in (2525, 587, 25):
        try:
            return smtp_server("starttls", port=port, users=USERS)
        except OSError as exc:
            problem = exc
    raise AssertionError(f"no STARTTLS port could be bound: {problem}")


def test_a_port_changed_in_sql_to_another_mode_is_refused(app, service, host,
                                                          smtp_server) -> None:
    """Case D7: an SMTPS port changed in SQL to a STARTTLS port (mode changes too): no
    connection to the server listening there; saved through the app, it works."""
    a = smtp_server("implicit", users=USERS)
    b = _starttls_server(smtp_server)
    sender = add(service, a)
    assert security_for_port(a.port) is Security.SMTPS
    assert security_for_port(b.port) is Security.STARTTLS
    assert service.send_test_email(sender.id, RECIPIENT).ok
    a_before = seen(a)

    tamper(app, sender.id, port=b.port)
    tampered = service.get_sender(sender.id)
    assert tampered.destination.mode == "STARTTLS" != sender.destination.mode

    assert_refused(service, host, sender.id)
    assert seen(b) == (0, 0, 0)
    assert seen(a) == a_before

    service.update_sender(sender.id, tampered.version, tampered.settings, PASSWORD)
    assert service.send_test_email(sender.id, RECIPIENT).ok
    assert b.tls_seen and b.auth_attempts[-1][1:] == ("alice", True)


def test_a_batch_to_a_tampered_sender_fails_per_message_without_connecting(
        make_app, host, smtp_server) -> None:
    """Case D7: send_many over parallel connections returns one error result per message
    (no exception escapes), audits each, and opens no connection at all."""
    app = make_app(plugins=[host], SMTP_SENDERS_MAX_CONNECTIONS=4)
    a = smtp_server("implicit", users=USERS)
    b = smtp_server("implicit", users=USERS)
    with app.app_context():
        service = get_service(app)
        sender = add(service, a)
        tamper(app, sender.id, port=b.port)
        results = service.mailer.send_many([note(n) for n in range(25)], sender.id)
    assert len(results) == 25
    assert {type(r.error) for r in results} == {CredentialNotBound}
    assert all(r.message_id is None and r.accepted == () for r in results)
    assert host.failures() == [("message_failed", "password")] * 25
    assert seen(a) == seen(b) == (0, 0, 0)


def test_a_null_binding_is_refused_and_logged_without_secrets(app, service, host,
                                                              smtp_server, caplog) -> None:
    """Case D7: a row with no binding (never bound, or its binding erased) is refused the
    same way; the warning names the sender and holds no secret."""
    a = smtp_server("implicit", users=USERS)
    sender = add(service, a)
    assert service.send_test_email(sender.id, RECIPIENT).ok
    a_before = seen(a)

    tamper(app, sender.id, password_binding=None)
    assert service.get_sender(sender.id).password_binding is None
    with caplog.at_level(logging.WARNING, logger="flask_smtp_senders"):
        assert_refused(service, host, sender.id)
    assert seen(a) == a_before
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and "not bound" in r.getMessage()]
    assert warnings and all(f"sender {sender.id}" in w for w in warnings)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert PASSWORD not in logged
    assert sender.password.token.decode() not in logged


def test_another_rows_token_or_binding_is_refused(app, service, host, smtp_server) -> None:
    """Case D7: copying a token (with or without its binding) from one sender's row into
    another's does not send it to the other sender's server."""
    a = smtp_server("implicit", users=USERS)
    b = smtp_server("implicit", users=USERS)
    victim = add(service, a)
    other = add(service, b)
    victim_row = service.get_sender(victim.id)

    tamper(app, other.id, password_token=victim_row.password.token.decode())
    assert_refused(service, host, other.id)
    tamper(app, other.id, password_binding=victim_row.password_binding)
    assert_refused(service, host, other.id)
    assert seen(b) == (0, 0, 0) and seen(a) == (0, 0, 0)
    assert service.send_test_email(victim.id, RECIPIENT).ok  # the victim is untouched


# -- legitimate changes keep working ----------------------------------------------------


def test_an_edit_through_the_app_rebinds_and_works(app, service, host, smtp_server) -> None:
    """update_sender binds the new destination: sends then go there, and only there."""
    a = smtp_server("implicit", users=USERS)
    b = smtp_server("implicit", users=USERS)
    sender = add(service, a)
    assert service.mailer.send(note(0), sender.id).ok
    a_before = seen(a)

    edited = service.update_sender(sender.id, sender.version, replace(
        sender.settings, port=b.port), PASSWORD)
    stored = service.get_sender(sender.id)
    assert stored.password_binding == edited.password_binding != sender.password_binding
    assert service.cipher.verify(stored.destination, stored.password,
                                 stored.password_binding)
    assert service.send_test_email(sender.id, RECIPIENT).ok
    assert service.mailer.send(note(1), sender.id).ok
    assert [m.username for m in b.messages] == ["alice", "alice"]
    assert seen(a)[1:] == a_before[1:]  # no AUTH and no message at the old server


def test_rotation_rebinds_under_the_new_key_and_senders_keep_working(make_app, host,
                                                                     smtp_server) -> None:
    """Case D4: [old] -> [new, old] + rotate_keys -> [new] alone: the binding is made
    again under the new key with the new token, and the sender still sends."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    a = smtp_server("implicit", users=USERS)
    app_old = make_app(plugins=[host], SMTP_SENDERS_ENCRYPTION_KEYS=[old])
    app_both = make_app(plugins=[host], SMTP_SENDERS_ENCRYPTION_KEYS=[new, old])
    app_new = make_app(plugins=[host], SMTP_SENDERS_ENCRYPTION_KEYS=[new])
    with app_old.app_context():
        sender = add(get_service(app_old), a)
    with app_both.app_context():
        assert get_service(app_both).rotate_keys() == (1, 0)
        rotated = get_service(app_both).get_sender(sender.id)
    assert rotated.password != sender.password
    assert rotated.password_binding != sender.password_binding
    assert rotated.version == sender.version
    with app_old.app_context():  # the new binding is not under the old key
        assert not get_service(app_old).cipher.verify(
            rotated.destination, rotated.password, rotated.password_binding)
    with app_new.app_context():
        service = get_service(app_new)
        assert service.send_test_email(sender.id, RECIPIENT).ok
        assert service.mailer.send(note(0), sender.id).ok
    assert [attempt.succeeded for attempt in a.auth_attempts] == [True, True]


def test_rotation_does_not_launder_a_tampered_or_unbound_row(make_app, host, smtp_server,
                                                             caplog) -> None:
    """Rotation re-binds only rows whose binding verifies: a row changed in SQL, or with
    no binding, is left as it was and counted unreadable, and stays refused afterwards."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    a = smtp_server("implicit", users=USERS)
    b = smtp_server("implicit", users=USERS)
    app_old = make_app(plugins=[host], SMTP_SENDERS_ENCRYPTION_KEYS=[old])
    with app_old.app_context():
        service = get_service(app_old)
        good, moved, unbound = add(service, a), add(service, a), add(service, a)
    tamper(app_old, moved.id, port=b.port)
    tamper(app_old, unbound.id, password_binding=None)
    with app_old.app_context():
        before = {s.id: s for s in get_service(app_old).list_senders()}

    app_both = make_app(plugins=[host], SMTP_SENDERS_ENCRYPTION_KEYS=[new, old])
    with app_both.app_context(), caplog.at_level(logging.WARNING, "flask_smtp_senders"):
        assert get_service(app_both).rotate_keys() == (1, 2)
        after = {s.id: s for s in get_service(app_both).list_senders()}
    for left in (moved.id, unbound.id):
        assert (after[left].password, after[left].password_binding) == (
            before[left].password, before[left].password_binding)
        assert any(f"sender {left}:" in r.getMessage() for r in caplog.records)
    assert after[good.id].password != before[good.id].password

    app_new = make_app(plugins=[host], SMTP_SENDERS_ENCRYPTION_KEYS=[new])
    with app_new.app_context():
        service = get_service(app_new)
        assert service.send_test_email(good.id, RECIPIENT).ok
        for refused in (moved.id, unbound.id):
            result = service.send_test_email(refused, RECIPIENT)
            assert (result.ok, result.stage) == (False, "password")
    assert seen(b) == (0, 0, 0)
    assert len(a.auth_attempts) == 1


def test_a_plugin_store_carries_the_binding(make_app, host, smtp_server) -> None:
    """A store implementing the protocol keeps the binding it is given; one that loses it
    leaves the sender refused, never usable for another destination."""
    memory = MemoryStore()
    app = make_app(plugins=[host], store=memory)
    a = smtp_server("implicit", users=USERS)
    with app.app_context():
        service = get_service(app)
        sender = add(service, a)
        assert memory.rows[sender.id].password_binding == sender.password_binding
        assert sender.password_binding is not None
        assert service.send_test_email(sender.id, RECIPIENT).ok
        assert service.rotate_keys() == (1, 0)
        assert service.send_test_email(sender.id, RECIPIENT).ok
        memory.rows[sender.id] = replace(memory.rows[sender.id], password_binding=None)
        assert_refused(service, host, sender.id)
    assert len(a.auth_attempts) == 2


# -- the binding itself -----------------------------------------------------------------


@pytest.fixture
def cipher() -> PasswordCipher:
    return PasswordCipher([Fernet.generate_key()])


def test_the_binding_covers_every_field_of_the_destination_and_the_token(cipher) -> None:
    """Any change of Server Name (even its case), Port, mode, Username or token, and any
    other sender's token with the same password, fails to verify."""
    token = cipher.encrypt(PASSWORD)
    where = destination("mx.example.com", 465, "alice")
    binding = cipher.bind(where, token)
    assert cipher.verify(where, token, binding)
    assert cipher.bind(where, token) == binding  # deterministic, so it can be checked
    others = [
        destination("mx.example.org", 465, "alice"),
        destination("MX.example.com", 465, "alice"),
        destination("mx.example.com.", 465, "alice"),
        destination("mx.example.com", 466, "alice"),
        destination("mx.example.com", 465, "alice2"),
        replace(where, mode=Security.STARTTLS.value),  # the same port under another rule
    ]
    for other in others:
        assert not cipher.verify(other, token, binding), other
        assert cipher.bind(other, token) != binding
    same_password = cipher.encrypt(PASSWORD)
    assert not cipher.verify(where, same_password, binding)
    assert cipher.bind(destination("mx.example.org", 465, "alice"), same_password) != (
        cipher.bind(where, same_password))
    for missing in (None, "", "v1:", binding.upper(), "v2" + binding[2:], binding[:-1]):
        assert not cipher.verify(where, token, missing)


def test_the_destination_encoding_is_unambiguous() -> None:
    """The MACed bytes decode back to exactly the fields, whatever they hold, so no two
    destinations share them (a separator in a username cannot shift a field)."""
    tricky = [
        Destination("a", 25, "STARTTLS", "b,c"),
        Destination("a,b", 25, "STARTTLS", "c"),
        Destination("h", 465, "SMTPS", 'u","x'),
        Destination("h", 465, "SMTPS", "u\u00e9\x00"),
    ]
    encodings = [where.canonical() for where in tricky]
    assert len(set(encodings)) == len(tricky)
    for where, encoded in zip(tricky, encodings, strict=True):
        assert encoded.isascii() and b"\0" not in encoded
        assert json.loads(encoded)[1:] == [where.server_name, where.port, where.mode,
                                           where.username]


def test_the_binding_reveals_nothing(cipher) -> None:
    """A fixed-length MAC: not the password, not the token, not Fernet's own key at work,
    and different under different keys for the same destination and token."""
    token = cipher.encrypt(PASSWORD)
    where = destination(SERVER_NAME, 465, "alice")
    binding = cipher.bind(where, token)
    assert re.fullmatch(r"v1:[0-9a-f]{64}", binding)
    for form in (PASSWORD, base64.b64encode(PASSWORD.encode()).decode(),
                 token.token.decode()):
        assert form not in binding

    key = Fernet.generate_key()
    one, two = PasswordCipher([key]), PasswordCipher([Fernet.generate_key()])
    assert one.bind(where, token) != two.bind(where, token)
    assert not two.verify(where, token, one.bind(where, token))
    data = where.canonical() + b"\0" + token.token
    signing_key = base64.urlsafe_b64decode(key)[:16]  # Fernet's HMAC key
    assert one.bind(where, token) != "v1:" + hmac.new(signing_key, data,
                                                      hashlib.sha256).hexdigest()
    assert one.bind(where, token) == "v1:" + hmac.new(binding_key(key), data,
                                                      hashlib.sha256).hexdigest()
    assert BINDING_INFO.startswith(b"flask-smtp-senders")


def test_every_configured_key_verifies_and_only_the_first_binds() -> None:
    """Like MultiFernet: a binding made under an older key still verifies while that key
    is configured; new bindings are under the first key; rebind refuses what does not
    verify."""
    old, new = Fernet.generate_key(), Fernet.generate_key()
    before, during, after = (PasswordCipher([old]), PasswordCipher([new, old]),
                             PasswordCipher([new]))
    where = destination(SERVER_NAME, 587, "alice")
    token = before.encrypt(PASSWORD)
    binding = before.bind(where, token)
    assert during.verify(where, token, binding)
    assert not after.verify(where, token, binding)
    assert during.bind(where, token) == after.bind(where, token)

    fresh = during.rotate(token)
    rebound = during.rebind(where, token, binding, fresh)
    assert after.verify(where, fresh, rebound)
    assert not after.verify(where, token, rebound)  # it binds the new token only
    with pytest.raises(CredentialNotBound):
        during.rebind(destination(SERVER_NAME, 2525, "alice"), token, binding, fresh)
    with pytest.raises(CredentialNotBound):
        during.rebind(where, token, None, fresh)


def test_the_binding_is_checked_before_the_password_is_decrypted(make_app, service,
                                                                 fernet_key) -> None:
    """secret_for checks the binding first. A genuine token whose plaintext cannot be
    decoded gives PasswordUnreadable once bound (decryption ran), but CredentialNotBound
    unbound (it never got that far). A token no configured key signed (wrong keys,
    corruption) stays PasswordUnreadable, the "re-enter" case, bound or not."""
    sender = service.create_sender(SenderSettings(
        username="alice", server_name="smtp.example.com", from_address="noreply@example.com"),
        PASSWORD)
    assert service.secret_for(sender).reveal() == PASSWORD

    undecodable = EncryptedPassword(Fernet(fernet_key).encrypt(b"\xff\xfe"))
    bound = replace(sender, password=undecodable,
                    password_binding=service.cipher.bind(sender.destination, undecodable))
    with pytest.raises(PasswordUnreadable) as decrypted:
        service.secret_for(bound)
    assert not isinstance(decrypted.value, CredentialNotBound)
    for unbound in (replace(bound, password_binding=None),
                    replace(bound, settings=replace(sender.settings, port=2525))):
        with pytest.raises(CredentialNotBound) as refused:
            service.secret_for(unbound)
        assert refused.value.user_message == UNBOUND
        assert PASSWORD not in str(refused.value) and PASSWORD not in repr(refused.value)

    foreign_app = make_app(SMTP_SENDERS_ENCRYPTION_KEYS=[Fernet.generate_key().decode()])
    with foreign_app.app_context():
        foreign = get_service(foreign_app).cipher.encrypt(PASSWORD)
    for binding in (None, service.cipher.bind(sender.destination, foreign)):
        with pytest.raises(PasswordUnreadable) as unreadable:
            service.secret_for(replace(sender, password=foreign, password_binding=binding))
        assert not isinstance(unreadable.value, CredentialNotBound)
