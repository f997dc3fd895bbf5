"""The "+" step's other Provider Types through Flask's test client: Microsoft 365, Google
Workspace and Custom Server with OAuth2, each with its own form, presets, errors beside
its fields, a secret that never comes back, and an edit page that keeps its provider.

Why: the Custom Server form is the contract and stays as it is (tests/web/test_pages.py);
these forms are new ground, and what makes them trustworthy is the same as for it: every
bad field is told beside itself, nothing typed is lost but the secret, and the secret is
never in a page.
"""

from __future__ import annotations

import datetime
import html
import re

import pytest

from flask_smtp_senders.settings import DEFAULTS
from tests.support.cases import stored_password
from tests.support.pages import (
    CLIENT,
    CLIENT_SECRET,
    PREFIX,
    PROVIDER_GOOD,
    TENANT,
    Admin,
    create,
    create_provider,
    csrf,
    errors,
    form_values,
)
from tests.support.token_server import make_google_key

NOTICE = html.escape(DEFAULTS["SMTP_SENDERS_MSG_OFFICE365_BASIC_AUTH_NOTICE"]).encode()
HEADINGS = {"custom": "Email Sender Custom SMTP Server",
            "microsoft365": "Email Sender Microsoft 365",
            "google": "Email Sender Google Workspace",
            "oauth2": "Email Sender Custom Server with OAuth2"}


@pytest.fixture(scope="module")
def google_key():
    return make_google_key()


@pytest.fixture
def app(make_app):
    return make_app(plugins=[Admin()])


@pytest.fixture
def client(app):
    return app.test_client()


def labels(page: bytes) -> list[str]:
    """The form's field labels, in page order (without the Mandatory mark)."""
    return [label.decode().strip()
            for label in re.findall(rb'<label for="[a-z_]+">([^<]+)', page)]


def textareas(page: bytes) -> dict[str, str]:
    """Each textarea's content (WTForms writes a line break after the opening tag)."""
    return {m[0].decode(): m[1].decode().strip()
            for m in re.findall(rb'<textarea[^>]*? name="([a-z_]+)"[^>]*>([^<]*)</textarea>',
                                page)}


# -- the "+" step ------------------------------------------------------------------------

def test_the_plus_step_offers_custom_server_first_and_chosen_then_the_oauth2_providers(
        client):
    page = client.get(f"{PREFIX}/new").data
    options = re.findall(rb'<option ([^>]*)value="([a-z0-9]+)">([^<]+)</option>', page)
    providers = [(value.decode(), label.decode()) for _, value, label in options
                 if value != b"email"]
    assert providers == [("custom", "Custom Server"), ("microsoft365", "Microsoft 365"),
                         ("google", "Google Workspace"),
                         ("oauth2", "Custom Server with OAuth2")]
    assert b"selected" not in page  # the first option, Custom Server, is the one shown


def test_a_plus_step_without_a_provider_type_leads_nowhere(client):
    page = client.get(f"{PREFIX}/new")
    answer = client.post(f"{PREFIX}/new", data={"csrf_token": csrf(page.data),
                                                "sender_type": "email"})
    assert answer.status_code == 200


@pytest.mark.parametrize("provider", list(HEADINGS))
def test_next_opens_the_form_of_the_chosen_provider(client, provider):
    page = client.get(f"{PREFIX}/new")
    answer = client.post(f"{PREFIX}/new", data={"csrf_token": csrf(page.data),
                                                "sender_type": "email",
                                                "provider_type": provider})
    assert answer.status_code == 302
    assert answer.location.endswith(f"{PREFIX}/new/email/{provider}")
    form = client.get(answer.location)
    assert form.status_code == 200
    assert f"<h1>{HEADINGS[provider]}</h1>".encode() in form.data
    assert f"<title>{HEADINGS[provider]}</title>".encode() in form.data


def test_an_unknown_provider_has_no_page(client):
    assert client.get(f"{PREFIX}/new/email/sendgrid").status_code == 404


# -- each provider's form: fields, order, presets --------------------------------------

def test_microsoft_365_asks_for_its_fields_with_smtp_office365_com_587_preset(client):
    page = client.get(f"{PREFIX}/new/email/microsoft365").data
    assert labels(page) == ["Tenant ID", "Client ID", "Client Secret", "Mailbox",
                            "Server Name", "Port", "Secret Expires", "From Name",
                            "From Address", "Reply-To Name", "Reply-To Address"]
    values = form_values(page)
    assert values["server_name"] == "smtp.office365.com" and values["port"] == "587"
    assert re.search(rb'<input[^>]* name="client_secret"[^>]* type="password" value="">',
                     page)
    assert re.search(rb'<input[^>]* name="secret_expires" type="date"', page)
    assert b"Password" not in page and NOTICE not in page


def test_google_workspace_takes_the_key_as_a_file_or_pasted_with_smtp_gmail_com_465(client):
    page = client.get(f"{PREFIX}/new/email/google").data
    assert labels(page) == ["Service Account Key File", "Service Account Key",
                            "Workspace User", "Server Name", "Port", "Secret Expires",
                            "From Name", "From Address", "Reply-To Name", "Reply-To Address"]
    assert b'enctype="multipart/form-data"' in page
    assert re.search(rb'<input[^>]*type="file"[^>]*>', page)
    assert textareas(page) == {"service_account_key": ""}
    values = form_values(page)
    assert values["server_name"] == "smtp.gmail.com" and values["port"] == "465"


def test_custom_server_with_oauth2_asks_for_the_token_endpoint_and_defaults_to_465(client):
    page = client.get(f"{PREFIX}/new/email/oauth2").data
    assert labels(page) == ["Token URL", "Client ID", "Client Secret", "Scope", "Username",
                            "Server Name", "Port", "Secret Expires", "From Name",
                            "From Address", "Reply-To Name", "Reply-To Address"]
    values = form_values(page)
    assert values["port"] == "465" and values.get("server_name", "") == ""


def test_the_custom_server_form_has_none_of_the_oauth2_fields(client):
    page = client.get(f"{PREFIX}/new/email/custom").data
    assert labels(page) == ["Username", "Password", "Server Name", "Port", "From Name",
                            "From Address", "Reply-To Name", "Reply-To Address"]
    assert b"multipart" not in page


# -- saving, and what comes back --------------------------------------------------------

def test_a_microsoft_365_sender_is_saved_with_its_client_secret_sealed(app, client,
                                                                       service):
    answer = create_provider(client, "microsoft365")
    assert answer.status_code == 302
    [sender] = service.list_senders()
    settings = sender.settings
    assert (settings.provider, settings.tenant_id, settings.client_id) == (
        "microsoft365", TENANT, CLIENT)
    assert (settings.username, settings.server_name, settings.port) == (
        "notifications@contoso.com", "smtp.office365.com", 587)
    assert settings.secret_expires == "2027-06-30" and settings.token_url == ""
    assert stored_password(app, sender.id) == CLIENT_SECRET

    page = client.get(answer.location).data
    assert b"The sender was saved." in page and b"<h1>Email Sender Microsoft 365</h1>" in page
    assert CLIENT_SECRET.encode() not in page
    assert form_values(page)["tenant_id"] == TENANT
    assert form_values(page).get("client_secret", "") == ""
    assert b"re-entering the Client Secret." in page
    assert NOTICE not in page  # the notice is for Custom Servers at Microsoft 365


def test_a_google_sender_takes_an_uploaded_key_and_shows_the_client_id_it_holds(
        app, client, service, google_key):
    answer = create_provider(client, "google", service_account_key_file=(
        google_key.text.encode(), "portal-test-0123.json"))
    assert answer.status_code == 302, errors(answer.data)
    [sender] = service.list_senders()
    assert sender.settings.provider == "google"
    assert sender.settings.client_id == google_key.client_id  # read from the key
    assert stored_password(app, sender.id) == google_key.text

    page = client.get(answer.location).data
    assert google_key.client_id.encode() in page and b"https://mail.google.com/" in page
    assert b"PRIVATE KEY" not in page and google_key.key_id.encode() not in page
    assert textareas(page) == {"service_account_key": ""}


def test_a_google_key_may_be_pasted(app, client, service, google_key):
    answer = create_provider(client, "google", service_account_key=google_key.text)
    assert answer.status_code == 302, errors(answer.data)
    [sender] = service.list_senders()
    assert stored_password(app, sender.id) == google_key.text


def test_a_custom_server_with_oauth2_sender_is_saved_with_its_endpoint(app, client,
                                                                       service):
    assert create_provider(client, "oauth2").status_code == 302
    [sender] = service.list_senders()
    settings = sender.settings
    assert (settings.provider, settings.token_url, settings.client_id, settings.scope) == (
        "oauth2", PROVIDER_GOOD["oauth2"]["token_url"], "portal-mailer", "smtp.send")
    assert settings.tenant_id == "" and stored_password(app, sender.id) == CLIENT_SECRET


# -- errors beside their fields, everything typed kept but the secret ------------------------

def test_bad_microsoft_365_fields_are_told_beside_each_and_kept_but_the_secret(client,
                                                                              service):
    answer = create_provider(client, "microsoft365", tenant_id="not a tenant",
                             client_id="portal-mailer", username="notifications",
                             secret_expires="2027-02-30", port="0")
    assert answer.status_code == 422
    found = errors(answer.data)
    assert set(found) == {"tenant_id", "client_id", "username", "secret_expires", "port"}
    assert "Directory (tenant) ID" in found["tenant_id"]
    assert "Application (client) ID" in found["client_id"]
    assert found["secret_expires"] == "Enter a date as YYYY-MM-DD."
    values = form_values(answer.data)
    assert values["tenant_id"] == "not a tenant" and values["client_id"] == "portal-mailer"
    assert values["username"] == "notifications" and values["secret_expires"] == "2027-02-30"
    assert CLIENT_SECRET.encode() not in answer.data
    assert service.list_senders() == []


@pytest.mark.parametrize(("provider", "field"), [
    ("microsoft365", "tenant_id"), ("microsoft365", "client_id"),
    ("microsoft365", "client_secret"), ("microsoft365", "username"),
    ("microsoft365", "server_name"), ("microsoft365", "from_address"),
    ("google", "service_account_key"), ("google", "username"),
    ("oauth2", "token_url"), ("oauth2", "client_id"), ("oauth2", "client_secret"),
    ("oauth2", "username")])
def test_each_providers_mandatory_fields_are_required(client, service, google_key,
                                                      provider, field):
    key = {"service_account_key": google_key.text} if provider == "google" else {}
    answer = create_provider(client, provider, **{**key, field: ""})
    assert answer.status_code == 422
    assert errors(answer.data) == {field: "This field is required."}
    assert service.list_senders() == []


def test_an_oauth2_token_url_must_be_https_and_a_scope_plain(client, service):
    answer = create_provider(client, "oauth2", token_url="http://idp.example.com/token",
                             scope='"smtp"')
    assert answer.status_code == 422
    found = errors(answer.data)
    assert set(found) == {"token_url", "scope"}
    assert "https://" in found["token_url"]
    assert form_values(answer.data)["token_url"] == "http://idp.example.com/token"


@pytest.mark.parametrize(("upload", "pasted", "message"), [
    ((b'{"type": "authorized_user"}', "client.json"), "", "not a service account key"),
    ((b"\xff\xfe{", "key.json"), "", "UTF-8 text"),
    ((b"x" * 20_000, "key.json"), "", "at most 16 KB"),
    (None, "not json at all", "is not JSON"),
    ("key", "{}", "not both"),
])
def test_a_bad_google_key_is_told_beside_the_key_and_never_shown(client, service, google_key,
                                                                  upload, pasted, message):
    fields = {"service_account_key": pasted, "from_name": "Kept Name"}
    if upload == "key":
        upload = (google_key.text.encode(), "key.json")
    if upload is not None:
        fields["service_account_key_file"] = upload
    answer = create_provider(client, "google", **fields)
    assert answer.status_code == 422
    found = errors(answer.data)
    assert set(found) == {"service_account_key"} and message in found["service_account_key"]
    assert form_values(answer.data)["from_name"] == "Kept Name"
    assert textareas(answer.data) == {"service_account_key": ""}
    assert b"PRIVATE KEY" not in answer.data and b"not json at all" not in answer.data
    assert service.list_senders() == []


def test_the_forms_keep_their_csrf_check(client, service):
    answer = client.post(f"{PREFIX}/new/email/microsoft365", data=PROVIDER_GOOD["microsoft365"])
    assert answer.status_code == 400
    assert service.list_senders() == []


# -- editing: the sender's own form, its fields kept, the secret asked again --------------

def test_the_edit_page_opens_the_form_of_the_senders_provider_and_round_trips(app, client,
                                                                              service):
    saved = create_provider(client, "microsoft365")
    page = client.get(saved.location).data
    values = form_values(page)
    assert (values["tenant_id"], values["client_id"], values["username"]) == (
        TENANT, CLIENT, "notifications@contoso.com")
    assert values["secret_expires"] == "2027-06-30" and values["port"] == "587"

    form = {name: values.get(name, "") for name in PROVIDER_GOOD["microsoft365"]}
    refused = client.post(saved.location, data={**form, "csrf_token": csrf(page),
                                                "version": values["version"],
                                                "from_name": "Contoso Notices",
                                                "client_secret": ""})
    assert refused.status_code == 422
    assert errors(refused.data) == {"client_secret": "This field is required."}
    assert form_values(refused.data)["from_name"] == "Contoso Notices"

    new_secret = "Rotated~Secret.Value_9876543210"
    answer = client.post(saved.location, data={**form, "csrf_token": csrf(page),
                                               "version": values["version"],
                                               "from_name": "Contoso Notices",
                                               "client_secret": new_secret})
    assert answer.status_code == 302
    [sender] = service.list_senders()
    assert sender.settings.provider == "microsoft365" and sender.version == 2
    assert (sender.settings.tenant_id, sender.settings.client_id) == (TENANT, CLIENT)
    assert sender.settings.from_name == "Contoso Notices"
    assert stored_password(app, sender.id) == new_secret
    assert new_secret.encode() not in client.get(answer.location).data


def test_a_google_sender_is_edited_with_its_key_given_again(app, client, service,
                                                          google_key):
    saved = create_provider(client, "google", service_account_key=google_key.text)
    page = client.get(saved.location).data
    values = form_values(page)
    form = {name: values.get(name, "") for name in PROVIDER_GOOD["google"]}
    without_key = client.post(saved.location, data={**form, "csrf_token": csrf(page),
                                                    "version": values["version"]})
    assert errors(without_key.data) == {"service_account_key": "This field is required."}
    answer = client.post(saved.location, data={
        **form, "csrf_token": csrf(page), "version": values["version"],
        "secret_expires": "2026-12-31", "service_account_key": google_key.text})
    assert answer.status_code == 302
    [sender] = service.list_senders()
    assert sender.settings.secret_expires == "2026-12-31"
    assert sender.settings.client_id == google_key.client_id


# -- the list -----------------------------------------------------------------------------

def test_the_list_names_each_senders_provider(client, google_key):
    create(client)
    create_provider(client, "microsoft365")
    create_provider(client, "google", service_account_key=google_key.text)
    create_provider(client, "oauth2")
    page = client.get(f"{PREFIX}/").data
    assert b'<th scope="col">Provider</th>' in page
    cells = re.findall(rb'<td data-provider="([a-z0-9]+)">([^<]+)</td>', page)
    assert sorted(cells) == sorted([(b"custom", b"Custom Server"),
                                    (b"microsoft365", b"Microsoft 365"),
                                    (b"google", b"Google Workspace"),
                                    (b"oauth2", b"Custom Server with OAuth2")])


def test_the_list_warns_of_a_secret_that_expires_within_30_days(client):
    today = datetime.datetime.now(datetime.timezone.utc).date()
    soon = (today + datetime.timedelta(days=10)).isoformat()
    past = (today - datetime.timedelta(days=1)).isoformat()
    later = (today + datetime.timedelta(days=90)).isoformat()
    create_provider(client, "microsoft365", secret_expires=soon)
    create_provider(client, "oauth2", secret_expires=past)
    create_provider(client, "oauth2", secret_expires=later, client_id="another-client")
    page = client.get(f"{PREFIX}/").data.decode()
    assert f"The client secret expires on {soon} (in 10 days)." in page
    assert f"The client secret expired on {past}" in page
    assert later not in page
    assert page.count("data-secret-expiry=") == 2
