"""The sender store on real SQLite and PostgreSQL, through SenderService.

Every test here runs once per database (the ``database`` fixture is parametrised).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from flask_smtp_senders import (
    AuditFailed,
    ConcurrentUpdate,
    InvalidSenderData,
    PasswordUnreadable,
    SenderNotFound,
    SenderSettings,
    get_service,
    hookimpl,
)
from flask_smtp_senders.events import KeysRotated, SenderCreated, SenderDeleted, SenderUpdated

PASSWORD = "CorrectHorse-Battery-42"
UNICODE_PASSWORD = "Pässwörd-Ünïcode-€-Sekret"
OTHER_PASSWORD = "Another-Secret-77"


def settings(**overrides: object) -> SenderSettings:
    values: dict[str, object] = {
        "username": "mailer@example.com",
        "server_name": "smtp.example.com",
        "from_address": "noreply@example.com",
        "from_name": "Example Alerts",
    }
    values.update(overrides)
    return SenderSettings(**values)  # type: ignore[arg-type]


class AuditRecorder:
    """A host plugin that keeps every audit event and names the actor "alice"."""

    def __init__(self) -> None:
        self.events: list[object] = []

    @hookimpl
    def smtp_senders_audit(self, event: object) -> None:
        self.events.append(event)

    @hookimpl
    def smtp_senders_actor(self) -> str:
        return "alice"


class FailingAudit:
    """A host plugin whose audit trail is down."""

    @hookimpl
    def smtp_senders_audit(self, event: object) -> None:
        raise RuntimeError("the audit log is unreachable")


@pytest.fixture
def recorder() -> AuditRecorder:
    return AuditRecorder()


@pytest.fixture
def audited(make_app, recorder: AuditRecorder):
    """A service whose app records audit events, inside its app context."""
    app = make_app(plugins=[recorder])
    with app.app_context():
        yield get_service(app)


@pytest.fixture
def failing(make_app):
    """An app on the same database whose audit hook raises (use it through ``in_app``)."""
    return make_app(plugins=[FailingAudit()])


def in_app(app, action):
    """Run ``action(service)`` inside ``app``'s context."""
    with app.app_context():
        return action(get_service(app))


def raw_rows(database) -> list[dict[str, object]]:
    """Every row of the table as the database holds it (PostgreSQL only)."""
    with database.raw_connect() as conn:
        cursor = conn.execute("SELECT * FROM smtp_senders ORDER BY id")
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


# -- create, list, get --------------------------------------------------------------


def test_created_sender_is_listed_with_defaults_and_aware_timestamps(service) -> None:
    """A new sender gets port 465, version 1, UTC-aware times and no test result."""
    before = datetime.now(timezone.utc)
    created = service.create_sender(settings(), PASSWORD)
    after = datetime.now(timezone.utc)

    listed = service.list_senders()
    assert listed == [created]
    fetched = service.get_sender(created.id)
    assert fetched == created
    assert fetched.settings == settings(port=465)
    assert fetched.settings.port == 465
    assert fetched.version == 1
    assert fetched.last_test_at is None
    assert fetched.last_test_ok is None
    for moment in (fetched.created_at, fetched.updated_at):
        assert moment.tzinfo is not None
        assert moment.utcoffset() is not None
        assert before - timedelta(seconds=1) <= moment <= after + timedelta(seconds=1)
    assert fetched.created_at == fetched.updated_at
    assert service.cipher.decrypt(fetched.password).reveal() == PASSWORD


def test_senders_are_listed_in_creation_order_with_distinct_ids(service) -> None:
    """list() returns every sender, oldest first, each under its own id."""
    ids = [service.create_sender(settings(from_name=f"Team {n}"), PASSWORD).id
           for n in range(3)]
    assert len(set(ids)) == 3
    listed = service.list_senders()
    assert [sender.id for sender in listed] == sorted(ids)
    assert [sender.settings.from_name for sender in listed] == ["Team 0", "Team 1", "Team 2"]


def test_get_of_missing_sender_raises_not_found(service) -> None:
    """An unknown id is SenderNotFound (a LookupError)."""
    with pytest.raises(SenderNotFound):
        service.get_sender(424242)
    with pytest.raises(LookupError):
        service.get_sender(424242)


def test_created_sender_settings_are_stored_normalised(service) -> None:
    """Validation runs before the store: server names are lower-cased, blanks trimmed."""
    created = service.create_sender(
        settings(server_name="SMTP.Example.COM", from_name="  Alerts  ", port=587), PASSWORD
    )
    fetched = service.get_sender(created.id)
    assert fetched.settings.server_name == "smtp.example.com"
    assert fetched.settings.from_name == "Alerts"
    assert fetched.settings.port == 587


def test_raw_database_holds_only_fernet_tokens_not_passwords(service, database) -> None:
    """No byte of the database file (or column of the table) is a plaintext password."""
    first = service.create_sender(settings(), PASSWORD)
    second = service.create_sender(settings(from_name="Unicode"), UNICODE_PASSWORD)
    assert service.get_sender(first.id).password.token.startswith(b"gAAAAA")

    if database.kind == "sqlite":
        path = Path(database.url.removeprefix("sqlite:///"))
        raw = path.read_bytes()
        assert b"smtp.example.com" in raw  # we are reading the right file
        for password in (PASSWORD, UNICODE_PASSWORD):
            assert password.encode("ascii", "ignore") not in raw
            assert password.encode("utf-8") not in raw
            assert password.encode("utf-16-le") not in raw
        assert b"gAAAAA" in raw
        assert service.get_sender(second.id).password.token in raw
    else:
        rows = raw_rows(database)
        assert len(rows) == 2
        for row in rows:
            assert str(row["password_token"]).startswith("gAAAAA")
            for value in row.values():
                for password in (PASSWORD, UNICODE_PASSWORD):
                    assert password not in str(value)
    assert service.cipher.decrypt(service.get_sender(second.id).password).reveal() == (
        UNICODE_PASSWORD
    )


# -- update and delete ----------------------------------------------------------------


def test_update_bumps_version_and_changes_fields(service) -> None:
    """A save changes the settings and the password and moves the version on by one."""
    created = service.create_sender(settings(), PASSWORD)
    updated = service.update_sender(
        created.id, created.version,
        settings(from_name="New Name", port=587, reply_to_address="help@example.com"),
        OTHER_PASSWORD,
    )
    assert updated.version == created.version + 1
    fetched = service.get_sender(created.id)
    assert fetched == updated
    assert fetched.settings.from_name == "New Name"
    assert fetched.settings.port == 587
    assert fetched.settings.reply_to_address == "help@example.com"
    assert fetched.created_at == created.created_at
    assert fetched.updated_at >= created.updated_at
    assert service.cipher.decrypt(fetched.password).reveal() == OTHER_PASSWORD

    again = service.update_sender(created.id, updated.version, settings(), OTHER_PASSWORD)
    assert again.version == created.version + 2
    assert service.get_sender(created.id).settings.port == 465


def test_update_with_stale_version_raises_conflict_and_keeps_row(service) -> None:
    """An edit based on an old version is refused and changes nothing."""
    created = service.create_sender(settings(), PASSWORD)
    current = service.update_sender(created.id, created.version,
                                    settings(from_name="Second"), PASSWORD)
    with pytest.raises(ConcurrentUpdate):
        service.update_sender(created.id, created.version,
                              settings(from_name="Stale"), OTHER_PASSWORD)
    assert service.get_sender(created.id) == current
    assert service.cipher.decrypt(service.get_sender(created.id).password).reveal() == PASSWORD


def test_second_of_two_edits_from_same_version_raises_conflict(service) -> None:
    """Two admins open version 1; the first save wins, the second is refused."""
    created = service.create_sender(settings(), PASSWORD)
    opened_by_a = service.get_sender(created.id)
    opened_by_b = service.get_sender(created.id)

    saved_a = service.update_sender(opened_by_a.id, opened_by_a.version,
                                    settings(from_name="Admin A"), PASSWORD)
    with pytest.raises(ConcurrentUpdate):
        service.update_sender(opened_by_b.id, opened_by_b.version,
                              settings(from_name="Admin B"), OTHER_PASSWORD)
    final = service.get_sender(created.id)
    assert final == saved_a
    assert final.settings.from_name == "Admin A"
    assert final.version == created.version + 1


def test_overlapping_edits_in_two_threads_let_only_the_first_win(app, service) -> None:
    """The second save starts while the first is still uncommitted; it must not win."""
    created = service.create_sender(settings(), PASSWORD)
    first_flushed = threading.Event()
    outcome: dict[str, object] = {}

    def hold_open(_sender: object) -> None:
        first_flushed.set()
        time.sleep(0.3)  # the second edit reads and tries to write meanwhile

    def first_edit() -> None:
        with app.app_context():
            try:
                outcome["first"] = service.store.update(
                    created.id, created.version, settings(from_name="First"),
                    service.cipher.encrypt(PASSWORD), before_commit=hold_open,
                )
            except Exception as exc:  # reported below, in the test's thread
                outcome["first_error"] = exc
                first_flushed.set()

    thread = threading.Thread(target=first_edit)
    thread.start()
    try:
        assert first_flushed.wait(10)
        with pytest.raises(ConcurrentUpdate):
            service.store.update(created.id, created.version, settings(from_name="Second"),
                                 service.cipher.encrypt(OTHER_PASSWORD))
    finally:
        thread.join(10)
    assert "first_error" not in outcome, outcome.get("first_error")
    final = service.get_sender(created.id)
    assert final.settings.from_name == "First"
    assert final.version == created.version + 1
    assert final == outcome["first"]
    assert service.cipher.decrypt(final.password).reveal() == PASSWORD


def test_update_of_missing_sender_raises_not_found(service) -> None:
    """Saving a sender that does not exist is SenderNotFound, and creates nothing."""
    with pytest.raises(SenderNotFound):
        service.update_sender(999, 1, settings(), PASSWORD)
    with pytest.raises(SenderNotFound):
        service.store.update(999, 1, settings(), service.cipher.encrypt(PASSWORD))
    assert service.list_senders() == []


def test_update_of_deleted_sender_raises_not_found(service) -> None:
    """An edit of a sender someone deleted meanwhile is SenderNotFound."""
    created = service.create_sender(settings(), PASSWORD)
    service.delete_sender(created.id, created.version)
    with pytest.raises(SenderNotFound):
        service.update_sender(created.id, created.version, settings(), PASSWORD)
    assert service.list_senders() == []


def test_delete_of_missing_sender_raises_not_found(service) -> None:
    """Deleting an unknown id is SenderNotFound, with or without a version."""
    kept = service.create_sender(settings(), PASSWORD)
    with pytest.raises(SenderNotFound):
        service.delete_sender(kept.id + 100)
    with pytest.raises(SenderNotFound):
        service.delete_sender(kept.id + 100, 1)
    assert service.list_senders() == [kept]


def test_delete_with_current_version_removes_only_that_sender(service) -> None:
    """A delete at the current version removes the row; the others stay."""
    doomed = service.create_sender(settings(from_name="Doomed"), PASSWORD)
    kept = service.create_sender(settings(from_name="Kept"), PASSWORD)
    service.delete_sender(doomed.id, doomed.version)
    assert service.list_senders() == [replace(kept, is_default=True)]  # default passed on
    with pytest.raises(SenderNotFound):
        service.get_sender(doomed.id)


def test_delete_with_stale_version_raises_conflict_and_keeps_row(service) -> None:
    """A delete based on an old version is refused and leaves the newer row intact."""
    created = service.create_sender(settings(), PASSWORD)
    current = service.update_sender(created.id, created.version,
                                    settings(from_name="Edited"), PASSWORD)
    with pytest.raises(ConcurrentUpdate):
        service.delete_sender(created.id, created.version)
    assert service.list_senders() == [current]


# -- test results ------------------------------------------------------------------


def test_record_test_stores_result_without_bumping_version(service) -> None:
    """last_test_at/ok are remembered; version and updated_at do not move."""
    created = service.create_sender(settings(), PASSWORD)
    when = datetime(2024, 5, 1, 10, 30, 15, 123456, tzinfo=timezone.utc)
    service.store.record_test(created.id, True, when)
    fetched = service.get_sender(created.id)
    assert fetched.last_test_at == when
    assert fetched.last_test_at.tzinfo is not None
    assert fetched.last_test_ok is True
    assert fetched.version == created.version
    assert fetched.updated_at == created.updated_at
    assert fetched.settings == created.settings

    later = when + timedelta(minutes=5)
    service.store.record_test(created.id, False, later)
    fetched = service.get_sender(created.id)
    assert (fetched.last_test_at, fetched.last_test_ok) == (later, False)
    assert fetched.version == created.version

    # An edit opened before the test can still be saved: the version did not move.
    saved = service.update_sender(created.id, created.version, settings(from_name="X"),
                                  PASSWORD)
    assert saved.version == created.version + 1


def test_record_test_keeps_the_instant_of_a_non_utc_time(service) -> None:
    """A timezone-aware time in another zone reads back as the same instant."""
    created = service.create_sender(settings(), PASSWORD)
    paris_summer = timezone(timedelta(hours=2))
    when = datetime(2024, 5, 1, 12, 0, tzinfo=paris_summer)
    service.store.record_test(created.id, True, when)
    fetched = service.get_sender(created.id)
    assert fetched.last_test_at == when, (
        f"stored {when.isoformat()}, read back {fetched.last_test_at.isoformat()}"
    )


# -- audit: fail closed, and what the events say --------------------------------------


def test_failing_audit_on_create_raises_audit_failed_and_stores_nothing(
    service, failing
) -> None:
    """A create whose audit raises is rolled back: no row appears."""
    existing = service.create_sender(settings(from_name="Existing"), PASSWORD)
    with pytest.raises(AuditFailed):
        in_app(failing, lambda svc: svc.create_sender(settings(from_name="Unaudited"), PASSWORD))
    assert in_app(failing, lambda svc: svc.list_senders()) == [existing]
    assert service.list_senders() == [existing]


def test_failing_audit_on_update_raises_audit_failed_and_keeps_row(service, failing) -> None:
    """An update whose audit raises is rolled back: the row is exactly as before."""
    created = service.create_sender(settings(), PASSWORD)
    with pytest.raises(AuditFailed):
        in_app(failing, lambda svc: svc.update_sender(
            created.id, created.version, settings(from_name="Unaudited", port=2525),
            OTHER_PASSWORD))
    assert service.get_sender(created.id) == created
    assert service.cipher.decrypt(service.get_sender(created.id).password).reveal() == PASSWORD


def test_failing_audit_on_delete_raises_audit_failed_and_keeps_row(service, failing) -> None:
    """A delete whose audit raises is rolled back: the row is still there, unchanged."""
    created = service.create_sender(settings(), PASSWORD)
    with pytest.raises(AuditFailed):
        in_app(failing, lambda svc: svc.delete_sender(created.id, created.version))
    with pytest.raises(AuditFailed):
        in_app(failing, lambda svc: svc.delete_sender(created.id))
    assert service.list_senders() == [created]


def test_failing_audit_on_rotation_raises_audit_failed_and_keeps_tokens(
    make_app, fernet_key
) -> None:
    """A key rotation whose audit raises re-encrypts nothing."""
    old_app = make_app()
    created = in_app(old_app, lambda svc: [svc.create_sender(settings(), PASSWORD)
                                           for _ in range(2)])
    new_key = Fernet.generate_key().decode()
    rotating = make_app(plugins=[FailingAudit()],
                        SMTP_SENDERS_ENCRYPTION_KEYS=[new_key, fernet_key])
    with pytest.raises(AuditFailed):
        in_app(rotating, lambda svc: svc.rotate_keys())
    assert in_app(old_app, lambda svc: svc.list_senders()) == created


def test_audit_events_name_sender_actor_and_changed_fields(audited, recorder) -> None:
    """Create, update and delete each emit one event with the sender id and the actor."""
    created = audited.create_sender(settings(), PASSWORD)
    same_password = audited.update_sender(created.id, created.version,
                                          settings(from_name="Renamed", port=587), PASSWORD)
    new_password = audited.update_sender(created.id, same_password.version,
                                         settings(from_name="Renamed", port=587),
                                         OTHER_PASSWORD)
    audited.delete_sender(created.id, new_password.version)

    kinds = [type(event) for event in recorder.events]
    assert kinds == [SenderCreated, SenderUpdated, SenderUpdated, SenderDeleted]
    for event in recorder.events:
        assert event.sender_id == created.id
        assert event.actor == "alice"
        assert event.outcome == "success"
        assert event.occurred_at.tzinfo is not None
    renamed, repassworded = recorder.events[1], recorder.events[2]
    assert set(renamed.changed_fields) == {"from_name", "port"}
    assert repassworded.changed_fields == ("password",)


def test_audit_event_reprs_hold_no_password_or_token(audited, recorder) -> None:
    """No audit event, repr'd as a logger would, shows the password or its token."""
    created = audited.create_sender(settings(), PASSWORD)
    updated = audited.update_sender(created.id, created.version,
                                    settings(from_name="Changed"), OTHER_PASSWORD)
    audited.delete_sender(created.id, updated.version)
    assert len(recorder.events) == 3
    tokens = [created.password.token.decode(), updated.password.token.decode()]
    for event in recorder.events:
        for shown in (repr(event), str(event)):
            assert PASSWORD not in shown
            assert OTHER_PASSWORD not in shown
            assert "gAAAAA" not in shown
            for token in tokens:
                for start in range(len(token) - 9):
                    assert token[start:start + 10] not in shown


def test_failed_change_emits_no_audit_event(audited, recorder) -> None:
    """A refused save (stale version) is not reported as a change."""
    created = audited.create_sender(settings(), PASSWORD)
    audited.update_sender(created.id, created.version, settings(from_name="B"), PASSWORD)
    recorder.events.clear()
    with pytest.raises(ConcurrentUpdate):
        audited.update_sender(created.id, created.version, settings(from_name="C"), PASSWORD)
    with pytest.raises(ConcurrentUpdate):
        audited.delete_sender(created.id, created.version)
    assert recorder.events == []


# -- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"from_name": "Alerts\r\nBcc: victim@example.org"}, "from_name"),
        ({"from_name": "Alerts\nX-Injected: yes"}, "from_name"),
        ({"from_address": "not an address"}, "from_address"),
        ({"from_address": "noreply@example.com\r\nRCPT TO:<x@example.org>"}, "from_address"),
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
    ],
    ids=["crlf-name", "lf-name", "bad-address", "crlf-address", "port-0", "port-65536"],
)
def test_invalid_data_raises_with_field_name_and_stores_nothing(
    service, overrides: dict[str, object], field: str
) -> None:
    """Bad fields are refused by create and update, named in .errors, and never stored."""
    with pytest.raises(InvalidSenderData) as excinfo:
        service.create_sender(settings(**overrides), PASSWORD)
    assert field in excinfo.value.errors
    assert service.list_senders() == []

    created = service.create_sender(settings(), PASSWORD)
    with pytest.raises(InvalidSenderData) as excinfo:
        service.update_sender(created.id, created.version, settings(**overrides), PASSWORD)
    assert field in excinfo.value.errors
    assert service.list_senders() == [created]


@pytest.mark.parametrize("password", ["", "a" * 1025, "pass\x00word"])
def test_invalid_password_raises_and_stores_nothing(service, password: str) -> None:
    """An empty, overlong or NUL-bearing password is refused under "password"."""
    with pytest.raises(InvalidSenderData) as excinfo:
        service.create_sender(settings(), password)
    assert set(excinfo.value.errors) == {"password"}
    assert service.list_senders() == []


# -- key rotation ------------------------------------------------------------------


def test_rotation_moves_every_password_to_the_new_key(make_app) -> None:
    """[old] -> [new, old] + rotate -> [new] alone reads every password; rotate is idempotent."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    passwords = [PASSWORD, UNICODE_PASSWORD, OTHER_PASSWORD]
    app_a = make_app(SMTP_SENDERS_ENCRYPTION_KEYS=[old])
    ids = in_app(app_a, lambda svc: [
        svc.create_sender(settings(from_name=f"S{n}"), pw).id
        for n, pw in enumerate(passwords)
    ])

    recorder = AuditRecorder()
    app_b = make_app(plugins=[recorder], SMTP_SENDERS_ENCRYPTION_KEYS=[new, old])
    app_c = make_app(SMTP_SENDERS_ENCRYPTION_KEYS=[new])

    def readable_by_c() -> dict[int, str]:
        with app_c.app_context():
            svc = get_service(app_c)
            return {s.id: svc.cipher.decrypt(s.password).reveal() for s in svc.list_senders()}

    with app_c.app_context():
        assert not any(get_service(app_c).password_readable(s)
                       for s in get_service(app_c).list_senders())
    before = in_app(app_b, lambda svc: svc.list_senders())

    assert in_app(app_b, lambda svc: svc.rotate_keys()) == (3, 0)
    assert readable_by_c() == dict(zip(ids, passwords, strict=True))
    after = in_app(app_b, lambda svc: svc.list_senders())
    for old_sender, new_sender in zip(before, after, strict=True):
        assert new_sender.password != old_sender.password
        assert new_sender.version == old_sender.version  # a rotation is not an edit
        assert new_sender.settings == old_sender.settings

    assert in_app(app_b, lambda svc: svc.rotate_keys()) == (3, 0)
    assert readable_by_c() == dict(zip(ids, passwords, strict=True))
    assert in_app(app_c, lambda svc: svc.rotate_keys()) == (3, 0)
    assert readable_by_c() == dict(zip(ids, passwords, strict=True))

    rotations = [event for event in recorder.events if isinstance(event, KeysRotated)]
    assert len(rotations) == 2  # app B rotated twice
    assert recorder.events == rotations
    assert (rotations[0].rotated, rotations[0].unreadable) == (3, 0)
    assert rotations[0].actor == "alice"
    assert rotations[0].sender_id is None


def test_rotation_emits_one_keys_rotated_event(audited, recorder) -> None:
    """One rotate_keys call is one KeysRotated event with the counts."""
    for n in range(2):
        audited.create_sender(settings(from_name=f"S{n}"), PASSWORD)
    recorder.events.clear()
    assert audited.rotate_keys() == (2, 0)
    assert len(recorder.events) == 1
    event = recorder.events[0]
    assert isinstance(event, KeysRotated)
    assert (event.rotated, event.unreadable, event.actor) == (2, 0, "alice")


def test_rotation_of_empty_table_reports_nothing(service) -> None:
    """With no senders, rotation does nothing and says so."""
    assert service.rotate_keys() == (0, 0)
    assert service.list_senders() == []


def test_rotation_racing_an_edit_keeps_the_newly_entered_password(app, service) -> None:
    """An admin saves a new password while a rotation is under way: the new one survives.

    The edit commits after the rotation read the old token and before it writes back.
    """
    created = service.create_sender(settings(), PASSWORD)
    edit: dict[str, object] = {}

    def save_new_password() -> None:
        with app.app_context():
            try:
                edit["saved"] = service.update_sender(
                    created.id, created.version, settings(from_name="Edited"), OTHER_PASSWORD)
            except Exception as exc:  # reported below, in the test's thread
                edit["error"] = exc

    editor = threading.Thread(target=save_new_password)

    def rotate_while_an_edit_commits(token):
        if editor.ident is None:  # first token: let the edit run now
            editor.start()
            editor.join(1.0)  # a store that locks the row makes the edit wait: also fine
        return service.cipher.rotate(token)

    try:
        service.store.reencrypt(rotate_while_an_edit_commits)
    except ConcurrentUpdate:
        pass  # refusing the rotation would be a correct answer too
    finally:
        if editor.ident is not None:
            editor.join(10)
    assert "error" not in edit, edit.get("error")
    assert "saved" in edit
    final = service.get_sender(created.id)
    assert final.settings.from_name == "Edited"
    assert final.version == created.version + 1
    assert service.cipher.decrypt(final.password).reveal() == OTHER_PASSWORD, (
        "the rotation wrote the old password back over the one just saved"
    )


@pytest.fixture
def foreign_sender(make_app, service):
    """Two senders under the main key and, between them, one under an unrelated key."""
    first = service.create_sender(settings(from_name="First"), PASSWORD)
    other_app = make_app(SMTP_SENDERS_ENCRYPTION_KEYS=[Fernet.generate_key().decode()])
    foreign = in_app(other_app, lambda svc: svc.create_sender(settings(from_name="Foreign"),
                                                             OTHER_PASSWORD))
    last = service.create_sender(settings(from_name="Last"), UNICODE_PASSWORD)
    return first, foreign, last


def test_password_under_unknown_key_is_flagged_only_for_that_sender(
    service, foreign_sender
) -> None:
    """password_readable() is False for that sender alone; listing still works."""
    first, foreign, last = foreign_sender
    listed = service.list_senders()
    assert [s.id for s in listed] == [first.id, foreign.id, last.id]
    readable = {s.id: service.password_readable(s) for s in listed}
    assert readable == {first.id: True, foreign.id: False, last.id: True}
    with pytest.raises(PasswordUnreadable):
        service.cipher.decrypt(service.get_sender(foreign.id).password)
    assert service.cipher.decrypt(service.get_sender(last.id).password).reveal() == (
        UNICODE_PASSWORD
    )


def test_rotation_skips_and_counts_password_under_unknown_key(service, foreign_sender) -> None:
    """rotate_keys() returns (readable, 1) and leaves the unreadable token untouched."""
    first, foreign, last = foreign_sender
    assert service.rotate_keys() == (2, 1)
    assert service.get_sender(foreign.id).password == foreign.password
    assert service.get_sender(first.id).password != first.password
    assert service.cipher.decrypt(service.get_sender(first.id).password).reveal() == PASSWORD
    assert service.cipher.decrypt(service.get_sender(last.id).password).reveal() == (
        UNICODE_PASSWORD
    )


def test_re_entering_password_makes_unreadable_sender_readable(
    service, foreign_sender
) -> None:
    """Saving the sender with its password again makes it readable and rotatable."""
    _first, foreign, _last = foreign_sender
    saved = service.update_sender(foreign.id, foreign.version, foreign.settings,
                                  OTHER_PASSWORD)
    assert service.password_readable(saved)
    assert service.cipher.decrypt(service.get_sender(foreign.id).password).reveal() == (
        OTHER_PASSWORD
    )
    assert service.rotate_keys() == (3, 0)
