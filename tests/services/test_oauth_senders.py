"""OAuth2 senders end to end through the service: a Microsoft 365, a Google Workspace and
a "Custom Server with OAuth2" sender saved on SQLite and PostgreSQL, their tokens fetched
from the real token server (tests/support/token_server.py, HTTPS with the test CA) and
spent on a ScriptedServer that accepts exactly the tokens that server issued.

What is proved: the secret is stored like a password (encrypted, never in a row in
clear) and bound to where it is spent; tokens are cached per sender version in the
database (one fetch for many sends, shared by a second app on the same database,
encrypted there) and renewed before they expire; a token the SMTP server refuses is
dropped and replaced once; a token endpoint that is down or says no fails with stage
"token" and advice, sending nothing.
"""

from __future__ import annotations

import dataclasses
from email.message import EmailMessage

import pytest
from sqlalchemy import create_engine, text

from flask_smtp_senders import SenderSettings, get_service, hookimpl
from flask_smtp_senders.errors import DeliveryError, InvalidSenderData
from flask_smtp_senders.services import tokens as token_module
from tests.support.loopback import LOOPBACK
from tests.support.smtp_servers import SERVER_NAME
from tests.support.token_server import TOKEN_HOSTS, entra_error, make_google_key

TENANT = "6f1c2a4e-0b7d-4c3e-9a51-2d8e7f0a1b2c"
CLIENT = "0e9d8c7b-6a59-4817-8a6f-5e4d3c2b1a09"
SECRET = "Qx8~Zr.4_ClientSecretValue-0123456789abcdEF"
MAILBOX = "notifications@contoso.example"
WORKSPACE_USER = "alerts@acme.example"
RECIPIENT = "someone@example.org"


class Host:
    """Everything allowed; the SMTP test server's name and the token hosts on loopback."""

    def __init__(self) -> None:
        self.events: list[object] = []

    @hookimpl
    def smtp_senders_authorize(self, action, sender_id):
        return True

    @hookimpl
    def smtp_senders_resolve(self, server_name, port):
        return [LOOPBACK] if server_name in (SERVER_NAME, *TOKEN_HOSTS) else None

    @hookimpl
    def smtp_senders_audit(self, event):
        self.events.append(event)


@pytest.fixture
def tokens(token_server):
    return token_server()


@pytest.fixture
def make_oauth_app(make_app, tokens):
    def factory(**config):
        return make_app(plugins=[Host()],
                        SMTP_SENDERS_MICROSOFT_AUTHORITY=tokens.microsoft_authority(),
                        SMTP_SENDERS_GOOGLE_TOKEN_URL=tokens.google_url(), **config)
    return factory


@pytest.fixture
def smtp(scripted_server, tokens):
    refused: set[str] = set()
    server = scripted_server(auth=("XOAUTH2", "PLAIN"),
                             token_check=lambda user, token: (
                                 token not in refused and tokens.valid(user, token)))
    server.refused_tokens = refused
    return server


def microsoft(smtp, **changes) -> SenderSettings:
    settings = SenderSettings(username=MAILBOX, server_name=SERVER_NAME, port=smtp.port,
                              from_address=MAILBOX, provider="microsoft365",
                              tenant_id=TENANT, client_id=CLIENT)
    return dataclasses.replace(settings, **changes)


def message(subject: str = "Hello") -> EmailMessage:
    msg = EmailMessage()
    msg["To"] = RECIPIENT
    msg["Subject"] = subject
    msg.set_content("A notification.")
    return msg


def saved(make_oauth_app, tokens, smtp, *, register: bool = True, **config):
    """An app and a Microsoft 365 sender saved in it (its app registered at the token
    server unless ``register`` is False): (app, service, sender), inside the app context
    the caller opens with ``app.app_context()``."""
    if register:
        tokens.add_microsoft_app(TENANT, CLIENT, SECRET, mailboxes=[MAILBOX])
    app = make_oauth_app(**config)
    with app.app_context():
        sender = get_service(app).create_sender(microsoft(smtp), SECRET)
    return app, get_service(app), sender


def token_requests(tokens) -> int:
    return sum(1 for request in tokens.requests if request.method == "POST")


def test_a_microsoft365_sender_sends_with_a_token_fetched_once(make_oauth_app, tokens, smtp):
    app, service, sender = saved(make_oauth_app, tokens, smtp)
    with app.app_context():
        first = service.mailer.send(message("one"), sender.id)
        second = service.mailer.send_many([message("two"), message("three")], sender.id)
    assert first.accepted == (RECIPIENT,)
    assert [result.error for result in second] == [None, None]
    assert len(smtp.messages) == 3
    assert token_requests(tokens) == 1  # cached for the version
    assert any(line.startswith(b"AUTH XOAUTH2 ") for line in smtp.auth_lines)


def test_the_token_is_shared_by_another_app_on_the_same_database_and_encrypted_there(
        make_oauth_app, tokens, smtp, database):
    """Case D8: the cached token and the client secret are in the database only
    encrypted; a second worker of the app uses the first one's token."""
    tokens.add_microsoft_app(TENANT, CLIENT, SECRET, mailboxes=[MAILBOX])
    first, second = make_oauth_app(), make_oauth_app()
    with first.app_context():
        sender = get_service(first).create_sender(microsoft(smtp), SECRET)
        get_service(first).mailer.send(message(), sender.id)
    with second.app_context():
        get_service(second).mailer.send(message(), sender.id)
    assert token_requests(tokens) == 1
    issued = [t for t in tokens._issued]  # noqa: SLF001 - what the server handed out
    engine = create_engine(database.url, **database.engine_options)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT token, sender_id FROM smtp_sender_tokens")).all()
        senders = conn.execute(text("SELECT password_token FROM smtp_senders")).all()
    engine.dispose()
    assert len(stored) == 1 and stored[0][1] == sender.id
    assert not any(token in stored[0][0] for token in issued)
    assert SECRET not in senders[0][0]


def test_a_token_near_its_expiry_is_renewed(make_oauth_app, tokens, smtp, monkeypatch):
    tokens.add_microsoft_app(TENANT, CLIENT, SECRET, mailboxes=[MAILBOX])
    tokens.expires_in = 3599
    app = make_oauth_app()
    with app.app_context():
        service = get_service(app)
        sender = service.create_sender(microsoft(smtp), SECRET)
        service.mailer.send(message(), sender.id)
        # Every token now has less than the margin left: the next send asks again.
        monkeypatch.setattr(token_module, "REFRESH_MARGIN", 3600.0)
        monkeypatch.setattr("flask_smtp_senders.services.pool.REFRESH_MARGIN", 3600.0)
        service.mailer.send(message(), sender.id)
    assert token_requests(tokens) == 2
    assert len(smtp.messages) == 2


def test_a_refused_token_is_replaced_once_by_a_fresh_one(make_oauth_app, tokens, smtp):
    app, service, sender = saved(make_oauth_app, tokens, smtp)
    with app.app_context():
        service.mailer.send(message(), sender.id)
        smtp.refused_tokens.update(tokens._issued)  # noqa: SLF001 - revoked early
        service.mailer.pool.close()  # the next send must sign in again
        result = service.mailer.send(message("after"), sender.id)
        probe = service.send_test_email(sender.id, RECIPIENT)
    assert result.error is None
    assert probe.ok, probe.message
    assert token_requests(tokens) == 2
    assert len(smtp.messages) == 3


def test_a_token_refused_again_fails_without_a_loop(make_oauth_app, tokens, smtp):
    tokens.add_microsoft_app(TENANT, CLIENT, SECRET, mailboxes=["someone.else@contoso.example"])
    app = make_oauth_app()
    with app.app_context():
        service = get_service(app)
        sender = service.create_sender(microsoft(smtp), SECRET)
        with pytest.raises(DeliveryError) as failure:
            service.mailer.send(message(), sender.id)
        probe = service.send_test_email(sender.id, RECIPIENT)
    assert failure.value.stage == "auth" and failure.value.token_refused
    assert (probe.ok, probe.stage) == (False, "auth")
    assert probe.diagnosis.stages[0].name == "token" and probe.diagnosis.stages[0].ok
    # The send: a token, refused, one fresh one, refused; the test email: the cached one,
    # refused, one fresh one, refused. Never a third try.
    assert token_requests(tokens) == 3
    assert sum(line.startswith(b"AUTH XOAUTH2 ") for line in smtp.auth_lines) == 4
    assert smtp.messages == []


def test_a_wrong_client_secret_stops_at_the_token_stage(make_oauth_app, tokens, smtp):
    tokens.add_microsoft_app(TENANT, CLIENT, "the-real-secret", mailboxes=[MAILBOX])
    app = make_oauth_app()
    with app.app_context():
        service = get_service(app)
        sender = service.create_sender(microsoft(smtp), SECRET)
        probe = service.send_test_email(sender.id, RECIPIENT)
        result = service.mailer.send_many([message()], sender.id)[0]
    assert (probe.ok, probe.stage) == (False, "token")
    assert probe.message == app.config["SMTP_SENDERS_MSG_TOKEN_FAILED"]
    (stage,) = probe.diagnosis.stages
    assert (stage.name, stage.label, stage.ok) == ("token", "Token", False)
    facts = dict(stage.facts)
    assert facts["HTTP status"] == "401" and facts["Error code"] == "AADSTS7000215"
    assert probe.diagnosis.advice == app.config["SMTP_SENDERS_ADVICE_TOKEN_BAD_SECRET"]
    assert isinstance(result.error, DeliveryError) and result.error.stage == "token"
    assert smtp.connections == 0
    assert SECRET not in repr(probe) + str(result.error)


def test_a_token_endpoint_that_is_down_is_told_as_such(make_oauth_app, tokens, smtp):
    tokens.add_microsoft_app(TENANT, CLIENT, SECRET, mailboxes=[MAILBOX])
    app = make_oauth_app()
    tokens.stop()
    with app.app_context():
        service = get_service(app)
        sender = service.create_sender(microsoft(smtp), SECRET)
        probe = service.send_test_email(sender.id, RECIPIENT)
    assert (probe.ok, probe.stage) == (False, "token")
    assert probe.diagnosis.advice == app.config["SMTP_SENDERS_ADVICE_TOKEN_UNREACHABLE"]
    assert smtp.connections == 0


def test_entra_saying_no_for_a_blocked_app_reaches_the_advice(make_oauth_app, tokens, smtp):
    app = make_oauth_app()
    tokens.reply = entra_error(400, "invalid_client", 7000222, "The client secret expired.")
    with app.app_context():
        service = get_service(app)
        sender = service.create_sender(microsoft(smtp), SECRET)
        probe = service.check_connection(sender.id)
    assert probe.stage == "token"
    assert dict(probe.diagnosis.stages[0].facts)["Error code"] == "AADSTS7000222"


def test_a_token_endpoint_on_a_refused_address_is_never_reached(make_app, tokens, smtp):
    """Case C8: the token host resolves to a metadata address: no connection anywhere."""

    class MetadataHost(Host):
        @hookimpl
        def smtp_senders_resolve(self, server_name, port):
            if server_name in TOKEN_HOSTS:
                return ["169.254.169.254"]
            return [LOOPBACK] if server_name == SERVER_NAME else None

    app = make_app(plugins=[MetadataHost()],
                   SMTP_SENDERS_MICROSOFT_AUTHORITY=tokens.microsoft_authority())
    with app.app_context():
        service = get_service(app)
        sender = service.create_sender(microsoft(smtp), SECRET)
        probe = service.send_test_email(sender.id, RECIPIENT)
    assert probe.stage == "token"
    assert probe.diagnosis.advice == app.config["SMTP_SENDERS_ADVICE_TOKEN_DESTINATION_REFUSED"]
    assert tokens.connections == 0 and smtp.connections == 0


def test_a_google_workspace_sender_signs_a_jwt_and_sends(make_oauth_app, tokens,
                                                         scripted_server):
    key = make_google_key()
    tokens.add_google_account(key, users=[WORKSPACE_USER])
    smtp = scripted_server(auth=("XOAUTH2",), token_check=tokens.valid)
    app = make_oauth_app()
    with app.app_context():
        service = get_service(app)
        sender = service.create_sender(SenderSettings(
            username=WORKSPACE_USER, server_name=SERVER_NAME, port=smtp.port,
            from_address=WORKSPACE_USER, provider="google"), key.text)
        result = service.mailer.send(message(), sender.id)
    assert result.error is None and len(smtp.messages) == 1
    assert sender.settings.client_id == key.client_id  # taken from the key
    assert token_requests(tokens) == 1


def test_a_google_keys_own_token_uri_is_never_used(make_oauth_app, tokens, scripted_server):
    """Case C8: a key file naming another token endpoint (an attacker's, or an internal
    address) changes nothing: the signed assertion goes to the configured URL only."""
    import json

    key = make_google_key()
    tokens.add_google_account(key, users=[WORKSPACE_USER])
    smtp = scripted_server(auth=("XOAUTH2",), token_check=tokens.valid)
    text = json.loads(key.text)
    text["token_uri"] = "https://169.254.169.254/token"
    app = make_oauth_app()
    with app.app_context():
        service = get_service(app)
        sender = service.create_sender(SenderSettings(
            username=WORKSPACE_USER, server_name=SERVER_NAME, port=smtp.port,
            from_address=WORKSPACE_USER, provider="google"), json.dumps(text))
        result = service.mailer.send(message(), sender.id)
    assert result.error is None
    (request,) = [r for r in tokens.requests if r.method == "POST"]
    assert request.target == "/token"


def test_a_generic_oauth2_sender_uses_client_secret_basic(make_oauth_app, tokens,
                                                          scripted_server):
    tokens.add_client("portal", SECRET, users=["mailer@acme.example"], scope="smtp")
    smtp = scripted_server(auth=("OAUTHBEARER",), token_check=tokens.valid)
    app = make_oauth_app()
    with app.app_context():
        service = get_service(app)
        sender = service.create_sender(SenderSettings(
            username="mailer@acme.example", server_name=SERVER_NAME, port=smtp.port,
            from_address="mailer@acme.example", provider="oauth2",
            token_url=tokens.generic_url(), client_id="portal", scope="smtp"), SECRET)
        probe = service.send_test_email(sender.id, RECIPIENT)
    assert probe.ok, probe.message
    (request,) = [r for r in tokens.requests if r.method == "POST"]
    assert (request.header("Authorization") or "").startswith("Basic ")
    assert SECRET not in request.body.decode()


def test_a_binding_changed_behind_the_apps_back_fetches_no_token(make_oauth_app, tokens,
                                                                 smtp, database):
    """Case D8: another tenant written into the row in SQL: the secret stays unused."""
    app, service, sender = saved(make_oauth_app, tokens, smtp)
    engine = create_engine(database.url, **database.engine_options)
    with engine.begin() as conn:  # another tenant: the secret would go to its admins
        conn.execute(text("UPDATE smtp_senders SET tenant_id = 'evil.onmicrosoft.com'"))
    engine.dispose()
    with app.app_context():
        probe = service.send_test_email(sender.id, RECIPIENT)
    assert (probe.ok, probe.stage) == (False, "password")
    assert probe.message == app.config["SMTP_SENDERS_MSG_SECRET_UNBOUND"]
    assert tokens.connections == 0 and smtp.connections == 0


def test_rotating_keys_keeps_an_oauth_sender_usable(make_oauth_app, tokens, smtp,
                                                     fernet_key):
    from cryptography.fernet import Fernet

    tokens.add_microsoft_app(TENANT, CLIENT, SECRET, mailboxes=[MAILBOX])
    app = make_oauth_app()
    with app.app_context():
        sender = get_service(app).create_sender(microsoft(smtp), SECRET)
    rotated = make_oauth_app(SMTP_SENDERS_ENCRYPTION_KEYS=[Fernet.generate_key().decode(),
                                                          fernet_key])
    with rotated.app_context():
        assert get_service(rotated).rotate_keys() == (1, 0)
        probe = get_service(rotated).send_test_email(sender.id, RECIPIENT)
    assert probe.ok, probe.message


@pytest.mark.parametrize(("changes", "field"), [
    ({"tenant_id": ""}, "tenant_id"),
    ({"tenant_id": "not a tenant/"}, "tenant_id"),
    ({"client_id": "portal"}, "client_id"),
    ({"username": "not-an-address"}, "username"),
    ({"token_url": "https://idp.test/token"}, "token_url"),
    ({"secret_expires": "2027-02-30"}, "secret_expires"),
    ({"provider": "yahoo"}, "provider"),
])
def test_each_provider_field_is_checked_beside_its_name(make_oauth_app, smtp, changes,
                                                         field):
    app = make_oauth_app()
    with app.app_context(), pytest.raises(InvalidSenderData) as invalid:
        get_service(app).create_sender(microsoft(smtp, **changes), SECRET)
    assert field in invalid.value.errors
    with app.app_context():
        assert get_service(app).list_senders() == []


def test_a_google_key_that_does_not_load_is_refused_without_quoting_it(make_oauth_app,
                                                                        smtp):
    app = make_oauth_app()
    broken = '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----x"}'
    with app.app_context(), pytest.raises(InvalidSenderData) as invalid:
        get_service(app).create_sender(SenderSettings(
            username=WORKSPACE_USER, server_name=SERVER_NAME, port=smtp.port,
            from_address=WORKSPACE_USER, provider="google"), broken)
    assert set(invalid.value.errors) == {"password"}
    assert "BEGIN" not in invalid.value.errors["password"]


def test_a_custom_server_sender_keeps_its_binding_of_before(make_oauth_app, smtp):
    """A password's binding covers what it always did: senders saved before providers
    existed stay usable (the destination's canonical form is unchanged)."""
    from flask_smtp_senders.crypto import Destination

    where = Destination("mx.example.com", 465, "SMTPS", "alice")
    assert where.canonical() == (
        b'["flask-smtp-senders/destination/v1","mx.example.com",465,"SMTPS","alice"]')
    oauth = dataclasses.replace(where, provider="microsoft365", tenant_id=TENANT)
    assert oauth.canonical() != where.canonical()
    assert dataclasses.replace(oauth, tenant_id="other").canonical() != oauth.canonical()


def test_a_token_endpoint_that_never_answers_fails_within_the_timeout(make_oauth_app, tokens,
                                                                     smtp):
    """A token endpoint that accepts the connection and then says nothing holds the test
    email no longer than the exchange's deadline (SMTP_SENDERS_TIMEOUT, 5 s here)."""
    import time

    tokens.add_microsoft_app(TENANT, CLIENT, SECRET, mailboxes=[MAILBOX])
    tokens.delay = 30.0
    app = make_oauth_app(SMTP_SENDERS_OPERATION_TIMEOUT=1.0, SMTP_SENDERS_TIMEOUT=2.0)
    with app.app_context():
        service = get_service(app)
        sender = service.create_sender(microsoft(smtp), SECRET)
        started = time.monotonic()
        probe = service.send_test_email(sender.id, RECIPIENT)
        took = time.monotonic() - started
    assert (probe.ok, probe.stage) == (False, "token")
    assert probe.diagnosis.advice == app.config["SMTP_SENDERS_ADVICE_TOKEN_TIMEOUT"]
    assert took < 2.0 + 1.5
    assert smtp.connections == 0
