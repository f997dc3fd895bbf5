"""Arbitrary text in every field of every Senders form, with a valid CSRF token (hypothesis).

Each test builds its app once (function-scoped fixtures, hence the suppressed health check)
and reuses it for every example, so each example checks its own before/after state. What
is fuzzed: control characters (CR, LF, NUL, NEL, LS, PS...), RFC 2047 encoded words
that hide them (Case G1), every code point but surrogates (astral ones included; lone
surrogates are tests/security/test_bad_data_g7.py's), values up to 20 KB, empty values and
missing fields. The answer must never be a 5xx; a refusal (4xx) must leave everything as it
was; a success must have stored exactly what validation made of the input. SQLite only: the
database plays no part in what is checked.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flask_smtp_senders import InvalidSenderData, SenderSettings, get_service
from flask_smtp_senders.services.public import sender_tag
from flask_smtp_senders.validation import SETTING_NAMES, validate_recipient, validate_settings
from tests.support.cases import (
    CASE_CONFIG,
    PREFIX,
    RECIPIENT,
    Host,
    msg,
    outcome,
    snapshot,
    stored_password,
    token_of,
)
from tests.support.smtp_servers import LOOPBACK, SERVER_NAME

pytestmark = pytest.mark.sqlite_only

FUZZ_SETTINGS = settings(max_examples=60, deadline=None, database=None, print_blob=True,
                         suppress_health_check=[HealthCheck.function_scoped_fixture])

CONTROL = st.sampled_from(["\r", "\n", "\r\n", "\x00", "\t", "\x0b", "\x0c", "\x1b", "\x7f",
                           "\x85", "\u2028", "\u2029", "\ufeff", "\u200b", "\u202e",
                           # Case G1: encoded words hiding a line break, q and b
                           "=?utf-8?q?=0D=0ABcc:_x@evil.example?=", "=?utf-8?b?DQpCY2M6IHg=?=",
                           "=?utf-8?q?caf=C3=A9?="])
CHARS = st.characters(codec="utf-8")  # every code point but the surrogates
#: Up to 20 KB of UTF-8: one character repeated.
HUGE = st.builds(lambda char, size: char * max(1, size // len(char.encode("utf-8"))),
                 CHARS, st.integers(256, 20_480))
DIGITS = st.one_of(st.integers(-10, 10**30).map(str), st.builds(lambda n: "9" * n,
                                                                 st.integers(1, 20_000)),
                   st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=6))


def text_like(valid: list[str]) -> st.SearchStrategy[str]:
    """Valid values, pieces of them mixed with arbitrary text and control characters,
    digits of every script, huge values and the empty string."""
    pieces = st.one_of(st.text(CHARS, max_size=30), CONTROL, st.sampled_from(valid))
    return st.one_of(st.sampled_from(valid), st.lists(pieces, max_size=5).map("".join),
                     HUGE, DIGITS, st.just(""))


VALID = {
    "username": ["alice", "mailer@example.com"],
    "password": ["Fuzz-Pa55", "p#;'\"\\ ünï 🔑"],
    "server_name": ["smtp.example.com", "mail.bücher.example", "127.0.0.1"],
    "port": ["587", "465", "", "2525"],
    "from_name": ["", "Acme", "Chère équipe", "=?utf-8?q?Acme=0D=0ABcc:_x@evil.example?="],
    "from_address": ["noreply@example.com", "noreply@bücher.example"],
    "reply_to_name": ["", "Support"],
    "reply_to_address": ["", "help@example.com"],
}
FIELDS = list(VALID)
#: field -> posted value; None leaves the field out of the request.
FUZZED = st.dictionaries(st.sampled_from(FIELDS),
                         st.one_of(st.none(), *[text_like(VALID[f]) for f in FIELDS]),
                         max_size=len(FIELDS))


@pytest.fixture
def app(make_app, closed_port):
    """Server Name leads to LOOPBACK, where the fuzz senders' port is closed: test emails
    fail at once instead of waiting on a server."""
    host = Host()
    host.routes = {SERVER_NAME: [LOOPBACK]}
    return make_app(plugins=[host], **CASE_CONFIG)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def token(client) -> str:
    return token_of(client)


def posted(fuzzed: dict[str, str | None]) -> dict[str, str]:
    """The form as sent: valid values, replaced (or left out) as ``fuzzed`` says."""
    form = {name: values[0] for name, values in VALID.items()}
    for name, value in fuzzed.items():
        if value is None:
            form.pop(name)
        else:
            form[name] = value
    return form


def validated(form: dict[str, str]) -> SenderSettings:
    """What validation makes of the posted form (a missing Port takes its default)."""
    return validate_settings(**{name: form.get(name, "465" if name == "port" else "")
                                for name in SETTING_NAMES})


def one_sender(app, closed_port: int) -> int:
    """The id of the sender the edit, delete and test forms work on (created if gone)."""
    with app.app_context():
        service = get_service(app)
        senders = service.list_senders()
        if senders:
            return senders[0].id
        return service.create_sender(SenderSettings(
            username="alice", server_name=SERVER_NAME, port=closed_port,
            from_address="noreply@example.com"), "Fuzz-Pa55").id


def tag_of(app, sender_id: int) -> str:
    """The sender's tag, as its edit and delete pages put it in the version field."""
    with app.app_context():
        return sender_tag(get_service(app).get_sender(sender_id))


def assert_unchanged_on_refusal(app, before, answer) -> None:
    assert answer.status_code < 500, answer.status_code
    if 400 <= answer.status_code < 500:
        assert snapshot(app) == before


@FUZZ_SETTINGS
@given(fuzzed=FUZZED)
@example(fuzzed={"port": "9" * 10_240})
@example(fuzzed={"from_name": "Acme\u2028Bcc: victim@example.net"})
def test_arbitrary_text_in_the_create_form_never_500s_and_saves_only_validated_values(
        app, client, token, fuzzed):
    """Cases A1, A7: create with arbitrary text in any field: never a 5xx; a refusal
    saves nothing; a save stores exactly the validated values and the password as typed."""
    form = posted(fuzzed)
    before = snapshot(app)
    answer = client.post(f"{PREFIX}/new/email/custom", data={"csrf_token": token, **form})
    assert answer.status_code == 302 or 400 <= answer.status_code < 500, answer.status_code
    assert_unchanged_on_refusal(app, before, answer)
    if answer.status_code == 302:
        [new] = [row for row in snapshot(app) if row not in before]
        assert new[2] == validated(form)
        assert stored_password(app, new[0]) == form["password"]
        with app.app_context():
            get_service(app).delete_sender(new[0])  # keep the table small for the next one


@FUZZ_SETTINGS
@given(fuzzed=FUZZED, version=st.one_of(st.sampled_from(["current", "stale"]), DIGITS,
                                        text_like(["1"])))
@example(fuzzed={}, version="9" * 4301)  # the shortest digit string int() refuses
@example(fuzzed={"username": "x" * 20_000}, version="current")
def test_arbitrary_text_in_the_edit_form_never_500s_and_saves_only_validated_values(
        app, client, token, closed_port, fuzzed, version):
    """Cases A1, A7: edit with arbitrary text in any field and in the hidden version:
    never a 5xx; a refusal or a conflict changes nothing; a save stores exactly the
    validated values and moves the version on by one."""
    sender_id = one_sender(app, closed_port)
    before = snapshot(app)
    current = before[0][1]
    form = posted(fuzzed)
    tag = tag_of(app, sender_id)  # "<version>.<mark>", as the page has it
    form["version"] = {"current": tag, "stale": tag.replace(f"{current}.", f"{current - 1}.", 1),
                       }.get(version, version)
    answer = client.post(f"{PREFIX}/{sender_id}", data={"csrf_token": token, **form})
    assert answer.status_code in (200, 302) or 400 <= answer.status_code < 500, (
        answer.status_code)
    assert_unchanged_on_refusal(app, before, answer)
    if answer.status_code == 200:  # the conflict page
        assert snapshot(app) == before
    if answer.status_code == 302:
        [after] = snapshot(app)
        assert (after[0], after[1], after[2]) == (sender_id, current + 1, validated(form))
        assert stored_password(app, sender_id) == form["password"]


@FUZZ_SETTINGS
@given(version=st.one_of(st.sampled_from(["current", "stale"]), DIGITS, text_like(["1"]),
                         st.none()))
@example(version="²")
@example(version="9" * 19)  # past SQLite's 64-bit INTEGER
@example(version="9" * 4301)  # the shortest digit string int() refuses
def test_arbitrary_version_in_the_delete_form_never_500s(app, client, token, closed_port,
                                                         version):
    """Cases A1, A7: the delete form with any hidden version (or none): never a 5xx; it
    deletes only for the current version or no usable one, else nothing changes."""
    sender_id = one_sender(app, closed_port)
    before = snapshot(app)
    tag = tag_of(app, sender_id)
    number, _, mark = tag.partition(".")
    sent = {"current": tag, "stale": f"{int(number) + 1}.{mark}"}.get(version, version)
    data = {"csrf_token": token} if sent is None else {"csrf_token": token, "version": sent}
    answer = client.post(f"{PREFIX}/{sender_id}/delete", data=data)
    assert answer.status_code == 302 or 400 <= answer.status_code < 500, answer.status_code
    assert_unchanged_on_refusal(app, before, answer)
    if answer.status_code == 302 and answer.location.endswith(f"{PREFIX}/"):
        assert snapshot(app) == [] and sent == tag  # deleted: only with the page's tag
    else:
        assert snapshot(app) == before


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "page"])
@FUZZ_SETTINGS
@given(recipient=st.one_of(text_like([RECIPIENT, "to@漢字.example.com", "a@b.co"]),
                           st.none()))
@example(recipient="a@example.com, b@example.com")
@example(recipient="a" * 20_000 + "@example.com")
def test_arbitrary_recipient_in_the_test_email_form_never_500s(app, client, token,
                                                                closed_port, as_json,
                                                                recipient):
    """Cases A1, A7: Send to with arbitrary text, as JSON and as a page: never a 5xx; a
    refusal names the field and sends nothing; only a valid address is tried (here it
    meets a closed port); the sender's settings never change."""
    sender_id = one_sender(app, closed_port)
    before = snapshot(app)
    data = {"csrf_token": token} if recipient is None else {"csrf_token": token,
                                                           "recipient": recipient}
    answer = client.post(f"{PREFIX}/{sender_id}/test", data=data,
                         headers={"Accept": "application/json"} if as_json else {})
    assert answer.status_code in (200, 302, 422), answer.status_code
    assert snapshot(app) == before
    try:
        validate_recipient(recipient or "")
        valid = True
    except InvalidSenderData:
        valid = False
    assert (answer.status_code != 422) is valid, (recipient, answer.status_code)
    if as_json and valid:
        assert outcome(answer) == {"ok": False, "message": msg("connect_failed")}
    elif as_json:
        assert answer.json["ok"] is False and answer.json["field"] == "recipient"


@FUZZ_SETTINGS
@given(sender_type=st.one_of(text_like(["email"]), st.none()),
       provider_type=st.one_of(text_like(["custom"]), st.none()))
def test_arbitrary_choices_in_the_plus_step_never_500_and_save_nothing(app, client, token,
                                                                       sender_type,
                                                                       provider_type):
    """Cases A1, A7: the + step with any Sender Type and Provider Type: never a 5xx; only
    Email and Custom Server lead on to the form; nothing is ever stored."""
    data = {"csrf_token": token, "sender_type": sender_type, "provider_type": provider_type}
    answer = client.post(f"{PREFIX}/new", data={k: v for k, v in data.items() if v is not None})
    assert answer.status_code in (200, 302), answer.status_code
    assert (answer.status_code == 302) is (sender_type == "email" and provider_type == "custom")
    assert snapshot(app) == []
