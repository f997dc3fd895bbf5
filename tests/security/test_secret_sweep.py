"""Case D5: one sweep over everything a sender's password could leak into.

A sender is saved with a distinctive password, then every page, JSON answer, redirect,
flash, audit event, log record (all loggers at DEBUG), provoked exception and repr() is
collected, and none may hold the password, its Fernet token (or a 16-character piece of
the token's body), or the base64 that AUTH PLAIN and AUTH LOGIN put on the wire.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import ssl
import traceback
from email.message import EmailMessage

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.orm import Session

from flask_smtp_senders import (
    AuditFailed,
    ConcurrentUpdate,
    DeliveryError,
    InvalidSenderData,
    PasswordUnreadable,
    SenderSettings,
    get_service,
    hookimpl,
)
from flask_smtp_senders.sealed import Secret
from flask_smtp_senders.smtp import transport
from flask_smtp_senders.storage.models import SenderRow
from tests.support.cases import (
    CASE_CONFIG,
    HARNESS_LOGGERS,
    PREFIX,
    RECIPIENT,
    Host,
    csrf,
    form_values,
    good_fields,
    secret_forms,
    token_of,
)
from tests.support.smtp_servers import LOOPBACK, SERVER_NAME, RawTCPServer, server_context

pytestmark = pytest.mark.sqlite_only

PASSWORD = "Sw33p-Distinctive-Pa55"
SECOND_PASSWORD = "Sw33p-Second-Pa55"
USERNAME = "sweeper"
JSON = {"Accept": "application/json"}


class AuthEchoServer(RawTCPServer):
    """A TLS-first SMTP server whose 535 reply quotes the AUTH command back, base64
    credentials and all (some servers do): the client must scrub it before logging."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self._context = context

    def _serve(self, conn) -> None:
        try:
            conn.settimeout(2.0)
            tls = self._context.wrap_socket(conn, server_side=True)
        except OSError:
            return
        with tls:
            tls.settimeout(0.1)
            buffer = b""
            try:
                tls.sendall(b"220 echo.test ESMTP\r\n")
                while not self._stopping.is_set():
                    try:
                        chunk = tls.recv(4096)
                    except TimeoutError:
                        continue
                    if not chunk:
                        return
                    buffer += chunk
                    while b"\r\n" in buffer:
                        line, buffer = buffer.split(b"\r\n", 1)
                        verb = line.split(b" ", 1)[0].upper()
                        if verb == b"QUIT":
                            tls.sendall(b"221 bye\r\n")
                            return
                        tls.sendall({b"EHLO": b"250-echo.test\r\n250 AUTH PLAIN LOGIN\r\n",
                                     b"AUTH": b"535 5.7.8 Rejected: " + line + b"\r\n",
                                     }.get(verb, b"502 5.5.2 Not here\r\n"))
            except OSError:
                return


class FailingAudit:
    """An audit trail that is down, and says what it could not record."""

    @hookimpl
    def smtp_senders_audit(self, event):
        raise RuntimeError(f"cannot record {event!r}")


class Haystack:
    """Every text a secret could leak into, with where it came from."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, value: object) -> None:
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        self.texts.append((where, value if isinstance(value, str) else repr(value)))

    def response(self, where: str, answer) -> None:
        self.add(f"{where}: status {answer.status}", answer.get_data())
        self.add(f"{where}: headers", str(answer.headers))
        for page in getattr(answer, "history", ()):  # the redirects followed
            self.add(f"{where}: redirect headers", str(page.headers))

    def exception(self, where: str, error: BaseException) -> None:
        self.add(f"{where}: str", str(error))
        self.add(f"{where}: repr", repr(error))
        self.add(f"{where}: args", repr(error.args))
        self.add(f"{where}: traceback", "".join(traceback.format_exception(error)))
        self.add(f"{where}: attributes", repr(vars(error)))


def needles(tokens: set[str]) -> dict[str, str]:
    """needle -> what it is. A token's body (after its version and time) is also looked
    for re-encoded, and as every 16-character piece, so a cut-off token is caught too."""
    found: dict[str, str] = {}
    for password in (PASSWORD, SECOND_PASSWORD):
        for form in secret_forms(password, USERNAME):
            found[form] = f"password {password!r} as {form!r}"
    for token in tokens:
        found[token] = "Fernet token"
        body = base64.urlsafe_b64decode(token)[9:]
        found[base64.urlsafe_b64encode(body).decode().rstrip("=")] = "token body (url-safe)"
        found[base64.b64encode(body).decode().rstrip("=")] = "token body (standard base64)"
        for start in range(12, len(token) - 16):
            found.setdefault(token[start:start + 16], f"16-char piece of a token at {start}")
    return found


def test_the_password_token_and_auth_base64_appear_nowhere(make_app, smtp_server,
                                                          tls_material, caplog):
    """Case D5: pages (list, +, form, edit, edit with errors, conflict, delete confirm,
    test email passed and failed as page and JSON, 400, 403, 404), audit events, every log
    record at DEBUG, the exceptions InvalidSenderData, ConcurrentUpdate,
    PasswordUnreadable (after a key change), DeliveryError (wrong password, the server
    echoing AUTH back), AuditFailed, and repr() of the sender, its settings, its row and
    the service objects: none holds the password, its token or AUTH's base64."""
    caplog.set_level(logging.DEBUG)
    hay = Haystack()
    tokens: set[str] = set()
    server = smtp_server("implicit", users={USERNAME: PASSWORD})
    host = Host()
    host.routes = {SERVER_NAME: [LOOPBACK]}
    app = make_app(plugins=[host], **CASE_CONFIG)
    client = app.test_client()
    service = get_service(app)

    def remember_tokens() -> None:
        with app.app_context():
            tokens.update(s.password.token.decode() for s in service.list_senders())

    def page(where, method, url, **kwargs):
        answer = getattr(client, method)(url, **kwargs)
        hay.response(where, answer)
        return answer

    fields = good_fields(username=USERNAME, password=PASSWORD, server_name=SERVER_NAME,
                         port=str(server.port))
    # -- pages --------------------------------------------------------------------------
    page("empty list", "get", f"{PREFIX}/")
    plus = page("+ step", "get", f"{PREFIX}/new")
    page("+ step next", "post", f"{PREFIX}/new", data={
        "csrf_token": csrf(plus.data), "sender_type": "email", "provider_type": "custom"})
    token = csrf(page("create form", "get", f"{PREFIX}/new/email/custom").data)
    page("create with errors", "post", f"{PREFIX}/new/email/custom",
         data={**fields, "csrf_token": token, "from_address": "not an address"})
    created = page("create", "post", f"{PREFIX}/new/email/custom", follow_redirects=True,
                   data={**fields, "csrf_token": token})
    remember_tokens()
    sender_id = service_sender_id(app)
    url = f"{PREFIX}/{sender_id}"
    assert created.status_code == 200 and form_values(created.data)["password"] == ""
    page("list", "get", f"{PREFIX}/")
    edit = page("edit", "get", url)
    page("edit with the modal", "get", f"{url}?test=1")
    stale = {**form_values(edit.data), "csrf_token": csrf(edit.data)}
    page("edit with errors", "post", url, data={**stale, "port": "0", "password": PASSWORD})
    page("edit with a hidden line break (Case G1)", "post", url, data={
        **stale, "from_name": "=?utf-8?q?Acme=0D=0ABcc:_x@evil.example?=", "password": PASSWORD})
    for accept, where in ((JSON, "json"), ({}, "page")):
        page(f"test email passed ({where})", "post", f"{url}/test", headers=accept,
             follow_redirects=True, data={"csrf_token": token, "recipient": RECIPIENT})
        page(f"test email bad recipient ({where})", "post", f"{url}/test", headers=accept,
             data={"csrf_token": token, "recipient": "a@b.com, c@d.com"})
    assert len(server.messages) == 2
    page("edit saved", "post", url, follow_redirects=True,
         data={**stale, "from_name": "Renamed", "password": SECOND_PASSWORD})
    remember_tokens()
    page("edit conflict", "post", url, data={**stale, "password": PASSWORD})
    for accept, where in ((JSON, "json"), ({}, "page")):
        failed = page(f"test email failed ({where})", "post", f"{url}/test", headers=accept,
                      follow_redirects=True, data={"csrf_token": token, "recipient": RECIPIENT})
        assert failed.status_code == 200
    page("delete confirmation", "get", f"{url}/delete")
    page("400: no CSRF token", "post", url, data={**stale, "password": PASSWORD})
    page("404: unknown sender", "post", f"{PREFIX}/999",
         data={**stale, "csrf_token": token, "password": PASSWORD})
    host.allow = False
    page("403: list", "get", f"{PREFIX}/")
    page("403: edit", "post", url, data={**stale, "csrf_token": token, "password": PASSWORD})
    host.allow = True

    # -- exceptions and reprs, inside the app -------------------------------------------------
    echo = AuthEchoServer(server_context(tls_material.good)).start()
    try:
        with app.app_context():
            sweep_the_service(app, hay, sender_id, echo, remember_tokens)
    finally:
        echo.stop()
    remember_tokens()

    other_key = make_app(plugins=[host], **CASE_CONFIG,
                         SMTP_SENDERS_ENCRYPTION_KEYS=[Fernet.generate_key().decode()])
    with other_key.app_context():
        other = get_service(other_key)
        with pytest.raises(PasswordUnreadable) as unreadable:
            other.cipher.decrypt(other.get_sender(sender_id).password)
        hay.exception("PasswordUnreadable", unreadable.value)
        hay.add("re-entry result", other.send_test_email(sender_id, RECIPIENT))
    other_client = other_key.test_client()
    hay.response("list under another key", other_client.get(f"{PREFIX}/"))
    hay.response("edit under another key", other_client.get(url))

    failing = make_app(plugins=[host, FailingAudit()], **CASE_CONFIG)
    with failing.app_context():
        with pytest.raises(AuditFailed) as audit_failed:
            get_service(failing).create_sender(SenderSettings(
                username=USERNAME, server_name=SERVER_NAME, port=server.port,
                from_address="noreply@example.com"), PASSWORD)
        hay.exception("AuditFailed", audit_failed.value)
    failing_client = failing.test_client()
    hay.response("save failed", failing_client.post(
        f"{PREFIX}/new/email/custom",
        data={**fields, "csrf_token": token_of(failing_client)}))

    # -- audit events and logs ------------------------------------------------------------------
    assert host.events
    for audit in host.events:
        hay.add(f"audit {audit.action}", repr(audit))
        hay.add(f"audit {audit.action} fields", repr(dataclasses.asdict(audit)))
    records = [r for r in caplog.records if not r.name.startswith(HARNESS_LOGGERS)]
    assert any(r.name == "flask_smtp_senders.transport" for r in records)
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in records:
        hay.add(f"log {record.name} {record.levelname}", formatter.format(record))
        hay.add(f"log {record.name} args", repr(record.args))

    assert len(tokens) >= 2
    wanted = needles(tokens)
    leaked = sorted({(where, what) for where, text in hay.texts
                     for needle, what in wanted.items() if needle in text})
    assert not leaked, "\n".join(f"{where}: {what}" for where, what in leaked)


def service_sender_id(app) -> int:
    with app.app_context():
        [sender] = get_service(app).list_senders()
        return sender.id


def sweep_the_service(app, hay: Haystack, sender_id: int, echo: AuthEchoServer,
                      remember_tokens) -> None:
    """Exceptions, results and reprs of the Python API (inside the app context)."""
    service = get_service(app)
    sender = service.get_sender(sender_id)
    settings = sender.settings
    with pytest.raises(InvalidSenderData) as invalid:
        service.create_sender(dataclasses.replace(settings, from_address="nope"), PASSWORD)
    hay.exception("InvalidSenderData", invalid.value)
    with pytest.raises(ConcurrentUpdate) as conflict:
        service.update_sender(sender_id, sender.version - 1, settings, PASSWORD)
    hay.exception("ConcurrentUpdate", conflict.value)

    message = EmailMessage()
    message["To"] = RECIPIENT
    message["Subject"] = "Sweep"
    message.set_content("Sweep")
    with pytest.raises(DeliveryError) as wrong_password:  # the server wants the first one
        service.mailer.send(message, sender=sender_id)
    hay.exception("DeliveryError (mailer, wrong password)", wrong_password.value)
    echoing = service.create_sender(dataclasses.replace(settings, port=echo.port), PASSWORD)
    remember_tokens()
    with pytest.raises(DeliveryError) as delivery:
        service.mailer.send(message, sender=echoing.id)
    hay.exception("DeliveryError (mailer, AUTH echoed)", delivery.value)
    hay.add("test email through the echo", service.send_test_email(echoing.id, RECIPIENT))
    with pytest.raises(DeliveryError) as direct:
        transport.connect(transport.ServerAddress(SERVER_NAME, echo.port, USERNAME),
                          Secret(PASSWORD), service.transport_options)
    hay.exception("DeliveryError (transport.connect)", direct.value)
    assert echo.connections >= 3

    for name, value in {"sender": service.get_sender(sender_id), "settings": settings,
                        "sender fields": vars(sender),
                        "service": service, "service attributes": vars(service),
                        "store": service.store, "cipher": service.cipher,
                        "transport options": service.transport_options,
                        "mailer": service.mailer, "mailer attributes": vars(service.mailer),
                        "pool attributes": vars(service.mailer.pool),
                        "secret": Secret(PASSWORD), "encrypted": sender.password,
                        "extensions": app.extensions}.items():
        hay.add(f"repr {name}", repr(value))
        hay.add(f"str {name}", str(value))
    with Session(app.extensions["sqlalchemy"].engine) as session:
        for row in session.scalars(select(SenderRow)):
            hay.add("repr SenderRow", repr(row))
