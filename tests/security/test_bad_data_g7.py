"""Case G7: bad data never takes a page down. Unencodable text (a lone surrogate) in any
form or JSON field is a 422 with a field error; a row changed behind the application's back
(SQL UPDATE) marks that sender unusable on the list, its Edit page still opens with the
reasons beside the fields, and the other senders, the API list and ``flask smtp-senders
list`` work as before. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text, update
from werkzeug.datastructures import MultiDict

from flask_smtp_senders import SenderSettings, get_service
from flask_smtp_senders.cli import cli
from flask_smtp_senders.storage.models import SenderRow
from flask_smtp_senders.text_checks import MSG_CONTROL, MSG_UNENCODABLE
from flask_smtp_senders.validation import MSG_PORT, validate_password, validate_recipient
from flask_smtp_senders.web.forms import SenderForm, TestEmailForm
from tests.support.hosts import LoopbackAdmin
from tests.support.pages import csrf, errors

PREFIX = "/settings/senders"
API = f"{PREFIX}/api"
TOKEN = {"Authorization": "Bearer script"}
SURROGATE = "\ud800"
FIELDS = ("username", "password", "server_name", "port", "from_name", "from_address",
          "reply_to_name", "reply_to_address")
GOOD = {"username": "alice", "password": "Pa55-word", "server_name": "smtp.example.com",
        "port": "587", "from_name": "Acme", "from_address": "noreply@example.com",
        "reply_to_name": "Help", "reply_to_address": "help@example.com"}



Host = LoopbackAdmin


@pytest.fixture
def app(make_app) -> Flask:
    return make_app(plugins=[Host()], SMTP_SENDERS_TEST_EMAIL_RATE_LIMIT="10000 per minute")


@pytest.fixture
def client(app):
    return app.test_client()


def add(app: Flask, **fields: Any):
    values = {**GOOD, "port": 587, **fields}
    password = values.pop("password")
    with app.app_context():
        return get_service(app).create_sender(SenderSettings(**values), password)


def tamper(app: Flask, sender_id: int, **columns: Any) -> None:
    table = SenderRow.__table__
    with app.app_context(), app.extensions["sqlalchemy"].engine.begin() as connection:
        assert connection.execute(
            update(table).where(table.c.id == sender_id).values(**columns)).rowcount == 1


def tamper_sql(app: Flask, sender_id: int, assignment: str) -> None:
    """A raw SQL UPDATE (what SQLite keeps in an INTEGER column is up to the statement)."""
    with app.app_context(), app.extensions["sqlalchemy"].engine.begin() as connection:
        statement = f"UPDATE smtp_senders SET {assignment} WHERE id = :id"  # noqa: S608
        connection.execute(text(statement), {"id": sender_id})


# -- unencodable text ------------------------------------------------------------------


@pytest.mark.parametrize("field", FIELDS)
def test_a_lone_surrogate_in_any_form_field_is_a_field_error(app, field) -> None:
    """Case G7: werkzeug never hands a lone surrogate to a form (it keeps an invalid
    percent-escape as typed), so the form is given one directly, as another front end
    might: the field gets the error, the others none."""
    data = MultiDict({**GOOD, field: f"x{SURROGATE}"})
    with app.test_request_context(method="POST", data={}):
        form = SenderForm(formdata=data, meta={"csrf": False})
        assert not form.validate()
        assert list(form.errors) == [field]
        assert form.errors[field][0] in (MSG_UNENCODABLE, MSG_PORT)


def test_a_lone_surrogate_in_the_recipient_is_a_field_error(app) -> None:
    with app.test_request_context(method="POST", data={}):
        form = TestEmailForm(formdata=MultiDict({"recipient": f"a{SURROGATE}@example.com"}),
                             meta={"csrf": False})
        assert not form.validate() and form.errors == {"recipient": [MSG_UNENCODABLE]}
    with pytest.raises(Exception, match="cannot be encoded"):
        validate_recipient(SURROGATE)
    with pytest.raises(Exception, match="cannot be encoded"):
        validate_password(f"p{SURROGATE}")


@pytest.mark.parametrize("field", FIELDS)
def test_invalid_utf8_posted_in_any_form_field_is_no_500(client, field) -> None:
    """Invalid UTF-8 bytes (what a lone surrogate becomes on the wire) in a multipart and
    a urlencoded post: a page, never a 500."""
    page = client.get(f"{PREFIX}/new/email/custom")
    token = csrf(page.data)
    parts = b"".join(
        b'--B\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n'
        + (b"x\xed\xa0\x80\xff" if name == field else value.encode()) + b"\r\n"
        for name, value in {"csrf_token": token, **GOOD}.items())
    answer = client.post(f"{PREFIX}/new/email/custom", data=parts + b"--B--\r\n",
                         content_type="multipart/form-data; boundary=B")
    assert answer.status_code in (200, 302, 422)
    body = "&".join(f"{name}={value}" for name, value in {"csrf_token": token, **GOOD,
                                                           field: "x%ED%A0%80"}.items())
    answer = client.post(f"{PREFIX}/new/email/custom", data=body.encode(),
                         content_type="application/x-www-form-urlencoded")
    assert answer.status_code in (200, 302, 422)


def surrogate_json(body: dict[str, Any]) -> bytes:
    """JSON text holding ``\\ud800`` escapes, which Python's json reads as lone surrogates."""
    return json.dumps(body).encode()


@pytest.mark.parametrize("field", FIELDS)
def test_a_lone_surrogate_in_any_json_field_is_a_422(app, client, field) -> None:
    """Case G7: API create and PATCH answer 422 naming the field, never 500; nothing
    saved or changed."""
    body = {**GOOD, "port": 587, field: f"x{SURROGATE}"}
    created = client.post(f"{API}/senders", data=surrogate_json(body),
                          content_type="application/json", headers=TOKEN)
    assert created.status_code == 422, created.get_data(as_text=True)
    assert field in created.json["errors"]
    sender = add(app)
    read = client.get(f"{API}/senders/{sender.id}", headers=TOKEN)
    patch = {"password": "Pa55-word", field: f"x{SURROGATE}"}
    patched = client.patch(f"{API}/senders/{sender.id}", data=surrogate_json(patch),
                           content_type="application/json",
                           headers={**TOKEN, "If-Match": read.headers["ETag"]})
    assert patched.status_code == 422 and field in patched.json["errors"]
    with app.app_context():
        assert [s.version for s in get_service(app).list_senders()] == [1]


@pytest.mark.parametrize("action", ["test", "check"])
def test_a_lone_surrogate_in_the_api_recipient_is_a_422(app, client, action) -> None:
    sender = add(app)
    answer = client.post(f"{API}/senders/{sender.id}/{action}",
                         data=surrogate_json({"recipient": f"a{SURROGATE}@example.com"}),
                         content_type="application/json", headers=TOKEN)
    assert answer.status_code == 422
    assert answer.json["errors"] == {"recipient": MSG_UNENCODABLE}
    unknown = client.post(f"{API}/senders/{sender.id}/{action}",
                          data=surrogate_json({SURROGATE: "x"}),
                          content_type="application/json", headers=TOKEN)
    assert unknown.status_code == 422


# -- rows changed behind the application's back ------------------------------------------


TAMPERED = [
    pytest.param({"port": 0}, "port", MSG_PORT, id="port-0"),
    pytest.param({"port": 70000}, "port", MSG_PORT, id="port-70000"),
    pytest.param({"port": -1}, "port", MSG_PORT, id="port-negative"),
    pytest.param({"from_name": "Acme\r\nBcc: victim@evil.example"}, "from_name",
                 MSG_CONTROL, id="crlf-from-name"),
    pytest.param({"reply_to_name": "Help\x07"}, "reply_to_name", MSG_CONTROL,
                 id="control-reply-to-name"),
    pytest.param({"from_address": "not an address"}, "from_address", None,
                 id="invalid-from-address"),
    pytest.param({"reply_to_address": "a@b@c"}, "reply_to_address", None,
                 id="invalid-reply-to-address"),
    pytest.param({"server_name": "smtp://host"}, "server_name", None, id="server-name"),
    pytest.param({"username": ""}, "username", None, id="no-username"),
]


def check_everything_shows(app: Flask, client, bad_id: int, good_id: int, field: str,
                           reason: str | None) -> None:
    listing = client.get(f"{PREFIX}/")
    assert listing.status_code == 200
    html = listing.get_data(as_text=True)
    rows = html.split("<tr")[2:]  # the header row first
    assert len(rows) == 2
    bad_row = next(row for row in rows if f"/{bad_id}\"" in row)
    good_row = next(row for row in rows if f"/{good_id}\"" in row)
    assert 'data-unusable="true"' in bad_row and "Unusable" in bad_row
    assert "Unusable" not in good_row and "smtp.example.com" in good_row
    edit = client.get(f"{PREFIX}/{bad_id}")
    assert edit.status_code == 200
    shown = errors(edit.data)
    assert field in shown and (reason is None or shown[field] == reason)
    api = client.get(f"{API}/senders", headers=TOKEN)
    assert api.status_code == 200 and len(api.json["senders"]) == 2
    assert client.get(f"{API}/senders/{bad_id}", headers=TOKEN).status_code == 200
    runner = app.test_cli_runner()
    for args in (["list"], ["list", "--json"], ["show", str(bad_id)]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output
    with app.app_context():
        sender = get_service(app).get_sender(bad_id)
        assert not sender.usable and field in sender.problems
        assert get_service(app).get_sender(good_id).usable


@pytest.mark.parametrize(("columns", "field", "reason"), TAMPERED)
def test_a_tampered_row_is_marked_unusable_and_nothing_breaks(app, client, columns, field,
                                                              reason) -> None:
    """Case G7: the list shows the bad sender with a clear label beside the good one; its
    Edit page opens with the reason beside the field; the API list and read, and the CLI's
    list and show, answer."""
    bad = add(app)
    good = add(app, from_address="other@example.com")
    tamper(app, bad.id, **columns)
    check_everything_shows(app, client, bad.id, good.id, field, reason)


@pytest.mark.sqlite_only  # PostgreSQL refuses a value of the wrong type itself
@pytest.mark.parametrize("assignment", ["port = 'abc'", "port = 1.5", "from_name = X'410d0a42'"])
def test_sqlite_keeps_the_wrong_type_and_the_page_still_shows(app, client,
                                                              assignment) -> None:
    """Case G7: SQLite keeps text in an INTEGER column and a BLOB in a text one."""
    bad = add(app)
    good = add(app, from_address="other@example.com")
    tamper_sql(app, bad.id, assignment)
    field = assignment.split(" ")[0]
    check_everything_shows(app, client, bad.id, good.id, field, None)


def test_a_tampered_sender_can_be_fixed_on_its_edit_page(app, client) -> None:
    bad = add(app)
    tamper(app, bad.id, from_name="Acme\r\nX")
    edit = client.get(f"{PREFIX}/{bad.id}")
    version = re.search(rb'name="version" type="hidden" value="([^"]+)"', edit.data)
    saved = client.post(f"{PREFIX}/{bad.id}", data={
        **GOOD, "port": "587", "csrf_token": csrf(edit.data),
        "version": version.group(1).decode()})
    assert saved.status_code == 302
    with app.app_context():
        assert get_service(app).get_sender(bad.id).usable
