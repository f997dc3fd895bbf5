"""Settings > Senders through Flask's test client: the seed's steps, its exact texts, and
bad input that gets a clear message and loses nothing."""

from __future__ import annotations

import pytest

from flask_smtp_senders.settings import DEFAULTS
from tests.support.pages import (
    GOOD,
    PASSWORD,
    PREFIX,
    WARNING,
    Admin,
    create,
    csrf,
    errors,
    form_values,
)
from tests.support.smtp_servers import SERVER_NAME


@pytest.fixture
def admin() -> Admin:
    return Admin()


@pytest.fixture
def app(make_app, admin):
    return make_app(plugins=[admin])


@pytest.fixture
def client(app):
    return app.test_client()


def test_list_starts_empty_with_a_plus_button(client):
    page = client.get(f"{PREFIX}/")
    assert page.status_code == 200
    assert b"<h1>Senders</h1>" in page.data
    assert b'aria-label="Add a sender"' in page.data and b">+</a>" in page.data


def test_plus_step_offers_email_and_custom_server_then_next(client):
    page = client.get(f"{PREFIX}/new")
    assert b"Sender Type" in page.data and b">Email</option>" in page.data
    assert b"Provider Type" in page.data and b">Custom Server</option>" in page.data
    answer = client.post(f"{PREFIX}/new", data={"csrf_token": csrf(page.data),
                                                "sender_type": "email",
                                                "provider_type": "custom"})
    assert answer.status_code == 302
    assert answer.location.endswith(f"{PREFIX}/new/email/custom")


def test_form_has_the_contract_fields_and_port_465_by_default(client):
    page = client.get(f"{PREFIX}/new/email/custom").data
    assert b"Email Sender Custom SMTP Server" in page
    for label in [b"Username", b"Password", b"Server Name", b"Port", b"From Name",
                  b"From Address", b"Reply-To Name", b"Reply-To Address"]:
        assert b">" + label in page
    assert form_values(page)["port"] == "465"
    assert b"Ports 25, 587 and 2525 use SMTP with STARTTLS; any other port uses SMTPS." in page


def test_save_then_warning_then_listed_with_mode_and_status(client, service):
    answer = create(client)
    assert answer.status_code == 302
    edit = client.get(answer.location)
    assert b"The sender was saved." in edit.data
    assert WARNING.encode() in edit.data
    assert b"Send Test Email" in edit.data
    listing = client.get(f"{PREFIX}/").data
    assert b"smtp.example.com" in listing and b"SMTP with STARTTLS" in listing
    assert b"noreply@example.com" in listing and b"Never tested" in listing
    [sender] = service.list_senders()
    assert sender.settings.port == 587


def test_bad_input_keeps_everything_typed_but_the_password(client, service):
    answer = create(client, server_name="smtp://host:25", port="25abc",
                    from_address="alice@example.org(<bob@example.com>", from_name="Ac\r\nme")
    assert answer.status_code == 422
    found = errors(answer.data)
    assert set(found) == {"server_name", "port", "from_address", "from_name"}
    assert "without a scheme, a port or spaces" in found["server_name"]
    values = form_values(answer.data)
    assert values["username"] == "alice" and values["port"] == "25abc"
    assert values["server_name"] == "smtp://host:25"
    assert PASSWORD.encode() not in answer.data
    assert service.list_senders() == []


@pytest.mark.parametrize("port", ["0", "65536", "-1", "1e3"])
def test_port_out_of_range_is_refused(client, service, port):
    answer = create(client, port=port)
    assert errors(answer.data) == {"port": "Enter a port number from 1 to 65535."}
    assert service.list_senders() == []


def test_blank_port_means_465(client, service):
    assert create(client, port="").status_code == 302
    assert service.list_senders()[0].settings.port == 465


@pytest.mark.parametrize("field", ["username", "password", "server_name", "from_address"])
def test_mandatory_fields_are_required(client, service, field):
    answer = create(client, **{field: ""})
    assert errors(answer.data) == {field: "This field is required."}
    assert service.list_senders() == []


def test_oversized_values_get_field_errors_not_a_500(client, service):
    answer = create(client, **{name: "x" * 10_000 for name in GOOD if name != "port"})
    assert answer.status_code == 422
    assert set(errors(answer.data)) >= {"username", "server_name", "from_name", "from_address"}
    assert service.list_senders() == []


def test_edit_never_sends_the_password_back_and_requires_it_again(client, service):
    sender_url = create(client).location
    page = client.get(sender_url)
    assert PASSWORD.encode() not in page.data
    token = service.list_senders()[0].password.token
    assert token not in page.data
    values = form_values(page.data)
    assert values["server_name"] == "smtp.example.com" and values["password"] == ""
    answer = client.post(sender_url, data={**values, "csrf_token": csrf(page.data),
                                           "server_name": "evil.example.net", "password": ""})
    assert answer.status_code == 422
    assert errors(answer.data) == {"password": "This field is required."}
    assert form_values(answer.data)["server_name"] == "evil.example.net"
    assert service.list_senders()[0].settings.server_name == "smtp.example.com"


def test_edit_with_the_password_saves_and_bumps_the_version(client, service):
    sender_url = create(client).location
    page = client.get(sender_url)
    values = form_values(page.data)
    answer = client.post(sender_url, data={**values, "csrf_token": csrf(page.data),
                                           "from_name": "Renamed", "password": "new-pass"})
    assert answer.status_code == 302
    [sender] = service.list_senders()
    assert sender.settings.from_name == "Renamed" and sender.version == 2
    assert service.cipher.decrypt(sender.password).reveal() == "new-pass"


def test_stale_edit_gets_a_conflict_and_keeps_what_was_typed(client, service):
    sender_url = create(client).location
    page = client.get(sender_url)
    stale = {**form_values(page.data), "csrf_token": csrf(page.data), "password": "p1"}
    client.post(sender_url, data={**stale, "from_name": "First admin"})
    answer = client.post(sender_url, data={**stale, "from_name": "Second admin"})
    assert answer.status_code == 200
    assert DEFAULTS["SMTP_SENDERS_MSG_CONFLICT"].encode() in answer.data
    assert form_values(answer.data)["from_name"] == "Second admin"
    assert service.list_senders()[0].settings.from_name == "First admin"
    retry = {**form_values(answer.data), "csrf_token": csrf(answer.data), "password": "p2"}
    assert client.post(sender_url, data=retry).status_code == 302
    assert service.list_senders()[0].settings.from_name == "Second admin"


def test_send_test_email_without_javascript_shows_the_exact_result(client, smtp_server,
                                                                   service):
    server = smtp_server("implicit")
    sender_url = create(client, server_name=SERVER_NAME, port=str(server.port),
                        password="s3cret").location
    page = client.get(sender_url + "?test=1")
    assert b'<dialog id="send-test-email"' in page.data and b" open " in page.data
    assert b">Send to" in page.data
    answer = client.post(sender_url + "/test", data={"csrf_token": csrf(page.data),
                                                     "recipient": "some.body@acme.com"},
                         follow_redirects=True)
    assert b"A test message was successfully sent to some.body@acme.com." in answer.data
    assert len(server.messages) == 1
    assert WARNING.encode() not in answer.data  # a passed test lifts the warning
    assert b"Last test passed" in client.get(f"{PREFIX}/").data


def test_send_test_email_as_json_gives_the_exact_failure_text(client, smtp_server):
    server = smtp_server("implicit")
    sender_url = create(client, server_name=SERVER_NAME, port=str(server.port),
                        password="wrong").location
    page = client.get(sender_url)
    answer = client.post(sender_url + "/test", headers={"Accept": "application/json"},
                         data={"csrf_token": csrf(page.data), "recipient": "a@acme.com"})
    assert answer.status_code == 200
    assert (answer.json["ok"], answer.json["message"]) == (False, (
        "Using the credentials you provided, we couldn't authenticate with your email server."))
    assert answer.json["diagnosis"]["stopped_at"] == "auth"
    assert server.messages == []


@pytest.mark.parametrize("recipient", ["", "a@b.com, c@d.com", "a@b.com\r\nBcc: x@y.com",
                                       "not an address"])
def test_send_test_email_takes_exactly_one_valid_recipient(client, smtp_server, recipient):
    server = smtp_server("implicit")
    sender_url = create(client, server_name=SERVER_NAME, port=str(server.port),
                        password="s3cret").location
    page = client.get(sender_url)
    answer = client.post(sender_url + "/test", headers={"Accept": "application/json"},
                         data={"csrf_token": csrf(page.data), "recipient": recipient})
    assert answer.status_code == 422 and answer.json["ok"] is False
    assert answer.json["field"] == "recipient" and answer.json["message"]
    html = client.post(sender_url + "/test",
                       data={"csrf_token": csrf(page.data), "recipient": recipient})
    assert html.status_code == 422 and "recipient" in errors(html.data)
    assert server.connections == 0


def test_delete_asks_for_confirmation_then_deletes(client, service):
    sender_url = create(client).location
    confirm = client.get(sender_url + "/delete")
    assert b"Delete sender" in confirm.data and service.list_senders()
    answer = client.post(sender_url + "/delete", data={
        "csrf_token": csrf(confirm.data), "version": form_values(confirm.data)["version"]},
        follow_redirects=True)
    assert b"The sender was deleted." in answer.data
    assert service.list_senders() == []


def test_unknown_sender_is_404(client):
    page = client.get(f"{PREFIX}/new/email/custom")
    assert client.get(f"{PREFIX}/999").status_code == 404
    assert client.post(f"{PREFIX}/999/test", data={"csrf_token": csrf(page.data),
                                                   "recipient": "a@b.com"}).status_code == 404
    assert client.post(f"{PREFIX}/999/delete",
                       data={"csrf_token": csrf(page.data)}).status_code == 404


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_every_post_without_a_valid_csrf_token_is_400_and_changes_nothing(client, service,
                                                                          token):
    sender_url = create(client).location
    data = {**GOOD, "recipient": "a@b.com", "version": "1"}
    if token is not None:
        data["csrf_token"] = token
    for url in [f"{PREFIX}/new", f"{PREFIX}/new/email/custom", sender_url,
                sender_url + "/test", sender_url + "/delete"]:
        assert client.post(url, data=data).status_code == 400, url
    [sender] = service.list_senders()
    assert sender.version == 1


@pytest.mark.parametrize("answer", [None, False])
def test_every_route_is_403_without_an_authorising_answer(client, admin, service, answer):
    sender_url = create(client).location
    page = client.get(sender_url)
    admin.allow = answer
    data = {**GOOD, "csrf_token": csrf(page.data), "recipient": "a@b.com", "version": "1"}
    for url in [f"{PREFIX}/", f"{PREFIX}/new", f"{PREFIX}/new/email/custom", sender_url,
                sender_url + "/delete", f"{PREFIX}/static/senders.css"]:
        assert client.get(url).status_code == 403, url
    for url in [f"{PREFIX}/new/email/custom", sender_url, sender_url + "/test",
                sender_url + "/delete", sender_url + "/default"]:
        assert client.post(url, data=data).status_code == 403, url
    assert len(service.list_senders()) == 1


def test_host_layout_wraps_the_pages(make_app, admin, tmp_path):
    app = make_app(plugins=[admin], SMTP_SENDERS_BASE_TEMPLATE="host_layout.html")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "host_layout.html").write_text(
        "<html><head>{% block head %}{% endblock %}</head><body><nav>HOST MENU</nav>"
        "{% block content %}{% endblock %}</body></html>")
    app.template_folder = str(tmp_path / "templates")
    page = app.test_client().get(f"{PREFIX}/")
    assert b"HOST MENU" in page.data and b"<h1>Senders</h1>" in page.data
    assert b"senders.css" in page.data


def test_host_overrides_one_page_by_shipping_the_same_template_name(make_app, admin, tmp_path):
    folder = tmp_path / "templates" / "smtp_senders"
    folder.mkdir(parents=True)
    (folder / "index.html").write_text(
        '{% extends "smtp_senders/base.html" %}'
        "{% block senders_content %}<h1>Our own list</h1>{{ senders|length }}{% endblock %}")
    app = make_app(plugins=[admin])
    app.template_folder = str(tmp_path / "templates")
    client = app.test_client()
    listing = client.get(f"{PREFIX}/")
    assert b"<h1>Our own list</h1>0" in listing.data
    assert b"Email Sender Custom SMTP Server" in client.get(f"{PREFIX}/new/email/custom").data


def test_list_shows_the_default_and_make_default_changes_it(client, service):
    create(client)
    create(client, server_name="smtp2.example.com")
    listing = client.get(f"{PREFIX}/")
    assert listing.data.count(b">Default</span>") == 1
    assert b"Make default" in listing.data
    second = service.list_senders()[1]
    answer = client.post(f"{PREFIX}/{second.id}/default",
                         data={"csrf_token": csrf(listing.data)}, follow_redirects=True)
    assert b"The default sender was changed." in answer.data
    assert service.default_sender().id == second.id
    assert client.post(f"{PREFIX}/{second.id}/default", data={}).status_code == 400


def test_a_metadata_server_name_is_a_field_error_on_the_page_not_a_500(client, service):
    """Case G4 on the page: the service refuses a cloud metadata Server Name; the form
    comes back (422) with the reason beside Server Name and everything typed but the
    password, as the API answers 422 naming the field."""
    answer = create(client, server_name="metadata.google.internal")
    assert answer.status_code == 422
    assert errors(answer.data) == {
        "server_name": DEFAULTS["SMTP_SENDERS_MSG_DESTINATION_REFUSED"]}
    values = form_values(answer.data)
    assert (values["server_name"], values["username"]) == ("metadata.google.internal",
                                                           "alice")
    assert PASSWORD.encode() not in answer.data
    assert service.list_senders() == []


def test_a_sender_deleted_before_its_test_runs_is_a_404_not_a_500(client, service,
                                                                    smtp_server):
    """The test form of a sender someone else deleted meanwhile: not found, nothing sent."""
    server = smtp_server("implicit")
    sender_url = create(client, server_name=SERVER_NAME, port=str(server.port)).location
    page = client.get(sender_url)
    sender = service.list_senders()[0]
    service.delete_sender(sender.id)
    for path in ("/test", "/check"):
        answer = client.post(sender_url + path, headers={"Accept": "application/json"},
                             data={"csrf_token": csrf(page.data), "recipient": "a@acme.com"})
        assert answer.status_code == 404, path
    assert server.connections == 0
