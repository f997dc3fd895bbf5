"""Security cases D: the password at rest, the encryption key, and passwords no key reads;
and (A7) values at the length limits, stored exactly by both databases.

The storage tests run on SQLite and on PostgreSQL (the ``database`` fixture), through the
pages, and read what the database really holds with a connection of their own.
"""

from __future__ import annotations

import base64
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from markupsafe import escape
from sqlalchemy import text

from flask_smtp_senders import ConfigurationError, SMTPSenders, get_service
from tests.support.cases import (
    CASE_CONFIG,
    PREFIX,
    RECIPIENT,
    Host,
    create_via_form,
    edit_via_form,
    errors,
    msg,
    outcome,
    routed_host,
    snapshot,
    stored_password,
    token_of,
)
from tests.support.smtp_servers import SERVER_NAME
from tests.support.tokens import flip_bit

FIRST_PASSWORD = "First-At-Rest-Pa55-ü€"
SECOND_PASSWORD = "Second-At-Rest-Pa55-漢字"
ROOT = Path(__file__).resolve().parent.parent.parent
REENTER_MARK = b"Password must be re-entered"


@pytest.fixture
def host() -> Host:
    return routed_host()


@pytest.fixture
def app(make_app, host):
    return make_app(plugins=[host], **CASE_CONFIG)


@pytest.fixture
def client(app):
    return app.test_client()


def raw_rows(database) -> list[dict[str, object]]:
    """Every row of the sender table, read with a driver connection of our own."""
    if database.kind == "sqlite":
        with sqlite3.connect(database.url.removeprefix("sqlite:///")) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute("SELECT * FROM smtp_senders ORDER BY id")]
    with database.raw_connect() as conn:
        cursor = conn.execute("SELECT * FROM smtp_senders ORDER BY id")
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def sqlite_files(database) -> dict[str, bytes]:
    """The SQLite database file and any journal or WAL beside it, byte for byte."""
    path = Path(database.url.removeprefix("sqlite:///"))
    return {candidate.name: candidate.read_bytes()
            for candidate in (path, Path(f"{path}-journal"), Path(f"{path}-wal"))
            if candidate.exists()}


def encodings(value: str) -> list[bytes]:
    return [value.encode("utf-8"), value.encode("utf-16-le"), value.encode("utf-16-be")]


def set_token(app: Flask, sender_id: int, token: str) -> None:
    """Overwrite a stored token behind the package's back (tampering, corruption)."""
    with app.app_context(), app.extensions["sqlalchemy"].engine.begin() as conn:
        conn.execute(text("UPDATE smtp_senders SET password_token = :token WHERE id = :id"),
                     {"token": token, "id": sender_id})


# -- D1: what the database holds ---------------------------------------------------------------


def test_database_holds_only_a_fernet_token_never_the_password(app, client, database,
                                                               fernet_key):
    """Case D1: after a create and an edit through the pages, no column and (SQLite) no
    byte of the database file, journal or WAL holds either password in UTF-8 or UTF-16;
    the password column holds a Fernet token that the key decrypts to the latest one."""
    created = create_via_form(client, password=FIRST_PASSWORD)
    sender_id = int(created.location.rsplit("/", 1)[1])
    assert edit_via_form(client, sender_id, password=SECOND_PASSWORD).status_code == 302

    [row] = raw_rows(database)
    token = str(row["password_token"])
    assert re.fullmatch(r"gAAAAA[A-Za-z0-9_\-]+=*", token), token
    assert Fernet(fernet_key).decrypt(token.encode()) == SECOND_PASSWORD.encode()
    for column, value in row.items():
        for password in (FIRST_PASSWORD, SECOND_PASSWORD):
            assert password not in str(value), column
    if database.kind == "sqlite":
        files = sqlite_files(database)
        assert token.encode() in files["senders.db"]  # reading the right file
        for name, data in files.items():
            for password in (FIRST_PASSWORD, SECOND_PASSWORD):
                for encoded in encodings(password):
                    assert encoded not in data, (name, password)


# -- A7: the longest values, stored exactly -----------------------------------------------


def test_values_at_the_length_limits_are_stored_exactly_one_more_is_refused(app, client):
    """Cases A7, A3: the longest accepted values (multi-byte characters included) are
    stored exactly on both databases; one character more is a field error."""
    at_limit = {"username": "ü" * 254, "from_name": "é" * 200, "reply_to_name": "𝔸" * 200,
                "server_name": ".".join(["a" * 63] * 3 + ["b" * 61]),
                "password": "p" * 1024}
    answer = create_via_form(client, **at_limit)
    assert answer.status_code == 302, errors(answer.data)
    with app.app_context():
        service = get_service(app)
        [sender] = service.list_senders()
        for name, value in at_limit.items():
            stored = (service.cipher.decrypt(sender.password).reveal() if name == "password"
                      else getattr(sender.settings, name))
            assert stored == value, name
    for name, value in at_limit.items():
        answer = create_via_form(client, **{name: value + value[0]})
        assert answer.status_code == 422, name
        assert set(errors(answer.data)) == {name}, name
    assert len(snapshot(app)) == 1


# -- D2: the key setting ---------------------------------------------------------------------

ABSENT = object()
GOOD_KEY = Fernet.generate_key().decode()


@pytest.mark.parametrize("keys", [
    ABSENT, None, "", "   ", [], [""], ",", "not-a-key",
    base64.urlsafe_b64encode(b"k" * 16).decode(), [GOOD_KEY, "not-a-key"],
    [None], [GOOD_KEY, None],
], ids=["absent", "none", "empty", "blank", "empty-list", "list-of-empty", "comma",
        "not-a-key", "16-byte-key", "good-then-bad", "list-of-none-unset-env-var",
        "good-then-none"])
def test_missing_or_malformed_key_fails_at_init_app_naming_the_setting(tmp_path, keys):
    """Case D2: a missing or malformed SMTP_SENDERS_ENCRYPTION_KEYS (including a list
    holding None, as ``[os.environ.get("KEY")]`` gives when the variable is unset) stops
    init_app with a ConfigurationError naming the setting, before any page exists;
    never later, at the first send."""
    app = Flask("d2")
    app.config.update(SECRET_KEY="s", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'd2.db'}")
    if keys is not ABSENT:
        app.config["SMTP_SENDERS_ENCRYPTION_KEYS"] = keys
    db = SQLAlchemy(app)
    try:
        with pytest.raises(ConfigurationError) as raised:
            SMTPSenders(app, db=db)
    finally:
        with app.app_context():
            db.engine.dispose()
    assert "SMTP_SENDERS_ENCRYPTION_KEYS" in str(raised.value)
    assert GOOD_KEY not in str(raised.value)
    assert "smtp_senders" not in app.extensions and "smtp_senders" not in app.blueprints


# -- D3: passwords no key can read --------------------------------------------------------------


def test_unreadable_passwords_mark_only_their_sender_and_nothing_fails(
        make_app, app, client, host, smtp_server):
    """Case D3: tokens under an unknown key, bit-flipped or truncated: the list and edit
    pages still answer
    (no 500) and mark exactly those senders "re-enter the password"; their test email
    answers the re-entry message without connecting anywhere; the other sender still
    sends; re-entering the password makes a sender readable again."""
    server = smtp_server("implicit", users={"alice": FIRST_PASSWORD})
    fields = {"server_name": SERVER_NAME, "port": str(server.port), "password": FIRST_PASSWORD}
    ids = {name: int(create_via_form(client, **fields).location.rsplit("/", 1)[1])
           for name in ("good", "unknown key", "bit flip", "truncated")}
    foreign = Fernet(Fernet.generate_key()).encrypt(FIRST_PASSWORD.encode()).decode()
    token = {row[0]: row[3].decode() for row in snapshot(app)}
    set_token(app, ids["unknown key"], foreign)
    set_token(app, ids["bit flip"], flip_bit(token[ids["bit flip"]].encode(), 40).decode())
    set_token(app, ids["truncated"], token[ids["truncated"]][:-10])
    unreadable = [sender_id for name, sender_id in ids.items() if name != "good"]

    listing = client.get(f"{PREFIX}/")
    assert listing.status_code == 200
    assert listing.data.count(REENTER_MARK) == len(unreadable)
    reentry = str(escape(msg("password_reentry"))).encode()
    for name, sender_id in ids.items():
        page = client.get(f"{PREFIX}/{sender_id}")
        assert page.status_code == 200, name
        assert (reentry in page.data) is (name != "good"), name
        answer = client.post(f"{PREFIX}/{sender_id}/test", headers={"Accept": "application/json"},
                             data={"csrf_token": token_of(client), "recipient": RECIPIENT})
        expected = ({"ok": True, "message": msg("test_success", recipient=RECIPIENT)}
                    if name == "good" else {"ok": False, "message": msg("password_reentry")})
        assert (answer.status_code, outcome(answer)) == (200, expected), name
    assert server.connections == 1 and len(server.messages) == 1

    wrong_key_app = make_app(plugins=[host], SMTP_SENDERS_ENCRYPTION_KEYS=[GOOD_KEY])
    wrong_key_listing = wrong_key_app.test_client().get(f"{PREFIX}/")
    assert wrong_key_listing.status_code == 200
    assert wrong_key_listing.data.count(REENTER_MARK) == len(ids)

    for sender_id in unreadable:
        assert edit_via_form(client, sender_id, password=SECOND_PASSWORD).status_code == 302
        assert stored_password(app, sender_id) == SECOND_PASSWORD
    assert REENTER_MARK not in client.get(f"{PREFIX}/").data


def test_stored_token_with_a_flipped_high_bit_marks_only_that_sender(app, client):
    """Case D3: a bit flipped at rest in the stored text (one character's high bit, which
    makes it non-ASCII): the list and edit pages still answer and mark only that sender;
    the other sender is listed as usual."""
    good = int(create_via_form(client, password=FIRST_PASSWORD).location.rsplit("/", 1)[1])
    bad = int(create_via_form(client, password=FIRST_PASSWORD).location.rsplit("/", 1)[1])
    token = {row[0]: row[3].decode() for row in snapshot(app)}[bad]
    set_token(app, bad, token[:20] + chr(ord(token[20]) ^ 0x80) + token[21:])

    listing = client.get(f"{PREFIX}/")
    assert listing.status_code == 200
    assert listing.data.count(REENTER_MARK) == 1
    assert client.get(f"{PREFIX}/{bad}").status_code == 200
    assert REENTER_MARK not in client.get(f"{PREFIX}/{good}").data


# -- D6: the key lives neither in the database nor in the repository ---------------------------


def test_encryption_key_is_in_no_column_and_no_byte_of_the_database(app, client, database,
                                                                    fernet_key):
    """Case D6: after saving senders, no column of any row holds the key (text or its 32
    raw bytes) and, on SQLite, no byte of the database file does."""
    for n in range(2):
        assert create_via_form(client, password=f"{FIRST_PASSWORD}{n}").status_code == 302
    raw_key = base64.urlsafe_b64decode(fernet_key)
    rows = raw_rows(database)
    assert len(rows) == 2
    for row in rows:
        for column, value in row.items():
            assert fernet_key not in str(value), column
            assert raw_key not in (value if isinstance(value, bytes) else str(value).encode())
    if database.kind == "sqlite":
        for name, data in sqlite_files(database).items():
            assert fernet_key.encode() not in data and raw_key not in data, name
    else:
        with database.raw_connect() as conn:
            tables = sorted(name for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (database.schema,)))
            versions = [str(row) for row in conn.execute(
                "SELECT * FROM smtp_senders_alembic_version")]
        # the package keeps nothing elsewhere: the senders, the access-token cache (empty:
        # these senders have passwords) and the schema's revision
        assert tables == ["smtp_sender_tokens", "smtp_senders", "smtp_senders_alembic_version"]
        with database.raw_connect() as conn:
            assert conn.execute("SELECT count(*) FROM smtp_sender_tokens").fetchone() == (0,)
        assert len(versions) == 1 and fernet_key not in versions[0]


#: 32 url-safe base64 bytes as Fernet keys are written: 43 characters and one "=".
KEY_PATTERN = re.compile(rb"(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]{43}=(?![A-Za-z0-9_\-=])")


def test_no_file_of_the_repository_holds_a_fernet_key():
    """Case D6: no file git tracks, nor any new file it would commit (untracked and not
    ignored), holds a string Fernet accepts as a key. Nothing is skipped: binary files are
    scanned too, and a tracked file missing from the working tree is read from the index.
    Outside a git checkout (an unpacked sdist) every file of the tree is scanned."""
    names = _shipped_files()
    assert "flask_smtp_senders/crypto.py" in names  # we are listing the right tree
    found = []
    for name in names:
        path = ROOT / name
        data = path.read_bytes() if path.is_file() else subprocess.run(  # noqa: S603
            ["git", "-C", str(ROOT), "cat-file", "blob", f":{name}"],  # noqa: S607
            capture_output=True, check=True).stdout
        for match in KEY_PATTERN.finditer(data):
            try:
                Fernet(match.group())
            except ValueError:
                continue
            found.append((name, match.group()[:8].decode() + "..."))
    assert not found, found


def _shipped_files() -> list[str]:
    """What git would commit; every file but caches and virtualenvs outside git."""
    if (ROOT / ".git").exists():
        listed = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",  # noqa: S607
             "--exclude-standard"], capture_output=True, check=True).stdout
        return sorted({name for name in listed.decode().split("\0") if name})
    skipped = {".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "build", "site"}
    return sorted(str(path.relative_to(ROOT)) for path in ROOT.rglob("*")
                  if path.is_file() and not any(part in skipped or part.endswith(".egg-info")
                                                for part in path.relative_to(ROOT).parts))


def test_keys_can_come_from_a_file_apart_from_config_and_database(tmp_path, make_app):
    """Case D6: a key-file path is supported; a missing file fails at start, naming it."""
    from cryptography.fernet import Fernet

    from flask_smtp_senders import ConfigurationError, SenderSettings

    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"# newest first\n{new}\n\n{old}  # kept until rotate-keys ran\n")
    app = make_app(SMTP_SENDERS_ENCRYPTION_KEYS=None,
                   SMTP_SENDERS_ENCRYPTION_KEYS_FILE=str(key_file))
    with app.app_context():
        service = app.extensions["smtp_senders"]
        sender = service.create_sender(SenderSettings(
            username="u", server_name="smtp.example.com", from_address="a@example.com"), "pw")
        assert Fernet(new.encode()).decrypt(sender.password.token) == b"pw"
    with pytest.raises(ConfigurationError, match="SMTP_SENDERS_ENCRYPTION_KEYS_FILE"):
        make_app(SMTP_SENDERS_ENCRYPTION_KEYS=None,
                 SMTP_SENDERS_ENCRYPTION_KEYS_FILE=str(tmp_path / "missing.txt"))
