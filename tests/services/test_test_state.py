"""The save warning follows what was tested (issue 7, item 4).

Every save stores a fingerprint of the settings and the password (an HMAC under a key
derived from the first Fernet key); a passed test email marks the fingerprint of the
version it used as tested. ``Sender.test_state`` compares the two, the Senders list shows
"Tested" / "Changed since last test" / "Never tested" and the edit page shows the vendor
guide's warning unless the saved settings are the tested ones. Real loopback servers, on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import update

from flask_smtp_senders import SenderSettings, get_service
from flask_smtp_senders.crypto import (
    BINDING_INFO,
    FINGERPRINT_INFO,
    PasswordCipher,
    binding_key,
    fingerprint_key,
)
from flask_smtp_senders.services.senders import SenderService
from flask_smtp_senders.storage.base import Sender, TestState
from flask_smtp_senders.storage.models import SenderRow
from tests.support.hosts import AuditingHost
from tests.support.pages import PREFIX, WARNING, csrf, form_values
from tests.support.smtp_servers import SERVER_NAME, RecordingServer

PASSWORD = "State-Pa55word-1"
OTHER_PASSWORD = "State-Pa55word-2"
RECIPIENT = "someone@example.com"
LABELS = {TestState.NEVER: b"Never tested", TestState.TESTED: b">Tested<",
          TestState.CHANGED: b"Changed since last test"}
#: NEVER once a test has failed: "Never tested" beside "Last test failed" would contradict.
NO_PASSED_TEST = b"No passed test"


Host = AuditingHost


@pytest.fixture
def host() -> Host:
    return Host()


@pytest.fixture
def app(make_app, host) -> Flask:
    return make_app(plugins=[host])


@pytest.fixture
def server(smtp_server) -> RecordingServer:
    return smtp_server("implicit", users={"alice": PASSWORD})


def settings_for(server: RecordingServer, **changes) -> SenderSettings:
    return replace(SenderSettings(username="alice", server_name=SERVER_NAME,
                                  port=server.port, from_name="Acme",
                                  from_address="noreply@example.com"), **changes)


def state(service: SenderService, sender_id: int) -> TestState:
    return service.get_sender(sender_id).test_state


def edit(service: SenderService, sender_id: int, server: RecordingServer,
         password: str = PASSWORD, **changes) -> Sender:
    current = service.get_sender(sender_id)
    return service.update_sender(sender_id, current.version,
                                 settings_for(server, **changes), password)


def listed_state(app: Flask) -> bytes:
    """The Test status cell of the (only) sender on the Senders list."""
    page = app.test_client().get(f"{PREFIX}/")
    assert page.status_code == 200
    cells = re.findall(rb"<td>(.*?)</td>", page.data, re.S)
    [cell] = [c for c in cells if b"data-test-state" in c]
    return cell


def warning_shown(app: Flask, sender_id: int) -> bool:
    page = app.test_client().get(f"{PREFIX}/{sender_id}")
    assert page.status_code == 200
    return WARNING.encode() in page.data


def assert_state(app: Flask, service: SenderService, sender_id: int,
                 expected: TestState) -> None:
    """The state on the Sender, on the list (its label alone) and on the edit page (the
    warning unless tested)."""
    assert state(service, sender_id) is expected
    cell = listed_state(app)
    label = LABELS[expected]
    if expected is TestState.NEVER and service.get_sender(sender_id).last_test_at:
        label = NO_PASSED_TEST
    assert [known for known in (*LABELS.values(), NO_PASSED_TEST) if known in cell] == [label]
    assert warning_shown(app, sender_id) is (expected is not TestState.TESTED)


# -- the state and where it shows ------------------------------------------------------


def test_never_then_tested_then_changed_by_an_edit_then_tested_again(app, service, server):
    """The whole cycle, each step on the Sender, the list and the edit page."""
    sender = service.create_sender(settings_for(server), PASSWORD)
    assert_state(app, service, sender.id, TestState.NEVER)

    assert service.send_test_email(sender.id, RECIPIENT).ok
    assert_state(app, service, sender.id, TestState.TESTED)
    cell = listed_state(app)
    assert b"Last test passed" in cell and re.search(rb"\d{4}-\d\d-\d\d \d\d:\d\d UTC", cell)

    edit(service, sender.id, server, from_name="Acme Notifications")
    assert_state(app, service, sender.id, TestState.CHANGED)

    assert service.send_test_email(sender.id, RECIPIENT).ok
    assert_state(app, service, sender.id, TestState.TESTED)
    assert len(server.messages) == 2


def test_each_setting_counts_as_a_change(app, service, smtp_server):
    """Username, Server Name, Port, From Name/Address, Reply-To Name/Address: changing any
    one of them after a passed test leaves the sender "changed", and so does going back
    to the tested values: each save is a version of its own until a test passes with it."""
    server = smtp_server("implicit", users={"alice": PASSWORD, "bob": PASSWORD})
    sender = service.create_sender(settings_for(server), PASSWORD)
    assert service.send_test_email(sender.id, RECIPIENT).ok
    seen = {service.get_sender(sender.id).settings_fingerprint}
    for change in [{"username": "bob"}, {"server_name": "127.0.0.1"}, {"port": 465},
                   {"from_name": "Other"}, {"from_address": "other@example.com"},
                   {"reply_to_name": "Help"}, {"reply_to_address": "help@example.com"}]:
        edit(service, sender.id, server, **change)
        assert state(service, sender.id) is TestState.CHANGED, change
        seen.add(service.get_sender(sender.id).settings_fingerprint)
        edit(service, sender.id, server)  # back to the tested values
        assert state(service, sender.id) is TestState.CHANGED, change
        seen.add(service.get_sender(sender.id).settings_fingerprint)
    assert len(seen) == 15  # no two saves share a fingerprint


def test_the_state_never_tells_whether_a_typed_password_is_the_stored_one(app, service,
                                                                          server):
    """Case G5: re-saving a tested sender with the stored password or with a guess gives
    the same state, list, page and API answer (no password oracle); a passed test with
    the new password makes it tested again."""
    sender = service.create_sender(settings_for(server), PASSWORD)
    assert service.send_test_email(sender.id, RECIPIENT).ok
    client = app.test_client()
    api = f"{PREFIX}/api/senders/{sender.id}"

    def seen_after_saving(password: str) -> tuple[object, ...]:
        saved = edit(service, sender.id, server, password=password)
        answer = client.get(api).get_json()
        assert answer["id"] == sender.id and "test_state" in answer
        for volatile in ("version", "updated_at", "etag"):
            answer.pop(volatile, None)
        return (saved.test_state, state(service, sender.id), listed_state(app),
                warning_shown(app, sender.id), answer)

    right = seen_after_saving(PASSWORD)
    guess = seen_after_saving(OTHER_PASSWORD)
    assert right == guess
    assert right[1] is TestState.CHANGED
    assert_state(app, service, sender.id, TestState.CHANGED)

    server.users["alice"] = OTHER_PASSWORD
    assert service.send_test_email(sender.id, RECIPIENT).ok
    assert_state(app, service, sender.id, TestState.TESTED)


def test_a_password_change_on_the_edit_page_brings_the_warning_back(app, service, server):
    """Through the page an administrator uses: the same values with another password."""
    client = app.test_client()
    sender = service.create_sender(settings_for(server), PASSWORD)
    assert service.send_test_email(sender.id, RECIPIENT).ok
    page = client.get(f"{PREFIX}/{sender.id}")
    assert WARNING.encode() not in page.data
    answer = client.post(f"{PREFIX}/{sender.id}", data={
        **form_values(page.data), "csrf_token": csrf(page.data), "password": OTHER_PASSWORD})
    assert answer.status_code == 302
    assert WARNING.encode() in client.get(answer.location).data
    assert b"Changed since last test" in client.get(f"{PREFIX}/").data


def test_a_failed_test_keeps_never_tested_and_changed(app, service, server):
    sender = service.create_sender(settings_for(server), "wrong-password")
    failed = service.send_test_email(sender.id, RECIPIENT)
    assert (failed.ok, failed.stage) == (False, "auth")
    assert_state(app, service, sender.id, TestState.NEVER)
    assert b"Last test failed" in listed_state(app)

    edit(service, sender.id, server)
    assert service.send_test_email(sender.id, RECIPIENT).ok
    edit(service, sender.id, server, password="wrong-again")
    assert not service.send_test_email(sender.id, RECIPIENT).ok
    assert_state(app, service, sender.id, TestState.CHANGED)
    assert b"Last test failed" in listed_state(app)
    assert len(server.messages) == 1


def test_a_failed_test_of_tested_settings_keeps_them_tested(app, service, server):
    """The rule compares fingerprints only: a later failure (the server is down, say) of
    the very settings that passed does not make them "changed"; the list shows it."""
    sender = service.create_sender(settings_for(server), PASSWORD)
    assert service.send_test_email(sender.id, RECIPIENT).ok
    server.stop()
    assert service.send_test_email(sender.id, RECIPIENT).stage == "connect"
    assert_state(app, service, sender.id, TestState.TESTED)
    assert b"Last test failed" in listed_state(app)


def test_a_passed_connection_check_does_not_mark_the_sender_tested(app, service, server):
    """The dry run says nothing about DATA: the warning stays."""
    sender = service.create_sender(settings_for(server), PASSWORD)
    assert service.check_connection(sender.id).ok
    assert_state(app, service, sender.id, TestState.NEVER)
    assert service.send_test_email(sender.id, RECIPIENT).ok
    edit(service, sender.id, server, from_name="Changed")
    assert service.check_connection(sender.id).ok
    assert_state(app, service, sender.id, TestState.CHANGED)
    assert server.messages and len(server.messages) == 1


# -- races -------------------------------------------------------------------------------


def test_an_edit_saved_while_the_test_runs_is_not_marked_tested(app, service, smtp_server):
    """The server holds its answer to DATA; meanwhile an administrator saves other
    settings. The test passes, but for settings that are no longer saved: nothing is
    recorded on the new version."""
    server = smtp_server("implicit", users={"alice": PASSWORD}, hang_after_data=1.0)
    sender = service.create_sender(settings_for(server), PASSWORD)
    results = []

    def run() -> None:
        with app.app_context():
            results.append(get_service(app).send_test_email(sender.id, RECIPIENT))

    tester = threading.Thread(target=run)
    tester.start()
    deadline = time.monotonic() + 5
    while "DATA" not in server.verbs and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "DATA" in server.verbs
    edit(service, sender.id, server, from_address="changed@example.com")
    tester.join(10)
    assert [r.ok for r in results] == [True] and len(server.messages) == 1
    after = service.get_sender(sender.id)
    assert after.test_state is TestState.NEVER
    assert (after.last_test_ok, after.last_test_at, after.tested_fingerprint) == (
        None, None, None)
    assert warning_shown(app, sender.id)


def test_record_test_is_a_compare_and_set_on_the_tested_version(service, server):
    """The store records nothing for a stale version (and says so), and marks the
    fingerprint of the current one when the version matches."""
    sender = service.create_sender(settings_for(server), PASSWORD)
    edited = edit(service, sender.id, server, from_name="Edited")
    when = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)
    assert service.store.record_test(sender.id, True, when, version=sender.version) is False
    stale = service.get_sender(sender.id)
    assert (stale.test_state, stale.last_test_at, stale.tested_fingerprint) == (
        TestState.NEVER, None, None)
    assert service.store.record_test(sender.id, True, when, version=edited.version) is True
    fresh = service.get_sender(sender.id)
    assert fresh.test_state is TestState.TESTED and fresh.last_test_at == when
    assert fresh.tested_fingerprint == edited.settings_fingerprint is not None
    assert fresh.version == edited.version
    assert service.store.record_test(sender.id, False, when, version=edited.version)
    assert service.get_sender(sender.id).test_state is TestState.TESTED


# -- keys and fingerprints -------------------------------------------------------------


def test_key_rotation_keeps_a_tested_sender_tested(make_app, host, server, fernet_key):
    """[old] -> [new, old] + rotate-keys -> [new]: still tested. The fingerprints are not
    recomputed by the rotation; a save after it needs a test as any save does, and with
    [new] alone a test still passes and keeps the sender tested."""
    old, new = fernet_key, Fernet.generate_key().decode()
    app_old = make_app(plugins=[host])
    with app_old.app_context():
        service = get_service(app_old)
        sender = service.create_sender(settings_for(server), PASSWORD)
        assert service.send_test_email(sender.id, RECIPIENT).ok
        tested = service.get_sender(sender.id)
        assert tested.test_state is TestState.TESTED

    app_both = make_app(plugins=[host], SMTP_SENDERS_ENCRYPTION_KEYS=[new, old])
    with app_both.app_context():
        service = get_service(app_both)
        assert service.rotate_keys() == (1, 0)
        rotated = service.get_sender(sender.id)
        assert rotated.password != tested.password  # the token did change
        assert rotated.test_state is TestState.TESTED
        assert (rotated.settings_fingerprint, rotated.tested_fingerprint) == (
            tested.settings_fingerprint, tested.tested_fingerprint)
        edit(service, sender.id, server)  # a save, even of the same values, is a change
        assert state(service, sender.id) is TestState.CHANGED
        assert service.send_test_email(sender.id, RECIPIENT).ok
        assert state(service, sender.id) is TestState.TESTED

    app_new = make_app(plugins=[host], SMTP_SENDERS_ENCRYPTION_KEYS=[new])
    with app_new.app_context():
        service = get_service(app_new)
        assert state(service, sender.id) is TestState.TESTED
        assert service.send_test_email(sender.id, RECIPIENT).ok
        assert state(service, sender.id) is TestState.TESTED
    assert len(server.messages) == 3


def test_the_fingerprint_is_an_hmac_of_every_setting_and_the_password(service, server,
                                                                      fernet_key, database):
    """HMAC-SHA256 under HKDF(first key, its own label) of the canonical settings and the
    plaintext password (and, for a save, a random salt kept beside it); stored on save,
    holds neither, and differs from the binding key."""
    values = settings_for(server)
    sender = service.create_sender(values, PASSWORD)
    key = fingerprint_key(fernet_key.encode())
    assert key != binding_key(fernet_key.encode()) and FINGERPRINT_INFO != BINDING_INFO
    version, salt, _mac = sender.settings_fingerprint.split(":")
    assert version == "f2" and len(salt) == 8  # every save's own salt
    data = json.dumps(["flask-smtp-senders/settings/v1",
                       [[name, value] for name, value in sorted(asdict(values).items())],
                       PASSWORD, salt], ensure_ascii=True, separators=(",", ":")).encode()
    saved = f"f2:{salt}:" + hmac.new(key, data, hashlib.sha256).hexdigest()
    assert sender.settings_fingerprint == saved
    assert service.get_sender(sender.id).settings_fingerprint == saved
    assert PASSWORD not in saved and "noreply" not in saved
    assert service.cipher.fingerprint_matches(asdict(values), PASSWORD, saved)
    assert not service.cipher.fingerprint_matches(asdict(values), OTHER_PASSWORD, saved)
    unsalted = json.dumps(["flask-smtp-senders/settings/v1",
                           [[name, value] for name, value in sorted(asdict(values).items())],
                           PASSWORD], ensure_ascii=True, separators=(",", ":")).encode()
    expected = "f1:" + hmac.new(key, unsalted, hashlib.sha256).hexdigest()

    cipher = service.cipher
    base = asdict(values)
    seen = {cipher.fingerprint(base, PASSWORD)}
    for name, value in base.items():
        changed = {**base, name: value + 1 if isinstance(value, int) else value + "x"}
        seen.add(cipher.fingerprint(changed, PASSWORD))
    seen.add(cipher.fingerprint(base, OTHER_PASSWORD))
    assert len(seen) == len(base) + 2
    other = PasswordCipher([base64.urlsafe_b64encode(b"k" * 32)])
    assert other.fingerprint(base, PASSWORD) != expected
    assert not other.fingerprint_matches(base, PASSWORD, expected)
    assert PasswordCipher([base64.urlsafe_b64encode(b"k" * 32), fernet_key.encode()]
                          ).fingerprint_matches(base, PASSWORD, expected)


def _tamper(app: Flask, sender_id: int, **columns) -> None:
    table = SenderRow.__table__
    with app.app_context(), app.extensions["sqlalchemy"].engine.begin() as connection:
        assert connection.execute(
            update(table).where(table.c.id == sender_id).values(**columns)).rowcount == 1


def test_a_sender_saved_before_fingerprints_gets_one_from_its_next_passed_test(
        app, service, server):
    """A row without fingerprints (saved before the upgrade) keeps the old rule (its last
    result) until a passed test gives it one; an edit after that is a change."""
    sender = service.create_sender(settings_for(server), PASSWORD)
    fingerprint = service.cipher.fingerprint(asdict(sender.settings), PASSWORD)
    _tamper(app, sender.id, settings_fingerprint=None, tested_fingerprint=None,
            last_test_ok=True, last_test_at=datetime(2025, 1, 1, tzinfo=timezone.utc))
    assert state(service, sender.id) is TestState.TESTED
    _tamper(app, sender.id, last_test_ok=False)
    assert_state(app, service, sender.id, TestState.NEVER)

    assert service.send_test_email(sender.id, RECIPIENT).ok
    backfilled = service.get_sender(sender.id)
    assert backfilled.settings_fingerprint == backfilled.tested_fingerprint == fingerprint
    assert_state(app, service, sender.id, TestState.TESTED)
    edit(service, sender.id, server, reply_to_address="help@example.com")
    assert_state(app, service, sender.id, TestState.CHANGED)


def test_an_edit_lists_its_changed_fields_without_decrypting_the_password(
        service, server, host, monkeypatch):
    """Case G11: the audit event of an edit says whether the password changed by its keyed
    fingerprint, never by decrypting the stored password."""
    sender = service.create_sender(settings_for(server), PASSWORD)

    def never(*_args, **_kwargs):
        raise AssertionError("an edit decrypted the stored password")

    monkeypatch.setattr(service.cipher, "decrypt", never)
    edit(service, sender.id, server, from_name="Renamed")
    edit(service, sender.id, server, password=OTHER_PASSWORD)
    updates = [event.changed_fields for event in host.events
               if type(event).__name__ == "SenderUpdated"]
    assert [set(fields) for fields in updates] == [{"from_name"}, {"from_name", "password"}]
