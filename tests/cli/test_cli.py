"""``flask smtp-senders generate-key`` and ``rotate-keys`` through Flask's CLI runner.

Every test that takes ``make_app`` runs on SQLite and on PostgreSQL. Speed is measured in
``benchmarks/rotation.py``, not here.
"""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner, Result
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from flask_smtp_senders import SenderSettings, get_service, hookimpl
from flask_smtp_senders.cli.keys import generate_key
from flask_smtp_senders.events import KeysRotated

PASSWORDS = ["CorrectHorse-Battery-42", "Pässwörd-Ünïcode-€-Sekret", "quote'\"#;-77"]
FOREIGN_PASSWORD = "Foreign-Key-Secret-9"


def settings(number: int) -> SenderSettings:
    return SenderSettings(username=f"mailer{number}@example.com",
                          server_name="smtp.example.com", port=587,
                          from_address=f"noreply{number}@example.com")


def invoke(app: Flask, *args: str) -> Result:
    """Run ``flask smtp-senders ARGS``; anything but a clean exit fails with its traceback."""
    result = app.test_cli_runner().invoke(args=["smtp-senders", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def create(app: Flask, passwords: list[str]) -> list[int]:
    with app.app_context():
        service = get_service(app)
        return [service.create_sender(settings(n), pw).id for n, pw in enumerate(passwords)]


def tokens(app: Flask) -> dict[int, bytes]:
    with app.app_context():
        return {s.id: s.password.token for s in get_service(app).list_senders()}


def decrypted(app: Flask) -> dict[int, str]:
    with app.app_context():
        service = get_service(app)
        return {s.id: service.cipher.decrypt(s.password).reveal()
                for s in service.list_senders()}


def new_key() -> str:
    return Fernet.generate_key().decode()


class AuditRecorder:
    """A host plugin that keeps every audit event, as an audit trail would."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def smtp_senders_audit(self, event: Any) -> None:
        self.events.append(event)

    @hookimpl
    def smtp_senders_actor(self) -> str:
        return "ops-cli"


class FailingAudit:
    """A host plugin whose audit trail is down."""

    @hookimpl
    def smtp_senders_audit(self, event: Any) -> None:
        raise RuntimeError("the audit log is unreachable")


# -- generate-key --------------------------------------------------------------------


def test_generate_key_prints_only_a_new_valid_fernet_key_on_stdout(make_app) -> None:
    """stdout is the key alone (pipeable), each run a different one; the hint is on stderr."""
    app = make_app()
    first, second = invoke(app, "generate-key"), invoke(app, "generate-key")
    keys = []
    for result in (first, second):
        assert result.exit_code == 0
        assert result.stdout.endswith("\n")
        assert result.stdout.count("\n") == 1
        key = result.stdout.strip()
        Fernet(key)  # raises on anything that is not 32 url-safe base64-encoded bytes
        assert len(key) == 44
        keys.append(key)
        assert key not in result.stderr
        assert "FIRST in SMTP_SENDERS_ENCRYPTION_KEYS" in result.stderr
        assert "rotate-keys" in result.stderr
    assert keys[0] != keys[1]
    assert app.config["SMTP_SENDERS_ENCRYPTION_KEYS"][0] not in keys


def test_generate_key_needs_no_app_so_it_can_make_the_first_key(tmp_path,
                                                                 monkeypatch) -> None:
    """Without any app (none can start before it has a key) the command still works,
    and it writes no file."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(generate_key)
    assert result.exit_code == 0, result.output
    Fernet(result.stdout.strip())
    assert list(tmp_path.iterdir()) == []


# -- rotate-keys ---------------------------------------------------------------------


def test_rotate_keys_moves_every_password_to_the_new_key_and_reruns_cleanly(
    make_app,
) -> None:
    """Case D4. [old] -> [new, old] + rotate-keys -> [new] alone reads every password;
    running it again (with [new, old], then [new]) succeeds and changes no password.
    Case D5: neither a password nor a token is printed."""
    old, new = new_key(), new_key()
    app_old = make_app(SMTP_SENDERS_ENCRYPTION_KEYS=[old])
    ids = create(app_old, PASSWORDS)
    before = tokens(app_old)
    app_both = make_app(SMTP_SENDERS_ENCRYPTION_KEYS=[new, old])
    app_new = make_app(SMTP_SENDERS_ENCRYPTION_KEYS=[new])
    with app_new.app_context():
        assert not any(get_service(app_new).password_readable(s)
                       for s in get_service(app_new).list_senders())

    result = invoke(app_both, "rotate-keys")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Re-encrypted 3 senders under the first key.\n"
    assert "Warning" not in result.stderr
    assert decrypted(app_new) == dict(zip(ids, PASSWORDS, strict=True))
    after = tokens(app_old)
    assert all(after[i] != before[i] for i in ids)
    for shown in (result.stdout, result.stderr):
        assert not any(pw in shown for pw in PASSWORDS)
        assert not any(t.decode() in shown for t in [*before.values(), *after.values()])

    for app in (app_both, app_new):
        again = invoke(app, "rotate-keys")
        assert again.exit_code == 0, again.output
        assert again.stdout == "Re-encrypted 3 senders under the first key.\n"
        assert decrypted(app_new) == dict(zip(ids, PASSWORDS, strict=True))


def test_rotate_keys_reports_and_skips_password_under_unknown_key_with_exit_1(
    make_app, fernet_key
) -> None:
    """Case D3. A sender under a key no longer configured: the others are rotated, the
    warning counts it (its password must be re-entered), exit 1, its token untouched."""
    app = make_app()
    first = create(app, PASSWORDS[:1])[0]
    foreign_app = make_app(SMTP_SENDERS_ENCRYPTION_KEYS=[new_key()])
    foreign = create(foreign_app, [FOREIGN_PASSWORD])[0]
    last = create(app, PASSWORDS[1:2])[0]
    before = tokens(app)
    rotating = make_app(SMTP_SENDERS_ENCRYPTION_KEYS=[new_key(), fernet_key])

    result = invoke(rotating, "rotate-keys")
    assert result.exit_code == 1
    assert result.stdout == "Re-encrypted 2 senders under the first key.\n"
    assert "Warning: 1 sender could not be read" in result.stderr
    assert "re-enter its password" in result.stderr
    after = tokens(app)
    assert after[foreign] == before[foreign]
    assert after[first] != before[first] and after[last] != before[last]
    with foreign_app.app_context():
        service = get_service(foreign_app)
        assert service.cipher.decrypt(service.get_sender(foreign).password).reveal() == (
            FOREIGN_PASSWORD)
    with rotating.app_context():
        service = get_service(rotating)
        assert [service.password_readable(s) for s in service.list_senders()] == [
            True, False, True]


def test_rotate_keys_with_failing_audit_hook_exits_2_and_changes_nothing(
    make_app, fernet_key
) -> None:
    """Case E4. The audit hook raises: the rotation is rolled back (fail closed), exit 2
    with an error saying nothing was changed."""
    app = make_app()
    create(app, PASSWORDS)
    before = tokens(app)
    failing = make_app(plugins=[FailingAudit()],
                       SMTP_SENDERS_ENCRYPTION_KEYS=[new_key(), fernet_key])

    result = invoke(failing, "rotate-keys")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Error: nothing was changed: the audit hook failed" in result.stderr
    assert "Traceback" not in result.output
    assert tokens(app) == before


def test_rotate_keys_with_database_failure_exits_2_and_changes_nothing(
    make_app, fernet_key
) -> None:
    """Case F1 for rotation: the UPDATE fails in the database; rolled back, exit 2."""
    app = make_app()
    create(app, PASSWORDS)
    before = tokens(app)
    rotating = make_app(SMTP_SENDERS_ENCRYPTION_KEYS=[new_key(), fernet_key])
    with rotating.app_context():
        engine = rotating.extensions["sqlalchemy"].engine

    def fail_updates(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            raise OperationalError(statement, None, Exception("server closed the connection"))

    event.listen(engine, "before_cursor_execute", fail_updates)
    try:
        result = invoke(rotating, "rotate-keys")
    finally:
        event.remove(engine, "before_cursor_execute", fail_updates)
    assert result.exit_code == 2
    assert "Error: nothing was changed: the sender database failed" in result.stderr
    assert result.stdout == ""
    assert tokens(app) == before


class ActorNeedsARequest:
    """A host actor hook that only works inside a web request."""

    @hookimpl
    def smtp_senders_actor(self) -> str:
        raise RuntimeError("Working outside of request context.")


def test_rotate_keys_with_unexpected_error_exits_3_and_changes_nothing(
    make_app, fernet_key
) -> None:
    """A host hook raising for another reason is not mistaken for exit 1 ("done, some
    unreadable"): exit 3, an error line, nothing changed."""
    app = make_app()
    create(app, PASSWORDS)
    before = tokens(app)
    rotating = make_app(plugins=[ActorNeedsARequest()],
                        SMTP_SENDERS_ENCRYPTION_KEYS=[new_key(), fernet_key])
    result = invoke(rotating, "rotate-keys")
    assert result.exit_code == 3
    assert "Error: rotate-keys failed unexpectedly (RuntimeError)" in result.stderr
    assert result.stdout == ""
    assert tokens(app) == before


def test_rotate_keys_emits_one_keys_rotated_event_with_the_counts(
    make_app, fernet_key
) -> None:
    """Case D4 / E3. One run is one KeysRotated event: rotated and unreadable counts, the
    actor, no sender id, and no token or password in it."""
    app = make_app()
    create(app, PASSWORDS[:2])
    create(make_app(SMTP_SENDERS_ENCRYPTION_KEYS=[new_key()]), [FOREIGN_PASSWORD])
    recorder = AuditRecorder()
    rotating = make_app(plugins=[recorder],
                        SMTP_SENDERS_ENCRYPTION_KEYS=[new_key(), fernet_key])

    result = invoke(rotating, "rotate-keys")
    assert result.exit_code == 1
    assert len(recorder.events) == 1
    rotation = recorder.events[0]
    assert isinstance(rotation, KeysRotated)
    assert (rotation.rotated, rotation.unreadable) == (2, 1)
    assert (rotation.actor, rotation.sender_id, rotation.outcome) == (
        "ops-cli", None, "success")
    assert "gAAAAA" not in repr(rotation)
    assert not any(pw in repr(rotation) for pw in [*PASSWORDS, FOREIGN_PASSWORD])


def test_rotate_keys_shows_the_progress_bar_on_stderr_only(make_app, fernet_key) -> None:
    """The bar goes to stderr, so stdout holds only the summary a script can parse."""
    app = make_app()
    create(app, PASSWORDS)
    result = invoke(make_app(SMTP_SENDERS_ENCRYPTION_KEYS=[new_key(), fernet_key]),
                    "rotate-keys")
    assert result.exit_code == 0
    assert "Re-encrypting passwords" in result.stderr
    assert "Re-encrypting" not in result.stdout


# -- progress ------------------------------------------------------------------------


def test_rotation_progress_is_reported_in_batches_and_ends_at_the_total(
    make_app, fernet_key
) -> None:
    """rotate_keys(progress=...) hears increasing counts, in more than one step, ending
    at the number of senders (unreadable ones included, as they were processed)."""
    app = make_app()
    create(app, [f"password-{n}" for n in range(249)])
    create(make_app(SMTP_SENDERS_ENCRYPTION_KEYS=[new_key()]), [FOREIGN_PASSWORD])
    seen: list[int] = []
    rotating = make_app(SMTP_SENDERS_ENCRYPTION_KEYS=[new_key(), fernet_key])
    with rotating.app_context():
        assert get_service(rotating).rotate_keys(progress=seen.append) == (249, 1)
    assert len(seen) >= 3
    assert seen == sorted(set(seen))
    assert 0 < seen[0] < 250
    assert seen[-1] == 250


def test_rotation_progress_of_empty_table_reports_zero(service) -> None:
    """No senders: the one progress call says 0 (a bar can still finish)."""
    seen: list[int] = []
    assert service.rotate_keys(progress=seen.append) == (0, 0)
    assert seen == [0]


def test_rotate_keys_summary_uses_the_singular_for_one_sender(make_app, fernet_key) -> None:
    """The summary reads "Re-encrypted 1 sender", not "1 senders"."""
    create(make_app(), PASSWORDS[:1])
    result = invoke(make_app(SMTP_SENDERS_ENCRYPTION_KEYS=[new_key(), fernet_key]),
                    "rotate-keys")
    assert result.stdout == "Re-encrypted 1 sender under the first key.\n"
